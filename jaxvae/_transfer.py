"""Appearance transfer of a structure-conditioned model: one image's appearance on another's structure, and its scores.

For appearance source i and structure source j the model generates the
decoder mean of p(x | y_j, z_i), with z_i the posterior mean of q(z | x_i, y_i)
(in z itself, not the learned prior's standardised coordinates: the prior
of y_j differs from that of y_i). Generation i = j is the reconstruction.

Scores, over pairs (i, i + 1 mod M) of a sample of M evaluation examples:

* structure preservation: `structure_map_error`, the mean absolute
  difference between the condition's map of x_j and the same map computed on
  the generated image (edges, segmentation), beside `structure_map_error_unrelated`,
  the same between x_i's and x_j's maps (what ignoring y_j would cost). On
  data with exact masks: `mask_iou`, the IoU of the structure source's mask
  with the generated image's object, found as the pixels nearer to the
  appearance source's object colour than to its background colour, beside
  `mask_iou_unrelated`, the IoU of the two sources' masks.
* appearance transfer: on data with exact masks, `object_colour_distance`
  (and `background_colour_distance`): the Euclidean RGB distance, in [0, 1]
  units, between the mean colour of the generated image over the structure
  source's object (background) pixels and that of the appearance source
  over its own object (background) pixels, which the exact masks make exact;
  `..._to_structure_source` measures the same against the structure
  source's colours (lower than the former means the structure's appearance
  leaked through). On any data, `colour_statistics_distance`: the distance
  between the per-channel mean and standard deviation of the generated
  image and of the appearance source.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae import _models, _pictures


def transfer_fn(vae: Any, params: Any, likelihood: str) -> Callable[[jax.Array, jax.Array, jax.Array], jax.Array]:
  """The jitted `(x_appearance [N, ...], y_appearance [N, ...], y_structure [N, ...]) -> images [N, H, W, C]`.

  Row n renders the appearance of `x_appearance[n]` (posterior mean given its
  own structure) on the structure `y_structure[n]`, as decoder means in [0, 1].
  """
  variables = {'params': params}
  # The Variational U-Net works in z itself; a plain conditional VAE's latent is z already.
  encode, decode = (
    ('appearance', 'generate') if hasattr(vae, 'appearance') else ('encode_in_context', 'decode_in_context')
  )

  @jax.jit
  def transfer(x: jax.Array, y_appearance: jax.Array, y_structure: jax.Array) -> jax.Array:
    own = vae.apply(variables, y_appearance, method='context')
    z, _ = vae.apply(variables, x, own, method=encode)  # [N, D]
    target = vae.apply(variables, y_structure, method='context')
    return _models.mean_image(likelihood, vae.apply(variables, z, target, method=decode))

  return transfer


def transfer_grid(transfer: Callable[..., jax.Array], x: jax.Array, condition: jax.Array) -> np.ndarray:
  """Every appearance of `x [N, ...]` on every structure of `condition [N, ...]`: `[N_appearance, N_structure, ...]`."""
  num = x.shape[0]
  rows = []
  for i in range(num):  # one compiled call per appearance, all structures at once
    appearance, own = jnp.repeat(x[i : i + 1], num, axis=0), jnp.repeat(condition[i : i + 1], num, axis=0)
    rows.append(np.asarray(transfer(appearance, own, condition)))
  return np.stack(rows)


def transfer_picture(x: np.ndarray, generated: np.ndarray) -> np.ndarray:
  """`appearance_transfer.png`: row i the appearance of image i, column j the structure of image j.

  The first row shows the structure sources, the first column the
  appearance sources; the diagonal is the reconstructions.

  Args:
    x: the sources `[N, H, W, C]` in [0, 1].
    generated: `transfer_grid`'s `[N, N, H, W, C]`.
  """
  num = x.shape[0]
  blank = np.full((1, *x.shape[1:]), 1.0, np.float32)
  header = np.concatenate([blank, x], axis=0)  # [1 + N, H, W, C]
  rows = [header] + [np.concatenate([x[i : i + 1], generated[i]], axis=0) for i in range(num)]
  return _pictures.image_grid(np.concatenate(rows, axis=0), columns=num + 1)


def mean_colours(images: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mean RGB of `images [N, H, W, C]` over `masks [N, H, W, 1]` (the object) and outside it: `[N, C]` each."""
  masks = masks.astype(np.float64)
  inside = np.sum(images * masks, axis=(1, 2)) / np.maximum(np.sum(masks, axis=(1, 2)), 1.0)
  outside = np.sum(images * (1 - masks), axis=(1, 2)) / np.maximum(np.sum(1 - masks, axis=(1, 2)), 1.0)
  return inside, outside


