"""Evaluates a trained VAE on the test split: `python eval.py --workdir DIR [--iwae_num_samples K]`.

Uses the latest checkpoint in DIR and the config stored with it; prints a table
and writes DIR/eval/step_<step>.json.
"""

from absl import app, flags, logging

import jaxvae
from jaxvae import _parallel

_WORKDIR = flags.DEFINE_string('workdir', None, 'The --workdir of a training run.')
_IWAE_NUM_SAMPLES = flags.DEFINE_integer(
  'iwae_num_samples', None, 'K of the importance-weighted bound (default: the run config, 1000).', lower_bound=1
)
flags.mark_flags_as_required(['workdir'])
_INITIALIZE_DISTRIBUTED = _parallel.define_distributed_flags()


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  logging.set_verbosity(logging.WARNING)
  _INITIALIZE_DISTRIBUTED()
  jaxvae.evaluate(_WORKDIR.value, iwae_num_samples=_IWAE_NUM_SAMPLES.value)


if __name__ == '__main__':
  app.run(main)
