"""Train and IWAE-evaluation throughput of the default model, as a fraction of the machine's matmul peak.

  python benchmarks/throughput.py [--batch_sizes=128,1024] [--iwae_num_samples=1000]

The default model (784-400-20 MLP, Bernoulli) is compute-bound on a CPU, so
the honest figure of merit is achieved matmul FLOP/s over the float32 matmul
peak measured in the same process (a 2048^3 matmul, best of several runs,
measured before and after the model so drift shows). Times exclude
compilation; each figure is the best of several repeats of many steps.

Useful FLOPs count only the model's matmuls (2 per multiply-add): forward
F = 2 (784*400 + 400*40 + 20*400 + 400*784) per example; a train step
3F - 2*784*400 per example (no gradient for the input); IWAE with K samples
F_enc + K * F_dec per example.
"""

import functools
import itertools
import pathlib
import platform
import sys

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))  # the repository root, for `configs`
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # this folder, for `timing`
import timing  # noqa: E402

import jaxvae  # noqa: E402
from configs import default  # noqa: E402
from jaxvae import _data, _run, _train  # noqa: E402

_BATCH_SIZES = flags.DEFINE_list('batch_sizes', ['128', '1024'], 'Train batch sizes to measure.')
_IWAE_NUM_SAMPLES = flags.DEFINE_integer('iwae_num_samples', 1000, 'K for the evaluation benchmark.')
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed repeats; the best is reported.')


def _layer_flops(sizes):
  return 2 * sum(m * n for m, n in itertools.pairwise(sizes))


def train_throughput(config, batch_size, *, repeats):
  config = config.copy_and_resolve_references()
  config.train.batch_size = batch_size
  run = _run.Run(config)
  step = _train.make_train_step(run)
  state = run.init_state()
  images = _data.load_mnist_5k()['train'].arrays['image']
  batch = {'image': jnp.asarray(images[np.arange(batch_size) % len(images)])}
  steps = max(20, 40_000 // batch_size)

  def run():
    nonlocal state
    for _ in range(steps):
      state, metrics = step(state, batch)
    return metrics['train_loss']

  run()  # compile and warm up
  seconds = timing.best_seconds(run, repeats=repeats) / steps
  hidden, latent = config.model.hidden_sizes[0], config.model.latent_dim
  forward = _layer_flops([784, hidden, 2 * latent]) + _layer_flops([latent, hidden, 784])
  flops = batch_size * (3 * forward - 2 * 784 * hidden)
  return seconds, flops


def iwae_throughput(config, num_samples, *, repeats):
  run = _run.Run(config)
  encoder, decoder = jaxvae.bind_vae(run.vae, run.init_state().params)
  batch = next(iter(_data.eval_batches(config.data, batch_size=config.eval.batch_size)))
  x = _data.prepare_eval_images(batch['image'], batch['index'], data=config.data)
  bound = jax.jit(
    functools.partial(
      jaxvae.iwae_bound,
      encoder=encoder,
      decoder=decoder,
      log_likelihood=jaxvae.bernoulli_log_likelihood,
      num_samples=num_samples,
      chunk_size=config.eval.iwae_chunk_size,
    )
  )
  key = jax.random.key(0)
  bound(x, key=key).block_until_ready()
  seconds = timing.best_seconds(lambda: bound(x, key=key), repeats=repeats)
  hidden, latent = config.model.hidden_sizes[0], config.model.latent_dim
  flops = len(x) * (_layer_flops([784, hidden, 2 * latent]) + num_samples * _layer_flops([latent, hidden, 784]))
  return seconds, flops, len(x)


def main(argv):
  del argv
  config = default.get_config()

  print(
    f'machine: {platform.processor() or platform.machine()}, {jax.device_count()} x {jax.devices()[0].device_kind}, '
    f'jax {jax.__version__}, python {platform.python_version()}'
  )
  peak_before = timing.matmul_peak_flops()
  rows = []
  for batch_size in map(int, _BATCH_SIZES.value):
    seconds, flops = train_throughput(config, batch_size, repeats=_REPEATS.value)
    rows.append(
      (f'train step, batch {batch_size}', f'{1 / seconds:8.1f} steps/s', batch_size / seconds, flops / seconds)
    )
  seconds, flops, num = iwae_throughput(config, _IWAE_NUM_SAMPLES.value, repeats=max(2, _REPEATS.value // 2))
  rows.append(
    (f'IWAE eval, K={_IWAE_NUM_SAMPLES.value}', f'{seconds * 1e3 / num:6.2f} ms/image', num / seconds, flops / seconds)
  )
  peak = max(peak_before, timing.matmul_peak_flops())
  print(f'float32 matmul peak (2048^3): {peak / 1e9:.1f} GFLOP/s (before model: {peak_before / 1e9:.1f})')
  print(f'{"":28}{"rate":>18}{"images/s":>12}{"GFLOP/s":>10}{"of peak":>9}')
  for name, rate, images_per_second, flop_rate in rows:
    print(f'{name:28}{rate:>18}{images_per_second:12.0f}{flop_rate / 1e9:10.1f}{flop_rate / peak:9.1%}')


if __name__ == '__main__':
  app.run(main)
