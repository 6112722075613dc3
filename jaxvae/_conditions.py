"""What a conditional VAE is given: one-hot labels, inpainting masks or edge maps, computed from the batch."""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae import _types

CONDITIONS = ('none', 'label', 'inpaint', 'structure', 'segmentation', 'mask')
# The batch features each condition reads besides the image.
FEATURES = {'none': (), 'label': ('label',), 'inpaint': (), 'structure': (), 'segmentation': (), 'mask': ('mask',)}
# The structure maps `[B, H, W, 1]` a shape-and-appearance model is conditioned on: edges (the Sobel map),
# a coarse few-level segmentation of the blurred intensity, and the dataset's exact shape mask.
STRUCTURE_KINDS = ('structure', 'segmentation', 'mask')
SEGMENTATION_LEVELS = 4

# The 14 ways to hide some but not all of an image's four quadrants (Sohn et
# al. 2015 complete MNIST digits from one, two or three given quadrants).
# NumPy, not jnp: a module-level jax array would start the XLA backend at
# import, before a multi-process run can call jax.distributed.initialize().
_QUADRANT_PATTERNS = np.array(
  [bits for bits in itertools.product((0.0, 1.0), repeat=4) if 0 < sum(bits) < 4], np.float32
).reshape(-1, 2, 2)  # [14, 2, 2], 1 = observed


def inpainting_mask(keys: jax.Array, height: int, width: int) -> jax.Array:
  """A random quadrant mask per example, one key each (`keys [B]`): `[B, H, W, 1]`, 1 where pixels are given.

  0 marks the pixels to fill in. One to three of the four quadrants are hidden.
  """
  choice = jax.vmap(lambda key: jax.random.randint(key, (), 0, len(_QUADRANT_PATTERNS)))(keys)  # [B]
  patterns = jnp.asarray(_QUADRANT_PATTERNS)[choice]  # [B, 2, 2]
  rows = (jnp.arange(height) >= height // 2).astype(jnp.int32)  # which half each row is in
  cols = (jnp.arange(width) >= width // 2).astype(jnp.int32)
  return patterns[:, rows][:, :, cols][..., None]  # [B, H, W, 1]


def structure_map(x: jax.Array) -> jax.Array:
  """The edges of images `x [B, H, W, C]` in [0, 1]: Sobel gradient magnitude of their grey level, `[B, H, W, 1]`.

  The shape of the image without its appearance: the condition a structure-
  conditioned VAE renders with sampled appearance.
  """
  grey = jnp.mean(x, axis=-1, keepdims=True)  # [B, H, W, 1]
  sobel = jnp.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
  kernels = jnp.stack([sobel, sobel.T], axis=-1)[:, :, None, :]  # [3, 3, 1, 2] HWIO
  gradients = jax.lax.conv_general_dilated(
    grey, kernels.astype(grey.dtype), (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')
  )  # [B, H, W, 2]
  # 4 is the largest Sobel response to a unit step, so edges of full contrast are 1.
  return jnp.clip(jnp.sqrt(jnp.sum(jnp.square(gradients), axis=-1, keepdims=True) + 1e-12) / 4.0, 0.0, 1.0)


def segmentation_map(x: jax.Array, *, levels: int = SEGMENTATION_LEVELS) -> jax.Array:
  """A coarse structure map of `x [B, H, W, C]`: its blurred grey level cut into `levels` bands, `[B, H, W, 1]`.

  The grey level is blurred by a Gaussian of standard deviation H / 32
  pixels (textures and fine edges vanish, regions remain), stretched to
  [0, 1] per image (so the bands do not encode overall brightness), and
  quantised to `levels` equal bands, valued `0, 1 / (levels - 1), ..., 1`.
  """
  grey = jnp.mean(x, axis=-1, keepdims=True)  # [B, H, W, 1]
  sigma = max(x.shape[1] / 32.0, 0.5)
  radius = int(np.ceil(2 * sigma))
  taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
  taps = jnp.asarray(taps / taps.sum(), grey.dtype)
  # Separable blur, edges padded with the edge value (so borders do not darken).
  padded = jnp.pad(grey, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode='edge')
  numbers = ('NHWC', 'HWIO', 'NHWC')
  blurred = jax.lax.conv_general_dilated(padded, taps.reshape(-1, 1, 1, 1), (1, 1), 'VALID', dimension_numbers=numbers)
  blurred = jax.lax.conv_general_dilated(blurred, taps.reshape(1, -1, 1, 1), (1, 1), 'VALID', dimension_numbers=numbers)
  low = jnp.min(blurred, axis=(1, 2, 3), keepdims=True)
  high = jnp.max(blurred, axis=(1, 2, 3), keepdims=True)
  stretched = (blurred - low) / jnp.maximum(high - low, 1e-6)
  band = jnp.clip(jnp.floor(stretched * levels), 0, levels - 1)
  return band / (levels - 1)


def make_condition(kind: str, x: jax.Array, batch: _types.Batch, key: jax.Array, *, num_classes: int) -> jax.Array:
  """The condition of a conditional VAE for the batch `x [B, H, W, C]`.

  `'label'`: the one-hot class `batch['label']`, `[B, num_classes]`;
  `'inpaint'`: the image with random quadrants hidden, beside its mask,
  `[B, H, W, C + 1]`; `'structure'`: the image's edges, `[B, H, W, 1]`;
  `'segmentation'`: its coarse intensity bands (`segmentation_map`);
  `'mask'`: the dataset's exact shape mask `batch['mask']`, `[B, H, W, 1]`.
  Inpainting masks are drawn from `key`: per example with `fold_in(key, i)`
  when the batch carries the examples' split positions `'index'` (evaluation,
  so each example keeps its mask however it is batched), else from
  `split(key, B)` (training).

  Raises:
    ValueError: for an unknown `kind`.
  """
  if kind == 'label':
    return jax.nn.one_hot(batch['label'], num_classes, dtype=x.dtype)
  if kind == 'inpaint':
    if 'index' in batch:
      keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, batch['index'])
    else:
      keys = jax.random.split(key, x.shape[0])
    mask = inpainting_mask(keys, *x.shape[1:3]).astype(x.dtype)
    return jnp.concatenate([x * mask, mask], axis=-1)
  if kind == 'structure':
    return structure_map(x)
  if kind == 'segmentation':
    return segmentation_map(x)
  if kind == 'mask':
    return jnp.asarray(batch['mask'], x.dtype)
  raise ValueError(f'unknown condition {kind!r}; choose one of {CONDITIONS}.')


def scored_mask(kind: str, condition: jax.Array | None) -> jax.Array | None:
  """The dimensions a conditional model's likelihood is scored on, `[B, H, W, 1]`; None for all of them.

  An inpainting model is given the visible pixels, so its likelihood, its
  training loss and its bounds are those of the hidden pixels alone,
  log p(x_hidden | x_visible), as Sohn et al. 2015 report them.
  """
  return 1.0 - condition[..., -1:] if kind == 'inpaint' else None


def condition_fn(kind: str, *, num_classes: int) -> _types.ConditionFn | None:
  """`make_condition` for one `kind`, as `(x, batch, key) -> condition`; None for `kind='none'`."""
  return None if kind == 'none' else functools.partial(make_condition, kind, num_classes=num_classes)
