"""What `train.py` and `eval.py` share: the run directory's flag, joining a multi-process run, and exits.

A user's mistake ends the program with one line on stderr (`error: ...`) and
status 2; a stop on SIGTERM or SIGINT with one line and status 128 + the
signal's number; an internal error keeps its traceback.
"""

import functools
import logging
import os
import pathlib
import sys
import traceback
from collections.abc import Callable

from absl import app, flags
from absl import logging as absl_logging

import jaxvae
from jaxvae import _parallel

WORKDIR = flags.DEFINE_string('workdir', None, 'The run directory: config, checkpoints, logs, evaluations, pictures.')
_MULTIHOST = flags.DEFINE_bool('multihost', False, 'Join a multi-process run that JAX detects (TPU pods, SLURM).')
_COORDINATOR = flags.DEFINE_string('coordinator_address', None, 'host:port of process 0, for a multi-process run.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Number of processes of a multi-process run.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, "This process's index in a multi-process run.")

USER_ERROR_STATUS = 2
# The exceptions that, raised by jaxvae's own code or a config file, describe a user's mistake (a bad config,
# flag, workdir or checkpoint), not a bug: their message says what to do, and a traceback would only hide it.
# Raised from inside JAX, NumPy or orbax, the same types are internal errors and keep their traceback.
_USER_ERRORS = (ValueError, FileNotFoundError, FloatingPointError, jaxvae.WorkdirInUseError)
_OWN_CODE = (pathlib.Path(jaxvae.__file__).parent, pathlib.Path(sys.argv[0]).resolve().parent / 'configs')


def join_processes() -> None:
  """Joins the multi-process run the flags name, if any (before anything touches a device)."""
  _parallel.join_processes(
    multihost=_MULTIHOST.value,
    coordinator_address=_COORDINATOR.value,
    num_processes=_NUM_PROCESSES.value,
    process_id=_PROCESS_ID.value,
  )


def run(
  main: Callable[[list[str]], None],
  *,
  check_argv: Callable[[list[str]], None] | None = None,
  argv: list[str] | None = None,
) -> None:
  """`app.run(main)`, ending on a user's mistake, a preemption or a second Ctrl-C with one line, not a traceback.

  Args:
    main: the program.
    check_argv: checks the command line before the flags are parsed; its
      ValueError is a user's mistake.
    argv: the command line (default: `sys.argv`).
  """
  absl_logging.get_absl_logger().addFilter(_without_orbax_notices)
  app.run(functools.partial(_guarded, main), argv=argv, flags_parser=functools.partial(_parse_flags, check_argv))


def _without_orbax_notices(record: logging.LogRecord) -> bool:
  """Drops orbax's warnings about settings jaxvae chose (e.g. a reader's read-only manager): nothing to act on."""
  return record.levelno >= logging.ERROR or f'{os.sep}orbax{os.sep}' not in record.pathname


def _parse_flags(check_argv: Callable[[list[str]], None] | None, argv: list[str]) -> list[str]:
  """absl's flag parsing, with every parse error (a config file that fails to load, say) as one line."""
  try:
    if check_argv is not None:
      check_argv(argv)
    return flags.FLAGS(argv)
  except (ValueError, OSError, flags.Error) as error:  # OSError: a config file that is not there
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    user_error(lines[-1] if lines else type(error).__name__)


def _guarded(main: Callable[[list[str]], None], argv: list[str]) -> None:
  try:
    main(argv)
  except jaxvae.Preempted as stop:
    print(stop, file=sys.stderr, flush=True)
    sys.exit(128 + stop.signum)
  except KeyboardInterrupt:
    print('interrupted: stopped without saving; a rerun resumes from the last checkpoint', file=sys.stderr)
    sys.exit(130)
  except _USER_ERRORS as error:
    if not _raised_by_own_code(error):
      raise
    print(f'error: {error}', file=sys.stderr, flush=True)
    sys.exit(USER_ERROR_STATUS)


def _raised_by_own_code(error: BaseException) -> bool:
  """Whether the innermost frame of `error`'s traceback is jaxvae's or a config file's."""
  frames = traceback.extract_tb(error.__traceback__)
  if not frames:
    return False
  path = pathlib.Path(frames[-1].filename).resolve()
  return any(path.is_relative_to(root) for root in _OWN_CODE)


def user_error(message: str) -> None:
  """Ends the program as for a user's mistake: `error: message` on stderr, status 2."""
  print(f'error: {message}', file=sys.stderr, flush=True)
  sys.exit(USER_ERROR_STATUS)
