"""Input-pipeline throughput next to training throughput, per dataset: the pipeline must outpace training.

  python benchmarks/pipeline.py [--seconds=5] [--folder_images=512] [--threads=1,2,4]

For each dataset, images/s delivered by `jaxvae`'s training iterator (grain,
the config's read threads, prefetching; the first batch excluded) and
images/s of the config's jitted train step on this machine (compilation
excluded). tfds datasets are read through `tfds.testing.mock_data` with
batched reads (`__getitems__`), which generates random examples instead of
decoding stored ones, so the time of a real PNG/JPEG decode is measured
separately and reported beside them. A folder source is measured on real
files: `--folder_images` 218x178 JPEGs (CelebA's size, photo-like) written to
a temporary folder, decoded, centre-cropped and resized to 64 and 128 pixels
with each number of `--threads`, beside the CelebA conv model's train step.
"""

import io
import pathlib
import platform
import sys
import tempfile
import time

import jax
import numpy as np
import tensorflow_datasets as tfds
from absl import app, flags, logging
from PIL import Image

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))  # the repository root, for `configs`
from tensorflow_datasets.testing import mocking  # noqa: E402

from configs import celeba, default, dsprites, mnist  # noqa: E402
from jaxvae import _data, _run, _train  # noqa: E402

_SECONDS = flags.DEFINE_float('seconds', 5.0, 'How long to draw batches from each pipeline.')
_TRAIN_STEPS = flags.DEFINE_integer('train_steps', 5, 'Timed train steps per model.')
_FOLDER_IMAGES = flags.DEFINE_integer('folder_images', 512, 'JPEGs written for the folder source.')
_THREADS = flags.DEFINE_list('threads', ['1', '2', '4'], 'data.read_threads values for the folder source.')

# (label, config)
_CASES = (
  ('mnist_5k (MLP 784-400-20)', default.get_config()),
  ('mnist, tfds mock (MLP 784-200-200-50)', mnist.get_config()),
  ('dsprites (conv 64x64)', dsprites.get_config()),
  ('celeb_a 64, tfds mock (conv)', celeba.get_config('64')),
  ('celeb_a 128, tfds mock (conv)', celeba.get_config()),
  ('tfds:fashion_mnist, tfds mock (MLP)', mnist.get_config()),
)
_CASES[-1][1].data.dataset = 'tfds:fashion_mnist'


def _mock_getitems(*args, generator, serialized=False):
  """tfds 4.9.10's mock `__getitems__` gets no `self` (a plain attribute): this one takes the keys last."""
  del serialized
  return [generator[key] for key in args[-1]]


def write_jpegs(folder, num, shape=(218, 178, 3)):
  """`num` photo-like JPEGs of `shape` (smooth gradients and mild noise, as CelebA compresses)."""
  rng = np.random.default_rng(0)
  rows, cols = np.meshgrid(np.linspace(0, 1, shape[0]), np.linspace(0, 1, shape[1]), indexing='ij')
  for i in range(num):
    tint = rng.uniform(0.3, 1.0, 3)
    smooth = 220 * tint * (rows[..., None] * cols[..., None]) + rng.normal(0, 4, shape)
    Image.fromarray(np.clip(smooth, 0, 255).astype(np.uint8)).save(folder / f'{i:05d}.jpg', quality=90)


def pipeline_images_per_second(config, *, seconds):
  batches = _data.train_batches(
    _data.open_source(config.data, config.data.train_split),
    batch_size=config.train.batch_size,
    seed=0,
    in_memory=_data.dataset_info(config.data).in_memory,
    num_threads=config.data.read_threads,
  )
  next(batches)
  start, count = time.perf_counter(), 0
  while time.perf_counter() - start < seconds:
    count += len(next(batches)['image'])
  elapsed = time.perf_counter() - start
  batches.close()  # stops the prefetch threads before the next case (and before the folder is deleted)
  return count / elapsed


def train_images_per_second(config, *, steps):
  run = _run.Run(config)
  step = _train.make_train_step(run)
  state = run.init_state()
  shape = (config.train.batch_size, *_data.event_shape(config.data))
  batch = {'image': np.random.default_rng(0).integers(0, _data.dataset_info(config.data).max_value + 1, shape)}
  batch['image'] = batch['image'].astype(np.uint8)
  state, metrics = step(state, batch)  # compile
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  return steps * config.train.batch_size / (time.perf_counter() - start)


def decode_microseconds(shape, image_format, *, repeats=200):
  """Time to decode one stored image of `shape` in `image_format` (what the mock skips)."""
  # A smooth picture with mild noise compresses like a photo; pure noise would not.
  rows, cols = np.meshgrid(np.linspace(0, 1, shape[0]), np.linspace(0, 1, shape[1]), indexing='ij')
  smooth = 200 * rows[..., None] * cols[..., None] + np.random.default_rng(0).normal(0, 4, shape)
  pixels = np.clip(smooth, 0, 255).astype(np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(pixels.squeeze()).save(buffer, format=image_format)
  encoded = buffer.getvalue()
  start = time.perf_counter()
  for _ in range(repeats):
    np.asarray(Image.open(io.BytesIO(encoded)))
  return (time.perf_counter() - start) / repeats * 1e6


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # tfds's mock announces every dataset it mocks
  print(f'{platform.processor() or platform.machine()}, {jax.device_count()} x {jax.devices()[0].device_kind}')
  print(f'jax {jax.__version__}, tfds {tfds.__version__}\n')
  print(f'{"dataset (model)":<40}{"pipeline img/s":>16}{"train img/s":>14}{"ratio":>8}')
  mocking._getitems = _mock_getitems  # pylint: disable=protected-access
  with tfds.testing.mock_data(num_examples=2048):
    for label, config in _CASES:
      supply = pipeline_images_per_second(config, seconds=_SECONDS.value)
      demand = train_images_per_second(config, steps=_TRAIN_STEPS.value)
      print(f'{label:<40}{supply:>16,.0f}{demand:>14,.0f}{supply / demand:>8.1f}')
  with tempfile.TemporaryDirectory() as folder:
    write_jpegs(pathlib.Path(folder), _FOLDER_IMAGES.value)
    for size in (64, 128):
      config = celeba.get_config('64' if size == 64 else '')
      config.data.update({'dataset': 'folder', 'path': folder, 'crop_size': 0})
      demand = train_images_per_second(config, steps=_TRAIN_STEPS.value)
      for threads in map(int, _THREADS.value):
        config.data.read_threads = threads
        supply = pipeline_images_per_second(config, seconds=_SECONDS.value)
        label = f'folder JPEG 218x178 -> {size}, {threads} thread{"s" * (threads > 1)}'
        print(f'{label:<40}{supply:>16,.0f}{demand:>14,.0f}{supply / demand:>8.1f}')
  print()
  for name, shape, image_format in (('MNIST', (28, 28, 1), 'PNG'), ('CelebA', (218, 178, 3), 'JPEG')):
    print(f'decoding one stored {name} {image_format} {shape}: {decode_microseconds(shape, image_format):.0f} us')


if __name__ == '__main__':
  app.run(main)
