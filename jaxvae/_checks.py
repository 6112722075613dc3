"""Argument checks shared by the public functions.

They run at trace time on static shapes and dtypes, so they cost nothing in a
compiled step, and raise `ValueError` naming the argument, what was expected
and what was received.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def check_floating(name: str, x: jax.typing.ArrayLike, *, min_ndim: int = 0) -> None:
  """Raises ValueError unless `x` is a floating array with at least `min_ndim` axes."""
  dtype = jnp.result_type(x)
  if not jnp.issubdtype(dtype, jnp.floating):
    raise ValueError(
      f'`{name}` must be a floating-point array (e.g. float32); got dtype {dtype}. '
      f'Convert it first, e.g. `{name}.astype(jnp.float32)`, scaling 8-bit images to [0, 1].'
    )
  if np.ndim(x) < min_ndim:
    raise ValueError(f'`{name}` must have at least {min_ndim} axes; got shape {np.shape(x)}.')


def check_same_shape(name_a: str, a: jax.typing.ArrayLike, name_b: str, b: jax.typing.ArrayLike) -> None:
  """Raises ValueError unless `a` and `b` have the same shape."""
  if np.shape(a) != np.shape(b):
    raise ValueError(f'`{name_a}` and `{name_b}` must have the same shape; got {np.shape(a)} and {np.shape(b)}.')


def check_positive_int(name: str, value: object) -> None:
  """Raises ValueError unless `value` is a Python integer >= 1 (a static setting, not an array)."""
  if not isinstance(value, int) or isinstance(value, bool) or value < 1:
    raise ValueError(f'`{name}` must be an integer >= 1; got {value!r}.')


def with_leading_axes(x: jax.Array, ndim: int) -> jax.Array:
  """`x` with singleton axes prepended up to `ndim` axes, for explicit broadcasting.

  The library never relies on implicit rank promotion, so it works for users
  who set `jax_numpy_rank_promotion='raise'`.
  """
  return jnp.reshape(x, (1,) * (ndim - x.ndim) + x.shape)


def is_traced(x: jax.typing.ArrayLike) -> bool:
  """Whether `x` is an abstract value inside `jit`, `grad`, `vmap`, ... (no concrete data)."""
  return isinstance(x, jax.core.Tracer)
