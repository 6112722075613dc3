"""Evaluation at scale: IWAE images/s and memory at K = 1000 and 5000, and the disentanglement suite on dSprites.

  python benchmarks/evaluation.py [--ks=1000,5000] [--metrics_model=dsprites] [--skip_metrics]

Bounds: `jaxvae.iwae_bounds` on the default model (784-400-20 MLP), jitted on
100 test digits with chunks of 100 samples; images/s excludes compilation
(best of 3), and memory is XLA's own account of the compiled program
(arguments, outputs and temporaries, `Compiled.memory_analysis`), which is
what must stay flat in K. Metrics: `jaxvae.compute_all` with the reference
sample counts of Locatello et al. 2019 on the procedural dSprites, encoding
with the (untrained) conv encoder of configs/dsprites.py: the time is the
metrics' own plus the encoder's, independent of how well the model is trained.
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
import jaxvae  # noqa: E402
from configs import default, dsprites  # noqa: E402
from jaxvae import _data, _dsprites, _models, _run  # noqa: E402

_KS = flags.DEFINE_list('ks', ['1000', '5000'], 'Values of K to measure.')
_SKIP_METRICS = flags.DEFINE_bool('skip_metrics', False, 'Measure the bounds only.')


def iwae_figures(k: int) -> tuple[float, float]:
  """(images/s, MiB of XLA memory) of the K-sample bound on 100 digits."""
  config = default.get_config()
  run = _run.Run(config)
  vae, params = run.vae, run.init_state().params
  batch = next(iter(_data.eval_batches(config.data, batch_size=100)))
  x = _data.prepare_eval_images(batch['image'], batch['index'], data=config.data)

  def bound(params, x, key):
    encoder, decoder = jaxvae.bind_vae(vae, params)
    return jaxvae.iwae_bounds(
      x,
      encoder=encoder,
      decoder=decoder,
      log_likelihood=jaxvae.bernoulli_log_likelihood,
      key=key,
      num_samples=(k,),
      chunk_size=100,
    )[k]

  compiled = jax.jit(bound).lower(params, x, jax.random.key(0)).compile()
  memory = compiled.memory_analysis()
  mib = (memory.argument_size_in_bytes + memory.output_size_in_bytes + memory.temp_size_in_bytes) / 2**20
  best = float('inf')
  for _ in range(3):
    start = time.perf_counter()
    compiled(params, x, jax.random.key(0)).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return len(x) / best, mib


def metric_suite_seconds() -> tuple[float, dict[str, float]]:
  config = dsprites.get_config()
  run = _run.Run(config)
  vae, params = run.vae, run.init_state().params
  encode = jax.jit(lambda x: _models.bind_vae(vae, params)[0](x)[0])
  start = time.perf_counter()
  scores = jaxvae.compute_all(
    _dsprites.DSpritesSource(), lambda obs: np.asarray(encode(jnp.asarray(obs, jnp.float32))), seed=0
  )
  return time.perf_counter() - start, scores


def main(argv):
  del argv
  print(f'{platform.machine()}, {jax.device_count()} x {jax.devices()[0].device_kind}, jax {jax.__version__}')
  print(f'{"K":>6}{"images/s":>12}{"XLA memory (MiB)":>20}')
  for k in map(int, _KS.value):
    rate, mib = iwae_figures(k)
    print(f'{k:>6}{rate:>12.1f}{mib:>20.1f}')
  if not _SKIP_METRICS.value:
    seconds, scores = metric_suite_seconds()
    print(f'full disentanglement suite on dSprites (reference sample counts): {seconds:.0f} s')
    print({name: round(value, 3) for name, value in scores.items()})


if __name__ == '__main__':
  app.run(main)
