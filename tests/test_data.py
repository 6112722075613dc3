"""The embedded MNIST split, binarisation, and the resumable, shardable training pipeline."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxvae
from jaxvae import _data


def test_mnist_5k_split():
  splits = _data.load_mnist_5k()
  train, test = splits['train'], splits['test']
  assert train.images.shape == (4000, 28, 28, 1) and test.images.shape == (1000, 28, 28, 1)
  assert train.images.dtype == np.uint8 and train.images.max() == 255
  np.testing.assert_array_equal(np.bincount(train.labels), [400] * 10)
  np.testing.assert_array_equal(np.bincount(test.labels), [100] * 10)
  # No test digit is also a training digit.
  train_rows = {row.tobytes() for row in train.images.reshape(4000, -1)}
  assert not any(row.tobytes() in train_rows for row in test.images.reshape(1000, -1))


def test_binarize_is_exact_at_the_ends_and_unbiased():
  x = jnp.array([0.0, 1.0, 0.25, 0.5, 0.9])
  draws = jax.vmap(lambda k: jaxvae.binarize(k, x))(jax.random.split(jax.random.key(0), 40_000))
  assert set(np.unique(draws).tolist()) <= {0.0, 1.0} and draws.dtype == jnp.float32
  means = draws.mean(0)
  assert means[0] == 0.0 and means[1] == 1.0
  np.testing.assert_allclose(means[2:], x[2:], atol=4 * np.sqrt(0.25 / 40_000))


def test_fixed_binarization_is_deterministic():
  images = _data.load_split('mnist_5k', 'test').images[:10]
  first, second = _data.binarize_fixed(images), _data.binarize_fixed(images)
  np.testing.assert_array_equal(first, second)
  assert set(np.unique(first).tolist()) == {0.0, 1.0}


def _take(iterator, n):
  return [next(iterator) for _ in range(n)]


def test_batches_resume_exactly_and_cover_each_epoch():
  images = np.arange(100).reshape(100, 1)
  full = _take(_data.train_batches(images, batch_size=32, seed=3), 9)
  resumed = _take(_data.train_batches(images, batch_size=32, seed=3, start_step=5), 4)
  for a, b in zip(full[5:], resumed, strict=True):
    np.testing.assert_array_equal(a, b)
  epoch = np.concatenate(full[:3]).ravel()  # 3 batches of 32 from 100: no repeats within an epoch
  assert len(set(epoch.tolist())) == 96
  assert not np.array_equal(full[0], full[3])  # each epoch is reshuffled


def test_process_shards_are_disjoint_and_cover_the_data():
  images = np.arange(101).reshape(101, 1)
  shards = [
    np.concatenate(_take(_data.train_batches(images, batch_size=10, seed=0, process_index=i, process_count=2), 5))
    for i in range(2)
  ]
  assert not set(shards[0].ravel()) & set(shards[1].ravel())
  assert set(shards[0].ravel()) | set(shards[1].ravel()) == set(range(100))


def test_batch_larger_than_shard():
  with pytest.raises(ValueError, match=r'the batch size per process \(64\) exceeds the 50 training examples'):
    _data.train_batches(np.zeros((50, 1)), batch_size=64, seed=0)


def test_unknown_dataset_and_split():
  with pytest.raises(ValueError, match="unknown dataset 'cifar100'"):
    _data.load_split('cifar100', 'train')
  with pytest.raises(ValueError, match="dataset 'mnist_5k' has no split 'validation'"):
    _data.load_split('mnist_5k', 'validation')
