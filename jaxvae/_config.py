"""Rules for run configs: every field known, every value sensible before any compilation, resumes consistent."""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import optax

from jaxvae import _conditions, _data, _disentanglement, _family, _models, _types, _unet

_Check = tuple[Callable[[Any], bool], str]  # (predicate, what the field must be)


def _int_at_least(low: int) -> _Check:
  return (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low), f'an integer >= {low}'


def _is_finite_number(v: Any) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _positive_number() -> _Check:
  return (lambda v: _is_finite_number(v) and v > 0), 'a finite number > 0'


def _non_negative_number() -> _Check:
  return (lambda v: _is_finite_number(v) and v >= 0), 'a finite number >= 0'


def _optional(check: _Check) -> _Check:
  is_valid, expectation = check
  return (lambda v: v is None or is_valid(v)), f'{expectation}, or None'


def _number() -> _Check:
  return _is_finite_number, 'a finite number'


def _string() -> _Check:
  return (lambda v: isinstance(v, str)), 'a string'


def _metric_names() -> _Check:
  def check(v: Any) -> bool:
    return isinstance(v, (tuple, list)) and all(name in _disentanglement.METRICS for name in v)

  return check, f'a tuple of metric names from {_disentanglement.METRICS}'


def _one_of(choices: tuple[str, ...]) -> _Check:
  return (lambda v: v in choices), f'one of {choices}'


def _widths(*, allow_empty: bool) -> _Check:
  def check(v: Any) -> bool:
    return (
      isinstance(v, (tuple, list))
      and (allow_empty or len(v) > 0)
      and all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in v)
    )

  return check, 'a tuple of integers >= 1' + ('' if allow_empty else ' (at least one)')


def _optax_optimizer() -> _Check:
  return (lambda v: isinstance(v, str) and callable(getattr(optax, v, None))), 'the name of an optax optimiser'


def _dataset_name() -> _Check:
  def check(v: Any) -> bool:
    return isinstance(v, str) and (
      v in _data.DATASETS or v in _data.USER_DATASETS or (v.startswith(_data.TFDS_PREFIX) and len(v) > 5)
    )

  names = (*_data.DATASETS, *_data.USER_DATASETS)
  return check, f'one of {names} or tfds:NAME'


def _bool() -> _Check:
  return (lambda v: isinstance(v, bool)), 'True or False'


def _fraction() -> _Check:
  return (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1), 'a number in (0, 1)'


SCHEDULES = ('constant', 'cosine', 'warmup_cosine', 'iwae')

