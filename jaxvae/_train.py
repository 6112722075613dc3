"""Training: the jit-compiled train step, driven by the `train.py` loop."""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import pathlib
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm
from jax.experimental import multihost_utils

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
  _workdir,
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
    scored = run.scored_mask(condition)
    log_likelihood = run.log_likelihood if scored is None else functools.partial(run.log_likelihood, mask=scored)
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
        log_likelihood=log_likelihood,
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


# A run stops when more than half of the updates of the last this many steps were
# skipped for non-finite gradients: it no longer learns.
SKIPPED_UPDATES_WINDOW = 20


class Preempted(Exception):  # noqa: N818 (an event, not an error)
  """Training stopped on SIGTERM (preemption) or SIGINT (Ctrl-C) after saving a checkpoint of `step`."""

  def __init__(self, step: int, signum: int):
    self.step, self.signum = step, signum
    what = 'interrupted' if signum == signal.SIGINT else 'preempted'
    super().__init__(f'{what} at step {step}: checkpoint saved; rerun the same command to resume')


class _StopSignals:
  """SIGTERM and SIGINT, turned into a request to stop at the next step, which every process agrees on.

  One process: Python handlers set a flag. Several: JAX's preemption service
  (which handles SIGTERM itself) tells every process, and
  `reached_preemption_sync_point` names the same step on all; a SIGINT is
  passed on to it as a SIGTERM. A second signal acts at once (the handlers
  in place before are back).
  """

  def __init__(self):
    self.signum: int | None = None
    self._previous: dict[int, object] = {}
    self._multiprocess = jax.process_count() > 1

  def __enter__(self) -> _StopSignals:
    if threading.current_thread() is threading.main_thread():
      for signum in (signal.SIGINT,) if self._multiprocess else (signal.SIGTERM, signal.SIGINT):
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc_info) -> None:
    self._restore()

  def _restore(self) -> None:
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous = {}

  def _handle(self, signum: int, frame) -> None:
    del frame
    self.signum = signum
    self._restore()
    if self._multiprocess:
      signal.raise_signal(signal.SIGTERM)  # to JAX's preemption notifier, which tells every process

  def reached(self, step: int) -> bool:
    """Whether to save and stop after `step` (a collective decision on several processes: call it every step)."""
    if self._multiprocess:
      return multihost_utils.reached_preemption_sync_point(step)
    return self.signum is not None


def train_and_evaluate(config: _types.Config, workdir: str | pathlib.Path, *, source: Any = None) -> _run.TrainState:
  """Trains from `config` in `workdir`, resuming from its newest intact checkpoint if there is one.

  Writes `workdir/config.json`, checkpoints under `workdir/checkpoints`,
  `metrics.jsonl` and TensorBoard events, and at the end `samples.png` and
  `reconstructions.png`. Logs the test-set ELBO at every checkpoint. Holds
  the workdir's lock meanwhile. On SIGTERM or SIGINT it saves the current
  step and raises `Preempted`. It never checkpoints a non-finite state.

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
    WorkdirInUseError: if another trainer is running in `workdir`.
    FloatingPointError: if the training loss, the test bound or the state
      becomes non-finite, or most updates are skipped for non-finite
      gradients; the message names the checkpoint that is kept.
    NoIntactCheckpointError: if `workdir` has checkpoints but none is intact.
    Preempted: on SIGTERM or SIGINT, after saving the current step.
  """
  run = _run.Run(config, source=source)
  _parallel.check_batch_size(config.train.batch_size, run.mesh)
  with _workdir.lock(workdir) as workdir, _StopSignals() as signals:
    _workdir.check_owner(workdir, config)
    return _train_loop(run, workdir, signals)


