"""`jaxvae.evaluate_bounds` against closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import load_config
from PIL import Image

import jaxvae
from jaxvae import _pictures


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
  np.testing.assert_allclose(summary.elbo.mean, log_px.mean(), rtol=1e-5)
  np.testing.assert_allclose(summary.iwae[5].mean, log_px.mean(), rtol=1e-5)
  np.testing.assert_allclose(summary.elbo.stderr, log_px.std(ddof=1) / np.sqrt(10), rtol=1e-4)
  # -log P(pixels) <= -log p(y) + D log 256 nats: 8 bits per dimension on top of the density's.
  nll_bits = summary.nll_bits_per_dim
  np.testing.assert_allclose(nll_bits.mean, -log_px.mean() / (16 * np.log(2)) + 8, rtol=1e-5)
  np.testing.assert_allclose(nll_bits.stderr, log_px.std(ddof=1) / np.sqrt(10) / (16 * np.log(2)), rtol=1e-4)
  assert summary.to_dict()['nll_bpd'] == {'mean': nll_bits.mean, 'stderr': nll_bits.stderr}


@pytest.fixture(scope='module')
def two_dimensional_run(tmp_path_factory):
  """A smoke run of the default model with a 2-D latent space."""
  workdir = tmp_path_factory.mktemp('latent2')
  config = load_config('default', 'smoke')
  config.model.latent_dim = 2
  jaxvae.train_and_evaluate(config, workdir)
  return workdir


def test_several_k_and_the_pictures_of_a_2d_latent_space(two_dimensional_run):
  evaluation = jaxvae.evaluate(two_dimensional_run, iwae_num_samples=(50, 1, 5, 5))
  bounds = evaluation.bounds
  assert list(bounds.iwae) == [1, 5, 50] and bounds.nll.mean == -bounds.iwae[50].mean
  assert bounds.iwae[1].mean <= bounds.iwae[5].mean + 0.5 <= bounds.iwae[50].mean + 1.0
  np.testing.assert_allclose(bounds.iwae_bits_per_dim[5].mean, -bounds.iwae[5].mean / (784 * np.log(2)), rtol=1e-6)
  table = jaxvae.format_table(evaluation)
  assert 'IWAE bound, K=5' in table and 'NLL <= -IWAE, K=50' in table and f'{bounds.nll.mean:.2f} ±' in table
  pictures = two_dimensional_run / 'pictures'
  assert {p.name for p in pictures.iterdir()} == {
    'traversals.png',
    'interpolations.png',
    'manifold.png',
    'manifold_data.png',
    'latent_scatter.png',
    'training_curves.png',
  }
  assert set(evaluation.pictures) == set(pictures.iterdir())
  manifold = np.asarray(Image.open(pictures / 'manifold.png'))
  # 20 x 20 digits of 28 px, 1 px apart, framed by axes with ticks and labels.
  assert manifold.shape[0] > 20 * 29 + 1 and manifold.shape[1] > 20 * 29 + 1
  traversals = np.asarray(Image.open(pictures / 'traversals.png'))
  assert traversals.shape[0] == 2 * (_pictures._HEADER_HEIGHT + 2 * 29 + 1)  # one row per latent dimension
  interpolations = np.asarray(Image.open(pictures / 'interpolations.png'))
  # eval.num_image_rows = 2 pairs (smoke): x_a, 8 points, x_b
  assert interpolations.shape[:2] == (2 * (2 * 29 + 1), 2 * (10 * 29 + 1))


def test_eval_scalars_reach_tensorboard_at_the_checkpoint_step(two_dimensional_run):
  from tensorboard.backend.event_processing import event_accumulator

  evaluation = jaxvae.evaluate(two_dimensional_run, iwae_num_samples=(1, 5), pictures=False)
  accumulator = event_accumulator.EventAccumulator(str(two_dimensional_run / 'tensorboard'))
  accumulator.Reload()
  expected = {
    'eval_elbo_nats': evaluation.bounds.elbo.mean,
    'eval_iwae_k5_nats': evaluation.bounds.iwae[5].mean,
    'eval_nll_nats': evaluation.bounds.nll.mean,
    'eval_nll_bpd': evaluation.bounds.nll_bits_per_dim.mean,
  }
  for name, value in expected.items():
    events = accumulator.Scalars(name)
    assert events[-1].step == evaluation.step == 6
    np.testing.assert_allclose(events[-1].value, value, rtol=1e-6)


def test_evaluation_errors(two_dimensional_run):
  with pytest.raises(ValueError, match='`iwae_num_samples` must be an integer >= 1; got 0'):
    jaxvae.evaluate(two_dimensional_run, iwae_num_samples=0, pictures=False)
  with pytest.raises(ValueError, match="was trained on 'mnist_5k', not 'cifar10'"):
    jaxvae.evaluate(two_dimensional_run, dataset='cifar10')
  with pytest.raises(ValueError, match="disentanglement metrics need data with ground-truth factors.*'mnist_5k' has"):
    jaxvae.evaluate(two_dimensional_run, metrics=['mig'])


def test_a_1d_latent_space_gets_a_strip():
  picture = _pictures.latent_manifold(lambda z: jnp.zeros((len(z), 28, 28, 1)) + z[:, :, None, None] / 10, 1)
  assert picture.shape == (29 + 1, 20 * 29 + 1, 1)
  assert picture[1, 1, 0] < picture[1, -2, 0]  # z from -5 (left) to 5 (right)


def test_inpainting_completions_keep_the_given_pixels():
  x = np.random.default_rng(0).random((2, 4, 4, 1))
  mask = np.zeros((2, 4, 4, 1))
  mask[:, :2] = 1.0
  generated = np.stack([np.zeros_like(x), np.ones_like(x)])  # two completions
  grid = _pictures.completions(x, mask, generated).astype(np.float64) / 255  # rows: masked input, completions
  tile = lambda row, col: grid[1 + row * 5 : 5 + row * 5, 1 + col * 5 : 5 + col * 5]  # noqa: E731
  for row in range(2):
    np.testing.assert_allclose(tile(row, 1)[:2], x[row, :2], atol=1 / 255)  # given pixels kept ...
    np.testing.assert_allclose(tile(row, 1)[2:], 0.0)  # ... the rest from the first completion
    np.testing.assert_allclose(tile(row, 2)[2:], 1.0)
    np.testing.assert_allclose(tile(row, 0)[2:], 0.5, atol=1 / 255)  # hidden pixels shown grey
