"""Gradients of the ELBO and the IWAE bound, in the encoder and the decoder, against closed forms (float64).

A linear-Gaussian model: encoder q(z|x) = N(x A + b, diag(exp(c))), decoder
p(x|z) = N(W z + mu, s^2 I) with s = exp(log_s), prior N(0, I). Its ELBO has a
closed form, so the expected gradient of the Monte Carlo estimators (reparameterised,
so unbiased) is the gradient of that closed form, taken here by central finite
differences in NumPy float64 (independent of JAX's autodiff). Each test compares
the mean of the estimator's gradient over many keys with it, within 4 standard
errors of that mean (the sample standard deviation over keys / sqrt(n)).

A `jax.lax.stop_gradient` around the reparameterised samples in `jaxvae.elbo` or
in `jaxvae.iwae_bounds` drops the encoder's gradient through the reconstruction
term (or adds a bias through log q): these tests fail for either.

Everything runs inside `jax.enable_x64(True)`, a context manager, so float64
does not leak into other tests of the same worker.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import jaxvae

DATA, LATENT, BATCH = 4, 2, 3
NUM_KEYS = 2000
NUM_SIGMAS = 4.0


def _general_params():
  """Encoder and decoder parameters far from the exact posterior (float64 NumPy)."""
  rng = np.random.default_rng(0)
  return {
    'A': 0.5 * rng.normal(size=(DATA, LATENT)),
    'b': 0.3 * rng.normal(size=LATENT),
    'c': np.array([-0.4, 0.3]),
    'W': rng.normal(size=(DATA, LATENT)),
    'mu': rng.normal(size=DATA),
    'log_s': np.array(math.log(0.7)),
  }


def _exact_posterior_params():
  """Decoder with orthogonal columns of W, and the encoder of its exact (diagonal) posterior."""
  rng = np.random.default_rng(1)
  basis, _ = np.linalg.qr(rng.normal(size=(DATA, LATENT)))
  weights, bias, log_s = basis * np.array([1.5, 0.8]), rng.normal(size=DATA), math.log(0.6)
  noise_var = math.exp(2 * log_s)
  posterior_var = 1.0 / (1.0 + np.diag(weights.T @ weights) / noise_var)  # [Z]
  projection = weights * posterior_var[None] / noise_var  # [X, Z]: (x - mu) -> posterior mean
  return {
    'A': projection,
    'b': -bias @ projection,
    'c': np.log(posterior_var),
    'W': weights,
    'mu': bias,
    'log_s': np.array(log_s),
  }


def _data(seed=2):
  return np.random.default_rng(seed).normal(size=(BATCH, DATA))


# Closed forms in NumPy float64, batch means.


def _closed_form_elbo(params, x):
  m = x @ params['A'] + params['b']  # [B, Z]
  v = np.exp(params['c'])  # [Z]
  noise_var = np.exp(2 * params['log_s'])
  residual = x - (m @ params['W'].T + params['mu'])  # [B, X]
  # E_q[log p(x|z)] = log N(x; W m + mu, s^2 I) - tr(W diag(v) W^T) / (2 s^2).
  trace = np.sum(params['W'] ** 2 * v[None])
  reconstruction = -0.5 * DATA * np.log(2 * np.pi * noise_var) - (np.sum(residual**2, -1) + trace) / (2 * noise_var)
  kl = 0.5 * np.sum(m**2 + v[None] - 1 - params['c'][None], -1)
  return np.mean(reconstruction - kl)


def _closed_form_log_marginal(params, x):
  covariance = params['W'] @ params['W'].T + np.exp(2 * params['log_s']) * np.eye(DATA)
  residual = x - params['mu']
  _, log_det = np.linalg.slogdet(covariance)
  quadratic = np.sum(residual * np.linalg.solve(covariance, residual.T).T, -1)
  return np.mean(-0.5 * (DATA * np.log(2 * np.pi) + log_det + quadratic))


def _finite_difference_gradient(function, params, step=1e-6):
  """Central differences of a NumPy float64 function of the parameter dict; a dict of the same shapes."""
  grads = {}
  for name, value in params.items():
    grad = np.zeros_like(value, dtype=np.float64)
    for index in np.ndindex(np.shape(value)):
      up, down = (np.array(value, np.float64, copy=True) for _ in range(2))
      up[index] += step
      down[index] -= step
      grad[index] = (function({**params, name: up}) - function({**params, name: down})) / (2 * step)
    grads[name] = grad
  return grads


# The model as jaxvae sees it.


def _bound_args(params):
  def encoder(x):
    loc = x @ params['A'] + params['b'][None]  # [B, Z]
    return loc, jnp.broadcast_to(params['c'][None], loc.shape)

  def decoder(z):  # [N, Z] -> (loc, log_scale), each [N, X]
    loc = z @ params['W'].T + params['mu'][None]
    return loc, jnp.broadcast_to(params['log_s'], loc.shape)

  log_likelihood = lambda x, out: jaxvae.gaussian_log_likelihood(x, out[0], out[1])
  return dict(encoder=encoder, decoder=decoder, log_likelihood=log_likelihood)


def _estimator(name, num_samples, chunk_size=None):
  def value(params, x, key):
    args = _bound_args(params)
    if name == 'elbo':
      return jnp.mean(jaxvae.elbo(x, key=key, num_samples=num_samples, **args).elbo)
    return jnp.mean(jaxvae.iwae_bound(x, key=key, num_samples=num_samples, chunk_size=chunk_size, **args))

  return value


def _gradient_samples(value, params, x):
  """The estimator's gradient for each of `NUM_KEYS` keys, flattened: `[n, P]`."""
  params = jax.tree.map(jnp.asarray, params)
  keys = jax.random.split(jax.random.key(0), NUM_KEYS)
  grads = jax.jit(jax.vmap(jax.grad(value), in_axes=(None, None, 0)))(params, jnp.asarray(x), keys)
  return np.asarray(jax.vmap(lambda g: ravel_pytree(g)[0])(grads))


