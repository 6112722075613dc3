"""A run directory's one writer: the lock a trainer holds while it runs, and the run `config.json` belongs to.

The lock is a POSIX `flock` on `workdir/train.lock`: the kernel releases it
when its process ends, however it ends (even `kill -9`), so it never outlives
the trainer and never blocks a resume. Readers (`eval.py`) take no lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pathlib
import socket
from collections.abc import Iterator

import jax

from jaxvae import _checkpoint, _config, _types

LOCK_FILE = 'train.lock'


class WorkdirInUseError(RuntimeError):
  """Another trainer holds the workdir's lock."""


@contextlib.contextmanager
def lock(workdir: str | pathlib.Path) -> Iterator[pathlib.Path]:
  """Creates `workdir` if needed and holds its trainer lock (on process 0, which writes for the run) meanwhile.

  Args:
    workdir: the run directory.

  Yields:
    The workdir, as a path.

  Raises:
    WorkdirInUseError: if another live process holds the lock.
    ValueError: if `workdir` cannot be created or written (a file, no permission).
  """
  workdir = pathlib.Path(workdir)
  descriptor = None
  try:
    workdir.mkdir(parents=True, exist_ok=True)
    if jax.process_index() == 0:
      descriptor = os.open(workdir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
  except OSError as error:
    raise ValueError(
      f'--workdir {workdir} cannot be used: {error.strerror or error}. Choose a directory you can write.'
    ) from None
  if descriptor is None:
    yield workdir
    return
  try:
    try:
      fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(descriptor, 200, 0).decode(errors='replace').strip() or 'unknown'
      raise WorkdirInUseError(
        f'{workdir} is in use by another train.py ({holder}); wait for it to finish or stop it, '
        'or train in another --workdir.'
      ) from None
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, f'pid {os.getpid()} on {socket.gethostname()}\n'.encode(), 0)
    yield workdir
  finally:
    os.close(descriptor)  # releases the lock; the file stays (deleting it would race with the next trainer)


def check_owner(workdir: str | pathlib.Path, config: _types.Config) -> None:
  """Refuses a workdir whose `config.json` belongs to a run that `config` may not resume.

  This holds from the run's first moment, before its first checkpoint.

  Raises:
    ValueError: naming the first field that differs, or if `config.json`
      is not a run config.
  """
  path = pathlib.Path(workdir) / 'config.json'
  if not path.exists():
    return
  try:
    stored = _checkpoint.config_from_json(path.read_text(encoding='utf-8'))
  except (OSError, ValueError) as error:
    raise ValueError(
      f'{path} is not a readable run config ({error}); {workdir} does not look like a run directory of this '
      'program. Train in a fresh --workdir.'
    ) from None
  _config.check_resumable(stored, config, workdir)
