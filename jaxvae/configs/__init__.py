"""The shipped run configs: `jaxvae-train --config default` (or `--config configs/default.py` from a clone).

Each module's `get_config(variant)` returns a locked-down ConfigDict; see
`default.py` for every field.
"""

import pathlib

DIRECTORY = pathlib.Path(__file__).resolve().parent


def names() -> tuple[str, ...]:
  """The shipped configs, e.g. `('celeba', 'default', ...)` (`common` holds helpers, not a config)."""
  return tuple(sorted(p.stem for p in DIRECTORY.glob('*.py') if p.stem not in ('__init__', 'common')))


def resolve(spec: str) -> str:
  """`--config`'s value with a shipped config's name or missing path replaced by the shipped file.

  `'default:smoke'` and, outside a clone, `'configs/default.py:smoke'` become
  `'<site-packages>/jaxvae/configs/default.py:smoke'`; an existing file, or a
  name that is no shipped config, comes back unchanged.
  """
  path, colon, variant = spec.partition(':')
  if pathlib.Path(path).is_file():
    return spec
  stem = pathlib.Path(path).name.removesuffix('.py')
  if stem not in names():
    return spec
  return f'{DIRECTORY / f"{stem}.py"}{colon}{variant}'
