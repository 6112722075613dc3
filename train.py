"""Trains a VAE: `python train.py --config configs/default.py --workdir DIR [--config.field=value ...]`.

Rerunning with the same --workdir resumes from its latest checkpoint.
"""

from absl import app, flags, logging
from ml_collections import config_flags

import jaxvae
from jaxvae import _parallel

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Path to a config file, e.g. configs/default.py.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics, images and the config.')
flags.mark_flags_as_required(['config', 'workdir'])
_INITIALIZE_DISTRIBUTED = _parallel.define_distributed_flags()


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  _INITIALIZE_DISTRIBUTED()
  jaxvae.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == '__main__':
  app.run(main)
