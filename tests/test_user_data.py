"""The data a user brings: a folder of images, an .npz of arrays, a Python source; their checks and runs."""

import logging

import chex
import jax
import numpy as np
import pytest
from conftest import load_config
from PIL import Image

import jaxvae
from jaxvae import _data, _image_files

_SIDE = 20  # the stored images are 20 x 24 (H x W); the model sees 8 x 8


def _write_folder(root, num_per_class=12, classes=('cats', 'dogs'), start=0):
  """PNG images under root/<class>/, every pixel of image k of class c equal to 20 c + k (grey-tinted RGB)."""
  for c, name in enumerate(classes):
    (root / name).mkdir(parents=True, exist_ok=True)
    for k in range(start, start + num_per_class):
      pixels = np.full((_SIDE, _SIDE + 4, 3), 20 * c + k, np.uint8)
      pixels[:, :, 1] = 200  # a constant green channel
      Image.fromarray(pixels).save(root / name / f'{k:03d}.png')
  return root


def _folder_config(root, **fields):
  config = load_config('default', 'smoke')
  config.data.update(
    {'dataset': 'folder', 'path': str(root), 'image_size': 8, 'binarize': 'none', 'channels': 3, **fields}
  )
  config.model.likelihood = 'discretized_logistic'
  config.eval.num_examples = 0
  return config


