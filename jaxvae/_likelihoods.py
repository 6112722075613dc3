"""Decoder log-likelihoods log p(x|z) and the nats-to-bits/dim conversion.

Every likelihood takes the data `x` with a leading batch axis, `[B, *event]`,
and decoder outputs of shape `[..., B, *event]` (any number of leading sample
axes), and returns the log-likelihood summed over the event axes, `[..., B]`,
in nats. An optional `mask` restricts the sum to some dimensions of each
example (e.g. the hidden pixels of an inpainting task): the pixels are
independent given z, so that is the log-likelihood of those dimensions alone.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae import _checks

_LOG_2PI = math.log(2.0 * math.pi)


def bernoulli_log_likelihood(
  x: jax.typing.ArrayLike, logits: jax.typing.ArrayLike, *, mask: jax.typing.ArrayLike | None = None
) -> jax.Array:
  r"""Bernoulli log-likelihood :math:`\sum_d x_d \ell_d - \mathrm{softplus}(\ell_d)`, in nats.

  The decoder of Kingma & Welling 2014 (Appendix C.1) for binary data, written
  with logits :math:`\ell` so it is exact for saturated probabilities. For
  binary or binarised `x` this is a normalised log-probability; for grey
  values in (0, 1) it is the negative binary cross-entropy, which is not.

  Data outside [0, 1] has no Bernoulli likelihood. With concrete `x` this
  raises; under `jit`/`grad`/`vmap` (where values are unknown at trace time)
  the affected examples get NaN, which a training loop reports, rather than a
  finite wrong number.

  Args:
    x: data in [0, 1], `[B, *event]`.
    logits: decoder logits, `[..., B, *event]`.
    mask: optional, broadcastable to `x`: 1 for the dimensions that count, 0
      for the others; None counts all.

  Returns:
    `[..., B]`: the log-likelihood, in nats.

  Raises:
    ValueError: on non-floating input, mismatched shapes, or concrete `x`
      outside [0, 1].

  >>> import jax.numpy as jnp
  >>> float(bernoulli_log_likelihood(jnp.ones((1, 2)), jnp.zeros((1, 2)))[0])  # 2 log(1/2)
  -1.386294...
  """
  _check_data_and_params(x, 'logits', logits)
  mask = _flat_mask(mask, x)
  x, logits = _flatten_events(jnp.asarray(x), jnp.asarray(logits))
  # softplus(l) = max(l, 0) + log1p(exp(-|l|)): exact for any l, and fuses
  # into fewer operations than jax.nn.softplus (logaddexp's inf handling).
  softplus = jnp.maximum(logits, 0.0) + jnp.log1p(jnp.exp(-jnp.abs(logits)))
  log_prob = _sum_events(_align(x, logits) * logits - softplus, mask)
  return _poison_out_of_range(x, log_prob, low=0.0, high=1.0, likelihood='Bernoulli')


def gaussian_log_likelihood(
  x: jax.typing.ArrayLike,
  loc: jax.typing.ArrayLike,
  log_scale: jax.typing.ArrayLike,
  *,
  mask: jax.typing.ArrayLike | None = None,
) -> jax.Array:
  r"""Gaussian log-density :math:`\sum_d \log \mathcal N(x_d; \mu_d, \sigma_d^2)`, in nats.

  The decoder of Kingma & Welling 2014 (Appendix C.2) for real-valued data.
  Doersch 2016 (Sec. 2.1) notes that the decoder variance weighs
  reconstruction against the KL term: a fixed `log_scale` sets that weight, a
  learned one (a scalar or one per pixel) lets the model choose it.

  Args:
    x: data, `[B, *event]`.
    loc: decoder mean, `[..., B, *event]`.
    log_scale: log standard deviation, broadcastable against `loc` (a scalar,
      `[*event]` for one scale per pixel, or the full shape of `loc`).
    mask: optional, broadcastable to `x`: 1 for the dimensions that count, 0
      for the others; None counts all.

  Returns:
    `[..., B]`: the log-density, in nats. It is a density, so bits/dim derived
    from it are only meaningful for dequantised data.

  Raises:
    ValueError: on non-floating input or shapes that do not broadcast.

  >>> import jax.numpy as jnp
  >>> float(gaussian_log_likelihood(jnp.zeros((1, 1)), jnp.zeros((1, 1)), 0.0)[0])  # -log(2 pi) / 2
  -0.918938...
  """
  _check_data_and_params(x, 'loc', loc)
  _checks.check_floating('log_scale', log_scale)
  x, loc, log_scale = jnp.asarray(x), jnp.asarray(loc), jnp.asarray(log_scale)
  _check_broadcast('log_scale', log_scale, 'loc', loc)
  log_scale = jnp.broadcast_to(log_scale, loc.shape)
  mask = _flat_mask(mask, x)
  x, loc, log_scale = _flatten_events(x, loc, log_scale)
  standardized = (_align(x, loc) - loc) * jnp.exp(-log_scale)
  log_density = -0.5 * (jnp.square(standardized) + _LOG_2PI) - log_scale
  return _sum_events(log_density, mask)


def discretized_logistic_log_likelihood(
  x: jax.typing.ArrayLike,
  loc: jax.typing.ArrayLike,
  log_scale: jax.typing.ArrayLike,
  *,
  num_bins: int = 256,
  mask: jax.typing.ArrayLike | None = None,
) -> jax.Array:
  r"""Discretised-logistic log-probability of quantised data, in nats.

  Each pixel takes one of `num_bins` values :math:`k / (n-1)`, `k = 0..n-1`, in
  [0, 1]. Its probability is the mass of a logistic with mean :math:`\mu` and
  scale :math:`s` on the bin :math:`[x - h, x + h]`, :math:`h = 1/(2(n-1))`,
  with the first and last bins extended to :math:`\mp\infty` (Salimans et al.
  2017, PixelCNN++, eq. 2, with one mixture component):

  .. math::
     P(x) = \sigma\!\left(\tfrac{x + h - \mu}{s}\right) - \sigma\!\left(\tfrac{x - h - \mu}{s}\right).

  The difference of sigmoids is computed in log space through the identity
  :math:`\sigma(a) - \sigma(b) = \sigma(a)\,\sigma(-b)\,(1 - e^{b - a})`, which
  is exact for every `a > b`; PixelCNN++ instead switches to a density
  approximation when the difference underflows.

  Being a probability of discrete data, the result converts to bits/dim with
  :func:`nats_to_bits_per_dim` without any correction.

  Args:
    x: quantised data in [0, 1], `[B, *event]`, e.g. 8-bit images divided by 255.
    loc: logistic mean, `[..., B, *event]`.
    log_scale: log of the logistic scale, broadcastable against `loc`.
    num_bins: number of quantisation levels (256 for 8-bit data).
    mask: optional, broadcastable to `x`: 1 for the dimensions that count, 0
      for the others; None counts all.

  Returns:
    `[..., B]`: the log-probability, in nats.

  Raises:
    ValueError: on non-floating input, bad shapes, `num_bins < 2`, or
      concrete `x` outside [0, 1].

  >>> import jax.numpy as jnp
  >>> x = jnp.arange(256.0)[:, None] / 255  # every 8-bit value, [256, 1]
  >>> p = jnp.exp(discretized_logistic_log_likelihood(x, jnp.full_like(x, 0.3), -2.0))
  >>> round(float(p.sum()), 5)  # the bins' masses sum to one
  1.0
  """
  _check_data_and_params(x, 'loc', loc)
  _checks.check_floating('log_scale', log_scale)
  if not isinstance(num_bins, int) or num_bins < 2:
    raise ValueError(f'`num_bins` must be an integer >= 2; got {num_bins!r}.')
  x, loc, log_scale = jnp.asarray(x), jnp.asarray(loc), jnp.asarray(log_scale)
  _check_broadcast('log_scale', log_scale, 'loc', loc)
  mask = _flat_mask(mask, x)
  x, loc, log_scale = _flatten_events(x, loc, jnp.broadcast_to(log_scale, loc.shape))
  half_bin = 0.5 / (num_bins - 1)
  x_aligned = _align(x, loc)
  inv_scale = jnp.exp(-log_scale)
  upper = (x_aligned - loc + half_bin) * inv_scale  # a: standardised upper bin edge
  lower = (x_aligned - loc - half_bin) * inv_scale  # b: standardised lower bin edge
  log_cdf_upper = jax.nn.log_sigmoid(upper)
  log_survival_lower = jax.nn.log_sigmoid(-lower)
  # log(1 - exp(b - a)) with b - a = -2h/s < 0; log(-expm1) keeps it exact for tiny bins.
  log_bin_fraction = jnp.log(-jnp.expm1(-2.0 * half_bin * inv_scale))
  interior = log_cdf_upper + log_survival_lower + log_bin_fraction
  log_prob = jnp.where(
    x_aligned < half_bin,
    log_cdf_upper,
    jnp.where(x_aligned > 1.0 - half_bin, log_survival_lower, interior),
  )
  log_prob = _sum_events(log_prob, mask)
  return _poison_out_of_range(x, log_prob, low=0.0, high=1.0, likelihood='discretised-logistic')


def nats_to_bits_per_dim(nats: jax.typing.ArrayLike, num_dims: int) -> jax.Array:
  r"""Converts a per-example quantity in nats to bits per dimension: :math:`\mathrm{nats} / (D \ln 2)`.

  Args:
    nats: e.g. a negative log-likelihood per example, in nats, any shape.
    num_dims: number of data dimensions D per example (e.g. 28 * 28 = 784).

  Returns:
    The same quantity in bits per dimension.

  >>> round(float(nats_to_bits_per_dim(784 * 0.6931471805599453, 784)), 6)
  1.0
  """
  if not isinstance(num_dims, (int, np.integer)) or num_dims < 1:
    raise ValueError(f'`num_dims` must be a positive integer; got {num_dims!r}.')
  return jnp.asarray(nats) / (num_dims * math.log(2.0))


def _align(x: jax.Array, params: jax.Array) -> jax.Array:
  """`x` `[B, *event]` with the leading sample axes of `params` `[..., B, *event]` as singletons."""
  return _checks.with_leading_axes(x, params.ndim)


def _flatten_events(x: jax.Array, *params: jax.Array) -> tuple[jax.Array, ...]:
  """`x` `[B, *event]` as `[B, E]` and each `[..., B, *event]` as `[..., B, E]`.

  Reducing one contiguous axis is far faster on CPU than reducing several
  (e.g. 28, 28, 1): XLA otherwise picks layouts that cost more than the
  decoder's matmuls.
  """
  event_ndim = x.ndim - 1
  flat = [p.reshape(*p.shape[: p.ndim - event_ndim], -1) for p in params]
  return (x.reshape(x.shape[0], -1), *flat)


def _sum_events(terms: jax.Array, mask: jax.Array | None) -> jax.Array:
  """Per-dimension `terms` `[..., B, E]` summed over E, weighted by a flat `mask` `[B, E]` if there is one."""
  return jnp.sum(terms if mask is None else terms * _align(mask, terms), axis=-1)


def _flat_mask(mask: jax.typing.ArrayLike | None, x: jax.typing.ArrayLike) -> jax.Array | None:
  """`mask` broadcast to the shape of `x` `[B, *event]` and flattened to `[B, E]`; None stays None."""
  if mask is None:
    return None
  mask, shape = jnp.asarray(mask), np.shape(x)
  _check_broadcast('mask', mask, 'x', jax.ShapeDtypeStruct(shape, mask.dtype))
  return jnp.broadcast_to(mask, shape).reshape(shape[0], -1).astype(jnp.result_type(x))


def _check_data_and_params(x: jax.typing.ArrayLike, params_name: str, params: jax.typing.ArrayLike) -> None:
  _checks.check_floating('x', x, min_ndim=2)
  _checks.check_floating(params_name, params, min_ndim=2)
  x_shape, params_shape = np.shape(x), np.shape(params)
  if params_shape[len(params_shape) - len(x_shape) :] != x_shape:
    raise ValueError(
      f'`{params_name}` must have shape [..., *x.shape] = [..., {", ".join(map(str, x_shape))}] '
      f'(decoder outputs for every example of `x`, with optional leading sample axes); '
      f'got {params_shape}. `x` needs a leading batch axis: use x[None] for a single example.'
    )


def _check_broadcast(name: str, value: jax.Array, target_name: str, target: jax.Array) -> None:
  try:
    np.broadcast_shapes(value.shape, target.shape)
  except ValueError:
    raise ValueError(
      f'`{name}` must broadcast against `{target_name}` {target.shape}; got shape {value.shape}.'
    ) from None


def _poison_out_of_range(x: jax.Array, log_prob: jax.Array, *, low: float, high: float, likelihood: str) -> jax.Array:
  """Raises on concrete out-of-range data; under tracing returns NaN for those examples."""
  if not _checks.is_traced(x):
    # NumPy, not jnp: inside a trace (a scan body, say) jnp would stage even
    # concrete values into the computation.
    host_x = np.asarray(x)
    x_min, x_max = float(host_x.min()), float(host_x.max())
    if not low <= x_min <= x_max <= high:
      raise ValueError(
        f'`x` must lie in [{low:g}, {high:g}] for the {likelihood} likelihood; got values in '
        f'[{x_min:g}, {x_max:g}]. Scale 8-bit images by 1/255 (and binarise them for a '
        'Bernoulli decoder), or choose a likelihood that matches the data.'
      )
    return log_prob
  in_range = jnp.all((x >= low) & (x <= high), axis=-1)  # x: [B, E] -> [B]
  return jnp.where(_checks.with_leading_axes(in_range, log_prob.ndim), log_prob, jnp.nan)
