"""Training: state, optimiser, the jit-compiled step, and the `train.py` driver."""

from __future__ import annotations

import functools
import itertools
import math
import pathlib
import sys
from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm

from jaxvae import _checkpoint, _config, _data, _evaluate, _family, _images, _metrics, _models, _parallel

Params = Any
Metrics = dict[str, jax.Array]


@flax.struct.dataclass
class TrainState:
  """Everything a resumed run needs; checkpointed whole."""

  step: jax.Array  # [] int32, steps taken
  params: Params  # {'encoder': ..., 'decoder': ...}
  opt_state: optax.OptState
  rng: jax.Array  # [2] uint32 key data; step i uses fold_in(rng, i)
  discriminator: dict[str, Any]  # FactorVAE's {'params', 'opt_state'}; {} for other objectives


def make_vae(config: ml_collections.ConfigDict) -> _models.VAE:
  """The VAE of `config.model` for the examples of `config.data.dataset` (conditional if the objective says so)."""
  conditional = config.objective.condition != 'none'
  return _models.make_vae(event_shape=_data.event_shape(config.data), conditional=conditional, **config.model)


def condition_fn(config: ml_collections.ConfigDict) -> Callable[[jax.Array, _data.Batch, jax.Array], Any]:
  """`(x, batch, key) -> condition` (None for unconditional models), as `config.objective.condition` says."""
  num_classes = _data.DATASETS[config.data.dataset].num_classes
  return functools.partial(_family.make_condition, config.objective.condition, num_classes=num_classes)


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """The optax optimiser named by `config.optim.name`, with its schedule and optional clipping.

  Updates with non-finite gradients are skipped by the train step itself (one
  `lax.cond` on the gradient norm it logs anyway): `optax.apply_if_finite`
  does the same with extra passes over every parameter, ~15% of a step of the
  default model.
  """
  optim = config.optim
  transforms = []
  if optim.grad_clip_norm > 0:
    transforms.append(optax.clip_by_global_norm(optim.grad_clip_norm))
  options = {'eps': optim.eps} if optim.eps > 0 else {}
  transforms.append(getattr(optax, optim.name)(learning_rate=learning_rate_schedule(config), **options))
  return optax.chain(*transforms)


# The IWAE paper's schedule (Burda et al. 2016, Section 5): 8 stages, stage i
# lasting 3^i epochs at a learning rate of 10^(-i/7) times the initial one.
IWAE_SCHEDULE_STAGES = 8


def learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.ScalarOrSchedule:
  """`config.optim.learning_rate` under `config.optim.schedule`, as a function of the step."""
  optim, num_steps = config.optim, config.train.num_train_steps
  if optim.schedule == 'constant':
    return optim.learning_rate
  if optim.schedule == 'cosine':
    return optax.cosine_decay_schedule(optim.learning_rate, num_steps)
  if optim.schedule == 'warmup_cosine':
    return optax.warmup_cosine_decay_schedule(0.0, optim.learning_rate, optim.warmup_steps, num_steps)
  # Batches per epoch as `_data.train_batches` counts them: those of the smallest process shard.
  processes = jax.process_count()
  examples = _data.DATASETS[config.data.dataset].splits[config.data.train_split]
  steps_per_epoch = (examples // processes) // (config.train.batch_size // processes)
  stage_ends = np.cumsum([3**i for i in range(IWAE_SCHEDULE_STAGES - 1)]) * steps_per_epoch
  return optax.piecewise_constant_schedule(
    optim.learning_rate, {int(end): 10 ** (-1 / (IWAE_SCHEDULE_STAGES - 1)) for end in stage_ends}
  )


def init_state(
  config: ml_collections.ConfigDict,
  vae: _models.VAE,
  tx: optax.GradientTransformation,
  *,
  mesh: jax.sharding.Mesh | None = None,
) -> TrainState:
  """The initial state from `config.seed`, replicated over `mesh` (default: all devices)."""

  def init() -> TrainState:
    params_key, rng = jax.random.split(jax.random.key(config.seed))
    example = jnp.zeros((1, *_data.event_shape(config.data)), jnp.float32)
    condition = condition_fn(config)(example, {'label': jnp.zeros((1,), jnp.int32)}, params_key)
    params = vae.init(params_key, example, condition)['params']
    discriminator = {}
    if config.objective.name == 'factor_vae':
      module, discriminator_tx = _family.make_discriminator(config.objective)
      z = jnp.zeros((1, config.model.latent_dim), jnp.float32)
      discriminator_params = module.init(jax.random.fold_in(params_key, 1), z)
      discriminator = {'params': discriminator_params, 'opt_state': discriminator_tx.init(discriminator_params)}
    return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      opt_state=tx.init(params),
      rng=jax.random.key_data(rng),
      discriminator=discriminator,
    )

  # Initialised under jit straight into the replicated sharding: the same on
  # every process, with no host-to-device copy of a process-local value.
  return jax.jit(init, out_shardings=_parallel.replicated(mesh or _parallel.make_mesh()))()


