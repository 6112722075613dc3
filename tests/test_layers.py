"""The import graph of `jaxvae/`: no cycle, and every import runs down the layers of README's Layout section.

Function-level imports count: a local import that dodges a cycle is still an upward arrow.
"""

import ast

from conftest import ROOT

# From the top down; a module imports only modules of its own layer or below.
LAYERS = (
  ('__main__', 'scripts.train', 'scripts.eval', 'scripts._common_flags'),
  # The shipped configs import only each other.
  tuple(f'configs.{path.stem}' for path in (ROOT / 'jaxvae' / 'configs').glob('*.py') if path.stem != '__init__'),
  ('_train', '_evaluate', '_load'),
  ('_run',),
  (
    '_config',
    '_checkpoint',
    '_workdir',
    '_log_writer',
    '_pictures',
    '_dataset_bounds',
    '_disentanglement',
    '_parallel',
    '_transfer',
  ),
  ('_family', '_conditions', '_data', '_dsprites', '_image_files', '_shapes'),
  ('_models', '_discriminator', '_unet'),
  ('_bounds', '_gaussian', '_likelihoods', '_objectives', '_checks', '_types', '_learned_prior'),
)
# Same-layer pairs that must not import each other either way.
INDEPENDENT = (('_train', '_evaluate'), ('_train', '_load'), ('_evaluate', '_load'))


def _imports() -> dict[str, set[str]]:
  """Module (relative to `jaxvae.`) -> the jaxvae modules it imports anywhere in its source."""
  package = ROOT / 'jaxvae'
  graph = {}
  for path in package.rglob('*.py'):
    if path.name == '__init__.py':
      continue
    name = '.'.join(path.relative_to(package).with_suffix('').parts)
    imported = set()
    for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
      if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith('jaxvae'):
        base = node.module.removeprefix('jaxvae').lstrip('.')
        imported |= {f'{base}.{alias.name}'.lstrip('.') for alias in node.names}
      elif isinstance(node, ast.Import):
        imported |= {alias.name.removeprefix('jaxvae.') for alias in node.names if alias.name.startswith('jaxvae.')}
    graph[name] = imported
  return {name: {i for i in imported if i in graph} for name, imported in graph.items()}


def test_every_module_has_a_layer():
  assert set(_imports()) == {name for layer in LAYERS for name in layer}


def test_imports_run_down_the_layers():
  rank = {name: i for i, layer in enumerate(LAYERS) for name in layer}
  upward = [(a, b) for a, imported in _imports().items() for b in imported if rank[b] < rank[a]]
  assert not upward, f'imports up the layers: {upward}'
  graph = _imports()
  for a, b in INDEPENDENT:
    assert b not in graph[a] and a not in graph[b]


def test_no_import_cycle():
  graph = _imports()
  done, on_path = set(), []

  def visit(name):
    assert name not in on_path, f'import cycle: {" -> ".join([*on_path[on_path.index(name) :], name])}'
    if name in done:
      return
    on_path.append(name)
    for imported in sorted(graph[name]):
      visit(imported)
    on_path.pop()
    done.add(name)

  for name in sorted(graph):
    visit(name)
