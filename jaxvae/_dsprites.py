"""dSprites, regenerated procedurally: the factor grid, index arithmetic, a rasteriser and a random-access source.

dSprites (Matthey, Higgins, Hassabis and Lerchner 2017,
https://github.com/deepmind/dsprites-dataset) is every combination of five
ground-truth factors, one binary 64x64 image each:

==============  ======  ====================================================
factor          levels  values
==============  ======  ====================================================
shape           3       square, ellipse, heart, encoded 1., 2., 3. as in the
                        original's `latents_values`
scale           6       `linspace(0.5, 1, 6)`
orientation     40      `linspace(0, 2 pi, 40)` radians, counterclockwise
position_x      32      `linspace(0, 1, 32)`, left to right
position_y      32      `linspace(0, 1, 32)`, top to bottom
==============  ======  ====================================================

Image `i` has the factor levels `np.unravel_index(i, FACTOR_SIZES)`: row-major
over (shape, scale, orientation, position_x, position_y), position_y fastest,
as in the original `dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz` (whose
constant colour factor is left out here). Factor *levels* are the integer
indices `0..size-1`; factor *values* are the numbers in the table above.

The images are rendered here rather than downloaded. The original renderer is
not published, so the geometry below is a reconstruction, not a pixel-exact
copy: sprites never leave the frame (as in the original), the largest square is
about a third of the frame wide, and the positions span what that leaves, with a
whole-pixel step. In pixel units, pixel `(row, col)` covering `[row, row + 1) x
[col, col + 1)`:

* The sprite's centre is the centre of pixel `(16 + y, 16 + x)` for position
  levels `x, y`, i.e. the point `(16.5 + 31 * position_y, 16.5 + 31 *
  position_x)`, or `(16.5 + 31 p) / 64` in `[0.258, 0.742]` in frame units.
  Each position level moves the sprite by exactly one pixel.
* The half-size is `h = scale * 64 / 6` pixels (5.3 to 10.7): the square is
  `2h` wide (a third of the frame at scale 1), the ellipse has semi-axes `h`
  (along the sprite's x axis) and `h / 2`, the heart is `2h` wide and `1.96h`
  tall, point down at orientation 0.
* A pixel is foreground when its centre, mapped back through the inverse of
  translate-rotate-scale, satisfies the shape's implicit inequality.
* Every sprite lies within `sqrt(2) h <= 15.09` pixels of its centre (the
  square's corner), and its centre is at least 16.5 pixels from the frame's
  edges, so rows and columns 0 and 63 are background in every image.

Because positions move whole pixels, an image is one of the 3 * 6 * 40 = 720
sprite masks (rendered once, on first use, into a 32x32 window) copied into an
empty frame at an integer offset, exactly equal to rasterising the whole frame.

Three colour variants follow disentanglement_lib's definitions (Locatello et
al. 2019, `data/ground_truth/dsprites.py`), as 8-bit RGB `round(255 v)` of
its values `v` in [0, 1]:

* `color`: the sprite in one colour drawn uniformly from [0.5, 1]^3 per image,
  on black;
* `noisy`: a white sprite on a background of uniform noise in [0, 1], drawn
  per pixel and channel;
* `scream`: a random 64x64 patch of a texture image (Munch's *The Scream* in
  the reference, shrunk to fit 350x274), averaged with a random colour in
  [0, 1]^3, with the sprite's pixels inverted (1 - v).

Their colour and noise are nuisance variables, not factors: in the
random-access source, image `i`'s draw comes from a generator seeded by `i`
alone, so every read of image `i` is the same; the metrics' sampler draws
them from its `random_state`, as the reference does.
"""

from __future__ import annotations

import functools
import operator
import pathlib
from collections.abc import Sequence

import numpy as np

