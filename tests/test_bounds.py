"""ELBO and IWAE bound on a linear-Gaussian model, where log p(x) and the posterior are exact.

p(z) = N(0, I_3), p(x|z) = N(W z + b, s^2 I_5) with orthogonal columns of W, so
p(x) = N(b, W W^T + s^2 I) and the posterior N(mu(x), Sigma) is diagonal:
Sigma = (I + W^T W / s^2)^-1, mu(x) = Sigma W^T (x - b) / s^2.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from scipy import stats

import jaxvae

LATENT, DATA, LOG_SCALE = 3, 5, np.log(0.5)


def _model(seed=0):
  rng = np.random.default_rng(seed)
  basis, _ = np.linalg.qr(rng.normal(size=(DATA, LATENT)))
  weights = basis * np.array([2.0, 1.0, 0.5])  # [5, 3], W^T W diagonal
  bias = rng.normal(size=DATA)
  return weights, bias


def _exact_log_marginal(x, weights, bias):
  covariance = weights @ weights.T + np.exp(2 * LOG_SCALE) * np.eye(DATA)
  return stats.multivariate_normal(bias, covariance).logpdf(np.asarray(x, np.float64))


def _exact_posterior(weights, bias):
  noise_var = np.exp(2 * LOG_SCALE)
  posterior_var = 1.0 / (1.0 + np.diag(weights.T @ weights) / noise_var)  # [3]
  projection = (weights * posterior_var[None]) / noise_var  # [5, 3]: x - b -> mu
  return projection, posterior_var


def _decoder(weights, bias):
  return lambda z: z @ jnp.asarray(weights.T, jnp.float32) + jnp.asarray(bias, jnp.float32)[None]


def _encoder(weights, bias, *, loc_scale=1.0, log_var_shift=0.0):
  projection, posterior_var = _exact_posterior(weights, bias)

  def encoder(x):
    loc = (x - jnp.asarray(bias, jnp.float32)[None]) @ jnp.asarray(projection, jnp.float32)
    log_var = jnp.broadcast_to(jnp.asarray(np.log(posterior_var), jnp.float32)[None], loc.shape)
    return loc * loc_scale, log_var + log_var_shift

  return encoder


def _log_likelihood(x, loc):
  return jaxvae.gaussian_log_likelihood(x, loc, jnp.float32(LOG_SCALE))


def _data(num, seed=1):
  weights, bias = _model()
  rng = np.random.default_rng(seed)
  z = rng.normal(size=(num, LATENT))
  x = z @ weights.T + bias + np.exp(LOG_SCALE) * rng.normal(size=(num, DATA))
  return jnp.asarray(x, jnp.float32)


def _bound_args(**encoder_options):
  weights, bias = _model()
  return dict(
    encoder=_encoder(weights, bias, **encoder_options), decoder=_decoder(weights, bias), log_likelihood=_log_likelihood
  )


class ExactPosteriorTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(1, 7, 100)
  def test_iwae_equals_log_marginal(self, num_samples):
    # With the exact posterior every importance weight equals p(x): no variance, no gap.
    x = _data(16)
    iwae = self.variant(functools.partial(jaxvae.iwae_bound, num_samples=num_samples, **_bound_args()))
    got = iwae(x, key=jax.random.key(0))
    chex.assert_shape(got, (16,))
    np.testing.assert_allclose(got, _exact_log_marginal(x, *_model()), rtol=1e-5, atol=1e-4)

  def test_elbo_equals_log_marginal(self):
    x = _data(4)
    weights, bias = _model()
    out = jaxvae.elbo(x, key=jax.random.key(0), **_bound_args())
    _, posterior_var = _exact_posterior(weights, bias)
    # Closed-form E_q[log p(x|z)] = log p(x | z = posterior mean) - tr(W Sigma W^T) / (2 s^2), from jaxvae's
    # own posterior, likelihood and KL: with the exact posterior it is log p(x) exactly.
    noise_var = np.exp(2 * LOG_SCALE)
    at_mean = _log_likelihood(x, _decoder(weights, bias)(out.loc))
    expected_reconstruction = np.asarray(at_mean, np.float64) - np.sum(weights**2 * posterior_var[None]) / (
      2 * noise_var
    )
    kl = np.asarray(out.kl, np.float64)
    np.testing.assert_allclose(expected_reconstruction - kl, _exact_log_marginal(x, weights, bias), rtol=1e-6)
    loc = np.asarray(out.loc, np.float64)
    np.testing.assert_allclose(kl, 0.5 * np.sum(loc**2 + posterior_var - 1 - np.log(posterior_var), -1), rtol=1e-5)

    # The Monte Carlo ELBO is unbiased for it: check within 4 standard errors, over vmapped keys.
    keys = jax.random.split(jax.random.key(0), 4000)
    per_key = jax.vmap(lambda k: jaxvae.elbo(x, key=k, **_bound_args()))(keys)  # ElboOutput of [R, B]
    stderr = per_key.elbo.std(0) / np.sqrt(len(keys))
    np.testing.assert_array_less(np.abs(per_key.elbo.mean(0) - (expected_reconstruction - kl)), 4 * stderr + 1e-4)


class OrderingTest(chex.TestCase):
  def test_elbo_below_iwae_rising_to_log_marginal(self):
    x = _data(2000, seed=2)
    args = _bound_args(loc_scale=0.6, log_var_shift=0.7)  # a poor encoder: a wide gap to close
    log_marginal = _exact_log_marginal(x, *_model()).mean()
    key = jax.random.key(3)
    per_example_elbo = jaxvae.elbo(x, key=key, num_samples=10, **args).elbo  # [N]
    per_example_l1 = jaxvae.iwae_bound(x, key=key, num_samples=1, **args)  # [N]
    # L_1 is the ELBO, estimated by one sample: their per-example difference has mean 0, within 4 standard errors.
    difference = np.asarray(per_example_l1 - per_example_elbo, np.float64)
    assert abs(difference.mean()) < 4 * difference.std(ddof=1) / np.sqrt(len(difference)), difference.mean()
    elbo = per_example_elbo.mean()
    bounds = [jaxvae.iwae_bound(x, key=key, num_samples=k, chunk_size=100, **args).mean() for k in (1, 10, 100, 1000)]
    assert elbo < bounds[1] < bounds[2] < bounds[3] < log_marginal, (elbo, bounds, log_marginal)
    assert log_marginal - bounds[3] < 0.15 * (log_marginal - elbo), (elbo, bounds, log_marginal)

  @parameterized.parameters((50, 7), (50, 10), (12, 1), (5, 100))
  def test_chunked_equals_unchunked(self, num_samples, chunk_size):
    x = _data(8)
    args = _bound_args(loc_scale=0.5)
    whole = jaxvae.iwae_bound(x, key=jax.random.key(0), num_samples=num_samples, **args)
    chunked = jaxvae.iwae_bound(x, key=jax.random.key(0), num_samples=num_samples, chunk_size=chunk_size, **args)
    np.testing.assert_allclose(chunked, whole, rtol=1e-6, atol=1e-5)


class TransformTest(chex.TestCase):
  def test_gradients_are_those_of_the_estimators_written_out_on_the_same_noise(self):
    # Sample k of each example is loc + scale * normal(fold_in(key, k)): written out by hand, the single-key
    # ELBO and IWAE estimates (and so their gradients in the encoder and the decoder) must match exactly.
    # A stop_gradient on z, or a chunk whose gradient is lost in the scan, breaks this. (Unbiasedness of the
    # gradients against closed forms: tests/test_gradients.py.)
    x = _data(8)
    weights, bias = _model()
    projection, posterior_var = _exact_posterior(weights, bias)
    params = {
      'proj': jnp.asarray(0.5 * projection, jnp.float32),
      'log_var': jnp.asarray(np.log(posterior_var) + 0.5, jnp.float32),
      'w': jnp.asarray(weights, jnp.float32),
      'b': jnp.asarray(bias, jnp.float32),
    }

    def args(p):
      encoder = lambda x: (x @ p['proj'], jnp.broadcast_to(p['log_var'][None], (x.shape[0], LATENT)))
      decoder = lambda z: z @ p['w'].T + p['b'][None]
      return dict(encoder=encoder, decoder=decoder, log_likelihood=_log_likelihood)

    def by_hand(p, key, num_samples):  # [S, B] log p(x|z), log p(z) - log q(z|x), and the KL [B]
      eps = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(key, k), (8, LATENT)))(jnp.arange(num_samples))
      loc, log_var = x @ p['proj'], jnp.broadcast_to(p['log_var'][None], (8, LATENT))  # [B, D] each
      z = loc[None] + jnp.exp(0.5 * log_var)[None] * eps  # [S, B, D]
      mean = z @ p['w'].T + p['b'][None, None]  # [S, B, X]
      log_px = jnp.sum(
        -0.5 * jnp.square((x[None] - mean) / np.exp(LOG_SCALE)) - LOG_SCALE - 0.5 * np.log(2 * np.pi), -1
      )
      log_ratio = jnp.sum(-0.5 * jnp.square(z) + 0.5 * jnp.square(eps) + 0.5 * log_var[None], -1)
      kl = 0.5 * jnp.sum(jnp.square(loc) + jnp.exp(log_var) - 1 - log_var, -1)
      return log_px, log_ratio, kl

    def elbo_by_hand(p):
      log_px, _, kl = by_hand(p, jax.random.key(0), 3)
      return jnp.mean(log_px.mean(0) - kl)

    def iwae_by_hand(p):
      log_px, log_ratio, _ = by_hand(p, jax.random.key(1), 20)
      return jnp.mean(jax.nn.logsumexp(log_px + log_ratio, axis=0) - np.log(20))

    elbo = lambda p: jaxvae.elbo(x, key=jax.random.key(0), num_samples=3, **args(p)).elbo.mean()
    iwae = lambda p: jaxvae.iwae_bound(x, key=jax.random.key(1), num_samples=20, chunk_size=6, **args(p)).mean()
    for got, expected in ((elbo, elbo_by_hand), (iwae, iwae_by_hand)):
      np.testing.assert_allclose(jax.jit(got)(params), expected(params), rtol=1e-5)
      got_grads, expected_grads = jax.jit(jax.grad(got))(params), jax.grad(expected)(params)
      for name in params:
        assert float(jnp.abs(expected_grads[name]).max()) > 1e-2, name  # every parameter has a real gradient
        np.testing.assert_allclose(got_grads[name], expected_grads[name], rtol=1e-4, atol=1e-5, err_msg=name)

  def test_vmap_over_batches_matches_loop(self):
    x = _data(12).reshape(3, 4, DATA)
    key = jax.random.key(0)
    iwae = lambda xb: jaxvae.iwae_bound(xb, key=key, num_samples=9, chunk_size=4, **_bound_args(loc_scale=0.5))
    np.testing.assert_allclose(jax.vmap(iwae)(x), jnp.stack([iwae(xb) for xb in x]), rtol=1e-5)
    elbo = lambda xb: jaxvae.elbo(xb, key=key, **_bound_args(loc_scale=0.5)).elbo
    np.testing.assert_allclose(jax.vmap(elbo)(x), jnp.stack([elbo(xb) for xb in x]), rtol=1e-5)

  def test_sharded_jit_matches_single_device(self):
    devices = jax.devices()
    if len(devices) < 2:
      pytest.skip('needs several devices (tests/conftest.py fakes 8 CPU devices)')
    mesh = jax.make_mesh((len(devices),), ('data',))
    x = _data(8 * len(devices))
    sharded_x = jax.device_put(x, jax.NamedSharding(mesh, jax.P('data')))
    bound = jax.jit(
      lambda xb: jaxvae.iwae_bound(xb, key=jax.random.key(0), num_samples=16, **_bound_args(loc_scale=0.5))
    )
    np.testing.assert_allclose(bound(sharded_x), bound(x), rtol=1e-5)

  def test_no_retracing_across_calls(self):
    traces = []

    @jax.jit
    def step(xb, key):
      traces.append(None)
      return jaxvae.elbo(xb, key=key, **_bound_args()).elbo

    for i in range(3):
      step(_data(4, seed=i), jax.random.key(i))
    assert len(traces) == 1


class ErrorTest(chex.TestCase):
  def test_bad_data(self):
    with pytest.raises(ValueError, match='`x` must be a floating-point array'):
      jaxvae.elbo(jnp.zeros((2, DATA), jnp.int32), key=jax.random.key(0), **_bound_args())
    with pytest.raises(ValueError, match='`x` must have at least 2 axes'):
      jaxvae.iwae_bound(jnp.zeros(DATA), key=jax.random.key(0), num_samples=2, **_bound_args())

  def test_bad_encoder(self):
    args = _bound_args()
    with pytest.raises(ValueError, match=r'must return a pair \(loc, log_var\)'):
      jaxvae.elbo(_data(2), key=jax.random.key(0), **{**args, 'encoder': lambda x: x})
    with pytest.raises(ValueError, match=r'loc and log_var of shape \[B, D\] with B = 2'):
      jaxvae.elbo(_data(2), key=jax.random.key(0), **{**args, 'encoder': lambda x: (jnp.zeros((3, 2)),) * 2})
    with pytest.raises(ValueError, match='`encoder loc` and `encoder log_var` must have the same shape'):
      jaxvae.elbo(
        _data(2), key=jax.random.key(0), **{**args, 'encoder': lambda x: (jnp.zeros((2, 2)), jnp.zeros((2, 3)))}
      )

  def test_bad_decoder_and_likelihood(self):
    args = _bound_args()
    with pytest.raises(ValueError, match=r'must have leading axis N = 2 .* got an output of shape \(3, 5\)'):
      jaxvae.elbo(_data(2), key=jax.random.key(0), num_samples=3, **{**args, 'decoder': lambda z: jnp.zeros((3, DATA))})
    with pytest.raises(ValueError, match=r'must return one value per sample and example, shape \(1, 2\)'):
      jaxvae.elbo(_data(2), key=jax.random.key(0), **{**args, 'log_likelihood': lambda x, p: p.sum()})

  def test_bad_sample_counts(self):
    with pytest.raises(ValueError, match='`num_samples` must be an integer >= 1; got 0'):
      jaxvae.iwae_bound(_data(2), key=jax.random.key(0), num_samples=0, **_bound_args())
    with pytest.raises(ValueError, match='`chunk_size` must be an integer >= 1; got 0'):
      jaxvae.iwae_bound(_data(2), key=jax.random.key(0), num_samples=4, chunk_size=0, **_bound_args())
    with pytest.raises(ValueError, match='`num_samples` must be an integer >= 1; got 2.0'):
      jaxvae.elbo(_data(2), key=jax.random.key(0), num_samples=2.0, **_bound_args())


def test_iwae_with_one_sample_is_the_monte_carlo_elbo_with_the_same_key():
  x, key = _data(6), jax.random.key(5)
  args = _bound_args(loc_scale=0.7, log_var_shift=0.5)
  out = jaxvae.elbo(x, key=key, **args)
  monte_carlo_elbo = (
    out.reconstruction
    + jaxvae.standard_normal_log_prob(out.z[0])
    - jaxvae.diag_gaussian_log_prob(out.z[0], out.loc, out.log_var)
  )
  np.testing.assert_allclose(jaxvae.iwae_bound(x, key=key, num_samples=1, **args), monte_carlo_elbo, rtol=1e-5)


def test_several_k_in_one_pass_share_their_samples():
  x, key = _data(4), jax.random.key(6)
  args = _bound_args(loc_scale=0.7, log_var_shift=0.5)
  together = jax.jit(lambda x: jaxvae.iwae_bounds(x, key=key, num_samples=(1, 5, 50), chunk_size=7, **args))(x)
  assert sorted(together) == [1, 5, 50]
  for k, bound in together.items():  # L_K of the first K samples, however they were chunked
    np.testing.assert_allclose(bound, jaxvae.iwae_bound(x, key=key, num_samples=k, chunk_size=3, **args), rtol=1e-5)
  with pytest.raises(ValueError, match='`num_samples` must hold at least one K'):
    jaxvae.iwae_bounds(x, key=key, num_samples=(), **args)
  with pytest.raises(ValueError, match='num_samples'):
    jaxvae.iwae_bounds(x, key=key, num_samples=(5, 0), **args)
