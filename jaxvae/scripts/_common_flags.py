"""The flags `train.py` and `eval.py` share: the run directory, and how to join a multi-process run."""

from absl import flags

from jaxvae import _parallel

WORKDIR = flags.DEFINE_string('workdir', None, 'The run directory: config, checkpoints, logs, evaluations, pictures.')
_MULTIHOST = flags.DEFINE_bool('multihost', False, 'Join a multi-process run that JAX detects (TPU pods, SLURM).')
_COORDINATOR = flags.DEFINE_string('coordinator_address', None, 'host:port of process 0, for a multi-process run.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Number of processes of a multi-process run.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, "This process's index in a multi-process run.")


def join_processes() -> None:
  """Joins the multi-process run the flags name, if any (before anything touches a device)."""
  _parallel.join_processes(
    multihost=_MULTIHOST.value,
    coordinator_address=_COORDINATOR.value,
    num_processes=_NUM_PROCESSES.value,
    process_id=_PROCESS_ID.value,
  )
