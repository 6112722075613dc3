"""Disentanglement metrics on synthetic factors: disentangled, mixed and uninformative codes, and closed forms."""

import functools
import itertools
import math

import numpy as np
import pytest

from jaxvae import _disentanglement as dis

VALUES = (4, 5, 6, 8)  # levels of each factor
K = len(VALUES)
# Sample counts small enough for a CPU test; the reference's are 10000 / 5000.
NUM_TRAIN, NUM_EVAL = 400, 200


class Factors:
  """Independent uniform factors; an observation is the factors scaled to [0, 1] next to K standard normals."""

  num_factors = K
  factors_num_values = list(VALUES)

  def sample_factors(self, num, random_state):
    return np.stack([random_state.randint(n, size=num) for n in VALUES], axis=1)

  def sample_observations_from_factors(self, factors, random_state):
    unit = factors / (np.array(VALUES) - 1.0)  # [N, K]
    return np.concatenate([unit, random_state.normal(size=factors.shape)], axis=1)  # [N, 2K]


class Grid(Factors):
  """Every batch of `len(GRID)` factors is the full grid in a random order, so different factors are
  independent on the sample exactly and plug-in mutual informations between them are exactly 0."""

  GRID = np.array(list(itertools.product(*[range(n) for n in VALUES])))  # [960, K]

  def sample_factors(self, num, random_state):
    copies = [random_state.permutation(self.GRID) for _ in range(-(-num // len(self.GRID)))]
    return np.concatenate(copies)[:num]


# Codes. `disentangled`: code k is factor k with its own scale and a little noise. `mixed`: the
# standardised factors rotated by a Hadamard matrix, so every code carries every factor equally.
# `uninformative`: the observation's noise half, independent of the factors.
SCALES = np.array([3.0, 0.5, 1.0, 2.0])
_STDS = np.sqrt((np.array(VALUES) + 1.0) / (12.0 * (np.array(VALUES) - 1.0)))  # std of each unit factor
HADAMARD = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]]) / 2.0  # orthogonal
CODES = {
  'disentangled': lambda x: x[:, :K] * SCALES + 0.01 * x[:, K:],
  'mixed': lambda x: ((x[:, :K] - 0.5) / _STDS) @ HADAMARD + 0.01 * x[:, K:],
  'uninformative': lambda x: x[:, K:],
}
exact = lambda x: x[:, :K] * SCALES  # noise-free disentangled code
CHANCE = np.mean(1.0 / np.array(VALUES))  # accuracy of guessing a factor's value: 0.185
SMALL = {
  'beta_vae': dict(num_train=NUM_TRAIN, num_eval=NUM_EVAL),
  'factor_vae': dict(num_train=NUM_TRAIN, num_eval=NUM_EVAL, num_variance_estimate=NUM_TRAIN),
  'mig': dict(num_train=NUM_TRAIN),
  'dci': dict(num_train=NUM_TRAIN, num_eval=NUM_EVAL),
  'modularity_explicitness': dict(num_train=NUM_TRAIN, num_eval=NUM_EVAL),
  'sap': dict(num_train=NUM_TRAIN, num_eval=NUM_EVAL),
}


NUM_CHANCE = 2000  # test-sample size where a score is checked against its exact chance level


def _chance_stderr(num_values, num):
  """Standard error of the mean over factors of `num` right-or-wrong guesses, each right with probability 1/n."""
  p = 1.0 / np.asarray(num_values, np.float64)
  return float(np.sqrt(np.sum(p * (1 - p) / num)) / len(p))


@functools.cache
def scores(metric, code, seed=0):
  return dis._METRIC_FUNCTIONS[metric](Factors(), CODES[code], seed=seed, **SMALL[metric])


