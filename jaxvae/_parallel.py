"""Data parallelism over every device of every process: a mesh with one `data` axis, and its shardings.

This does the job `jax.pmap` used to do (pmap is in maintenance mode since
JAX 0.8) with `jax.jit` and shardings: the global batch is split along the
`data` axis, parameters and optimiser state are replicated, and XLA inserts
the all-reduce that makes the gradient of the global-batch mean loss exact.
Each process feeds only its own rows of the global batch.
"""

from __future__ import annotations

from collections.abc import Sequence
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


def join_processes(
  *, multihost: bool, coordinator_address: str | None, num_processes: int | None, process_id: int | None
) -> None:
  """Joins a multi-process run, as `train.py` and `eval.py`'s flags describe it; with none set, runs alone.

  `multihost` joins a run whose processes JAX detects itself (TPU VM pods,
  SLURM, Open MPI); `coordinator_address`, `num_processes` and `process_id`
  name them explicitly (e.g. several GPU hosts, or CPU processes on one
  machine), and go together.

  Raises:
    ValueError: if some but not all of the explicit coordinates are given.
  """
  explicit = (coordinator_address, num_processes, process_id)
  if any(value is not None for value in explicit):
    if any(value is None for value in explicit):
      raise ValueError(
        'a multi-process run needs all of --coordinator_address, --num_processes and --process_id; got '
        f'{coordinator_address!r}, {num_processes!r}, {process_id!r}.'
      )
    initialize_distributed(coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id)
  elif multihost:
    initialize_distributed()


def initialize_distributed(**coordinates: Any) -> None:
  """`jax.distributed.initialize(**coordinates)`, with gloo for collectives between CPU processes."""
  # Only CPU devices use this setting; without it they have no cross-process collectives.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(**coordinates)
