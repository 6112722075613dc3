"""Disentangling-VAE objectives against hand computations, brute-force references and closed forms."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from scipy import special, stats

from jaxvae import _discriminator, _objectives
from jaxvae._gaussian import diag_gaussian_log_prob, sample_diag_gaussian, standard_normal_log_prob

# Outside the chex variants, the estimators run jitted: one compilation instead of one per operation.
_mmd = jax.jit(_objectives.mmd_imq)


DATASET_SIZES = (1, 1000)


@jax.jit
def _sample_and_decompose(key, loc, log_var):
  """A sample of each posterior and its decomposition for each of `DATASET_SIZES`."""
  z = sample_diag_gaussian(key, loc, log_var)
  return z, {n: _objectives.decomposed_kl_mws(z, loc, log_var, dataset_size=n) for n in DATASET_SIZES}


class BetaVAETest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_beta_one_is_the_elbo_and_beta_weights_the_kl(self):
    reconstruction, kl = jnp.array([-10.0, -12.5, -3.0]), jnp.array([2.0, 0.5, 4.0])
    objective = self.variant(lambda r, k, b: _objectives.beta_vae_objective(r, k, beta=b))
    np.testing.assert_array_equal(objective(reconstruction, kl, 1.0), reconstruction - kl)
    np.testing.assert_allclose(objective(reconstruction, kl, 4.0), [-18.0, -14.5, -19.0])

  def test_errors(self):
    with pytest.raises(ValueError, match='`reconstruction` and `kl` must have the same shape'):
      _objectives.beta_vae_objective(jnp.zeros(3), jnp.zeros(2), beta=1.0)
    with pytest.raises(ValueError, match='`kl` must be a floating-point array'):
      _objectives.beta_vae_objective(jnp.zeros(3), jnp.zeros(3, jnp.int32), beta=1.0)


class CapacityTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_schedule_values(self):
    schedule = self.variant(lambda t: _objectives.capacity(t, capacity_max=25.0, num_steps=1000))
    steps = jnp.array([-5, 0, 250, 500, 1000, 1001, 10**6], jnp.int32)
    np.testing.assert_allclose(jax.vmap(schedule)(steps), [0.0, 0.0, 6.25, 12.5, 25.0, 25.0, 25.0], rtol=1e-6)
    value = schedule(jnp.asarray(500))
    chex.assert_shape(value, ())
    chex.assert_type(value, jnp.float32)

  @chex.variants(with_jit=True, without_jit=True)
  def test_capacity_objective_pulls_the_batch_mean_kl(self):
    # The reference form (Burgess et al.'s code, disentanglement_lib's AnnealedVAE): one scalar per batch,
    # mean reconstruction - gamma |mean KL - C|.
    objective = self.variant(lambda r, k, c: _objectives.capacity_objective(r, k, gamma=100.0, capacity=c))
    reconstruction, kl = jnp.array([-10.0, -10.0, -4.0]), jnp.array([3.0, 7.0, 6.5])
    value = objective(reconstruction, kl, 5.0)
    chex.assert_shape(value, ())
    np.testing.assert_allclose(value, -8.0 - 100.0 * 0.5, rtol=1e-6)  # mean KL 5.5
    np.testing.assert_allclose(objective(reconstruction, kl, 6.0), -8.0 - 100.0 * 0.5, rtol=1e-6)  # from below
    # C = 0 is the batch mean of the beta-VAE objective with beta = gamma (every KL is >= 0).
    np.testing.assert_allclose(
      objective(reconstruction, kl, 0.0), jnp.mean(_objectives.beta_vae_objective(reconstruction, kl, beta=100.0))
    )

  @chex.variants(with_jit=True, without_jit=True)
  def test_capacity_objective_per_example(self):
    objective = self.variant(
      lambda r, k, c: _objectives.capacity_objective(r, k, gamma=100.0, capacity=c, per_example=True)
    )
    reconstruction, kl = jnp.array([-10.0, -10.0, -4.0]), jnp.array([3.0, 7.0, 5.0])
    # Each KL is pulled towards C from either side: |3 - 5| = |7 - 5| = 2.
    np.testing.assert_allclose(objective(reconstruction, kl, 5.0), [-210.0, -210.0, -4.0])
    np.testing.assert_allclose(
      objective(reconstruction, kl, 0.0), _objectives.beta_vae_objective(reconstruction, kl, beta=100.0)
    )
    np.testing.assert_allclose(objective(reconstruction, kl, jnp.array([3.0, 7.0, 5.0])), reconstruction)

  def test_capacity_forms_differ_on_a_batch_with_spread_kls(self):
    # KLs straddling C with mean exactly C: the batch form has no penalty and no gradient in the KLs, the
    # per-example form pays gamma |KL_i - C| and pushes each KL towards C.
    reconstruction, kl, gamma = jnp.array([-10.0, -6.0, -8.0, -4.0]), jnp.array([1.0, 9.0, 3.0, 7.0]), 10.0
    batch = lambda k: _objectives.capacity_objective(reconstruction, k, gamma=gamma, capacity=5.0)
    per_example = lambda k: jnp.mean(
      _objectives.capacity_objective(reconstruction, k, gamma=gamma, capacity=5.0, per_example=True)
    )
    np.testing.assert_allclose(batch(kl), -7.0)
    np.testing.assert_allclose(per_example(kl), -7.0 - gamma * 3.0)  # mean |KL - C| = (4 + 4 + 2 + 2) / 4
    # Just above C on average: the batch form pushes every KL down alike, by gamma / B.
    shifted = kl + 0.5
    np.testing.assert_allclose(jax.grad(batch)(shifted), jnp.full(4, -gamma / 4))
    np.testing.assert_allclose(jax.grad(per_example)(shifted), gamma / 4 * jnp.array([1.0, -1.0, 1.0, -1.0]))

  def test_errors(self):
    with pytest.raises(ValueError, match='`num_steps` must be an integer >= 1; got 0'):
      _objectives.capacity(3, capacity_max=25.0, num_steps=0)
    with pytest.raises(ValueError, match='`capacity_max` must be >= 0 nats; got -1.0'):
      _objectives.capacity(3, capacity_max=-1.0, num_steps=10)
    with pytest.raises(ValueError, match='`reconstruction` and `kl` must have the same shape'):
      _objectives.capacity_objective(jnp.zeros(3), jnp.zeros((3, 1)), gamma=1.0, capacity=0.0)
    with pytest.raises(
      ValueError, match=r'`capacity` must be a scalar for the batch-mean objective .*got shape \(3,\)'
    ):
      _objectives.capacity_objective(jnp.zeros(3), jnp.zeros(3), gamma=1.0, capacity=jnp.zeros(3))


def _reference_decomposition(z, loc, log_var, dataset_size):
  """Chen et al.'s MWS estimates by explicit loops in float64 (scipy densities)."""
  z, loc, log_var = (np.asarray(a, np.float64) for a in (z, loc, log_var))
  batch, dim = z.shape
  scale = np.exp(0.5 * log_var)
  log_norm = np.log(batch * dataset_size)
  mi, tc, dw = [], [], []
  for i in range(batch):
    per_dim = np.stack([stats.norm.logpdf(z[i], loc[k], scale[k]) for k in range(batch)])  # [B, D]
    log_q_z = special.logsumexp(per_dim.sum(-1)) - log_norm
    log_q_marginals = sum(special.logsumexp(per_dim[:, j]) - log_norm for j in range(dim))
    log_q_z_given_x = per_dim[i].sum()
    log_p_z = stats.norm.logpdf(z[i]).sum()
    mi.append(log_q_z_given_x - log_q_z)
    tc.append(log_q_z - log_q_marginals)
    dw.append(log_q_marginals - log_p_z)
  return np.array(mi), np.array(tc), np.array(dw)


