"""Evaluation of a trained run's latest checkpoint: the `eval.py` driver."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae import (
  _checkpoint,
  _conditions,
  _data,
  _dataset_bounds,
  _disentanglement,
  _log_writer,
  _models,
  _parallel,
  _pictures,
  _run,
  _transfer,
  _types,
)


@dataclasses.dataclass(frozen=True)
class Evaluation:
  """What `evaluate` computed for one checkpoint of a run."""

  step: int  # the checkpoint's step
  dataset: str  # config.data.dataset
  split: str  # config.data.eval_split
  objective: str  # config.objective.name
  bounds: _dataset_bounds.BoundsSummary
  disentanglement: Mapping[str, float]  # metric name -> score; empty if none were asked for
  path: pathlib.Path | None = None  # the JSON record written (on process 0)
  pictures: tuple[pathlib.Path, ...] = ()  # the PNG files drawn (on process 0)
  # A structure-conditioned U-Net's scores (jaxvae._transfer), on process 0; empty for other models.
  transfer: Mapping[str, float] = dataclasses.field(default_factory=dict)

  def to_dict(self) -> dict[str, Any]:
    """The JSON record of `eval/step_<step>.json`."""
    return {
      'step': self.step,
      'dataset': self.dataset,
      'split': self.split,
      'objective': self.objective,
      **self.bounds.to_dict(),
      'disentanglement': dict(self.disentanglement),
      **({'appearance_transfer': dict(self.transfer)} if self.transfer else {}),
    }


def evaluate(
  workdir: str | pathlib.Path,
  *,
  iwae_num_samples: int | Sequence[int] | None = None,
  metrics: Sequence[str] | None = None,
  dataset: str | None = None,
  pictures: bool = True,
  output_dir: str | pathlib.Path | None = None,
  source: Any = None,
) -> Evaluation:
  """Evaluates the latest checkpoint in `workdir` on the evaluation split, with the config stored beside it.

  Bounds (or, for a deterministic model, the reconstruction), then on data
  with ground-truth factors the disentanglement metrics, then pictures
  (process 0). Writes under `output_dir` (default: `workdir`):
  `eval/step_<step>.json`, `pictures/*.png`, and the scalars of
  `evaluation_scalars` with the pictures at the checkpoint's step to
  `eval/metrics.jsonl` and TensorBoard (`eval/tensorboard`), files of its own
  that a trainer never writes. `format_table` makes the table `eval.py`
  prints. Reads `workdir` only (a trainer may be writing there); damaged
  checkpoints are passed over with a warning for the newest intact one.

  Args:
    workdir: the `--workdir` of a training run.
    iwae_num_samples: K of the importance-weighted bound, or several K from
      one pass; defaults to `config.eval.iwae_num_samples` of the run.
    metrics: disentanglement metrics to compute (names of
      `jaxvae.METRICS`); defaults to `config.eval.disentanglement_metrics`.
    dataset: if given, the dataset the caller means to evaluate on; it must
      be the one the checkpoint was trained on.
    pictures: whether to draw the pictures.
    output_dir: where to write (default: `workdir`); checked before any
      computation.
    source: the user's random-access source the run was trained on, for
      `config.data.dataset='source'` (see `train_and_evaluate`).

  Returns:
    An `Evaluation`.

  Raises:
    FileNotFoundError: if `workdir` has no intact checkpoint
      (`NoIntactCheckpointError` if it has damaged ones only).
    ValueError: for K < 1, a `dataset` other than the checkpoint's, metrics
      on a dataset without ground-truth factors, or an `output_dir` that
      cannot be written.
  """
  output_dir = pathlib.Path(workdir if output_dir is None else output_dir)
  if jax.process_index() == 0:
    _check_writable(output_dir)
  step, config = _checkpoint.latest_run(workdir)
  if dataset is not None and dataset != config.data.dataset:
    raise ValueError(
      f'the checkpoint in {workdir} was trained on {config.data.dataset!r}, not {dataset!r}: its model and '
      'preprocessing fit that dataset only. Evaluate it on its own dataset, or train on the other one.'
    )
  ks = _dataset_bounds.as_ks(config.eval.iwae_num_samples if iwae_num_samples is None else iwae_num_samples)
  metrics = tuple(config.eval.disentanglement_metrics if metrics is None else metrics)
  _check_metrics(config, metrics, source=source)
  run = _run.Run(config, source=source)
  step, state = run.restore(workdir)  # the newest intact checkpoint, perhaps newer than the config's
  batches = run.eval_batches()
  bounds = run.bounds_fn(elbo_num_samples=config.eval.elbo_num_samples, iwae_num_samples=ks)
  values = _dataset_bounds.per_example_bounds(
    batches,
    bounds,
    state.params,
    key=jax.random.key(config.eval.seed),
    mesh=run.mesh,
    total=len(batches),
    batch_size=batches.batch_size,
    progress=True,
  )
  evaluation = Evaluation(
    step=step,
    dataset=config.data.dataset,
    split=config.data.eval_split,
    objective=config.objective.name,
    bounds=run.summarize(values),
    disentanglement=_disentanglement_scores(run, state.params, metrics) if metrics else {},
  )
  if jax.process_index() != 0:
    return evaluation
  if config.model.architecture == 'unet':
    scores, transfer_picture = _appearance_transfer(run, state.params)
    evaluation = dataclasses.replace(evaluation, transfer=scores)
  path = output_dir / 'eval' / f'step_{step}.json'
  path.parent.mkdir(parents=True, exist_ok=True)
  writer = _log_writer.LogWriter(path.parent)
  try:
    drawn = []
    if pictures:
      drawn = _draw_pictures(output_dir, pathlib.Path(workdir), run, state.params, batches, step, writer)
      if evaluation.transfer:
        drawn.append(output_dir / 'pictures' / 'appearance_transfer.png')
        _pictures.save_png(drawn[-1], transfer_picture, scale=1 if transfer_picture.shape[0] > 400 else 2)
        writer.write_image(step, 'appearance_transfer', transfer_picture)
    writer.write_scalars(step, evaluation_scalars(evaluation))
  finally:
    writer.close()
  path.write_text(json.dumps(evaluation.to_dict(), indent=2) + '\n')
  return dataclasses.replace(evaluation, path=path, pictures=tuple(drawn))


def evaluation_scalars(evaluation: Evaluation) -> dict[str, float]:
  """The scalars `evaluate` logs at the checkpoint's step (TensorBoard, `metrics.jsonl`): `eval_<bound>_nats`, ...

  Bounds in nats per example (`eval_elbo_nats`, `eval_iwae_k<K>_nats`,
  `eval_nll_nats`, ...), their bits/dim where they mean something
  (`eval_elbo_bpd`, `eval_nll_bpd`), and `eval_<metric>` per disentanglement
  score. The names differ from the training log's `eval_elbo`, a one-sample
  estimate at each checkpoint.
  """
  bounds = evaluation.bounds
  scalars = {'eval_reconstruction_nats': bounds.reconstruction.mean}
  if bounds.elbo is not None:
    scalars.update(eval_elbo_nats=bounds.elbo.mean, eval_kl_nats=bounds.kl.mean)
    scalars.update({f'eval_iwae_k{k}_nats': estimate.mean for k, estimate in bounds.iwae.items()})
    if bounds.iwae:
      scalars['eval_nll_nats'] = bounds.nll.mean
    if bounds.elbo_bits_per_dim is not None:
      scalars['eval_elbo_bpd'] = bounds.elbo_bits_per_dim.mean
      if bounds.iwae:
        scalars['eval_nll_bpd'] = bounds.nll_bits_per_dim.mean
  scalars.update({f'eval_{name}': float(score) for name, score in evaluation.disentanglement.items()})
  scalars.update({f'eval_transfer_{name}': score for name, score in evaluation.transfer.items()})
  return scalars


def _check_writable(directory: pathlib.Path) -> None:
  """Raises ValueError unless `directory` exists or can be made, and can be written."""
  try:
    directory.mkdir(parents=True, exist_ok=True)
    probe = directory / f'.write_test_{os.getpid()}'
    probe.touch()
    probe.unlink()
  except OSError as error:
    raise ValueError(
      f'cannot write the evaluation to {directory} ({error.strerror or error}); pass --output_dir=DIR '
      '(evaluate(output_dir=...)) naming a directory you can write.'
    ) from None


def _check_metrics(config: _types.Config, metrics: Sequence[str], *, source: Any = None) -> None:
  """Raises ValueError for unknown metric names, or metrics on a dataset without ground-truth factors."""
  unknown = sorted(set(metrics) - set(_disentanglement.METRICS))
  if unknown:
    raise ValueError(f'unknown disentanglement metric {unknown[0]!r}; choose from {_disentanglement.METRICS}.')
  if metrics and not _data.dataset_info(config.data, source=source).has_factors:
    raise ValueError(
      'disentanglement metrics need data with ground-truth factors (the dsprites family, shapes3d, smallnorb, or '
      f'an array with factors); {config.data.dataset!r} has none. Ask for no metrics (eval.py --metrics=none).'
    )


def _posterior_mean_fn(run: _run.Run, local_params: Any) -> Callable[..., tuple[jax.Array, Any]]:
  """The jitted `(x, batch) -> (loc [B, D], condition)` of the run's encoder, on this process's devices."""
  key = jax.random.fold_in(jax.random.key(run.config.eval.seed), 1)

  @jax.jit
  def posterior_mean(x: jax.Array, batch: dict[str, jax.Array]) -> tuple[jax.Array, Any]:
    condition = run.condition(x, batch, key)
    encoder, _ = _models.bind_vae(run.vae, local_params, condition)
    return encoder(x)[0], condition

  return posterior_mean


def _disentanglement_scores(run: _run.Run, params: Any, metrics: Sequence[str]) -> dict[str, float]:
  """The metrics of Locatello et al. 2019 on the encoder's posterior means, on every process alike."""
  posterior_mean = _posterior_mean_fn(run, _parallel.local_copy(params))
  return _disentanglement.compute_all(
    run.ground_truth(),
    lambda observations: np.asarray(posterior_mean(jnp.asarray(observations, jnp.float32), {})[0]),
    seed=run.config.eval.seed,
    metrics=metrics,
    num_train=run.config.eval.metric_num_train or None,
    num_eval=run.config.eval.metric_num_eval or None,
  )


