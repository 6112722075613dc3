"""A config turned into a run's pieces, built once for both drivers: model, condition, optimiser, state, evaluation.

`Run(config)` holds what training and evaluation share (as vdm's `Experiment`
does): the VAE, its condition function, the optimiser and its schedule, the
train state (fresh, or restored from a checkpoint), the input pipeline, the
evaluation data and the jitted bounds function over them. The drivers
(`_train`, `_evaluate`) receive these pieces and never import each other.
"""

from __future__ import annotations

import functools
import logging
import math
import pathlib
from collections.abc import Sequence
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from jaxvae import (
  _checkpoint,
  _conditions,
  _config,
  _data,
  _dataset_bounds,
  _family,
  _models,
  _parallel,
  _pictures,
  _types,
  _unet,
)


@flax.struct.dataclass
class TrainState:
  """Everything a resumed run needs; checkpointed whole."""

  step: jax.Array  # [] int32, steps taken
  params: _types.Params  # {'encoder': ..., 'decoder': ...}
  opt_state: optax.OptState
  rng: jax.Array  # [2] uint32 key data; step i uses fold_in(rng, i)
  discriminator: dict[str, Any]  # FactorVAE's {'params', 'opt_state'}; {} for other objectives


# The IWAE paper's schedule (Burda et al. 2016, Section 5): 8 stages, stage i
# lasting 3^i epochs at a learning rate of 10^(-i/7) times the initial one.
IWAE_SCHEDULE_STAGES = 8