_SCHEMA: Mapping[str, _Check] = {
  'seed': _int_at_least(0),
  'data.dataset': _dataset_name(),
  'data.data_dir': _string(),
  'data.path': _string(),
  'data.folder_labels': _bool(),
  'data.channels': _int_at_least(1),
  'data.test_fraction': _fraction(),
  'data.scream_path': _string(),
  'data.train_split': _string(),
  'data.eval_split': _string(),
  'data.crop_size': _int_at_least(0),
  'data.image_size': _int_at_least(0),
  'data.binarize': _one_of(_data.BINARIZATIONS),
  'data.dequantize': _one_of(_data.DEQUANTIZATIONS),
  'data.read_threads': _int_at_least(1),
  'model.architecture': _one_of(('mlp', 'conv', 'unet')),
  'model.prior': _one_of(_unet.PRIORS),
  'model.latent_dim': _int_at_least(1),
  'model.hidden_sizes': _widths(allow_empty=True),
  'model.conv_channels': _widths(allow_empty=False),
  'model.dense_size': _int_at_least(1),
  'model.activation': _one_of(_models.ACTIVATIONS),
  'model.likelihood': _one_of(_models.LIKELIHOODS),
  'model.gaussian_scale': _one_of(_models.GAUSSIAN_SCALES),
  'model.gaussian_fixed_log_scale': _number(),
  'model.dtype': _one_of(_models.DTYPES),
  'objective.name': _one_of(_family.OBJECTIVES),
  'objective.beta': _non_negative_number(),
  'objective.capacity_max': _non_negative_number(),
  'objective.capacity_steps': _int_at_least(1),
  'objective.capacity_gamma': _non_negative_number(),
  'objective.factor_gamma': _non_negative_number(),
  'objective.factor_discriminator_hidden_size': _int_at_least(1),
  'objective.factor_discriminator_layers': _int_at_least(1),
  'objective.factor_discriminator_learning_rate': _positive_number(),
  'objective.dip_kind': _one_of(('i', 'ii')),
  'objective.dip_lambda_off_diagonal': _non_negative_number(),
  'objective.dip_lambda_diagonal': _optional(_non_negative_number()),
  'objective.wae_mmd_weight': _non_negative_number(),
  'objective.condition': _one_of(_conditions.CONDITIONS),
  'optim.name': _optax_optimizer(),
  'optim.learning_rate': _positive_number(),
  'optim.schedule': _one_of(SCHEDULES),
  'optim.warmup_steps': _int_at_least(0),
  'optim.grad_clip_norm': _non_negative_number(),
  'optim.eps': _non_negative_number(),
  'train.batch_size': _int_at_least(1),
  'train.num_train_steps': _int_at_least(1),
  'train.num_samples': _int_at_least(1),
  'train.log_every': _int_at_least(1),
  'train.checkpoint_every': _int_at_least(1),
  'train.image_every': _int_at_least(0),
  'train.keep_checkpoints': _int_at_least(1),
  'eval.batch_size': _int_at_least(1),
  'eval.num_examples': _int_at_least(0),
  'eval.elbo_num_samples': _int_at_least(1),
  'eval.iwae_num_samples': _widths(allow_empty=False),
  'eval.iwae_chunk_size': _int_at_least(1),
  'eval.seed': _int_at_least(0),
  'eval.disentanglement_metrics': _metric_names(),
  'eval.metric_num_train': _int_at_least(0),
  'eval.metric_num_eval': _int_at_least(0),
  'eval.num_image_rows': _int_at_least(1),
}


def validate_config(config: _types.Config, *, source: Any = None) -> None:
  """Checks a run config against the schema of `configs/default.py`, and against its data.

  Args:
    config: the run config.
    source: a user's random-access source, for `config.data.dataset='source'`.

  Raises:
    ValueError: naming the first unknown field, missing field, or bad value,
      with what it should be.
  """
  flat = flatten(config.to_dict())
  unknown = sorted(set(flat) - set(_SCHEMA))
  if unknown:
    check_field_names(unknown)
  missing = sorted(set(_SCHEMA) - set(flat))
  if missing:
    raise ValueError(f'config field {missing[0]!r} is missing; start from configs/default.py, which sets every field.')
  for path, (is_valid, expectation) in _SCHEMA.items():
    if not is_valid(flat[path]):
      raise ValueError(f'config.{path} must be {expectation}; got {flat[path]!r}.')

  if config.optim.eps > 0 and 'eps' not in inspect.signature(getattr(optax, config.optim.name)).parameters:
    raise ValueError(f'optax.{config.optim.name} takes no eps; set config.optim.eps=0 (got {config.optim.eps}).')
  if config.optim.schedule == 'warmup_cosine' and config.optim.warmup_steps >= config.train.num_train_steps:
    raise ValueError(
      f'config.optim.warmup_steps ({config.optim.warmup_steps}) must be smaller than '
      f'config.train.num_train_steps ({config.train.num_train_steps}).'
    )
  _data.check_data_config(config.data, source=source)
  dataset = _data.dataset_info(config.data, source=source)
  _check_preprocessing(config, dataset)
  _check_objective(config, dataset)
  _check_structure_model(config, dataset, _data.event_shape(config.data, source=source))
  if config.eval.disentanglement_metrics and not dataset.has_factors:
    raise ValueError(
      f'config.eval.disentanglement_metrics need data with ground-truth factors (the dsprites family, shapes3d, '
      f'smallnorb, or an array with factors); {config.data.dataset!r} has none. '
      'Set config.eval.disentanglement_metrics=().'
    )