def _appearance_transfer(run: _run.Run, params: Any) -> tuple[dict[str, float], np.ndarray]:
  """The scores of `jaxvae._transfer` on `eval.batch_size` spread test examples, and `appearance_transfer.png`."""
  config = run.config
  transfer = _transfer.transfer_fn(run.vae, _parallel.local_copy(params), config.model.likelihood)
  sample = run.eval_sample(max(config.eval.batch_size, 2))
  inputs = jax.jit(run.prepare_eval)(sample)
  key = jax.random.fold_in(jax.random.key(config.eval.seed), 1)
  condition = run.condition(inputs, {name: jnp.asarray(value) for name, value in sample.items()}, key)
  rows = min(config.eval.num_image_rows, len(inputs))
  picture = _transfer.transfer_picture(
    np.asarray(inputs[:rows]), _transfer.transfer_grid(transfer, inputs[:rows], condition[:rows])
  )
  generated = transfer(inputs, condition, jnp.roll(condition, -1, axis=0))  # appearance n, structure n + 1
  kind = config.objective.condition
  maps = {'structure': _conditions.structure_map, 'segmentation': _conditions.segmentation_map}
  structure_map = None
  if kind in maps:
    structure_map = lambda images: np.asarray(maps[kind](jnp.asarray(images, jnp.float32)))  # noqa: E731
  scores = _transfer.transfer_scores(
    np.asarray(inputs), np.asarray(generated), structure_map=structure_map, masks=sample.get('mask')
  )
  return scores, picture