def test_beta_vae_score():
  good, mixed, noise = (scores('beta_vae', c) for c in CODES)
  assert good['beta_vae_train_accuracy'] == good['beta_vae_eval_accuracy'] == 1.0
  assert mixed['beta_vae_eval_accuracy'] < 0.35  # about chance: every code changes alike whatever is fixed
  assert abs(noise['beta_vae_eval_accuracy'] - 1 / K) < 4 * _chance_stderr([K], NUM_EVAL)
  # On noise codes the predictions are independent of the uniform labels: expected accuracy exactly 1/K.
  many = dis.beta_vae_score(Factors(), CODES['uninformative'], seed=0, num_train=NUM_TRAIN, num_eval=NUM_CHANCE)
  assert abs(many['beta_vae_eval_accuracy'] - 1 / K) < 4 * _chance_stderr([K], NUM_CHANCE), many


def test_factor_vae_score():
  good, mixed, noise = (scores('factor_vae', c) for c in CODES)
  assert good == {'factor_vae_train_accuracy': 1.0, 'factor_vae_eval_accuracy': 1.0, 'factor_vae_num_active_dims': 4}
  assert mixed['factor_vae_eval_accuracy'] < 0.35
  assert abs(noise['factor_vae_eval_accuracy'] - 1 / K) < 4 * _chance_stderr([K], NUM_EVAL)
  # A noise code's vote is independent of the uniformly drawn factor: expected accuracy exactly 1/K.
  many = dis.factor_vae_score(
    Factors(), CODES['uninformative'], seed=0, num_train=NUM_TRAIN, num_eval=NUM_CHANCE, num_variance_estimate=NUM_TRAIN
  )
  assert abs(many['factor_vae_eval_accuracy'] - 1 / K) < 4 * _chance_stderr([K], NUM_CHANCE), many
  assert noise['factor_vae_train_accuracy'] >= noise['factor_vae_eval_accuracy'] - 0.05  # votes fit on train


def test_factor_vae_prunes_collapsed_codes():
  # Two extra codes with std 0.001 < 0.05 are ignored; a noise-free disentangled code always wins its vote.
  code = lambda x: np.concatenate([exact(x), 1e-3 * x[:, K : K + 2]], axis=1)
  result = dis.factor_vae_score(Factors(), code, seed=0, num_train=100, num_eval=50, num_variance_estimate=200)
  assert result == {'factor_vae_train_accuracy': 1.0, 'factor_vae_eval_accuracy': 1.0, 'factor_vae_num_active_dims': 4}
  collapsed = dis.factor_vae_score(Factors(), lambda x: 1e-3 * x[:, K:], seed=0, num_train=10, num_eval=10)
  assert collapsed == {'factor_vae_train_accuracy': 0, 'factor_vae_eval_accuracy': 0, 'factor_vae_num_active_dims': 0}


def test_mig():
  good, mixed, noise = (scores('mig', c)['mig'] for c in CODES)
  # Plug-in MI between independent discrete variables is biased up by about (a - 1)(b - 1) / 2N nats.
  assert 0.9 < good < 1.0
  assert mixed < 0.1 and noise < 0.05


def test_mig_closed_forms_on_the_full_grid():
  # The 20 equal-width bins separate up to 20 equally spaced levels, so a copied factor keeps all its
  # information; on the full grid the other factors have none, so MIG = 1, and 0 if each factor is copied twice.
  num = 2 * len(Grid.GRID)
  copied = dis.mig(Grid(), exact, seed=0, num_train=num, batch_size=len(Grid.GRID))
  np.testing.assert_allclose(copied['mig'], 1.0, atol=1e-12)
  twice = dis.mig(Grid(), lambda x: np.tile(exact(x), 2), seed=0, num_train=num, batch_size=len(Grid.GRID))
  np.testing.assert_allclose(twice['mig'], 0.0, atol=1e-12)
  modularity = dis.modularity_explicitness(Grid(), exact, seed=0, num_train=num, num_eval=10, batch_size=len(Grid.GRID))
  np.testing.assert_allclose(modularity['modularity'], 1.0, atol=1e-12)


