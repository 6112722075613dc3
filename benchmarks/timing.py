"""What the benchmark scripts share to time a jitted computation: the best of repeats, the matmul peak."""

import time

import jax
import jax.numpy as jnp


def best_seconds(fn, *, repeats):
  """The fastest of `repeats` runs of `fn()`, waiting for its result each time."""
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return min(times)


def matmul_peak_flops(*, size=2048, repeats=10):
  """The float32 matmul FLOP/s of this process's first device: a `size`^3 matmul, best of `repeats`."""
  a = jnp.ones((size, size), jnp.float32)
  matmul = jax.jit(lambda a: a @ a)
  matmul(a).block_until_ready()
  return 2 * size**3 / best_seconds(lambda: matmul(a), repeats=repeats)