def object_mask(images: np.ndarray, object_colour: np.ndarray, background_colour: np.ndarray) -> np.ndarray:
  """The pixels of `images [N, H, W, C]` nearer to `object_colour [N, C]` than to `background_colour [N, C]`."""
  to_object = np.sum(np.square(images - object_colour[:, None, None]), axis=-1)
  to_background = np.sum(np.square(images - background_colour[:, None, None]), axis=-1)
  return (to_object < to_background)[..., None]  # [N, H, W, 1]


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Intersection over union of boolean masks `[N, H, W, 1]`, per example `[N]` (1 where both are empty)."""
  a, b = a.astype(bool), b.astype(bool)
  union = np.sum(a | b, axis=(1, 2, 3))
  return np.where(union > 0, np.sum(a & b, axis=(1, 2, 3)) / np.maximum(union, 1), 1.0)


def transfer_scores(
  x: np.ndarray,
  generated: np.ndarray,
  *,
  structure_map: Callable[[np.ndarray], np.ndarray] | None,
  masks: np.ndarray | None = None,
) -> dict[str, float]:
  """The scores of the module docstring, for `generated[n]` = appearance of `x[n]` on the structure of `x[n + 1]`.

  Args:
    x: the sources `[M, H, W, C]` in [0, 1].
    generated: `[M, H, W, C]` in [0, 1]: appearance n, structure (n + 1) mod M.
    structure_map: images `[M, H, W, C]` -> the condition's map `[M, H, W, K]`
      (None for a condition that cannot be computed from an image, the mask).
    masks: the sources' exact masks `[M, H, W, 1]`, on data that carry them.

  Returns:
    Scalar scores by name.
  """
  x, generated = np.asarray(x, np.float64), np.asarray(generated, np.float64)
  structure = np.roll(x, -1, axis=0)  # the structure source of each generated image
  scores = {}
  if structure_map is not None:
    target = np.asarray(structure_map(structure))
    scores['structure_map_error'] = float(np.mean(np.abs(np.asarray(structure_map(generated)) - target)))
    scores['structure_map_error_unrelated'] = float(np.mean(np.abs(np.asarray(structure_map(x)) - target)))
  if masks is not None:
    masks = np.asarray(masks) > 0
    structure_masks = np.roll(masks, -1, axis=0)
    source_object, source_background = mean_colours(x, masks)
    structure_object, structure_background = mean_colours(structure, structure_masks)
    found = object_mask(generated, source_object, source_background)
    scores['mask_iou'] = float(np.mean(iou(found, structure_masks)))
    scores['mask_iou_unrelated'] = float(np.mean(iou(masks, structure_masks)))
    generated_object, generated_background = mean_colours(generated, structure_masks)
    distance = lambda a, b: float(np.mean(np.linalg.norm(a - b, axis=-1)))  # noqa: E731
    scores['object_colour_distance'] = distance(generated_object, source_object)
    scores['object_colour_distance_to_structure_source'] = distance(generated_object, structure_object)
    scores['background_colour_distance'] = distance(generated_background, source_background)
    scores['background_colour_distance_to_structure_source'] = distance(generated_background, structure_background)
  statistics = lambda images: np.concatenate([images.mean(axis=(1, 2)), images.std(axis=(1, 2))], -1)  # noqa: E731
  scores['colour_statistics_distance'] = float(np.mean(np.linalg.norm(statistics(generated) - statistics(x), axis=-1)))
  scores['colour_statistics_distance_to_structure_source'] = float(
    np.mean(np.linalg.norm(statistics(generated) - statistics(structure), axis=-1))
  )
  return scores