def make_train_step(
  config: ml_collections.ConfigDict,
  vae: _models.VAE,
  tx: optax.GradientTransformation,
  *,
  mesh: jax.sharding.Mesh | None = None,
) -> Callable[[TrainState, _data.Batch], tuple[TrainState, Metrics]]:
  """The jit-compiled step `(state, batch) -> (state, metrics)`, data-parallel over `mesh`; it donates `state`.

  `batch['image']` `[B, H, W, C]` arrives as stored (uint8), split along the
  mesh's `data` axis (default mesh: all devices), and is scaled, binarised or
  dequantised inside the step as `config.data` says. The state is replicated;
  the loss is the mean over the global batch, so its gradient (all-reduced by
  XLA) is exactly that of one device on the whole batch. Metrics come back
  replicated, on device.
  """
  mesh = mesh or _parallel.make_mesh()
  log_likelihood = _models.log_likelihood_fn(config.model.likelihood)
  make_condition = condition_fn(config)
  factor_vae = config.objective.name == 'factor_vae'
  if factor_vae:
    discriminator_module, discriminator_tx = _family.make_discriminator(config.objective)
  dataset_size = _data.DATASETS[config.data.dataset].splits[config.data.train_split]

  def train_step(state: TrainState, batch: _data.Batch) -> tuple[TrainState, Metrics]:
    data_key, latent_key = jax.random.split(jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step))
    x = _data.prepare_train_images(data_key, batch['image'], data=config.data)
    condition = make_condition(x, batch, jax.random.fold_in(data_key, 1))
    discriminator = None
    if factor_vae:
      discriminator = functools.partial(discriminator_module.apply, state.discriminator['params'])

    def loss_fn(params: Params) -> tuple[jax.Array, tuple[Metrics, jax.Array]]:
      encoder, decoder = _models.bind_vae(vae, params, condition)
      loss, metrics, z = _family.family_loss(
        config.objective,
        x,
        encoder=encoder,
        decoder=decoder,
        log_likelihood=log_likelihood,
        key=latent_key,
        step=state.step,
        num_samples=config.train.num_samples,
        dataset_size=dataset_size,
        discriminator=discriminator,
      )
      return loss, (metrics, z)

    (loss, (objective_metrics, z)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    grad_norm = optax.tree.norm(grads)

    def update(params: Params, opt_state: optax.OptState) -> tuple[Params, optax.OptState]:
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state

    finite = jnp.isfinite(grad_norm)  # false if any gradient is inf or NaN
    params, opt_state = jax.lax.cond(finite, update, lambda *kept: kept, state.params, state.opt_state)
    metrics = {
      'train_loss': loss,
      **objective_metrics,
      'train_grad_norm': grad_norm,
      'train_skipped_updates': 1.0 - finite.astype(jnp.float32),  # its mean: the fraction skipped
    }
    discriminator_state = state.discriminator
    if factor_vae:
      discriminator_state, discriminator_metrics = _family.discriminator_step(
        discriminator_module, discriminator_tx, state.discriminator, z, jax.random.fold_in(latent_key, 1)
      )
      metrics.update(discriminator_metrics)
    state = state.replace(step=state.step + 1, params=params, opt_state=opt_state, discriminator=discriminator_state)
    return state, metrics

  replicated = _parallel.replicated(mesh)
  return jax.jit(
    train_step,
    in_shardings=(replicated, _parallel.batch_sharded(mesh)),
    out_shardings=(replicated, replicated),
    donate_argnums=0,
  )


def _restore_or_init(config, vae, tx, manager, workdir, data_iterator, mesh) -> TrainState:
  """The latest checkpoint's state, with `data_iterator` moved to its position; or a fresh state."""
  state = init_state(config, vae, tx, mesh=mesh)
  step = manager.latest_step()
  if step is None:
    return state
  _, stored_config = _checkpoint.latest_run(workdir)
  _checkpoint.check_resumable(stored_config, config, workdir)
  _checkpoint.check_process_layout(workdir, step)
  state = _checkpoint.restore_state(manager, step, state, data_iterator=data_iterator)
  position = data_iterator.get_state()['next_index']
  if position != int(state.step):
    raise ValueError(
      f'the checkpoint at step {int(state.step)} in {workdir} saved the input pipeline at batch {position}; '
      'the checkpoint is inconsistent. Resume from an earlier checkpoint (delete the later ones) or start afresh.'
    )
  return state


def restore_for_eval(
  workdir: str | pathlib.Path, config: ml_collections.ConfigDict, step: int, *, mesh: jax.sharding.Mesh
):
  """The VAE and the `TrainState` saved at `step` in `workdir`, replicated over `mesh`, for evaluation."""
  _config.validate_config(config)
  vae, tx = make_vae(config), make_optimizer(config)
  # Shardings on the target let a run saved on one topology be restored on another.
  replicated = _parallel.replicated(mesh)
  abstract_state = jax.tree.map(
    lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=replicated),
    jax.eval_shape(functools.partial(init_state, config, vae, tx, mesh=mesh)),
  )
  manager = _checkpoint.open_manager(workdir, config=config)
  try:
    return vae, _checkpoint.restore_state(manager, step, abstract_state)
  finally:
    manager.close()


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> TrainState:
  """Trains from `config` in `workdir`, resuming from its latest checkpoint if there is one.

  Writes `workdir/config.json`, checkpoints under `workdir/checkpoints`,
  `metrics.jsonl` and TensorBoard events, and at the end `samples.png` and
  `reconstructions.png`. Logs the test-set ELBO at every checkpoint.

  Returns:
    The final `TrainState`.

  Raises:
    ValueError: for a bad config, or one that differs from the run in `workdir`.
    FloatingPointError: if the training loss becomes non-finite.
  """
  _config.validate_config(config)
  mesh = _parallel.make_mesh()
  _parallel.check_batch_size(config.train.batch_size, mesh)
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  vae, tx = make_vae(config), make_optimizer(config)
  batches = _data.train_batches(
    _data.open_source(config.data, config.data.train_split),
    batch_size=config.train.batch_size // jax.process_count(),
    seed=config.seed,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
    in_memory=_data.DATASETS[config.data.dataset].in_memory,
    num_threads=config.data.read_threads,
  )
  test_data, _ = _evaluate.test_batches(config)
  manager = _checkpoint.open_manager(workdir, config=config)
  state = _restore_or_init(config, vae, tx, manager, workdir, batches, mesh)
  first_step, num_steps = int(state.step), config.train.num_train_steps
  if jax.process_index() == 0:
    (workdir / 'config.json').write_text(config.to_json(indent=2) + '\n', encoding='utf-8')
  train_step = make_train_step(config, vae, tx, mesh=mesh)
  test_bounds = _evaluate.model_bounds_fn(config, vae, mesh=mesh, elbo_num_samples=1)
  writer = _metrics.MetricWriter(workdir)
  progress = tqdm.tqdm(
    total=num_steps,
    initial=first_step,
    desc='train',
    unit='step',
    dynamic_ncols=True,
    mininterval=0.5 if sys.stderr.isatty() else 30.0,
    disable=jax.process_index() != 0,
  )
  pending: list[Metrics] = []  # device metrics since the last log line; fetched only when logged
  last_logged = first_step
  try:
    for step in range(first_step + 1, num_steps + 1):
      state, metrics = train_step(state, _parallel.global_batch(next(batches), mesh))
      pending.append(metrics)
      progress.update(1)
      is_last = step == num_steps
      checkpoint_due = step % config.train.checkpoint_every == 0 or is_last
      if step % config.train.log_every == 0 or checkpoint_due:
        scalars = _mean_metrics(pending, first=last_logged + 1, last=step)
        pending, last_logged = [], step
        scalars['train_param_norm'] = float(optax.tree.norm(state.params))
        if checkpoint_due:
          scalars.update(_test_elbo(config, test_bounds, state.params, test_data, step, mesh))
        writer.write_scalars(step, scalars)
        progress.set_postfix(loss=f'{scalars["train_loss"]:.2f}', refresh=False)
      if checkpoint_due:
        _checkpoint.save(manager, step, state, config, data_iterator=batches, force=is_last)
    manager.wait_until_finished()
    if jax.process_index() == 0:
      _write_images(config, vae, state, test_data, writer, workdir)
  finally:
    progress.close()
    writer.close()
    manager.close()
  return state