FACTOR_NAMES = ('shape', 'scale', 'orientation', 'position_x', 'position_y')
FACTOR_SIZES = (3, 6, 40, 32, 32)
NUM_IMAGES = 737_280  # = prod(FACTOR_SIZES)
IMAGE_SHAPE = (64, 64, 1)
SHAPE_NAMES = ('square', 'ellipse', 'heart')  # shape levels 0, 1, 2; values 1., 2., 3.
VARIANTS = ('binary', 'color', 'noisy', 'scream')
_VARIANT_SEED = 0  # image i's colour or noise comes from default_rng([_VARIANT_SEED, i])
_SCREAM_SIZE = (350, 274)  # (width, height) the texture is shrunk to fit, as in disentanglement_lib

_FRAME = 64  # pixels a side
_WINDOW = 32  # pixels a side of the window holding one sprite, centred on its pixel 16
# Pixels from the frame's top-left corner to the sprite's window at position level 0.
# With the window's centre pixel at 16, position level j puts the sprite's centre on
# pixel 16 + j, i.e. at 16.5 + j pixels.
_HALF_SIZE_PER_SCALE = _FRAME / 6  # pixels of half-size per unit of scale: a third of the frame at scale 1
_ELLIPSE_ASPECT = 0.5  # minor over major semi-axis
# Taubin's heart curve (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0 spans x in [-1.1390, 1.1390]
# and y in [-1, 1.2366]; these map it to u in [-1, 1], v in [-0.982, 0.982].
_HEART_SCALE = 1.1390
_HEART_SHIFT = 0.1183
# Flat offsets, in a [64 * 64] frame, of the pixels of a window whose top-left pixel is at 0.
_WINDOW_OFFSETS = (np.arange(_WINDOW)[:, None] * _FRAME + np.arange(_WINDOW)[None, :]).reshape(-1)  # [1024]


def factor_values() -> tuple[np.ndarray, ...]:
  """The value of each level of each factor, as in the original's `latents_values`.

  Returns:
    Five float64 arrays, one per factor of `FACTOR_NAMES`, of lengths `FACTOR_SIZES`:
    shape `[1., 2., 3.]` (square, ellipse, heart); scale `linspace(0.5, 1, 6)`;
    orientation `linspace(0, 2 pi, 40)` in radians; position_x and position_y
    `linspace(0, 1, 32)` in frame units. `values[f][factors[:, f]]` turns levels into values.

  >>> [v.round(3).tolist() for v in factor_values()[:2]]
  [[1.0, 2.0, 3.0], [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]]
  """
  return (
    np.arange(1.0, 4.0),
    np.linspace(0.5, 1.0, 6),
    # Like the original, both endpoints: orientations 0 and 2 pi are the same image
    # twice, and the step is 2 pi / 39, not 2 pi / 40.
    np.linspace(0.0, 2 * np.pi, 40),
    np.linspace(0.0, 1.0, 32),
    np.linspace(0.0, 1.0, 32),
  )


def _as_int_array(name: str, x: object) -> np.ndarray:
  """`x` as an integer numpy array; ValueError for any other dtype."""
  array = np.asarray(x)
  if not np.issubdtype(array.dtype, np.integer):
    raise ValueError(f'`{name}` must be an integer array; got dtype {array.dtype}.')
  return array


def _check_factors(name: str, factors: object, *, batched: bool) -> np.ndarray:
  """`factors` as an int64 array `[..., 5]` of valid levels (`[N, 5]` if `batched`); ValueError otherwise."""
  factors = _as_int_array(name, factors)
  if factors.ndim < 1 or factors.shape[-1] != len(FACTOR_SIZES) or (batched and factors.ndim != 2):
    expected = '[N, 5]' if batched else '[..., 5]'
    raise ValueError(f'`{name}` must have shape {expected} (one column per factor); got shape {factors.shape}.')
  for column, (factor, size) in enumerate(zip(FACTOR_NAMES, FACTOR_SIZES, strict=True)):
    levels = factors[..., column]
    bad = (levels < 0) | (levels >= size)
    if bad.any():
      raise ValueError(
        f'`{name}[..., {column}]` ({factor}) must hold levels in [0, {size - 1}]; got {levels[bad].flat[0]}.'
      )
  return factors.astype(np.int64)


