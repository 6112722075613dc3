"""Diagonal Gaussians: sampling, densities and KL divergences against closed forms and Monte Carlo."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from jax.scipy import stats

import jaxvae
from jaxvae import _gaussian


class SampleTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(None, 1, 7)
  def test_shapes_and_dtype(self, num_samples):
    loc, log_var = jnp.zeros((3, 5)), jnp.zeros((3, 5))
    sample = self.variant(lambda k, m, v: jaxvae.sample_diag_gaussian(k, m, v, num_samples=num_samples))
    z = sample(jax.random.key(0), loc, log_var)
    chex.assert_shape(z, (3, 5) if num_samples is None else (num_samples, 3, 5))
    chex.assert_type(z, jnp.float32)

  def test_moments(self):
    loc, log_var = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
    num = 200_000
    z = jaxvae.sample_diag_gaussian(jax.random.key(0), loc, log_var, num_samples=num)
    variance = np.exp(np.asarray(log_var, np.float64))
    # 4 standard errors: sigma / sqrt(n) for the mean, and sqrt(2 / n) relative for a Gaussian's variance.
    np.testing.assert_array_less(np.abs(z.mean(0) - loc), 4 * np.sqrt(variance / num))
    np.testing.assert_array_less(np.abs(z.var(0) / variance - 1), 4 * np.sqrt(2 / num))

  def test_reparameterised_gradient(self):
    # d E[z] / d loc = 1 and d E[z^2] / d log_var = sigma^2 for every sample path.
    key = jax.random.key(1)
    grad_loc = jax.grad(lambda m: jaxvae.sample_diag_gaussian(key, m, jnp.zeros(1), num_samples=10_000).mean())(
      jnp.zeros(1)
    )
    np.testing.assert_allclose(grad_loc, [1.0], rtol=1e-6)
    # The pathwise gradient is sigma^2 mean(eps^2): relative standard error sqrt(2 / n); 4 of them.
    second_moment = lambda v: jnp.square(jaxvae.sample_diag_gaussian(key, jnp.zeros(1), v, num_samples=100_000)).mean()
    np.testing.assert_allclose(jax.grad(second_moment)(jnp.array([0.3])), np.exp(0.3), rtol=4 * np.sqrt(2 / 100_000))

  def test_errors(self):
    with pytest.raises(ValueError, match='`loc` and `log_var` must have the same shape'):
      jaxvae.sample_diag_gaussian(jax.random.key(0), jnp.zeros((2, 3)), jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match='`loc` must be a floating-point array'):
      jaxvae.sample_diag_gaussian(jax.random.key(0), jnp.zeros((2, 3), jnp.int32), jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match='`num_samples` must be an integer >= 1; got 0'):
      jaxvae.sample_diag_gaussian(jax.random.key(0), jnp.zeros(3), jnp.zeros(3), num_samples=0)


class DensityTest(chex.TestCase):
  def test_log_prob_matches_scipy(self):
    z, loc, log_var = jnp.array([[0.3, -1.2]]), jnp.array([[1.0, 0.5]]), jnp.array([[-0.4, 0.8]])
    expected = stats.norm.logpdf(z, loc, jnp.exp(0.5 * log_var)).sum(-1)
    np.testing.assert_allclose(jaxvae.diag_gaussian_log_prob(z, loc, log_var), expected, rtol=1e-6)
    np.testing.assert_allclose(jaxvae.standard_normal_log_prob(z), stats.norm.logpdf(z).sum(-1), rtol=1e-6)

  def test_single_vectors_and_scalars(self):
    # One latent vector [D] is the smallest input; a scalar has no latent axis to sum over.
    np.testing.assert_allclose(jaxvae.standard_normal_log_prob(jnp.array([0.5])), stats.norm.logpdf(0.5), rtol=1e-6)
    np.testing.assert_allclose(jaxvae.kl_diag_gaussian_standard_normal(jnp.array([1.0]), jnp.array([0.0])), 0.5)
    one = jnp.array([1.0])
    np.testing.assert_allclose(jaxvae.kl_diag_gaussians(one, 0 * one, 0 * one, 0 * one), 0.5)
    with pytest.raises(ValueError, match=r'`loc_p` must have at least 1 axes; got shape \(\)'):
      jaxvae.kl_diag_gaussians(one, one, jnp.float32(0.0), jnp.float32(0.0))
    with pytest.raises(ValueError, match=r'`z` must have at least 1 axes; got shape \(\)'):
      jaxvae.standard_normal_log_prob(jnp.float32(0.5))
    with pytest.raises(ValueError, match=r'`z` must have at least 1 axes; got shape \(\)'):
      jaxvae.diag_gaussian_log_prob(jnp.float32(0.5), one, one)
    with pytest.raises(ValueError, match=r'`loc` must have at least 1 axes; got shape \(\)'):
      jaxvae.sample_diag_gaussian(jax.random.key(0), jnp.float32(0.0), jnp.float32(0.0))
    with pytest.raises(ValueError, match=r'`log_var` must have at least 1 axes; got shape \(\)'):
      jaxvae.kl_diag_gaussian_standard_normal(jnp.array([1.0]), jnp.float32(0.0))


class KLTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_standard_normal_kl_matches_monte_carlo(self):
    loc, log_var = jnp.array([[0.5, -1.0, 2.0]]), jnp.array([[0.2, -0.7, 1.1]])
    kl = self.variant(jaxvae.kl_diag_gaussian_standard_normal)(loc, log_var)
    chex.assert_shape(kl, (1,))
    z = jaxvae.sample_diag_gaussian(jax.random.key(0), loc, log_var, num_samples=400_000)
    log_ratio = jaxvae.diag_gaussian_log_prob(z, loc, log_var) - jaxvae.standard_normal_log_prob(z)
    stderr = log_ratio.std() / np.sqrt(log_ratio.shape[0])
    np.testing.assert_allclose(kl, log_ratio.mean(0), atol=4 * stderr)

  def test_kl_between_gaussians_matches_monte_carlo(self):
    loc_q, log_var_q = jnp.array([[0.5, -1.0]]), jnp.array([[0.2, -0.7]])
    loc_p, log_var_p = jnp.array([[-0.3, 0.4]]), jnp.array([[0.6, 0.1]])
    kl = jaxvae.kl_diag_gaussians(loc_q, log_var_q, loc_p, log_var_p)
    z = jaxvae.sample_diag_gaussian(jax.random.key(0), loc_q, log_var_q, num_samples=400_000)
    log_ratio = jaxvae.diag_gaussian_log_prob(z, loc_q, log_var_q) - jaxvae.diag_gaussian_log_prob(
      z, jnp.broadcast_to(loc_p, z.shape), jnp.broadcast_to(log_var_p, z.shape)
    )
    stderr = log_ratio.std() / np.sqrt(log_ratio.shape[0])
    np.testing.assert_allclose(kl, log_ratio.mean(0), atol=4 * stderr)

  def test_kl_between_gaussians_sums_the_last_axis_and_broadcasts_p(self):
    # q with sample and batch axes [S, B, D] against p [B, D]: one KL per sample and example, [S, B].
    keys = jax.random.split(jax.random.key(2), 3)
    loc_q, log_var_q = jax.random.normal(keys[0], (3, 2, 4)), jax.random.normal(keys[1], (3, 2, 4))
    loc_p, log_var_p = jax.random.normal(keys[2], (2, 4)), jnp.full((2, 4), 0.3)
    kl = jaxvae.kl_diag_gaussians(loc_q, log_var_q, loc_p, log_var_p)
    chex.assert_shape(kl, (3, 2))
    var_q, var_p = np.exp(np.asarray(log_var_q, np.float64)), np.exp(np.asarray(log_var_p, np.float64))[None]
    expected = 0.5 * np.sum(
      np.log(var_p / var_q) + (var_q + (np.asarray(loc_q, np.float64) - np.asarray(loc_p)[None]) ** 2) / var_p - 1, -1
    )
    np.testing.assert_allclose(kl, expected, rtol=1e-5)

  def test_kl_closed_forms_agree_and_vanish_at_equality(self):
    loc, log_var = jnp.array([[0.5, -1.0]]), jnp.array([[0.2, -0.7]])
    np.testing.assert_allclose(
      jaxvae.kl_diag_gaussians(loc, log_var, jnp.zeros_like(loc), jnp.zeros_like(log_var)),
      jaxvae.kl_diag_gaussian_standard_normal(loc, log_var),
      rtol=1e-6,
    )
    np.testing.assert_array_equal(jaxvae.kl_diag_gaussians(loc, log_var, loc, log_var), [0.0])
    # Near log_var = 0 the float32 exp(v) - 1 - v is pure rounding noise (~6e-8
    # absolute against a true 5e-9); the expm1 form is good to ~1e-3 relative.
    np.testing.assert_allclose(
      jaxvae.kl_diag_gaussian_standard_normal(jnp.zeros(1), jnp.array([1e-4])), 0.5 * (np.expm1(1e-4) - 1e-4), rtol=5e-3
    )


def test_samples_are_loc_plus_scale_times_the_numbered_noise():
  # z = loc + exp(log_var / 2) eps with eps sample k = normal(fold_in(key, k)): the very noise
  # `jaxvae.iwae_bound` pairs with z for log q(z|x), so the sign and the numbering matter, not only the law.
  key, loc, log_var = jax.random.key(5), jnp.array([[1.0, -2.0]]), jnp.array([[0.4, -1.0]])
  eps = _gaussian.standard_normal_noise(key=key, shape=(1, 2), num_samples=3, dtype=jnp.float32)
  expected = loc[None] + jnp.exp(0.5 * log_var)[None] * eps
  np.testing.assert_allclose(jaxvae.sample_diag_gaussian(key, loc=loc, log_var=log_var, num_samples=3), expected)
  with pytest.raises(TypeError):  # behaviour flags are keyword-only
    jaxvae.sample_diag_gaussian(key, loc, log_var, 3)


def test_noise_from_a_first_sample_on_continues_the_sequence():
  # Sample k is normal(fold_in(key, k)) wherever a run starts: chunked IWAE relies on it.
  key = jax.random.key(4)
  whole = _gaussian.standard_normal_noise(key, (2, 3), num_samples=5, dtype=jnp.float32)
  tail = _gaussian.standard_normal_noise(key, (2, 3), num_samples=3, dtype=jnp.float32, first_sample=2)
  np.testing.assert_array_equal(tail, whole[2:])
  np.testing.assert_array_equal(whole[1], jax.random.normal(jax.random.fold_in(key, 1), (2, 3)))


def test_each_examples_noise_is_independent_of_the_batch_size():
  key, loc = jax.random.key(3), jnp.zeros((7, 2))
  few = jaxvae.sample_diag_gaussian(key, loc[:5], loc[:5], num_samples=4)
  many = jaxvae.sample_diag_gaussian(key, loc, loc, num_samples=4)
  assert few.shape == (4, 5, 2)
  np.testing.assert_array_equal(few, many[:, :5])
