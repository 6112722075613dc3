"""Checkpoints: an orbax `CheckpointManager` under `workdir/checkpoints`, with the run config in each.

Orbax writes each step to a temporary directory and renames it only when the
save is complete, so an interrupted save is never taken for a checkpoint. Each
checkpoint also holds a SHA-256 checksum of the state, verified on restore, so
bit rot is damage like a missing file; a restore walks back from the newest
checkpoint to the newest intact one. Only finite states are saved.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import pathlib
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from jaxvae import _parallel, _types


def checkpoint_dir(workdir: str | pathlib.Path) -> pathlib.Path:
  return pathlib.Path(workdir).absolute() / 'checkpoints'


def open_manager(
  workdir: str | pathlib.Path, *, config: _types.Config | None = None, read_only: bool = False
) -> ocp.CheckpointManager:
  """The checkpoint manager of `workdir`: a writer's, or a reader's that changes nothing on disk.

  Args:
    workdir: the run directory.
    config: the writer's run config: it saves every
      `config.train.checkpoint_every` steps, keeps the last
      `keep_checkpoints`, and deletes the temporary directories of saves a
      crash interrupted. Only the one trainer that holds the workdir's lock
      may open a writer.
    read_only: open a reader (`eval.py`, running beside a trainer): it never
      saves, deletes or cleans up anything, least of all the trainer's save in
      progress.

  Raises:
    ValueError: for a writer without `config`.
  """
  if read_only:
    options = ocp.CheckpointManagerOptions(read_only=True, create=False, enable_async_checkpointing=False)
  elif config is None:
    raise ValueError('open_manager needs the run config to open a writer; pass config=, or read_only=True.')
  else:
    options = ocp.CheckpointManagerOptions(
      max_to_keep=config.train.keep_checkpoints,
      save_decision_policy=ocp.checkpoint_managers.FixedIntervalPolicy(config.train.checkpoint_every),
      cleanup_tmp_directories=True,
    )
  return ocp.CheckpointManager(checkpoint_dir(workdir), options=options)


class NonFiniteStateError(FloatingPointError):
  """A state with inf or NaN values, which is never checkpointed."""


class NoIntactCheckpointError(FileNotFoundError):
  """Every checkpoint of a workdir is damaged."""


class MismatchError(ValueError):
  """An intact checkpoint that this run may not resume from (another model, process count...): not damage."""


@dataclasses.dataclass(frozen=True)
class Skipped:
  """A damaged checkpoint that a restore passed over."""

  step: int
  reason: str  # what was wrong, in one line


def state_checksum(state: Any) -> str:
  """The SHA-256 of a state's leaves (path, dtype, shape and bytes of each, in path order), as hex.

  Args:
    state: a pytree of arrays, replicated if on devices (this process's copy is hashed).

  Returns:
    64 hex digits, the same for equal states whatever their sharding or host.
  """
  digest = hashlib.sha256()
  leaves = jax.tree_util.tree_flatten_with_path(_parallel.local_copy(state))[0]
  for path, leaf in sorted(leaves, key=lambda item: jax.tree_util.keystr(item[0])):
    leaf = np.ascontiguousarray(leaf)
    digest.update(f'{jax.tree_util.keystr(path)}:{leaf.dtype.str}:{leaf.shape};'.encode())
    digest.update(leaf.tobytes())
  return digest.hexdigest()


def non_finite_leaves(state: Any) -> list[str]:
  """The paths of the state's floating-point leaves holding an inf or a NaN (this process's copy)."""
  leaves = jax.tree_util.tree_flatten_with_path(_parallel.local_copy(state))[0]
  return [
    jax.tree_util.keystr(path)
    for path, leaf in leaves
    if np.issubdtype(leaf.dtype, np.floating) and not np.isfinite(leaf).all()
  ]


def save(
  manager: ocp.CheckpointManager,
  step: int,
  state: Any,
  config: _types.Config,
  *,
  data_iterator: Any,
  force: bool = False,
) -> bool:
  """Saves `state`, its checksum, the config and the input pipeline's position at `step` if due (or `force`).

  The save is asynchronous; a previous save in flight is finished first.

  Returns:
    Whether it saved.

  Raises:
    NonFiniteStateError: if a parameter or optimiser value is inf or NaN (the
      state is not saved, so the checkpoints on disk stay good).
  """
  import grain  # pylint: disable=import-outside-toplevel

  if not (force or manager.should_save(step)):
    return False
  bad = non_finite_leaves(state)
  if bad:
    raise NonFiniteStateError(
      f'the state at step {step} has non-finite values in {", ".join(bad[:3])}{", ..." if len(bad) > 3 else ""}; '
      f'it is not checkpointed. {kept_checkpoint_advice(manager)}'
    )
  args = ocp.args.Composite(
    state=ocp.args.StandardSave(state),
    checksum=ocp.args.JsonSave({'state_sha256': state_checksum(state)}),
    config=ocp.args.JsonSave(config.to_dict()),
    data_iterator=grain.checkpoint.CheckpointSave(data_iterator),
  )
  return manager.save(step, args=args, force=True)


def kept_checkpoint_advice(manager: ocp.CheckpointManager) -> str:
  """A sentence naming the newest checkpoint that is kept, or saying there is none."""
  step = manager.latest_step()
  if step is None:
    return 'No checkpoint was saved before; rerunning starts afresh.'
  return f'The checkpoint at step {step} in {manager.directory} is kept; a rerun resumes from it.'


def restore_state(manager: ocp.CheckpointManager, step: int, abstract_state: Any, *, data_iterator: Any = None) -> Any:
  """Restores the state saved at `step` into the structure of `abstract_state` (e.g. from `jax.eval_shape`).

  With `data_iterator`, also moves that grain iterator to the position saved
  with the state.

  Raises:
    ValueError: if the restored state's checksum differs from the one saved
      with it (silent corruption), or it holds inf or NaN, or the step's
      metadata is not JSON. A damaged checkpoint raises whatever reading it
      raises.
  """
  import grain  # pylint: disable=import-outside-toplevel

  # Orbax reads past a garbled step metadata file with an error log; a checkpoint with one is damaged.
  json.loads((pathlib.Path(manager.directory) / str(step) / '_CHECKPOINT_METADATA').read_text(encoding='utf-8'))
  items = {'state': ocp.args.StandardRestore(abstract_state), 'checksum': ocp.args.JsonRestore()}
  if data_iterator is not None:
    items['data_iterator'] = grain.checkpoint.CheckpointRestore(data_iterator)
  restored = manager.restore(step, args=ocp.args.Composite(**items))
  saved = (restored['checksum'] or {}).get('state_sha256')
  if saved != state_checksum(restored['state']):
    raise ValueError(f'checksum mismatch: the state read back differs from the one saved (sha256 {saved})')
  bad = non_finite_leaves(restored['state'])
  if bad:
    raise ValueError(f'non-finite values in {", ".join(bad[:3])}')
  return restored['state']


_RELIST_ROUNDS = 3


def restore_latest_intact(
  workdir: str | pathlib.Path,
  restore: Callable[[int], Any],
  *,
  steps: list[int] | None = None,
) -> tuple[int, Any, list[Skipped]]:
  """`restore(step)` of the newest checkpoint that restores, walking back past damaged ones.

  Each damaged checkpoint passed over is logged as a warning (step and reason)
  and returned.

  Args:
    workdir: the run directory.
    restore: reads one checkpoint; any exception it raises but a
      `MismatchError` marks the checkpoint damaged.
    steps: the steps to try (default: every step directory of `workdir`).

  Returns:
    `(step, restored, skipped)`.

  Raises:
    NoIntactCheckpointError: if there is no checkpoint, or every one is damaged.
    MismatchError: whatever `restore` raises of it.
  """
  fixed, skipped, tried = steps is not None, [], set()
  # A trainer may save new checkpoints, and delete old ones, while a reader walks back: when every listed step
  # has failed, the steps saved meanwhile are tried too (a few rounds).
  for _ in range(_RELIST_ROUNDS):
    candidates = sorted(set(steps if fixed else checkpoint_steps(workdir)) - tried, reverse=True)
    if not candidates:
      break
    for step in candidates:
      tried.add(step)
      try:
        restored = restore(step)
      except MismatchError:
        raise
      except Exception as error:  # noqa: BLE001 (whatever reading a damaged checkpoint raises)
        skipped.append(Skipped(step, _one_line(error)))
        logging.warning('skipped the damaged checkpoint at step %d in %s: %s', step, workdir, skipped[-1].reason)
        continue
      return step, restored, skipped
  raise NoIntactCheckpointError(_no_checkpoint_message(workdir, skipped))


def _one_line(error: BaseException) -> str:
  text = ' '.join(str(error).split()) or type(error).__name__
  return f'{type(error).__name__}: {text[:300]}'


def _no_checkpoint_message(workdir: str | pathlib.Path, skipped: list[Skipped]) -> str:
  directory = checkpoint_dir(workdir)
  if not skipped:
    return (
      f'no checkpoint in {directory}: train first, e.g. '
      f'`python train.py --config configs/default.py --workdir {pathlib.Path(workdir)}`.'
    )
  listed = '; '.join(f'step {s.step}: {s.reason}' for s in skipped)
  return f'no intact checkpoint in {directory} ({listed}). Start afresh in a new --workdir.'


def set_aside(steps: list[int], workdir: str | pathlib.Path) -> pathlib.Path:
  """Moves the step directories of damaged checkpoints to `workdir/damaged_checkpoints/` (process 0; all wait).

  Only the trainer holding the workdir's lock may call this.

  Returns:
    The directory they were moved to.
  """
  target = pathlib.Path(workdir).absolute() / 'damaged_checkpoints'
  if jax.process_index() == 0:
    target.mkdir(exist_ok=True)
    for step in steps:
      destination = target / str(step)
      suffix = 0
      while destination.exists():
        suffix += 1
        destination = target / f'{step}.{suffix}'
      (checkpoint_dir(workdir) / str(step)).rename(destination)
      logging.warning('moved the damaged checkpoint at step %d to %s', step, destination)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices('jaxvae_set_aside_damaged_checkpoints')
  return target


def checkpoint_steps(workdir: str | pathlib.Path) -> list[int]:
  """The steps of `workdir`'s step directories, complete or not (temporary directories excluded), ascending."""
  directory = checkpoint_dir(workdir)
  return sorted(int(p.name) for p in directory.glob('*') if p.name.isdigit()) if directory.is_dir() else []