def factors_from_index(indices: object) -> np.ndarray:
  """The factor levels of images `indices` of dSprites.

  Args:
    indices: integer array of any shape `[...]`, values in `[0, NUM_IMAGES - 1]`.

  Returns:
    int32 `[..., 5]`: levels of (shape, scale, orientation, position_x, position_y).

  Raises:
    ValueError: for a non-integer dtype or an index out of range.

  >>> factors_from_index([0, 1, 32, NUM_IMAGES - 1])
  array([[ 0,  0,  0,  0,  0],
         [ 0,  0,  0,  0,  1],
         [ 0,  0,  0,  1,  0],
         [ 2,  5, 39, 31, 31]], dtype=int32)
  """
  indices = _as_int_array('indices', indices)
  bad = (indices < 0) | (indices >= NUM_IMAGES)
  if bad.any():
    raise ValueError(f'`indices` must be in [0, {NUM_IMAGES - 1}]; got {indices[bad].flat[0]}.')
  return np.stack(np.unravel_index(indices, FACTOR_SIZES), axis=-1).astype(np.int32)


def index_from_factors(factors: object) -> np.ndarray:
  """The dSprites index of each row of factor levels; the inverse of `factors_from_index`.

  Args:
    factors: integer array `[..., 5]` of levels of (shape, scale, orientation,
      position_x, position_y), each in `[0, FACTOR_SIZES[f] - 1]`.

  Returns:
    int64 `[...]` indices in `[0, NUM_IMAGES - 1]`.

  Raises:
    ValueError: for a non-integer dtype, a last axis other than 5, or a level out of range.

  >>> index_from_factors([[0, 0, 0, 0, 1], [2, 5, 39, 31, 31]])
  array([     1, 737279])
  """
  factors = _check_factors('factors', factors, batched=False)
  return np.ravel_multi_index(tuple(np.moveaxis(factors, -1, 0)), FACTOR_SIZES).astype(np.int64)


def _cos_sin() -> tuple[np.ndarray, np.ndarray]:
  """float32 `[40]` cosines and sines of the orientations, with 2 pi reduced to 0 so both render alike."""
  angles = np.mod(factor_values()[2], 2 * np.pi)
  return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def _half_sizes() -> np.ndarray:
  """float32 `[6]`: the half-size in pixels of each scale level."""
  return (factor_values()[1] * _HALF_SIZE_PER_SCALE).astype(np.float32)


def _inside(shape: int, half_size, cos, sin, dx, dy) -> np.ndarray:
  """Whether pixels at offsets `(dy, dx)` pixels (rows down) from the sprite's centre are inside it.

  All array arguments are float32 and broadcast together; `shape` is a level (0 square,
  1 ellipse, 2 heart). The offsets are mapped to the sprite's own frame `(u, v)`
  (v up, half-size 1) by the inverse rotation and scaling, then tested against the
  shape's implicit inequality.
  """
  dy = -dy  # rows grow downwards; the sprite's v axis points up
  u = (cos * dx + sin * dy) / half_size
  v = (cos * dy - sin * dx) / half_size
  if shape == 0:
    return np.maximum(np.abs(u), np.abs(v)) <= 1
  if shape == 1:
    v = v * np.float32(1 / _ELLIPSE_ASPECT)
    return u * u + v * v <= 1
  x = u * np.float32(_HEART_SCALE)
  y = v * np.float32(_HEART_SCALE) + np.float32(_HEART_SHIFT)
  r = x * x + y * y - 1
  return r * r * r <= x * x * y * y * y


@functools.cache
def _sprite_table() -> np.ndarray:
  """uint8 `[3, 6, 40, 32, 32]`: every sprite in its window, centre on window pixel (16, 16). Read-only."""
  offsets = np.arange(_WINDOW, dtype=np.float32) - _WINDOW // 2  # [32] pixels, -16..15
  cos, sin = _cos_sin()
  half_size = _half_sizes()[:, None, None, None]  # [6, 1, 1, 1]
  cos, sin = cos[:, None, None], sin[:, None, None]  # [40, 1, 1]
  dy, dx = offsets[:, None], offsets[None, :]  # [32, 1], [1, 32]
  table = np.stack([_inside(shape, half_size, cos, sin, dx, dy) for shape in range(3)]).astype(np.uint8)
  table.flags.writeable = False
  return table