def learning_rate_schedule(
  config: _types.Config, *, dataset: _data.DatasetInfo | None = None
) -> optax.ScalarOrSchedule:
  """`config.optim.learning_rate` under `config.optim.schedule`, as a function of the step.

  `dataset` (default: `_data.dataset_info(config.data)`) gives the epoch length of the 'iwae' schedule.
  """
  optim, num_steps = config.optim, config.train.num_train_steps
  if optim.schedule == 'constant':
    return optim.learning_rate
  if optim.schedule == 'cosine':
    return optax.cosine_decay_schedule(optim.learning_rate, num_steps)
  if optim.schedule == 'warmup_cosine':
    return optax.warmup_cosine_decay_schedule(0.0, optim.learning_rate, optim.warmup_steps, num_steps)
  # Batches per epoch as `_data.train_batches` counts them: those of the smallest process shard.
  processes = jax.process_count()
  examples = (dataset or _data.dataset_info(config.data)).splits[config.data.train_split]
  steps_per_epoch = (examples // processes) // (config.train.batch_size // processes)
  stage_ends = np.cumsum([3**i for i in range(IWAE_SCHEDULE_STAGES - 1)]) * steps_per_epoch
  return optax.piecewise_constant_schedule(
    optim.learning_rate, {int(end): 10 ** (-1 / (IWAE_SCHEDULE_STAGES - 1)) for end in stage_ends}
  )


def make_optimizer(config: _types.Config, *, dataset: _data.DatasetInfo | None = None) -> optax.GradientTransformation:
  """The optax optimiser named by `config.optim.name`, with its schedule and optional clipping.

  Updates with non-finite gradients are skipped by the train step itself (one
  `lax.cond` on the gradient norm it logs anyway): `optax.apply_if_finite`
  does the same with extra passes over every parameter, ~15% of a step of the
  default model.
  """
  optim = config.optim
  # The state's structure is the same whatever the learning rate, schedule and clipping (identity and clipping
  # have the same empty state; a constant is a schedule too), so a resume may change them, e.g. after a divergence.
  clip = optax.clip_by_global_norm(optim.grad_clip_norm) if optim.grad_clip_norm > 0 else optax.identity()
  schedule = learning_rate_schedule(config, dataset=dataset)
  if not callable(schedule):
    schedule = optax.constant_schedule(schedule)
  options = {'eps': optim.eps} if optim.eps > 0 else {}
  return optax.chain(clip, getattr(optax, optim.name)(learning_rate=schedule, **options))


class Run:
  """The pieces of the run `config` describes, on the devices of `mesh` (default: every device of every process).

  `source` is a user's random-access source (or a mapping of split names to
  sources) for `config.data.dataset='source'`.

  Attributes:
    config: the validated run config.
    source: the user's source, or None.
    dataset: the dataset's `DatasetInfo`.
    mesh: the 1-D `data` mesh.
    vae: the model (conditional if the objective says so).
    condition_fn: `(x, batch, key) -> condition`, or None for an unconditional model.
    log_likelihood: the decoder's `(x, decoder_output, *, mask=None) -> [..., B]`.
    optimizer: `make_optimizer(config)`.
    discriminator: FactorVAE's `(module, optimizer)`, else None.
    features: the batch features the model uses (`'image'`, and `'label'` for
      a label-conditioned one); the training pipeline sends only these to
      the devices.
  """

  def __init__(self, config: _types.Config, *, mesh: jax.sharding.Mesh | None = None, source: Any = None):
    _config.validate_config(config, source=source)
    self.config = config
    self.source = source
    self.mesh = mesh or _parallel.make_mesh()
    self.dataset = _data.dataset_info(config.data, source=source)
    self.event_shape = _data.event_shape(config.data, source=source)
    condition = config.objective.condition
    if config.model.architecture == 'unet':
      self.vae = _unet.make_unet_vae(event_shape=self.event_shape, conditional=condition != 'none', **config.model)
    else:
      model = {name: value for name, value in config.model.items() if name != 'prior'}  # N(0, I) only
      self.vae = _models.make_vae(event_shape=self.event_shape, conditional=condition != 'none', **model)
    self.condition_fn = _conditions.condition_fn(condition, num_classes=self.dataset.num_classes)
    self.log_likelihood = _models.log_likelihood_fn(config.model.likelihood)
    self.optimizer = make_optimizer(config, dataset=self.dataset)
    self.discriminator = _family.make_discriminator(config.objective) if config.objective.name == 'factor_vae' else None
    self.features = ('image', *_conditions.FEATURES[condition])

  # --------------------------------------------------------------------------- state

  def init_state(self) -> TrainState:
    """The initial state from `config.seed`, replicated over the mesh."""
    config = self.config

    def init() -> TrainState:
      params_key, rng = jax.random.split(jax.random.key(config.seed))
      example = jnp.zeros((1, *self.event_shape), jnp.float32)
      condition = None
      if self.condition_fn is not None:
        dummy = {'label': jnp.zeros((1,), jnp.int32), 'mask': jnp.zeros((*example.shape[:-1], 1), jnp.uint8)}
        condition = self.condition_fn(example, dummy, params_key)
      params = self.vae.init(params_key, example, condition)['params']
      discriminator = {}
      if self.discriminator is not None:
        module, discriminator_tx = self.discriminator
        z = jnp.zeros((1, config.model.latent_dim), jnp.float32)
        discriminator_params = module.init(jax.random.fold_in(params_key, 1), z)
        discriminator = {'params': discriminator_params, 'opt_state': discriminator_tx.init(discriminator_params)}
      return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=self.optimizer.init(params),
        rng=jax.random.key_data(rng),
        discriminator=discriminator,
      )

    # Initialised under jit straight into the replicated sharding: the same on
    # every process, with no host-to-device copy of a process-local value.
    return jax.jit(init, out_shardings=_parallel.replicated(self.mesh))()

  def restore_or_init(
    self, manager: ocp.CheckpointManager, workdir: str | pathlib.Path, data_iterator: Any
  ) -> TrainState:
    """The newest intact checkpoint's state, with `data_iterator` moved to its position; or a fresh state.

    Damaged checkpoints (missing, truncated or corrupt files, a checksum
    mismatch) are passed over with a warning naming each one and why, and
    moved to `workdir/damaged_checkpoints/` (the run saves those steps again).

    Raises:
      ValueError: if the checkpoint's run differs from this one in a field a
        resume must keep, or was saved by another number of processes.
      jaxvae.NoIntactCheckpointError: if checkpoints exist but none is intact
        (one that saved an input position other than its step is damaged).
    """
    state = self.init_state()
    if not _checkpoint.checkpoint_steps(workdir):
      return state
    abstract_state = jax.eval_shape(lambda: state)
    abstract_state = jax.tree.map(
      lambda leaf, like: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=like.sharding), abstract_state, state
    )

    def restore(step: int) -> TrainState:
      stored_config = _checkpoint.stored_config(workdir, step)
      try:
        changes = _config.check_resumable(stored_config, self.config, workdir)
      except ValueError as error:
        raise _checkpoint.MismatchError(str(error)) from None
      for change in changes:
        if change.startswith('config.optim.'):
          logging.warning('resuming from the checkpoint at step %d with %s', step, change)
      _checkpoint.check_process_layout(workdir, step)
      restored = _checkpoint.restore_state(manager, step, abstract_state, data_iterator=data_iterator)
      position = data_iterator.get_state()['next_index']
      if position != step or int(restored.step) != step:
        raise ValueError(
          f'the checkpoint at step {step} saved the state of step {int(restored.step)} and the input pipeline at '
          f'batch {position}; the checkpoint is inconsistent'
        )
      return restored

    step, state, skipped = _checkpoint.restore_latest_intact(workdir, restore)
    _agree_across_processes(step, 'the checkpoint to resume from')
    if skipped:
      # The run saves those steps again; the damaged directories would block it.
      _checkpoint.set_aside([s.step for s in skipped], workdir)
      manager.reload()
    return state

  def restore(self, workdir: str | pathlib.Path, steps: Sequence[int] | None = None) -> tuple[int, TrainState]:
    """The newest intact checkpoint's state in `workdir` (of `steps`, default: all), read-only.

    Replicated over this run's mesh, whatever topology saved it. Nothing in
    `workdir` is changed, so a trainer may be writing there meanwhile.

    Returns:
      `(step, state)`.

    Raises:
      jaxvae.NoIntactCheckpointError: if no checkpoint (of `steps`) is intact.
    """
    # Shardings on the target let a run saved on one topology be restored on another.
    replicated = _parallel.replicated(self.mesh)
    abstract_state = jax.tree.map(
      lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=replicated), jax.eval_shape(self.init_state)
    )
    manager = _checkpoint.open_manager(workdir, read_only=True)

    def restore(step: int) -> TrainState:
      _checkpoint.stored_config(workdir, step)  # a checkpoint without its config is damaged
      return _checkpoint.restore_state(manager, step, abstract_state)

    try:
      step, state, _ = _checkpoint.restore_latest_intact(
        workdir,
        restore,
        steps=None if steps is None else list(steps),
      )
    finally:
      manager.close()
    _agree_across_processes(step, 'the checkpoint to evaluate')
    return step, state

  # --------------------------------------------------------------------------- data

  def train_batches(self) -> Any:
    """This process's endless grain iterator of training batches (its share of each global batch)."""
    config = self.config
    return _data.train_batches(
      _data.open_source(config.data, config.data.train_split, source=self.source),
      batch_size=config.train.batch_size // jax.process_count(),
      seed=config.seed,
      process_index=jax.process_index(),
      process_count=jax.process_count(),
      in_memory=self.dataset.in_memory,
      num_threads=config.data.read_threads,
      features=self.features,
    )

  def eval_batches(self) -> _data.EvalBatches:
    """This process's share of the evaluation split, with labels where the data have them (for pictures)."""
    config = self.config
    return _data.eval_batches(
      config.data,
      batch_size=-(-config.eval.batch_size // jax.process_count()),
      num_examples=config.eval.num_examples,
      process_index=jax.process_index(),
      process_count=jax.process_count(),
      features=self._eval_features,
      source=self.source,
    )

  def eval_sample(self, num: int) -> _types.Batch:
    """`num` examples of the evaluation split for pictures: seeded by `eval.seed`, spread over the split.

    One example from each of `num` equal stretches of the split (of its first
    `eval.num_examples` if set), so a split stored sorted by class still
    shows every class. The batch has `'image'` as stored, `'index'` (the
    positions, which fix each example's evaluation noise) and `'label'`
    where the data have labels.
    """
    config = self.config
    split = _data.open_source(config.data, config.data.eval_split, source=self.source)
    size = min(len(split), config.eval.num_examples) if config.eval.num_examples else len(split)
    indices = _pictures.spread_indices(size, num, seed=config.eval.seed)
    batch = split.read(indices)
    return {**{name: np.asarray(batch[name]) for name in self._eval_features}, 'index': indices}

  @property
  def _eval_features(self) -> tuple[str, ...]:
    """What evaluation reads: the model's features, labels (for pictures) and exact masks (for scores) if any."""
    extra = (('label',) if self.dataset.num_classes else ()) + (('mask',) if self.dataset.has_mask else ())
    return tuple(dict.fromkeys((*self.features, *extra)))

  def prepare_eval(self, batch: _types.Batch) -> jax.Array:
    """An evaluation batch's images in the likelihood's domain, with noise fixed per example."""
    return _data.prepare_eval_images(
      batch['image'], batch['index'], data=self.config.data, max_value=self.dataset.max_value
    )

  def ground_truth(self) -> Any:
    """The data with the ground-truth-data protocol of the disentanglement metrics (`_disentanglement`).

    Observations are float32 in [0, 1], the images as the model sees them before binarisation.
    """
    config = self.config
    if self.dataset.origin == 'embedded':  # dSprites and its variants: sampled straight from the factor grid
      return _data.dsprites_generator(config.data)
    source = _data.open_source(config.data, config.data.train_split, source=self.source)
    return _data.FactorGroundTruth(source, max_value=self.dataset.max_value, factor_sizes=self.dataset.factor_sizes)

  def condition(self, x: jax.Array, batch: _types.Batch, key: jax.Array) -> jax.Array | None:
    """The condition of `x` for a conditional model, else None."""
    return None if self.condition_fn is None else self.condition_fn(x, batch, key)

  def scored_mask(self, condition: jax.Array | None) -> jax.Array | None:
    """The dimensions the model is trained and scored on (the hidden pixels of inpainting); None for all."""
    return _conditions.scored_mask(self.config.objective.condition, condition)

  # --------------------------------------------------------------------------- evaluation

  def bounds_fn(self, *, elbo_num_samples: int, iwae_num_samples: tuple[int, ...] | None = None):
    """The jitted bounds of the run's model on evaluation batches (`jaxvae._dataset_bounds.make_bounds_fn`)."""
    return _dataset_bounds.make_bounds_fn(
      functools.partial(_models.bind_vae, self.vae),
      log_likelihood=self.log_likelihood,
      elbo_num_samples=elbo_num_samples,
      iwae_num_samples=iwae_num_samples,
      iwae_chunk_size=self.config.eval.iwae_chunk_size,
      mesh=self.mesh,
      prepare=self.prepare_eval,
      condition_fn=self.condition_fn,
      scored_mask_fn=self.scored_mask,
      deterministic=self.config.objective.name in _family.DETERMINISTIC,
    )

  @property
  def has_discrete_likelihood(self) -> bool:
    """Whether the bounds bound log-probabilities of discrete data (directly or through dequantisation).

    Only then do bits/dim mean something.
    """
    config = self.config
    return config.model.likelihood in ('bernoulli', 'discretized_logistic') or config.data.dequantize == 'uniform'

  def summarize(self, values: dict[str, Any]) -> _dataset_bounds.BoundsSummary:
    """`_dataset_bounds.summarize` with the bits/dim settings the run's data and likelihood call for."""
    return _dataset_bounds.summarize(
      values,
      bits_per_dim_dims=math.prod(self.event_shape) if self.has_discrete_likelihood else None,
      dequantization_levels=256 if self.config.data.dequantize == 'uniform' else None,
    )


def _agree_across_processes(step: int, what: str) -> None:
  """Raises RuntimeError unless every process chose the same checkpoint `step` (each checks its own reads)."""
  if jax.process_count() == 1:
    return
  steps = np.asarray(multihost_utils.process_allgather(np.int64(step)))
  if len(set(steps.tolist())) > 1:
    raise RuntimeError(
      f'the processes found different intact checkpoints for {what} (steps {sorted(set(steps.tolist()))}): '
      'some checkpoint files are damaged or missing on some hosts only. Remove the damaged step directories.'
    )
