"""`python -m jaxvae train ...` and `python -m jaxvae eval ...`: the `jaxvae-train` and `jaxvae-eval` programs."""

import importlib
import sys

# Imported by name once chosen: each program defines its own absl flags (train's `--config` is required), so
# importing both would make every program demand the other's flags.
_PROGRAMS = {'train': 'jaxvae.scripts.train', 'eval': 'jaxvae.scripts.eval'}


def main() -> None:
  if len(sys.argv) < 2 or sys.argv[1] not in _PROGRAMS:
    sys.exit(
      'usage: python -m jaxvae {train,eval} [flags], e.g. python -m jaxvae train --config default:smoke '
      '--workdir runs/smoke; --help after the program lists its flags'
    )
  program = sys.argv.pop(1)
  sys.argv[0] = f'jaxvae-{program}'
  importlib.import_module(_PROGRAMS[program]).run()


if __name__ == '__main__':
  main()