def _assert_unbiased(samples, expected, params):
  """Each component's mean over keys within `NUM_SIGMAS` standard errors of `expected` (a dict like params)."""
  expected_flat = np.asarray(ravel_pytree(jax.tree.map(jnp.asarray, expected))[0])
  labels = [f'{name}{list(index)}' for name in sorted(params) for index in np.ndindex(np.shape(params[name]))]
  mean = samples.mean(0)
  stderr = samples.std(0, ddof=1) / math.sqrt(samples.shape[0])
  z_scores = (mean - expected_flat) / np.maximum(stderr, 1e-12)
  bad = np.abs(mean - expected_flat) > NUM_SIGMAS * stderr + 1e-7
  assert not bad.any(), {labels[i]: (mean[i], expected_flat[i], z_scores[i]) for i in np.flatnonzero(bad)}


@pytest.mark.parametrize(
  'name, num_samples',
  [('elbo', 1), ('elbo', 3), ('iwae', 1)],  # L_1 is the ELBO's Monte Carlo form: the same expectation
)
def test_gradients_in_encoder_and_decoder_are_unbiased_for_the_elbo(name, num_samples):
  with jax.enable_x64(True):
    params, x = _general_params(), _data()
    expected = _finite_difference_gradient(lambda p: _closed_form_elbo(p, x), params)
    # The closed form is right: jaxvae's ELBO averages to it (checks the model, not the gradient).
    values = jax.vmap(lambda k: _estimator(name, num_samples)(jax.tree.map(jnp.asarray, params), x, k))(
      jax.random.split(jax.random.key(1), NUM_KEYS)
    )
    stderr = float(np.std(values, ddof=1)) / math.sqrt(NUM_KEYS)
    assert abs(float(np.mean(values)) - _closed_form_elbo(params, x)) < NUM_SIGMAS * stderr
    samples = _gradient_samples(_estimator(name, num_samples), params, x)
    assert samples.dtype == np.float64
    _assert_unbiased(samples, expected, params)
    # The encoder gets a real gradient: through the samples, not only through the closed-form KL.
    assert np.abs(expected['A']).max() > 0.5
  assert jnp.zeros(1).dtype == jnp.float32  # float64 stayed inside the context


@pytest.mark.parametrize('num_samples, chunk_size', [(1, None), (8, None), (8, 3)])
def test_iwae_gradient_at_the_exact_posterior_is_that_of_log_marginal(num_samples, chunk_size):
  # With q the exact posterior every weight is p(x): L_K = log p(x) for every sample. Its expected
  # gradient in the decoder is d log p(x) (Fisher's identity), and in the encoder 0 (q maximises E[L_K]).
  with jax.enable_x64(True):
    params, x = _exact_posterior_params(), _data(seed=3)
    value = _estimator('iwae', num_samples, chunk_size)
    bound = value(jax.tree.map(jnp.asarray, params), jnp.asarray(x), jax.random.key(0))
    np.testing.assert_allclose(bound, _closed_form_log_marginal(params, x), rtol=1e-12)
    decoder_grad = _finite_difference_gradient(
      lambda p: _closed_form_log_marginal({**params, **p}, x), {k: params[k] for k in ('W', 'mu', 'log_s')}
    )
    expected = {'A': np.zeros((DATA, LATENT)), 'b': np.zeros(LATENT), 'c': np.zeros(LATENT), **decoder_grad}
    _assert_unbiased(_gradient_samples(value, params, x), expected, params)
  assert jnp.zeros(1).dtype == jnp.float32
