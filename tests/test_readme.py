"""The README's Python example runs as printed."""

import re

import numpy as np
from conftest import ROOT


def test_python_example_runs():
  readme = (ROOT / 'README.md').read_text(encoding='utf-8')
  blocks = re.findall(r'```python\n(.*?)```', readme, flags=re.DOTALL)
  assert len(blocks) == 1
  namespace = {}
  exec(compile(blocks[0], 'README.md', 'exec'), namespace)  # noqa: S102
  assert namespace['bound'].shape == (8,) and np.all(np.isfinite(namespace['bits_per_dim']))
