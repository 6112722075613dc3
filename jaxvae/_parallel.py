"""Data parallelism over every device of every process: a mesh with one `data` axis, and its shardings.

This does the job `jax.pmap` used to do (pmap is in maintenance mode since
JAX 0.8) with `jax.jit` and shardings: the global batch is split along the
`data` axis, parameters and optimiser state are replicated, and XLA inserts
the all-reduce that makes the gradient of the global-batch mean loss exact.
Each process feeds only its own rows of the global batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

DATA_AXIS = 'data'


def make_mesh(devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
  """A 1-D mesh named `data` over `devices` (default: every device of every process)."""
  if devices is None:
    return jax.make_mesh((jax.device_count(),), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,))
  return jax.sharding.Mesh(np.asarray(devices), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  """Every device holds the whole array: parameters, optimiser state, metrics."""
  return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: jax.sharding.Mesh) -> NamedSharding:
  """The leading (batch) axis split across the `data` axis."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(batch_size: int, mesh: jax.sharding.Mesh, *, name: str = 'config.train.batch_size') -> None:
  """Raises ValueError unless `batch_size` splits evenly over the mesh's devices and the processes."""
  devices, processes = mesh.size, jax.process_count()
  if batch_size % devices:
    raise ValueError(
      f'{name} ({batch_size}) must split evenly over the {devices} devices ({processes} process(es) x '
      f'{devices // processes} local devices); use a multiple of {devices}.'
    )


def global_batch(local_batch: Any, mesh: jax.sharding.Mesh) -> Any:
  """Assembles each process's rows `[B / processes, ...]` into global arrays `[B, ...]` sharded on `data`."""
  sharding = batch_sharded(mesh)
  return jax.tree.map(lambda rows: jax.make_array_from_process_local_data(sharding, rows), local_batch)


def local_copy(tree: Any) -> Any:
  """A process-local numpy copy of a replicated pytree (e.g. parameters, for pictures on one process)."""
  return jax.tree.map(lambda array: np.asarray(array.addressable_data(0)), tree)


def define_distributed_flags() -> Callable[[], None]:
  """Defines the multi-process flags of `train.py` and `eval.py`; returns the function that acts on them.

  `--multihost` joins a run whose processes JAX detects itself (TPU VM pods,
  SLURM, Open MPI); `--coordinator_address`, `--num_processes` and
  `--process_id` name them explicitly (e.g. several GPU hosts, or CPU
  processes on one machine). Neither: one process.
  """
  from absl import flags  # pylint: disable=import-outside-toplevel

  multihost = flags.DEFINE_bool('multihost', False, 'Join a multi-process run that JAX detects (TPU pods, SLURM).')
  coordinator = flags.DEFINE_string('coordinator_address', None, 'host:port of process 0, for a multi-process run.')
  num_processes = flags.DEFINE_integer('num_processes', None, 'Number of processes of a multi-process run.')
  process_id = flags.DEFINE_integer('process_id', None, "This process's index in a multi-process run.")

  def initialize() -> None:
    explicit = (coordinator.value, num_processes.value, process_id.value)
    if any(value is not None for value in explicit):
      if any(value is None for value in explicit):
        raise ValueError(
          'a multi-process run needs all of --coordinator_address, --num_processes and --process_id; got '
          f'{coordinator.value!r}, {num_processes.value!r}, {process_id.value!r}.'
        )
      initialize_distributed(
        coordinator_address=coordinator.value, num_processes=num_processes.value, process_id=process_id.value
      )
    elif multihost.value:
      initialize_distributed()

  return initialize


def initialize_distributed(**coordinates: Any) -> None:
  """`jax.distributed.initialize(**coordinates)`, with gloo for collectives between CPU processes."""
  # Only CPU devices use this setting; without it they have no cross-process collectives.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(**coordinates)
