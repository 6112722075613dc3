"""Trains a VAE: `python train.py --config configs/default.py --workdir DIR [--config.field=value ...]`.

Rerunning with the same --workdir resumes from its latest checkpoint.
"""

from absl import app, flags, logging
from ml_collections import config_flags

import jaxvae
from jaxvae.scripts import _common_flags

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Path to a config file, e.g. configs/default.py.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  _common_flags.join_processes()
  jaxvae.train_and_evaluate(_CONFIG.value, _common_flags.WORKDIR.value)


def run() -> None:
  app.run(main)
