"""The run's log writer, on process 0 only: lines of `metrics.jsonl`, TensorBoard events."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping

import jax
import numpy as np


class LogWriter:
  """Appends `{"step": ..., name: value}` lines to `workdir/metrics.jsonl` and TensorBoard scalars.

  On processes other than 0 every method does nothing, so callers need not check.

  Args:
    workdir: where `metrics.jsonl` and `tensorboard/` are.
    resume_step: for a training run resumed from the checkpoint of this step:
      the lines logged after it (by the run that went on past the checkpoint
      before it stopped) are dropped from `metrics.jsonl`, and TensorBoard is
      told to purge its events from the next step, so that every step is
      logged once however often the run is resumed.
  """

  def __init__(self, workdir: str | pathlib.Path, *, resume_step: int | None = None):
    self._active = jax.process_index() == 0
    if not self._active:
      return
    from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel

    workdir = pathlib.Path(workdir)
    if resume_step is not None:
      _drop_lines_after(workdir / 'metrics.jsonl', resume_step)
    self._jsonl = open(workdir / 'metrics.jsonl', 'a', encoding='utf-8')  # noqa: SIM115 (closed in close())
    # purge_step: TensorBoard discards the events of this step and later ones written before it.
    purge_step = None if resume_step is None else resume_step + 1
    self._tensorboard = SummaryWriter(logdir=str(workdir / 'tensorboard'), flush_secs=30, purge_step=purge_step)

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    if not self._active:
      return
    values = {name: float(value) for name, value in scalars.items()}
    self._jsonl.write(json.dumps({'step': int(step), **values}) + '\n')
    self._jsonl.flush()
    for name, value in values.items():
      self._tensorboard.add_scalar(name, value, global_step=int(step))

  def write_image(self, step: int, name: str, image: np.ndarray) -> None:
    """Adds a uint8 `[H, W, C]` image to TensorBoard."""
    if self._active:
      self._tensorboard.add_image(name, image, global_step=int(step), dataformats='HWC')

  def close(self) -> None:
    if self._active:
      self._jsonl.close()
      self._tensorboard.close()


def _drop_lines_after(path: pathlib.Path, step: int) -> None:
  """Rewrites `metrics.jsonl` without the lines of steps after `step` (and any line cut short by a crash)."""
  if not path.exists():
    return
  kept = []
  for line in path.read_text(encoding='utf-8').splitlines():
    try:
      if json.loads(line)['step'] <= step:
        kept.append(line + '\n')
    except (ValueError, KeyError, TypeError):
      continue  # a line half-written when the run was killed
  temporary = path.with_suffix('.jsonl.tmp')
  temporary.write_text(''.join(kept), encoding='utf-8')
  temporary.replace(path)
