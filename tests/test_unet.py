"""The Variational U-Net and its learned prior: the bounds under p(z | y), skips that carry the structure, errors."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import load_config

import jaxvae
from jaxvae import _conditions, _gaussian, _learned_prior, _models, _run, _transfer, _unet

_SHAPE = (16, 16, 3)


def _tiny(prior='learned', likelihood='gaussian'):
  return _unet.make_unet_vae(
    event_shape=_SHAPE, latent_dim=3, likelihood=likelihood, conv_channels=(4, 8), prior=prior, gaussian_scale='scalar'
  )


def _init(vae, seed=0):
  x = jax.random.uniform(jax.random.key(seed), (4, *_SHAPE))
  y = _conditions.structure_map(x)
  params = jax.jit(vae.init)(jax.random.key(seed + 1), x, y)['params']
  return x, y, params


# ----------------------------------------------------------------------------- the learned prior


def test_whitened_kl_is_the_closed_form_kl_to_the_learned_prior():
  keys = jax.random.split(jax.random.key(0), 4)
  loc_q, log_var_q, loc_p, log_var_p = (jax.random.normal(k, (5, 3)) for k in keys)
  whitened = _learned_prior.whiten(loc_q, log_var_q, loc_p, log_var_p)
  np.testing.assert_allclose(
    _gaussian.kl_diag_gaussian_standard_normal(*whitened),
    jaxvae.kl_diag_gaussians(loc_q, log_var_q, loc_p, log_var_p),
    rtol=1e-5,
  )
  # The closed form, written out (a wrong sign or a missing scale in `whiten` breaks this).
  var_q, var_p = jnp.exp(log_var_q), jnp.exp(log_var_p)
  reference = 0.5 * jnp.sum(log_var_p - log_var_q + (var_q + (loc_q - loc_p) ** 2) / var_p - 1, axis=-1)
  np.testing.assert_allclose(_gaussian.kl_diag_gaussian_standard_normal(*whitened), reference, rtol=1e-5)


def test_unwhiten_inverts_whiten_on_samples():
  loc_p, log_var_p = jnp.array([[1.0, -2.0]]), jnp.array([[0.5, -1.0]])
  z = jnp.array([[0.3, 0.7]])
  u = (z - loc_p) * jnp.exp(-0.5 * log_var_p)
  np.testing.assert_allclose(_learned_prior.unwhiten(u, loc_p, log_var_p), z, rtol=1e-6)


def _learned_prior_model(seed=0):
  """A U-Net whose learned prior is far from N(0, I) (its zero-initialised head set to random weights)."""
  vae = _tiny()
  x, y, params = _init(vae, seed)
  head = params['prior_head']['Dense_0']
  head['kernel'] = 0.3 * jax.random.normal(jax.random.key(seed + 7), head['kernel'].shape)
  head['bias'] = jax.random.normal(jax.random.key(seed + 8), head['bias'].shape)
  return vae, x, y, params


def test_elbo_of_the_unet_is_the_elbo_under_its_learned_prior():
  vae, x, y, params = _learned_prior_model()
  log_likelihood = _models.log_likelihood_fn('gaussian')
  key = jax.random.key(3)

  @jax.jit  # one compilation instead of op-by-op dispatch of every layer
  def both(params):
    variables = {'params': params}
    context = vae.apply(variables, y, method='context')
    loc_q, log_var_q = vae.apply(variables, x, context, method='appearance')
    loc_p, log_var_p = vae.apply(variables, context, method='prior')
    encoder, decoder = jaxvae.bind_vae(vae, params, y)
    out = jaxvae.elbo(x, encoder=encoder, decoder=decoder, log_likelihood=log_likelihood, key=key, num_samples=2)
    # The same samples z ~ q(z | x, y) as drawn directly, decoded without the change of variables.
    z = _gaussian.sample_diag_gaussian(key, loc_q, log_var_q, num_samples=2)  # [S, B, D]
    generated = jax.vmap(lambda z: vae.apply(variables, z, context, method='generate'))(z)
    reference_kl = jaxvae.kl_diag_gaussians(loc_q, log_var_q, loc_p, log_var_p)
    return out, reference_kl, jnp.mean(log_likelihood(x, generated), axis=0), loc_p

  out, reference_kl, reference_reconstruction, loc_p = both(params)
  assert float(jnp.max(jnp.abs(loc_p))) > 0.1  # the prior is not N(0, I)
  np.testing.assert_allclose(out.kl, reference_kl, rtol=1e-4)
  np.testing.assert_allclose(out.reconstruction, reference_reconstruction, rtol=1e-4)


def test_iwae_bound_of_the_unet_uses_the_learned_prior_density():
  vae, x, y, params = _learned_prior_model(seed=2)
  log_likelihood = _models.log_likelihood_fn('gaussian')
  key, k = jax.random.key(5), 6

  @jax.jit
  def both(params):
    variables = {'params': params}
    context = vae.apply(variables, y, method='context')
    loc_q, log_var_q = vae.apply(variables, x, context, method='appearance')
    loc_p, log_var_p = vae.apply(variables, context, method='prior')
    encoder, decoder = jaxvae.bind_vae(vae, params, y)
    bound = jaxvae.iwae_bound(
      x, encoder=encoder, decoder=decoder, log_likelihood=log_likelihood, key=key, num_samples=k
    )
    # log (1/K) sum_k p(x | y, z_k) p(z_k | y) / q(z_k | x, y), z_k from the same noise.
    eps = _gaussian.standard_normal_noise(key, loc_q.shape, num_samples=k, dtype=loc_q.dtype)
    z = loc_q[None] + jnp.exp(0.5 * log_var_q)[None] * eps  # [K, B, D]
    log_p_x = jax.vmap(lambda z: log_likelihood(x, vae.apply(variables, z, context, method='generate')))(z)
    log_weights = (
      log_p_x
      + _gaussian.diag_gaussian_log_prob(z, loc_p[None], log_var_p[None])
      - _gaussian.diag_gaussian_log_prob(z, loc_q[None], log_var_q[None])
    )
    return bound, jax.nn.logsumexp(log_weights, axis=0) - np.log(k)

  bound, reference = both(params)
  np.testing.assert_allclose(bound, reference, rtol=1e-4)


def test_prior_samples_are_samples_of_the_learned_prior():
  vae, _, y, params = _learned_prior_model(seed=4)
  variables = {'params': params}
  context = vae.apply(variables, y, method='context')
  loc_p, _ = vae.apply(variables, context, method='prior')
  _, decoder = jaxvae.bind_vae(vae, params, y)
  # u = 0, the mode of N(0, I), decodes the prior's mean z = loc_p.
  np.testing.assert_allclose(
    decoder(jnp.zeros_like(loc_p))[0], vae.apply(variables, loc_p, context, method='generate')[0], rtol=1e-5
  )


def test_standard_normal_prior_leaves_the_latent_as_it_is():
  vae = _tiny(prior='standard_normal')
  x, y, params = _init(vae)
  assert 'prior_head' not in params
  variables = {'params': params}
  context = vae.apply(variables, y, method='context')
  encoder, _ = jaxvae.bind_vae(vae, params, y)
  chex.assert_trees_all_close(encoder(x), vae.apply(variables, x, context, method='appearance'))


# ----------------------------------------------------------------------------- the U-Net


@pytest.mark.parametrize('likelihood', _models.LIKELIHOODS)
def test_every_likelihood_gives_a_finite_elbo(likelihood):
  vae = _tiny(likelihood=likelihood)
  x, y, params = _init(vae)
  x = jnp.round(x) if likelihood == 'bernoulli' else x
  encoder, decoder = jaxvae.bind_vae(vae, params, y)
  out = jaxvae.elbo(
    x, encoder=encoder, decoder=decoder, log_likelihood=_models.log_likelihood_fn(likelihood), key=jax.random.key(0)
  )
  chex.assert_shape(out.elbo, (4,))
  chex.assert_tree_all_finite(out)


def test_skip_connections_carry_the_structure_to_every_pixel():
  vae = _tiny(prior='standard_normal')
  x, y, params = _init(vae)
  variables = {'params': params}
  z = jnp.zeros((1, 3))

  def output(structure):
    context = vae.apply(variables, structure, method='context')
    return vae.apply(variables, z, context, method='generate')[0][0, ..., 0]  # [H, W] mean, channel 0

  # The Jacobian of the output at each pixel with respect to the structure at that pixel: nonzero
  # everywhere (the full-resolution skip), whatever z is. A decoder that ignores y, or sees it only
  # through the bottleneck, fails the first or second check.
  jacobian = jax.jacobian(output)(y[:1])[..., 0, :, :, 0]  # [H, W, H, W]
  own_pixel = jnp.einsum('ijij->ij', jacobian)
  assert float(jnp.min(jnp.abs(own_pixel))) > 0
  far = jacobian[0, 0, -1, -1]  # the top-left output pixel against the bottom-right structure pixel
  assert float(jnp.abs(far)) < 1e-3 * float(jnp.max(jnp.abs(own_pixel)))


def test_the_appearance_latent_reaches_the_output():
  vae = _tiny(prior='standard_normal')
  _, y, params = _init(vae)
  _, decoder = jaxvae.bind_vae(vae, params, y)
  assert float(jnp.max(jnp.abs(decoder(jnp.zeros((4, 3)))[0] - decoder(jnp.ones((4, 3)))[0]))) > 1e-4


def test_image_the_unet_cannot_halve_to_its_bottleneck_is_refused():
  with pytest.raises(ValueError, match=r'halves the image 3 times .* multiples of 8; got event shape \(20, 20, 3\)'):
    _unet.make_unet_vae(event_shape=(20, 20, 3), latent_dim=2, likelihood='gaussian', conv_channels=(4, 4, 4))


def test_unconditional_unet_is_refused():
  with pytest.raises(ValueError, match='generates from a structure map'):
    _unet.make_unet_vae(event_shape=_SHAPE, latent_dim=2, likelihood='gaussian', conv_channels=(4,), conditional=False)
  with pytest.raises(ValueError, match="unknown prior 'gamma'"):
    _unet.make_unet_vae(event_shape=_SHAPE, latent_dim=2, likelihood='gaussian', conv_channels=(4,), prior='gamma')


# ----------------------------------------------------------------------------- structure maps


def test_segmentation_keeps_regions_and_drops_fine_texture():
  x = np.zeros((1, 32, 32, 3), np.float32)
  x[:, :, 16:] = 0.8
  x[:, ::2, :8] += 0.1  # fine stripes inside the dark region
  band = np.asarray(_conditions.segmentation_map(jnp.asarray(x)))[0, ..., 0]
  np.testing.assert_allclose(band * 3, np.round(band * 3), atol=1e-6)  # four levels: 0, 1/3, 2/3, 1
  np.testing.assert_array_equal(band[:, :8], 0.0)  # the stripes vanished in the blur
  np.testing.assert_array_equal(band[:, 24:], 1.0)
  # Per-image stretching: a darker copy of the same picture has the same map.
  np.testing.assert_array_equal(np.asarray(_conditions.segmentation_map(jnp.asarray(0.5 * x)))[0, ..., 0], band)


def test_mask_condition_is_the_batch_mask():
  mask = np.zeros((2, 8, 8, 1), np.uint8)
  mask[:, 2:5, 3:6] = 1
  condition = _conditions.make_condition(
    'mask', jnp.zeros((2, 8, 8, 3)), {'mask': mask}, jax.random.key(0), num_classes=0
  )
  np.testing.assert_array_equal(condition, mask.astype(np.float32))
  assert _conditions.FEATURES['mask'] == ('mask',)


# ----------------------------------------------------------------------------- configs and bad input


@pytest.mark.parametrize('variant', ['', 'smoke', 'mask', 'segmentation,smoke', 'celeba', 'standard_normal'])
def test_shipped_shape_appearance_configs_are_valid(variant):
  config = load_config('shape_appearance', variant)
  jaxvae.validate_config(config)
  assert config.model.architecture == 'unet'
  assert config.model.prior == ('standard_normal' if variant == 'standard_normal' else 'learned')


def test_default_config_is_128_pixels_batch_32():
  config = load_config('shape_appearance')
  assert _run._data.event_shape(config.data) == (128, 128, 3)
  assert config.train.batch_size == 32


@pytest.mark.parametrize(
  'overrides, message',
  [
    (
      {'data.dataset': 'celeb_a', 'data.crop_size': 148, 'data.image_size': 128},
      r"condition='mask' needs data that carry exact shape masks \(shapes, shapes_32\); 'celeb_a' has none",
    ),
    ({'model.conv_channels': (4, 4, 4, 4, 4, 4)}, r'halves the image 6 times .* multiples of 64; got event shape'),
    ({'model.architecture': 'conv'}, r"prior='learned' is the Variational U-Net's p\(z \| y\)"),
    ({'objective.condition': 'inpaint'}, r"the unet architecture generates from a structure map; .* got 'inpaint'"),
  ],
)
def test_bad_structure_model_configs_fail_before_compiling(overrides, message):
  config = load_config('shape_appearance', 'mask,smoke')
  for path, value in overrides.items():
    section, field = path.split('.')
    config[section][field] = value
  with pytest.raises(ValueError, match=message):
    jaxvae.validate_config(config)


# ----------------------------------------------------------------------------- transfer scores


def test_transfer_scores_reward_transferred_appearance_and_kept_structure():
  from jaxvae import _shapes

  factors = _shapes.sample_factors('test', np.arange(6))
  factors[:, 8], factors[:, 13], factors[:, 15] = 0, 0.0, 0.0  # flat colours: exact expectations
  images, masks = _shapes.render(factors, 32)
  x = images / 255.0
  structure = np.roll(factors, -1, axis=0)
  perfect = structure.copy()
  perfect[:, 5:8], perfect[:, 10:13] = factors[:, 5:8], factors[:, 10:13]  # appearance n on shape n + 1
  ideal = _shapes.render(perfect, 32)[0] / 255.0
  scores = _transfer.transfer_scores(x, ideal, structure_map=None, masks=masks)
  assert scores['mask_iou'] == 1.0
  assert scores['object_colour_distance'] < 0.01 and scores['background_colour_distance'] < 0.01
  assert scores['object_colour_distance_to_structure_source'] > 0.1
  copied = _transfer.transfer_scores(x, np.roll(x, -1, axis=0), structure_map=None, masks=masks)  # no transfer
  assert copied['object_colour_distance_to_structure_source'] < 0.01
  assert copied['object_colour_distance'] > 0.1


def test_end_to_end_train_and_eval_draw_appearance_transfer(tmp_path):
  config = load_config('shape_appearance', 'mask,smoke')
  config.model.conv_channels = (4, 4, 4)
  config.train.num_train_steps, config.train.checkpoint_every, config.optim.warmup_steps = 2, 2, 1
  config.eval.num_examples, config.eval.batch_size, config.eval.num_image_rows = 8, 8, 3
  jaxvae.train_and_evaluate(config, tmp_path)
  evaluation = jaxvae.evaluate(tmp_path)
  record = json.loads(evaluation.path.read_text())
  assert {'mask_iou', 'object_colour_distance', 'colour_statistics_distance'} <= set(record['appearance_transfer'])
  assert np.isfinite(record['elbo_nats']['mean'])
  picture = tmp_path / 'pictures' / 'appearance_transfer.png'
  assert picture in evaluation.pictures
  from PIL import Image

  # (1 + 3) x (1 + 3) tiles of 32 pixels with 1 pixel of padding, drawn at scale 2.
  assert Image.open(picture).size == (2 * (4 * 33 + 1), 2 * (4 * 33 + 1))