def _clusters(means, copies, *, log_var=-3.0):
  """A 'data set' whose posteriors are `copies` repeats of each mean: its q(z) is a Gaussian mixture."""
  loc = jnp.repeat(jnp.asarray(means, jnp.float32), copies, axis=0)  # [B, D]
  return loc, jnp.full(loc.shape, log_var)


class BetaTCVAETest(chex.TestCase):
  @chex.variants(with_jit=True)  # the eager path is covered by the doctest
  def test_matches_brute_force_reference(self):
    keys = jax.random.split(jax.random.key(0), 3)
    loc = jax.random.normal(keys[0], (6, 3))
    log_var = 0.5 * jax.random.normal(keys[1], (6, 3))
    z = sample_diag_gaussian(keys[2], loc, log_var)
    terms = self.variant(lambda z, m, v: _objectives.decomposed_kl_mws(z, m, v, dataset_size=1000))(z, loc, log_var)
    for term in terms:
      chex.assert_shape(term, (6,))
    for term, expected in zip(terms, _reference_decomposition(z, loc, log_var, 1000), strict=True):
      np.testing.assert_allclose(term, expected, rtol=1e-5, atol=1e-4)

  def test_terms_sum_to_the_sampled_kl(self):
    keys = jax.random.split(jax.random.key(1), 3)
    loc, log_var = 2.0 * jax.random.normal(keys[0], (16, 4)), jax.random.normal(keys[1], (16, 4))
    z, decompositions = _sample_and_decompose(keys[2], loc, log_var)
    sampled_kl = diag_gaussian_log_prob(z, loc, log_var) - standard_normal_log_prob(z)  # [B]
    for terms in decompositions.values():
      np.testing.assert_allclose(sum(terms), sampled_kl, atol=1e-4)

  def test_dataset_size_shifts_the_terms_by_constants(self):
    keys = jax.random.split(jax.random.key(2), 3)
    loc, log_var = jax.random.normal(keys[0], (16, 4)), jax.random.normal(keys[1], (16, 4))
    _, decompositions = _sample_and_decompose(keys[2], loc, log_var)
    base, shifted = decompositions[1], decompositions[1000]
    log_n = math.log(1000)
    np.testing.assert_allclose(shifted.mutual_information - base.mutual_information, log_n, rtol=1e-4)
    np.testing.assert_allclose(shifted.total_correlation - base.total_correlation, 3 * log_n, rtol=1e-4)
    np.testing.assert_allclose(shifted.dimension_wise_kl - base.dimension_wise_kl, -4 * log_n, rtol=1e-4)

  def test_total_correlation_of_factorised_and_correlated_aggregates(self):
    # The batch is the whole data set (dataset_size=1), so MWS gives the exact
    # densities of its aggregate posterior, a mixture of the batch posteriors.
    # Means on a grid: q(z) = q(z_1) q(z_2) exactly, so TC = 0 at every z.
    factorised = _clusters([[-3.0, -3.0], [-3.0, 3.0], [3.0, -3.0], [3.0, 3.0]], 16)
    # Means on the diagonal: z_1 and z_2 share one fair bit, so TC = log 2
    # (up to the clusters' negligible overlap) and the code carries one bit
    # about the cluster, MI = log 2; on the grid it carries two, MI = log 4.
    correlated = _clusters([[-3.0, -3.0], [3.0, 3.0]], 32)
    results = {}
    for name, (loc, log_var) in (('factorised', factorised), ('correlated', correlated)):
      results[name] = _sample_and_decompose(jax.random.key(3), loc, log_var)[1][1]
    np.testing.assert_allclose(results['factorised'].total_correlation, 0.0, atol=1e-4)
    np.testing.assert_allclose(results['correlated'].total_correlation, math.log(2), atol=1e-3)
    np.testing.assert_allclose(results['factorised'].mutual_information, math.log(4), atol=1e-3)
    np.testing.assert_allclose(results['correlated'].mutual_information, math.log(2), atol=1e-3)

  def test_total_correlation_of_a_correlated_gaussian_aggregate(self):
    # Posteriors N(mu, 0.1 I) with means of correlation 0.9: q(z) is close to
    # N(0, [[1.1, 0.9], [0.9, 1.1]]), whose TC is -log(1 - rho^2) / 2 with
    # rho = 0.9 / 1.1. Checked with an independent set of means per value of rho.
    rho_means = 0.9
    covariance = np.array([[1.0, rho_means], [rho_means, 1.0]])
    loc = jnp.asarray(np.random.default_rng(0).multivariate_normal([0, 0], covariance, size=1000), jnp.float32)
    log_var = jnp.full(loc.shape, math.log(0.1))
    tc = _sample_and_decompose(jax.random.key(4), loc, log_var)[1][1].total_correlation
    rho = 0.9 / 1.1
    np.testing.assert_allclose(jnp.mean(tc), -0.5 * math.log(1 - rho**2), atol=0.08)
    independent = jnp.asarray(np.random.default_rng(1).normal(size=(1000, 2)), jnp.float32)
    tc_independent = _sample_and_decompose(jax.random.key(5), independent, log_var)[1][1].total_correlation
    assert abs(float(jnp.mean(tc_independent))) < 0.05 < 0.5 < float(jnp.mean(tc))

  @chex.variants(with_jit=True, without_jit=True)
  def test_objective(self):
    log_px, mi, tc, dw = jnp.array([-10.0, -20.0]), jnp.array([1.0, 2.0]), jnp.array([0.5, 1.5]), jnp.array([3.0, 1.0])
    objective = self.variant(
      lambda *terms, weights: _objectives.beta_tcvae_objective(
        *terms, alpha=weights[0], beta=weights[1], gamma=weights[2]
      )
    )
    # alpha = beta = gamma = 1: the one-sample ELBO log p(x|z) - (log q(z|x) - log p(z)).
    np.testing.assert_allclose(objective(log_px, mi, tc, dw, weights=jnp.ones(3)), log_px - (mi + tc + dw))
    np.testing.assert_allclose(
      objective(log_px, mi, tc, dw, weights=jnp.array([2.0, 6.0, 0.5])), [-10 - 2 - 3 - 1.5, -20 - 4 - 9 - 0.5]
    )

  @parameterized.named_parameters(
    ('moderate', [[0.3, -1.0], [1.2, 0.4], [-0.5, 0.8]], [[-0.5, 0.2], [0.1, -0.3], [0.4, 0.0]], 0.3),
    # Posteriors far apart and narrow: the log-sum-exps are dominated by one term (finite, not NaN).
    ('extreme', [[0.0, 1.0], [50.0, -50.0]], [[-8.0, 0.0], [0.0, -8.0]], 0.1),
  )
  def test_gradients_match_finite_differences_of_the_reference(self, loc, log_var, offset):
    # Each term's gradient in the sample, the means and the log-variances, against central differences of the
    # float64 brute-force reference. (The three terms sum to log q(z|x) - log p(z), so each is checked alone.)
    loc, log_var = np.array(loc), np.array(log_var)
    z = loc + offset
    arrays = (z, loc, log_var)

    def reference_term(index, values):
      return float(np.sum(_reference_decomposition(*values, dataset_size=10)[index]))

    for index in range(3):
      term = lambda *a, index=index: jnp.sum(_objectives.decomposed_kl_mws(*a, dataset_size=10)[index])
      grads = jax.jit(jax.grad(term, argnums=(0, 1, 2)))(*(jnp.asarray(a, jnp.float32) for a in arrays))
      for argnum, grad in enumerate(grads):
        expected = np.zeros(arrays[argnum].shape)
        for position in np.ndindex(expected.shape):
          up, down = [list(arrays) for _ in range(2)]
          up[argnum], down[argnum] = arrays[argnum].copy(), arrays[argnum].copy()
          up[argnum][position] += 1e-6
          down[argnum][position] -= 1e-6
          expected[position] = (reference_term(index, up) - reference_term(index, down)) / 2e-6
        np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-3, err_msg=f'term {index}, argument {argnum}')

  def test_errors(self):
    z = jnp.zeros((4, 2))
    with pytest.raises(ValueError, match='`dataset_size` must be an integer >= 1; got 0'):
      _objectives.decomposed_kl_mws(z, z, z, dataset_size=0)
    with pytest.raises(ValueError, match='`dataset_size` must be an integer >= 1; got 1.5'):
      _objectives.decomposed_kl_mws(z, z, z, dataset_size=1.5)
    with pytest.raises(ValueError, match=r'`z` must be a \[B, D\] batch of latent vectors; got shape \(4,\)'):
      _objectives.decomposed_kl_mws(jnp.zeros(4), z, z, dataset_size=10)
    with pytest.raises(ValueError, match='`z` and `loc` must have the same shape'):
      _objectives.decomposed_kl_mws(jnp.zeros((4, 3)), z, z, dataset_size=10)
    with pytest.raises(ValueError, match='`log_px` and `total_correlation` must have the same shape'):
      _objectives.beta_tcvae_objective(jnp.zeros(4), jnp.zeros(4), jnp.zeros(3), jnp.zeros(4), beta=6.0)


