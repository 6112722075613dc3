"""`jaxvae.evaluate_bounds` against closed forms."""

import jax
import jax.numpy as jnp
import numpy as np

import jaxvae


def _prior_encoder(x):
  """q(z|x) = N(0, I) = p(z): the KL is 0 and every bound equals E_z log p(x|z)."""
  zeros = jnp.zeros((x.shape[0], 3))
  return zeros, zeros


def _constant_gaussian_decoder(z):
  """p(x|z) = N(0.5, 0.1^2) per pixel whatever z: log p(x) in closed form."""
  loc = jnp.full((z.shape[0], 4, 4, 1), 0.5)
  return loc, jnp.full_like(loc, np.log(0.1))


def test_bits_per_dim_of_dequantised_data_bound_the_discrete_data():
  x = np.random.default_rng(0).random((10, 4, 4, 1)).astype(np.float32)
  log_px = (-0.5 * ((x - 0.5) / 0.1) ** 2 - np.log(0.1) - 0.5 * np.log(2 * np.pi)).reshape(10, -1).sum(1)
  summary = jaxvae.evaluate_bounds(
    [x[:6], x[6:]],
    encoder=_prior_encoder,
    decoder=_constant_gaussian_decoder,
    log_likelihood=lambda x, params: jaxvae.gaussian_log_likelihood(x, *params),
    key=jax.random.key(0),
    iwae_num_samples=5,
    bits_per_dim_dims=16,
    dequantization_levels=256,
  )
  np.testing.assert_allclose(summary['elbo_nats'], log_px.mean(), rtol=1e-5)
  np.testing.assert_allclose(summary['iwae_nats'], log_px.mean(), rtol=1e-5)
  # -log P(pixels) <= -log p(y) + D log 256 nats: 8 bits per dimension on top of the density's.
  np.testing.assert_allclose(summary['nll_bpd'], -log_px.mean() / (16 * np.log(2)) + 8, rtol=1e-5)
  np.testing.assert_allclose(summary['nll_bpd_stderr'], log_px.std(ddof=1) / np.sqrt(10) / (16 * np.log(2)), rtol=1e-4)
