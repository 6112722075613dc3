"""What a conditional VAE is given, and what an inpainting model is scored on: the hidden pixels only."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import load_config

import jaxvae
from jaxvae import _conditions, _dataset_bounds, _parallel, _run, _train


@pytest.mark.parametrize(
  'log_likelihood, params',
  [
    (jaxvae.bernoulli_log_likelihood, lambda rng: (rng.normal(size=(2, 3, 4, 4, 1)),)),
    (jaxvae.gaussian_log_likelihood, lambda rng: (rng.normal(size=(2, 3, 4, 4, 1)), rng.normal(size=(4, 4, 1)))),
    (
      jaxvae.discretized_logistic_log_likelihood,
      lambda rng: (rng.normal(size=(2, 3, 4, 4, 1)), rng.normal(size=(2, 3, 4, 4, 1)) - 2),
    ),
  ],
)
def test_a_masked_likelihood_is_the_likelihood_of_the_masked_dimensions(log_likelihood, params):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.integers(0, 2, (3, 4, 4, 1)), jnp.float32)
  arrays = [jnp.asarray(p, jnp.float32) for p in params(rng)]
  mask = np.zeros((3, 4, 4, 1), np.float32)
  mask[0, :2], mask[1, :, 1:], mask[2] = 1, 1, 1  # a different subset per example
  masked = log_likelihood(x, *arrays, mask=mask)  # [2, 3]
  for i in range(3):
    kept = mask[i, ..., 0].astype(bool)  # [4, 4]

    def kept_pixels(array, i=i, kept=kept):  # [2, 3, 4, 4, 1] -> [2, 1, n, 1]; a per-pixel [4, 4, 1] -> [n, 1]
      return array[:, i][:, kept][:, None] if array.ndim == 5 else array[kept]

    alone = log_likelihood(x[i][kept][None], *map(kept_pixels, arrays))  # the kept pixels as an event: [2, 1]
    np.testing.assert_allclose(masked[:, i], alone[:, 0], rtol=1e-5)


def test_inpainting_masks_are_fixed_per_example_however_it_is_batched():
  make = functools.partial(_conditions.make_condition, 'inpaint', num_classes=0)
  x = jnp.ones((6, 28, 28, 1))
  key = jax.random.key(0)
  whole = make(x, {'index': jnp.arange(6)}, key)[..., -1]
  part = make(x[:3], {'index': jnp.arange(3, 6)}, key)[..., -1]
  np.testing.assert_array_equal(part, whole[3:])
  assert len({np.asarray(m).tobytes() for m in whole}) > 1  # masks differ between examples
  hidden = 1 - whole.reshape(6, 2, 14, 2, 14).mean((2, 4))  # [6, 2, 2]: the hidden fraction of each quadrant
  assert set(np.unique(hidden).tolist()) == {0.0, 1.0} and np.all((hidden.sum((1, 2)) >= 1) & (hidden.sum((1, 2)) <= 3))


def test_an_inpainting_model_is_scored_on_the_hidden_pixels_only():
  # x is all ones; the decoder is sure of the hidden pixels (logit +20) and wrong on the visible ones (-20), so
  # log p(x_hidden | z) is ~0 while log p(x | z) would be ~-20 per visible pixel.
  run = _run.Run(load_config('mnist_cvae', 'inpaint,smoke'), mesh=_parallel.make_mesh(jax.devices()[:1]))

  def bind(params, condition):
    visible = condition[..., -1:]  # [B, 28, 28, 1]
    encoder = lambda x: (jnp.zeros((len(x), 4)), jnp.zeros((len(x), 4)))  # q(z|x) = p(z): KL = 0
    decoder = lambda z: jnp.broadcast_to(20.0 - 40.0 * visible, (len(z), 28, 28, 1))
    return encoder, decoder

  options = dict(log_likelihood=run.log_likelihood, elbo_num_samples=1, iwae_num_samples=(3,), iwae_chunk_size=None)
  options.update(mesh=run.mesh, condition_fn=run.condition_fn)
  batch = {'image': np.ones((8, 28, 28, 1), np.float32), 'index': np.arange(8, dtype=np.int32)}
  scored = _dataset_bounds.make_bounds_fn(bind, scored_mask_fn=run.scored_mask, **options)
  everything = _dataset_bounds.make_bounds_fn(bind, **options)
  values = _dataset_bounds.per_example_bounds([batch], scored, None, key=jax.random.key(0), mesh=run.mesh)
  assert np.all(np.abs(values['elbo']) < 1e-4) and np.all(np.abs(values['iwae'][3]) < 1e-4)
  assert set(values['dims'].tolist()) <= {196.0, 392.0, 588.0}  # one to three 14x14 quadrants hidden
  summary = _dataset_bounds.summarize(values, bits_per_dim_dims=784)
  expected_bits = -values['elbo'] / (values['dims'] * np.log(2))  # per example, over its hidden dimensions
  np.testing.assert_allclose(summary.elbo_bits_per_dim.mean, expected_bits.mean(), atol=1e-12)
  whole = _dataset_bounds.per_example_bounds([batch], everything, None, key=jax.random.key(0), mesh=run.mesh)
  assert np.all(whole['elbo'] < -1000) and 'dims' not in whole


def test_an_inpainting_model_trains_on_the_hidden_pixels_only():
  # Untrained, the decoder's logits are near 0: about -log 2 nats per scored pixel. One to three of the
  # four quadrants are hidden (two on average), never the whole image (784 pixels).
  run = _run.Run(load_config('mnist_cvae', 'inpaint,smoke'), mesh=_parallel.make_mesh(jax.devices()[:1]))
  images = np.random.default_rng(0).integers(0, 256, (64, 28, 28, 1), np.uint8)
  _, metrics = _train.make_train_step(run)(run.init_state(), {'image': images})
  per_pixel = float(metrics['train_reconstruction']) / (392 * np.log(2))
  assert 0.8 < -per_pixel < 1.25, per_pixel