def _train_loop(run: _run.Run, workdir: pathlib.Path, signals: _StopSignals) -> _run.TrainState:
  config = run.config
  batches = run.train_batches()
  test_data = run.eval_batches()
  manager = _checkpoint.open_manager(workdir, config=config)
  try:
    state = run.restore_or_init(manager, workdir, batches)
  except BaseException:
    manager.close()
    raise
  first_step, num_steps = int(state.step), config.train.num_train_steps
  if jax.process_index() == 0:
    (workdir / 'config.json').write_text(config.to_json(indent=2) + '\n', encoding='utf-8')
  train_step = make_train_step(run)
  test_bounds = run.bounds_fn(elbo_num_samples=1)
  writer = _log_writer.LogWriter(workdir, resume_step=first_step)
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
  skipped = collections.deque(maxlen=SKIPPED_UPDATES_WINDOW)  # 1.0 per step whose update was skipped
  last_logged = first_step
  kept = [manager.latest_step()]  # the newest checkpoint, for the peer watch's message

  def describe_loss() -> str:
    if kept[0] is None:
      return 'No checkpoint was saved: the run starts afresh when every process is rerun.'
    return f'The steps after the checkpoint at step {kept[0]} are lost; rerun every process to resume from it.'

  watch = _parallel.PeerWatch(describe_loss=describe_loss)
  painter = _GridPainter(run, writer, workdir)
  try:
    watch.start()
    for step in range(first_step + 1, num_steps + 1):
      batch = next(batches)
      _check_finite_batch(batch, step)
      features = {name: value for name, value in batch.items() if name != 'index'}  # the model's only
      state, metrics = train_step(state, _parallel.global_batch(features, run.mesh))
      pending.append(metrics)
      progress.update(1)
      is_last = step == num_steps
      checkpoint_due = step % config.train.checkpoint_every == 0 or is_last
      if step % config.train.log_every == 0 or checkpoint_due:
        scalars = _mean_metrics(pending, first=last_logged + 1, last=step, manager=manager, skipped=skipped)
        pending, last_logged = [], step
        scalars['train_param_norm'] = float(optax.tree.norm(state.params))
        if checkpoint_due:
          scalars.update(_test_elbo(run, test_bounds, state.params, test_data, step))
          _check_finite_test_bound(scalars, step, manager)
        writer.write_scalars(step, scalars)
        progress.set_postfix(loss=f'{scalars["train_loss"]:.2f}', refresh=False)
      if config.train.image_every and step % config.train.image_every == 0 and not is_last:
        painter.paint(step, state.params)
      saved = checkpoint_due and _checkpoint.save(manager, step, state, config, data_iterator=batches, force=is_last)
      if signals.reached(step):
        if not saved:
          _checkpoint.save(manager, step, state, config, data_iterator=batches, force=True)
        manager.wait_until_finished()
        raise Preempted(step, signals.signum or signal.SIGTERM)
      if saved:
        kept[0] = step  # (a save in flight when a process dies may not be complete; the rerun checks)
    manager.wait_until_finished()
    watch.stop()
    painter.paint(num_steps, state.params, wait=True)
  except jax.errors.JaxRuntimeError:
    # A collective failed: most likely another process died. Rather than a traceback now and a C++ abort when JAX
    # shuts down, let the watch name the lost process in one line (it ends this one).
    watch.await_verdict()
    raise
  finally:
    watch.stop()
    painter.close()
    progress.close()
    writer.close()
    manager.close()
  return state


def _check_finite_batch(batch: _types.Batch, step: int) -> None:
  """Raises ValueError naming the example if a floating-point training image holds an inf or a NaN."""
  image = np.asarray(batch['image'])
  if not np.issubdtype(image.dtype, np.floating):
    return  # integer pixels are always finite
  finite = np.isfinite(image.reshape(len(image), -1)).all(axis=1)
  if not finite.all():
    row = int(np.flatnonzero(~finite)[0])
    index = batch['index'][row] if 'index' in batch else None
    example = f'example {int(index)}' if index is not None else f'row {row} of the batch'
    raise ValueError(
      f'the training data hold a non-finite pixel value (inf or NaN) in {example} of process '
      f"{jax.process_index()}'s batch for step {step}; fix or remove it from the dataset."
    )


