"""Input-pipeline throughput next to training throughput, per dataset: the pipeline must outpace training.

  python benchmarks/pipeline.py [--seconds=5]

For each dataset, images/s delivered by `jaxvae`'s training iterator (grain,
the config's read threads, prefetching; the first batch excluded) and
images/s of the config's jitted train step on this machine (compilation
excluded). tfds datasets are read through `tfds.testing.mock_data`, which
generates random examples instead of decoding stored ones, so the time of a
real PNG/JPEG decode is measured separately and reported beside them.
"""

import io
import pathlib
import platform
import sys
import time

import jax
import numpy as np
import tensorflow_datasets as tfds
from absl import app, flags, logging
from PIL import Image

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))  # the repository root, for `configs`
from configs import celeba, default, dsprites, mnist  # noqa: E402
from jaxvae import _data, _run, _train  # noqa: E402

_SECONDS = flags.DEFINE_float('seconds', 5.0, 'How long to draw batches from each pipeline.')
_TRAIN_STEPS = flags.DEFINE_integer('train_steps', 5, 'Timed train steps per model.')

# (label, config)
_CASES = (
  ('mnist_5k (MLP 784-400-20)', default.get_config()),
  ('mnist, tfds mock (MLP 784-200-200-50)', mnist.get_config()),
  ('dsprites (conv 64x64)', dsprites.get_config()),
  ('celeb_a 64, tfds mock (conv)', celeba.get_config('64')),
  ('celeb_a 128, tfds mock (conv)', celeba.get_config()),
)


def pipeline_images_per_second(config, *, seconds):
  batches = _data.train_batches(
    _data.open_source(config.data, config.data.train_split),
    batch_size=config.train.batch_size,
    seed=0,
    in_memory=_data.DATASETS[config.data.dataset].in_memory,
    num_threads=config.data.read_threads,
  )
  next(batches)
  start, count = time.perf_counter(), 0
  while time.perf_counter() - start < seconds:
    count += len(next(batches)['image'])
  return count / (time.perf_counter() - start)


def train_images_per_second(config, *, steps):
  run = _run.Run(config)
  step = _train.make_train_step(run)
  state = run.init_state()
  shape = (config.train.batch_size, *_data.event_shape(config.data))
  batch = {'image': np.random.default_rng(0).integers(0, _data.DATASETS[config.data.dataset].max_value + 1, shape)}
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
  with tfds.testing.mock_data(num_examples=2048):
    for label, config in _CASES:
      supply = pipeline_images_per_second(config, seconds=_SECONDS.value)
      demand = train_images_per_second(config, steps=_TRAIN_STEPS.value)
      print(f'{label:<40}{supply:>16,.0f}{demand:>14,.0f}{supply / demand:>8.1f}')
  print()
  for name, shape, image_format in (('MNIST', (28, 28, 1), 'PNG'), ('CelebA', (218, 178, 3), 'JPEG')):
    print(f'decoding one stored {name} {image_format} {shape}: {decode_microseconds(shape, image_format):.0f} us')


if __name__ == '__main__':
  app.run(main)
