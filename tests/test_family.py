"""The VAE family end to end: every objective's config trains, checkpoints, resumes and evaluates."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import load_config

import jaxvae
from jaxvae import _conditions, _family, _models, _parallel, _run, _train

# The dSprites members compile a 64x64 conv net (~30 s each on 2 cores): they run with `-m slow`; CI
# runs every objective's step below, FactorVAE end to end, and the MNIST members end to end.
_FAMILY = (
  pytest.param('dsprites_betavae', marks=pytest.mark.slow),
  pytest.param('dsprites_capacity', marks=pytest.mark.slow),
  pytest.param('dsprites_betatcvae', marks=pytest.mark.slow),
  pytest.param('dsprites_dipvae', marks=pytest.mark.slow),
  'mnist_wae',
  'mnist_autoencoder',
  'mnist_iwae',
  'mnist_cvae:label',
  'mnist_cvae:inpaint',
  'mnist_cvae:structure',
)


@pytest.mark.parametrize('name', _FAMILY)
def test_each_objective_trains_and_evaluates(name, tmp_path):
  config = _load_variant(name, 'smoke') if ':' in name else load_config(name, 'smoke')
  state = jaxvae.train_and_evaluate(config, tmp_path)
  assert int(state.step) == config.train.num_train_steps
  bounds = jaxvae.evaluate(tmp_path, metrics=()).bounds  # tests/test_train.py covers the metrics on dSprites
  assert bounds.num_examples == config.eval.num_examples
  if config.objective.condition != 'none':
    assert any((tmp_path / 'pictures' / name).is_file() for name in ('completions.png', 'conditional_samples.png'))
  if config.objective.name in _family.DETERMINISTIC:
    assert bounds.elbo is None and np.isfinite(bounds.reconstruction.mean)
  else:
    # E[L_K] >= ELBO (Burda et al. 2016, Theorem 1): the estimates may cross only by their sampling noise.
    noise = np.hypot(bounds.elbo.stderr, bounds.iwae[4].stderr)
    assert np.isfinite(bounds.iwae[4].mean) and bounds.elbo.mean <= bounds.iwae[4].mean + 3 * noise


def _load_variant(name, *variants):
  """`configs/NAME.py:VARIANT` given as `'NAME:VARIANT'`, with more variants appended."""
  config_name, variant = name.split(':')
  return load_config(config_name, ','.join([variant, *variants]))


@pytest.mark.parametrize('objective', _family.OBJECTIVES)
def test_every_objective_trains_a_few_steps(smoke_config, objective):
  config = smoke_config
  config.objective.name = objective
  # label: a fixed condition, so the loss is comparable between steps (inpainting scores other pixels each step)
  config.objective.condition = 'label' if objective == 'cvae' else 'none'
  config.objective.capacity_steps = 2
  config.objective.factor_discriminator_hidden_size, config.objective.factor_discriminator_layers = 16, 2
  config.train.num_samples = 3 if objective == 'iwae' else 1
  config.model.hidden_sizes = (32,)  # wide enough that three steps lower every loss
  run = _run.Run(config, mesh=_parallel.make_mesh(jax.devices()[:1]))
  state = run.init_state()
  step = _train.make_train_step(run)
  images = np.random.default_rng(0).integers(0, 256, (8, 28, 28, 1), np.uint8)
  batch = {'image': images, 'label': np.arange(8, dtype=np.int32)}
  losses, capacities = [], []
  for _ in range(3):
    state, metrics = step(state, batch)
    losses.append(float(metrics['train_loss']))
    capacities.append(float(metrics.get('train_capacity', 0.0)))
  assert np.all(np.isfinite(losses))
  if objective == 'capacity_vae':  # the target moves: C = 0, 12.5, 25 nats at steps 0, 1, 2
    np.testing.assert_allclose(capacities, [0.0, 12.5, 25.0])
  else:
    assert losses[-1] < losses[0]
  if objective == 'factor_vae':
    assert np.isfinite(float(metrics['train_discriminator_loss']))


def test_factor_vae_trains_evaluates_and_resumes_with_its_discriminator(tmp_path):
  config = load_config('dsprites_factorvae', 'smoke')
  config.eval.num_examples = 50
  straight = jaxvae.train_and_evaluate(config, tmp_path / 'straight')
  bounds = jaxvae.evaluate(tmp_path / 'straight', metrics=(), pictures=False).bounds
  assert bounds.num_examples == 50 and np.isfinite(bounds.iwae[4].mean)
  config.train.num_train_steps = 3
  jaxvae.train_and_evaluate(config, tmp_path / 'resumed')
  config.train.num_train_steps = 6
  resumed = jaxvae.train_and_evaluate(config, tmp_path / 'resumed')
  for tree in ('params', 'discriminator'):
    chex.assert_trees_all_close(
      _parallel.local_copy(getattr(resumed, tree)), _parallel.local_copy(getattr(straight, tree)), rtol=1e-6
    )
  kernel = straight.discriminator['params']['params']['Dense_0']['kernel']
  assert kernel.shape == (4, 16)  # latent_dim x hidden_size of the smoke discriminator


def _initial_cvae(condition):
  run = _run.Run(load_config('mnist_cvae', f'{condition},smoke'))
  return run, _parallel.local_copy(run.init_state().params)


def test_inpainting_keeps_the_given_pixels_and_completions_differ():
  run, params = _initial_cvae('inpaint')
  config, vae = run.config, run.vae
  x = jnp.asarray(np.random.default_rng(0).random((4, 28, 28, 1)) > 0.5, jnp.float32)
  condition = run.condition(x, {}, jax.random.key(1))  # [4, 28, 28, 2]: masked image, mask
  mask = condition[..., 1:]
  assert set(np.unique(mask).tolist()) == {0.0, 1.0}
  assert np.all(mask.reshape(4, -1).min(1) == 0) and np.all(mask.reshape(4, -1).max(1) == 1)  # some, not all
  _, decoder = _models.bind_vae(vae, params, condition)
  completions = []
  for key in jax.random.split(jax.random.key(2), 3):
    generated = jax.nn.sigmoid(decoder(jax.random.normal(key, (4, config.model.latent_dim))))
    completions.append(mask * x + (1 - mask) * generated)  # the given pixels are the input's
  for completion in completions:
    np.testing.assert_array_equal(np.asarray(completion * mask), np.asarray(x * mask))
  assert not np.allclose(completions[0], completions[1])  # different z, different completions


@pytest.mark.parametrize('condition', ['label', 'structure'])
def test_conditional_samples_vary_with_z_for_one_condition(condition):
  run, params = _initial_cvae(condition)
  x = jnp.ones((1, 28, 28, 1)).at[:, 10:18, 10:18].set(0.0)
  one = run.condition(x, {'label': jnp.array([3])}, jax.random.key(0))
  conditions = jnp.repeat(one, 2, axis=0)
  _, decoder = _models.bind_vae(run.vae, params, conditions)
  samples = decoder(jax.random.normal(jax.random.key(1), (2, run.config.model.latent_dim)))
  assert not np.allclose(samples[0], samples[1])


@pytest.mark.parametrize('kind, lambda_diagonal', [('i', 100.0), ('ii', 10.0)])
def test_dip_vae_diagonal_weight_follows_each_kinds_reference(kind, lambda_diagonal):
  # disentanglement_lib: lambda_d = 10 lambda_od for DIP-VAE-I, lambda_d = lambda_od for DIP-VAE-II.
  config = load_config('dsprites_dipvae', 'ii' if kind == 'ii' else '')
  assert config.objective.dip_lambda_diagonal is None and config.objective.dip_lambda_off_diagonal == 10.0
  rng = np.random.default_rng(0)
  loc, log_var = jnp.asarray(rng.normal(size=(16, 3))), jnp.asarray(rng.normal(size=(16, 3)))
  _, metrics, _ = _family.family_loss(
    config.objective,
    jnp.zeros((16, 2)),
    encoder=lambda x: (loc, log_var),
    decoder=lambda z: jnp.zeros((len(z), 2)),
    log_likelihood=jaxvae.bernoulli_log_likelihood,
    key=jax.random.key(0),
    step=jnp.int32(0),
    num_samples=1,
    dataset_size=100,
  )
  expected = jaxvae.dip_vae_regularizer(
    loc, log_var, kind=kind, lambda_off_diagonal=10.0, lambda_diagonal=lambda_diagonal
  )
  other = jaxvae.dip_vae_regularizer(loc, log_var, kind=kind, lambda_off_diagonal=10.0, lambda_diagonal=55.0)
  assert abs(float(expected) - float(other)) > 1.0  # the diagonal weight matters on this batch
  np.testing.assert_allclose(metrics['train_dip_penalty'], expected, rtol=1e-6)


def test_structure_map_finds_edges():
  x = jnp.zeros((1, 8, 8, 1)).at[:, :, 4:].set(1.0)  # a vertical step between columns 3 and 4
  edges = _conditions.structure_map(x)[0, ..., 0]
  np.testing.assert_allclose(edges[2:6, 3:5], 1.0, atol=1e-5)
  np.testing.assert_allclose(edges[:, :2], 0.0, atol=1e-5)


@pytest.mark.parametrize(
  'name, field, value, message',
  [
    ('mnist_wae', 'train.num_samples', 5, r"the 'wae_mmd' objective has a deterministic encoder.*importance weighting"),
    ('mnist_iwae', 'train.num_samples', 1, r"the 'iwae' objective needs config.train.num_samples = K >= 2"),
    ('dsprites_betavae', 'objective.condition', 'label', r"a condition goes with objective 'cvae'"),
    ('mnist_cvae:label', 'objective.condition', 'none', r"a condition goes with objective 'cvae'"),
  ],
)
def test_incompatible_combinations(name, field, value, message):
  config = _load_variant(name) if ':' in name else load_config(name)
  section, key = field.split('.')
  config[section][key] = value
  with pytest.raises(ValueError, match=message):
    jaxvae.validate_config(config)


def test_label_condition_needs_labels():
  config = load_config('mnist_cvae', 'label')
  config.data.dataset, config.data.binarize = 'dsprites', 'none'
  config.model.architecture = 'conv'
  with pytest.raises(ValueError, match="condition='label' needs a labelled dataset; 'dsprites' has no labels"):
    jaxvae.validate_config(config)
