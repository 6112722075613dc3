"""Training and evaluation end to end on the tiny smoke config: outputs, resume, and errors."""

import collections
import json
import logging
import re
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest
from conftest import ROOT, load_config

import jaxvae
from jaxvae import _run, _train


def _params(state):
  return jax.tree.map(np.asarray, state.params)


def test_resume_reproduces_an_uninterrupted_run(smoke_config, tmp_path):
  straight = jaxvae.train_and_evaluate(smoke_config, tmp_path / 'straight')

  interrupted = smoke_config.copy_and_resolve_references()
  interrupted.train.num_train_steps = 3  # stops at the first checkpoint ...
  jaxvae.train_and_evaluate(interrupted, tmp_path / 'resumed')
  resumed = jaxvae.train_and_evaluate(smoke_config, tmp_path / 'resumed')  # ... and picks up there

  assert int(resumed.step) == int(straight.step) == smoke_config.train.num_train_steps
  chex.assert_trees_all_close(_params(resumed), _params(straight), rtol=1e-6, atol=1e-6)
  chex.assert_trees_all_close(
    jax.tree.map(np.asarray, resumed.opt_state), jax.tree.map(np.asarray, straight.opt_state), rtol=1e-6, atol=1e-6
  )

  workdir = tmp_path / 'straight'
  for name in ('config.json', 'metrics.jsonl', 'samples.png', 'reconstructions.png'):
    assert (workdir / name).is_file(), name
  assert any((workdir / 'tensorboard').iterdir())
  stored = json.loads((workdir / 'config.json').read_text())
  assert stored['train']['num_train_steps'] == smoke_config.train.num_train_steps
  lines = [json.loads(line) for line in (workdir / 'metrics.jsonl').read_text().splitlines()]
  assert [line['step'] for line in lines] == [2, 3, 4, 6]  # every 2 steps, and at the checkpoints (3, 6)
  assert {'train_loss', 'train_kl', 'train_grad_norm', 'train_param_norm'} <= set(lines[0])
  assert 'eval_elbo' in lines[1] and np.isfinite(lines[-1]['eval_elbo'])
  kept = sorted(int(p.name) for p in (workdir / 'checkpoints').iterdir())
  assert kept == [3, 6]
  for step in kept:  # the input pipeline's position is saved with the state
    position = json.loads((workdir / 'checkpoints' / str(step) / 'data_iterator' / 'process_0-of-1.json').read_text())
    assert position == {'next_index': step}

  evaluation = jaxvae.evaluate(workdir, iwae_num_samples=7)
  bounds = evaluation.bounds
  assert evaluation.step == 6 and list(bounds.iwae) == [7] and bounds.num_examples == 200
  assert bounds.elbo.mean <= bounds.iwae[7].mean + 3 * bounds.iwae[7].stderr
  assert bounds.nll == jaxvae.Estimate(-bounds.iwae[7].mean, bounds.iwae[7].stderr)
  np.testing.assert_allclose(bounds.nll_bits_per_dim.mean, -bounds.iwae[7].mean / (784 * np.log(2)), rtol=1e-6)
  written = json.loads((workdir / 'eval' / 'step_6.json').read_text())
  assert evaluation.path == workdir / 'eval' / 'step_6.json' and written['dataset'] == 'mnist_5k'
  assert written['iwae_nats'] == {'7': {'mean': bounds.iwae[7].mean, 'stderr': bounds.iwae[7].stderr}}
  assert written['nll_num_samples'] == 7 and written['nll_bpd'] == written['iwae_bpd']['7']


class _TraceCounter(logging.Handler):
  """Counts `jax.log_compiles`'s 'Finished tracing NAME for jit' records by function name."""

  def __init__(self):
    super().__init__()
    self.traces = collections.Counter()

  def emit(self, record):
    match = re.match(r'Finished tracing (\w+) for jit', record.getMessage())
    if match:
      self.traces[match.group(1)] += 1