def render(factors: object) -> np.ndarray:
  """dSprites images for rows of factor levels, rasterised on the host.

  Each image is the sprite's 32x32 window from a table of the 720 (shape, scale,
  orientation) masks, copied into an empty frame with its centre on pixel
  `(16 + position_y, 16 + position_x)`; the module docstring gives the geometry.

  Args:
    factors: integer array `[N, 5]` of levels of (shape, scale, orientation,
      position_x, position_y).

  Returns:
    uint8 `[N, 64, 64, 1]` of 0s (background) and 1s (sprite).

  Raises:
    ValueError: for a non-integer dtype, a shape other than `[N, 5]`, or a level out of range.

  >>> image = render([[0, 5, 0, 0, 0]])[0, ..., 0]  # the largest square, top left
  >>> rows, cols = np.nonzero(image)
  >>> str(image.dtype), int(image.sum()), [int(i) for i in (rows.min(), rows.max(), cols.min(), cols.max())]
  ('uint8', 441, [6, 26, 6, 26])
  """
  factors = _check_factors('factors', factors, batched=True)
  num = factors.shape[0]
  patches = _sprite_table()[factors[:, 0], factors[:, 1], factors[:, 2]]  # [N, 32, 32]
  # Flat index of each window's top-left pixel: row position_y, column position_x.
  corners = np.arange(num) * _FRAME * _FRAME + factors[:, 4] * _FRAME + factors[:, 3]  # [N]
  images = np.zeros(num * _FRAME * _FRAME, np.uint8)
  images[corners[:, None] + _WINDOW_OFFSETS[None, :]] = patches.reshape(num, _WINDOW * _WINDOW)
  return images.reshape(num, *IMAGE_SHAPE)


