"""Every picture of a run: image grids, samples, reconstructions, traversals, manifolds, plots, completions.

Each function returns a uint8 picture `[H, W, C]`; `write_pictures` draws all
that apply to a trained model after evaluation, `sample_and_reconstruction_grids`
the two grids of the end of training, and `save_png` writes any of them.
Decoders return likelihood parameters, so pictures show the mean of p(x|z)
(`jaxvae._models.mean_image`).
"""

from __future__ import annotations

import json
import math
import pathlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from jaxvae import _models, _types

MANIFOLD_LIMIT = 5.0  # manifolds of 1-D and 2-D latents span [-5, 5] per axis
TRAVERSAL_TOP_K = 10  # traversals show the latent dimensions of the largest average KL, this many
TRAVERSAL_LIMIT = 3.0  # traversals sweep z_i over [-3, 3]
DATA_PERCENTILES = (1.0, 99.0)  # a manifold "over the data" spans these percentiles of the posterior means
_LABEL_WIDTH = 130  # pixels of the label column of a traversal (before the PNG's enlargement)
_HEADER_HEIGHT = 14  # pixels of its header line


def spread_indices(num_examples: int, num: int, *, seed: int) -> np.ndarray:
  """`num` sorted example indices spread over `0..num_examples-1`: one seeded random pick in each of `num` stretches.

  Splits stored sorted by class (e.g. `mnist_5k`'s) still give every class,
  unlike their first examples.
  """
  num = min(num, num_examples)
  edges = np.linspace(0, num_examples, num + 1).astype(int)  # [num + 1]
  rng = np.random.default_rng(seed)
  return np.array([rng.integers(lo, hi) for lo, hi in zip(edges[:-1], edges[1:], strict=True)], np.int64)


def kl_per_dimension(loc: np.ndarray, log_var: np.ndarray) -> np.ndarray:
  """The average over examples of KL(q(z_i|x) || N(0, 1)) for each latent dimension i: `[D]` nats."""
  loc, log_var = np.asarray(loc, np.float64), np.asarray(log_var, np.float64)
  return (0.5 * (loc**2 + np.exp(log_var) - 1.0 - log_var)).mean(0)


def traversal_order(kl: np.ndarray, top_k: int = TRAVERSAL_TOP_K) -> np.ndarray:
  """The `top_k` latent dimensions of largest average KL `kl [D]`, largest first (ties: lower index first)."""
  return np.argsort(-np.asarray(kl), kind='stable')[:top_k]


def _font() -> ImageFont.ImageFont:
  return ImageFont.load_default()


