"""Test-wide JAX settings: fake CPU devices for sharding tests, and no silent rank promotion."""

import os

# Must precede the first jax import of the session.
os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')

import jax  # noqa: E402

jax.config.update('jax_numpy_rank_promotion', 'raise')

import importlib.util  # noqa: E402
import pathlib  # noqa: E402

import pytest  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent


def load_config(name: str = 'default', variant: str = ''):
  """`configs/<name>.py`'s `get_config(variant)`, as `--config=configs/<name>.py:<variant>` would load it."""
  spec = importlib.util.spec_from_file_location(f'configs_{name}', ROOT / 'configs' / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(variant)


@pytest.fixture
def smoke_config():
  """The tiny `configs/default.py:smoke` config: seconds to train on a CPU."""
  return load_config('default', 'smoke')


@pytest.fixture(scope='session')
def smoke_run(tmp_path_factory):
  """The workdir of a finished `configs/default.py:smoke` run (6 steps, checkpoints at 3 and 6), and its state."""
  import jaxvae

  workdir = tmp_path_factory.mktemp('smoke_run')
  state = jaxvae.train_and_evaluate(load_config('default', 'smoke'), workdir)
  return workdir, state


def _mock_getitems(*args, generator, serialized=False):
  """tfds 4.9.10's mock `__getitems__`, without its bug: it is set as a plain attribute, so it gets no `self`."""
  assert not serialized
  return [generator[key] for key in args[-1]]


@pytest.fixture
def mock_tfds(monkeypatch):
  """`tfds.testing.mock_data` with 12 random examples per split, whose batched reads (`__getitems__`) work."""
  import tensorflow_datasets as tfds
  from tensorflow_datasets.testing import mocking

  monkeypatch.setattr(mocking, '_getitems', _mock_getitems)
  with tfds.testing.mock_data(num_examples=MOCK_NUM_EXAMPLES):
    yield


MOCK_NUM_EXAMPLES = 12