def test_dci():
  good, mixed, noise = (scores('dci', c) for c in CODES)
  assert good['dci_disentanglement'] > 0.95 and good['dci_completeness'] > 0.95
  assert good['dci_informativeness_eval_accuracy'] > 0.99
  for bad in (mixed, noise):
    assert bad['dci_disentanglement'] < 0.1 and bad['dci_completeness'] < 0.1
  # Informativeness is not disentanglement: the trees still read the factors off mixed codes, but not off noise.
  assert mixed['dci_informativeness_eval_accuracy'] > 0.5
  # Predictions from noise are independent of the uniform factors: each accuracy has mean 1/n_k exactly.
  assert abs(noise['dci_informativeness_eval_accuracy'] - CHANCE) < 4 * _chance_stderr(VALUES, NUM_EVAL)


def test_dci_with_duplicated_codes():
  # As the reference's test: copies keep disentanglement, and completeness falls to 1 - log 2 / log D.
  result = dis.dci(Factors(), lambda x: np.tile(exact(x), 2), seed=0, num_train=300, num_eval=50)
  assert result['dci_disentanglement'] > 0.9
  assert abs(result['dci_completeness'] - (1 - math.log(2) / math.log(2 * K))) < 0.1


@pytest.mark.parametrize(
  'importance, disentanglement, completeness',
  [
    (np.eye(5), 1.0, 1.0),
    (np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), 1.0, 1.0),  # an unused code
    (np.zeros((10, 10)), 0.0, 0.0),
    (np.vstack([np.eye(5), np.eye(5)]), 1.0, 1 - math.log(2) / math.log(10)),  # each factor in two codes
    (np.hstack([np.eye(5), np.eye(5)]), 1 - math.log(2) / math.log(10), 1.0),  # each code for two factors
  ],
)
def test_dci_closed_forms(importance, disentanglement, completeness):
  np.testing.assert_allclose(dis._dci_from_importance(5 * importance), (disentanglement, completeness), atol=1e-7)


def test_sap():
  good, mixed, noise = (scores('sap', c)['sap'] for c in CODES)
  # A one-vs-rest linear SVM on one code cannot single out the middle levels of a factor, so even a
  # disentangled code is far from 1 with discrete factors of 4-8 levels; the others are near 0.
  assert good > 0.2 and good > mixed + 0.15
  assert mixed < 0.05 and noise < 0.05
  continuous = dis.sap(
    Factors(), CODES['disentangled'], seed=0, num_train=NUM_TRAIN, num_eval=1, continuous_factors=True
  )
  assert continuous['sap'] > 0.95  # squared correlation 1 with its own factor, about 0 with the rest


@pytest.mark.parametrize(
  'mutual_info, expected',
  [
    (np.eye(5), 1.0),
    (np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), 2 / 3),  # a code without information scores 0
    (np.zeros((10, 10)), 0.0),
    (np.vstack([np.eye(5), np.eye(5)]), 1.0),  # copies are modular
    (np.hstack([np.eye(5), np.eye(5)]), 1 - 1 / 9),  # each code for two of ten factors
  ],
)
def test_modularity_closed_forms(mutual_info, expected):
  np.testing.assert_allclose(dis._modularity(5 * mutual_info), expected)


def test_modularity_explicitness():
  good, mixed, noise = (scores('modularity_explicitness', c) for c in CODES)
  assert good['modularity'] > 0.98 and good['explicitness_eval_auc'] > 0.99
  assert mixed['modularity'] < 0.5
  assert mixed['explicitness_eval_auc'] > 0.99  # a rotation keeps the factors linearly decodable
  # Noise codes carry only the plug-in bias of the mutual information, spread evenly: modularity is
  # scale-free, so it stays middling, while explicitness is at chance.
  assert noise['modularity'] < 0.8
  assert abs(noise['explicitness_eval_auc'] - 0.5) < 0.05


