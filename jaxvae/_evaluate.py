"""Evaluation of log-likelihood bounds over a dataset, and the `eval.py` driver."""

from __future__ import annotations

import functools
import json
import math
import pathlib
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from jaxvae import (
  _bounds,
  _checkpoint,
  _checks,
  _data,
  _disentanglement,
  _dsprites,
  _family,
  _likelihoods,
  _metrics,
  _models,
  _parallel,
  _pictures,
)


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
) -> dict[str, float]:
  """Mean ELBO and importance-weighted bound over a dataset, with standard errors.

  Runs `jaxvae.elbo` and (if `iwae_num_samples` is set) `jaxvae.iwae_bound`
  on every batch under one `jit`, batch `i` with the key `fold_in(key, i)`,
  each batch split over the devices of `mesh` (default: all devices).

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
    bits_per_dim_dims: if given, also report bounds in bits per dimension for
      this many dimensions per example. Only meaningful for likelihoods of
      discrete data (Bernoulli on binary data, discretised logistic), or of
      densities of dequantised data (see `dequantization_levels`).
    dequantization_levels: set for a density of uniformly dequantised data
      scaled to [0, 1], `(x + u) / levels` (e.g. 256 for 8-bit pixels): the
      bits/dim then include `log2(levels)` per dimension and bound the
      discrete data's NLL (Theis et al. 2016, eq. 9). Bounds in nats stay
      those of the density.
    mesh: a 1-D `data` mesh (see `jaxvae._parallel.make_mesh`).
    progress: show a progress bar with an ETA.

  Returns:
    A dict of floats, in nats per example unless the key ends in `_bpd`:
    `num_examples`, `elbo_nats`, `elbo_nats_stderr`, `reconstruction_nats`,
    `kl_nats`; with IWAE, for each K `iwae_k{K}_nats` and its `_stderr`, and
    for the largest K `iwae_num_samples`, `iwae_nats`, `iwae_nats_stderr`
    and `nll_nats` (= -iwae_nats, the tightest upper bound on the NLL here;
    its standard error is `iwae_nats_stderr`); with `bits_per_dim_dims`,
    `elbo_bpd`, `iwae_k{K}_bpd` and `nll_bpd` (negated bounds) with their
    `_stderr`. Standard errors are over examples.

  Raises:
    ValueError: for bad sample counts, or an empty `batches`.
  """
  if bits_per_dim_dims is not None:
    _checks.check_positive_int('bits_per_dim_dims', bits_per_dim_dims)
  mesh = mesh or _parallel.make_mesh()
  bounds = make_bounds_fn(
    lambda params, condition: (encoder, decoder),
    log_likelihood=log_likelihood,
    elbo_num_samples=elbo_num_samples,
    iwae_num_samples=_as_ks(iwae_num_samples),
    iwae_chunk_size=iwae_chunk_size,
    mesh=mesh,
  )
  total = len(batches) if hasattr(batches, '__len__') else None
  items = ((x, {}) for x in batches)
  values = per_example_bounds(items, bounds, None, key=key, mesh=mesh, total=total, progress=progress)
  return summarize(values, bits_per_dim_dims=bits_per_dim_dims, dequantization_levels=dequantization_levels)


BoundsFn = Callable[[Any, jax.Array, _data.Batch, jax.Array, np.ndarray, np.ndarray], dict[str, jax.Array]]
ConditionFn = Callable[[jax.Array, _data.Batch, jax.Array], Any]


