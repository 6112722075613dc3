"""The tensorflow-datasets side of the pipeline, offline, on `tfds.testing.mock_data`."""

import numpy as np
import pytest
import tensorflow_datasets as tfds
from conftest import MOCK_NUM_EXAMPLES as _NUM_EXAMPLES
from conftest import load_config
from PIL import Image

import jaxvae
from jaxvae import _data, _run


def _data_config(**fields):
  config = load_config().data
  config.update(fields)
  return config


def _raw(dataset, split, index):
  """The mocked example exactly as `tfds.data_source` returns it."""
  return tfds.data_source(dataset, split=split, download=False)[index]


@pytest.mark.parametrize('image_size, crop_size', [(64, 148), (128, 148), (64, 140)])
def test_celeb_a_is_centre_cropped_and_resized(mock_tfds, image_size, crop_size):
  data = _data_config(dataset='celeb_a', binarize='none', image_size=image_size, crop_size=crop_size)
  source = _data.open_source(data, 'train')
  batch = source.read(np.array([3, 0]))
  assert batch['image'].shape == (2, image_size, image_size, 3) and batch['image'].dtype == np.uint8
  assert set(batch) == {'image'}
  raw = _raw('celeb_a', 'train', 3)['image']  # [218, 178, 3]
  top, left = (218 - crop_size) // 2, (178 - crop_size) // 2
  crop = raw[top : top + crop_size, left : left + crop_size]
  expected = np.asarray(Image.fromarray(crop).resize((image_size, image_size), Image.Resampling.BILINEAR))
  np.testing.assert_array_equal(batch['image'][0], expected)
  assert _data.event_shape(data) == (image_size, image_size, 3)


def test_binarized_mnist_is_read_as_binary(mock_tfds):
  data = _data_config(dataset='binarized_mnist', binarize='none', eval_split='validation')
  batch = _data.open_source(data, 'train').read(np.arange(4))
  assert batch['image'].shape == (4, 28, 28, 1) and set(batch) == {'image'}
  # Pixels are stored as 0/1, so they are scaled by 1, not 1/255 (the mock
  # draws any byte, which shows the scale).
  batch = next(iter(_data.eval_batches(data, batch_size=5)))
  x = _data.prepare_eval_images(batch['image'], batch['index'], data=data)
  np.testing.assert_array_equal(x[0], _raw('binarized_mnist', 'validation', 0)['image'].astype(np.float32))


@pytest.mark.parametrize('dataset, shape', [('cifar10', (32, 32, 3)), ('mnist', (28, 28, 1))])
def test_labelled_datasets(mock_tfds, dataset, shape):
  data = _data_config(dataset=dataset, binarize='none')
  batch = _data.open_source(data, 'test').read(np.array([5, 2]))
  assert batch['image'].shape == (2, *shape) and batch['label'].dtype == np.int32
  np.testing.assert_array_equal(batch['label'], [_raw(dataset, 'test', i)['label'] for i in (5, 2)])
  np.testing.assert_array_equal(batch['image'][0], _raw(dataset, 'test', 5)['image'])


@pytest.mark.parametrize('in_memory', [False, True])
def test_host_shards_are_disjoint_and_cover_the_split(mock_tfds, in_memory):
  source = _data.open_source(_data_config(dataset='cifar10', binarize='none'), 'train')
  raw = {_raw('cifar10', 'train', i)['image'].tobytes(): i for i in range(_NUM_EXAMPLES)}
  assert len(raw) == _NUM_EXAMPLES
  shards = []
  for process_index in range(2):  # 6 examples each: one epoch is 2 batches of 3
    iterator = _data.train_batches(
      source, batch_size=3, seed=0, process_index=process_index, process_count=2, in_memory=in_memory
    )
    images = np.concatenate([next(iterator)['image'] for _ in range(2)])
    shards.append({raw[image.tobytes()] for image in images})
  assert shards == [set(range(0, _NUM_EXAMPLES, 2)), set(range(1, _NUM_EXAMPLES, 2))]


def test_unprepared_dataset_names_the_preparation_command(tmp_path):
  data = _data_config(dataset='celeb_a', binarize='none', image_size=64, crop_size=148, data_dir=str(tmp_path))
  with pytest.raises(
    FileNotFoundError,
    match=rf"tfds dataset 'celeb_a' is not prepared in array_record format in {tmp_path}. Prepare it with "
    rf'`tfds build celeb_a --file_format=array_record --data_dir={tmp_path}`',
  ):
    _data.open_source(data, 'train')


@pytest.mark.parametrize(
  'name, variant, num_dims',
  [
    ('celeba', '64,smoke', 64 * 64 * 3),
    ('celeba', '64,gaussian,smoke', 64 * 64 * 3),
    ('mnist', 'smoke', 784),
  ],
)
def test_training_and_evaluation_on_mocked_tfds(mock_tfds, tmp_path, name, variant, num_dims):
  config = load_config(name, variant)
  state = jaxvae.train_and_evaluate(config, tmp_path)
  assert int(state.step) == config.train.num_train_steps
  assert (tmp_path / 'samples.png').is_file()
  bounds = jaxvae.evaluate(tmp_path).bounds
  assert bounds.num_examples == _NUM_EXAMPLES and np.isfinite(bounds.nll_bits_per_dim.mean)
  dequantization_bits = 8 if config.data.dequantize == 'uniform' else 0  # log2(256) per dimension
  expected_bits = -bounds.iwae[4].mean / (num_dims * np.log(2)) + dequantization_bits
  np.testing.assert_allclose(bounds.nll_bits_per_dim.mean, expected_bits, rtol=1e-6)
  assert len(_run.Run(config).eval_batches()) == 1  # 12 mocked examples, batches of 50