def test_folder_reads_labels_channels_and_crops(tmp_path):
  root = _write_folder(tmp_path / 'images')
  data = _folder_config(root, folder_labels=True).data
  info = _data.dataset_info(data)
  assert info.num_classes == 2 and sum(info.splits.values()) == 24 and info.origin == 'folder'
  assert _data.event_shape(data) == (8, 8, 3)
  source = _data.open_source(data, 'train')
  batch = source.read(np.arange(len(source)))
  assert batch['image'].shape == (len(source), 8, 8, 3) and batch['image'].dtype == np.uint8
  # Each image is uniform, so its crop and resize keep its value; the value names its class and file.
  values = batch['image'][:, 0, 0, 0].astype(int)
  np.testing.assert_array_equal(batch['label'], values // 20)
  np.testing.assert_array_equal(batch['image'][..., 1], 200)
  # Grey: ITU-R 601-2 luma of (v, 200, v), as PIL converts.
  data.channels = 1
  grey = _data.open_source(data, 'train').read(np.arange(2))['image']
  assert grey.shape == (2, 8, 8, 1)
  np.testing.assert_array_equal(grey[:, 0, 0, 0], np.round((299 * values[:2] + 587 * 200 + 114 * values[:2]) / 1000))


def test_folder_crop_and_resize_match_the_reference(tmp_path):
  rng = np.random.default_rng(0)
  pixels = rng.integers(0, 256, (30, 40, 3), np.uint8)
  (tmp_path / 'a').mkdir()
  Image.fromarray(pixels).save(tmp_path / 'a' / 'x.png')
  Image.fromarray(np.dstack([pixels, np.full((30, 40), 7, np.uint8)])).save(tmp_path / 'a' / 'rgba.png')
  expected = _image_files.center_crop_and_resize(pixels[:, 5:35], crop_size=30, image_size=16)
  for name in ('x.png', 'rgba.png'):  # RGBA becomes RGB, alpha dropped
    decoded = _image_files.decode_image(tmp_path / 'a' / name, channels=3, image_size=16)
    np.testing.assert_array_equal(decoded, expected)


def test_folder_split_is_stable_when_files_are_added(tmp_path):
  root = _write_folder(tmp_path / 'images', num_per_class=20)
  data = _folder_config(root, test_fraction=0.3).data
  before = _data._folder(data.path, labels=False, image_size=8, channels=3, test_fraction=0.3)
  _write_folder(root, num_per_class=20, start=20)
  _data._folder.cache_clear()
  after = _data._folder(data.path, labels=False, image_size=8, channels=3, test_fraction=0.3)
  test_before = {before[1].files[i] for i in before[2]['test']}
  test_after = {after[1].files[i] for i in after[2]['test']}
  train_after = {after[1].files[i] for i in after[2]['train']}
  assert test_before and test_before <= test_after and not test_before & train_after
  assert 0.15 < len(test_after) / 80 < 0.45  # about test_fraction of the files


def test_unreadable_files_are_skipped_and_counted(tmp_path, caplog):
  root = _write_folder(tmp_path / 'images', num_per_class=6, classes=('a',))
  (root / 'a' / 'broken.png').write_bytes(b'not a png')
  with caplog.at_level(logging.WARNING):
    folder = _image_files.scan_folder(str(root), labels=False, image_size=8)
  assert folder.skipped == ('a/broken.png',) and len(folder.files) == 6
  assert 'broken.png' in caplog.text and 'skipped 1 unreadable of 7 images' in caplog.text
  # A file that breaks after the scan: logged with its path and replaced by the next readable one.
  source = _image_files.FolderSource(root, folder.files, None, channels=3, size=8)
  (root / folder.files[2]).write_bytes(b'truncated')
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    batch = source.read(np.array([1, 2, 3]))
  np.testing.assert_array_equal(batch['image'][1], batch['image'][2])  # 2 replaced by 3
  assert source.num_skipped == 1 and folder.files[2] in caplog.text and '(1 so far)' in caplog.text


@pytest.mark.parametrize(
  'make, fields, error, message',
  [
    (lambda root: None, {}, FileNotFoundError, r"config.data.path '.*missing' does not exist"),
    (lambda root: root.mkdir(), {}, ValueError, r'holds no readable JPEG, PNG or WebP images'),
    (
      lambda root: (root.mkdir(), (root / 'notes.txt').write_text('x')),
      {},
      ValueError,
      r'holds no readable JPEG, PNG or WebP images',
    ),
    (
      lambda root: _write_folder(root, 2),
      {'image_size': 32},
      ValueError,
      r'24 .*|4 images under .* are smaller than config.data.image_size=32, e.g. .* \(20 pixels on its shortest side\)',
    ),
    (
      lambda root: (_write_folder(root, 2), Image.new('RGB', (20, 20)).save(root / 'loose.png')),
      {'folder_labels': True},
      ValueError,
      r"labels images by their sub-folder .* but 'loose.png' is in no sub-folder",
    ),
    (lambda root: _write_folder(root, 2), {'channels': 4}, ValueError, r'config.data.channels must be one of \(1, 3\)'),
    (lambda root: _write_folder(root, 2), {'image_size': 0}, ValueError, r'needs config.data.image_size > 0'),
  ],
)
def test_bad_folders_fail_before_anything_compiles(tmp_path, make, fields, error, message):
  root = tmp_path / 'missing'
  make(root)
  with pytest.raises(error, match=message):
    jaxvae.validate_config(_folder_config(root, **fields))


# ----------------------------------------------------------------------------- arrays


def _write_npz(path, num=60, **arrays):
  rng = np.random.default_rng(0)
  arrays = {'images': rng.integers(0, 256, (num, 8, 8, 1), np.uint8), **arrays}
  np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
  return path


def _array_config(path, **fields):
  config = load_config('default', 'smoke')
  config.data.update({'dataset': 'array', 'path': str(path), 'binarize': 'dynamic', **fields})
  config.eval.num_examples = 0
  return config


def test_array_source_splits_and_features(tmp_path):
  labels = np.arange(60) % 3
  factors = np.stack([np.arange(60) % 4, np.arange(60) // 4 % 15], -1)
  path = _write_npz(tmp_path / 'd.npz', labels=labels, factors=factors)
  data = _array_config(path).data
  info = _data.dataset_info(data)
  assert info.num_classes == 3 and info.has_factors and info.max_value == 255 and info.image_shape == (8, 8, 1)
  assert sum(info.splits.values()) == 60 and info.splits['test'] > 0
  train, test = _data.open_source(data, 'train'), _data.open_source(data, 'test')
  stored = np.load(path)
  seen = np.concatenate([train.read(np.arange(len(train)))['image'], test.read(np.arange(len(test)))['image']])
  assert sorted(map(bytes, seen)) == sorted(map(bytes, stored['images']))
  batch = train.read(np.array([0, 1]))
  row = next(i for i in range(60) if np.array_equal(stored['images'][i], batch['image'][0]))
  assert batch['label'][0] == labels[row] and list(batch['factors'][0]) == list(factors[row])


@pytest.mark.parametrize(
  'arrays, message',
  [
    ({'images': None, 'pixels': np.zeros((4, 8, 8, 1), np.uint8)}, r'has no `images` array .* it has pixels'),
    ({'images': np.zeros((4, 8, 8, 1), np.float32)}, r'`images` in .* must be uint8 \(0..255\); got dtype float32'),
    ({'images': np.zeros((4, 8, 8), np.uint8)}, r'must have shape \[N, H, W, C\] .* got shape \(4, 8, 8\)'),
    ({'labels': np.zeros(59, np.int64)}, r'`labels` in .* must be integers of shape \[60\] .* shape \(59,\)'),
    ({'factors': np.zeros((61, 2))}, r'`factors` in .* must have shape \[60, F\] .* got shape \(61, 2\)'),
    ({'labels': np.full(60, -1)}, r'`labels` in .* must lie in \[0, 0\) .* got -1'),
    ({'labels': np.full(60, 5), 'num_classes': np.array(3)}, r'must lie in \[0, 3\) \(num_classes=3\); got 5'),
  ],
)
def test_bad_arrays_fail_before_anything_compiles(tmp_path, arrays, message):
  path = _write_npz(tmp_path / 'd.npz', **arrays)
  with pytest.raises(ValueError, match=message):
    jaxvae.validate_config(_array_config(path))


def test_missing_npz_and_metrics_without_factors(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"config.data.path '.*nothing.npz' does not exist"):
    jaxvae.validate_config(_array_config(tmp_path / 'nothing.npz'))
  config = _array_config(_write_npz(tmp_path / 'd.npz'))
  config.eval.disentanglement_metrics = ('mig',)
  with pytest.raises(ValueError, match=r"need data with ground-truth factors .* 'array' has none"):
    jaxvae.validate_config(config)


def test_factor_ground_truth_samples_the_asked_levels(tmp_path):
  # A 3 x 4 grid of factors, two examples per cell (a nuisance, like SmallNORB's instances), shuffled.
  rng = np.random.default_rng(1)
  cells = np.array([(a, b) for a in range(3) for b in range(4)] * 2)
  order = rng.permutation(len(cells))
  factors = cells[order] * np.array([10, 1])  # values, not levels: mapped to levels by rank
  images = (cells[order, 0] * 4 + cells[order, 1]).astype(np.uint8)[:, None, None, None] * np.ones(
    (1, 2, 2, 1), np.uint8
  )
  ground_truth = _data.FactorGroundTruth(_data.ArraySource({'image': images, 'factors': factors}), max_value=255)
  assert ground_truth.factors_num_values == [3, 4] and ground_truth.observation_shape == [2, 2, 1]
  sampled, observations = ground_truth.sample(50, np.random.RandomState(0))
  np.testing.assert_array_equal(observations[:, 0, 0, 0] * 255, sampled[:, 0] * 4 + sampled[:, 1])
  with pytest.raises(ValueError, match=r'every combination of factor levels; the data have 11 of the 12'):
    keep = factors.sum(axis=1) > 0  # drops both examples of the cell (0, 0)
    _data.FactorGroundTruth(_data.ArraySource({'image': images[keep], 'factors': factors[keep]}), max_value=255)


# ----------------------------------------------------------------------------- end to end


def test_train_and_evaluate_on_an_array_with_factor_metrics(tmp_path):
  grid = np.array([(a, b) for a in range(4) for b in range(4)] * 4)  # 64 examples, every cell 4 times
  images = np.zeros((64, 8, 8, 1), np.uint8)
  images[np.arange(64), grid[:, 0] * 2, grid[:, 1] * 2] = 1  # a binary dot at the factors' position
  path = _write_npz(tmp_path / 'd.npz', images=images, factors=grid)
  config = _array_config(path, binarize='none')
  config.eval.disentanglement_metrics = ('mig', 'sap')
  config.eval.metric_num_train, config.eval.metric_num_eval = 40, 20
  jaxvae.train_and_evaluate(config, tmp_path / 'run')
  evaluation = jaxvae.evaluate(tmp_path / 'run', pictures=False)
  assert set(evaluation.disentanglement) == {'mig', 'sap'}
  assert np.isfinite(evaluation.bounds.elbo.mean)


def test_folder_resume_equals_an_uninterrupted_run(tmp_path):
  root = _write_folder(tmp_path / 'images')
  config = _folder_config(root, folder_labels=True, read_threads=2)
  straight = jaxvae.train_and_evaluate(config, tmp_path / 'straight')
  interrupted = config.copy_and_resolve_references()
  interrupted.train.num_train_steps = 3
  jaxvae.train_and_evaluate(interrupted, tmp_path / 'resumed')
  resumed = jaxvae.train_and_evaluate(config, tmp_path / 'resumed')
  chex.assert_trees_all_close(
    jax.tree.map(np.asarray, resumed.params), jax.tree.map(np.asarray, straight.params), rtol=1e-6, atol=1e-6
  )
  evaluation = jaxvae.evaluate(tmp_path / 'straight', pictures=False)
  assert evaluation.bounds.num_examples == _data.dataset_info(config.data).splits['test']


class _Loader:
  """A user's own loader: len() and batched indexing, nothing else."""

  def __init__(self, images, labels):
    self.images, self.labels = images, labels

  def __len__(self):
    return len(self.images)

  def __getitem__(self, indices):
    return {'image': self.images[indices], 'label': self.labels[indices]}


def test_train_and_evaluate_on_a_python_source(tmp_path):
  rng = np.random.default_rng(0)
  loader = _Loader(rng.integers(0, 256, (48, 8, 8, 1), np.uint8), np.arange(48) % 4)
  config = _array_config('', dataset='source')
  config.objective.name, config.objective.condition = 'cvae', 'label'
  state = jaxvae.train_and_evaluate(config, tmp_path, source=loader)
  assert int(state.step) == config.train.num_train_steps
  assert jaxvae.evaluate(tmp_path, source=loader, pictures=False).bounds.num_examples > 0
  with pytest.raises(ValueError, match=r"config.data.dataset='source' trains on the source passed as"):
    jaxvae.validate_config(config)
  with pytest.raises(ValueError, match=r"a source was given, but config.data.dataset is 'mnist_5k'"):
    jaxvae.train_and_evaluate(load_config('default', 'smoke'), tmp_path / 'other', source=loader)


def test_files_that_are_not_npz_archives(tmp_path):
  np.save(tmp_path / 'one.npy', np.zeros((2, 8, 8, 1), np.uint8))
  with pytest.raises(ValueError, match=r'is a single .npy array, not an .npz of named arrays'):
    jaxvae.validate_config(_array_config(tmp_path / 'one.npy'))
  (tmp_path / 'junk.npz').write_bytes(b'junk')
  with pytest.raises(ValueError, match=r"config.data.path '.*junk.npz' is not a readable .npz file"):
    jaxvae.validate_config(_array_config(tmp_path / 'junk.npz'))


def test_bad_python_sources(tmp_path):
  config = _array_config('', dataset='source')
  with pytest.raises(ValueError, match=r'a source must have len\(\) and batched reads; got int'):
    jaxvae.validate_config(config, source=3)
  with pytest.raises(ValueError, match=r'a source must take batched reads .* list\[indices\] raised'):
    jaxvae.validate_config(config, source=[np.zeros((8, 8, 1), np.uint8)] * 4)
  with pytest.raises(ValueError, match=r"batched read must return a dict with 'image' .* got ndarray"):
    jaxvae.validate_config(config, source=np.zeros((4, 8, 8, 1), np.uint8))
  with pytest.raises(ValueError, match=r"the source of split 'test' is empty"):
    jaxvae.validate_config(
      config, source={'train': _Loader(np.zeros((4, 8, 8, 1), np.uint8), np.zeros(4, np.int64)), 'test': []}
    )
  floats = _Loader(np.zeros((16, 8, 8, 1), np.float32), np.zeros(16, np.int64))
  with pytest.raises(ValueError, match=r'`images` in the source \(\w+\) must be uint8'):
    jaxvae.validate_config(config, source=floats)
  del tmp_path
