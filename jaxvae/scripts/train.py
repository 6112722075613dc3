"""Trains a VAE: `jaxvae-train --config default --workdir DIR [--config.field=value ...]`.

`--config` takes a config file (`configs/default.py:smoke`) or a shipped
config's name (`default:smoke`, `celeba:64`). Rerunning with the same
--workdir resumes from its latest intact checkpoint. SIGTERM or Ctrl-C saves
the current step and exits with 128 + the signal.
"""

import json
import pathlib
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

import jaxvae
from jaxvae import _config, configs
from jaxvae.scripts import _common_flags

_CONFIG = config_flags.DEFINE_config_file(
  'config', None, f'A config file (e.g. configs/default.py:smoke) or a shipped config: {", ".join(configs.names())}.'
)
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
  workdir = pathlib.Path(_common_flags.WORKDIR.value)
  state = jaxvae.train_and_evaluate(config, workdir)
  if jax.process_index() == 0:
    print(_summary(workdir, int(state.step)))


def _summary(workdir: pathlib.Path, step: int) -> str:
  """One line: the test-set bound logged at the last checkpoint, and the paths training wrote."""
  records = [json.loads(line) for line in (workdir / 'metrics.jsonl').read_text(encoding='utf-8').splitlines() if line]
  last = next((r for r in reversed(records) if 'eval_elbo' in r or 'eval_reconstruction' in r), {})
  if 'eval_elbo' in last:
    result = f'test ELBO {last["eval_elbo"]:.2f} nats/example (1 sample) at step {last["step"]}'
  elif 'eval_reconstruction' in last:
    result = f'test log p(x | z = encoder mean) {last["eval_reconstruction"]:.2f} nats/example at step {last["step"]}'
  else:
    result = f'trained to step {step}'
  written = ', '.join(
    str(workdir / name)
    for name in ('checkpoints', 'metrics.jsonl', 'tensorboard', 'samples.png', 'reconstructions.png')
    if (workdir / name).exists()
  )
  return f'{result}; wrote {written}'


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
  _common_flags.run(main, check_argv=_check_argv, argv=_with_shipped_configs(sys.argv))