def _reference_dip(loc, log_var, kind, lambda_od, lambda_d):
  loc = np.asarray(loc, np.float64)
  covariance = np.cov(loc, rowvar=False, bias=True)
  if kind == 'ii':
    covariance = covariance + np.diag(np.exp(np.asarray(log_var, np.float64)).mean(0))
  off_diagonal = covariance - np.diag(np.diag(covariance))
  return lambda_od * np.sum(off_diagonal**2) + lambda_d * np.sum((np.diag(covariance) - 1) ** 2)


class DIPVAETest(chex.TestCase):
  # Rows with mean (5, -2) and population covariance I.
  IDENTITY_LOC = jnp.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]]) + jnp.array([[5.0, -2.0]])

  @chex.variants(with_jit=True, without_jit=True)
  def test_zero_at_identity_covariance(self):
    penalty = {
      kind: self.variant(
        lambda m, v, kind=kind: _objectives.dip_vae_regularizer(m, v, kind=kind, lambda_off_diagonal=1.0)
      )
      for kind in ('i', 'ii')
    }
    self.assertEqual(float(penalty['i'](self.IDENTITY_LOC, jnp.zeros((4, 2)))), 0.0)
    # Cov[mu] = I / 4 and E[sigma^2] = 3/4: Cov_q[z] = I.
    self.assertAlmostEqual(float(penalty['ii'](self.IDENTITY_LOC / 2, jnp.full((4, 2), math.log(0.75)))), 0.0, 6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_hand_computed_values(self):
    def penalty(loc, log_var, *, kind, lambda_d):
      fn = lambda m, v: _objectives.dip_vae_regularizer(
        m, v, kind=kind, lambda_off_diagonal=2.0, lambda_diagonal=lambda_d
      )
      return self.variant(fn)(loc, log_var)

    # Cov[mu] = [[1, 1], [1, 1]]: off-diagonal squares 2, diagonal on target.
    loc, log_var = jnp.array([[1.0, 1.0], [-1.0, -1.0]]), jnp.zeros((2, 2))
    self.assertAlmostEqual(float(penalty(loc, log_var, kind='i', lambda_d=None)), 2.0 * 2.0, 5)
    # Cov_q[z] = [[2, 1], [1, 2]]; default lambda_d = lambda_od for 'ii': 2 * 2 + 2 * (1 + 1).
    self.assertAlmostEqual(float(penalty(loc, log_var, kind='ii', lambda_d=None)), 8.0, 5)
    # Cov[mu] = I / 2: diagonal misses by 1/2 twice; default lambda_d = 10 lambda_od for 'i'.
    loc = jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    self.assertAlmostEqual(float(penalty(loc, jnp.zeros((4, 2)), kind='i', lambda_d=None)), 20.0 * 0.5, 5)
    self.assertAlmostEqual(float(penalty(loc, jnp.zeros((4, 2)), kind='i', lambda_d=3.0)), 3.0 * 0.5, 5)

  @parameterized.parameters('i', 'ii')
  def test_matches_reference(self, kind):
    keys = jax.random.split(jax.random.key(0), 2)
    loc = jax.random.normal(keys[0], (32, 4)) @ jnp.array([[1.0, 0.5, 0, 0], [0, 1, 0, 0], [0, 0, 2, 0], [0, 0, 0, 1]])
    log_var = jax.random.normal(keys[1], (32, 4))
    value = _objectives.dip_vae_regularizer(loc, log_var, kind=kind, lambda_off_diagonal=3.0, lambda_diagonal=7.0)
    np.testing.assert_allclose(value, _reference_dip(loc, log_var, kind, 3.0, 7.0), rtol=1e-5)
    assert float(value) > 1.0

  def test_errors(self):
    with pytest.raises(ValueError, match="unknown DIP-VAE `kind` 'iii'; choose 'i'"):
      _objectives.dip_vae_regularizer(jnp.zeros((4, 2)), jnp.zeros((4, 2)), kind='iii', lambda_off_diagonal=1.0)
    with pytest.raises(ValueError, match='`loc` and `log_var` must have the same shape'):
      _objectives.dip_vae_regularizer(jnp.zeros((4, 2)), jnp.zeros((4, 3)), kind='i', lambda_off_diagonal=1.0)


def _reference_mmd(x, y, prior_variance=1.0):
  """Algorithm 2 of Tolstikhin et al. with the authors' sum of IMQ kernels, by explicit loops in float64."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  (n, dim), m = x.shape, y.shape[0]
  total = 0.0
  for scale in (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0):
    c = 2 * dim * prior_variance * scale
    k = lambda a, b, c=c: c / (c + np.sum((a - b) ** 2))
    total += sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    total += sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    total -= 2 * sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
  return total


class MMDTest(chex.TestCase):
  @chex.variants(with_jit=True)  # the eager path is covered by test_exactly_symmetric
  def test_matches_reference(self):
    keys = jax.random.split(jax.random.key(0), 2)
    x, y = jax.random.normal(keys[0], (5, 3)), 1.5 * jax.random.normal(keys[1], (7, 3)) + 0.3
    mmd = self.variant(lambda a, b: _objectives.mmd_imq(a, b, prior_variance=2.0))
    np.testing.assert_allclose(mmd(x, y), _reference_mmd(x, y, prior_variance=2.0), rtol=1e-5, atol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_exactly_symmetric(self):
    keys = jax.random.split(jax.random.key(1), 2)
    x, y = jax.random.normal(keys[0], (16, 6)), jax.random.normal(keys[1], (12, 6)) + 0.5
    mmd = self.variant(_objectives.mmd_imq)
    self.assertEqual(float(mmd(x, y)), float(mmd(y, x)))
    self.assertEqual(float(mmd(x[:12], y)), float(mmd(y, x[:12])))

  def test_near_zero_for_one_distribution_and_positive_for_two(self):
    keys = jax.random.split(jax.random.key(2), 4)
    prior = lambda key: jax.random.normal(key, (1000, 4))
    same = _mmd(prior(keys[0]), prior(keys[1]))
    shifted = _mmd(prior(keys[0]) + 0.5, prior(keys[1]))
    scaled = _mmd(0.5 * prior(keys[2]), prior(keys[3]))
    assert abs(float(same)) < 2e-3, float(same)
    assert float(shifted) > 0.05 and float(scaled) > 0.05, (float(shifted), float(scaled))

  def test_errors(self):
    with pytest.raises(ValueError, match=r'`z_q` must hold at least 2 samples \(rows\)'):
      _objectives.mmd_imq(jnp.zeros((1, 3)), jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match=r'`z_p` must hold at least 2 samples \(rows\)'):
      _objectives.mmd_imq(jnp.zeros((4, 3)), jnp.zeros((1, 3)))
    with pytest.raises(ValueError, match='`z_q` and `z_p` must have the same latent dimension D'):
      _objectives.mmd_imq(jnp.zeros((4, 3)), jnp.zeros((4, 2)))
    with pytest.raises(ValueError, match='`prior_variance` must be > 0; got 0.0'):
      _objectives.mmd_imq(jnp.zeros((4, 3)), jnp.zeros((4, 3)), prior_variance=0.0)
    with pytest.raises(ValueError, match=r'`z_q` must be a \[B, D\] batch of latent vectors'):
      _objectives.mmd_imq(jnp.zeros((4, 3, 1)), jnp.zeros((4, 3)))


class FactorVAETest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_permute_dims_keeps_marginals_and_breaks_dependence(self):
    base = jax.random.normal(jax.random.key(0), (2000, 1))
    z = jnp.concatenate([base, base, -base], axis=1)  # perfectly correlated columns
    permuted = self.variant(_objectives.permute_dims)(jax.random.key(1), z)
    chex.assert_shape(permuted, z.shape)
    np.testing.assert_array_equal(jnp.sort(permuted, axis=0), jnp.sort(z, axis=0))
    correlation = np.corrcoef(np.asarray(permuted), rowvar=False)
    # Independently permuted columns: each sample correlation has standard error 1 / sqrt(n); 4 of them.
    assert np.all(np.abs(correlation[np.triu_indices(3, 1)]) < 4 / np.sqrt(len(z))), correlation
    np.testing.assert_allclose(np.corrcoef(np.asarray(z), rowvar=False), [[1, 1, -1], [1, 1, -1], [-1, -1, 1]])

  @chex.variants(with_jit=True, without_jit=True)
  def test_total_correlation_is_the_log_density_ratio_at_the_optimal_discriminator(self):
    # q(z) = N(0, [[1, rho], [rho, 1]]) and its permuted version N(0, I): the
    # Bayes-optimal logits are the two log-densities, the estimate is their
    # difference and its mean under q is TC = -log(1 - rho^2) / 2.
    rho = 0.8
    covariance = np.array([[1.0, rho], [rho, 1.0]])
    z = np.random.default_rng(0).multivariate_normal([0.0, 0.0], covariance, size=20_000)
    log_q = stats.multivariate_normal([0.0, 0.0], covariance).logpdf(z)
    log_q_bar = stats.norm.logpdf(z).sum(-1)
    logits = jnp.asarray(np.stack([log_q, log_q_bar], axis=-1), jnp.float32)  # [B, 2]
    tc = self.variant(_objectives.factor_vae_total_correlation)(logits)
    chex.assert_shape(tc, (20_000,))
    np.testing.assert_allclose(tc, log_q - log_q_bar, rtol=1e-5, atol=1e-5)
    stderr = np.std(log_q - log_q_bar) / np.sqrt(len(z))
    np.testing.assert_allclose(jnp.mean(tc), -0.5 * math.log(1 - rho**2), atol=4 * stderr)
    # Shifting both logits by a constant changes nothing: only D(z) matters.
    np.testing.assert_allclose(self.variant(_objectives.factor_vae_total_correlation)(logits + 3.0), tc, atol=1e-4)

  @chex.variants(with_jit=True, without_jit=True)
  def test_discriminator_loss(self):
    loss = self.variant(_objectives.factor_vae_discriminator_loss)
    self.assertAlmostEqual(float(loss(jnp.zeros((4, 2)), jnp.ones((6, 2)))), math.log(2), 6)
    # Class 0 = from q(z), class 1 = permuted: confident right answers cost ~0, wrong ones a lot.
    right_q, right_permuted = jnp.array([[10.0, -10.0]]), jnp.array([[-10.0, 10.0]])
    self.assertLess(float(loss(right_q, right_permuted)), 1e-8)
    self.assertGreater(float(loss(right_permuted, right_q)), 19.0)
    # By hand: D(z) = sigmoid(1) for the q sample, 1 - D = sigmoid(-2) for the permuted one.
    expected = -0.5 * (math.log(1 / (1 + math.exp(-1))) + math.log(1 / (1 + math.exp(2))))
    self.assertAlmostEqual(float(loss(jnp.array([[1.0, 0.0]]), jnp.array([[2.0, 0.0]]))), expected, 5)

  def test_discriminator_module(self):
    small = _discriminator.FactorVAEDiscriminator(hidden_size=16, num_hidden_layers=3)
    z = jnp.ones((5, 10))
    params = jax.jit(small.init)(jax.random.key(0), z)
    logits = small.apply(params, z)
    chex.assert_shape(logits, (5, 2))
    assert len(params['params']) == 4  # 3 hidden layers and the output layer
    # The paper's default: 6 x 1000 hidden units, LeakyReLU(0.2), 2 logits (shapes only, no compute).
    default = _discriminator.FactorVAEDiscriminator()
    self.assertEqual((default.hidden_size, default.num_hidden_layers, default.negative_slope), (1000, 6, 0.2))
    shapes = jax.eval_shape(default.init, jax.random.key(0), z)
    num_params = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(shapes))
    self.assertEqual(num_params, (10 * 1000 + 1000) + 5 * (1000 * 1000 + 1000) + (1000 * 2 + 2))

  def test_discriminator_negative_slope(self):
    # With one hidden unit, weights fixed by hand: h = leaky_relu(-z), logits = (h, 0).
    module = _discriminator.FactorVAEDiscriminator(hidden_size=1, num_hidden_layers=1, negative_slope=0.2)
    params = {
      'params': {
        'Dense_0': {'kernel': -jnp.ones((1, 1)), 'bias': jnp.zeros(1)},
        'Dense_1': {'kernel': jnp.array([[1.0, 0.0]]), 'bias': jnp.zeros(2)},
      }
    }
    logits = module.apply(params, jnp.array([[2.0], [-3.0]]))
    np.testing.assert_allclose(logits, [[-0.4, 0.0], [3.0, 0.0]], rtol=1e-6)

  def test_errors(self):
    with pytest.raises(ValueError, match=r'`logits` must be \[B, 2\] discriminator logits'):
      _objectives.factor_vae_total_correlation(jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match=r'`logits_permuted` must be \[B, 2\] discriminator logits'):
      _objectives.factor_vae_discriminator_loss(jnp.zeros((4, 2)), jnp.zeros(4))
    with pytest.raises(ValueError, match=r'`z` must be a \[B, D\] batch of latent vectors'):
      _objectives.permute_dims(jax.random.key(0), jnp.zeros(4))
