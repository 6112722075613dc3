"""Checkpoints: an orbax `CheckpointManager` under `workdir/checkpoints`, with the run config in each.

Orbax writes each step to a temporary directory and renames it only when the
save is complete, so an interrupted save is never taken for a checkpoint.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp

from jaxvae import _types


def checkpoint_dir(workdir: str | pathlib.Path) -> pathlib.Path:
  return pathlib.Path(workdir).absolute() / 'checkpoints'


def open_manager(workdir: str | pathlib.Path, *, config: _types.Config) -> ocp.CheckpointManager:
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
  config: _types.Config,
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


def latest_run(workdir: str | pathlib.Path) -> tuple[int, _types.Config]:
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
