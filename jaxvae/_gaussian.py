"""Diagonal Gaussians: reparameterised sampling, log-densities and KL divergences.

A diagonal Gaussian is given by its mean `loc` and its log-variance `log_var`,
the two outputs of a VAE encoder (Kingma & Welling 2014, Sec. 3). Densities and
divergences are in nats and are summed over the last (latent) axis.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from jaxvae import _checks

_LOG_2PI = math.log(2.0 * math.pi)


def sample_diag_gaussian(
  key: jax.Array,
  loc: jax.typing.ArrayLike,
  log_var: jax.typing.ArrayLike,
  *,
  num_samples: int | None = None,
) -> jax.Array:
  r"""Draws reparameterised samples :math:`z = \mu + \exp(\tfrac12 \log\sigma^2) \odot \epsilon`.

  The reparameterisation trick of Kingma & Welling 2014 (Sec. 2.4, and Sec. 3
  for the Gaussian case): the sample is a differentiable function of `loc` and
  `log_var`, with all randomness in :math:`\epsilon \sim \mathcal N(0, I)`.

  Args:
    key: a PRNG key.
    loc: mean, `[..., D]`.
    log_var: log-variance, `[..., D]`, same shape as `loc`.
    num_samples: `None` for one sample of shape `[..., D]`; an integer `S >= 1`
      for `S` independent samples stacked on a new leading axis, `[S, ..., D]`.

  Returns:
    The samples, `[..., D]` or `[S, ..., D]`, in the dtype of `loc`. Each
    example's noise depends only on `key` and the example's index, not on
    the number of examples (see `standard_normal_noise`).

  Raises:
    ValueError: if `loc` or `log_var` is not floating, their shapes differ, or
      `num_samples < 1`.

  >>> import jax, jax.numpy as jnp
  >>> z = sample_diag_gaussian(jax.random.key(0), jnp.zeros((4, 2)), jnp.zeros((4, 2)), num_samples=3)
  >>> z.shape
  (3, 4, 2)
  """
  _checks.check_floating('loc', loc, min_ndim=1)
  _checks.check_floating('log_var', log_var, min_ndim=1)
  _checks.check_same_shape('loc', loc, 'log_var', log_var)
  loc, log_var = jnp.asarray(loc), jnp.asarray(log_var)
  if num_samples is None:
    eps = jax.random.normal(key, loc.shape, loc.dtype)
  else:
    _checks.check_positive_int('num_samples', num_samples)
    eps = standard_normal_noise(key, loc.shape, num_samples=num_samples, dtype=loc.dtype)
    loc, log_var = loc[None], log_var[None]
  return loc + jnp.exp(0.5 * log_var) * eps


def standard_normal_noise(
  key: jax.Array, shape: tuple[int, ...], *, num_samples: int, dtype: Any, first_sample: int | jax.Array = 0
) -> jax.Array:
  """Samples `first_sample, ..., first_sample + num_samples - 1` of N(0, I) noise of `shape`, as `[S, *shape]`.

  Sample `k` is `normal(fold_in(key, k), shape)`, whatever else is drawn:
  any run of samples can be drawn on its own (so a chunked importance-
  weighted bound needs memory for one chunk only, and its value does not
  depend on the chunk size), and with JAX's partitionable Threefry (the
  default) each value depends only on its flat index, so an example's noise
  does not depend on how many examples follow it: padding a batch to split
  it over devices leaves every example's samples unchanged.
  """
  indices = first_sample + jnp.arange(num_samples)
  return jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(key, k), shape, dtype))(indices)


def diag_gaussian_log_prob(
  z: jax.typing.ArrayLike, loc: jax.typing.ArrayLike, log_var: jax.typing.ArrayLike
) -> jax.Array:
  r"""Log-density :math:`\log \mathcal N(z; \mu, \mathrm{diag}(\sigma^2))` in nats.

  Args:
    z: points, `[..., D]`; extra leading axes (e.g. samples) broadcast against `loc`.
    loc: mean, `[..., D]`.
    log_var: log-variance, same shape as `loc`.

  Returns:
    `[...]`: the log-density summed over the last axis, in nats.

  >>> import jax.numpy as jnp
  >>> float(diag_gaussian_log_prob(jnp.zeros(1), jnp.zeros(1), jnp.zeros(1)))  # -log(2 pi) / 2
  -0.918938...
  """
  _checks.check_floating('z', z, min_ndim=1)
  _checks.check_floating('loc', loc, min_ndim=1)
  _checks.check_floating('log_var', log_var, min_ndim=1)
  _checks.check_same_shape('loc', loc, 'log_var', log_var)
  z, loc, log_var = jnp.asarray(z), jnp.asarray(loc), jnp.asarray(log_var)
  loc, log_var = _checks.with_leading_axes(loc, z.ndim), _checks.with_leading_axes(log_var, z.ndim)
  squared_distance = jnp.square(z - loc) * jnp.exp(-log_var)
  return -0.5 * jnp.sum(squared_distance + log_var + _LOG_2PI, axis=-1)


def standard_normal_log_prob(z: jax.typing.ArrayLike) -> jax.Array:
  r"""Log-density of the prior :math:`\log \mathcal N(z; 0, I)` in nats.

  Args:
    z: points, `[..., D]`.

  Returns:
    `[...]`: the log-density summed over the last axis, in nats.
  """
  _checks.check_floating('z', z, min_ndim=1)
  z = jnp.asarray(z)
  return -0.5 * jnp.sum(jnp.square(z) + _LOG_2PI, axis=-1)


def kl_diag_gaussian_standard_normal(loc: jax.typing.ArrayLike, log_var: jax.typing.ArrayLike) -> jax.Array:
  r"""Closed-form :math:`\mathrm{KL}(\mathcal N(\mu, \mathrm{diag}\,\sigma^2) \,\|\, \mathcal N(0, I))` in nats.

  .. math:: \tfrac12 \sum_j \left(\sigma_j^2 + \mu_j^2 - 1 - \log \sigma_j^2\right)

  (Kingma & Welling 2014, Appendix B; the negative of the first term of eq. 10.)

  Args:
    loc: mean, `[..., D]`.
    log_var: log-variance, same shape as `loc`.

  Returns:
    `[...]`: the divergence summed over the last axis, in nats; `>= 0`.

  >>> import jax.numpy as jnp
  >>> float(kl_diag_gaussian_standard_normal(jnp.array([1.0]), jnp.array([0.0])))
  0.5
  """
  _checks.check_floating('loc', loc, min_ndim=1)
  _checks.check_floating('log_var', log_var, min_ndim=1)
  _checks.check_same_shape('loc', loc, 'log_var', log_var)
  loc, log_var = jnp.asarray(loc), jnp.asarray(log_var)
  # expm1(v) - v instead of exp(v) - 1 - v: near v = 0, where a collapsed
  # latent sits, exp(v) - 1 loses every significant digit to rounding.
  return 0.5 * jnp.sum(jnp.square(loc) + jnp.expm1(log_var) - log_var, axis=-1)


def kl_diag_gaussians(
  loc_q: jax.typing.ArrayLike,
  log_var_q: jax.typing.ArrayLike,
  loc_p: jax.typing.ArrayLike,
  log_var_p: jax.typing.ArrayLike,
) -> jax.Array:
  r"""Closed-form :math:`\mathrm{KL}(q \,\|\, p)` between two diagonal Gaussians, in nats.

  .. math::
     \tfrac12 \sum_j \left(\log\sigma_{p,j}^2 - \log\sigma_{q,j}^2
       + \frac{\sigma_{q,j}^2 + (\mu_{q,j} - \mu_{p,j})^2}{\sigma_{p,j}^2} - 1\right)

  Args:
    loc_q: mean of q, `[..., D]`.
    log_var_q: log-variance of q, same shape as `loc_q`.
    loc_p: mean of p, `[..., D]`; fewer leading axes than `loc_q` broadcast.
    log_var_p: log-variance of p, same shape as `loc_p`.

  Returns:
    `[...]`: the divergence summed over the last axis, in nats; `>= 0`.
  """
  for name, value in (('loc_q', loc_q), ('log_var_q', log_var_q), ('loc_p', loc_p), ('log_var_p', log_var_p)):
    _checks.check_floating(name, value, min_ndim=1)
  _checks.check_same_shape('loc_q', loc_q, 'log_var_q', log_var_q)
  _checks.check_same_shape('loc_p', loc_p, 'log_var_p', log_var_p)
  loc_q, log_var_q = jnp.asarray(loc_q), jnp.asarray(log_var_q)
  loc_p, log_var_p = jnp.asarray(loc_p), jnp.asarray(log_var_p)
  ndim = max(loc_q.ndim, loc_p.ndim)
  loc_q, log_var_q, loc_p, log_var_p = (
    _checks.with_leading_axes(a, ndim) for a in (loc_q, log_var_q, loc_p, log_var_p)
  )
  log_ratio = log_var_q - log_var_p
  squared_distance = jnp.square(loc_q - loc_p) * jnp.exp(-log_var_p)
  return 0.5 * jnp.sum(jnp.expm1(log_ratio) - log_ratio + squared_distance, axis=-1)