# ----------------------------------------------------------------------------- any tfds dataset, and the benchmarks


def test_any_tfds_image_dataset_by_name(mock_tfds):
  data = _data_config(dataset='tfds:fashion_mnist')
  info = _data.dataset_info(data)
  # (The mock answers for any split name; a prepared dataset lists only its own.)
  assert info.num_classes == 10 and info.image_shape == (28, 28, 1) and {'train', 'test'} <= set(info.splits)
  assert info.splits['train'] == _NUM_EXAMPLES and _data.event_shape(data) == (28, 28, 1)
  batch = _data.open_source(data, 'test').read(np.array([5, 2]))
  assert batch['image'].shape == (2, 28, 28, 1) and batch['label'].dtype == np.int32
  np.testing.assert_array_equal(batch['label'], [_raw('fashion_mnist', 'test', i)['label'] for i in (5, 2)])
  np.testing.assert_array_equal(batch['image'][1], _raw('fashion_mnist', 'test', 2)['image'])
  # Resized as celeb_a is: the largest centred square (all of it here), to image_size.
  data.image_size = 16
  resized = _data.open_source(data, 'test').read(np.array([5]))['image'][0]
  raw = _raw('fashion_mnist', 'test', 5)['image']
  np.testing.assert_array_equal(resized, _data.center_crop_and_resize(raw, crop_size=28, image_size=16))
  data.image_size = 32
  with pytest.raises(ValueError, match=r"images of 'tfds:fashion_mnist' are smaller than config.data.image_size=32"):
    _data.check_data_config(data)


def test_tfds_reads_are_batched(mock_tfds, monkeypatch):
  source = _data.open_source(_data_config(dataset='tfds:fashion_mnist'), 'train')
  calls = []
  original = type(source.data_source).__getitems__
  monkeypatch.setattr(
    type(source.data_source), '__getitems__', lambda self, keys: calls.append(keys) or original(self, keys)
  )
  source.read(np.arange(5))
  assert calls == [[0, 1, 2, 3, 4]]


def test_unknown_and_unprepared_tfds_names(tmp_path):
  with pytest.raises(
    ValueError, match=r"tfds does not know the dataset 'fashion_mnits' .* closest names: fashion_mnist"
  ):
    _data.dataset_info(_data_config(dataset='tfds:fashion_mnits'))
  with pytest.raises(FileNotFoundError, match=r'`tfds build fashion_mnist --file_format=array_record'):
    _data.dataset_info(_data_config(dataset='tfds:fashion_mnist', data_dir=str(tmp_path)))


@pytest.mark.parametrize(
  'dataset, shape, sizes',
  [
    ('shapes3d', (64, 64, 3), (10, 10, 10, 8, 4, 15)),
    ('smallnorb', (96, 96, 1), (5, 9, 18, 6)),
    ('dsprites_released', (64, 64, 1), (3, 6, 40, 32, 32)),
  ],
)
def test_disentanglement_benchmarks_carry_their_factors(mock_tfds, dataset, shape, sizes):
  data = _data_config(dataset=dataset, binarize='none')
  source = _data.open_source(data, 'train')
  batch = source.read(np.array([3, 7]))
  assert batch['image'].shape == (2, *shape) and batch['factors'].shape == (2, len(sizes))
  tfds_name = _data.DATASETS[dataset].tfds_name
  raw = _raw(tfds_name, 'train', 7)
  np.testing.assert_array_equal(batch['factors'][1], [raw[f] for f in _data.DATASETS[dataset].factor_features])
  assert (batch['factors'] < np.array(sizes)).all()
  assert len(_data.open_source(data, 'test')) == _NUM_EXAMPLES  # 'train' itself or a subset of its 12 mocked


def test_smallnorb_is_resized_to_64(mock_tfds):
  data = _data_config(dataset='smallnorb', binarize='none', image_size=64)
  assert _data.event_shape(data) == (64, 64, 1)
  batch = _data.open_source(data, 'test').read(np.array([0]))
  assert batch['image'].shape == (1, 64, 64, 1) and batch['label'][0] == batch['factors'][0, 0]


@pytest.mark.parametrize('variant', ['smoke', 'betavae,smoke', 'factorvae'])
def test_metrics_on_shapes3d_read_its_factors(mock_tfds, variant):
  config = load_config('shapes3d', variant)
  assert config.eval.disentanglement_metrics  # kept from the dSprites family
  run = _run.Run(config)
  assert run.event_shape == (64, 64, 3)
  # 12 random mocked examples cannot cover the 480,000 factor combinations the metrics sample from.
  with pytest.raises(
    ValueError,
    match=r'need an example of every combination of factor levels; the data have \d+ of the 480000',
  ):
    run.ground_truth()
