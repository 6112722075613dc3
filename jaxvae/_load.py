"""A trained model from Python: `jaxvae.load(workdir)` to encode, decode, sample, reconstruct, interpolate, bound."""

from __future__ import annotations

import functools
import pathlib
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae import _checkpoint, _dataset_bounds, _family, _models, _run, _types


def load(workdir: str | pathlib.Path, *, step: int | None = None) -> Model:
  """The model a training run saved in `workdir`, at its latest checkpoint or at `step`.

  Restores the parameters replicated over every device (any number of them,
  whatever topology trained the model), with the config stored beside them.

  Args:
    workdir: the `--workdir` of a training run.
    step: a checkpoint's step; default: the latest.

  Returns:
    A `Model`.

  Raises:
    FileNotFoundError: if `workdir` has no checkpoint, or none at `step`.
  """
  if step is None:
    _, config = _checkpoint.latest_run(workdir)
  else:
    steps = _checkpoint.checkpoint_steps(workdir)
    if step not in steps:
      raise FileNotFoundError(
        f'no checkpoint at step {step} in {_checkpoint.checkpoint_dir(workdir)}; its steps are {steps}.'
      )
    config = _checkpoint.stored_config(workdir, step)
  run = _run.Run(config)
  step, state = run.restore(workdir, None if step is None else [step])
  return Model(run, state.params, step=step)


