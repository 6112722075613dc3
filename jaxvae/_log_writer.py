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
  """

  def __init__(self, workdir: str | pathlib.Path):
    self._active = jax.process_index() == 0
    if not self._active:
      return
    from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel

    workdir = pathlib.Path(workdir)
    self._jsonl = open(workdir / 'metrics.jsonl', 'a', encoding='utf-8')  # noqa: SIM115 (closed in close())
    self._tensorboard = SummaryWriter(logdir=str(workdir / 'tensorboard'), flush_secs=30)

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
