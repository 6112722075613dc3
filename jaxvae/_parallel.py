"""Data parallelism over every device of every process: a mesh with one `data` axis, and its shardings.

This does the job `jax.pmap` used to do (pmap is in maintenance mode since
JAX 0.8) with `jax.jit` and shardings: the global batch is split along the
`data` axis, parameters and optimiser state are replicated, and XLA inserts
the all-reduce that makes the gradient of the global-batch mean loss exact.
Each process feeds only its own rows of the global batch.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax._src.distributed
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


# A process that shows no sign of life for this long is taken for dead (killed, crashed, cut off): JAX's own
# heartbeat takes 100 s and then aborts with a C++ stack dump.
PEER_TIMEOUT_S = 20.0
# A process not seen yet (still compiling, say) gets this long from the watch's start.
PEER_STARTUP_TIMEOUT_S = 180.0


class PeerWatch:
  """While open, ends this process with one line on stderr if another process of the run stops.

  Each process ticks a counter in the coordination service's key-value store
  every second from a daemon thread and watches the others' counters. A peer
  whose counter has not moved for `timeout_s`, or a coordination service
  that no longer answers (process 0 gone), ends this process at once
  (`os._exit(1)`: the main thread may be blocked in a collective that will
  never complete) after printing one line naming the lost process and what
  is lost (`describe_loss()`). A no-op with one process.

  Args:
    describe_loss: what the run loses if it stops now, e.g. the steps since
      the last checkpoint; called in the watching thread.
    timeout_s: how long a peer may show no sign of life.
  """

  def __init__(self, *, describe_loss: Callable[[], str], timeout_s: float = PEER_TIMEOUT_S):
    self._describe_loss, self._timeout_s = describe_loss, timeout_s
    self._stop = threading.Event()
    self._thread: threading.Thread | None = None

  def start(self) -> PeerWatch:
    """Starts watching (once)."""
    client = jax._src.distributed.global_state.client  # noqa: SLF001 (JAX exposes no public handle to it)
    if jax.process_count() > 1 and client is not None and self._thread is None:
      self._thread = threading.Thread(target=self._watch, args=(client,), daemon=True, name='jaxvae-peer-watch')
      self._thread.start()
    return self

  def await_verdict(self) -> None:
    """After a failed collective: waits long enough for the watch to end this process if a peer is dead."""
    if self._thread is not None and not self._stop.is_set():
      self._stop.wait(self._timeout_s + 5.0)

  def stop(self) -> None:
    """Stops watching: from now on the peers may end (e.g. finish the run) in their own time."""
    self._stop.set()

  def __enter__(self) -> PeerWatch:
    return self.start()

  def __exit__(self, *exc_info) -> None:
    self.stop()

  def _watch(self, client: Any) -> None:
    me, count = jax.process_index(), jax.process_count()
    start = time.monotonic()
    last = {p: (None, start) for p in range(count) if p != me}  # peer -> (its counter, when it last moved)
    tick = 0
    while not self._stop.wait(1.0):
      tick += 1
      now = time.monotonic()
      try:
        client.key_value_set(f'jaxvae_peer_watch/{me}', str(tick), allow_overwrite=True)
        for peer, (seen, since) in last.items():
          try:
            value = client.key_value_try_get(f'jaxvae_peer_watch/{peer}')
          except Exception:  # noqa: BLE001 (not ticked yet)
            value = None
          if value != seen:
            last[peer] = (value, now)
          elif now - since > (self._timeout_s if seen is not None else PEER_STARTUP_TIMEOUT_S):
            self._die(
              f'process {peer} of {count} stopped (no sign of life for {now - since:.0f} s: killed, crashed or cut off)'
            )
      except Exception:  # noqa: BLE001 (whatever the client raises once the service is gone)
        if self._stop.is_set():
          return
        self._die(f'lost the coordinator, process 0 of {count} (killed, crashed or cut off)')

  def _die(self, what: str) -> None:
    if self._stop.is_set():
      return
    print(
      f'error: {what}; process {jax.process_index()} stops too. {self._describe_loss()}', file=sys.stderr, flush=True
    )
    os._exit(1)