def _render_full_frame(factors: object) -> np.ndarray:
  """`render` by evaluating the implicit inequality at every pixel of every frame: the reference.

  Slower than `render`, which tests check it against.
  """
  factors = _check_factors('factors', factors, batched=True)
  images = np.zeros((factors.shape[0], _FRAME, _FRAME), np.uint8)
  pixels = np.arange(_FRAME, dtype=np.float32)  # [64]
  cos, sin = _cos_sin()
  half_sizes = _half_sizes()
  for shape in range(3):  # a loop over the 3 shapes, not over images
    rows = np.flatnonzero(factors[:, 0] == shape)
    f = factors[rows]  # [M, 5]
    centre = (f[:, 3:] + _WINDOW // 2).astype(np.float32)  # [M, 2] pixel (x, y) of the sprite's centre
    dx = pixels[None, None, :] - centre[:, 0, None, None]  # [M, 1, 64]
    dy = pixels[None, :, None] - centre[:, 1, None, None]  # [M, 64, 1]
    orientation = f[:, 2, None, None]
    images[rows] = _inside(shape, half_sizes[f[:, 1], None, None], cos[orientation], sin[orientation], dx, dy)
  return images[..., None]


def load_texture(path: str) -> np.ndarray:
  """The scream_dsprites texture: the image at `path`, RGB, shrunk to fit 350x274 as in disentanglement_lib.

  Returns:
    uint8 `[H, W, 3]`, H and W at least 65.

  Raises:
    FileNotFoundError: for an empty or missing `path` (the library cannot download the image).
    ValueError: for an image that cannot be read or is smaller than 65x65.
  """
  file = pathlib.Path(path).expanduser()
  if not path or not file.is_file():
    raise FileNotFoundError(
      'scream_dsprites needs a texture image at config.data.scream_path; got '
      f'{path!r}, which {"is empty" if not path else "does not exist"}. '
      'Download The Scream (e.g. from Wikimedia Commons) and point config.data.scream_path at it.'
    )
  return _load_texture(str(file))


@functools.lru_cache(maxsize=2)
def _load_texture(path: str) -> np.ndarray:
  from PIL import Image, UnidentifiedImageError  # pylint: disable=import-outside-toplevel

  try:
    with Image.open(path) as image:
      image = image.convert('RGB')
      image.thumbnail(_SCREAM_SIZE)
      texture = np.asarray(image, np.uint8)
  except (OSError, UnidentifiedImageError) as error:
    raise ValueError(f'config.data.scream_path {path!r} is not a readable image ({error}).') from error
  if min(texture.shape[:2]) <= 64:
    raise ValueError(f'the texture at config.data.scream_path must exceed 64x64 pixels; got {texture.shape[:2]}.')
  texture.flags.writeable = False
  return texture


def _uniform(rng, low: float, high: float, size) -> np.ndarray:
  return rng.uniform(low, high, size)


def _integer(rng, high: int) -> int:
  return int(rng.integers(high) if isinstance(rng, np.random.Generator) else rng.randint(high))


def colorize(masks: np.ndarray, rngs: Sequence, *, variant: str, texture: np.ndarray | None = None) -> np.ndarray:
  """disentanglement_lib's colour, noise or scream variant of binary sprite masks, as floats in [0, 1].

  Args:
    masks: uint8 `[N, 64, 64, 1]` of 0s and 1s (`render`'s output).
    rngs: one numpy `Generator` or `RandomState` per image, drawing its colour or noise.
    variant: 'color', 'noisy' or 'scream'.
    texture: uint8 `[H, W, 3]` (`load_texture`), for 'scream'.

  Returns:
    float64 `[N, 64, 64, 3]` in [0, 1].
  """
  sprite = np.repeat(masks.astype(np.float64), 3, axis=-1)  # [N, 64, 64, 3]
  out = np.empty_like(sprite)
  for i, rng in enumerate(rngs):
    if variant == 'color':
      out[i] = sprite[i] * _uniform(rng, 0.5, 1.0, (1, 1, 3))
    elif variant == 'noisy':
      out[i] = np.minimum(sprite[i] + _uniform(rng, 0.0, 1.0, (_FRAME, _FRAME, 3)), 1.0)
    elif variant == 'scream':
      top = _integer(rng, texture.shape[0] - _FRAME)
      left = _integer(rng, texture.shape[1] - _FRAME)
      patch = texture[top : top + _FRAME, left : left + _FRAME] / 255.0
      background = (patch + _uniform(rng, 0.0, 1.0, 3)) / 2.0
      out[i] = np.where(sprite[i] == 1, 1.0 - background, background)
    else:
      raise ValueError(f'`variant` must be one of {VARIANTS[1:]}; got {variant!r}.')
  return out


def to_uint8(values: np.ndarray) -> np.ndarray:
  """Floats in [0, 1] as 8-bit pixels, `round(255 v)`."""
  return np.round(values * 255.0).astype(np.uint8)


class DSpritesSource:
  """Random access to dSprites, for input pipelines (grain) and disentanglement metrics.

  A grain `RandomAccessDataSource` (`__len__`, `__getitem__`, `__getitems__`) and
  the ground-truth-data protocol of disentanglement_lib's `GroundTruthData`
  (Locatello et al. 2019): `num_factors`, `factors_num_values`,
  `observation_shape`, `sample_factors`, `sample_observations_from_factors`,
  `sample_observations` and `sample`. Images are rendered on demand (see `render`);
  `variant` 'color', 'noisy' or 'scream' (with its `texture`) renders disentanglement_lib's
  RGB variants (see `colorize`), uint8 `[64, 64, 3]`.

  >>> source = DSpritesSource()
  >>> example = source[1]
  >>> len(source), example['image'].shape, example['factors'].tolist()
  (737280, (64, 64, 1), [0, 0, 0, 0, 1])
  """

  def __init__(self, *, variant: str = 'binary', texture: np.ndarray | None = None):
    if variant not in VARIANTS:
      raise ValueError(f'`variant` must be one of {VARIANTS}; got {variant!r}.')
    if (variant == 'scream') != (texture is not None):
      raise ValueError("`texture` goes with variant 'scream' and only there.")
    self._values = tuple(v.astype(np.float32) for v in factor_values())
    self.variant, self._texture = variant, texture

  def __repr__(self) -> str:
    return f'DSpritesSource(num_images={NUM_IMAGES}, variant={self.variant!r})'

  def _colorize(self, masks: np.ndarray, rngs: Sequence) -> np.ndarray:
    """uint8 images of `masks` in this source's variant."""
    if self.variant == 'binary':
      return masks
    return to_uint8(colorize(masks, rngs, variant=self.variant, texture=self._texture))

  def __len__(self) -> int:
    return NUM_IMAGES

  def _batch(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    bad = (indices < 0) | (indices >= NUM_IMAGES)
    if bad.any():
      raise IndexError(f'dSprites indices must be in [0, {NUM_IMAGES - 1}]; got {indices[bad].flat[0]}.')
    factors = factors_from_index(indices)  # [N, 5]
    values = np.stack([v[f] for v, f in zip(self._values, factors.T, strict=True)], axis=-1)  # [N, 5]
    rngs = [np.random.default_rng([_VARIANT_SEED, int(i)]) for i in indices] if self.variant != 'binary' else []
    return {'image': self._colorize(render(factors), rngs), 'factors': factors, 'factor_values': values}

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    """Image `index`: `{'image': uint8 [64, 64, 1], 'factors': int32 [5], 'factor_values': float32 [5]}`.

    Raises:
      IndexError: for an index outside `[0, 737279]` (negative indices are not wrapped).
    """
    batch = self._batch(np.array([operator.index(index)]))
    return {key: value[0] for key, value in batch.items()}

  def __getitems__(self, indices: Sequence[int]) -> dict[str, np.ndarray]:
    """Images `indices`, as `__getitem__`'s dict with a leading `[N]` axis on every entry.

    Raises:
      IndexError: for an index outside `[0, 737279]`.
      ValueError: for non-integer indices.
    """
    return self._batch(_as_int_array('indices', indices).reshape(-1))

  # The ground-truth-data protocol of disentanglement_lib.

  @property
  def num_factors(self) -> int:
    return len(FACTOR_SIZES)

  @property
  def factors_num_values(self) -> list[int]:
    return list(FACTOR_SIZES)

  @property
  def observation_shape(self) -> list[int]:
    return list(IMAGE_SHAPE) if self.variant == 'binary' else [*IMAGE_SHAPE[:2], 3]

  def sample_factors(self, num: int, random_state: np.random.RandomState) -> np.ndarray:
    """int32 `[num, 5]` factor levels, each factor independently uniform over its levels.

    Raises:
      ValueError: for a `num` that is not a non-negative integer.
    """
    if not isinstance(num, int | np.integer) or isinstance(num, bool) or num < 0:
      raise ValueError(f'`num` must be an integer >= 0; got {num!r}.')
    columns = [random_state.randint(size, size=num) for size in FACTOR_SIZES]
    return np.stack(columns, axis=-1).astype(np.int32)

  def sample_observations_from_factors(self, factors: object, random_state: np.random.RandomState) -> np.ndarray:
    """float32 images in [0, 1] for factor levels `[num, 5]`: `[num, 64, 64, 1]` in {0, 1}, or a variant's RGB.

    `random_state` draws a variant's colour or noise (binary dSprites is deterministic given its factors).
    """
    masks = render(factors)
    if self.variant == 'binary':
      return masks.astype(np.float32)
    return self._colorize(masks, [random_state] * len(masks)).astype(np.float32) / 255.0

  def sample_observations(self, num: int, random_state: np.random.RandomState) -> np.ndarray:
    """float32 `[num, 64, 64, 1]` images of uniformly sampled factors."""
    return self.sample(num, random_state)[1]

  def sample(self, num: int, random_state: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
    """Uniformly sampled factor levels int32 `[num, 5]` and their float32 images `[num, 64, 64, 1]`."""
    factors = self.sample_factors(num, random_state)
    return factors, self.sample_observations_from_factors(factors, random_state)
