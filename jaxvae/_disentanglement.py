"""Disentanglement metrics with ground-truth factors, as evaluated by Locatello et al. (2019).

Six scores of a representation `r(x) -> z` against the factors `v` that generated
`x`, following the reference implementation that Locatello et al. (2019),
"Challenging Common Assumptions in the Unsupervised Learning of Disentangled
Representations" (ICML, https://arxiv.org/abs/1811.12359), used for their study:
google-research/disentanglement_lib, `disentanglement_lib/evaluation/metrics/*.py`,
with the sample counts of `disentanglement_lib/config/unsupervised_study_v1/metric_configs/*.gin`.

========================  =======================================  ==============================================
function                  defaults (reference config)              scores
========================  =======================================  ==============================================
`beta_vae_score`          batch 64, 10000 train, 5000 eval         logistic-regression accuracy, train and eval
`factor_vae_score`        batch 64, 10000 train, 5000 eval,        majority-vote accuracy, train and eval
                          10000 for variances, prune std < 0.05
`mig`                     10000 points, 20 bins                    mutual information gap
`dci`                     10000 train, 5000 eval                   disentanglement, completeness, informativeness
`sap`                     10000 train, 5000 eval, discrete         SAP score
`modularity_explicitness` 10000 train, 5000 eval, 20 bins          modularity, explicitness (ROC-AUC)
========================  =======================================  ==============================================

The ground truth is any object with disentanglement_lib's `GroundTruthData`
protocol (see `GroundTruthData`), and `representation_function` maps a batch of
observations `[B, *obs_shape]` to codes `[B, D]` (e.g. a jitted encoder mean,
returning numpy or jax arrays). Every metric draws all its randomness from
`np.random.RandomState(seed)` in the reference's order, so a seed gives the same
scores on every run, and observations are rendered and encoded `batch_size` at a
time so memory stays bounded. `compute_all` runs the suite, each metric with a
fresh `RandomState(seed)` as the reference's `evaluation.random_seed` does.

Departures from the reference, none of which changes a score's definition: every
metric calls its held-out count `num_eval` (the reference's DCI, SAP and modularity
call it `num_test`); FactorVAE renders its variance-estimate sample `batch_size` at
a time instead of all at once (the same draws for datasets whose rendering is
deterministic or draws its noise sequentially); the sklearn estimators get the
metric's `RandomState` (the reference leaves `GradientBoostingClassifier` and
`LinearSVC` unseeded, so its DCI can vary from run to run);
`factor_vae_num_active_dims` counts the active dimensions (the reference's
`len(mask)` returns all of them); explicitness scores the classes of the trained
classifier, so a class missing from the test sample is skipped instead of raising;
codes with zero spread are standardised with a scale of 1 instead of dividing by
zero. Where the reference relies on sklearn's defaults, today's apply:
`LogisticRegression` is multinomial lbfgs (one-vs-rest liblinear before sklearn
0.22, when the study ran) and `LinearSVC` solves the primal problem when there are
more samples than features (the dual before sklearn 1.5).

Example: two factors observed directly, and a code that rescales each of them.

>>> import numpy as np
>>> class TwoFactors:  # the GroundTruthData protocol
...   num_factors = 2
...   factors_num_values = [4, 5]
...   def sample_factors(self, num, random_state):
...     return np.stack([random_state.randint(n, size=num) for n in self.factors_num_values], axis=1)
...   def sample_observations_from_factors(self, factors, random_state):
...     return factors.astype(np.float32)
>>> encode = lambda x: x * np.array([2.0, 0.5])  # [B, 2] -> [B, 2]
>>> round(mig(TwoFactors(), encode, seed=0, num_train=2000)['mig'], 2)
1.0
>>> scores = compute_all(TwoFactors(), encode, seed=0, num_train=300, num_eval=200, metrics=('beta_vae', 'sap'))
>>> # SAP's one-code linear classifiers cannot single out middle values, so it stays well below 1 here.
>>> {name: round(value, 2) for name, value in scores.items()}
{'beta_vae_train_accuracy': 1.0, 'beta_vae_eval_accuracy': 1.0, 'sap': 0.32}
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from jaxvae import _checks

# scikit-learn and SciPy are imported where they are used: at module level
# they would double the time of `import jaxvae`, for every user of the bounds.


class GroundTruthData(Protocol):
  """A dataset with known generative factors (disentanglement_lib's `GroundTruthData` protocol).

  Attributes:
    num_factors: K, the number of factors.
    factors_num_values: the number of values of each factor, length K; factor
      `k` takes the integer values `0, ..., factors_num_values[k] - 1`.
  """

  num_factors: int
  factors_num_values: Sequence[int]

  def sample_factors(self, num: int, random_state: np.random.RandomState) -> np.ndarray:
    """Samples `num` factor vectors, integers `[num, K]`."""
    ...

  def sample_observations_from_factors(self, factors: np.ndarray, random_state: np.random.RandomState) -> np.ndarray:
    """Observations `[num, *obs_shape]` generated by `factors` `[num, K]`."""
    ...


RepresentationFunction = Callable[[np.ndarray], Any]  # observations [B, *obs_shape] -> codes [B, D]

# Metric names accepted by `compute_all`, in the order they run.
METRICS = ('beta_vae', 'factor_vae', 'mig', 'dci', 'modularity_explicitness', 'sap')


def beta_vae_score(
  ground_truth: GroundTruthData,
  representation_function: RepresentationFunction,
  *,
  seed: int,
  batch_size: int = 64,
  num_train: int = 10000,
  num_eval: int = 5000,
) -> dict[str, float]:
  """The BetaVAE metric: how well a linear classifier names the factor held fixed between pairs.

  Higgins et al. (2017), "beta-VAE: Learning Basic Visual Concepts with a
  Constrained Variational Framework" (ICLR, https://openreview.net/forum?id=Sy2fzU9gl),
  as `compute_beta_vae_sklearn` in disentanglement_lib `evaluation/metrics/beta_vae.py`.
  Each point draws a factor `k` uniformly, then `L = batch_size` pairs of factor
  vectors `(v, w)` sharing `v_k = w_k`, and has the feature
  `(1/L) sum_l |r(x(v_l)) - r(x(w_l))|` `[D]` and the label `k`. An sklearn
  `LogisticRegression` (default settings, as the reference) is fitted on
  `num_train` points and scored on them and on `num_eval` fresh points. Chance
  level is about `1/K`.

  Defaults: `batch_size=64, num_train=10000, num_eval=5000`, from
  `config/unsupervised_study_v1/metric_configs/beta_vae_sklearn.gin`. Each point
  encodes two batches of `batch_size` observations.

  Args:
    ground_truth: the dataset, with the `GroundTruthData` protocol.
    representation_function: observations `[B, *obs_shape]` -> codes `[B, D]`.
    seed: seed of the `np.random.RandomState` that draws everything.
    batch_size: pairs averaged into each point (and the encoder's batch size).
    num_train: points the classifier is fitted on.
    num_eval: points it is evaluated on.

  Returns:
    `beta_vae_train_accuracy` and `beta_vae_eval_accuracy`, in [0, 1].

  Raises:
    ValueError: for counts < 1, a bad seed or ground truth, or codes not of shape `[B, D]`.
  """
  from sklearn import linear_model  # pylint: disable=import-outside-toplevel

  _check_counts(batch_size=batch_size, num_train=num_train, num_eval=num_eval)
  _check_ground_truth(ground_truth)
  random_state = _random_state(seed)
  encode = _Encoder(representation_function)
  train_points, train_labels = _beta_vae_points(ground_truth, encode, random_state, batch_size, num_train)
  model = linear_model.LogisticRegression(random_state=random_state)
  model.fit(train_points, train_labels)
  train_accuracy = np.mean(model.predict(train_points) == train_labels)
  eval_points, eval_labels = _beta_vae_points(ground_truth, encode, random_state, batch_size, num_eval)
  eval_accuracy = np.mean(model.predict(eval_points) == eval_labels)
  return {'beta_vae_train_accuracy': float(train_accuracy), 'beta_vae_eval_accuracy': float(eval_accuracy)}


def _beta_vae_points(
  ground_truth: GroundTruthData,
  encode: _Encoder,
  random_state: np.random.RandomState,
  batch_size: int,
  num_points: int,
) -> tuple[np.ndarray, np.ndarray]:
  """Features `[N, D]` and labels `[N]` of the BetaVAE metric, drawn in the reference's order."""
  features, labels = None, np.zeros(num_points, np.int64)
  for i in range(num_points):
    index = random_state.randint(ground_truth.num_factors)
    factors1 = np.array(ground_truth.sample_factors(batch_size, random_state))  # [L, K]
    factors2 = np.array(ground_truth.sample_factors(batch_size, random_state))  # [L, K]
    factors2[:, index] = factors1[:, index]
    observations1 = ground_truth.sample_observations_from_factors(factors1, random_state)
    observations2 = ground_truth.sample_observations_from_factors(factors2, random_state)
    difference = np.abs(encode(observations1) - encode(observations2))  # [L, D]
    if features is None:
      features = np.zeros((num_points, difference.shape[1]))
    features[i], labels[i] = difference.mean(axis=0), index
  return features, labels


def factor_vae_score(
  ground_truth: GroundTruthData,
  representation_function: RepresentationFunction,
  *,
  seed: int,
  batch_size: int = 64,
  num_train: int = 10000,
  num_eval: int = 5000,
  num_variance_estimate: int = 10000,
  prune_threshold: float = 0.05,
) -> dict[str, float]:
  """The FactorVAE metric: a majority vote maps the least-varying normalised code to the fixed factor.

  Kim & Mnih (2018), "Disentangling by Factorising" (ICML, https://arxiv.org/abs/1802.05983),
  as `compute_factor_vae` in disentanglement_lib `evaluation/metrics/factor_vae.py`.
  The spread `s_d` of each code is estimated on `num_variance_estimate` samples
  (`ddof=1`), and codes with `s_d < prune_threshold` (collapsed to the prior)
  are dropped. Each point draws a factor `k`, `L = batch_size` factor vectors
  sharing the value of factor `k`, and votes for `(k, d*)` with
  `d* = argmin_d Var_L(z_d) / s_d^2` over the active codes. The classifier maps
  each code `d` to `argmax_k votes[k, d]` of the `num_train` training votes; the
  accuracy is `sum_d votes[c(d), d] / sum votes` on the training votes and on
  `num_eval` fresh ones. Chance level is about `1/K`.

  Defaults: `batch_size=64, num_train=10000, num_eval=5000,
  num_variance_estimate=10000` and `prune_dims.threshold=0.05` from
  `config/unsupervised_study_v1/metric_configs/factor_vae_metric.gin` (the code's
  own default threshold is 0).

  Args:
    ground_truth: the dataset, with the `GroundTruthData` protocol.
    representation_function: observations `[B, *obs_shape]` -> codes `[B, D]`.
    seed: seed of the `np.random.RandomState` that draws everything.
    batch_size: samples per vote (and the encoder's batch size); at least 2.
    num_train: votes the classifier is built from.
    num_eval: votes it is evaluated on.
    num_variance_estimate: samples for the global spread of each code; at least 2.
    prune_threshold: codes whose global standard deviation is below this are ignored.

  Returns:
    `factor_vae_train_accuracy`, `factor_vae_eval_accuracy` (both 0 if no code is
    active) and `factor_vae_num_active_dims`.

  Raises:
    ValueError: for bad counts or threshold, a bad seed or ground truth, or codes not of shape `[B, D]`.
  """
  _check_counts(num_train=num_train, num_eval=num_eval)
  for name, value in (('batch_size', batch_size), ('num_variance_estimate', num_variance_estimate)):
    if not isinstance(value, int) or isinstance(value, bool) or value < 2:
      raise ValueError(f'`{name}` must be an integer >= 2 (it estimates a variance); got {value!r}.')
  if not isinstance(prune_threshold, int | float) or not prune_threshold >= 0:
    raise ValueError(f'`prune_threshold` must be a number >= 0; got {prune_threshold!r}.')
  _check_ground_truth(ground_truth)
  random_state = _random_state(seed)
  encode = _Encoder(representation_function)

  # The reference draws all factors, then renders them; rendering batch by batch keeps memory bounded.
  factors = np.asarray(ground_truth.sample_factors(num_variance_estimate, random_state))  # [N, K]
  codes = np.concatenate(
    [
      encode(ground_truth.sample_observations_from_factors(factors[i : i + batch_size], random_state))
      for i in range(0, num_variance_estimate, batch_size)
    ]
  )  # [N, D]
  global_variances = np.var(codes, axis=0, ddof=1)  # [D]
  active_dims = np.flatnonzero(np.sqrt(global_variances) >= prune_threshold)
  if not active_dims.size:
    return {'factor_vae_train_accuracy': 0.0, 'factor_vae_eval_accuracy': 0.0, 'factor_vae_num_active_dims': 0.0}

  def votes(num_points: int) -> np.ndarray:  # [K, D]
    counts = np.zeros((ground_truth.num_factors, len(global_variances)), np.int64)
    for _ in range(num_points):
      index = random_state.randint(ground_truth.num_factors)
      factors = np.array(ground_truth.sample_factors(batch_size, random_state))  # [L, K]
      factors[:, index] = factors[0, index]
      local_variances = np.var(
        encode(ground_truth.sample_observations_from_factors(factors, random_state)), axis=0, ddof=1
      )  # [D]
      argmin = np.argmin(local_variances[active_dims] / global_variances[active_dims])
      counts[index, active_dims[argmin]] += 1
    return counts

  train_votes = votes(num_train)
  classifier = np.argmax(train_votes, axis=0)  # [D], the factor each code is taken to encode
  accuracy = lambda counts: counts[classifier, np.arange(counts.shape[1])].sum() / counts.sum()
  train_accuracy = accuracy(train_votes)
  eval_accuracy = accuracy(votes(num_eval))
  return {
    'factor_vae_train_accuracy': float(train_accuracy),
    'factor_vae_eval_accuracy': float(eval_accuracy),
    'factor_vae_num_active_dims': float(active_dims.size),
  }


def mig(
  ground_truth: GroundTruthData,
  representation_function: RepresentationFunction,
  *,
  seed: int,
  batch_size: int = 16,
  num_train: int = 10000,
  num_bins: int = 20,
) -> dict[str, float]:
  """The mutual information gap: how much more one code knows about each factor than any other.

  Chen et al. (2018), "Isolating Sources of Disentanglement in Variational
  Autoencoders" (NeurIPS, https://arxiv.org/abs/1802.04942), as `compute_mig`
  in disentanglement_lib `evaluation/metrics/mig.py`:

    MIG = (1/K) sum_k (I(z_(1); v_k) - I(z_(2); v_k)) / H(v_k),

  where `z_(1), z_(2)` are the two codes with the most mutual information with
  factor `v_k`. Each code is discretised into `num_bins` equal-width bins over its
  range on the sample (`histogram_discretizer`, `evaluation/metrics/utils.py`),
  and `I` and `H` are plug-in estimates in nats (`sklearn.metrics.mutual_info_score`)
  on `num_train` samples. 1 for codes that each copy a different factor of at
  most `num_bins` equally spaced values (up to the positive bias of the plug-in
  estimate, about `(bins - 1)(values - 1) / (2 N)` nats), 0 when every factor is
  copied into two codes; factors with more values than bins lose information to
  the binning (dSprites' 40 orientations and 32 positions do).

  Defaults: `num_train=10000`, `num_bins=20` (histogram discretiser) from
  `config/unsupervised_study_v1/metric_configs/mig.gin`; `batch_size=16` is the
  function's default in `mig.py`.

  Args:
    ground_truth: the dataset, with the `GroundTruthData` protocol.
    representation_function: observations `[B, *obs_shape]` -> codes `[B, D]`, `D >= 2`.
    seed: seed of the `np.random.RandomState` that draws everything.
    batch_size: samples drawn and encoded at a time (it sets the order of the draws).
    num_train: samples the mutual information is estimated on.
    num_bins: bins per code.

  Returns:
    `mig`, in [0, 1].

  Raises:
    ValueError: for counts < 1, a bad seed or ground truth, codes not of shape `[B, D]`, or `D < 2`.
  """
  _check_counts(batch_size=batch_size, num_train=num_train, num_bins=num_bins)
  _check_ground_truth(ground_truth)
  random_state = _random_state(seed)
  codes, factors = _sample_codes(ground_truth, representation_function, random_state, num_train, batch_size)
  _check_code_dims(codes, 2, 'MIG compares the two most informative codes')
  mutual_info = _discrete_mutual_info(_histogram_discretize(codes, num_bins), factors)  # [D, K]
  return {'mig': _mutual_information_gap(mutual_info, _discrete_entropy(factors))}


def dci(
  ground_truth: GroundTruthData,
  representation_function: RepresentationFunction,
  *,
  seed: int,
  batch_size: int = 16,
  num_train: int = 10000,
  num_eval: int = 5000,
) -> dict[str, float]:
  """Disentanglement, completeness and informativeness from gradient-boosted-tree importances.

  Eastwood & Williams (2018), "A Framework for the Quantitative Evaluation of
  Disentangled Representations" (ICLR, https://openreview.net/forum?id=By-7dz-AZ),
  Section 2, as `compute_dci` in disentanglement_lib `evaluation/metrics/dci.py`.
  For each factor `k` an sklearn `GradientBoostingClassifier` (default settings:
  100 stages of depth-3 trees) predicts `v_k` from all codes on `num_train`
  samples; its impurity importances form column `k` of `R` `[D, K]`. With
  `H_b` the entropy in base `b` of a normalised row or column,

    disentanglement = sum_d rho_d (1 - H_K(R_d. / sum_k R_dk)),  rho_d = sum_k R_dk / sum R,
    completeness = sum_k rho_k (1 - H_D(R_.k / sum_d R_dk)),     rho_k = sum_d R_dk / sum R,

  and informativeness is the classifiers' accuracy, averaged over factors, on the
  training samples and on `num_eval` fresh ones (the reference reports accuracy
  where the paper uses prediction error). Both scores are 1 for codes that each
  copy a different factor; completeness falls to `1 - log 2 / log D` when every
  factor is copied into two codes.

  Defaults: `num_train=10000, num_eval=5000` (the reference's `num_test`) from
  `config/unsupervised_study_v1/metric_configs/dci.gin`; `batch_size=16` is the
  function's default in `dci.py`. This is the suite's expensive metric: the
  trees cost time in the number of values of each factor.

  Unlike the reference, the trees are seeded: each `GradientBoostingClassifier`
  gets the metric's `RandomState`, so a seed gives the same scores on every run.
  The reference constructs them without `random_state`, so its trees draw from
  NumPy's global state (feature permutations when splits tie) and its scores
  vary from run to run; on the same samples the two differ by about 1e-3 in
  disentanglement and completeness, run-to-run noise of the reference itself.

  Args:
    ground_truth: the dataset, with the `GroundTruthData` protocol; at least 2 factors.
    representation_function: observations `[B, *obs_shape]` -> codes `[B, D]`, `D >= 2`.
    seed: seed of the `np.random.RandomState` that draws everything, the trees' included.
    batch_size: samples drawn and encoded at a time (it sets the order of the draws).
    num_train: samples the trees are fitted on.
    num_eval: samples the test accuracy is measured on.

  Returns:
    `dci_disentanglement`, `dci_completeness` (in [0, 1]),
    `dci_informativeness_train_accuracy` and `dci_informativeness_eval_accuracy`.

  Raises:
    ValueError: for counts < 1, a bad seed or ground truth, codes not of shape `[B, D]`, or `D < 2`.
  """
  from sklearn import ensemble  # pylint: disable=import-outside-toplevel

  _check_counts(batch_size=batch_size, num_train=num_train, num_eval=num_eval)
  _check_ground_truth(ground_truth, min_factors=2, why='DCI normalises entropies by log K')
  random_state = _random_state(seed)
  encode = _Encoder(representation_function)
  codes_train, factors_train = _sample_codes(ground_truth, encode, random_state, num_train, batch_size)
  codes_eval, factors_eval = _sample_codes(ground_truth, encode, random_state, num_eval, batch_size)
  _check_code_dims(codes_train, 2, 'DCI normalises entropies by log D')
  importance = np.zeros((codes_train.shape[1], ground_truth.num_factors))  # [D, K]
  train_accuracy, eval_accuracy = [], []
  for k in range(ground_truth.num_factors):
    model = ensemble.GradientBoostingClassifier(random_state=random_state)
    model.fit(codes_train, factors_train[:, k])
    importance[:, k] = np.abs(model.feature_importances_)
    train_accuracy.append(np.mean(model.predict(codes_train) == factors_train[:, k]))
    eval_accuracy.append(np.mean(model.predict(codes_eval) == factors_eval[:, k]))
  disentanglement, completeness = _dci_from_importance(importance)
  return {
    'dci_disentanglement': disentanglement,
    'dci_completeness': completeness,
    'dci_informativeness_train_accuracy': float(np.mean(train_accuracy)),
    'dci_informativeness_eval_accuracy': float(np.mean(eval_accuracy)),
  }


def sap(
  ground_truth: GroundTruthData,
  representation_function: RepresentationFunction,
  *,
  seed: int,
  batch_size: int = 16,
  num_train: int = 10000,
  num_eval: int = 5000,
  continuous_factors: bool = False,
) -> dict[str, float]:
  """The Separated Attribute Predictability score: the gap between the two codes that best predict each factor.

  Kumar et al. (2018), "Variational Inference of Disentangled Latent Concepts
  from Unlabeled Observations" (ICLR, https://openreview.net/forum?id=H1kG7GZAW),
  Section 3, as `compute_sap` in disentanglement_lib `evaluation/metrics/sap_score.py`:

    SAP = (1/K) sum_k (S_(1)k - S_(2)k),

  the mean over factors of the difference between the two largest entries of
  column `k` of the score matrix `S` `[D, K]`. For discrete factors (the study's
  setting) `S_dk` is the accuracy, on `num_eval` samples, of an sklearn
  `LinearSVC(C=0.01, class_weight='balanced')` predicting `v_k` from code `d`
  alone, fitted on `num_train` samples; for continuous factors it is the squared
  correlation of `z_d` and `v_k` on the training samples (0 for a constant code).

  Defaults: `num_train=10000, num_eval=5000` (the reference's `num_test`) and
  `continuous_factors=False` from
  `config/unsupervised_study_v1/metric_configs/sap_score.gin`; `batch_size=16`
  is the function's default in `sap_score.py`.

  Args:
    ground_truth: the dataset, with the `GroundTruthData` protocol.
    representation_function: observations `[B, *obs_shape]` -> codes `[B, D]`, `D >= 2`.
    seed: seed of the `np.random.RandomState` that draws everything.
    batch_size: samples drawn and encoded at a time (it sets the order of the draws).
    num_train: samples the classifiers are fitted on.
    num_eval: samples their accuracy is measured on (drawn even if `continuous_factors`).
    continuous_factors: score with squared correlations instead of classifiers.

  Returns:
    `sap`, in [0, 1].

  Raises:
    ValueError: for counts < 1, a bad seed or ground truth, codes not of shape `[B, D]`, or `D < 2`.
  """
  from sklearn import svm  # pylint: disable=import-outside-toplevel

  _check_counts(batch_size=batch_size, num_train=num_train, num_eval=num_eval)
  _check_ground_truth(ground_truth)
  random_state = _random_state(seed)
  encode = _Encoder(representation_function)
  codes_train, factors_train = _sample_codes(ground_truth, encode, random_state, num_train, batch_size)
  codes_eval, factors_eval = _sample_codes(ground_truth, encode, random_state, num_eval, batch_size)
  _check_code_dims(codes_train, 2, 'SAP compares the two most predictive codes')
  num_codes, num_factors = codes_train.shape[1], ground_truth.num_factors
  scores = np.zeros((num_codes, num_factors))  # [D, K]
  for d in range(num_codes):
    for k in range(num_factors):
      if continuous_factors:
        covariance = np.cov(codes_train[:, d], factors_train[:, k], ddof=1)  # [2, 2]
        if covariance[0, 0] > 1e-12:
          scores[d, k] = covariance[0, 1] ** 2 / (covariance[0, 0] * covariance[1, 1])
      else:
        classifier = svm.LinearSVC(C=0.01, class_weight='balanced', random_state=random_state)
        classifier.fit(codes_train[:, d : d + 1], factors_train[:, k])
        scores[d, k] = np.mean(classifier.predict(codes_eval[:, d : d + 1]) == factors_eval[:, k])
  return {'sap': _top_two_gap(scores)}


def modularity_explicitness(
  ground_truth: GroundTruthData,
  representation_function: RepresentationFunction,
  *,
  seed: int,
  batch_size: int = 16,
  num_train: int = 10000,
  num_eval: int = 5000,
  num_bins: int = 20,
) -> dict[str, float]:
  """Modularity (each code informs about one factor) and explicitness (factors are linearly decodable).

  Ridgeway & Mozer (2018), "Learning Deep Disentangled Embeddings With the
  F-Statistic Loss" (NeurIPS, https://arxiv.org/abs/1802.05312), Section 3, as
  `compute_modularity_explicitness` in disentanglement_lib
  `evaluation/metrics/modularity_explicitness.py`. With `m_dk` the mutual
  information of code `d` (discretised into `num_bins` bins, as for `mig`) and
  factor `k` on `num_train` samples, and `theta_d = max_k m_dk`,

    modularity = (1/D) sum_d (1 - sum_{k != k*} m_dk^2 / (theta_d^2 (K - 1))),

  where a code with `theta_d = 0` scores 0. Explicitness is, per factor, the
  ROC-AUC (macro average of one-vs-rest over its values) of an sklearn
  `LogisticRegression` (default settings) predicting `v_k` from all codes
  standardised with the training mean and standard deviation, averaged over
  factors, on the training samples and on `num_eval` fresh ones. Modularity is 1
  for codes that each carry one factor (copies included); explicitness is about
  0.5 for uninformative codes.

  Defaults: `num_train=10000, num_eval=5000` (the reference's `num_test`) and
  `num_bins=20` (histogram discretiser) from
  `config/unsupervised_study_v1/metric_configs/modularity_explicitness.gin`;
  `batch_size=16` is the function's default in `modularity_explicitness.py`.

  Args:
    ground_truth: the dataset, with the `GroundTruthData` protocol; at least 2 factors.
    representation_function: observations `[B, *obs_shape]` -> codes `[B, D]`.
    seed: seed of the `np.random.RandomState` that draws everything.
    batch_size: samples drawn and encoded at a time (it sets the order of the draws).
    num_train: samples the mutual information and the classifiers are fitted on.
    num_eval: samples the test ROC-AUC is measured on.
    num_bins: bins per code for the mutual information.

  Returns:
    `modularity` (in [0, 1]), `explicitness_train_auc` and `explicitness_eval_auc` (in [0, 1]).

  Raises:
    ValueError: for counts < 1, a bad seed or ground truth, or codes not of shape `[B, D]`.
  """
  from sklearn import linear_model  # pylint: disable=import-outside-toplevel

  _check_counts(batch_size=batch_size, num_train=num_train, num_eval=num_eval, num_bins=num_bins)
  _check_ground_truth(ground_truth, min_factors=2, why='modularity divides by K - 1')
  random_state = _random_state(seed)
  encode = _Encoder(representation_function)
  codes_train, factors_train = _sample_codes(ground_truth, encode, random_state, num_train, batch_size)
  codes_eval, factors_eval = _sample_codes(ground_truth, encode, random_state, num_eval, batch_size)
  mutual_info = _discrete_mutual_info(_histogram_discretize(codes_train, num_bins), factors_train)  # [D, K]
  mean, std = codes_train.mean(axis=0), codes_train.std(axis=0)  # [D] each
  std = np.where(std > 0, std, 1.0)  # a constant code carries nothing; avoid 0 / 0
  x_train, x_eval = (codes_train - mean) / std, (codes_eval - mean) / std
  train_auc, eval_auc = [], []
  for k in range(ground_truth.num_factors):
    classifier = linear_model.LogisticRegression().fit(x_train, factors_train[:, k])
    train_auc.append(_one_vs_rest_auc(factors_train[:, k], classifier.predict_proba(x_train), classifier.classes_))
    eval_auc.append(_one_vs_rest_auc(factors_eval[:, k], classifier.predict_proba(x_eval), classifier.classes_))
  return {
    'modularity': _modularity(mutual_info),
    'explicitness_train_auc': float(np.mean(train_auc)),
    'explicitness_eval_auc': float(np.mean(eval_auc)),
  }


_POSITIONAL_AND_SEED = ('ground_truth', 'representation_function', 'seed')
_METRIC_FUNCTIONS: dict[str, Callable[..., dict[str, float]]] = {
  'beta_vae': beta_vae_score,
  'factor_vae': factor_vae_score,
  'mig': mig,
  'dci': dci,
  'modularity_explicitness': modularity_explicitness,
  'sap': sap,
}


def compute_all(
  ground_truth: GroundTruthData,
  representation_function: RepresentationFunction,
  *,
  seed: int,
  metrics: Sequence[str] = METRICS,
  num_train: int | None = None,
  num_eval: int | None = None,
  options: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, float]:
  """Runs the disentanglement metrics and merges their scores, each with a fresh `RandomState(seed)`.

  With no overrides every metric runs with the reference's sample counts (see
  the module docstring), as in Locatello et al. (2019). `num_train` and
  `num_eval` scale the whole suite down for quick runs: they replace every
  selected metric's `num_train` (and FactorVAE's `num_variance_estimate`, which
  the reference sets equal to it) and `num_eval`. `options` then overrides any
  keyword of one metric, e.g. `{'dci': {'num_train': 2000}, 'factor_vae':
  {'batch_size': 32}}`.

  Args:
    ground_truth: the dataset, with the `GroundTruthData` protocol.
    representation_function: observations `[B, *obs_shape]` -> codes `[B, D]`.
    seed: seed of each metric's `np.random.RandomState`; the same seed gives the
      same scores as calling the metric functions one by one.
    metrics: names from `METRICS` to run, in that order.
    num_train: if given, the training (and variance-estimate) sample count of every metric.
    num_eval: if given, the evaluation sample count of every metric that has one.
    options: metric name -> keyword arguments for that metric's function.

  Returns:
    The union of the selected metrics' score dicts (their keys do not overlap).

  Raises:
    ValueError: for an unknown metric or option, and whatever the metrics raise.
  """
  unknown = [name for name in metrics if name not in _METRIC_FUNCTIONS]
  if unknown or isinstance(metrics, str):
    raise ValueError(f'`metrics` must be a sequence of names from {METRICS}; got {metrics!r}.')
  options = dict(options or {})
  for name, kwargs in options.items():
    if name not in metrics:
      raise ValueError(f'`options` has an entry for {name!r}, which is not in `metrics` {tuple(metrics)}.')
    allowed = [p for p in inspect.signature(_METRIC_FUNCTIONS[name]).parameters if p not in _POSITIONAL_AND_SEED]
    bad = sorted(set(kwargs) - set(allowed))
    if bad:
      raise ValueError(f'`options[{name!r}]` has unknown keywords {bad}; {name} takes {allowed}.')
  scores = {}
  for name in METRICS:
    if name not in metrics:
      continue
    function = _METRIC_FUNCTIONS[name]
    parameters = inspect.signature(function).parameters
    kwargs = {}
    if num_train is not None:
      kwargs['num_train'] = num_train
      if 'num_variance_estimate' in parameters:
        kwargs['num_variance_estimate'] = num_train
    if num_eval is not None and 'num_eval' in parameters:
      kwargs['num_eval'] = num_eval
    kwargs.update(options.get(name, {}))
    scores.update(function(ground_truth, representation_function, seed=seed, **kwargs))
  return scores


# Sampling and encoding.


class _Encoder:
  """Calls the representation function and checks that every batch gives float codes `[B, D]` with the same D."""

  def __init__(self, representation_function: RepresentationFunction):
    if not callable(representation_function):
      raise ValueError(
        f'`representation_function` must be callable (observations [B, ...] -> codes [B, D]); '
        f'got {type(representation_function).__name__}.'
      )
    self.function = representation_function
    self.num_codes = None

  def __call__(self, observations: np.ndarray) -> np.ndarray:
    num = len(observations)
    codes = np.asarray(self.function(observations))
    if codes.ndim != 2 or codes.shape[0] != num:
      raise ValueError(
        f'`representation_function` must map observations [B, ...] to codes [B, D]; '
        f'got codes of shape {codes.shape} for a batch of B={num} observations.'
      )
    if not np.issubdtype(codes.dtype, np.number) or np.issubdtype(codes.dtype, np.complexfloating):
      raise ValueError(f'`representation_function` must return real numbers; got dtype {codes.dtype}.')
    codes = codes.astype(np.float64)
    if not np.isfinite(codes).all():
      raise ValueError('`representation_function` returned non-finite codes (nan or inf).')
    if self.num_codes is None:
      self.num_codes = codes.shape[1]
    elif codes.shape[1] != self.num_codes:
      raise ValueError(
        f'`representation_function` must return the same number of codes for every batch; '
        f'got {codes.shape[1]} after {self.num_codes}.'
      )
    return codes


def _sample_codes(
  ground_truth: GroundTruthData,
  representation_function: RepresentationFunction | _Encoder,
  random_state: np.random.RandomState,
  num_points: int,
  batch_size: int,
) -> tuple[np.ndarray, np.ndarray]:
  """Codes `[N, D]` and factors `[N, K]` of `num_points` samples, drawn `batch_size` at a time.

  The draws are those of disentanglement_lib's `utils.generate_batch_factor_code`
  (factors, then observations, batch by batch), transposed to put samples first.
  """
  encode = (
    representation_function if isinstance(representation_function, _Encoder) else _Encoder(representation_function)
  )
  codes, factors = [], []
  for start in range(0, num_points, batch_size):
    batch_factors = np.asarray(ground_truth.sample_factors(min(batch_size, num_points - start), random_state))
    codes.append(encode(ground_truth.sample_observations_from_factors(batch_factors, random_state)))
    factors.append(batch_factors)
  return np.concatenate(codes), np.concatenate(factors).astype(np.int64)


# Scores from statistics: pure functions of arrays, shared by the metrics and tested on closed forms.


def _histogram_discretize(codes: np.ndarray, num_bins: int) -> np.ndarray:
  """Bin indices `[N, D]` (1 to `num_bins`) of `num_bins` equal-width bins over each code's range.

  As `_histogram_discretize` in disentanglement_lib `evaluation/metrics/utils.py`.
  """
  binned = np.zeros(codes.shape, np.int64)
  for d in range(codes.shape[1]):
    binned[:, d] = np.digitize(codes[:, d], np.histogram(codes[:, d], num_bins)[1][:-1])
  return binned


def _discrete_mutual_info(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
  """Plug-in mutual information in nats `[D, K]` between discrete codes `[N, D]` and factors `[N, K]`."""
  from sklearn import metrics  # pylint: disable=import-outside-toplevel

  return np.array(
    [
      [metrics.mutual_info_score(factors[:, k], codes[:, d]) for k in range(factors.shape[1])]
      for d in range(codes.shape[1])
    ]
  ).reshape(codes.shape[1], factors.shape[1])


def _discrete_entropy(factors: np.ndarray) -> np.ndarray:
  """Plug-in entropy in nats `[K]` of each factor column of `factors` `[N, K]`."""
  from sklearn import metrics  # pylint: disable=import-outside-toplevel

  return np.array([metrics.mutual_info_score(factors[:, k], factors[:, k]) for k in range(factors.shape[1])])


def _mutual_information_gap(mutual_info: np.ndarray, entropy: np.ndarray) -> float:
  """MIG from the mutual information `[D, K]` (`D >= 2`) and the factors' entropies `[K]`."""
  top = np.sort(mutual_info, axis=0)[::-1]  # [D, K], descending
  return float(np.mean((top[0] - top[1]) / entropy))


def _top_two_gap(scores: np.ndarray) -> float:
  """Mean over columns of the gap between the two largest entries of `scores` `[D, K]`."""
  top = np.sort(scores, axis=0)
  return float(np.mean(top[-1] - top[-2]))


def _dci_from_importance(importance: np.ndarray) -> tuple[float, float]:
  """DCI disentanglement and completeness from a non-negative importance matrix `[D, K]`.

  As `disentanglement` and `completeness` in disentanglement_lib
  `evaluation/metrics/dci.py`, down to its `1e-11` offset inside the entropies; an
  all-zero matrix gives 0 for both.
  """
  import scipy.stats  # pylint: disable=import-outside-toplevel

  num_codes, num_factors = importance.shape
  per_code = 1.0 - scipy.stats.entropy(importance.T + 1e-11, base=num_factors)  # [D]
  per_factor = 1.0 - scipy.stats.entropy(importance + 1e-11, base=num_codes)  # [K]
  weights = importance if importance.sum() > 0 else np.ones_like(importance)
  code_weights = weights.sum(axis=1) / weights.sum()  # [D]
  factor_weights = weights.sum(axis=0) / weights.sum()  # [K]
  return float(np.sum(per_code * code_weights)), float(np.sum(per_factor * factor_weights))


def _modularity(mutual_info: np.ndarray) -> float:
  """Modularity from the mutual information `[D, K]`, `K >= 2`; codes with no information score 0."""
  squared = np.square(mutual_info)  # [D, K]
  largest = squared.max(axis=1)  # [D]
  informative = largest > 0
  deviation = (squared.sum(axis=1) - largest) / np.where(informative, largest * (squared.shape[1] - 1), 1.0)
  return float(np.mean(np.where(informative, 1.0 - deviation, 0.0)))


def _one_vs_rest_auc(labels: np.ndarray, probabilities: np.ndarray, classes: np.ndarray) -> float:
  """Macro ROC-AUC of class probabilities `[N, C]` for integer labels `[N]`, over the classes that occur.

  The reference binarises the labels that occur with `MultiLabelBinarizer`,
  which matches `classes` whenever every class occurs in `labels`.
  """
  from sklearn import metrics  # pylint: disable=import-outside-toplevel

  indicators = labels[:, None] == classes[None, :]  # [N, C]
  scorable = indicators.any(axis=0) & ~indicators.all(axis=0)  # [C], both outcomes present
  return float(metrics.roc_auc_score(indicators[:, scorable], probabilities[:, scorable]))


# Argument checks.


def _check_counts(**counts: object) -> None:
  for name, value in counts.items():
    _checks.check_positive_int(name, value)


def _random_state(seed: object) -> np.random.RandomState:
  if not isinstance(seed, int | np.integer) or isinstance(seed, bool) or not 0 <= seed < 2**32:
    raise ValueError(f'`seed` must be an integer in [0, 2**32); got {seed!r}.')
  return np.random.RandomState(seed)


def _check_ground_truth(ground_truth: GroundTruthData, *, min_factors: int = 1, why: str = '') -> None:
  """Raises ValueError unless `ground_truth` has the protocol, `min_factors` factors and >= 2 values per factor."""
  missing = [
    name
    for name in ('num_factors', 'factors_num_values', 'sample_factors', 'sample_observations_from_factors')
    if not hasattr(ground_truth, name)
  ]
  if missing:
    raise ValueError(
      f'`ground_truth` must have the GroundTruthData protocol; {type(ground_truth).__name__} lacks {missing}.'
    )
  num_factors = ground_truth.num_factors
  if not isinstance(num_factors, int | np.integer) or num_factors < min_factors:
    reason = f' ({why})' if why else ''
    raise ValueError(f'`ground_truth.num_factors` must be an integer >= {min_factors}{reason}; got {num_factors!r}.')
  values = list(ground_truth.factors_num_values)
  if len(values) != num_factors or any(v < 2 for v in values):
    raise ValueError(
      f'`ground_truth.factors_num_values` must give {num_factors} counts (one per factor), each >= 2 '
      f'(a constant factor has no information to measure); got {values}.'
    )


def _check_code_dims(codes: np.ndarray, minimum: int, why: str) -> None:
  if codes.shape[1] < minimum:
    raise ValueError(
      f'`representation_function` must return codes [B, D] with D >= {minimum} ({why}); got D={codes.shape[1]}.'
    )
