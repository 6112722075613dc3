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
from PIL import Image

from jaxvae import _models, _types

MANIFOLD_LIMIT = 5.0  # manifolds of 1-D and 2-D latents span [-5, 5] per axis


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
  mean_decoder: Callable[[jax.Array], jax.Array], loc: jax.Array, *, limit: float = 3.0, steps: int = 9
) -> np.ndarray:
  """One row per latent dimension: the decoded mean of `loc [D]` with that dimension swept over [-limit, limit]."""
  latent_dim = loc.shape[-1]
  values = jnp.linspace(-limit, limit, steps)  # [steps]
  z = jnp.tile(loc, (latent_dim, steps, 1))  # [D, steps, D]
  z = z.at[jnp.arange(latent_dim), :, jnp.arange(latent_dim)].set(values)
  images = mean_decoder(z.reshape(latent_dim * steps, latent_dim))
  return image_grid(np.asarray(images), columns=steps)


def latent_manifold(
  mean_decoder: Callable[[jax.Array], jax.Array], latent_dim: int, *, steps: int = 20, limit: float = MANIFOLD_LIMIT
) -> np.ndarray:
  """Images decoded from a regular grid of latents: a strip for a 1-D latent, a `steps x steps` sheet for 2-D.

  Rows run from z_2 = +limit (top) to -limit, columns from z_1 = -limit to +limit.

  Raises:
    ValueError: for a latent space of more than two dimensions.
  """
  values = jnp.linspace(-limit, limit, steps)
  if latent_dim == 1:
    return image_grid(np.asarray(mean_decoder(values[:, None])), columns=steps)
  if latent_dim == 2:
    z1, z2 = jnp.meshgrid(values, values[::-1])
    return image_grid(np.asarray(mean_decoder(jnp.stack([z1.ravel(), z2.ravel()], -1))), columns=steps)
  raise ValueError(f'a latent manifold is drawn for 1-D or 2-D latents only; this model has {latent_dim}.')


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


def write_pictures(
  workdir: pathlib.Path,
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
) -> list[pathlib.Path]:
  """Draws every picture that applies to the model into `workdir/pictures/` and TensorBoard; returns the files.

  Args:
    workdir: the run's directory.
    config: the run config.
    vae: the model; `params` its (process-local) parameters.
    inputs: test inputs `[N, H, W, C]`, in the likelihood's domain.
    labels: their labels `[N]`, or None.
    condition: their conditions for a conditional model, else None.
    loc: posterior means `[M, D]` of the evaluation examples at hand: the
      first is traversed, and a 2-D latent space's are all scattered
      (`eval.py` passes process 0's share).
    writer: a `LogWriter`.
    step: the checkpoint's step.
  """
  latent_dim = config.model.latent_dim
  key = jax.random.key(config.eval.seed)
  rows = config.eval.num_image_rows

  def mean_decoder(z: jax.Array, condition: jax.Array | None = None) -> jax.Array:
    _, decoder = _models.bind_vae(vae, params, condition)
    return _models.mean_image(config.model.likelihood, decoder(z))

  pictures = {}
  if condition is None:
    first_loc = jnp.asarray(loc[0])
    pictures['traversals'] = latent_traversal(mean_decoder, first_loc)
    if latent_dim <= 2:
      pictures['manifold'] = latent_manifold(mean_decoder, latent_dim)
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
  if (workdir / 'metrics.jsonl').is_file():
    pictures['training_curves'] = training_curves(workdir / 'metrics.jsonl')

  out_dir = workdir / 'pictures'
  out_dir.mkdir(parents=True, exist_ok=True)
  paths = []
  for name, picture in pictures.items():
    path = out_dir / f'{name}.png'
    save_png(path, picture, scale=1 if name in ('latent_scatter', 'training_curves') else 2)
    writer.write_image(step, name, picture)
    paths.append(path)
  return paths
