"""Train-step throughput of the Variational U-Net at 128x128x3, batch 32, as a fraction of the matmul peak.

  python benchmarks/shape_appearance.py [--batch_size=32] [--steps=5] [--repeats=3] [--variant=]

The model of `configs/shape_appearance.py` (learned prior, edge structure
maps computed inside the step). Useful FLOPs are XLA's own count for the
compiled step (`jax.jit(step).lower(...).compile().cost_analysis()['flops']`,
convolutions and matmuls included, 2 per multiply-add), divided by the time
of one step (best of `repeats` runs of `steps` steps, compilation excluded)
and by the float32 matmul peak measured in the same process (a 2048^3 matmul,
best of several runs, before and after the model, so drift shows). Also the
input pipeline's rendering rate of the procedural shapes, which the step
must not outrun. `--variant=smoke` times the smoke model instead.
"""

import pathlib
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))  # the repository root, for `configs`
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # this folder, for `timing`
import timing  # noqa: E402

from configs import shape_appearance  # noqa: E402
from jaxvae import _data, _run, _train  # noqa: E402

_BATCH_SIZE = flags.DEFINE_integer('batch_size', 32, 'Train batch size.')
_STEPS = flags.DEFINE_integer('steps', 5, 'Steps per timed repeat.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed repeats; the best is reported.')
_VARIANT = flags.DEFINE_string('variant', '', 'Variant of configs/shape_appearance.py to time.')


def train_figures(config, *, steps, repeats):
  """`(seconds per step, XLA's FLOPs per step)` of the run's jitted train step."""
  run = _run.Run(config)
  step = _train.make_train_step(run)
  state = run.init_state()
  source = _data.open_source(config.data, config.data.train_split)
  batch = {name: jnp.asarray(value) for name, value in source.read(np.arange(config.train.batch_size)).items()}
  batch = {name: batch[name] for name in run.features}
  cost = step.lower(state, batch).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost['flops'])

  def run_steps():
    nonlocal state
    for _ in range(steps):
      state, metrics = step(state, batch)
    return metrics['train_loss']

  run_steps()  # compile and warm up
  return timing.best_seconds(run_steps, repeats=repeats) / steps, flops


def render_images_per_second(config, *, num=256):
  source = _data.open_source(config.data, config.data.train_split)
  source.read(np.arange(32))
  start = time.perf_counter()
  source.read(np.arange(num))
  return num / (time.perf_counter() - start)


def main(argv):
  del argv
  config = shape_appearance.get_config(_VARIANT.value)
  config.train.batch_size = _BATCH_SIZE.value
  print(f'jax {jax.__version__}, {jax.devices()[0].device_kind} x{jax.device_count()}, {platform.processor() or "?"}')
  peak_before = timing.matmul_peak_flops()
  seconds, flops = train_figures(config, steps=_STEPS.value, repeats=_REPEATS.value)
  peak = max(peak_before, timing.matmul_peak_flops())
  height = _data.event_shape(config.data)[0]
  print(f'float32 matmul peak (2048^3): {peak / 1e9:.1f} GFLOP/s (before model: {peak_before / 1e9:.1f})')
  name = f'train step, {height}x{height}x3, batch {config.train.batch_size}'
  print(f'{"":36}{"ms/step":>10}{"images/s":>10}{"GFLOP/step":>12}{"GFLOP/s":>10}{"of peak":>9}')
  print(
    f'{name:36}{1e3 * seconds:10.1f}{config.train.batch_size / seconds:10.1f}{flops / 1e9:12.2f}'
    f'{flops / seconds / 1e9:10.1f}{flops / seconds / peak:9.1%}'
  )
  print(f'{"procedural shapes rendered (host)":36}{"":10}{render_images_per_second(config):10.0f}')


if __name__ == '__main__':
  app.run(main)