def image_grid(images: np.ndarray, *, columns: int, padding: int = 1) -> np.ndarray:
  """Tiles images into one picture, row by row.

  Args:
    images: `[N, H, W, C]` floats in [0, 1] (C = 1 or 3).
    columns: images per row; the last row is padded with blank tiles.
    padding: pixels of background between tiles.

  Returns:
    `[rows * (H + padding) + padding, columns * (W + padding) + padding, C]` uint8.
  """
  images = np.asarray(images, dtype=np.float32)
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f'`images` must be [N, H, W, C] with C = 1 or 3; got shape {images.shape}.')
  num, height, width, channels = images.shape
  rows = math.ceil(num / columns)
  grid = np.full(
    (rows * (height + padding) + padding, columns * (width + padding) + padding, channels), 0.5, np.float32
  )
  for i, image in enumerate(images):
    top = padding + (i // columns) * (height + padding)
    left = padding + (i % columns) * (width + padding)
    grid[top : top + height, left : left + width] = image
  return np.round(np.clip(grid, 0.0, 1.0) * 255).astype(np.uint8)


def save_png(path: str | pathlib.Path, grid: np.ndarray, *, scale: int = 2) -> None:
  """Writes a uint8 `[H, W, C]` picture as PNG, enlarged `scale` times with nearest-neighbour pixels."""
  picture = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
  picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
  picture.save(path)


def latent_traversal(
  mean_decoder: Callable[[jax.Array], jax.Array],
  loc: jax.Array,
  kl: np.ndarray,
  *,
  top_k: int = TRAVERSAL_TOP_K,
  limit: float = TRAVERSAL_LIMIT,
  steps: int = 9,
) -> np.ndarray:
  """Rows of the `top_k` dimensions of largest average KL: the decoded mean of `loc [D]` with z_i swept.

  Args:
    mean_decoder: `z [N, D] -> [N, H, W, C]` mean images in [0, 1].
    loc: the base latent `[D]` (a test example's posterior mean).
    kl: each dimension's average KL in nats `[D]` (`kl_per_dimension`); rows
      are ordered by it, largest first, and labelled `z_i  KL x.xx nats`.
    top_k: rows drawn at most (a 128-latent model gets 10 rows, not 128).
    limit, steps: z_i takes `steps` values evenly over [-limit, limit],
      written in the header.

  Returns:
    A uint8 `[_HEADER_HEIGHT + rows * (H + 1) + 1, _LABEL_WIDTH + steps * (W + 1) + 1, 3]` picture.
  """
  latent_dim = loc.shape[-1]
  dims = traversal_order(kl, top_k)  # [K]
  values = jnp.linspace(-limit, limit, steps)  # [steps]
  z = jnp.tile(loc, (len(dims), steps, 1))  # [K, steps, D]
  z = z.at[jnp.arange(len(dims)), :, jnp.asarray(dims)].set(values)
  images = np.asarray(mean_decoder(z.reshape(len(dims) * steps, latent_dim)))  # [K * steps, H, W, C]
  if images.shape[-1] == 1:
    images = np.repeat(images, 3, axis=-1)
  grid = image_grid(images, columns=steps)
  picture = np.full((_HEADER_HEIGHT + grid.shape[0], _LABEL_WIDTH + grid.shape[1], 3), 255, np.uint8)
  picture[_HEADER_HEIGHT:, _LABEL_WIDTH:] = grid
  canvas = Image.fromarray(picture)
  draw = ImageDraw.Draw(canvas)
  font = _font()
  draw.text((2, 1), f'top {len(dims)} of {latent_dim} by KL', fill=(0, 0, 0), font=font)
  draw.text((_LABEL_WIDTH + 2, 1), f'z_i = {-limit:g}', fill=(0, 0, 0), font=font)
  right = f'{limit:+g}'
  draw.text((picture.shape[1] - 2 - draw.textlength(right, font=font), 1), right, fill=(0, 0, 0), font=font)
  tile_height = images.shape[1] + 1
  for row, dim in enumerate(dims):
    top = _HEADER_HEIGHT + 1 + row * tile_height + max(tile_height - 12, 0) // 2
    draw.text((2, top), f'z_{dim}  KL {kl[dim]:.2f} nats', fill=(0, 0, 0), font=font)
  return np.asarray(canvas)


def latent_manifold(
  mean_decoder: Callable[[jax.Array], jax.Array],
  latent_dim: int,
  *,
  steps: int = 20,
  limit: float = MANIFOLD_LIMIT,
  limits: np.ndarray | None = None,
) -> np.ndarray:
  """Images decoded from a regular grid of latents: a strip for a 1-D latent, a `steps x steps` sheet for 2-D.

  Rows run from z_2 = +limit (top) to -limit, columns from z_1 = -limit to +limit.

  Args:
    mean_decoder: `z [N, D] -> [N, H, W, C]` mean images in [0, 1].
    latent_dim: D, 1 or 2.
    steps: values per axis.
    limit: each axis spans [-limit, limit] ...
    limits: ... unless given here as `[D, 2]` (low, high) per axis, e.g. `data_limits(loc)`.

  Raises:
    ValueError: for a latent space of more than two dimensions.
  """
  if latent_dim not in (1, 2):
    raise ValueError(f'a latent manifold is drawn for 1-D or 2-D latents only; this model has {latent_dim}.')
  limits = np.tile([-limit, limit], (latent_dim, 1)) if limits is None else np.asarray(limits)
  values = [jnp.linspace(low, high, steps) for low, high in limits]
  if latent_dim == 1:
    return image_grid(np.asarray(mean_decoder(values[0][:, None])), columns=steps)
  z1, z2 = jnp.meshgrid(values[0], values[1][::-1])
  return image_grid(np.asarray(mean_decoder(jnp.stack([z1.ravel(), z2.ravel()], -1))), columns=steps)


def data_limits(loc: np.ndarray, percentiles: tuple[float, float] = DATA_PERCENTILES) -> np.ndarray:
  """The range the data occupy per latent axis: `percentiles` of the posterior means `loc [N, D]`, as `[D, 2]`."""
  return np.percentile(np.asarray(loc), percentiles, axis=0).T


def with_axes(grid: np.ndarray, limits: np.ndarray, *, title: str) -> np.ndarray:
  """A manifold `grid` (from `latent_manifold`) in a matplotlib frame with z_1 (and z_2) ticks and labels.

  `limits` `[D, 2]`: the axes' ranges, as given to `latent_manifold`.
  """
  import matplotlib  # pylint: disable=import-outside-toplevel

  matplotlib.use('Agg')
  from matplotlib import pyplot  # pylint: disable=import-outside-toplevel

  limits = np.asarray(limits)
  height, width = grid.shape[:2]
  figure = pyplot.figure(figsize=(width / 100 + 1.2, height / 100 + 0.9), dpi=100)
  axes = figure.add_axes(
    (
      0.9 / (width / 100 + 1.2),
      0.6 / (height / 100 + 0.9),
      width / 100 / (width / 100 + 1.2),
      height / 100 / (height / 100 + 0.9),
    )
  )
  z2 = limits[1] if len(limits) == 2 else (0.0, 1.0)
  axes.imshow(
    grid[..., 0] if grid.shape[-1] == 1 else grid,
    cmap='gray',
    vmin=0,
    vmax=255,
    extent=(limits[0][0], limits[0][1], z2[0], z2[1]),
    aspect='auto',
    interpolation='nearest',
  )
  axes.set_xlabel('$z_1$')
  if len(limits) == 2:
    axes.set_ylabel('$z_2$')
  else:
    axes.set_yticks([])
  axes.set_title(title, fontsize=9)
  picture = _figure_to_array(figure)
  pyplot.close(figure)
  return picture


def interpolations(
  mean_decoder: Callable[[jax.Array], jax.Array], inputs: np.ndarray, loc: jax.Array, *, pairs: int = 4, num: int = 8
) -> np.ndarray:
  """Rows of latent interpolations between pairs of test inputs: `x_a`, `num` decoded points, `x_b`.

  Input `2i` is paired with input `2i + 1`; the decoded points lie evenly on
  the line between their posterior means `loc`, ends included.
  """
  pairs = min(pairs, len(inputs) // 2)
  t = jnp.linspace(0.0, 1.0, num)[None, :, None]  # [1, num, 1]
  loc_a, loc_b = loc[0 : 2 * pairs : 2], loc[1 : 2 * pairs : 2]  # [P, D] each
  z = (1 - t) * loc_a[:, None] + t * loc_b[:, None]  # [P, num, D]
  decoded = np.asarray(mean_decoder(z.reshape(pairs * num, -1))).reshape(pairs, num, *inputs.shape[1:])
  inputs = np.asarray(inputs)
  rows = np.concatenate([inputs[0 : 2 * pairs : 2, None], decoded, inputs[1 : 2 * pairs : 2, None]], axis=1)
  return image_grid(rows.reshape(-1, *inputs.shape[1:]), columns=num + 2)


def _figure_to_array(figure: Any) -> np.ndarray:
  figure.canvas.draw()
  return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()


def latent_scatter(loc: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
  """A scatter plot of 2-D posterior means `loc [N, 2]`, coloured by class label where there is one."""
  import matplotlib  # pylint: disable=import-outside-toplevel

  matplotlib.use('Agg')
  from matplotlib import pyplot  # pylint: disable=import-outside-toplevel

  figure, axes = pyplot.subplots(figsize=(5, 5), dpi=100)
  points = axes.scatter(loc[:, 0], loc[:, 1], c=labels, cmap='tab10', s=4)
  if labels is not None:
    figure.colorbar(points, ax=axes, label='label')
  axes.set(xlabel='$z_1$ (posterior mean)', ylabel='$z_2$', title='test examples in latent space')
  picture = _figure_to_array(figure)
  pyplot.close(figure)
  return picture


def training_curves(metrics_file: str | pathlib.Path) -> np.ndarray:
  """The training loss and the test-set ELBO (or reconstruction) against the step, from `metrics.jsonl`."""
  import matplotlib  # pylint: disable=import-outside-toplevel

  matplotlib.use('Agg')
  from matplotlib import pyplot  # pylint: disable=import-outside-toplevel

  lines = [json.loads(line) for line in pathlib.Path(metrics_file).read_text().splitlines() if line.strip()]
  figure, axes = pyplot.subplots(figsize=(6, 4), dpi=100)
  for name, label in (
    ('train_loss', 'train loss'),
    ('eval_elbo', '-test ELBO'),
    ('eval_reconstruction', '-test log p(x|z)'),
  ):
    points = [(line['step'], line[name]) for line in lines if name in line]
    if points:
      steps, values = zip(*points, strict=True)
      sign = 1.0 if name == 'train_loss' else -1.0
      axes.plot(steps, sign * np.asarray(values), marker='.' if name != 'train_loss' else None, label=label)
  axes.set(xlabel='step', ylabel='nats per example', title='training')
  axes.legend()
  picture = _figure_to_array(figure)
  pyplot.close(figure)
  return picture


def completions(x: np.ndarray, mask: np.ndarray, generated: np.ndarray) -> np.ndarray:
  """Inpainting: a row per input: the masked input, then each completion (given pixels kept, the rest generated).

  Args:
    x: inputs `[N, H, W, C]` in [0, 1].
    mask: `[N, H, W, 1]`, 1 where pixels are given.
    generated: decoded means `[S, N, H, W, C]` for S latent samples.
  """
  masked = x * mask + 0.5 * (1 - mask)  # hidden pixels shown grey
  filled = mask[None] * x[None] + (1 - mask[None]) * generated  # [S, N, H, W, C]
  rows = np.concatenate([masked[:, None], np.moveaxis(filled, 0, 1)], axis=1)  # [N, 1 + S, H, W, C]
  return image_grid(rows.reshape(-1, *x.shape[1:]), columns=rows.shape[1])


def sample_and_reconstruction_grids(
  *,
  vae: _models.VAE,
  params: _types.Params,
  likelihood: str,
  inputs: jax.Array,
  condition: jax.Array | None,
  key: jax.Array,
  columns: int,
) -> dict[str, np.ndarray]:
  """The grids of the end of training: `'samples'` and `'reconstructions'`.

  Args:
    vae: the model; `params` its (process-local) parameters; `likelihood` its decoder's.
    inputs: test inputs `[N, H, W, C]` in the likelihood's domain.
    condition: their conditions for a conditional model (whose samples then
      take them), else None.
    key: PRNG key of the prior samples.
    columns: images per row.

  Returns:
    Decoder means of N prior samples, and the first N/2 inputs each followed
    by its reconstruction (the decoder mean at the posterior mean).
  """
  encoder, decoder = _models.bind_vae(vae, params, condition)
  loc, _ = encoder(inputs)  # [N, D]
  samples = _models.mean_image(likelihood, decoder(jax.random.normal(key, loc.shape)))
  reconstructions = np.asarray(_models.mean_image(likelihood, decoder(loc)))
  half = len(inputs) // 2
  pairs = np.stack([np.asarray(inputs[:half]), reconstructions[:half]], axis=1).reshape(-1, *inputs.shape[1:])
  return {
    'samples': image_grid(np.asarray(samples), columns=columns),
    'reconstructions': image_grid(pairs, columns=columns),
  }


# Pictures drawn by matplotlib at their final size, not enlarged.
_DRAWN_AT_SCALE = ('latent_scatter', 'training_curves', 'manifold', 'manifold_data')


def write_pictures(
  out_dir: pathlib.Path,
  *,
  config: _types.Config,
  vae: _models.VAE,
  params: _types.Params,
  inputs: jax.Array,
  labels: np.ndarray | None,
  condition: jax.Array | None,
  loc: np.ndarray,
  writer: Any,
  step: int,
  training_log: pathlib.Path | None = None,
) -> list[pathlib.Path]:
  """Draws every picture that applies to the model into `out_dir/pictures/` and TensorBoard; returns the files.

  Args:
    out_dir: where the pictures go (the run's directory, or eval.py's --output_dir).
    config: the run config.
    vae: the model; `params` its (process-local) parameters.
    inputs: test inputs `[N, H, W, C]`, in the likelihood's domain: a seeded
      sample spread over the split (`spread_indices`). The first is the
      traversals' base, their average KL per dimension orders the traversal
      rows, and pairs of them are interpolated.
    labels: labels `[M]` of the examples of `loc`, or None.
    condition: the conditions of `inputs` for a conditional model, else None.
    loc: posterior means `[M, D]` of the evaluation examples at hand: a 2-D
      latent space's are all scattered, and their percentiles give the
      manifold's range over the data (`eval.py` passes process 0's share).
    writer: a `LogWriter`.
    step: the checkpoint's step.
    training_log: the run's `metrics.jsonl`, whose curves are drawn if it exists.
  """
  latent_dim = config.model.latent_dim
  key = jax.random.key(config.eval.seed)
  rows = config.eval.num_image_rows

  def mean_decoder(z: jax.Array, condition: jax.Array | None = None) -> jax.Array:
    _, decoder = _models.bind_vae(vae, params, condition)
    return _models.mean_image(config.model.likelihood, decoder(z))

  pictures = {}
  if condition is None:
    encoder, _ = _models.bind_vae(vae, params)
    inputs_loc, inputs_log_var = encoder(inputs)  # [N, D] each
    kl = kl_per_dimension(inputs_loc, inputs_log_var)
    pictures['traversals'] = latent_traversal(mean_decoder, inputs_loc[0], kl)
    pictures['interpolations'] = interpolations(mean_decoder, inputs, inputs_loc, pairs=min(rows, len(inputs) // 2))
    if latent_dim <= 2:
      prior = np.tile([-MANIFOLD_LIMIT, MANIFOLD_LIMIT], (latent_dim, 1))
      data = data_limits(loc)
      low, high = DATA_PERCENTILES
      pictures['manifold'] = with_axes(
        latent_manifold(mean_decoder, latent_dim),
        prior,
        title=f'decoded means over [-{MANIFOLD_LIMIT:g}, {MANIFOLD_LIMIT:g}]',
      )
      pictures['manifold_data'] = with_axes(
        latent_manifold(mean_decoder, latent_dim, limits=data),
        data,
        title=f'over the data: percentiles {low:g}-{high:g} of the posterior means',
      )
  else:
    # Several samples per condition: one row per test example's condition.
    shown = min(rows, len(inputs))
    conditions = condition[:shown]
    z = jax.random.normal(key, (rows, shown, latent_dim))
    generated = np.stack([np.asarray(mean_decoder(z[i], conditions)) for i in range(rows)])  # [S, N, H, W, C]
    if config.objective.condition == 'inpaint':
      mask = np.asarray(conditions[..., -1:])
      pictures['completions'] = completions(np.asarray(inputs[:shown]), mask, generated)
    else:
      grid = np.moveaxis(generated, 0, 1).reshape(-1, *generated.shape[2:])
      pictures['conditional_samples'] = image_grid(grid, columns=rows)
  if latent_dim == 2:
    pictures['latent_scatter'] = latent_scatter(loc, labels)
  if training_log is not None and training_log.is_file():
    pictures['training_curves'] = training_curves(training_log)

  (out_dir / 'pictures').mkdir(parents=True, exist_ok=True)
  paths = []
  for name, picture in pictures.items():
    path = out_dir / 'pictures' / f'{name}.png'
    save_png(path, picture, scale=1 if name in _DRAWN_AT_SCALE else 2)
    writer.write_image(step, name, picture)
    paths.append(path)
  return paths