def _draw_pictures(
  output_dir: pathlib.Path,
  workdir: pathlib.Path,
  run: _run.Run,
  params: Any,
  batches: _data.EvalBatches,
  step: int,
  writer: _log_writer.LogWriter,
) -> list[pathlib.Path]:
  """The pictures of `_pictures`: from a spread sample of the split, and the posterior means of its examples.

  Only a latent space of at most 2 dimensions needs the means of every
  example (its scatter plot and its manifold over the data's range); other
  models read only the sample.
  """
  local_params = _parallel.local_copy(params)
  posterior_mean = _posterior_mean_fn(run, local_params)
  prepare = jax.jit(run.prepare_eval)
  sample = run.eval_sample(max(run.config.eval.batch_size, 2 * run.config.eval.num_image_rows))
  inputs = prepare(sample)
  sample_loc, condition = posterior_mean(inputs, {name: jnp.asarray(value) for name, value in sample.items()})
  locs, labels = [np.asarray(sample_loc)], [sample.get('label')]
  if run.config.model.latent_dim <= 2:
    locs, labels = [], []
    for batch in batches:
      if len(batch['index']):
        locs.append(np.asarray(posterior_mean(prepare(batch), {k: jnp.asarray(v) for k, v in batch.items()})[0]))
        labels.append(batch.get('label'))
  return _pictures.write_pictures(
    output_dir,
    config=run.config,
    vae=run.vae,
    params=local_params,
    inputs=inputs,
    labels=np.concatenate(labels) if labels[0] is not None else None,
    condition=condition,
    loc=np.concatenate(locs),
    writer=writer,
    step=step,
    training_log=workdir / 'metrics.jsonl',
  )


