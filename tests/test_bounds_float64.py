"""The bounds in float64 (`jax_enable_x64`), where exact identities hold to near machine precision.

The linear-Gaussian model of `tests/test_bounds.py`: p(z) = N(0, I_3),
p(x|z) = N(W z + b, s^2 I_5) with orthogonal columns of W, so p(x) and the
(diagonal) posterior are exact. Each test enables x64 only inside itself, so
float32 tests sharing the worker are unaffected.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jaxvae

LATENT, DATA, SCALE = 3, 5, 0.5


@pytest.fixture(autouse=True)
def float64():
  with jax.enable_x64(True):
    yield


def _model():
  rng = np.random.default_rng(0)
  basis, _ = np.linalg.qr(rng.normal(size=(DATA, LATENT)))
  weights = basis * np.array([2.0, 1.0, 0.5])  # [5, 3], W^T W diagonal
  return weights, rng.normal(size=DATA)


def _data(num):
  weights, bias = _model()
  rng = np.random.default_rng(1)
  return rng.normal(size=(num, LATENT)) @ weights.T + bias + SCALE * rng.normal(size=(num, DATA))  # [N, 5]


def _exact_posterior_encoder(weights, bias):
  posterior_var = 1.0 / (1.0 + np.diag(weights.T @ weights) / SCALE**2)  # [3]
  projection = weights * posterior_var[None] / SCALE**2  # [5, 3]: x - b -> posterior mean

  def encoder(x):
    loc = (x - bias[None]) @ projection
    return loc, jnp.broadcast_to(jnp.log(posterior_var)[None], loc.shape)

  return encoder


def _decoder(weights, bias):
  return lambda z: z @ weights.T + bias[None]


def _log_likelihood(x, loc):
  return jaxvae.gaussian_log_likelihood(x, loc, jnp.full(loc.shape, np.log(SCALE)))


def _exact_log_marginal(x, weights, bias):
  return stats.multivariate_normal(bias, weights @ weights.T + SCALE**2 * np.eye(DATA)).logpdf(x)


@pytest.mark.parametrize('num_samples, chunk_size', [((1,), None), ((1, 5, 50), 7), ((1000,), 100)])
def test_iwae_with_the_exact_posterior_is_log_marginal_to_machine_precision(num_samples, chunk_size):
  # Every importance weight is p(x) exactly, so L_K = log p(x) whatever K: the only error is rounding.
  weights, bias = _model()
  x = jnp.asarray(_data(16))
  bounds = jaxvae.iwae_bounds(
    x,
    encoder=_exact_posterior_encoder(weights, bias),
    decoder=_decoder(weights, bias),
    log_likelihood=_log_likelihood,
    key=jax.random.key(0),
    num_samples=num_samples,
    chunk_size=chunk_size,
  )
  for bound in bounds.values():
    assert bound.dtype == jnp.float64
    np.testing.assert_allclose(bound, _exact_log_marginal(np.asarray(x), weights, bias), rtol=1e-13)


def test_elbo_terms_are_exact_at_their_own_samples():
  weights, bias = _model()
  x = _data(8)
  encoder = _exact_posterior_encoder(weights, bias)
  out = jaxvae.elbo(
    jnp.asarray(x),
    encoder=encoder,
    decoder=_decoder(weights, bias),
    log_likelihood=_log_likelihood,
    key=jax.random.key(1),
    num_samples=4,
  )
  z = np.asarray(out.z)  # [4, 8, 3]
  reconstruction = stats.norm(z @ weights.T + bias, SCALE).logpdf(x[None]).sum(-1).mean(0)  # [8]
  loc, log_var = (np.asarray(a) for a in encoder(x))
  kl = 0.5 * np.sum(loc**2 + np.exp(log_var) - 1.0 - log_var, axis=-1)
  np.testing.assert_allclose(out.reconstruction, reconstruction, rtol=1e-14)
  np.testing.assert_allclose(out.kl, kl, rtol=1e-13)
  np.testing.assert_allclose(out.elbo, reconstruction - kl, rtol=1e-14)
  # The samples are loc + exp(log_var / 2) * standard normal noise.
  noise = (z - loc[None]) / np.exp(log_var / 2)[None]
  assert abs(noise.mean()) < 0.5 and 0.5 < noise.std() < 1.5


def test_iwae_of_one_sample_is_the_single_sample_elbo_at_the_same_sample():
  # L_1 = log p(x|z) + log p(z) - log q(z|x) at the sample `elbo` draws with the same key.
  weights, bias = _model()
  x = jnp.asarray(_data(8))
  args = dict(encoder=_exact_posterior_encoder(weights, bias), decoder=_decoder(weights, bias))
  key = jax.random.key(2)
  out = jaxvae.elbo(x, log_likelihood=_log_likelihood, key=key, **args)
  l1 = jaxvae.iwae_bound(x, log_likelihood=_log_likelihood, key=key, num_samples=1, **args)
  z, loc, var = np.asarray(out.z[0]), np.asarray(out.loc), np.exp(np.asarray(out.log_var))
  log_ratio = stats.norm(0, 1).logpdf(z).sum(-1) - stats.norm(loc, np.sqrt(var)).logpdf(z).sum(-1)
  np.testing.assert_allclose(l1, np.asarray(out.reconstruction) + log_ratio, rtol=1e-13)


def test_likelihoods_match_scipy_in_float64():
  rng = np.random.default_rng(3)
  logits = rng.normal(scale=20.0, size=(4, 6))  # far into the tails, where float32 loses the small mass
  x = (rng.random((4, 6)) < 0.5).astype(np.float64)
  # log sigmoid(l) = -log(1 + e^-l), exact in float64 where scipy's expit would round to 0 or 1.
  expected = -(x * np.logaddexp(0.0, -logits) + (1 - x) * np.logaddexp(0.0, logits)).sum(-1)
  got = jaxvae.bernoulli_log_likelihood(jnp.asarray(x), jnp.asarray(logits))
  np.testing.assert_allclose(got, expected, rtol=1e-12)
  loc, log_scale = rng.normal(size=(4, 6)), rng.normal(scale=0.3, size=(4, 6))
  y = rng.normal(size=(4, 6))
  got = jaxvae.gaussian_log_likelihood(jnp.asarray(y), jnp.asarray(loc), jnp.asarray(log_scale))
  np.testing.assert_allclose(got, stats.norm(loc, np.exp(log_scale)).logpdf(y).sum(-1), rtol=1e-14)