def check_field_names(paths: list[str] | tuple[str, ...]) -> None:
  """Raises ValueError for the first of the dotted config field `paths` that the schema does not know.

  The message suggests the closest known fields: `num_train_steps` points to
  `train.num_train_steps`, `train.batch_sise` to `train.batch_size`.

  Raises:
    ValueError: naming the unknown field, the fields it may mean and the
      known fields of its section.
  """
  for path in paths:
    if path in _SCHEMA:
      continue
    leaf = path.rpartition('.')[2]
    # A right field under the wrong section first, then fields spelled alike.
    suggestions = [k for k in _SCHEMA if k.rpartition('.')[2] == leaf]
    suggestions += [k for k in difflib.get_close_matches(path, _SCHEMA, n=3, cutoff=0.6) if k not in suggestions]
    hint = f' Did you mean {" or ".join(repr(k) for k in suggestions[:3])}?' if suggestions else ''
    section = path.rpartition('.')[0]
    known = sorted(k for k in _SCHEMA if k.rpartition('.')[0] == section) if section else []
    here = f' Known fields here: {", ".join(known)}.' if known else ''
    raise ValueError(f'unknown config field {path!r}.{hint}{here}')


def _check_objective(config: _types.Config, dataset: _data.DatasetInfo) -> None:
  """The objective must fit the data, the sampling settings and its condition."""
  objective, num_samples = config.objective, config.train.num_samples
  if (objective.name == 'cvae') != (objective.condition != 'none'):
    raise ValueError(
      f'config.objective.condition is {objective.condition!r} with the {objective.name!r} objective: a condition '
      "goes with objective 'cvae' and only there; set both, or condition='none'."
    )
  if objective.condition == 'label' and not dataset.num_classes:
    raise ValueError(
      f"config.objective.condition='label' needs a labelled dataset; {config.data.dataset!r} has no labels. "
      "Use condition='inpaint' or 'structure', or a labelled dataset such as mnist_5k."
    )
  if objective.name == 'iwae' and num_samples < 2:
    raise ValueError(
      f"the 'iwae' objective needs config.train.num_samples = K >= 2 importance samples; got {num_samples} "
      "(K = 1 is the VAE: use objective 'vae')."
    )
  if objective.name == 'beta_tcvae' and num_samples != 1:
    raise ValueError(
      f"the 'beta_tcvae' objective estimates its KL decomposition at one latent sample per example; set "
      f'config.train.num_samples=1 (got {num_samples}).'
    )
  if objective.name in _family.DETERMINISTIC and num_samples != 1:
    raise ValueError(
      f'the {objective.name!r} objective has a deterministic encoder: it draws no latent samples, so '
      f'config.train.num_samples must be 1 (got {num_samples}); importance weighting (IWAE) does not apply to it.'
    )


def _check_structure_model(config: _types.Config, dataset: _data.DatasetInfo, event_shape: tuple[int, ...]) -> None:
  """The Variational U-Net, its learned prior and the structure maps must fit each other and the data."""
  model, condition = config.model, config.objective.condition
  if condition == 'mask' and not dataset.has_mask:
    raise ValueError(
      f"config.objective.condition='mask' needs data that carry exact shape masks (shapes, shapes_32); "
      f"{config.data.dataset!r} has none. Use a structure map computed from the image: 'structure' (edges) or "
      "'segmentation'."
    )
  if model.prior == 'learned' and model.architecture != 'unet':
    raise ValueError(
      f"config.model.prior='learned' is the Variational U-Net's p(z | y), learned from the structure's "
      f'features; the {model.architecture!r} architecture has only the N(0, I) prior. Set '
      "config.model.architecture='unet' or config.model.prior='standard_normal'."
    )
  if model.architecture != 'unet':
    return
  if condition not in _conditions.STRUCTURE_KINDS:
    raise ValueError(
      f'the unet architecture generates from a structure map; config.objective.condition must be one of '
      f"{_conditions.STRUCTURE_KINDS} (with objective 'cvae'); got {condition!r}."
    )
  _unet.check_unet_image_shape(event_shape, len(model.conv_channels))


