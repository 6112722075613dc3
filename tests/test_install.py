"""The README's two commands, run as printed in a copy of the repository with its own fresh virtual environment.

Slow (a fresh install downloads about 1 GB unless pip's cache holds it, then a
40-second training and an evaluation at K = 1000): marked `slow`, so CI's
`-m 'not slow'` skips it. Run it on its own, e.g. nightly or before a release:
`python -m pytest -q -m slow tests/test_install.py`.
"""

import re
import shutil
import subprocess

import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow


def _sh_blocks():
  return re.findall(r'```sh\n(.*?)\n```', (ROOT / 'README.md').read_text(encoding='utf-8'), flags=re.DOTALL)


def _run(command, cwd):
  """`command` in bash, in a clean environment (no PYTHONPATH or outer virtual environment)."""
  env = {'PATH': '/usr/local/bin:/usr/bin:/bin', 'HOME': str(cwd), 'LANG': 'C.UTF-8'}
  result = subprocess.run(['bash', '-c', command], cwd=cwd, env=env, capture_output=True, text=True, timeout=3600)
  assert result.returncode == 0, f'{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}'
  return result


@pytest.fixture(scope='module')
def clone(tmp_path_factory):
  if shutil.which('python3', path='/usr/local/bin:/usr/bin:/bin') is None:
    pytest.skip('no python3 on the standard PATH')
  copy = tmp_path_factory.mktemp('clone') / 'jaxvae'
  shutil.copytree(
    ROOT, copy, symlinks=True, ignore=shutil.ignore_patterns('.venv', 'runs', '__pycache__', '*.egg-info')
  )
  return copy


def test_readme_train_and_eval_command(clone):
  train_and_eval = next(
    block for block in _sh_blocks() if block.startswith('python3 -m venv') and 'jaxvae-train' in block
  )
  result = _run(train_and_eval, clone)
  assert re.search(r'test ELBO -\d+\.\d\d nats/example \(1 sample\) at step 3125; wrote ', result.stdout)
  assert re.search(r'NLL <= -IWAE, K=1000', result.stdout)
  assert (clone / 'runs' / 'default' / 'pictures' / 'traversals.png').is_file()
  assert 'Warning' not in result.stderr and 'WARNING' not in result.stderr  # nothing a user cannot act on


def test_readme_test_command_installs_and_runs_tests(clone):
  test_command = (ROOT / '.ci' / 'run').read_text(encoding='utf-8').strip().splitlines()[-1]
  # The suite itself is what CI runs; here the install, the linters and one test file, in the fresh environment.
  prefix, _, _ = test_command.partition('python -m pytest')
  _run(prefix + 'python -m pytest -q tests/test_packaging.py', clone)


def test_a_plain_install_outside_a_clone_finds_the_shipped_configs(clone, tmp_path):
  _run(f'python3 -m venv {tmp_path}/venv && {tmp_path}/venv/bin/pip install -q {clone}', tmp_path)
  out = _run(
    f'{tmp_path}/venv/bin/jaxvae-train --config default:smoke --workdir w && '
    f'{tmp_path}/venv/bin/python -m jaxvae eval --workdir w --iwae_num_samples=5 && '
    f'{tmp_path}/venv/bin/python -c "import jaxvae; print(jaxvae.__version__)"',
    tmp_path,
  )
  assert 'test ELBO' in out.stdout and 'IWAE bound' in out.stdout and out.stdout.strip().endswith('0.1.0')