class Model:
  """A trained VAE: its networks closed over restored parameters, on the devices of `run.mesh`.

  Images are `[B, H, W, C]` floats in the likelihood's domain, [0, 1] (as
  the model was trained: binarised digits for a Bernoulli decoder); pictures
  are decoder means. A conditional model (`config.objective.name == 'cvae'`)
  takes `condition`, `[B, ...]` as `condition(x, ...)` makes it, in every
  method; an unconditional one takes none.

  Attributes:
    config: the run config stored with the checkpoint.
    step: the checkpoint's step.
    params: the parameters `{'encoder', 'decoder', ...}`, replicated.
    vae: the Flax model.
  """

  def __init__(self, run: _run.Run, params: _types.Params, *, step: int):
    self._run = run
    self.config = run.config
    self.step = step
    self.params = params
    self.vae = run.vae
    self._likelihood = run.config.model.likelihood
    self._encode = jax.jit(self._encode_fn)
    self._decode = jax.jit(self._decode_fn)
    self._bounds_fns: dict[tuple[int, tuple[int, ...] | None], Any] = {}

  @property
  def latent_dim(self) -> int:
    return self.config.model.latent_dim

  @property
  def conditional(self) -> bool:
    return self._run.condition_fn is not None

  # --------------------------------------------------------------------------- networks

  def _encode_fn(self, params: _types.Params, x: jax.Array, condition: jax.Array | None) -> tuple[jax.Array, ...]:
    encoder, _ = _models.bind_vae(self.vae, params, condition)
    return encoder(x)

  def _decode_fn(self, params: _types.Params, z: jax.Array, condition: jax.Array | None) -> jax.Array:
    _, decoder = _models.bind_vae(self.vae, params, condition)
    return _models.mean_image(self._likelihood, decoder(z))

  def _checked(self, x: jax.typing.ArrayLike, condition: Any) -> jax.Array:
    x = jnp.asarray(x, jnp.float32)
    if x.ndim != 1 + len(self._run.event_shape) or x.shape[1:] != self._run.event_shape:
      raise ValueError(f'`x` must be images [B, *{self._run.event_shape}] in [0, 1]; got shape {x.shape}.')
    self._check_condition(condition, len(x))
    return x

  def _check_condition(self, condition: Any, batch: int) -> None:
    if self.conditional and condition is None:
      raise ValueError(
        f'this model is conditioned on {self.config.objective.condition!r}: pass `condition` '
        '(e.g. model.condition(x, label=...)).'
      )
    if not self.conditional and condition is not None:
      raise ValueError('this model is unconditional; `condition` must be None.')
    if condition is not None and len(condition) != batch:
      raise ValueError(f'`condition` must have one row per example ({batch}); got shape {np.shape(condition)}.')

  def condition(
    self, x: jax.typing.ArrayLike, *, label: jax.typing.ArrayLike | None = None, key: jax.Array | None = None
  ) -> jax.Array:
    """The condition of images `x [B, H, W, C]` as training made it: one-hot `label [B]`, a masked `x`, its edges.

    Args:
      x: images in [0, 1].
      label: int class labels `[B]`, for a label-conditioned model.
      key: PRNG key of the hidden quadrants of an inpainting model (default: key 0).

    Raises:
      ValueError: for an unconditional model, or a label condition without `label`.
    """
    if not self.conditional:
      raise ValueError('this model is unconditional; it takes no condition.')
    if self.config.objective.condition == 'label' and label is None:
      raise ValueError('this model is conditioned on the class label: pass `label` [B] (ints).')
    x = jnp.asarray(x, jnp.float32)
    batch = {} if label is None else {'label': jnp.asarray(label, jnp.int32)}
    return self._run.condition(x, batch, jax.random.key(0) if key is None else key)

  def encode(self, x: jax.typing.ArrayLike, condition: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """The posterior q(z|x) = N(loc, exp(log_var)) of images `x [B, H, W, C]`: `(loc, log_var)`, each `[B, D]`."""
    loc, log_var = self._encode(self.params, self._checked(x, condition), condition)
    return loc, log_var

  def decode(self, z: jax.typing.ArrayLike, condition: jax.Array | None = None) -> jax.Array:
    """The decoder's mean image E[x|z] `[N, H, W, C]` in [0, 1] of latents `z [N, D]`."""
    z = jnp.asarray(z, jnp.float32)
    if z.ndim != 2 or z.shape[1] != self.latent_dim:
      raise ValueError(f'`z` must be latents [N, {self.latent_dim}]; got shape {z.shape}.')
    self._check_condition(condition, len(z))
    return self._decode(self.params, z, condition)

  def sample(self, key: jax.Array, num_samples: int, condition: jax.Array | None = None) -> jax.Array:
    """Mean images `[num_samples, H, W, C]` of `num_samples` draws z ~ N(0, I) (for `condition [num_samples, ...]`)."""
    if not isinstance(num_samples, int) or num_samples < 1:
      raise ValueError(f'`num_samples` must be an int >= 1; got {num_samples!r}.')
    return self.decode(jax.random.normal(key, (num_samples, self.latent_dim)), condition)

  def reconstruct(self, x: jax.typing.ArrayLike, condition: jax.Array | None = None) -> jax.Array:
    """The decoder's mean image at the posterior mean of each image `x [B, H, W, C]`: `[B, H, W, C]`."""
    loc, _ = self.encode(x, condition)
    return self.decode(loc, condition)

  def interpolate(
    self,
    x_a: jax.typing.ArrayLike,
    x_b: jax.typing.ArrayLike,
    *,
    num: int = 8,
    condition: jax.Array | None = None,
  ) -> jax.Array:
    """Mean images along the straight line between the posterior means of `x_a` and `x_b`, ends included.

    Args:
      x_a, x_b: images `[B, H, W, C]` (or one image each, `[H, W, C]`).
      num: points on each line, >= 2.
      condition: `[B, ...]`, used at both ends, for a conditional model.

    Returns:
      `[B, num, H, W, C]` (`[num, H, W, C]` for single images): row i goes from
      the reconstruction of `x_a[i]` to that of `x_b[i]`.
    """
    if not isinstance(num, int) or num < 2:
      raise ValueError(f'`num` must be an int >= 2; got {num!r}.')
    single = np.ndim(x_a) == len(self._run.event_shape)
    x_a, x_b = (jnp.asarray(x, jnp.float32)[None] if single else x for x in (x_a, x_b))
    if np.shape(x_a) != np.shape(x_b):
      raise ValueError(f'`x_a` and `x_b` must have the same shape; got {np.shape(x_a)} and {np.shape(x_b)}.')
    loc_a, _ = self.encode(x_a, condition)
    loc_b, _ = self.encode(x_b, condition)
    t = jnp.linspace(0.0, 1.0, num)[None, :, None]  # [1, num, 1]
    z = (1 - t) * loc_a[:, None] + t * loc_b[:, None]  # [B, num, D]
    repeated = None if condition is None else jnp.repeat(condition, num, axis=0)
    images = self.decode(z.reshape(-1, self.latent_dim), repeated).reshape(len(loc_a), num, *self._run.event_shape)
    return images[0] if single else images

  # --------------------------------------------------------------------------- bounds

  def bounds(
    self,
    x: jax.typing.ArrayLike,
    *,
    key: jax.Array,
    num_samples: int | Sequence[int] = 1000,
    elbo_num_samples: int = 1,
    condition: jax.Array | None = None,
  ) -> _dataset_bounds.BoundsSummary:
    """The ELBO and the importance-weighted bound of images `x [B, H, W, C]`, split over every device.

    As `eval.py` computes them (`jaxvae.evaluate_bounds`), without its
    binarisation: `x` is taken as it is, e.g. already binary digits.

    Args:
      x: images in the likelihood's domain.
      key: PRNG key.
      num_samples: K of the IWAE bound, or several K from shared samples.
      elbo_num_samples: latent samples per example for the ELBO's reconstruction term.
      condition: `[B, ...]` for a conditional model.

    Returns:
      A `BoundsSummary` in nats per example (`.elbo`, `.iwae[K]`, `.nll`,
      `.nll_bits_per_dim`, ...); a deterministic model (autoencoder, WAE) has
      only `.reconstruction`, log p(x | z = encoder mean).
    """
    x = self._checked(x, condition)
    ks = _dataset_bounds.as_ks(num_samples)
    if (elbo_num_samples, ks) not in self._bounds_fns:
      self._bounds_fns[elbo_num_samples, ks] = _dataset_bounds.make_bounds_fn(
        functools.partial(_models.bind_vae, self.vae),
        log_likelihood=self._run.log_likelihood,
        elbo_num_samples=elbo_num_samples,
        iwae_num_samples=ks,
        iwae_chunk_size=self.config.eval.iwae_chunk_size,
        mesh=self._run.mesh,
        condition_fn=None if condition is None else lambda x, batch, key: batch['condition'],
        scored_mask_fn=self._run.scored_mask,
        deterministic=self.config.objective.name in _family.DETERMINISTIC,
      )
    batch = {'image': np.asarray(x)}
    if condition is not None:
      batch['condition'] = np.asarray(condition)
    values = _dataset_bounds.per_example_bounds(
      [batch], self._bounds_fns[elbo_num_samples, ks], self.params, key=key, mesh=self._run.mesh
    )
    return self._run.summarize(values)