def test_the_step_and_the_bounds_compile_once_per_run_and_grids_are_drawn_beside_it(smoke_config, tmp_path):
  from tensorboard.backend.event_processing import event_accumulator

  counter = _TraceCounter()
  logging.getLogger('jax').addHandler(counter)
  try:
    with jax.log_compiles():
      smoke_config.train.checkpoint_every = 2  # test-set bounds at steps 2, 4 and 6
      smoke_config.train.image_every = 2  # grids at steps 2 and 4 (unless 2's are still being drawn), and 6
      jaxvae.train_and_evaluate(smoke_config, tmp_path)
      assert counter.traces['train_step'] == 1 and counter.traces['bounds'] == 1, counter.traces
      jaxvae.evaluate(tmp_path, pictures=False)  # 4 batches of 50 test digits
      assert counter.traces['bounds'] == 2, counter.traces  # a new K and sample count: one more compile
  finally:
    logging.getLogger('jax').removeHandler(counter)
  accumulator = event_accumulator.EventAccumulator(str(tmp_path / 'tensorboard'))
  accumulator.Reload()
  for name in ('samples', 'reconstructions'):
    steps = {event.step for event in accumulator.Images(name)}
    assert {2, 6} <= steps <= {2, 4, 6}, (name, steps)
    assert (tmp_path / f'{name}.png').is_file()


def test_resume_with_a_different_model_is_refused(smoke_config, tmp_path):
  smoke_config.train.num_train_steps = 3
  jaxvae.train_and_evaluate(smoke_config, tmp_path)
  smoke_config.model.latent_dim = 5
  with pytest.raises(ValueError, match=r'holds a run with config.model.latent_dim = 4, but this run sets 5'):
    jaxvae.train_and_evaluate(smoke_config, tmp_path)


def test_lengthening_a_cosine_schedule_is_refused(smoke_config, tmp_path):
  smoke_config.optim.schedule, smoke_config.train.num_train_steps = 'cosine', 3
  jaxvae.train_and_evaluate(smoke_config, tmp_path)
  smoke_config.train.num_train_steps = 6
  with pytest.raises(ValueError, match=r'holds a run with config.train.num_train_steps = 3, but this run sets 6'):
    jaxvae.train_and_evaluate(smoke_config, tmp_path)


def test_checkpoint_with_an_inconsistent_data_position_is_damaged(smoke_config, tmp_path):
  smoke_config.train.num_train_steps = 3
  jaxvae.train_and_evaluate(smoke_config, tmp_path)
  (tmp_path / 'checkpoints' / '3' / 'data_iterator' / 'process_0-of-1.json').write_text('{"next_index": 2}')
  smoke_config.train.num_train_steps = 6
  with pytest.raises(
    jaxvae.NoIntactCheckpointError,
    match=r'no intact checkpoint in .*\(step 3: .*saved the state of step 3 and the input pipeline at batch 2',
  ):
    jaxvae.train_and_evaluate(smoke_config, tmp_path)


def test_resume_with_another_process_count_is_refused(smoke_config, tmp_path):
  smoke_config.train.num_train_steps = 3
  jaxvae.train_and_evaluate(smoke_config, tmp_path)
  positions = tmp_path / 'checkpoints' / '3' / 'data_iterator'
  (positions / 'process_0-of-1.json').rename(positions / 'process_0-of-2.json')
  smoke_config.train.num_train_steps = 6
  with pytest.raises(ValueError, match=r'saved by a different number of processes \(process_0-of-2.json\) than the 1'):
    jaxvae.train_and_evaluate(smoke_config, tmp_path)


def test_non_finite_loss_stops_training(smoke_config, tmp_path):
  smoke_config.optim.learning_rate = 1e30
  with pytest.raises(FloatingPointError, match='the training loss became non-finite between steps'):
    jaxvae.train_and_evaluate(smoke_config, tmp_path)
  assert not (tmp_path / 'checkpoints').exists() or not any((tmp_path / 'checkpoints').iterdir())


