"""Trains a VAE: `python train.py --config configs/default.py --workdir DIR [--config.field=value ...]`.

Rerunning with the same --workdir resumes from its latest intact checkpoint.
SIGTERM or Ctrl-C saves the current step and exits with 128 + the signal.
"""

from absl import app, flags, logging
from ml_collections import config_flags

import jaxvae
from jaxvae import _config
from jaxvae.scripts import _common_flags

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Path to a config file, e.g. configs/default.py.')
flags.mark_flags_as_required(['config', 'workdir'])


def _overridden_fields(argv: list[str]) -> list[str]:
  """The dotted fields of `--config.FIELD=VALUE` (or `--config.FIELD VALUE`) arguments."""
  return [arg.removeprefix('--config.').partition('=')[0] for arg in argv if arg.startswith('--config.')]


def _check_argv(argv: list[str]) -> None:
  """Names an unknown `--config.FIELD`, with suggestions, before absl's parser fails on it with a traceback."""
  _config.check_field_names(_overridden_fields(argv))


def _load_config():
  """The config with its overrides; a config file that failed to load is a user's mistake."""
  config = _CONFIG.value
  try:
    config.to_dict()  # a file that failed to load is a stand-in that raises on first use
  except OSError as error:
    _common_flags.user_error(f'cannot load --config: {" ".join(str(error).split())}')
  return config


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  config = _load_config()
  _common_flags.join_processes()
  jaxvae.train_and_evaluate(config, _common_flags.WORKDIR.value)


def run() -> None:
  _common_flags.run(main, check_argv=_check_argv)