def _mean_metrics(pending: list[Metrics], *, first: int, last: int) -> dict[str, float]:
  """Averages the metrics of steps `first..last` on the host; raises if the loss was not finite."""
  means = {name: float(np.mean(values)) for name, values in jax.device_get(_stack(pending)).items()}
  if not np.isfinite(means['train_loss']):
    raise FloatingPointError(
      f'the training loss became non-finite between steps {first} and {last}; the last checkpoint '
      'before that is kept. Lower config.optim.learning_rate or set config.optim.grad_clip_norm, '
      "and check the data lie in the likelihood's domain."
    )
  return means


def _stack(pending: list[Metrics]) -> Metrics:
  return {name: jnp.stack([m[name] for m in pending]) for name in pending[0]}


def _test_elbo(config, test_bounds, params, test_data, step, mesh) -> dict[str, float]:
  """The test-set ELBO and KL, or for a deterministic model its reconstruction log-likelihood, in nats."""
  key = jax.random.fold_in(jax.random.key(config.eval.seed), step)
  values = _evaluate.per_example_bounds(
    _evaluate.model_items(test_data), test_bounds, params, key=key, mesh=mesh, batch_size=test_data.batch_size
  )
  if 'elbo' not in values:
    return {'eval_reconstruction': float(values['reconstruction'].mean())}
  return {'eval_elbo': float(values['elbo'].mean()), 'eval_kl': float(values['kl'].mean())}