def test_one_vs_rest_auc():
  labels = np.array([0, 1, 1, 0, 1])
  p1 = np.array([0.1, 0.8, 0.4, 0.5, 0.9])
  # Two classes: both columns give the binary AUC (5 of 6 pairs ordered).
  np.testing.assert_allclose(dis._one_vs_rest_auc(labels, np.stack([1 - p1, p1], 1), np.array([0, 1])), 5 / 6)
  # A class the labels lack is skipped instead of failing.
  probabilities = np.stack([1 - p1, p1, np.zeros(5)], 1)
  np.testing.assert_allclose(dis._one_vs_rest_auc(labels, probabilities, np.array([0, 1, 2])), 5 / 6)


@pytest.mark.parametrize('metric', ['beta_vae', 'factor_vae', 'mig', 'dci', 'modularity_explicitness', 'sap'])
def test_deterministic_for_a_seed(metric):
  counts = {name: max(value // 4, 2) for name, value in SMALL[metric].items()}
  run = lambda seed: dis._METRIC_FUNCTIONS[metric](Factors(), CODES['mixed'], seed=seed, **counts)
  first = run(3)
  assert run(3) == first
  assert all(isinstance(value, float) for value in first.values())
  if metric in ('mig', 'dci'):
    assert run(4) != first


def test_compute_all_matches_the_metrics_one_by_one():
  code, chosen = CODES['disentangled'], ('mig', 'factor_vae', 'sap')
  merged = dis.compute_all(
    Factors(), code, seed=1, metrics=chosen, num_train=100, num_eval=50, options={'sap': {'num_eval': 60}}
  )
  expected = {
    **dis.mig(Factors(), code, seed=1, num_train=100),
    **dis.factor_vae_score(Factors(), code, seed=1, num_train=100, num_eval=50, num_variance_estimate=100),
    **dis.sap(Factors(), code, seed=1, num_train=100, num_eval=60),
  }
  assert merged == expected
  assert list(merged) == [
    'factor_vae_train_accuracy',
    'factor_vae_eval_accuracy',
    'factor_vae_num_active_dims',
    'mig',
    'sap',
  ]


class _NotGroundTruth:
  num_factors = 2


class _OneFactor(Factors):
  num_factors = 1
  factors_num_values = [4]


class _ConstantFactor(Factors):
  factors_num_values = [4, 5, 6, 1]


def _changing_width():
  calls = []

  def code(x):
    calls.append(None)
    return x[:, : 2 + len(calls) % 2]

  return code


@pytest.mark.parametrize(
  'call, match',
  [
    (lambda: dis.mig(Factors(), exact, seed=0, num_train=0), r'`num_train` must be an integer >= 1; got 0'),
    (lambda: dis.dci(Factors(), exact, seed=0, num_eval=-5), r'`num_eval` must be an integer >= 1; got -5'),
    (lambda: dis.sap(Factors(), exact, seed=0, batch_size=2.0), r'`batch_size` must be an integer >= 1; got 2.0'),
    (lambda: dis.mig(Factors(), exact, seed=0, num_bins=0), r'`num_bins` must be an integer >= 1; got 0'),
    (
      lambda: dis.factor_vae_score(Factors(), exact, seed=0, batch_size=1),
      r'`batch_size` must be an integer >= 2 \(it estimates a variance\); got 1',
    ),
    (
      lambda: dis.factor_vae_score(Factors(), exact, seed=0, num_variance_estimate=1),
      r'`num_variance_estimate` must be an integer >= 2 \(it estimates a variance\); got 1',
    ),
    (
      lambda: dis.factor_vae_score(Factors(), exact, seed=0, prune_threshold=-0.1),
      r'`prune_threshold` must be a number >= 0; got -0.1',
    ),
    (lambda: dis.mig(Factors(), exact, seed=-1), r'`seed` must be an integer in \[0, 2\*\*32\); got -1'),
    (lambda: dis.beta_vae_score(Factors(), exact, seed=None), r'`seed` must be an integer in \[0, 2\*\*32\); got None'),
    (
      lambda: dis.mig(Factors(), lambda x: x.sum(1), seed=0, num_train=10),
      r'`representation_function` must map observations \[B, ...\] to codes \[B, D\]; '
      r'got codes of shape \(10,\) for a batch of B=10 observations',
    ),
    (
      lambda: dis.beta_vae_score(Factors(), lambda x: x[:-1], seed=0, num_train=10),
      r'got codes of shape \(63, 8\) for a batch of B=64 observations',
    ),
    (
      lambda: dis.mig(Factors(), lambda x: x[:, :1], seed=0, num_train=10),
      r'`representation_function` must return codes \[B, D\] with D >= 2 '
      r'\(MIG compares the two most informative codes\); got D=1',
    ),
    (
      lambda: dis.dci(Factors(), lambda x: x[:, :1], seed=0, num_train=10, num_eval=10),
      r'D >= 2 \(DCI normalises entropies by log D\); got D=1',
    ),
    (
      lambda: dis.sap(Factors(), lambda x: x[:, :1], seed=0, num_train=10, num_eval=10),
      r'D >= 2 \(SAP compares the two most predictive codes\); got D=1',
    ),
    (
      lambda: dis.mig(Factors(), lambda x: np.full(x.shape, np.inf), seed=0, num_train=10),
      r'`representation_function` returned non-finite codes \(nan or inf\)',
    ),
    (
      lambda: dis.mig(Factors(), lambda x: x.astype(str), seed=0, num_train=10),
      r'`representation_function` must return real numbers; got dtype <U',
    ),
    (
      lambda: dis.mig(Factors(), _changing_width(), seed=0, num_train=40),
      r'`representation_function` must return the same number of codes for every batch; got 2 after 3',
    ),
    (
      lambda: dis.mig(Factors(), 'encoder', seed=0),
      r'`representation_function` must be callable \(observations \[B, ...\] -> codes \[B, D\]\); got str',
    ),
    (
      lambda: dis.mig(_NotGroundTruth(), exact, seed=0),
      r'`ground_truth` must have the GroundTruthData protocol; _NotGroundTruth lacks '
      r"\['factors_num_values', 'sample_factors', 'sample_observations_from_factors'\]",
    ),
    (
      lambda: dis.dci(_OneFactor(), exact, seed=0),
      r'`ground_truth.num_factors` must be an integer >= 2 \(DCI normalises entropies by log K\); got 1',
    ),
    (
      lambda: dis.modularity_explicitness(_OneFactor(), exact, seed=0),
      r'`ground_truth.num_factors` must be an integer >= 2 \(modularity divides by K - 1\); got 1',
    ),
    (
      lambda: dis.mig(_ConstantFactor(), exact, seed=0),
      r'`ground_truth.factors_num_values` must give 4 counts \(one per factor\), each >= 2 '
      r'\(a constant factor has no information to measure\); got \[4, 5, 6, 1\]',
    ),
    (
      lambda: dis.compute_all(Factors(), exact, seed=0, metrics=('mig', 'irs')),
      r"`metrics` must be a sequence of names from \('beta_vae', .*\); got \('mig', 'irs'\)",
    ),
    (
      lambda: dis.compute_all(Factors(), exact, seed=0, metrics='mig'),
      r"`metrics` must be a sequence of names from .*; got 'mig'",
    ),
    (
      lambda: dis.compute_all(Factors(), exact, seed=0, metrics=('mig',), options={'dci': {}}),
      r"`options` has an entry for 'dci', which is not in `metrics` \('mig',\)",
    ),
    (
      lambda: dis.compute_all(Factors(), exact, seed=0, metrics=('mig',), options={'mig': {'num_eval': 5}}),
      r"`options\['mig'\]` has unknown keywords \['num_eval'\]; mig takes \['batch_size', 'num_train', 'num_bins'\]",
    ),
  ],
)
def test_errors(call, match):
  with pytest.raises(ValueError, match=match):
    call()


# Protocol details that change scores: each test below fails if the detail is dropped.


def test_factor_vae_normalises_each_code_by_its_global_spread():
  # Codes of very different scales, each a factor plus 5% noise: with the normalisation the code of the fixed
  # factor has the smallest relative variance (0.05^2 / ~0.15 against ~1 for the others) and wins every vote,
  # so both accuracies are exactly 1. Unnormalised, the small-scale code 2 (local variance 0.2^2 * ~0.15) beats
  # the fixed factor's own code 0 (10^2 * 0.05^2) and code 3 (3^2 * 0.05^2), and the accuracy falls to about 1/2.
  spread = np.array([10.0, 1.0, 0.2, 3.0])
  code = lambda x: (x[:, :K] + 0.05 * x[:, K:]) * spread
  result = dis.factor_vae_score(Factors(), code, seed=0, num_train=200, num_eval=100, num_variance_estimate=400)
  assert result == {'factor_vae_train_accuracy': 1.0, 'factor_vae_eval_accuracy': 1.0, 'factor_vae_num_active_dims': 4}


class _Binary:
  """Two binary factors, P(v_0 = 1) = `p_first`, v_1 fair; the observation is the factors plus 0.1 noise.

  After `switch_after` rendered observations, they show fresh factors instead of the given ones, so a
  representation informative on the training sample says nothing about the labels of the test sample.
  """

  num_factors = 2
  factors_num_values = [2, 2]

  def __init__(self, p_first=0.5, switch_after=None):
    self.p_first, self.switch_after, self.rendered = p_first, switch_after, 0

  def sample_factors(self, num, random_state):
    return np.stack([random_state.rand(num) < self.p_first, random_state.randint(2, size=num)], 1).astype(np.int64)

  def sample_observations_from_factors(self, factors, random_state):
    if self.switch_after is not None and self.rendered >= self.switch_after:
      factors = self.sample_factors(len(factors), random_state)
    self.rendered += len(factors)
    return factors + 0.1 * random_state.normal(size=factors.shape)


SAP_COUNT = 2000  # train and test samples of the SAP protocol tests
# Standard error of one accuracy near 1/2 on the test sample.
SAP_STDERR = math.sqrt(0.25 / SAP_COUNT)


def test_sap_scores_on_the_test_sample():
  # Scored on test data whose codes are independent of its factors, every accuracy has expectation 1/2, so
  # SAP (the gap between the two best of two) is a few standard errors at most; scored on the training data
  # the own code is right every time and the other at chance: SAP = 1 - 1/2.
  ground_truth = _Binary(switch_after=SAP_COUNT)
  result = dis.sap(ground_truth, lambda x: x, seed=0, num_train=SAP_COUNT, num_eval=SAP_COUNT)
  assert ground_truth.rendered == 2 * SAP_COUNT
  assert result['sap'] < 4 * SAP_STDERR, result


def test_sap_balances_the_classes():
  # v_0 is 1 in a tenth of the samples. Each code separates its own factor (accuracy 1), and a class-balanced
  # classifier on the other code splits on that code, independent of the label: accuracy 1/2 whatever the
  # class frequencies. So SAP = 1 - 1/2, within 4 standard errors of the mean of the two chance accuracies.
  # Unbalanced, the code of v_1 predicts v_0's majority class (accuracy 0.9) and SAP falls to about 0.3.
  result = dis.sap(_Binary(p_first=0.1), lambda x: x, seed=0, num_train=SAP_COUNT, num_eval=SAP_COUNT)
  assert abs(result['sap'] - 0.5) < 4 * SAP_STDERR / math.sqrt(2), result