def make_bounds_fn(
  bind: Callable[[Any, Any], tuple[_bounds.Encoder, _bounds.Decoder]],
  *,
  log_likelihood: _bounds.LogLikelihood,
  elbo_num_samples: int,
  iwae_num_samples: Sequence[int] | None,
  iwae_chunk_size: int | None,
  mesh: jax.sharding.Mesh,
  condition_fn: ConditionFn | None = None,
  deterministic: bool = False,
) -> BoundsFn:
  """The jitted `(params, x [B, ...], extras, valid [B], key_data, batch_index) -> {name: [B]}`.

  For `per_example_bounds`. The outputs are replicated on every device and
  include `valid`, which marks the rows that are examples rather than padding.

  `bind(params, condition)` gives the encoder and decoder; `condition_fn(x,
  extras, key)` the condition of a conditional model (the bounds are then
  those of log p(x | condition)). Parameters are an argument, not a closure,
  so one compilation serves every checkpoint, and globally sharded parameters
  work across processes. A `deterministic` model (an autoencoder, a WAE) has
  no likelihood bound: only `reconstruction`, log p(x | z = encoder mean), is
  computed.
  """
  _checks.check_positive_int('elbo_num_samples', elbo_num_samples)
  for k in iwae_num_samples or ():
    _checks.check_positive_int('iwae_num_samples', k)

  def bounds(
    params: Any, x: jax.Array, extras: _data.Batch, valid: jax.Array, key_data: jax.Array, batch_index: jax.Array
  ) -> dict[str, jax.Array]:
    batch_key = jax.random.fold_in(jax.random.wrap_key_data(key_data), batch_index)
    elbo_key, iwae_key = jax.random.split(batch_key)
    condition = None if condition_fn is None else condition_fn(x, extras, jax.random.fold_in(batch_key, 1))
    encoder, decoder = bind(params, condition)
    if deterministic:
      loc, _ = encoder(x)
      return {'reconstruction': log_likelihood(x, decoder(loc)), 'valid': valid}
    bound_args = dict(encoder=encoder, decoder=decoder, log_likelihood=log_likelihood)
    out = _bounds.elbo(x, key=elbo_key, num_samples=elbo_num_samples, **bound_args)
    values = {'elbo': out.elbo, 'reconstruction': out.reconstruction, 'kl': out.kl, 'valid': valid}  # each [B]
    if iwae_num_samples:
      iwae = _bounds.iwae_bounds(
        x, key=iwae_key, num_samples=iwae_num_samples, chunk_size=iwae_chunk_size, **bound_args
      )
      values.update({f'iwae_k{k}': bound for k, bound in iwae.items()})
    return values

  replicated, sharded = _parallel.replicated(mesh), _parallel.batch_sharded(mesh)
  return jax.jit(
    bounds, in_shardings=(replicated, sharded, sharded, sharded, replicated, replicated), out_shardings=replicated
  )


