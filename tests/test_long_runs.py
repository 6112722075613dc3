"""Long runs: preemption, one writer and read-only readers per workdir, damaged checkpoints, divergence, true logs."""

import json
import logging
import re
import shutil
import signal
import subprocess
import sys
import time

import chex
import jax
import numpy as np
import pytest
from conftest import ROOT, load_config

import jaxvae
from jaxvae import _checkpoint, _run, _train, _workdir


def _params(state):
  return jax.tree.map(np.asarray, state.params)


def _logged_steps(workdir):
  return [json.loads(line)['step'] for line in (workdir / 'metrics.jsonl').read_text().splitlines()]


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """A finished smoke run (checkpoints at 3 and 6), shared; tests damage copies of it."""
  workdir = tmp_path_factory.mktemp('trained')
  jaxvae.train_and_evaluate(load_config('default', 'smoke'), workdir)
  return workdir


@pytest.fixture
def run_copy(trained, tmp_path):
  workdir = tmp_path / 'run'
  shutil.copytree(trained, workdir)
  return workdir


# --------------------------------------------------------------------------- 1. preemption and Ctrl-C


def _train_command(workdir, steps):
  return [
    sys.executable,
    'train.py',
    '--config=configs/default.py:smoke',
    f'--workdir={workdir}',
    f'--config.train.num_train_steps={steps}',
    '--config.train.checkpoint_every=4',  # a save often in flight when the signal comes
  ]


def _interrupt(workdir, signum, *, after_step):
  """Starts train.py, sends `signum` once a step after `after_step` is logged; returns (status, stderr, seconds)."""
  process = subprocess.Popen(
    _train_command(workdir, 100_000), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
  )
  metrics, deadline = workdir / 'metrics.jsonl', time.monotonic() + 240
  while not (metrics.exists() and any(step > after_step for step in _logged_steps(workdir))):
    assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][-3000:]
    time.sleep(0.2)
  sent = time.monotonic()
  process.send_signal(signum)
  _, stderr = process.communicate(timeout=60)
  return process.returncode, stderr, time.monotonic() - sent


def test_sigterm_and_ctrl_c_save_the_current_step_and_resume_bit_exactly(tmp_path):
  workdir = tmp_path / 'run'
  status, stderr, seconds = _interrupt(workdir, signal.SIGTERM, after_step=0)
  assert status == 128 + signal.SIGTERM and seconds < 30, stderr[-3000:]
  assert 'Traceback' not in stderr
  first = int(stderr.split('preempted at step ')[1].split(':')[0])
  assert f'preempted at step {first}: checkpoint saved; rerun the same command to resume' in stderr
  assert first in _checkpoint.checkpoint_steps(workdir)

  status, stderr, seconds = _interrupt(workdir, signal.SIGINT, after_step=first)  # the same command resumes
  assert status == 128 + signal.SIGINT and seconds < 30, stderr[-3000:]
  assert 'Traceback' not in stderr and 'KeyboardInterrupt' not in stderr
  second = int(stderr.split('interrupted at step ')[1].split(':')[0])
  assert second > first and second in _checkpoint.checkpoint_steps(workdir)
  logged = _logged_steps(workdir)
  assert len(logged) == len(set(logged)) and logged == sorted(logged)  # each step logged once

  # Two more steps after the second stop equal an uninterrupted run of the same length.
  config = load_config('default', 'smoke')
  config.train.checkpoint_every, config.train.num_train_steps = 4, second + 2
  resumed = jaxvae.train_and_evaluate(config, workdir)
  straight = jaxvae.train_and_evaluate(config, tmp_path / 'straight')
  chex.assert_trees_all_equal(_params(resumed), _params(straight))
  chex.assert_trees_all_equal(jax.tree.map(np.asarray, resumed.opt_state), jax.tree.map(np.asarray, straight.opt_state))
  logged = _logged_steps(workdir)
  assert len(logged) == len(set(logged)) and logged[-1] == second + 2


# --------------------------------------------------------------------------- 2. readers and the one writer


def test_a_reader_leaves_a_save_in_progress_alone(run_copy):
  in_flight = run_copy / 'checkpoints' / '9.orbax-checkpoint-tmp-1234'
  (in_flight / 'state').mkdir(parents=True)
  before = sorted(p.name for p in (run_copy / 'checkpoints').iterdir())
  step, _ = _run.Run(load_config('default', 'smoke')).restore(run_copy)
  assert step == 6 and in_flight.is_dir()
  assert sorted(p.name for p in (run_copy / 'checkpoints').iterdir()) == before


_HOLD_LOCK = 'import sys, time\nfrom jaxvae import _workdir\nwith _workdir.lock(sys.argv[1]):\n  time.sleep(300)'


