"""Decoder likelihoods against their definitions, normalisation, and out-of-domain data."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special
from scipy import stats as scipy_stats

import jaxvae


class BernoulliTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_matches_definition(self):
    x = jnp.array([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    logits = jnp.array([[[-2.0, 0.5, 30.0], [1.0, -40.0, 0.0]]])  # [S=1, B=2, 3]
    p = special.expit(np.asarray(logits, np.float64))
    expected = np.sum(x[None] * np.log(p) + (1 - x[None]) * np.log1p(-p), -1)
    got = self.variant(jaxvae.bernoulli_log_likelihood)(x, logits)
    chex.assert_shape(got, (1, 2))
    np.testing.assert_allclose(got, expected, rtol=1e-5)

  def test_out_of_range_data_raises_when_concrete(self):
    with pytest.raises(ValueError, match=r'`x` must lie in \[0, 1\] for the Bernoulli likelihood; got values in'):
      jaxvae.bernoulli_log_likelihood(jnp.array([[0.0, 255.0]]), jnp.zeros((1, 2)))

  def test_out_of_range_data_is_nan_under_jit(self):
    x = jnp.array([[0.0, 1.0], [0.0, 2.0]])
    got = jax.jit(jaxvae.bernoulli_log_likelihood)(x, jnp.zeros((2, 2)))
    assert np.isfinite(got[0]) and np.isnan(got[1])

  def test_shape_errors(self):
    with pytest.raises(ValueError, match=r'`logits` must have shape \[..., \*x.shape\]'):
      jaxvae.bernoulli_log_likelihood(jnp.zeros((2, 3)), jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match='`x` must have at least 2 axes'):
      jaxvae.bernoulli_log_likelihood(jnp.zeros(3), jnp.zeros(3))
    with pytest.raises(ValueError, match='`x` must be a floating-point array'):
      jaxvae.bernoulli_log_likelihood(jnp.zeros((1, 3), jnp.uint8), jnp.zeros((1, 3)))


class GaussianTest(chex.TestCase):
  def test_matches_scipy_for_every_scale_shape(self):
    x, loc = jnp.array([[0.2, 0.7]]), jnp.array([[[0.1, 0.9]]])
    for log_scale in (jnp.array(-1.0), jnp.array([-1.0, 0.3]), jnp.array([[[-1.0, 0.3]]])):
      expected = scipy_stats.norm.logpdf(x[None], loc, np.exp(log_scale)).sum(-1)
      np.testing.assert_allclose(jaxvae.gaussian_log_likelihood(x, loc, log_scale), expected, rtol=1e-5, atol=1e-6)

  def test_bad_scale_shape(self):
    with pytest.raises(ValueError, match='`log_scale` must broadcast against `loc`'):
      jaxvae.gaussian_log_likelihood(jnp.zeros((1, 2)), jnp.zeros((1, 2)), jnp.zeros(3))


class DiscretizedLogisticTest(chex.TestCase):
  @chex.all_variants(with_pmap=False)
  def test_masses_sum_to_one(self):
    x = jnp.arange(256.0)[:, None] / 255  # every 8-bit value, [256, 1]
    fn = self.variant(jaxvae.discretized_logistic_log_likelihood)
    for loc in (-0.5, 0.0, 0.3, 1.0, 1.7):
      for log_scale in (-9.0, -4.0, -1.0, 1.0):
        total = jnp.exp(fn(x, jnp.full_like(x, loc), jnp.array(log_scale))).sum()
        np.testing.assert_allclose(total, 1.0, atol=2e-5, err_msg=f'loc={loc}, log_scale={log_scale}')

  def test_matches_cdf_difference(self):
    x = jnp.array([[0.0, 10 / 255, 128 / 255, 1.0]])
    loc, log_scale = jnp.array([[0.02, 0.05, 0.5, 0.9]]), jnp.array([[-3.0, -5.0, -2.0, -3.0]])
    h, s = 0.5 / 255, np.exp(np.asarray(log_scale, np.float64))
    xs, ms = np.asarray(x, np.float64), np.asarray(loc, np.float64)
    cdf = lambda v: special.expit((v - ms) / s)
    upper = np.where(xs > 1 - h, 1.0, cdf(xs + h))
    lower = np.where(xs < h, 0.0, cdf(xs - h))
    expected = np.log(upper - lower).sum(-1)
    np.testing.assert_allclose(jaxvae.discretized_logistic_log_likelihood(x, loc, log_scale), expected, rtol=1e-5)

  def test_tiny_bins_stay_finite(self):
    # A scale far wider than a bin: the mass of one bin is ~1e-6; PixelCNN++'s
    # branch would switch to a density here, the identity stays exact.
    x, loc = jnp.array([[0.5]]), jnp.array([[0.5]])
    got = jaxvae.discretized_logistic_log_likelihood(x, loc, jnp.array(5.0))
    s = np.exp(5.0)
    expected = np.log(special.expit(0.5 / 255 / s) - special.expit(-0.5 / 255 / s))
    np.testing.assert_allclose(got, [expected], rtol=1e-4)


def test_nats_to_bits_per_dim():
  np.testing.assert_allclose(jaxvae.nats_to_bits_per_dim(jnp.array(784 * np.log(2.0)), 784), 1.0, rtol=1e-6)
  np.testing.assert_allclose(jaxvae.nats_to_bits_per_dim(100.0, 784), 100.0 / (784 * np.log(2)), rtol=1e-6)
  with pytest.raises(ValueError, match='`num_dims` must be a positive integer'):
    jaxvae.nats_to_bits_per_dim(1.0, 0)


def test_out_of_range_data_raises_inside_chunked_iwae():
  # The chunks run in a lax.scan; the concrete data must still be checked, not staged.
  encoder = lambda x: (jnp.zeros((x.shape[0], 2)), jnp.zeros((x.shape[0], 2)))
  decoder = lambda z: jnp.zeros((z.shape[0], 3))
  with pytest.raises(ValueError, match=r'got values in \[0, 255\]'):
    jaxvae.iwae_bound(
      jnp.array([[0.0, 1.0, 255.0]]),
      encoder=encoder,
      decoder=decoder,
      log_likelihood=jaxvae.bernoulli_log_likelihood,
      key=jax.random.key(0),
      num_samples=4,
      chunk_size=2,
    )