def format_table(evaluation: Evaluation) -> str:
  """A plain-text table of the bounds with their standard errors, and the disentanglement scores."""
  bounds = evaluation.bounds
  header = (
    f'{evaluation.dataset} {evaluation.split} split, {bounds.num_examples} examples, checkpoint step {evaluation.step}'
  )
  if bounds.elbo is None:
    return '\n'.join(
      [
        header,
        f'no likelihood bound: the {evaluation.objective} objective has a deterministic encoder, so it defines no '
        'p(x) to bound',
        f'{"log p(x | z = encoder mean)":<30}'
        f'{bounds.reconstruction.mean:.2f} ± {bounds.reconstruction.stderr:.2f} nats/example',
      ]
    )
  rows = [('ELBO', bounds.elbo, _bits(bounds, bounds.elbo_bits_per_dim))]
  ks = sorted(bounds.iwae)
  # With one K its bits/dim are shown once, on the NLL row.
  rows += [
    (f'IWAE bound, K={k}', bounds.iwae[k], _bits(bounds, bounds.iwae_bits_per_dim.get(k)) if len(ks) > 1 else '')
    for k in ks
  ]
  if ks:
    rows.append((f'NLL <= -IWAE, K={ks[-1]}', bounds.nll, _bits(bounds, bounds.nll_bits_per_dim)))
  lines = [header, f'{"bound":<22}{"nats/example":>22}{"-bound, bits/dim":>22}']
  lines.extend(f'{label:<22}{_nats(estimate):>22}{bits:>22}' for label, estimate, bits in rows)
  lines.append(f'{"  reconstruction":<22}{bounds.reconstruction.mean:>22.2f}')
  lines.append(f'{"  KL":<22}{bounds.kl.mean:>22.2f}')
  if evaluation.transfer:
    lines.append('appearance transfer (appearance of image n on the structure of image n + 1)')
    lines.extend(f'  {name:<50}{value:>8.3f}' for name, value in evaluation.transfer.items())
  if evaluation.disentanglement:
    lines.append('disentanglement (Locatello et al. 2019 protocols)')
    lines.extend(f'  {name:<40}{value:>8.3f}' for name, value in evaluation.disentanglement.items())
  return '\n'.join(lines)


def _nats(estimate: _dataset_bounds.Estimate) -> str:
  return f'{estimate.mean:.2f} ± {estimate.stderr:.2f}'


def _bits(bounds: _dataset_bounds.BoundsSummary, bits: _dataset_bounds.Estimate | None) -> str:
  if bounds.elbo_bits_per_dim is None:
    return 'n/a (continuous density)'
  return f'{bits.mean:.4f} ± {bits.stderr:.4f}'
