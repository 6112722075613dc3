"""Checkpoints: an orbax `CheckpointManager` under `workdir/checkpoints`, with the run config in each.

Orbax writes each step to a temporary directory and renames it only when the
save is complete, so an interrupted save is never taken for a checkpoint.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

from jaxvae import _config

# Fields that may change when a run is resumed: how long it runs, how often it
# logs and saves, and how it is evaluated. Anything else would make the
# restored state mean something different.
_RESUMABLE_CHANGES = (
  'data.data_dir',
  'data.read_threads',
  'train.num_train_steps',
  'train.log_every',
  'train.checkpoint_every',
  'train.keep_checkpoints',
  'eval.',
)


def checkpoint_dir(workdir: str | pathlib.Path) -> pathlib.Path:
  return pathlib.Path(workdir).absolute() / 'checkpoints'


def open_manager(workdir: str | pathlib.Path, *, config: ml_collections.ConfigDict) -> ocp.CheckpointManager:
  """A manager saving every `config.train.checkpoint_every` steps, keeping the last `keep_checkpoints`."""
  options = ocp.CheckpointManagerOptions(
    max_to_keep=config.train.keep_checkpoints,
    save_decision_policy=ocp.checkpoint_managers.FixedIntervalPolicy(config.train.checkpoint_every),
    cleanup_tmp_directories=True,
  )
  return ocp.CheckpointManager(checkpoint_dir(workdir), options=options)


def save(
  manager: ocp.CheckpointManager,
  step: int,
  state: Any,
  config: ml_collections.ConfigDict,
  *,
  data_iterator: Any,
  force: bool = False,
) -> bool:
  """Saves `state`, the config and the input pipeline's position at `step` if the interval (or `force`) says so.

  Returns:
    Whether it saved.
  """
  import grain  # pylint: disable=import-outside-toplevel

  args = ocp.args.Composite(
    state=ocp.args.StandardSave(state),
    config=ocp.args.JsonSave(config.to_dict()),
    data_iterator=grain.checkpoint.CheckpointSave(data_iterator),
  )
  return manager.save(step, args=args, force=force)


def restore_state(manager: ocp.CheckpointManager, step: int, abstract_state: Any, *, data_iterator: Any = None) -> Any:
  """Restores the state saved at `step` into the structure of `abstract_state` (e.g. from `jax.eval_shape`).

  With `data_iterator`, also moves that grain iterator to the position saved
  with the state.
  """
  import grain  # pylint: disable=import-outside-toplevel

  items = {'state': ocp.args.StandardRestore(abstract_state)}
  if data_iterator is not None:
    items['data_iterator'] = grain.checkpoint.CheckpointRestore(data_iterator)
  return manager.restore(step, args=ocp.args.Composite(**items))['state']


def latest_run(workdir: str | pathlib.Path) -> tuple[int, ml_collections.ConfigDict]:
  """The latest complete checkpoint's step and the config stored with it.

  Raises:
    FileNotFoundError: if `workdir` holds no complete checkpoint.
  """
  directory = checkpoint_dir(workdir)
  steps = sorted(int(p.name) for p in directory.glob('*') if p.name.isdigit()) if directory.is_dir() else []
  if not steps:
    raise FileNotFoundError(
      f'no checkpoint in {directory}: train first, e.g. '
      f'`python train.py --config configs/default.py --workdir {pathlib.Path(workdir)}`.'
    )
  config_file = directory / str(steps[-1]) / 'config' / 'metadata'
  return steps[-1], config_from_json(config_file.read_text(encoding='utf-8'))


def config_from_json(text: str) -> ml_collections.ConfigDict:
  """A ConfigDict from its JSON, with JSON lists turned back into the tuples configs use."""

  def tuples(value: Any) -> Any:
    if isinstance(value, dict):
      return {k: tuples(v) for k, v in value.items()}
    if isinstance(value, list):
      return tuple(tuples(v) for v in value)
    return value

  return ml_collections.ConfigDict(tuples(json.loads(text)))


def check_resumable(stored: ml_collections.ConfigDict, config: ml_collections.ConfigDict, workdir: Any) -> None:
  """Raises ValueError if `config` changes a field that a resumed run must keep."""
  stored_flat, flat = _config.flatten(stored.to_dict()), _config.flatten(config.to_dict())
  for path in sorted(set(stored_flat) | set(flat)):
    # The cosine schedules are functions of the run's length: lengthening it would rescale the past.
    schedule_depends_on_length = path == 'train.num_train_steps' and flat.get('optim.schedule') in (
      'cosine',
      'warmup_cosine',
    )
    if path.startswith(_RESUMABLE_CHANGES) and path in stored_flat and path in flat and not schedule_depends_on_length:
      continue
    if stored_flat.get(path) != flat.get(path):
      raise ValueError(
        f'{workdir} holds a run with config.{path} = {stored_flat.get(path)!r}, but this run sets '
        f'{flat.get(path)!r}. Resume with the same setting, or start the new run in a fresh --workdir.'
      )


def check_process_layout(workdir: Any, step: int) -> None:
  """Raises ValueError unless the checkpoint at `step` was saved by as many processes as run now.

  Each process saves its input pipeline's position, and its shard of the data
  depends on the number of processes.
  """
  positions = checkpoint_dir(workdir) / str(step) / 'data_iterator'
  expected = positions / f'process_{jax.process_index()}-of-{jax.process_count()}.json'
  if not expected.exists():
    saved = sorted(path.name for path in positions.glob('process_*.json'))
    raise ValueError(
      f'the checkpoint at step {step} in {workdir} was saved by a different number of processes ({", ".join(saved)}) '
      f'than the {jax.process_count()} running now; resume with the same number of processes.'
    )
