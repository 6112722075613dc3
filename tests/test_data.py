"""The embedded datasets, preprocessing, and the resumable, host-sharded training pipeline."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import load_config

import jaxvae
from jaxvae import _data, _dsprites


def _data_config(**fields):
  config = load_config().data
  config.update(fields)
  return config


def test_mnist_5k_split():
  splits = _data.load_mnist_5k()
  train, test = splits['train'].arrays, splits['test'].arrays
  assert train['image'].shape == (4000, 28, 28, 1) and test['image'].shape == (1000, 28, 28, 1)
  assert train['image'].dtype == np.uint8 and train['image'].max() == 255
  np.testing.assert_array_equal(np.bincount(train['label']), [400] * 10)
  np.testing.assert_array_equal(np.bincount(test['label']), [100] * 10)
  # No test digit is also a training digit.
  train_rows = {row.tobytes() for row in train['image'].reshape(4000, -1)}
  assert not any(row.tobytes() in train_rows for row in test['image'].reshape(1000, -1))


def test_binarize_is_exact_at_the_ends_and_unbiased():
  x = jnp.array([0.0, 1.0, 0.25, 0.5, 0.9])
  draws = jax.vmap(lambda k: jaxvae.binarize(k, x))(jax.random.split(jax.random.key(0), 40_000))
  assert set(np.unique(draws).tolist()) <= {0.0, 1.0} and draws.dtype == jnp.float32
  means = draws.mean(0)
  assert means[0] == 0.0 and means[1] == 1.0
  np.testing.assert_allclose(means[2:], x[2:], atol=4 * np.sqrt(0.25 / 40_000))


def test_dequantize_fills_each_pixel_bin_uniformly():
  images = jnp.array([0, 7, 255], jnp.uint8)
  draws = jax.vmap(lambda k: jaxvae.dequantize(k, images))(jax.random.split(jax.random.key(0), 20_000))
  assert draws.dtype == jnp.float32
  np.testing.assert_array_equal(np.floor(np.asarray(draws) * 256), np.broadcast_to([0, 7, 255], draws.shape))
  stderr = np.sqrt(1 / 12 / 20_000) / 256
  np.testing.assert_allclose(draws.mean(0), (np.array([0, 7, 255]) + 0.5) / 256, atol=4 * stderr)


def test_dequantize_takes_stored_pixels_only():
  with pytest.raises(ValueError, match=r'`images` must be 8-bit pixel values \(uint8, 0..255\).*got dtype float32'):
    jaxvae.dequantize(jax.random.key(0), jnp.full((2, 2), 0.5))


def test_to_unit_interval_scales_by_the_stored_maximum():
  np.testing.assert_array_equal(_data.to_unit_interval(np.array([0, 255], np.uint8)), [0.0, 1.0])
  np.testing.assert_array_equal(_data.to_unit_interval(np.array([0, 1], np.uint8), max_value=1), [0.0, 1.0])


def _prepared(data, **batching):
  """The evaluation split's images in the likelihood's domain, batch by batch as the bounds function sees them."""
  batches = _data.eval_batches(data, **batching)
  return np.concatenate([_data.prepare_eval_images(b['image'], b['index'], data=data) for b in batches])


@pytest.mark.parametrize('preprocessing', [{'binarize': 'dynamic'}, {'binarize': 'none', 'dequantize': 'uniform'}])
def test_eval_noise_is_fixed_per_example_whatever_the_batching(preprocessing):
  data = _data_config(**preprocessing)
  whole = _prepared(data, batch_size=1000)
  assert whole.shape == (1000, 28, 28, 1) and whole.dtype == np.float32
  np.testing.assert_array_equal(_prepared(data, batch_size=64), whole)
  shards = [_prepared(data, batch_size=64, process_index=i, process_count=2) for i in (0, 1)]
  np.testing.assert_array_equal(shards[0], whole[0::2])
  np.testing.assert_array_equal(shards[1], whole[1::2])
  images = _data.load_mnist_5k()['test'].arrays['image'].astype(np.float64)
  if data.binarize == 'dynamic':
    assert set(np.unique(whole).tolist()) == {0.0, 1.0}
    assert abs(whole.mean() - images.mean() / 255) < 0.005  # Bernoulli(pixel / 255)
  else:
    np.testing.assert_array_equal(np.floor(whole * 256), images)


def test_eval_batches_carry_labels_and_indices():
  batches = _data.eval_batches(_data_config(), batch_size=300)
  assert len(batches) == 4
  items = list(batches)
  assert [len(batch['image']) for batch in items] == [300, 300, 300, 100]
  assert items[0]['image'].dtype == np.uint8  # as stored: preprocessed on the devices
  np.testing.assert_array_equal(items[1]['index'], np.arange(300, 600))
  np.testing.assert_array_equal(items[1]['label'], _data.load_mnist_5k()['test'].arrays['label'][300:600])


def _source(n):
  return _data.ArraySource({'image': np.arange(n).reshape(n, 1)})


def _take(iterator, n):
  return [next(iterator)['image'].ravel() for _ in range(n)]


@pytest.mark.parametrize('in_memory', [False, True])
def test_batches_resume_exactly_from_the_iterator_state(in_memory):
  full_iterator = _data.train_batches(_source(100), batch_size=32, seed=3, in_memory=in_memory, num_threads=2)
  full = _take(full_iterator, 9)
  resumed_iterator = _data.train_batches(_source(100), batch_size=32, seed=3, in_memory=in_memory)
  resumed_iterator.set_state({'next_index': 5})
  for a, b in zip(full[5:], _take(resumed_iterator, 4), strict=True):
    np.testing.assert_array_equal(a, b)
  assert resumed_iterator.get_state() == {'next_index': 9} == full_iterator.get_state()
  epoch = np.concatenate(full[:3])  # 3 batches of 32 from 100: no repeats within an epoch
  assert len(set(epoch.tolist())) == 96
  assert not np.array_equal(full[0], full[3])  # each epoch is reshuffled


@pytest.mark.parametrize('in_memory', [False, True])
def test_training_batches_carry_each_examples_position_in_the_split(in_memory):
  # The images of _source are their own positions, so each batch's 'index' must equal its images.
  for process_index in (0, 1):
    iterator = _data.train_batches(
      _source(100), batch_size=8, seed=1, process_index=process_index, process_count=2, in_memory=in_memory
    )
    for _ in range(7):  # more than an epoch of the shard (6 batches)
      batch = next(iterator)
      np.testing.assert_array_equal(batch['index'], batch['image'].ravel())


def test_process_shards_are_disjoint_and_cover_the_data():
  # 101 examples over 2 processes: shards of 51 and 50; each epoch both take 5 batches of 10.
  iterators = [
    _data.train_batches(_source(101), batch_size=10, seed=0, process_index=i, process_count=2) for i in (0, 1)
  ]
  shards = [np.concatenate(_take(iterator, 50)) for iterator in iterators]
  assert not set(shards[0]) & set(shards[1])
  assert set(shards[0]) | set(shards[1]) == set(range(101))  # over 10 epochs every example is seen
  np.testing.assert_array_equal(np.sort(shards[1][:50]), np.arange(1, 101, 2))  # one epoch covers shard 1
  assert set(shards[0][:50]) < set(range(0, 101, 2))


def test_batch_larger_than_shard():
  with pytest.raises(ValueError, match=r'the batch size per process \(64\) exceeds the 25 training examples'):
    _data.train_batches(_source(50), batch_size=64, seed=0, process_count=2)


def test_dsprites_source_and_test_split():
  data = _data_config(dataset='dsprites', binarize='none')
  train = _data.open_source(data, 'train')
  assert len(train) == 737_280 and _data.event_shape(data) == (64, 64, 1)
  batch = train.read(np.array([0, 1, 737_279]))
  assert batch['image'].shape == (3, 64, 64, 1) and batch['image'].dtype == np.uint8
  np.testing.assert_array_equal(batch['factors'], _dsprites.factors_from_index(np.array([0, 1, 737_279])))
  test = _data.open_source(data, 'test')
  assert len(test) == 10_000
  batch = next(iter(_data.eval_batches(data, batch_size=16)))
  x = _data.prepare_eval_images(batch['image'], batch['index'], data=data)
  assert x.dtype == np.float32 and set(np.unique(x).tolist()) <= {0.0, 1.0} and batch['factors'].shape == (16, 5)
  assert len(set(_dsprites.index_from_factors(batch['factors']).tolist())) == 16


def test_unknown_dataset_and_split():
  with pytest.raises(ValueError, match="unknown dataset 'cifar100'; choose one of mnist_5k, dsprites"):
    _data.open_source(_data_config(dataset='cifar100'), 'train')
  with pytest.raises(ValueError, match=r"dataset 'mnist_5k' has no split 'validation' \(config.data.eval_split\)"):
    _data.open_source(_data_config(eval_split='validation'), 'train')


def test_sizes_are_checked():
  with pytest.raises(ValueError, match=r"'mnist_5k' is used at its stored size \(28, 28\)"):
    _data.check_data_config(_data_config(image_size=64))
  celeb_a = _data_config(dataset='celeb_a', crop_size=148, image_size=96, binarize='none')
  with pytest.raises(ValueError, match=r"config.data.image_size must be one of \(64, 128\) for 'celeb_a'; got 96"):
    _data.check_data_config(celeb_a)
  celeb_a.update({'image_size': 64, 'crop_size': 200})
  with pytest.raises(
    ValueError, match=r'config.data.crop_size must be between 1 and 178 \(0: the largest centred square\) .* got 200'
  ):
    _data.check_data_config(celeb_a)


def test_every_process_gets_the_same_batches_and_features():
  # 1,000 examples over 3 processes in batches of 111: shards of 334 / 333 / 333 make 4 batches each; the
  # shorter shards end with an empty batch that still carries every feature.
  shards = [_data.eval_batches(_data_config(), batch_size=111, process_index=p, process_count=3) for p in range(3)]
  items = [list(shard) for shard in shards]
  assert [len(shard) for shard in shards] == [4, 4, 4] and [len(i) for i in items] == [4, 4, 4]
  for batches in zip(*items, strict=True):
    assert len({tuple(sorted(batch)) for batch in batches}) == 1
  last = items[1][-1]
  assert last['image'].shape == (0, 28, 28, 1) and last['label'].shape == (0,) and last['index'].shape == (0,)