def stored_config(workdir: str | pathlib.Path, step: int) -> _types.Config:
  """The run config saved with the checkpoint at `step`.

  Raises:
    OSError, ValueError: if it is missing or unreadable (a damaged checkpoint).
  """
  config_file = checkpoint_dir(workdir) / str(step) / 'config' / 'metadata'
  return config_from_json(config_file.read_text(encoding='utf-8'))


def latest_run(workdir: str | pathlib.Path) -> tuple[int, _types.Config]:
  """The newest checkpoint whose config reads back, and that config; damaged ones are logged and passed over.

  Raises:
    NoIntactCheckpointError: (a FileNotFoundError) if `workdir` holds no
      checkpoint with a readable config.
  """
  step, config, _ = restore_latest_intact(workdir, lambda step: stored_config(workdir, step))
  return step, config


def config_from_json(text: str) -> _types.Config:
  """A ConfigDict from its JSON, with JSON lists turned back into the tuples configs use."""

  def tuples(value: Any) -> Any:
    if isinstance(value, dict):
      return {k: tuples(v) for k, v in value.items()}
    if isinstance(value, list):
      return tuple(tuples(v) for v in value)
    return value

  return _types.Config(tuples(json.loads(text)))


def check_process_layout(workdir: Any, step: int) -> None:
  """Checks that the checkpoint at `step` was saved by as many processes as run now.

  Each process saves its input pipeline's position, and its shard of the data
  depends on the number of processes.

  Raises:
    MismatchError: if it was saved by another number of processes.
    FileNotFoundError: if it holds no input position at all (a damaged checkpoint).
  """
  positions = checkpoint_dir(workdir) / str(step) / 'data_iterator'
  expected = positions / f'process_{jax.process_index()}-of-{jax.process_count()}.json'
  if not expected.exists():
    saved = sorted(path.name for path in positions.glob('process_*.json'))
    if not saved:
      raise FileNotFoundError(f'no input pipeline position in {positions}')
    raise MismatchError(
      f'the checkpoint at step {step} in {workdir} was saved by a different number of processes ({", ".join(saved)}) '
      f'than the {jax.process_count()} running now; resume with the same number of processes.'
    )
