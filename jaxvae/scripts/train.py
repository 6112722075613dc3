"""Trains a VAE: `jaxvae-train --config default --workdir DIR [--config.field=value ...]`.

`--config` takes a config file (`configs/default.py:smoke`) or a shipped
config's name (`default:smoke`, `celeba:64`). Rerunning with the same
--workdir resumes from its latest checkpoint.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

import jaxvae
from jaxvae import configs
from jaxvae.scripts import _common_flags

_CONFIG = config_flags.DEFINE_config_file(
  'config', None, f'A config file (e.g. configs/default.py:smoke) or a shipped config: {", ".join(configs.names())}.'
)
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  _common_flags.join_processes()
  jaxvae.train_and_evaluate(_CONFIG.value, _common_flags.WORKDIR.value)


def _with_shipped_configs(argv: list[str]) -> list[str]:
  """`argv` with `--config`'s value resolved by `jaxvae.configs.resolve` (names of shipped configs)."""
  argv = list(argv)
  for i, arg in enumerate(argv):
    if arg.startswith('--config='):
      argv[i] = '--config=' + configs.resolve(arg.removeprefix('--config='))
    elif arg == '--config' and i + 1 < len(argv):
      argv[i + 1] = configs.resolve(argv[i + 1])
  return argv


def run() -> None:
  app.run(main, argv=_with_shipped_configs(sys.argv))