def _check_finite_test_bound(scalars: dict[str, float], step: int, manager) -> None:
  """Raises FloatingPointError (the state is not saved) if the test bound at a checkpoint is non-finite."""
  bound = scalars.get('eval_elbo', scalars.get('eval_reconstruction'))
  if bound is not None and not np.isfinite(bound):
    raise FloatingPointError(
      f'the test-set bound at step {step} is {bound}; the state is not checkpointed. '
      f'{_checkpoint.kept_checkpoint_advice(manager)} {_ADVICE}'
    )


_ADVICE = (
  'To go on from the kept checkpoint, rerun with a lower --config.optim.learning_rate, another '
  '--config.optim.schedule or a --config.optim.grad_clip_norm; or start afresh in a new --workdir.'
)


def _mean_metrics(
  pending: list[_types.Metrics], *, first: int, last: int, manager, skipped: collections.deque
) -> dict[str, float]:
  """Averages the metrics of steps `first..last` on the host.

  Raises:
    FloatingPointError: if the loss was not finite, or more than half of the
      last `SKIPPED_UPDATES_WINDOW` updates were skipped.
  """
  stacked = {name: jnp.stack([m[name] for m in pending]) for name in pending[0]}
  host = jax.device_get(stacked)
  means = {name: float(np.mean(values)) for name, values in host.items()}
  if not np.isfinite(means['train_loss']):
    raise FloatingPointError(
      f'the training loss became non-finite between steps {first} and {last}. '
      f"{_checkpoint.kept_checkpoint_advice(manager)} {_ADVICE} Check the data lie in the likelihood's domain."
    )
  skipped.extend(np.asarray(host['train_skipped_updates']).tolist())
  if len(skipped) == skipped.maxlen and sum(skipped) > skipped.maxlen / 2:
    raise FloatingPointError(
      f'{int(sum(skipped))} of the last {skipped.maxlen} updates (to step {last}) were skipped for non-finite '
      f'gradients: the run no longer learns. {_checkpoint.kept_checkpoint_advice(manager)} {_ADVICE}'
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


class _GridPainter:
  """`samples.png` and `reconstructions.png` (and TensorBoard images) drawn on a background thread.

  `paint` copies the parameters on the devices (asynchronously: the step
  donates its state; on every process, as the copy is a computation over the
  global parameters) and returns at once; process 0 draws the grids from its
  own copy while training goes on. A request that arrives while the previous
  grids are still being drawn is dropped, so drawing never queues up.
  """

  def __init__(self, run: _run.Run, writer: _log_writer.LogWriter, workdir: pathlib.Path):
    self._run, self._writer, self._workdir = run, writer, workdir
    self._executor = None
    if jax.process_index() == 0:
      self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix='grids')
    self._drawing: concurrent.futures.Future | None = None

  def paint(self, step: int, params: _types.Params, *, wait: bool = False) -> None:
    """Draws the grids of `params` at `step`, unless the previous ones are still being drawn.

    With `wait`, waits for the previous grids, then for these (at the end of training).
    """
    copy = jax.tree.map(jnp.copy, params)
    if self._executor is None:
      return
    if wait and self._drawing is not None:
      self._drawing.result()
    if self._drawing is None or self._drawing.done():
      self._drawing = self._executor.submit(self._draw, step, copy)
    if wait:
      self._drawing.result()

  def close(self) -> None:
    """Stops the thread once the grids being drawn are done."""
    if self._executor is not None:
      self._executor.shutdown(wait=True)

  def _draw(self, step: int, params: _types.Params) -> None:
    run, rows = self._run, self._run.config.eval.num_image_rows
    sample = run.eval_sample(rows * rows)  # a spread sample of test examples
    inputs = jax.jit(run.prepare_eval)(sample)
    key = jax.random.key(run.config.eval.seed)
    grids = _pictures.sample_and_reconstruction_grids(
      vae=run.vae,
      params=_parallel.local_copy(params),  # process 0's own copy of the replicated parameters
      likelihood=run.config.model.likelihood,
      inputs=inputs,
      condition=run.condition(inputs, sample, jax.random.fold_in(key, 1)),
      key=key,
      columns=rows,
    )
    for name, grid in grids.items():
      _pictures.save_png(self._workdir / f'{name}.png', grid)
      self._writer.write_image(step, name, grid)
