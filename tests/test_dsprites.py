"""The procedural dSprites: factor grid, index order, rasteriser geometry and the random-access source."""

import numpy as np
import pytest
from PIL import Image

from jaxvae import _dsprites
from jaxvae._dsprites import FACTOR_SIZES, NUM_IMAGES

SQUARE, ELLIPSE, HEART = 0, 1, 2
LARGEST = FACTOR_SIZES[1] - 1  # scale level 5, scale 1.0


def _render_one(shape, scale, orientation, x, y):
  """[64, 64] uint8 image of one set of factor levels."""
  return _dsprites.render(np.array([[shape, scale, orientation, x, y]]))[0, ..., 0]


def test_factor_grid():
  assert _dsprites.FACTOR_NAMES == ('shape', 'scale', 'orientation', 'position_x', 'position_y')
  assert FACTOR_SIZES == (3, 6, 40, 32, 32)
  assert NUM_IMAGES == np.prod(FACTOR_SIZES) == 737_280
  assert _dsprites.IMAGE_SHAPE == (64, 64, 1)
  values = _dsprites.factor_values()
  assert tuple(len(v) for v in values) == FACTOR_SIZES
  np.testing.assert_array_equal(values[0], [1.0, 2.0, 3.0])
  np.testing.assert_allclose(values[1], [0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
  # Both endpoints, as in the original: the step is 2 pi / 39.
  assert values[2][0] == 0.0 and values[2][-1] == 2 * np.pi
  np.testing.assert_allclose(np.diff(values[2]), 2 * np.pi / 39)
  for positions in values[3:]:
    assert positions[0] == 0.0 and positions[-1] == 1.0
    np.testing.assert_allclose(np.diff(positions), 1 / 31)


def test_index_round_trip():
  rng = np.random.default_rng(0)
  indices = np.concatenate([[0, NUM_IMAGES - 1], rng.integers(0, NUM_IMAGES, 1000)])
  factors = _dsprites.factors_from_index(indices)
  assert factors.dtype == np.int32 and factors.shape == (1002, 5)
  np.testing.assert_array_equal(factors[0], [0, 0, 0, 0, 0])
  np.testing.assert_array_equal(factors[1], [2, 5, 39, 31, 31])
  assert (factors >= 0).all() and (factors < np.array(FACTOR_SIZES)).all()
  round_trip = _dsprites.index_from_factors(factors)
  assert round_trip.dtype == np.int64
  np.testing.assert_array_equal(round_trip, indices)
  # Any leading shape, scalars included.
  assert _dsprites.factors_from_index(np.arange(6).reshape(2, 3)).shape == (2, 3, 5)
  assert _dsprites.index_from_factors(_dsprites.factors_from_index(7)) == 7


def test_index_order_matches_the_original():
  # Row-major over (shape, scale, orientation, position_x, position_y), position_y fastest,
  # as in dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz.
  strides = np.array([40 * 32 * 32 * 6, 40 * 32 * 32, 32 * 32, 32, 1])
  for column, stride in enumerate(strides):
    expected = np.zeros(5, np.int32)
    expected[column] = 1
    np.testing.assert_array_equal(_dsprites.factors_from_index(stride), expected)
  factors = _dsprites.factors_from_index(np.arange(NUM_IMAGES))
  np.testing.assert_array_equal(factors.astype(np.int64) @ strides, np.arange(NUM_IMAGES))


def test_images_are_binary_uint8():
  factors = _dsprites.factors_from_index(np.random.default_rng(1).integers(0, NUM_IMAGES, 64))
  images = _dsprites.render(factors)
  assert images.shape == (64, 64, 64, 1) and images.dtype == np.uint8
  assert set(np.unique(images).tolist()) == {0, 1}
  assert (images.sum(axis=(1, 2, 3)) > 0).all()
  assert _dsprites.render(np.zeros((0, 5), np.int32)).shape == (0, 64, 64, 1)


def test_render_equals_full_frame_rasterisation():
  # The table-and-copy renderer is exactly the per-pixel evaluation over the whole frame.
  factors = _dsprites.factors_from_index(np.random.default_rng(2).integers(0, NUM_IMAGES, 300))
  np.testing.assert_array_equal(_dsprites.render(factors), _dsprites._render_full_frame(factors))


def test_shapes_are_distinct_and_areas_ordered():
  for scale in range(FACTOR_SIZES[1]):
    square, ellipse, heart = (_render_one(shape, scale, 7, 12, 20) for shape in range(3))
    assert not np.array_equal(square, ellipse)
    assert not np.array_equal(square, heart)
    assert not np.array_equal(ellipse, heart)
    # Areas in units of h^2 (h the half-size): square 4, heart ~2.82, ellipse pi / 2.
    assert square.sum() > heart.sum() > ellipse.sum()
  # Pixel counts of the largest sprites match those areas, h = 64 / 6 pixels.
  h2 = (64 / 6) ** 2
  for shape, area in ((SQUARE, 4.0), (ELLIPSE, np.pi / 2), (HEART, 2.82)):
    counts = [_render_one(shape, LARGEST, o, 15, 15).sum() for o in range(FACTOR_SIZES[2])]
    np.testing.assert_allclose(np.mean(counts), area * h2, rtol=0.05)


def test_square_size_and_centre():
  # At scale 1 the square is 2h = 21.3 pixels wide: 21 pixel centres, a third of the frame,
  # centred on pixel (16 + y, 16 + x).
  rows, cols = np.nonzero(_render_one(SQUARE, LARGEST, 0, 3, 9))
  assert (rows.min(), rows.max(), cols.min(), cols.max()) == (25 - 10, 25 + 10, 19 - 10, 19 + 10)
  rows, cols = np.nonzero(_render_one(SQUARE, 0, 0, 31, 31))
  assert (rows.min(), rows.max(), cols.min(), cols.max()) == (47 - 5, 47 + 5, 47 - 5, 47 + 5)


def test_heart_looks_like_a_heart():
  heart = _render_one(HEART, LARGEST, 0, 15, 15)  # centre pixel (31, 31)
  # Mirror symmetric about the centre column.
  np.testing.assert_array_equal(heart[:, 31 - 15 : 31], heart[:, 31 + 15 : 31 : -1])
  rows = np.nonzero(heart.any(axis=1))[0]
  # Two lobes on top, a cleft between them: the centre column starts lower than the lobes.
  centre_top = np.nonzero(heart[:, 31])[0].min()
  assert centre_top >= rows.min() + 2
  # A point at the bottom: the lowest row is much narrower than the widest.
  widths = heart.sum(axis=1)
  assert widths[rows.max()] <= widths.max() // 4


def test_translation_is_exact():
  rng = np.random.default_rng(3)
  for _ in range(20):
    shape, scale, orientation = rng.integers(0, FACTOR_SIZES[:3])
    x, y = rng.integers(0, 32, 2)
    dx, dy = rng.integers(0, 32 - np.array([x, y]))
    base = _render_one(shape, scale, orientation, x, y)
    moved = _render_one(shape, scale, orientation, x + dx, y + dy)
    assert base.sum() == moved.sum()
    np.testing.assert_array_equal(moved[dy:, dx:], base[: 64 - dy, : 64 - dx])


def test_orientation_zero_and_two_pi_coincide():
  for shape in range(3):
    for scale in range(FACTOR_SIZES[1]):
      np.testing.assert_array_equal(_render_one(shape, scale, 0, 5, 26), _render_one(shape, scale, 39, 5, 26))
  # and other orientations do differ, the square's symmetry aside.
  assert not np.array_equal(_render_one(HEART, LARGEST, 0, 5, 26), _render_one(HEART, LARGEST, 1, 5, 26))


def test_sprites_stay_inside_the_frame():
  # Guarantee: rows and columns 0 and 63 are background in every image. Every image is one of
  # the 720 windows copied at offset (y, x) in [0, 31]^2, so checking the windows checks all.
  table = _dsprites._sprite_table()
  assert table.shape == (3, 6, 40, 32, 32)
  assert not table[..., 0, :].any() and not table[..., :, 0].any()
  # And directly, at the four corner positions, every shape and orientation, the largest scale.
  factors = np.array(
    [[s, LARGEST, o, x, y] for s in range(3) for o in range(40) for x in (0, 31) for y in (0, 31)], np.int32
  )
  images = _dsprites.render(factors)[..., 0]
  for border in (images[:, 0, :], images[:, -1, :], images[:, :, 0], images[:, :, -1]):
    assert not border.any()
  # The margin is tight: the largest sprites come within two pixels of the edge.
  assert images[:, :3, :].any() and images[:, :, -3:].any()


def test_larger_scale_covers_more_pixels():
  factors = np.array([[s, c, o, 10, 21] for s in range(3) for o in range(40) for c in range(6)], np.int32)
  counts = _dsprites.render(factors).sum(axis=(1, 2, 3)).reshape(3 * 40, 6)
  assert (np.diff(counts, axis=1) > 0).all()


def test_source_items_and_batches():
  source = _dsprites.DSpritesSource()
  assert len(source) == NUM_IMAGES
  indices = [0, 1, 12345, 400_000, NUM_IMAGES - 1]
  batch = source.__getitems__(indices)
  items = [source[i] for i in indices]
  for key in ('image', 'factors', 'factor_values'):
    np.testing.assert_array_equal(batch[key], np.stack([item[key] for item in items]))
  assert batch['image'].shape == (5, 64, 64, 1) and batch['image'].dtype == np.uint8
  assert batch['factors'].dtype == np.int32 and batch['factor_values'].dtype == np.float32
  np.testing.assert_array_equal(batch['factors'], _dsprites.factors_from_index(indices))
  np.testing.assert_allclose(items[-1]['factor_values'], [3.0, 1.0, 2 * np.pi, 1.0, 1.0], rtol=1e-6)
  np.testing.assert_allclose(items[1]['factor_values'], [1.0, 0.5, 0.0, 0.0, 1 / 31], rtol=1e-6)
  np.testing.assert_array_equal(source[np.int64(12345)]['image'], items[2]['image'])


def test_source_in_a_grain_pipeline():
  import grain  # pylint: disable=import-outside-toplevel

  source = _dsprites.DSpritesSource()
  batch = grain.MapDataset.source(source).batch(4)[1]
  expected = source.__getitems__([4, 5, 6, 7])
  assert batch.keys() == expected.keys()
  for key, value in expected.items():
    np.testing.assert_array_equal(batch[key], value)


def test_ground_truth_data_protocol():
  source = _dsprites.DSpritesSource()
  assert source.num_factors == 5
  assert source.factors_num_values == [3, 6, 40, 32, 32]
  assert source.observation_shape == [64, 64, 1]
  first = source.sample_factors(3000, np.random.RandomState(0))
  np.testing.assert_array_equal(first, source.sample_factors(3000, np.random.RandomState(0)))
  assert not np.array_equal(first, source.sample_factors(3000, np.random.RandomState(1)))
  assert first.shape == (3000, 5) and np.issubdtype(first.dtype, np.integer)
  for column, size in enumerate(FACTOR_SIZES):
    assert set(first[:, column].tolist()) == set(range(size))  # every level drawn
  observations = source.sample_observations_from_factors(first[:8], np.random.RandomState(5))
  assert observations.shape == (8, 64, 64, 1) and observations.dtype == np.float32
  np.testing.assert_array_equal(observations, _dsprites.render(first[:8]))
  factors, observations = source.sample(4, np.random.RandomState(2))
  np.testing.assert_array_equal(observations, _dsprites.render(factors))
  assert source.sample_observations(2, np.random.RandomState(0)).shape == (2, 64, 64, 1)


@pytest.mark.parametrize(
  'fn, arg, match',
  [
    (_dsprites.factors_from_index, NUM_IMAGES, r'`indices` must be in \[0, 737279\]; got 737280\.'),
    (_dsprites.factors_from_index, [3, -1], r'`indices` must be in \[0, 737279\]; got -1\.'),
    (_dsprites.factors_from_index, [1.0], r'`indices` must be an integer array; got dtype float64\.'),
    (_dsprites.index_from_factors, [0, 0, 40, 0, 0], r'`factors\[\.\.\., 2\]` \(orientation\) .* \[0, 39\]; got 40\.'),
    (_dsprites.index_from_factors, [[0, 0, 0, 0, -2]], r'`factors\[\.\.\., 4\]` \(position_y\) .* \[0, 31\]; got -2'),
    (_dsprites.index_from_factors, [0, 0, 0, 0], r'`factors` must have shape \[\.\.\., 5\] .*; got shape \(4,\)\.'),
    (_dsprites.render, [0, 0, 0, 0, 0], r'`factors` must have shape \[N, 5\] .*; got shape \(5,\)\.'),
    (_dsprites.render, [[3, 0, 0, 0, 0]], r'`factors\[\.\.\., 0\]` \(shape\) must hold levels in \[0, 2\]; got 3\.'),
    (_dsprites.render, [[0, 0, 0, 0.5, 0]], r'`factors` must be an integer array; got dtype float64\.'),
  ],
)
def test_invalid_arguments_raise(fn, arg, match):
  with pytest.raises(ValueError, match=match):
    fn(arg)


def test_source_invalid_arguments_raise():
  source = _dsprites.DSpritesSource()
  with pytest.raises(IndexError, match=r'dSprites indices must be in \[0, 737279\]; got 737280\.'):
    source[NUM_IMAGES]
  with pytest.raises(IndexError, match=r'dSprites indices must be in \[0, 737279\]; got -1\.'):
    source.__getitems__([0, -1])
  with pytest.raises(ValueError, match=r'`indices` must be an integer array; got dtype float64\.'):
    source.__getitems__([0.0])
  with pytest.raises(ValueError, match=r'`num` must be an integer >= 0; got -1\.'):
    source.sample_factors(-1, np.random.RandomState(0))


# ----------------------------------------------------------------------------- disentanglement_lib's variants


def _variant_batch(variant, indices, texture=None):
  return _dsprites.DSpritesSource(variant=variant, texture=texture).__getitems__(np.asarray(indices))


def test_color_dsprites_colours_the_sprite_uniformly_in_the_upper_half():
  indices = np.random.default_rng(3).integers(0, NUM_IMAGES, 400)
  batch = _variant_batch('color', indices)
  images, masks = batch['image'], _dsprites.render(batch['factors'])
  assert images.shape == (400, 64, 64, 3) and images.dtype == np.uint8
  assert (images[masks[..., 0] == 0] == 0).all()  # black background
  colours = (
    np.array([image[mask[..., 0] == 1].reshape(-1, 3)[0] for image, mask in zip(images, masks, strict=True)]) / 255
  )
  for image, mask, colour in zip(images, masks, colours, strict=True):  # one colour per sprite
    np.testing.assert_array_equal(image[mask[..., 0] == 1] / 255, np.broadcast_to(colour, (int(mask.sum()), 3)))
  # U[0.5, 1] per channel: mean 0.75, variance 1/48.
  np.testing.assert_allclose(colours.mean(0), 0.75, atol=4 * np.sqrt(1 / 48 / 400))
  assert colours.min() >= 0.5 - 1 / 510 and colours.max() <= 1.0
  np.testing.assert_allclose(colours.var(0), 1 / 48, rtol=0.25)
  # The factors still round-trip, and every read of an index is the same image.
  np.testing.assert_array_equal(_dsprites.index_from_factors(batch['factors']), indices)
  np.testing.assert_array_equal(_variant_batch('color', indices[:5])['image'], images[:5])


def test_noisy_dsprites_has_a_white_sprite_on_uniform_noise():
  indices = np.arange(0, NUM_IMAGES, NUM_IMAGES // 50)
  batch = _variant_batch('noisy', indices)
  images, masks = batch['image'], _dsprites.render(batch['factors'])[..., 0] == 1
  assert (images[masks] == 255).all()
  background = images[~masks].astype(np.float64) / 255  # [P, 3]
  np.testing.assert_allclose(background.mean(), 0.5, atol=0.005)
  np.testing.assert_allclose(background.var(), 1 / 12, rtol=0.02)
  # Independent across channels and images.
  assert abs(np.corrcoef(background[:, 0], background[:, 1])[0, 1]) < 0.01
  assert not np.array_equal(images[0][~masks[0]], images[1][~masks[1]][: (~masks[0]).sum()])


def test_scream_dsprites_inverts_a_texture_patch_under_the_sprite(tmp_path):
  # A texture whose every pixel is 100: background (100/255 + u) / 2, sprite 1 minus that.
  Image.fromarray(np.full((300, 400, 3), 100, np.uint8)).save(tmp_path / 'scream.png')
  texture = _dsprites.load_texture(str(tmp_path / 'scream.png'))
  assert texture.shape == (263, 350, 3)  # shrunk to fit 350 x 274, aspect kept
  batch = _variant_batch('scream', np.arange(0, NUM_IMAGES, NUM_IMAGES // 200), texture)
  images, masks = batch['image'].astype(np.float64) / 255, _dsprites.render(batch['factors'])[..., 0] == 1
  for image, mask in zip(images, masks, strict=True):
    background = image[~mask][0]  # one colour per image
    np.testing.assert_allclose(image[~mask], np.broadcast_to(background, image[~mask].shape))
    np.testing.assert_allclose(image[mask], np.broadcast_to(1 - background, image[mask].shape), atol=1 / 255)
  u = 2 * images[~masks].reshape(-1, 3) - 100 / 255  # [P, 3] the random colour, U[0, 1]
  assert u.min() > -0.01 and u.max() < 1.01 and abs(u.mean() - 0.5) < 0.05


def test_scream_dsprites_needs_its_texture(tmp_path):
  with pytest.raises(
    FileNotFoundError, match=r"needs a texture image at config.data.scream_path; got '', which is empty"
  ):
    _dsprites.load_texture('')
  with pytest.raises(FileNotFoundError, match=r'which does not exist'):
    _dsprites.load_texture(str(tmp_path / 'scream.jpg'))
  Image.new('RGB', (60, 60)).save(tmp_path / 'small.png')
  with pytest.raises(ValueError, match=r'must exceed 64x64 pixels; got \(60, 60\)'):
    _dsprites.load_texture(str(tmp_path / 'small.png'))


def test_variants_as_ground_truth_data():
  source = _dsprites.DSpritesSource(variant='noisy')
  assert source.observation_shape == [64, 64, 3] and source.num_factors == 5
  factors, observations = source.sample(8, np.random.RandomState(0))
  assert observations.shape == (8, 64, 64, 3) and observations.dtype == np.float32
  np.testing.assert_array_equal(observations[_dsprites.render(factors)[..., 0] == 1], 1.0)
  with pytest.raises(ValueError, match=r"`variant` must be one of \('binary', 'color', 'noisy', 'scream'\); got 'red'"):
    _dsprites.DSpritesSource(variant='red')
