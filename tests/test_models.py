"""Encoders and decoders: output shapes for every architecture, image size and likelihood."""

import chex
import jax
import jax.numpy as jnp
import pytest
from absl.testing import parameterized

import jaxvae
from jaxvae import _models


class ShapeTest(chex.TestCase):
  @parameterized.product(
    (
      dict(architecture='mlp', event_shape=(28, 28, 1)),
      dict(architecture='conv', event_shape=(28, 28, 1)),
      dict(architecture='conv', event_shape=(32, 32, 3)),
      dict(architecture='conv', event_shape=(64, 64, 1)),
      dict(architecture='conv', event_shape=(128, 128, 3)),
    ),
    likelihood=_models.LIKELIHOODS,
  )
  def test_encode_decode_shapes(self, architecture, event_shape, likelihood):
    vae = jaxvae.make_vae(
      architecture=architecture,
      event_shape=event_shape,
      latent_dim=3,
      likelihood=likelihood,
      hidden_sizes=(8,),
      conv_channels=(4, 4, 8, 8),
      dense_size=16,
      gaussian_scale='per_pixel',
    )
    x = jnp.full((2, *event_shape), 0.5)
    params = jax.jit(vae.init)(jax.random.key(0), x)['params']
    encoder, decoder = jaxvae.bind_vae(vae, params)
    loc, log_var = encoder(x)
    chex.assert_shape([loc, log_var], (2, 3))
    decoded = decoder(jnp.zeros((5, 3)))
    chex.assert_tree_shape_prefix(decoded, (5, *event_shape))
    out = jaxvae.elbo(
      x, encoder=encoder, decoder=decoder, log_likelihood=_models.log_likelihood_fn(likelihood), key=jax.random.key(1)
    )
    chex.assert_shape(out.elbo, (2,))
    chex.assert_tree_all_finite(out)

  @parameterized.parameters(('fixed', ()), ('scalar', ()), ('per_pixel', (4, 4, 1)))
  def test_gaussian_scales(self, gaussian_scale, param_shape):
    vae = jaxvae.make_vae(
      architecture='mlp',
      event_shape=(4, 4, 1),
      latent_dim=2,
      likelihood='gaussian',
      hidden_sizes=(8,),
      gaussian_scale=gaussian_scale,
      gaussian_fixed_log_scale=-1.0,
    )
    params = vae.init(jax.random.key(0), jnp.zeros((1, 4, 4, 1)))['params']
    learned = params['decoder'].get('head', {}).get('log_scale')
    if gaussian_scale == 'fixed':
      assert learned is None
    else:
      chex.assert_shape(learned, param_shape)
    _, decoder = jaxvae.bind_vae(vae, params)
    loc, log_scale = decoder(jnp.zeros((3, 2)))
    chex.assert_equal_shape([loc, log_scale])
    chex.assert_trees_all_close(log_scale, jnp.full((3, 4, 4, 1), -1.0))


class ErrorTest(chex.TestCase):
  def test_bad_settings(self):
    base = dict(architecture='mlp', event_shape=(28, 28, 1), latent_dim=2, likelihood='bernoulli')
    with pytest.raises(ValueError, match="unknown likelihood 'poisson'"):
      jaxvae.make_vae(**{**base, 'likelihood': 'poisson'})
    with pytest.raises(ValueError, match="unknown architecture 'rnn'"):
      jaxvae.make_vae(**{**base, 'architecture': 'rnn'})
    with pytest.raises(ValueError, match="unknown activation 'sigmoidal'"):
      jaxvae.make_vae(**{**base, 'activation': 'sigmoidal'})
    with pytest.raises(ValueError, match='`latent_dim` must be positive integers; got 0'):
      jaxvae.make_vae(**{**base, 'latent_dim': 0})
    with pytest.raises(ValueError, match=r'the conv architecture takes square images of size \(28, 32, 64, 128\)'):
      jaxvae.make_vae(**{**base, 'architecture': 'conv', 'event_shape': (48, 48, 3)})
