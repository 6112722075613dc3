"""The procedural shape-and-appearance data: exact masks, factors in range, examples independent of batching."""

import numpy as np
import pytest

from jaxvae import _data, _shapes
from jaxvae.configs import default


def _plain(factors: np.ndarray) -> np.ndarray:
  """`factors` without texture, gradient or light: every object pixel has the object's colour exactly."""
  factors = factors.copy()
  factors[:, 8] = 0  # flat
  factors[:, 13] = 0.0  # no background gradient
  factors[:, 15] = 0.0  # no shading
  return factors


def test_mask_is_exactly_the_pixels_painted_with_the_object():
  factors = _plain(_shapes.sample_factors('train', np.arange(16)))
  image, mask = _shapes.render(factors, 64)
  colour = np.round(255 * factors[:, None, None, _shapes.OBJECT_COLOUR])
  background = np.round(255 * factors[:, None, None, _shapes.BACKGROUND_COLOUR])
  expected = np.where(mask.astype(bool), colour, background)
  np.testing.assert_allclose(image, expected, atol=1)  # 8-bit rounding; colours differ by 76 or more
  assert 0.02 < mask.mean() < 0.5


def test_circle_has_the_area_of_its_disc():
  factors = _shapes.sample_factors('test', np.arange(1))
  factors[0, :5] = [0, 1.0, 0.3, 0.5, 0.5]  # circle, scale 1: radius 0.3 of the frame
  _, mask = _shapes.render(factors, 128)
  np.testing.assert_allclose(mask.mean(), np.pi * 0.3**2, rtol=0.01)
  # Centred on the frame: symmetric under flips.
  np.testing.assert_array_equal(mask[0], mask[0, ::-1])
  np.testing.assert_array_equal(mask[0], mask[0, :, ::-1])


@pytest.mark.parametrize('shape', range(len(_shapes.SHAPE_NAMES)))
def test_rotation_turns_the_mask(shape):
  factors = _shapes.sample_factors('test', np.arange(2))
  factors[:, :5] = [[shape, 1.0, 0.0, 0.5, 0.5], [shape, 1.0, np.pi / 2, 0.5, 0.5]]
  _, mask = _shapes.render(factors, 64)
  # A quarter turn of the object is a quarter turn of its mask (pixel centres map to pixel centres).
  turned = np.rot90(mask[0, :, :, 0], k=-1)
  assert np.mean(turned != mask[1, :, :, 0]) < 0.002


def test_factors_lie_in_their_ranges_and_background_differs_from_object():
  factors = _shapes.sample_factors('train', np.arange(500))
  assert set(np.unique(factors[:, 0])) == set(range(len(_shapes.SHAPE_NAMES)))
  assert set(np.unique(factors[:, 8])) == set(range(len(_shapes.TEXTURE_NAMES)))
  assert factors[:, 1].min() >= 0.5 and factors[:, 1].max() <= 1.0
  difference = np.abs(factors[:, _shapes.OBJECT_COLOUR] - factors[:, _shapes.BACKGROUND_COLOUR])
  assert difference.min() >= 0.3 - 1e-6
  assert factors[:, _shapes.BACKGROUND_COLOUR].max() <= 1.0 and factors[:, _shapes.BACKGROUND_COLOUR].min() >= 0.0


def test_objects_stay_inside_the_frame():
  _, mask = _shapes.render(_shapes.sample_factors('train', np.arange(300)), 32)
  border = np.concatenate([mask[:, 0], mask[:, -1], mask[:, :, 0], mask[:, :, -1]])
  assert border.sum() == 0


def test_an_example_does_not_depend_on_its_batch_or_split_position():
  source = _shapes.ShapesSource('train', 1000, size=32)
  alone, together = source.read(np.array([7])), source.read(np.array([3, 7]))
  for name in ('image', 'mask', 'factors'):
    np.testing.assert_array_equal(alone[name][0], together[name][1])
  other_split = _shapes.ShapesSource('test', 1000, size=32).read(np.array([7]))
  assert not np.array_equal(other_split['factors'], alone['factors'])
  with pytest.raises(IndexError, match=r'shapes train indices must be in \[0, 999\]; got 1000'):
    source.read(np.array([1000]))


def test_registry_opens_the_shapes_with_masks_and_factors():
  config = default.get_config()
  config.data.dataset = 'shapes_32'
  config.data.binarize = 'none'
  source = _data.open_source(config.data, 'test')
  batch = source.read(np.arange(4))
  assert len(source) == _data.DATASETS['shapes_32'].splits['test']
  assert batch['image'].shape == (4, 32, 32, 3) and batch['image'].dtype == np.uint8
  assert batch['mask'].shape == (4, 32, 32, 1) and batch['factors'].shape == (4, _shapes.NUM_FACTORS)
  assert _data.event_shape(config.data) == (32, 32, 3)