def per_example_bounds(
  items: Iterable[tuple[np.ndarray, _data.Batch]],
  bounds: BoundsFn,
  params: Any,
  *,
  key: jax.Array,
  mesh: jax.sharding.Mesh,
  total: int | None = None,
  batch_size: int | None = None,
  progress: bool = False,
) -> dict[str, np.ndarray]:
  """Runs `bounds` on every `(x, extras)` batch, padded to split evenly over `mesh`.

  Every batch is padded to `batch_size` rows rounded up to a multiple of the
  local devices. With several processes, `batch_size` must be given (the
  same on all); on one process it defaults to the first batch's size.

  Returns:
    The per-example values of the examples of all processes.

  Raises:
    ValueError: for an empty `items`.
  """
  local_devices = mesh.size // jax.process_count()
  key_data = np.asarray(jax.random.key_data(key))
  rows_per_batch = None if batch_size is None else -(-batch_size // local_devices) * local_devices
  per_example: dict[str, list[np.ndarray]] = {}
  for i, (x, extras) in enumerate(tqdm.tqdm(items, total=total, desc='eval', unit='batch', disable=not progress)):
    x = np.asarray(x)
    if rows_per_batch is None:
      rows_per_batch = -(-max(len(x), 1) // local_devices) * local_devices
    padded = [_pad_rows(array, rows_per_batch) for array in (x, np.ones(len(x), bool))]
    padded_extras = {name: _pad_rows(np.asarray(value), rows_per_batch) for name, value in extras.items()}
    x_global, valid_global, extras_global = _parallel.global_batch((*padded, padded_extras), mesh)
    values = jax.device_get(bounds(params, x_global, extras_global, valid_global, key_data, np.int32(i)))
    keep = values.pop('valid')
    for name, value in values.items():
      per_example.setdefault(name, []).append(value[keep])
  if not per_example:
    raise ValueError('`batches` is empty: there is nothing to evaluate.')
  return {name: np.concatenate(parts).astype(np.float64) for name, parts in per_example.items()}


def _pad_rows(array: np.ndarray, rows: int) -> np.ndarray:
  """`array` with zero rows appended up to `rows`."""
  padded = np.zeros((rows, *array.shape[1:]), array.dtype)
  padded[: len(array)] = array
  return padded


def summarize(
  values: dict[str, np.ndarray], *, bits_per_dim_dims: int | None = None, dequantization_levels: int | None = None
) -> dict[str, float]:
  """Means and standard errors of per-example bounds (see `evaluate_bounds` for the keys).

  For a deterministic model (only `reconstruction` computed): `num_examples`
  and `reconstruction_nats` with its standard error.
  """
  if 'elbo' not in values:
    return {
      'num_examples': float(len(values['reconstruction'])),
      **_mean_and_stderr('reconstruction_nats', values['reconstruction']),
    }
  summary = {'num_examples': float(len(values['elbo']))}
  summary.update(_mean_and_stderr('elbo_nats', values['elbo']))
  summary['reconstruction_nats'] = float(values['reconstruction'].mean())
  summary['kl_nats'] = float(values['kl'].mean())
  ks = sorted(int(name.removeprefix('iwae_k')) for name in values if name.startswith('iwae_k'))
  bounds = [('elbo', 'elbo_bpd')]
  for k in ks:
    summary.update(_mean_and_stderr(f'iwae_k{k}_nats', values[f'iwae_k{k}']))
    bounds.append((f'iwae_k{k}', f'iwae_k{k}_bpd'))
  if ks:  # the largest K gives the tightest bound: the reported NLL
    summary['iwae_num_samples'] = float(ks[-1])
    summary.update(_mean_and_stderr('iwae_nats', values[f'iwae_k{ks[-1]}']))
    summary['nll_nats'] = -summary['iwae_nats']
    bounds.append((f'iwae_k{ks[-1]}', 'nll_bpd'))
  if bits_per_dim_dims is not None:
    for bound, name in bounds:
      bits = np.asarray(_likelihoods.nats_to_bits_per_dim(-values[bound], bits_per_dim_dims))
      summary.update(_mean_and_stderr(name, bits + (math.log2(dequantization_levels) if dequantization_levels else 0)))
  return summary


def _as_ks(iwae_num_samples: int | Sequence[int] | None) -> tuple[int, ...] | None:
  """K, or several K, as a sorted tuple without repeats; None stays None."""
  if iwae_num_samples is None:
    return None
  ks = (iwae_num_samples,) if isinstance(iwae_num_samples, int) else tuple(iwae_num_samples)
  if not ks:
    raise ValueError('`iwae_num_samples` must hold at least one K; got an empty sequence.')
  for k in ks:
    _checks.check_positive_int('iwae_num_samples', k)
  return tuple(sorted(set(ks)))


def _mean_and_stderr(name: str, values: np.ndarray) -> dict[str, float]:
  stderr = values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else float('nan')
  return {name: float(values.mean()), f'{name}_stderr': float(stderr)}


def test_batches(config: Any) -> tuple[_data.EvalBatches, int]:
  """This process's share of the evaluation split, as float32 batches in the likelihood's domain.

  Binarised and dequantised runs get noise fixed per example, so every model
  is scored on the same data. `config.eval.batch_size` is the global batch.

  Returns:
    The batches, and the dimensions per example.
  """
  batches = _data.eval_batches(
    config.data,
    batch_size=-(-config.eval.batch_size // jax.process_count()),
    num_examples=config.eval.num_examples,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
  )
  return batches, math.prod(_data.event_shape(config.data))


def model_bounds_fn(
  config: Any,
  vae: _models.VAE,
  *,
  mesh: jax.sharding.Mesh,
  elbo_num_samples: int,
  iwae_num_samples: Sequence[int] | None = None,
) -> BoundsFn:
  """`make_bounds_fn` for the run's VAE, taking its parameters (and its conditions, if it is conditional)."""
  from jaxvae import _train  # pylint: disable=import-outside-toplevel (train imports this module)

  return make_bounds_fn(
    functools.partial(_models.bind_vae, vae),
    log_likelihood=_models.log_likelihood_fn(config.model.likelihood),
    elbo_num_samples=elbo_num_samples,
    iwae_num_samples=iwae_num_samples,
    iwae_chunk_size=config.eval.iwae_chunk_size,
    mesh=mesh,
    condition_fn=_train.condition_fn(config) if config.objective.condition != 'none' else None,
    deterministic=config.objective.name in _family.DETERMINISTIC,
  )


def model_items(batches: _data.EvalBatches) -> Iterable[tuple[np.ndarray, _data.Batch]]:
  """`(x, extras)` of each evaluation batch, with only the extras a model's condition may use (labels)."""
  return ((x, {k: v for k, v in extras.items() if k == 'label'}) for x, extras in batches.items())


def summarize_for(config: Any, values: dict[str, np.ndarray]) -> dict[str, float]:
  """`summarize` with the bits/dim settings the run's data and likelihood call for."""
  return summarize(
    values,
    bits_per_dim_dims=math.prod(_data.event_shape(config.data)) if has_discrete_likelihood(config) else None,
    dequantization_levels=256 if config.data.dequantize == 'uniform' else None,
  )


def has_discrete_likelihood(config: Any) -> bool:
  """Whether the bounds bound log-probabilities of discrete data (directly or through dequantisation).

  Only then do bits/dim mean something.
  """
  return config.model.likelihood in ('bernoulli', 'discretized_logistic') or config.data.dequantize == 'uniform'


def evaluate(
  workdir: str | pathlib.Path,
  *,
  iwae_num_samples: int | Sequence[int] | None = None,
  metrics: Sequence[str] | None = None,
  dataset: str | None = None,
  pictures: bool = True,
) -> dict[str, float]:
  """Evaluates the latest checkpoint in `workdir` on the evaluation split, with the config stored beside it.

  Bounds (or, for a deterministic model, the reconstruction), then on data
  with ground-truth factors the disentanglement metrics, then pictures
  (process 0). Prints a table and writes `workdir/eval/step_<step>.json` and
  `workdir/pictures/*.png`.

  Args:
    workdir: the `--workdir` of a training run.
    iwae_num_samples: K of the importance-weighted bound, or several K from
      one pass; defaults to `config.eval.iwae_num_samples` of the run.
    metrics: disentanglement metrics to compute (names of
      `jaxvae.METRICS`); defaults to `config.eval.disentanglement_metrics`.
    dataset: if given, the dataset the caller means to evaluate on; it must
      be the one the checkpoint was trained on.
    pictures: whether to draw the pictures.

  Returns:
    The summary of `evaluate_bounds`, plus `step`, and `disentanglement_*` scores.

  Raises:
    FileNotFoundError: if `workdir` has no checkpoint.
    ValueError: for K < 1, a `dataset` other than the checkpoint's, or
      metrics on a dataset without ground-truth factors.
  """
  from jaxvae import _train  # pylint: disable=import-outside-toplevel (train imports this module)

  step, config = _checkpoint.latest_run(workdir)
  if dataset is not None and dataset != config.data.dataset:
    raise ValueError(
      f'the checkpoint in {workdir} was trained on {config.data.dataset!r}, not {dataset!r}: its model and '
      'preprocessing fit that dataset only. Evaluate it on its own dataset, or train on the other one.'
    )
  ks = _as_ks(config.eval.iwae_num_samples if iwae_num_samples is None else iwae_num_samples)
  metrics = tuple(config.eval.disentanglement_metrics if metrics is None else metrics)
  _disentanglement_setup(config, metrics)
  mesh = _parallel.make_mesh()
  vae, state = _train.restore_for_eval(workdir, config, step, mesh=mesh)
  batches, _ = test_batches(config)
  bounds = model_bounds_fn(config, vae, mesh=mesh, elbo_num_samples=config.eval.elbo_num_samples, iwae_num_samples=ks)
  values = per_example_bounds(
    model_items(batches),
    bounds,
    state.params,
    key=jax.random.key(config.eval.seed),
    mesh=mesh,
    total=len(batches),
    batch_size=batches.batch_size,
    progress=True,
  )
  summary = {'step': float(step), **summarize_for(config, values)}
  if metrics:
    summary.update(_disentanglement_scores(config, vae, state.params, metrics))
  if jax.process_index() == 0 and pictures:
    _draw_pictures(pathlib.Path(workdir), config, vae, state.params, batches, step)
  if jax.process_index() == 0:
    out_dir = pathlib.Path(workdir) / 'eval'
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f'step_{step}.json'
    record = {'dataset': config.data.dataset, 'split': config.data.eval_split, **summary}
    path.write_text(json.dumps(record, indent=2) + '\n')
    print(format_table(summary, config), file=sys.stdout)
    print(f'wrote {path}')
  return summary


def _disentanglement_setup(config: Any, metrics: Sequence[str]) -> None:
  """Raises ValueError for unknown metric names, or metrics on a dataset without ground-truth factors."""
  unknown = sorted(set(metrics) - set(_disentanglement.METRICS))
  if unknown:
    raise ValueError(f'unknown disentanglement metric {unknown[0]!r}; choose from {_disentanglement.METRICS}.')
  if metrics and not _data.DATASETS[config.data.dataset].has_factors:
    raise ValueError(
      f'disentanglement metrics need data with ground-truth factors (dsprites); {config.data.dataset!r} has '
      'none. Ask for no metrics (eval.py --metrics=none).'
    )


def _posterior_mean_fn(config: Any, vae: _models.VAE, local_params: Any) -> Callable[..., tuple[jax.Array, Any]]:
  """The jitted `(x, extras) -> (loc [B, D], condition)` of the run's encoder, on this process's devices."""
  from jaxvae import _train  # pylint: disable=import-outside-toplevel (train imports this module)

  make_condition = _train.condition_fn(config)
  key = jax.random.fold_in(jax.random.key(config.eval.seed), 1)

  @jax.jit
  def posterior_mean(x: jax.Array, extras: _data.Batch) -> tuple[jax.Array, Any]:
    condition = make_condition(x, extras, key)
    return _models.bind_vae(vae, local_params, condition)[0](x)[0], condition

  return posterior_mean


def _disentanglement_scores(config: Any, vae: _models.VAE, params: Any, metrics: Sequence[str]) -> dict[str, float]:
  """The metrics of Locatello et al. 2019 on the encoder's posterior means, on every process alike."""
  posterior_mean = _posterior_mean_fn(config, vae, _parallel.local_copy(params))
  scores = _disentanglement.compute_all(
    _dsprites.DSpritesSource(),
    lambda observations: np.asarray(posterior_mean(jnp.asarray(observations, jnp.float32), {})[0]),
    seed=config.eval.seed,
    metrics=metrics,
    num_train=config.eval.metric_num_train or None,
    num_eval=config.eval.metric_num_eval or None,
  )
  return {f'disentanglement_{name}': value for name, value in scores.items()}


def _draw_pictures(workdir: pathlib.Path, config: Any, vae: _models.VAE, params: Any, batches, step: int) -> None:
  """The pictures of `_pictures`, from the posterior means of this process's evaluation examples.

  Only a 2-D latent space's scatter plot needs the means of every example;
  the other pictures need the first batch, so only it is read again.
  """
  local_params = _parallel.local_copy(params)
  posterior_mean = _posterior_mean_fn(config, vae, local_params)
  every_example = config.model.latent_dim == 2
  locs, labels, first = [], [], None
  for x, extras in model_items(batches):
    if not len(x):
      continue
    loc, condition = posterior_mean(jnp.asarray(x), {k: jnp.asarray(v) for k, v in extras.items()})
    locs.append(np.asarray(loc))
    labels.append(extras.get('label'))
    if first is None:
      first = (jnp.asarray(x), condition)
    if not every_example:
      break
  writer = _metrics.MetricWriter(workdir)
  try:
    _pictures.write_pictures(
      workdir,
      config=config,
      vae=vae,
      params=local_params,
      inputs=first[0],
      labels=np.concatenate(labels) if labels[0] is not None else None,
      condition=first[1],
      loc=np.concatenate(locs),
      writer=writer,
      step=step,
    )
  finally:
    writer.close()


def format_table(summary: dict[str, float], config: Any) -> str:
  """A plain-text table of the bounds with their standard errors."""
  header = (
    f'{config.data.dataset} {config.data.eval_split} split, {int(summary["num_examples"])} examples, '
    f'checkpoint step {int(summary["step"])}'
  )
  if 'elbo_nats' not in summary:
    return '\n'.join(
      [
        header,
        f'no likelihood bound: the {config.objective.name} objective has a deterministic encoder, so it defines no '
        'p(x) to bound',
        f'{"log p(x | z = encoder mean)":<30}'
        f'{summary["reconstruction_nats"]:.2f} ± {summary["reconstruction_nats_stderr"]:.2f} nats/example',
      ]
    )
  ks = sorted(int(name[len('iwae_k') : -len('_nats')]) for name in summary if re.fullmatch(r'iwae_k\d+_nats', name))
  rows = [('ELBO', 'elbo_nats', 'elbo_bpd')]
  rows += [(f'IWAE bound, K={k}', f'iwae_k{k}_nats', f'iwae_k{k}_bpd') for k in ks]
  rows.append((f'NLL <= -IWAE, K={ks[-1]}', 'nll_nats', 'nll_bpd'))
  lines = [header, f'{"bound":<22}{"nats/example":>22}{"-bound, bits/dim":>22}']
  for label, nats_key, bpd_key in rows:
    stderr_key = nats_key if nats_key != 'nll_nats' else 'iwae_nats'
    bpd_key = bpd_key if nats_key != f'iwae_k{ks[-1]}_nats' or len(ks) > 1 else None  # one K: shown as the NLL
    nats = f'{summary[nats_key]:.2f} ± {summary[stderr_key + "_stderr"]:.2f}'
    if bpd_key and bpd_key in summary:
      bpd = f'{summary[bpd_key]:.4f} ± {summary[bpd_key + "_stderr"]:.4f}'
    else:
      bpd = 'n/a (continuous density)' if bpd_key and not has_discrete_likelihood(config) else ''
    lines.append(f'{label:<22}{nats:>22}{bpd:>22}')
  lines.append(f'{"  reconstruction":<22}{summary["reconstruction_nats"]:>22.2f}')
  lines.append(f'{"  KL":<22}{summary["kl_nats"]:>22.2f}')
  scores = {
    name.removeprefix('disentanglement_'): v for name, v in summary.items() if name.startswith('disentanglement_')
  }
  if scores:
    lines.append('disentanglement (Locatello et al. 2019 protocols)')
    lines.extend(f'  {name:<40}{value:>8.3f}' for name, value in scores.items())
  return '\n'.join(lines)
