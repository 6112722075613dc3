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
