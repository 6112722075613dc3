"""Shapes with appearance: a procedural colour dataset with known shape and appearance factors, and exact masks.

The data of the shape-and-appearance experiment (README, "Shape and
appearance"), regenerated with no download as `dsprites` is. Example `i` of a
split is a pure function of `(split, i)`: its factors are drawn from a
generator seeded by `(SEED, split code, i)`, then rendered, so any machine
gives the same images in any order and batching.

Shape factors (the structure): a class of `SHAPE_NAMES`, a scale, a rotation
and a position. Appearance factors: the object's colour, its texture (flat,
stripes or checks, fixed to the object so they rotate with it) and that
texture's frequency, the background's colour and a linear gradient across
it, and a light that shades the object along one direction. Every example
carries `'image'` (uint8 `[S, S, 3]`), `'mask'` (uint8 `[S, S, 1]`, 1 on the
object: exactly the pixels painted with the object's appearance) and
`'factors'` (float32 `[F]`, the values in `FACTOR_NAMES` order).

Geometry, in frame units (the image is `[0, 1]^2`, pixel `(row, col)` centred
at `((col + 0.5) / S, (row + 0.5) / S)` as `(x, y)`, y down): a pixel is on
the object when its centre, mapped into the object's frame (translated to the
centre, rotated by `-rotation`, divided by the half-size `0.3 * scale`),
satisfies the class's implicit inequality. Objects stay inside the frame.
"""

from __future__ import annotations

import dataclasses

import numpy as np

SHAPE_NAMES = ('circle', 'square', 'triangle', 'star')
TEXTURE_NAMES = ('flat', 'stripes', 'checks')
FACTOR_NAMES = (
  'shape',  # index into SHAPE_NAMES
  'scale',  # [0.5, 1]: half-size 0.3 * scale of the frame
  'rotation',  # [0, 2 pi) radians
  'position_x',  # [0.35, 0.65], frame units
  'position_y',  # [0.35, 0.65]
  'object_red',  # [0.1, 0.95]: the object's colour before texture and light
  'object_green',
  'object_blue',
  'texture',  # index into TEXTURE_NAMES
  'texture_frequency',  # [1, 3] cycles across the object's half-size
  'background_red',  # each channel 0.3 to 0.45 from the object's
  'background_green',
  'background_blue',
  'background_gradient',  # [0, 0.3]: the brightness drop across the frame
  'background_angle',  # [0, 2 pi): the gradient's direction
  'light_strength',  # [0, 0.5]: the darkening of the object's side away from the light
  'light_angle',  # [0, 2 pi): the light's direction in the object's frame
)
NUM_FACTORS = len(FACTOR_NAMES)
OBJECT_COLOUR = slice(5, 8)  # the columns of the object's colour in `factors`
BACKGROUND_COLOUR = slice(10, 13)
SEED = 20180416  # the Variational U-Net's arXiv date
SPLIT_CODES = {'train': 0, 'test': 1}
_TEXTURE_CONTRAST = 0.35  # how much darker a texture's dark parts are


def sample_factors(split: str, indices: np.ndarray) -> np.ndarray:
  """The factors of examples `indices [N]` of `split`: float32 `[N, F]`, each example from its own generator.

  Raises:
    ValueError: for an unknown split.
  """
  if split not in SPLIT_CODES:
    raise ValueError(f'the shapes data have splits {tuple(SPLIT_CODES)}; got {split!r}.')
  rows = []
  for index in np.asarray(indices).reshape(-1):
    rng = np.random.default_rng([SEED, SPLIT_CODES[split], int(index)])
    u = rng.random(NUM_FACTORS)
    obj = 0.1 + 0.85 * u[5:8]
    # Every background channel differs from the object's by 0.3 or more, so the object stands out.
    offset = 0.3 + 0.15 * u[10:13]  # obj + offset <= 1 when obj <= 0.55, else obj - offset >= 0.1
    background = np.where(obj + offset <= 1.0, obj + offset, obj - offset)
    rows.append(
      [
        np.floor(u[0] * len(SHAPE_NAMES)),
        0.5 + 0.5 * u[1],
        2 * np.pi * u[2],
        0.35 + 0.3 * u[3],
        0.35 + 0.3 * u[4],
        *obj,
        np.floor(u[8] * len(TEXTURE_NAMES)),
        1.0 + 2.0 * u[9],
        *background,
        0.3 * u[13],
        2 * np.pi * u[14],
        0.5 * u[15],
        2 * np.pi * u[16],
      ]
    )
  return np.asarray(rows, np.float32).reshape(-1, NUM_FACTORS)