def _write_images(config, vae, state, test_data, writer, workdir) -> None:
  """PNG grids of prior samples (decoder means) and of test inputs beside their reconstructions.

  A conditional model's samples take the conditions of the first test examples.
  """
  rows = config.eval.num_image_rows
  count = rows * rows
  items = list(itertools.islice(test_data.items(), math.ceil(count / test_data.batch_size)))
  inputs = jnp.asarray(np.concatenate([x for x, _ in items])[:count])
  extras = {name: jnp.asarray(np.concatenate([e[name] for _, e in items])[:count]) for name in items[0][1]}
  key = jax.random.key(config.eval.seed)
  condition = condition_fn(config)(inputs, extras, jax.random.fold_in(key, 1))
  # Process 0 alone draws the pictures, so on its own copy of the replicated parameters.
  encoder, decoder = _models.bind_vae(vae, _parallel.local_copy(state.params), condition)
  z = jax.random.normal(key, (len(inputs), config.model.latent_dim))
  samples = _models.mean_image(config.model.likelihood, decoder(z))
  loc, _ = encoder(inputs)
  reconstructions = _models.mean_image(config.model.likelihood, decoder(loc))
  half = count // 2
  pairs = np.stack([inputs[:half], np.asarray(reconstructions)[:half]], axis=1).reshape(-1, *inputs.shape[1:])
  step = int(state.step)
  for name, images in (('samples', samples), ('reconstructions', pairs)):
    grid = _images.image_grid(np.asarray(images), columns=rows)
    _images.save_png(workdir / f'{name}.png', grid)
    writer.write_image(step, name, grid)
