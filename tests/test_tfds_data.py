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
  assert bounds.num_examples == _NUM_EXAMPLES and np.isfinite(bounds.bits_per_dim(bounds.iwae[4]).mean)
  assert (
    bounds.bits_per_dim_dims == num_dims and len(_run.Run(config).eval_batches()) == 1
  )  # 12 examples, batches of 50