def shape_mask(factors: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The objects' masks and every pixel's coordinates in the object's frame.

  Args:
    factors: float `[N, F]`.
    size: S, pixels a side.

  Returns:
    `(mask, px, py)`: bool `[N, S, S]`, and the pixel centres in units of the
    object's half-size, float32 `[N, S, S]` each.
  """
  f = np.asarray(factors, np.float32)
  centre = (np.arange(size, dtype=np.float32) + 0.5) / size
  dx = centre[None, None, :] - f[:, 3, None, None]  # [N, 1, S]
  dy = centre[None, :, None] - f[:, 4, None, None]  # [N, S, 1]
  cos, sin = np.cos(f[:, 2])[:, None, None], np.sin(f[:, 2])[:, None, None]
  half_size = 0.3 * f[:, 1, None, None]
  px = (cos * dx + sin * dy) / half_size  # [N, S, S]
  py = (-sin * dx + cos * dy) / half_size
  radius = np.sqrt(px**2 + py**2)
  shapes = [
    radius <= 1.0,  # circle
    np.maximum(np.abs(px), np.abs(py)) <= 0.8,  # square
    (py <= 0.5) & (py >= -1.0 + np.sqrt(3.0) * np.abs(px)),  # equilateral triangle in the unit circle, point up
    radius <= 0.7 + 0.3 * np.cos(5 * np.arctan2(py, px)),  # five-pointed star
  ]
  kind = f[:, 0].astype(np.int64)[:, None, None]
  mask = np.select([kind == k for k in range(len(SHAPE_NAMES))], shapes, False)
  return mask, px, py


def render(factors: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
  """Images and exact masks of `factors [N, F]` at `size` pixels a side: uint8 `[N, S, S, 3]` and `[N, S, S, 1]`."""
  f = np.asarray(factors, np.float32)
  mask, px, py = shape_mask(f, size)
  texture = f[:, 8].astype(np.int64)[:, None, None]
  frequency = f[:, 9, None, None]
  stripes = np.sin(np.pi * frequency * px) > 0
  checks = np.sin(np.pi * frequency * px) * np.sin(np.pi * frequency * py) > 0
  dark = np.select([texture == 1, texture == 2], [stripes, checks], False)
  light_along = np.cos(f[:, 16, None, None]) * px + np.sin(f[:, 16, None, None]) * py  # [N, S, S]
  shade = 1.0 - f[:, 15, None, None] * 0.5 * (1.0 - np.clip(light_along, -1.0, 1.0))
  object_brightness = (1.0 - _TEXTURE_CONTRAST * dark) * shade  # [N, S, S]
  centre = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
  along = np.cos(f[:, 14, None, None]) * centre[None, None, :] + np.sin(f[:, 14, None, None]) * centre[None, :, None]
  background_brightness = 1.0 - f[:, 13, None, None] * (0.5 + along / np.sqrt(2.0))  # [N, S, S]
  obj = f[:, None, None, OBJECT_COLOUR] * object_brightness[..., None]  # [N, S, S, 3]
  background = f[:, None, None, BACKGROUND_COLOUR] * background_brightness[..., None]
  image = np.where(mask[..., None], obj, background)
  return np.round(255.0 * np.clip(image, 0.0, 1.0)).astype(np.uint8), mask[..., None].astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class ShapesSource:
  """Random access to one split: `read(indices)` -> `{'image', 'mask', 'factors'}` with a leading `[N]` axis.

  >>> source = ShapesSource('test', num_examples=10, size=32)
  >>> batch = source.read(np.array([0, 3]))
  >>> batch['image'].shape, batch['mask'].shape, batch['factors'].shape
  ((2, 32, 32, 3), (2, 32, 32, 1), (2, 17))
  """

  split: str
  num_examples: int
  size: int = 128

  def __len__(self) -> int:
    return self.num_examples

  def read(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    indices = np.asarray(indices).reshape(-1)
    bad = (indices < 0) | (indices >= self.num_examples)
    if bad.any():
      raise IndexError(f'shapes {self.split} indices must be in [0, {self.num_examples - 1}]; got {indices[bad][0]}.')
    factors = sample_factors(self.split, indices)
    image, mask = render(factors, self.size)
    return {'image': image, 'mask': mask, 'factors': factors}
