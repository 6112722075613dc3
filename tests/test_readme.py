"""The README's Python examples run as printed."""

import os
import re

import numpy as np
from conftest import ROOT


def _python_blocks():
  readme = (ROOT / 'README.md').read_text(encoding='utf-8')
  blocks = re.findall(r'```python\n(.*?)```', readme, flags=re.DOTALL)
  assert len(blocks) == 2
  return blocks


def test_python_example_runs():
  namespace = {}
  exec(compile(_python_blocks()[0], 'README.md', 'exec'), namespace)  # noqa: S102
  assert namespace['bound'].shape == (8,) and np.all(np.isfinite(namespace['bits_per_dim']))


def test_trained_model_example_runs(smoke_run, tmp_path, capsys):
  """The `jaxvae.load` example, on a smoke run standing in for `runs/default`."""
  (tmp_path / 'runs').mkdir()
  (tmp_path / 'runs' / 'default').symlink_to(smoke_run[0])
  namespace = {}
  cwd = os.getcwd()
  os.chdir(tmp_path)
  try:
    exec(compile(_python_blocks()[1], 'README.md', 'exec'), namespace)  # noqa: S102
  finally:
    os.chdir(cwd)
  assert namespace['path'].shape == (10, 28, 28, 1) and namespace['loc'].shape == (8, 4)
  np.testing.assert_allclose(namespace['recon'], namespace['images'], rtol=1e-6)
  assert re.fullmatch(r'ELBO -\d+\.\d, IWAE \(K=100\) -\d+\.\d nats\n', capsys.readouterr().out)
