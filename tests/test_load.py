"""`jaxvae.load`: a trained model from Python, round-tripped through its checkpoints."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import load_config

import jaxvae
from jaxvae import _data, _models, _parallel


def _test_digits(n=6):
  images = _data.load_mnist_5k()['test'].arrays['image'][:: 1000 // n][:n]
  return (images >= 128).astype(np.float32)  # [n, 28, 28, 1] binary


def test_load_round_trips_the_trained_parameters(smoke_run):
  workdir, state = smoke_run
  model = jaxvae.load(workdir)
  assert model.step == 6 and model.config.model.latent_dim == 4 and not model.conditional
  jax.tree.map(np.testing.assert_array_equal, _parallel.local_copy(model.params), _parallel.local_copy(state.params))
  earlier = jaxvae.load(workdir, step=3)
  assert earlier.step == 3
  changed = jax.tree.map(
    lambda a, b: not np.array_equal(a, b), _parallel.local_copy(earlier.params), _parallel.local_copy(model.params)
  )
  assert any(jax.tree.leaves(changed))
  with pytest.raises(FileNotFoundError, match=r'no checkpoint at step 4 in .*; its steps are \[3, 6\]'):
    jaxvae.load(workdir, step=4)


def test_encode_decode_sample_reconstruct_interpolate(smoke_run):
  workdir, state = smoke_run
  model = jaxvae.load(workdir)
  x = _test_digits()
  encoder, decoder = _models.bind_vae(model.vae, _parallel.local_copy(state.params))
  loc, log_var = model.encode(x)
  expected_loc, expected_log_var = encoder(jnp.asarray(x))
  assert loc.shape == log_var.shape == (6, 4)
  np.testing.assert_allclose(loc, expected_loc, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(log_var, expected_log_var, rtol=1e-5, atol=1e-6)
  reconstruction = model.reconstruct(x)
  np.testing.assert_allclose(reconstruction, jax.nn.sigmoid(decoder(expected_loc)), rtol=1e-5, atol=1e-6)
  z = jax.random.normal(jax.random.key(3), (5, 4))
  np.testing.assert_allclose(model.sample(jax.random.key(3), 5), model.decode(z), rtol=1e-6)
  assert model.sample(jax.random.key(0), 3).shape == (3, 28, 28, 1)
  path = model.interpolate(x[:2], x[2:4], num=5)
  assert path.shape == (2, 5, 28, 28, 1)
  np.testing.assert_allclose(path[:, 0], reconstruction[:2], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(path[:, -1], reconstruction[2:4], rtol=1e-5, atol=1e-6)
  midpoint = model.decode((loc[:1] + loc[2:3]) / 2)
  np.testing.assert_allclose(model.interpolate(x[0], x[2], num=3)[1], midpoint[0], rtol=1e-5, atol=1e-6)


def test_bounds_match_evaluate_bounds(smoke_run):
  workdir, state = smoke_run
  model = jaxvae.load(workdir)
  x = _test_digits()
  summary = model.bounds(x, key=jax.random.key(0), num_samples=(1, 10))
  encoder, decoder = _models.bind_vae(model.vae, _parallel.local_copy(state.params))
  expected = jaxvae.evaluate_bounds(
    [x],
    encoder=encoder,
    decoder=decoder,
    log_likelihood=jaxvae.bernoulli_log_likelihood,
    key=jax.random.key(0),
    iwae_num_samples=(1, 10),
    iwae_chunk_size=model.config.eval.iwae_chunk_size,
  )
  assert summary.num_examples == 6 and sorted(summary.iwae) == [1, 10]
  np.testing.assert_allclose(summary.elbo.mean, expected.elbo.mean, rtol=1e-5)
  np.testing.assert_allclose(summary.iwae[10].mean, expected.iwae[10].mean, rtol=1e-5)
  assert summary.nll_bits_per_dim is not None  # Bernoulli on binary digits


def test_errors(smoke_run):
  model = jaxvae.load(smoke_run[0])
  with pytest.raises(
    ValueError, match=r'`x` must be images \[B, \*\(28, 28, 1\)\] in \[0, 1\]; got shape \(28, 28, 1\)'
  ):
    model.encode(np.zeros((28, 28, 1)))
  with pytest.raises(ValueError, match=r'`z` must be latents \[N, 4\]; got shape \(3, 5\)'):
    model.decode(np.zeros((3, 5)))
  with pytest.raises(ValueError, match='this model is unconditional; `condition` must be None'):
    model.decode(np.zeros((3, 4)), np.zeros((3, 10)))
  with pytest.raises(ValueError, match='`num` must be an int >= 2; got 1'):
    model.interpolate(np.zeros((28, 28, 1)), np.zeros((28, 28, 1)), num=1)
  with pytest.raises(ValueError, match='`num_samples` must be an int >= 1; got 0'):
    model.sample(jax.random.key(0), 0)


@pytest.fixture(scope='module')
def label_cvae_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('cvae')
  jaxvae.train_and_evaluate(load_config('mnist_cvae', 'label,smoke'), workdir)
  return workdir


def test_a_conditional_model_takes_its_condition(label_cvae_run):
  model = jaxvae.load(label_cvae_run)
  x = _test_digits(4)
  assert model.conditional
  with pytest.raises(ValueError, match=r"conditioned on 'label': pass `condition`"):
    model.encode(x)
  with pytest.raises(ValueError, match='pass `label`'):
    model.condition(x)
  condition = model.condition(x, label=np.arange(4))
  np.testing.assert_array_equal(condition, jax.nn.one_hot(np.arange(4), 10))
  loc, _ = model.encode(x, condition)
  assert loc.shape == (4, model.latent_dim)
  assert model.sample(jax.random.key(0), 4, condition).shape == (4, 28, 28, 1)
  assert model.interpolate(x[:2], x[2:], num=3, condition=condition[:2]).shape == (2, 3, 28, 28, 1)
  assert np.isfinite(model.bounds(x, key=jax.random.key(0), num_samples=5, condition=condition).iwae[5].mean)
  with pytest.raises(ValueError, match=r'`condition` must have one row per example \(4\); got shape \(2, 10\)'):
    model.reconstruct(x, condition[:2])