def test_one_trainer_per_workdir_and_the_lock_dies_with_its_process(tmp_path):
  holder = subprocess.Popen(
    [
      sys.executable,
      '-c',
      'import sys, time; from jaxvae import _workdir\nwith _workdir.lock(sys.argv[1]): time.sleep(300)',
    ]
    + [str(tmp_path)],
    cwd=ROOT,
  )
  try:
    deadline = time.monotonic() + 120
    while not (tmp_path / _workdir.LOCK_FILE).exists() or not (tmp_path / _workdir.LOCK_FILE).read_text():
      assert holder.poll() is None and time.monotonic() < deadline
      time.sleep(0.2)
    second = subprocess.run(_train_command(tmp_path, 6), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert second.returncode == 2 and 'Traceback' not in second.stderr, second.stderr[-3000:]
    assert f'error: {tmp_path} is in use by another train.py (pid {holder.pid}' in second.stderr
    with pytest.raises(jaxvae.WorkdirInUseError, match='is in use by another train.py'), _workdir.lock(tmp_path):
      pass
  finally:
    holder.kill()  # kill -9: no cleanup runs
    holder.wait()
  with _workdir.lock(tmp_path):  # the kernel released the lock with the process
    pass


def test_a_workdir_of_another_run_is_refused_before_its_first_checkpoint(smoke_config, tmp_path):
  other = smoke_config.copy_and_resolve_references()
  other.model.latent_dim = 7
  (tmp_path / 'config.json').write_text(other.to_json())
  with pytest.raises(ValueError, match=r'holds a run with config.model.latent_dim = 7, but this run sets 4'):
    jaxvae.train_and_evaluate(smoke_config, tmp_path)
  assert not (tmp_path / 'metrics.jsonl').exists() and json.loads((tmp_path / 'config.json').read_text()) == json.loads(
    other.to_json()
  )


# --------------------------------------------------------------------------- 3. damaged checkpoints


def _largest_file(directory):
  return max((p for p in directory.rglob('*') if p.is_file()), key=lambda p: p.stat().st_size)


def _flip_bytes(path, count=64):
  data = bytearray(path.read_bytes())
  middle = len(data) // 2
  for i in range(middle, middle + count):
    data[i] ^= 0xFF
  path.write_bytes(bytes(data))


def _truncate(path):
  path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _empty(directory):
  shutil.rmtree(directory)
  directory.mkdir()


DAMAGE = {
  'missing_array_file': lambda d: _largest_file(d / 'state').unlink(),
  'truncated_array_file': lambda d: _truncate(_largest_file(d / 'state')),
  'garbage_state_metadata': lambda d: (d / 'state' / '_METADATA').write_text('{garbage'),
  'garbage_checkpoint_metadata': lambda d: (d / '_CHECKPOINT_METADATA').write_bytes(b'\0\1garbage'),
  'missing_state_directory': lambda d: shutil.rmtree(d / 'state'),
  'empty_step_directory': _empty,
  'missing_config': lambda d: (d / 'config' / 'metadata').unlink(),
  'missing_checksum': lambda d: shutil.rmtree(d / 'checksum'),
  'wrong_checksum': lambda d: (d / 'checksum' / 'metadata').write_text(json.dumps({'state_sha256': '0' * 64})),
  'bit_rot': lambda d: _flip_bytes(_largest_file(d / 'state')),
}


@pytest.mark.parametrize('damage', sorted(DAMAGE))
def test_a_damaged_latest_checkpoint_falls_back_to_the_newest_intact_one(damage, run_copy, caplog):
  DAMAGE[damage](run_copy / 'checkpoints' / '6')
  with caplog.at_level(logging.WARNING):
    step, state = _run.Run(load_config('default', 'smoke')).restore(run_copy)
  assert step == 3 and int(state.step) == 3
  assert 'skipped the damaged checkpoint at step 6' in caplog.text
  if damage == 'wrong_checksum':
    assert 'checksum mismatch' in caplog.text
  # Flipped bytes are caught by the checksum, or earlier by the decoder when they land in compressed data
  # (which file and offset they hit varies with orbax's file names): either way the rotten step is skipped.


def test_resume_past_a_rotten_checkpoint_is_bit_exact_and_logs_each_step_once(trained, run_copy, caplog):
  _flip_bytes(_largest_file(run_copy / 'checkpoints' / '6' / 'state'))
  with caplog.at_level(logging.WARNING):
    resumed = jaxvae.train_and_evaluate(load_config('default', 'smoke'), run_copy)  # from 3, past the rotten 6
  assert 'skipped the damaged checkpoint at step 6' in caplog.text
  assert (run_copy / 'damaged_checkpoints' / '6').is_dir() and _checkpoint.checkpoint_steps(run_copy) == [3, 6]
  _, straight = _run.Run(load_config('default', 'smoke')).restore(trained)
  chex.assert_trees_all_equal(_params(resumed), _params(straight))
  assert _logged_steps(run_copy) == [2, 3, 4, 6]  # steps 4 and 6 of the first run are not repeated


def _eval(workdir, *flags):
  return subprocess.run(
    [sys.executable, 'eval.py', f'--workdir={workdir}', '--metrics=none', *flags],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
  )


def test_eval_falls_back_and_refuses_when_nothing_is_intact(run_copy):
  _flip_bytes(_largest_file(run_copy / 'checkpoints' / '6' / 'state'))
  result = _eval(run_copy)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'checkpoint step 3' in result.stdout and 'skipped the damaged checkpoint at step 6' in result.stderr
  assert np.isfinite(json.loads((run_copy / 'eval' / 'step_3.json').read_text())['elbo_nats']['mean'])
  assert (run_copy / 'checkpoints' / '6').is_dir()  # a reader moves nothing

  _empty(run_copy / 'checkpoints' / '3')
  result = _eval(run_copy)
  assert result.returncode == 2 and 'Traceback' not in result.stderr
  errors = [line for line in result.stderr.splitlines() if line.startswith('error:')]
  assert len(errors) == 1 and errors[0].startswith('error: no intact checkpoint in'), result.stderr[-3000:]
  assert re.search(r'step 6: \w+(Error|Exception): ', errors[0]), errors[0]  # the rotten step, and why


# --------------------------------------------------------------------------- 4. never save a bad state


def test_a_non_finite_state_is_never_checkpointed(smoke_config, tmp_path):
  run = _run.Run(smoke_config)
  state = run.init_state()
  state = state.replace(params=jax.tree.map(lambda p: p.at[..., 0].set(np.nan), state.params))
  manager = _checkpoint.open_manager(tmp_path, config=smoke_config)
  try:
    with pytest.raises(jaxvae.NonFiniteStateError, match=r'non-finite values in .*decoder.*No checkpoint was'):
      _checkpoint.save(manager, 3, state, smoke_config, data_iterator=run.train_batches(), force=True)
    manager.wait_until_finished()
  finally:
    manager.close()
  assert _checkpoint.checkpoint_steps(tmp_path) == []


def test_a_non_finite_test_bound_is_not_checkpointed(smoke_config, tmp_path):
  smoke_config.optim.learning_rate = 1e39
  smoke_config.train.log_every = smoke_config.train.checkpoint_every = 1
  with pytest.raises(FloatingPointError, match=r'at step 1 .*not checkpointed. No checkpoint was saved before'):
    jaxvae.train_and_evaluate(smoke_config, tmp_path)
  assert _checkpoint.checkpoint_steps(tmp_path) == []


def test_a_run_whose_updates_are_skipped_stops(smoke_config, tmp_path):
  smoke_config.optim.name, smoke_config.optim.learning_rate = 'sgd', 1e6
  smoke_config.train.num_train_steps = 2 * _train.SKIPPED_UPDATES_WINDOW
  with pytest.raises(FloatingPointError, match=r'of the last 20 updates .* were skipped for non-finite gradients'):
    jaxvae.train_and_evaluate(smoke_config, tmp_path)


def test_after_a_divergence_the_advice_can_be_followed(run_copy, caplog):
  config = load_config('default', 'smoke')
  config.optim.learning_rate, config.train.num_train_steps = 1e39, 9
  with pytest.raises(FloatingPointError, match=r'The checkpoint at step 6 in .* is kept; .*learning_rate'):
    jaxvae.train_and_evaluate(config, run_copy)
  assert _checkpoint.checkpoint_steps(run_copy) == [3, 6]
  config.optim.learning_rate, config.optim.grad_clip_norm, config.optim.schedule = 1e-4, 1.0, 'cosine'
  with caplog.at_level(logging.WARNING):
    state = jaxvae.train_and_evaluate(config, run_copy)
  assert int(state.step) == 9 and _checkpoint.checkpoint_steps(run_copy)[-1] == 9
  assert 'with config.optim.learning_rate changed from 0.001 to 0.0001' in caplog.text
  assert "config.optim.schedule changed from 'constant' to 'cosine'" in caplog.text
  assert _logged_steps(run_copy) == [2, 3, 4, 6, 8, 9]


def test_non_finite_input_data_name_the_example():
  image = np.zeros((4, 2, 2, 1), np.float32)
  image[2, 1, 0, 0] = np.nan
  with pytest.raises(ValueError, match=r'non-finite pixel value .* in example 12 .* for step 5'):
    _train._check_finite_batch({'image': image, 'index': np.arange(10, 14)}, 5)
  with pytest.raises(ValueError, match=r'in row 2 of the batch'):
    _train._check_finite_batch({'image': image}, 5)
  _train._check_finite_batch({'image': np.zeros((4, 2, 2, 1), np.uint8)}, 5)


# --------------------------------------------------------------------------- 5. logs and outputs


def test_eval_writes_where_it_is_told_and_refuses_an_unwritable_place_first(run_copy, tmp_path):
  before = sorted(str(p.relative_to(run_copy)) for p in run_copy.rglob('*'))
  evaluation = jaxvae.evaluate(run_copy, pictures=False, output_dir=tmp_path / 'out')
  assert evaluation.path == tmp_path / 'out' / 'eval' / 'step_6.json' and evaluation.path.is_file()
  assert sorted(str(p.relative_to(run_copy)) for p in run_copy.rglob('*')) == before
  with pytest.raises(ValueError, match=r'cannot write the evaluation to .*; pass --output_dir=DIR'):
    jaxvae.evaluate(run_copy, pictures=False, output_dir=run_copy / 'config.json' / 'out')