def test_training_on_dsprites(tmp_path):
  config = load_config('dsprites', 'smoke')
  config.train.checkpoint_every = config.train.num_train_steps  # one test-set pass, at the end
  state = jaxvae.train_and_evaluate(config, tmp_path)
  assert int(state.step) == config.train.num_train_steps
  last = json.loads((tmp_path / 'metrics.jsonl').read_text().splitlines()[-1])
  assert np.isfinite(last['eval_elbo']) and (tmp_path / 'samples.png').is_file()
  evaluation = jaxvae.evaluate(tmp_path, pictures=False)  # the six metrics, at the smoke sample counts
  assert {
    'beta_vae_eval_accuracy',
    'mig',
    'dci_disentanglement',
    'sap',
    'modularity',
    'factor_vae_eval_accuracy',
  } <= set(evaluation.disentanglement)
  written = json.loads((tmp_path / 'eval' / 'step_6.json').read_text())
  assert written['disentanglement']['mig'] == evaluation.disentanglement['mig']


def test_evaluate_without_checkpoint(tmp_path):
  with pytest.raises(FileNotFoundError, match=r'no checkpoint in .*checkpoints: train first'):
    jaxvae.evaluate(tmp_path)


def test_command_line_errors_are_one_line(tmp_path):
  """Every user error of train.py and eval.py: `error: ...` on stderr, status 2, no traceback (all at once)."""
  a_file = tmp_path / 'a_file'
  a_file.write_text('')
  smoke = ('train.py', '--config=configs/default.py:smoke', f'--workdir={tmp_path / "run"}')
  cases = {
    (*smoke, '--config.train.batch_sise=3'): "unknown config field 'train.batch_sise'. Did you mean 'train.batch_size'",
    (*smoke, '--config.num_train_steps=3'): "'num_train_steps'. Did you mean 'train.num_train_steps'",
    (*smoke, '--config.train.batch_size=0'): 'config.train.batch_size must be an integer >= 1; got 0',
    (*smoke, '--config.optim.learning_rate=nan'): 'config.optim.learning_rate must be a finite number > 0; got nan',
    (*smoke, '--config.optim.grad_clip_norm=inf'): 'config.optim.grad_clip_norm must be a finite number >= 0; got inf',
    (*smoke, '--config.train.batch_size=abc'): 'flag --config.train.batch_size=abc: invalid literal for int()',
    (*smoke[:2], f'--workdir={a_file}'): f'--workdir {a_file} cannot be used',
    ('train.py', '--config=configs/nope.py', f'--workdir={tmp_path}'): 'cannot load --config',
    ('train.py', '--config=configs/default.py:tiny', f'--workdir={tmp_path}'): "unknown variant 'tiny'",
    ('train.py', '--config=configs/default.py'): 'Flag --workdir must have a value',
    ('eval.py', f'--workdir={tmp_path}'): 'no checkpoint in',
    ('eval.py', f'--workdir={tmp_path}', '--iwae_num_samples=0'): '--iwae_num_samples takes integers K >= 1',
    ('eval.py', f'--workdir={tmp_path}', '--iwae_num_samples=x'): '--iwae_num_samples takes integers K >= 1',
  }
  processes = {
    args: subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for args in cases
  }
  for args, message in cases.items():
    _, stderr = processes[args].communicate(timeout=300)
    assert processes[args].returncode == 2, (args, stderr[-3000:])
    assert 'Traceback' not in stderr, (args, stderr[-3000:])
    errors = [line for line in stderr.splitlines() if line.startswith('error: ')]
    assert len(errors) == 1 and message in errors[0], (args, stderr[-3000:])


def test_non_finite_gradients_are_not_applied(smoke_config):
  smoke_config.data.binarize, smoke_config.model.likelihood = 'none', 'gaussian'
  run = _run.Run(smoke_config)
  step = _train.make_train_step(run)
  state = run.init_state()
  before = _params(state)
  batch = np.full((8, 28, 28, 1), 0.5, np.float32)
  batch[0, 0, 0, 0] = np.inf  # an infinite pixel: infinite loss, non-finite gradients
  state, metrics = step(state, {'image': batch})
  assert float(metrics['train_skipped_updates']) == 1.0 and int(state.step) == 1
  chex.assert_trees_all_equal(_params(state), before)
  state, metrics = step(state, {'image': np.full((8, 28, 28, 1), 0.5, np.float32)})
  assert float(metrics['train_skipped_updates']) == 0.0
  assert not all(
    np.array_equal(a, b) for a, b in zip(jax.tree.leaves(_params(state)), jax.tree.leaves(before), strict=True)
  )