def _check_preprocessing(config: _types.Config, dataset: _data.DatasetInfo) -> None:
  """The data's preprocessing must give what the likelihood models."""
  data = config.data
  if dataset.binary and (data.binarize != 'none' or data.dequantize != 'none'):
    raise ValueError(
      f"{data.dataset!r} is already binary: set config.data.binarize='none' and config.data.dequantize='none'."
    )
  if data.binarize == 'dynamic' and data.dequantize != 'none':
    raise ValueError("config.data.binarize='dynamic' and config.data.dequantize='uniform' exclude each other.")
  if data.dequantize == 'uniform' and config.model.likelihood != 'gaussian':
    raise ValueError(
      'uniform dequantisation makes continuous data, for a density such as the Gaussian likelihood; the '
      f"{config.model.likelihood} likelihood models discrete data: set config.data.dequantize='none'."
    )
  binary = dataset.binary or data.binarize == 'dynamic'
  if config.model.likelihood == 'bernoulli' and not binary:
    raise ValueError(
      f'a Bernoulli likelihood needs binary data, but {data.dataset!r} is grey-valued and '
      f"config.data.binarize is {data.binarize!r}; set config.data.binarize='dynamic'."
    )
  if config.model.likelihood == 'discretized_logistic' and binary:
    raise ValueError(
      "the discretised-logistic likelihood models 8-bit pixel values; set config.data.binarize='none' "
      'or use the Bernoulli likelihood for binary data.'
    )


# Fields that may change when a run is resumed: how long it runs, how often it
# logs and saves, how it is evaluated, and (to go on after a divergence from the
# last good checkpoint) the optimiser's learning rate, schedule and clipping,
# which leave the optimiser state's structure alone. Anything else would make
# the restored state mean something different.
_RESUMABLE_CHANGES = (
  'data.data_dir',
  'data.read_threads',
  'optim.learning_rate',
  'optim.schedule',
  'optim.warmup_steps',
  'optim.grad_clip_norm',
  'train.num_train_steps',
  'train.log_every',
  'train.checkpoint_every',
  'train.image_every',
  'train.keep_checkpoints',
  'eval.',
)


def check_resumable(stored: _types.Config, config: _types.Config, workdir: Any) -> list[str]:
  """Checks that `config` may resume the run `stored` in `workdir`.

  Returns:
    The changes it makes, one `config.FIELD changed from OLD to NEW` each.

  Raises:
    ValueError: naming the first field that a resume must keep and `config` changes.
  """
  stored_flat, flat = flatten(stored.to_dict()), flatten(config.to_dict())
  changes = []
  for path in sorted(set(stored_flat) | set(flat)):
    # The cosine schedules are functions of the run's length: lengthening it would rescale the past.
    schedule_depends_on_length = (
      path == 'train.num_train_steps'
      and flat.get('optim.schedule') in ('cosine', 'warmup_cosine')
      and stored_flat.get('optim.schedule') == flat.get('optim.schedule')
    )
    if path.startswith(_RESUMABLE_CHANGES) and path in stored_flat and path in flat and not schedule_depends_on_length:
      if stored_flat[path] != flat[path]:
        changes.append(f'config.{path} changed from {stored_flat[path]!r} to {flat[path]!r}')
      continue
    if stored_flat.get(path) != flat.get(path):
      raise ValueError(
        f'{workdir} holds a run with config.{path} = {stored_flat.get(path)!r}, but this run sets '
        f'{flat.get(path)!r}. Resume with the same setting, or start the new run in a fresh --workdir.'
      )
  return changes


def flatten(tree: Mapping[str, Any], prefix: str = '') -> dict[str, Any]:
  """`{'train': {'batch_size': 1}}` -> `{'train.batch_size': 1}`."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, Mapping):
      flat.update(flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat
