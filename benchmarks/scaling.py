"""Data-parallel scaling: train-step images/s of the default and the CelebA model over 1, 2, 4 and 8 devices.

  python benchmarks/scaling.py [--device_counts=1,2,4,8] [--steps=10]

Each device count runs in a fresh process (the count of simulated CPU devices,
`--xla_force_host_platform_device_count`, is fixed when JAX starts; on a GPU
or TPU host the real devices are used, up to the count asked for). The step
is the library's own sharded `make_train_step` on a resident global batch of
the config's size; compilation is excluded. Simulated CPU devices share the
machine's cores, so on a CPU the curve measures the cost of sharding (the
all-reduce, per-device dispatch), not a speed-up.
"""

import json
import os
import pathlib
import subprocess
import sys
import time

from absl import app, flags

_ROOT = pathlib.Path(__file__).resolve().parent.parent
_DEVICE_COUNTS = flags.DEFINE_list('device_counts', ['1', '2', '4', '8'], 'Device counts to measure.')
_STEPS = flags.DEFINE_integer('steps', 10, 'Timed steps per measurement (best of 3 repeats).')
_WORKER = flags.DEFINE_integer('worker_devices', 0, 'Internal: measure on this many devices and print JSON.')

_MODELS = (('default MLP, batch 128', 'default', ''), ('CelebA conv 64x64, batch 64', 'celeba', '64'))


def _measure(num_devices: int, steps: int) -> dict[str, float]:
  import jax  # pylint: disable=import-outside-toplevel (after XLA_FLAGS is set)
  import numpy as np  # pylint: disable=import-outside-toplevel

  sys.path.insert(0, str(_ROOT))
  from configs import celeba, default  # pylint: disable=import-outside-toplevel
  from jaxvae import _data, _parallel, _run, _train  # pylint: disable=import-outside-toplevel

  configs = {'default': default.get_config(), 'celeba': celeba.get_config('64')}
  mesh = _parallel.make_mesh(jax.devices()[:num_devices])
  results = {}
  for label, name, _ in _MODELS:
    config = configs[name]
    run = _run.Run(config, mesh=mesh)
    state = run.init_state()
    step = _train.make_train_step(run)
    shape = (config.train.batch_size, *_data.event_shape(config.data))
    batch = _parallel.global_batch({'image': np.random.default_rng(0).integers(0, 256, shape, np.uint8)}, mesh)
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    best = float('inf')
    for _ in range(3):
      start = time.perf_counter()
      for _ in range(steps):
        state, metrics = step(state, batch)
      jax.block_until_ready(metrics)
      best = min(best, time.perf_counter() - start)
    results[label] = steps * config.train.batch_size / best
  results['device_kind'] = jax.devices()[0].device_kind
  return results


def main(argv):
  del argv
  if _WORKER.value:
    print(json.dumps(_measure(_WORKER.value, _STEPS.value)))
    return
  rows = {}
  for count in map(int, _DEVICE_COUNTS.value):
    env = {**os.environ, 'XLA_FLAGS': f'--xla_force_host_platform_device_count={count}'}
    command = [sys.executable, __file__, f'--worker_devices={count}', f'--steps={_STEPS.value}']
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    rows[count] = json.loads(output.strip().splitlines()[-1])
  kind = rows[next(iter(rows))].pop('device_kind')
  print(f'images/s on {kind} devices (ratio to 1 device)')
  print(f'{"devices":<10}' + ''.join(f'{label:>34}' for label, _, _ in _MODELS))
  base = rows.get(1)
  for count, row in rows.items():
    row.pop('device_kind', None)
    cells = [f'{row[label]:,.0f}' + (f' ({row[label] / base[label]:.2f})' if base else '') for label, _, _ in _MODELS]
    print(f'{count:<10}' + ''.join(f'{cell:>34}' for cell in cells))


if __name__ == '__main__':
  app.run(main)
