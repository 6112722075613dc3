"""Data parallelism over a `data` mesh: the same numbers on 8 devices as on 1, padding, errors, bfloat16."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxvae
from jaxvae import _data, _parallel, _run, _train


def _batches(batch_size, count):
  images = _data.load_mnist_5k()['train'].arrays['image']
  return [{'image': images[i * batch_size : (i + 1) * batch_size]} for i in range(count)]


def _train_steps(config, mesh, batches):
  run = _run.Run(config, mesh=mesh)
  state = run.init_state()
  step = _train.make_train_step(run)
  losses = []
  for batch in batches:
    state, metrics = step(state, _parallel.global_batch(batch, mesh))
    losses.append(float(metrics['train_loss']))
  return state, np.array(losses)


def test_eight_devices_match_one_device(smoke_config):
  assert jax.device_count() == 8  # tests/conftest.py fakes 8 CPU devices
  batches = _batches(smoke_config.train.batch_size, 4)
  state_1, losses_1 = _train_steps(smoke_config, _parallel.make_mesh(jax.devices()[:1]), batches)
  state_8, losses_8 = _train_steps(smoke_config, _parallel.make_mesh(), batches)
  leaf = jax.tree.leaves(state_8.params)[0]
  assert leaf.sharding.is_fully_replicated and len(leaf.sharding.device_set) == 8
  np.testing.assert_allclose(losses_8, losses_1, rtol=1e-5)
  chex.assert_trees_all_close(
    _parallel.local_copy(state_8.params), _parallel.local_copy(state_1.params), rtol=1e-5, atol=1e-6
  )


def test_the_batch_must_split_over_the_devices(smoke_config, tmp_path):
  smoke_config.train.batch_size = 12
  with pytest.raises(
    ValueError,
    match=r'config.train.batch_size \(12\) must split evenly over the 8 devices \(1 process\(es\) x 8 local '
    r'devices\); use a multiple of 8',
  ):
    jaxvae.train_and_evaluate(smoke_config, tmp_path)
  assert not (tmp_path / 'checkpoints').exists()


def test_sharded_evaluation_pads_uneven_batches():
  images = _data.load_mnist_5k()['test'].arrays['image'][:20]
  x = np.asarray(_data.prepare_eval_images(images, np.arange(20), data=jaxvae_default_data()))
  encoder = lambda x: (jnp.tanh(x.reshape(len(x), -1)[:, :3]), jnp.full((len(x), 3), -1.0))  # noqa: E731
  decoder = lambda z: jnp.tile(z.sum(-1, keepdims=True), (1, 784)).reshape(-1, 28, 28, 1)  # noqa: E731
  kwargs = dict(encoder=encoder, decoder=decoder, log_likelihood=jaxvae.bernoulli_log_likelihood, key=jax.random.key(0))
  kwargs.update(elbo_num_samples=3, iwae_num_samples=6)
  on_eight = jaxvae.evaluate_bounds([x[:13], x[13:]], mesh=_parallel.make_mesh(), **kwargs)
  on_one = jaxvae.evaluate_bounds([x[:13], x[13:]], mesh=_parallel.make_mesh(jax.devices()[:1]), **kwargs)
  assert on_eight.num_examples == 20
  for name in ('elbo', 'kl'):
    np.testing.assert_allclose(getattr(on_eight, name).mean, getattr(on_one, name).mean, rtol=1e-5)
  np.testing.assert_allclose(on_eight.iwae[6].mean, on_one.iwae[6].mean, rtol=1e-5)


def jaxvae_default_data():
  from conftest import load_config

  return load_config().data


def test_bfloat16_trains_and_tracks_float32(smoke_config):
  smoke_config.model.hidden_sizes = (64,)
  batches = _batches(smoke_config.train.batch_size, 60)
  mesh = _parallel.make_mesh()
  _, losses_32 = _train_steps(smoke_config, mesh, batches)
  smoke_config.model.dtype = 'bfloat16'
  state, losses_16 = _train_steps(smoke_config, mesh, batches)
  assert np.all(np.isfinite(losses_16))
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(state.params))  # parameters stay float32
  assert losses_16[-10:].mean() < 0.8 * losses_16[:5].mean()  # it learns
  np.testing.assert_allclose(losses_16[-10:].mean(), losses_32[-10:].mean(), rtol=0.02)
