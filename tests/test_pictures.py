"""Pictures a researcher can read: traversals ranked by KL and labelled, spread samples, manifolds, interpolations."""

import jax.numpy as jnp
import numpy as np
from conftest import load_config
from PIL import Image, ImageDraw

from jaxvae import _pictures, _run


def _column_decoder(z):
  """z [N, D] -> [N, 4, D, 1]: column j shows z_j (grey 0.5 at z_j = 0), so a traversal changes one column."""
  return jnp.clip(0.5 + z[:, None, :, None] / 8, 0.0, 1.0) * jnp.ones((1, 4, 1, 1))


def _grid(picture):
  return picture[_pictures._HEADER_HEIGHT :, _pictures._LABEL_WIDTH :, 0].astype(np.float64)


def test_traversal_rows_are_the_top_k_dimensions_by_kl_in_order():
  latent_dim = 12
  kl = np.random.default_rng(0).permutation(latent_dim) * 0.5 + 0.1  # distinct
  picture = _pictures.latent_traversal(_column_decoder, jnp.zeros(latent_dim), kl, top_k=5, steps=3)
  expected = np.argsort(-kl)[:5]
  np.testing.assert_array_equal(_pictures.traversal_order(kl, 5), expected)
  grid = _grid(picture)
  assert grid.shape == (5 * 5 + 1, 3 * (latent_dim + 1) + 1)
  for row, dim in enumerate(expected):
    first = grid[1 + row * 5 : 5 + row * 5, 1 : 1 + latent_dim]
    last = grid[1 + row * 5 : 5 + row * 5, -1 - latent_dim : -1]
    assert set(np.flatnonzero((first != last).any(0))) == {dim}, row  # only z_dim is swept
    assert first[0, dim] < last[0, dim]  # from -3 (left) to +3 (right)


def test_traversal_labels_name_each_dimension_and_its_kl_and_the_range():
  kl = np.array([0.01, 2.5, 0.7])
  picture = _pictures.latent_traversal(_column_decoder, jnp.zeros(3), kl, steps=3)
  expected = Image.new('RGB', (picture.shape[1], picture.shape[0]), (255, 255, 255))
  draw, font = ImageDraw.Draw(expected), _pictures._font()
  draw.text((2, 1), 'top 3 of 3 by KL', fill=(0, 0, 0), font=font)
  draw.text((_pictures._LABEL_WIDTH + 2, 1), 'z_i = -3', fill=(0, 0, 0), font=font)
  draw.text((picture.shape[1] - 2 - draw.textlength('+3', font=font), 1), '+3', fill=(0, 0, 0), font=font)
  for row, label in enumerate(['z_1  KL 2.50 nats', 'z_2  KL 0.70 nats', 'z_0  KL 0.01 nats']):
    draw.text((2, _pictures._HEADER_HEIGHT + 1 + row * 5), label, fill=(0, 0, 0), font=font)
  expected = np.asarray(expected)
  labels = slice(None), slice(0, _pictures._LABEL_WIDTH)
  np.testing.assert_array_equal(picture[labels], expected[labels])
  header = slice(0, _pictures._HEADER_HEIGHT), slice(None)
  np.testing.assert_array_equal(picture[header], expected[header])


def test_a_128_latent_model_gets_ten_rows_not_128():
  picture = _pictures.latent_traversal(
    lambda z: jnp.zeros((len(z), 28, 28, 1)), jnp.zeros(128), np.linspace(0, 1, 128), steps=9
  )
  assert picture.shape == (_pictures._HEADER_HEIGHT + 10 * 29 + 1, _pictures._LABEL_WIDTH + 9 * 29 + 1, 3)


def test_kl_per_dimension_is_the_closed_form_average():
  loc, log_var = np.array([[1.0, 0.0], [3.0, 0.0]]), np.array([[0.0, np.log(2.0)], [0.0, np.log(2.0)]])
  np.testing.assert_allclose(_pictures.kl_per_dimension(loc, log_var), [2.5, 0.5 * (1 - np.log(2.0))])


def test_spread_sample_covers_a_split_sorted_by_class():
  indices = _pictures.spread_indices(1000, 64, seed=0)
  assert len(indices) == 64 and np.all(np.diff(indices) > 0) and indices[0] >= 0 and indices[-1] < 1000
  np.testing.assert_array_equal(indices, _pictures.spread_indices(1000, 64, seed=0))
  assert not np.array_equal(indices, _pictures.spread_indices(1000, 64, seed=1))
  assert len(_pictures.spread_indices(5, 64, seed=0)) == 5
  config = load_config('default', 'smoke')
  config.eval.num_examples = 0  # the whole split (smoke runs evaluate its first examples only)
  sample = _run.Run(config).eval_sample(64)
  assert sample['image'].shape == (64, 28, 28, 1) and set(sample) == {'image', 'label', 'index'}
  np.testing.assert_array_equal(np.unique(sample['label']), np.arange(10))  # mnist_5k's test split is sorted


def test_manifold_over_the_data_spans_the_percentiles_of_the_means():
  loc = np.random.default_rng(0).normal(size=(1000, 2)) * [0.5, 2.0] + [1.0, -1.0]
  limits = _pictures.data_limits(loc)
  np.testing.assert_allclose(limits, np.percentile(loc, [1, 99], axis=0).T)
  z_seen = []
  _pictures.latent_manifold(lambda z: z_seen.append(np.asarray(z)) or jnp.zeros((len(z), 2, 2, 1)), 2, limits=limits)
  z = z_seen[0]
  np.testing.assert_allclose(z.min(0), limits[:, 0], rtol=1e-6)
  np.testing.assert_allclose(z.max(0), limits[:, 1], rtol=1e-6)
  framed = _pictures.with_axes(np.zeros((41, 41, 1), np.uint8), limits, title='t')
  assert framed.shape[0] > 41 + 40 and framed.shape[1] > 41 + 60 and framed.shape[2] == 3  # room for ticks, labels


def test_interpolations_run_from_one_input_to_the_other():
  inputs = np.random.default_rng(0).random((4, 2, 3, 1))
  loc = jnp.asarray([[0.0], [1.0], [2.0], [3.0]])
  grid = _pictures.interpolations(lambda z: jnp.ones((len(z), 2, 3, 1)) * z[:, :, None, None] / 4, inputs, loc, num=5)
  grid = grid.astype(np.float64) / 255
  assert grid.shape == (2 * 3 + 1, 7 * 4 + 1, 1)
  tile = lambda row, col: grid[1 + row * 3 : 3 + row * 3, 1 + col * 4 : 4 + col * 4]  # noqa: E731
  np.testing.assert_allclose(tile(1, 0), inputs[2], atol=1 / 255)  # x_a, ...
  np.testing.assert_allclose(tile(1, 6), inputs[3], atol=1 / 255)  # ... x_b
  np.testing.assert_allclose([tile(1, c)[0, 0, 0] for c in range(1, 6)], np.linspace(2, 3, 5) / 4, atol=1 / 255)
