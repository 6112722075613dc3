"""Bounds on log p(x) over a whole dataset: per-example bounds under one `jit`, summarised with standard errors."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from jaxvae import _bounds, _checks, _parallel, _types

# `(params, batch, valid [B], key_data, batch_index) -> per-example values`: see `make_bounds_fn`.
BoundsFn = Callable[[_types.Params, _types.Batch, jax.Array, np.ndarray, np.ndarray], dict[str, Any]]
Bind = Callable[[_types.Params, jax.Array | None], tuple[_bounds.Encoder, _bounds.Decoder]]


@dataclasses.dataclass(frozen=True)
class Estimate:
  """A mean over examples and its standard error (NaN for one example), in the units of the field holding it."""

  mean: float
  stderr: float

  @classmethod
  def of(cls, values: np.ndarray) -> Estimate:
    """The mean of per-example `values [N]` and its standard error."""
    stderr = values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else float('nan')
    return cls(float(values.mean()), float(stderr))


@dataclasses.dataclass(frozen=True)
class BoundsSummary:
  """Bounds on log p(x) over a dataset, in nats per example, each with its standard error over examples.

  Bits/dim are given where they mean something (probabilities of discrete
  data, or densities of uniformly dequantised data, whose bits/dim include
  `log2(levels)` per dimension and bound the discrete data's NLL, Theis et
  al. 2016, eq. 9): `-bound / (D ln 2)` per example, D the dimensions the
  bound covers (for an inpainting model, its hidden ones), then averaged.
  """

  num_examples: int
  reconstruction: Estimate  # E_q[log p(x|z)]; for a deterministic model log p(x | z = encoder mean)
  elbo: Estimate | None = None  # None for a deterministic model, which defines no p(x) to bound
  kl: Estimate | None = None  # KL(q(z|x) || p(z))
  iwae: Mapping[int, Estimate] = dataclasses.field(default_factory=dict)  # K -> L_K; empty without IWAE
  elbo_bits_per_dim: Estimate | None = None  # -ELBO in bits/dim; None where bits/dim mean nothing
  iwae_bits_per_dim: Mapping[int, Estimate] = dataclasses.field(default_factory=dict)  # K -> -L_K in bits/dim

  @property
  def nll(self) -> Estimate | None:
    """-L_K at the largest K: the tightest upper bound on the negative log-likelihood here (None without IWAE)."""
    if not self.iwae:
      return None
    bound = self.iwae[max(self.iwae)]
    return Estimate(-bound.mean, bound.stderr)

  @property
  def nll_bits_per_dim(self) -> Estimate | None:
    """`nll` in bits per dimension, where bits/dim mean something."""
    return self.iwae_bits_per_dim.get(max(self.iwae)) if self.iwae else None

  def to_dict(self) -> dict[str, Any]:
    """A JSON-ready record: `{name: {'mean', 'stderr'}}`, IWAE bounds keyed by K (as a string)."""
    record: dict[str, Any] = {
      'num_examples': self.num_examples,
      'reconstruction_nats': dataclasses.asdict(self.reconstruction),
    }
    if self.elbo is None:
      return record
    record['elbo_nats'] = dataclasses.asdict(self.elbo)
    record['kl_nats'] = dataclasses.asdict(self.kl)
    if self.iwae:
      record['iwae_nats'] = {str(k): dataclasses.asdict(v) for k, v in sorted(self.iwae.items())}
      record['nll_nats'] = dataclasses.asdict(self.nll)
      record['nll_num_samples'] = max(self.iwae)
    if self.elbo_bits_per_dim is not None:
      record['elbo_bpd'] = dataclasses.asdict(self.elbo_bits_per_dim)
      if self.iwae:
        record['iwae_bpd'] = {str(k): dataclasses.asdict(v) for k, v in sorted(self.iwae_bits_per_dim.items())}
        record['nll_bpd'] = record['iwae_bpd'][str(max(self.iwae))]
    return record


def evaluate_bounds(
  batches: Iterable[jax.typing.ArrayLike],
  *,
  encoder: _bounds.Encoder,
  decoder: _bounds.Decoder,
  log_likelihood: _bounds.LogLikelihood,
  key: jax.Array,
  elbo_num_samples: int = 1,
  iwae_num_samples: int | Sequence[int] | None = None,
  iwae_chunk_size: int | None = None,
  bits_per_dim_dims: int | None = None,
  dequantization_levels: int | None = None,
  mesh: jax.sharding.Mesh | None = None,
  progress: bool = False,
) -> BoundsSummary:
  """Mean ELBO and importance-weighted bounds over a dataset, with standard errors.

  Runs `jaxvae.elbo` and (if `iwae_num_samples` is set) `jaxvae.iwae_bounds`
  on every batch under one `jit`, each batch encoded once, batch `i` with its
  own key folded from `key`, each batch split over the devices of `mesh`
  (default: all devices).

  Args:
    batches: any iterable of data batches `[B, *event]` (floating, in the
      likelihood's domain); the last may be smaller. With several processes,
      each passes its own examples, in the same number of batches, and all
      get the summary of all examples.
    encoder, decoder, log_likelihood: as for `jaxvae.elbo`.
    key: PRNG key.
    elbo_num_samples: latent samples per example for the ELBO's reconstruction term.
    iwae_num_samples: K of the importance-weighted bound, or several K
      computed in one pass from shared samples (`jaxvae.iwae_bounds`);
      `None` skips it.
    iwae_chunk_size: samples per example decoded at once (see `jaxvae.iwae_bound`).
    bits_per_dim_dims: if given, bits/dim are meaningful for this many
      dimensions per example: only for likelihoods of discrete data
      (Bernoulli on binary data, discretised logistic), or densities of
      dequantised data (see `dequantization_levels`).
    dequantization_levels: set for a density of uniformly dequantised data
      scaled to [0, 1], `(x + u) / levels` (e.g. 256 for 8-bit pixels): the
      bits/dim then include `log2(levels)` per dimension and bound the
      discrete data's NLL (Theis et al. 2016, eq. 9). Bounds in nats stay
      those of the density.
    mesh: a 1-D `data` mesh (see `jaxvae._parallel.make_mesh`).
    progress: show a progress bar with an ETA.

  Returns:
    A `BoundsSummary`: `elbo`, `reconstruction`, `kl` and `iwae[K]` for each
    K, each an `Estimate` (mean and standard error over examples) in nats per
    example; `nll` (-L_K at the largest K); with `bits_per_dim_dims`, the
    same bounds negated in bits per dimension.

  Raises:
    ValueError: for bad sample counts, or an empty `batches`.
  """
  mesh = mesh or _parallel.make_mesh()
  bounds = make_bounds_fn(
    lambda params, condition: (encoder, decoder),
    log_likelihood=log_likelihood,
    elbo_num_samples=elbo_num_samples,
    iwae_num_samples=as_ks(iwae_num_samples),
    iwae_chunk_size=iwae_chunk_size,
    mesh=mesh,
  )
  total = len(batches) if hasattr(batches, '__len__') else None
  values = per_example_bounds(
    ({'image': np.asarray(x)} for x in batches), bounds, None, key=key, mesh=mesh, total=total, progress=progress
  )
  return summarize(values, bits_per_dim_dims=bits_per_dim_dims, dequantization_levels=dequantization_levels)


def make_bounds_fn(
  bind: Bind,
  *,
  log_likelihood: _bounds.LogLikelihood,
  elbo_num_samples: int,
  iwae_num_samples: Sequence[int] | None,
  iwae_chunk_size: int | None,
  mesh: jax.sharding.Mesh,
  prepare: Callable[[_types.Batch], jax.Array] | None = None,
  condition_fn: _types.ConditionFn | None = None,
  scored_mask_fn: Callable[[jax.Array | None], jax.Array | None] | None = None,
  deterministic: bool = False,
) -> BoundsFn:
  """The jitted `(params, batch, valid [B], key_data, batch_index) -> per-example values`.

  For `per_example_bounds`. `prepare(batch)` turns a batch into data in the
  likelihood's domain (default: `batch['image']` as it is); `bind(params,
  condition)` gives the encoder and decoder; `condition_fn(x, batch, key)`
  the condition of a conditional model (the bounds are then those of
  log p(x | condition)), drawn with one key for every batch (conditions that
  draw noise fix it per example by `batch['index']`); `scored_mask_fn(condition)`
  the dimensions the bounds cover, e.g. only the hidden pixels of an
  inpainting model (None: all). Parameters are an argument, not a closure, so
  one compilation serves every checkpoint, and globally sharded parameters
  work across processes.

  The values, each `[B]` and replicated on every device: `'valid'` (the rows
  that are examples rather than padding), `'elbo'`, `'reconstruction'`,
  `'kl'`, `'iwae'` (`{K: [B]}`) and, with a scored mask, `'dims'` (the
  dimensions each bound covers). A `deterministic` model (an autoencoder, a
  WAE) has no likelihood bound: only `'reconstruction'`, log p(x | z =
  encoder mean), is computed.
  """
  _checks.check_positive_int('elbo_num_samples', elbo_num_samples)
  for k in iwae_num_samples or ():
    _checks.check_positive_int('iwae_num_samples', k)

  def bounds(
    params: _types.Params, batch: _types.Batch, valid: jax.Array, key_data: jax.Array, batch_index: jax.Array
  ) -> dict[str, Any]:
    key = jax.random.wrap_key_data(key_data)
    condition_key, batches_key = jax.random.split(key)
    elbo_key, iwae_key = jax.random.split(jax.random.fold_in(batches_key, batch_index))
    x = batch['image'] if prepare is None else prepare(batch)
    condition = None if condition_fn is None else condition_fn(x, batch, condition_key)
    mask = None if scored_mask_fn is None else scored_mask_fn(condition)
    scored_log_likelihood = log_likelihood if mask is None else functools.partial(log_likelihood, mask=mask)
    values = {'valid': valid}
    if mask is not None:  # [B] dimensions scored per example
      values['dims'] = jnp.sum(jnp.broadcast_to(mask, x.shape).reshape(x.shape[0], -1), axis=-1)
    encoder, decoder = bind(params, condition)
    x, loc, log_var = _bounds.encode_checked(x, encoder)  # [B, D] each: every bound below shares this encoding
    if deterministic:
      return {**values, 'reconstruction': scored_log_likelihood(x, decoder(loc))}
    decoding = dict(decoder=decoder, log_likelihood=scored_log_likelihood)
    out = _bounds.elbo_given_posterior(x, loc, log_var, key=elbo_key, num_samples=elbo_num_samples, **decoding)
    values.update({'elbo': out.elbo, 'reconstruction': out.reconstruction, 'kl': out.kl})
    if iwae_num_samples:
      values['iwae'] = _bounds.iwae_bounds_given_posterior(
        x, loc, log_var, key=iwae_key, num_samples=iwae_num_samples, chunk_size=iwae_chunk_size, **decoding
      )
    return values

  replicated, sharded = _parallel.replicated(mesh), _parallel.batch_sharded(mesh)
  return jax.jit(bounds, in_shardings=(replicated, sharded, sharded, replicated, replicated), out_shardings=replicated)


def per_example_bounds(
  batches: Iterable[_types.Batch],
  bounds: BoundsFn,
  params: _types.Params,
  *,
  key: jax.Array,
  mesh: jax.sharding.Mesh,
  total: int | None = None,
  batch_size: int | None = None,
  progress: bool = False,
) -> dict[str, Any]:
  """Runs `bounds` on every batch, padded to split evenly over `mesh`.

  Every batch is padded to `batch_size` rows rounded up to a multiple of the
  local devices. With several processes, `batch_size` must be given (the
  same on all); on one process it defaults to the first batch's size.

  Returns:
    The per-example values (see `make_bounds_fn`, less `'valid'`) of the
    examples of all processes, as float64 numpy arrays `[N]`.

  Raises:
    ValueError: for an empty `batches`.
  """
  local_devices = mesh.size // jax.process_count()
  key_data = np.asarray(jax.random.key_data(key))
  rows_per_batch = None if batch_size is None else -(-batch_size // local_devices) * local_devices
  kept = []
  for i, batch in enumerate(tqdm.tqdm(batches, total=total, desc='eval', unit='batch', disable=not progress)):
    size = len(batch['image'])
    if rows_per_batch is None:
      rows_per_batch = -(-max(size, 1) // local_devices) * local_devices
    padded = jax.tree.map(functools.partial(_pad_rows, rows=rows_per_batch), (batch, np.ones(size, bool)))
    values = jax.device_get(bounds(params, *_parallel.global_batch(padded, mesh), key_data, np.int32(i)))
    valid = values.pop('valid')
    kept.append(jax.tree.map(lambda value, valid=valid: value[valid], values))
  if not kept:
    raise ValueError('`batches` is empty: there is nothing to evaluate.')
  return jax.tree.map(lambda *parts: np.concatenate(parts).astype(np.float64), *kept)


def _pad_rows(array: np.ndarray, rows: int) -> np.ndarray:
  """`array` with zero rows appended up to `rows`."""
  array = np.asarray(array)
  padded = np.zeros((rows, *array.shape[1:]), array.dtype)
  padded[: len(array)] = array
  return padded


def summarize(
  values: Mapping[str, Any], *, bits_per_dim_dims: int | None = None, dequantization_levels: int | None = None
) -> BoundsSummary:
  """The `BoundsSummary` of per-example values from `per_example_bounds`.

  Bits/dim are computed when `bits_per_dim_dims` is given (bounds of discrete
  data, or of data dequantised into `dequantization_levels` levels), per
  example over the dimensions it covers: `values['dims']` where the bounds
  cover only some dimensions of each example, else `bits_per_dim_dims`.
  """
  if 'elbo' not in values:
    return BoundsSummary(len(values['reconstruction']), Estimate.of(values['reconstruction']))
  iwae = dict(sorted(values.get('iwae', {}).items()))
  bits = {}
  if bits_per_dim_dims is not None:
    _checks.check_positive_int('bits_per_dim_dims', bits_per_dim_dims)
    dims = values.get('dims', bits_per_dim_dims)
    offset = math.log2(dequantization_levels) if dequantization_levels else 0.0

    def bits_of(bound: np.ndarray) -> Estimate:
      return Estimate.of(-bound / (dims * math.log(2.0)) + offset)

    bits = {'elbo_bits_per_dim': bits_of(values['elbo']), 'iwae_bits_per_dim': {k: bits_of(v) for k, v in iwae.items()}}
  return BoundsSummary(
    num_examples=len(values['elbo']),
    reconstruction=Estimate.of(values['reconstruction']),
    elbo=Estimate.of(values['elbo']),
    kl=Estimate.of(values['kl']),
    iwae={k: Estimate.of(bound) for k, bound in iwae.items()},
    **bits,
  )


def as_ks(iwae_num_samples: int | Sequence[int] | None) -> tuple[int, ...] | None:
  """K, or several K, as a sorted tuple without repeats; None stays None.

  Raises:
    ValueError: for an empty sequence or a K < 1.
  """
  if iwae_num_samples is None:
    return None
  ks = (iwae_num_samples,) if isinstance(iwae_num_samples, int) else tuple(iwae_num_samples)
  if not ks:
    raise ValueError('`iwae_num_samples` must hold at least one K; got an empty sequence.')
  for k in ks:
    _checks.check_positive_int('iwae_num_samples', k)
  return tuple(sorted(set(ks)))
