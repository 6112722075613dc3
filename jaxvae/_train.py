"""Training: the jit-compiled train step, driven by the `train.py` loop."""

from __future__ import annotations

import functools
import pathlib
import sys
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from jaxvae import (
  _checkpoint,
  _data,
  _dataset_bounds,
  _family,
  _log_writer,
  _models,
  _parallel,
  _pictures,
  _run,
  _types,
)


def make_train_step(run: _run.Run) -> Callable[[_run.TrainState, _types.Batch], tuple[_run.TrainState, _types.Metrics]]:
  """The jit-compiled step `(state, batch) -> (state, metrics)`, data-parallel over `run.mesh`; it donates `state`.

  `batch['image']` `[B, H, W, C]` arrives as stored (uint8), split along the
  mesh's `data` axis, and is scaled, binarised or dequantised inside the step
  as `config.data` says. The state is replicated; the loss is the mean over
  the global batch, so its gradient (all-reduced by XLA) is exactly that of
  one device on the whole batch. Metrics come back replicated, on device.
  """
  config, vae, tx = run.config, run.vae, run.optimizer
  dataset_size = run.dataset.splits[config.data.train_split]

  def train_step(state: _run.TrainState, batch: _types.Batch) -> tuple[_run.TrainState, _types.Metrics]:
    data_key, latent_key = jax.random.split(jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step))
    x = _data.prepare_images(data_key, batch['image'], data=config.data, max_value=run.dataset.max_value)
    condition = run.condition(x, batch, jax.random.fold_in(data_key, 1))
    discriminator = None
    if run.discriminator is not None:
      discriminator = functools.partial(run.discriminator[0].apply, state.discriminator['params'])

    def loss_fn(params: _types.Params) -> tuple[jax.Array, tuple[_types.Metrics, jax.Array]]:
      encoder, decoder = _models.bind_vae(vae, params, condition)
      loss, metrics, z = _family.family_loss(
        config.objective,
        x,
        encoder=encoder,
        decoder=decoder,
        log_likelihood=run.log_likelihood,
        key=latent_key,
        step=state.step,
        num_samples=config.train.num_samples,
        dataset_size=dataset_size,
        discriminator=discriminator,
      )
      return loss, (metrics, z)

    (loss, (objective_metrics, z)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    grad_norm = optax.tree.norm(grads)

    def update(params: _types.Params, opt_state: optax.OptState) -> tuple[_types.Params, optax.OptState]:
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state

    finite = jnp.isfinite(grad_norm)  # false if any gradient is inf or NaN
    params, opt_state = jax.lax.cond(finite, update, lambda *kept: kept, state.params, state.opt_state)
    metrics = {
      'train_loss': loss,
      **objective_metrics,
      'train_grad_norm': grad_norm,
      'train_skipped_updates': 1.0 - finite.astype(jnp.float32),  # its mean: the fraction skipped
    }
    discriminator_state = state.discriminator
    if run.discriminator is not None:
      discriminator_state, discriminator_metrics = _family.discriminator_step(
        *run.discriminator, state.discriminator, z, jax.random.fold_in(latent_key, 1)
      )
      metrics.update(discriminator_metrics)
    state = state.replace(step=state.step + 1, params=params, opt_state=opt_state, discriminator=discriminator_state)
    return state, metrics

  replicated = _parallel.replicated(run.mesh)
  return jax.jit(
    train_step,
    in_shardings=(replicated, _parallel.batch_sharded(run.mesh)),
    out_shardings=(replicated, replicated),
    donate_argnums=0,
  )


def train_and_evaluate(config: _types.Config, workdir: str | pathlib.Path, *, source: Any = None) -> _run.TrainState:
  """Trains from `config` in `workdir`, resuming from its latest checkpoint if there is one.

  Writes `workdir/config.json`, checkpoints under `workdir/checkpoints`,
  `metrics.jsonl` and TensorBoard events, and at the end `samples.png` and
  `reconstructions.png`. Logs the test-set ELBO at every checkpoint.

  Returns:
    The final `TrainState`.

  `source` is a user's random-access source for `config.data.dataset='source'`:
  `len()` and batched reads (`read(indices)`, `__getitems__(indices)` or
  `source[indices]`) returning the built-in sources' dict (`'image'` uint8
  `[N, H, W, C]`, optional `'label'` `[N]` and `'factors'` `[N, F]`); or a
  mapping of split names to such sources. One source is split into 'train' and
  'test' by a hash of each index (`config.data.test_fraction`).

  Raises:
    ValueError: for a bad config, or one that differs from the run in `workdir`.
    FloatingPointError: if the training loss becomes non-finite.
  """
  run = _run.Run(config, source=source)
  _parallel.check_batch_size(config.train.batch_size, run.mesh)
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  batches = run.train_batches()
  test_data = run.eval_batches()
  manager = _checkpoint.open_manager(workdir, config=config)
  state = run.restore_or_init(manager, workdir, batches)
  first_step, num_steps = int(state.step), config.train.num_train_steps
  if jax.process_index() == 0:
    (workdir / 'config.json').write_text(config.to_json(indent=2) + '\n', encoding='utf-8')
  train_step = make_train_step(run)
  test_bounds = run.bounds_fn(elbo_num_samples=1)
  writer = _log_writer.LogWriter(workdir)
  progress = tqdm.tqdm(
    total=num_steps,
    initial=first_step,
    desc='train',
    unit='step',
    dynamic_ncols=True,
    mininterval=0.5 if sys.stderr.isatty() else 30.0,
    disable=jax.process_index() != 0,
  )
  pending: list[_types.Metrics] = []  # device metrics since the last log line; fetched only when logged
  last_logged = first_step
  try:
    for step in range(first_step + 1, num_steps + 1):
      state, metrics = train_step(state, _parallel.global_batch(next(batches), run.mesh))
      pending.append(metrics)
      progress.update(1)
      is_last = step == num_steps
      checkpoint_due = step % config.train.checkpoint_every == 0 or is_last
      if step % config.train.log_every == 0 or checkpoint_due:
        scalars = _mean_metrics(pending, first=last_logged + 1, last=step)
        pending, last_logged = [], step
        scalars['train_param_norm'] = float(optax.tree.norm(state.params))
        if checkpoint_due:
          scalars.update(_test_elbo(run, test_bounds, state.params, test_data, step))
        writer.write_scalars(step, scalars)
        progress.set_postfix(loss=f'{scalars["train_loss"]:.2f}', refresh=False)
      if checkpoint_due:
        _checkpoint.save(manager, step, state, config, data_iterator=batches, force=is_last)
    manager.wait_until_finished()
    if jax.process_index() == 0:
      _write_grids(run, state, test_data, writer, workdir)
  finally:
    progress.close()
    writer.close()
    manager.close()
  return state


def _mean_metrics(pending: list[_types.Metrics], *, first: int, last: int) -> dict[str, float]:
  """Averages the metrics of steps `first..last` on the host; raises if the loss was not finite."""
  stacked = {name: jnp.stack([m[name] for m in pending]) for name in pending[0]}
  means = {name: float(np.mean(values)) for name, values in jax.device_get(stacked).items()}
  if not np.isfinite(means['train_loss']):
    raise FloatingPointError(
      f'the training loss became non-finite between steps {first} and {last}; the last checkpoint '
      'before that is kept. Lower config.optim.learning_rate or set config.optim.grad_clip_norm, '
      "and check the data lie in the likelihood's domain."
    )
  return means


def _test_elbo(
  run: _run.Run, test_bounds: _dataset_bounds.BoundsFn, params: _types.Params, test_data: _data.EvalBatches, step: int
) -> dict[str, float]:
  """The test-set ELBO and KL, or for a deterministic model its reconstruction log-likelihood, in nats."""
  key = jax.random.fold_in(jax.random.key(run.config.eval.seed), step)
  values = _dataset_bounds.per_example_bounds(
    test_data, test_bounds, params, key=key, mesh=run.mesh, batch_size=test_data.batch_size
  )
  if 'elbo' not in values:
    return {'eval_reconstruction': float(values['reconstruction'].mean())}
  return {'eval_elbo': float(values['elbo'].mean()), 'eval_kl': float(values['kl'].mean())}


def _write_grids(
  run: _run.Run, state: _run.TrainState, test_data: _data.EvalBatches, writer: _log_writer.LogWriter, workdir
) -> None:
  """`samples.png` and `reconstructions.png` from the first test examples (their conditions, if conditional)."""
  rows = run.config.eval.num_image_rows
  batches = []
  for batch in test_data:
    batches.append(batch)
    if sum(len(b['index']) for b in batches) >= rows * rows:
      break
  first = {name: np.concatenate([b[name] for b in batches])[: rows * rows] for name in batches[0]}
  inputs = jax.jit(run.prepare_eval)(first)
  key = jax.random.key(run.config.eval.seed)
  grids = _pictures.sample_and_reconstruction_grids(
    vae=run.vae,
    # Process 0 alone draws the pictures, so on its own copy of the replicated parameters.
    params=_parallel.local_copy(state.params),
    likelihood=run.config.model.likelihood,
    inputs=inputs,
    condition=run.condition(inputs, first, jax.random.fold_in(key, 1)),
    key=key,
    columns=rows,
  )
  for name, grid in grids.items():
    _pictures.save_png(pathlib.Path(workdir) / f'{name}.png', grid)
    writer.write_image(int(state.step), name, grid)
