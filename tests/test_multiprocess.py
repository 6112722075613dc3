"""Two processes x two CPU devices on localhost (jax.distributed, gloo): train, checkpoint, resume, evaluate."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import chex
import jax
import numpy as np
from conftest import ROOT

import jaxvae
from jaxvae import _data, _parallel, _run, _train


def _free_port():
  with socket.socket() as sock:
    sock.bind(('localhost', 0))
    return sock.getsockname()[1]


def _start_two_processes(script, *args):
  port = _free_port()
  env = {**os.environ, 'XLA_FLAGS': '--xla_force_host_platform_device_count=2', 'JAX_PLATFORMS': 'cpu'}
  return [
    subprocess.Popen(
      [
        sys.executable,
        script,
        *args,
        f'--coordinator_address=localhost:{port}',
        '--num_processes=2',
        f'--process_id={i}',
      ],
      cwd=ROOT,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    for i in range(2)
  ]


def _run_two_processes(script, *args):
  processes = _start_two_processes(script, *args)
  outputs = [process.communicate(timeout=300)[0] for process in processes]
  for process, output in zip(processes, outputs, strict=True):
    assert process.returncode == 0, output[-3000:]
  return outputs


def _reference_params(config, num_steps):
  """One process, one device, fed the global batches the two processes assemble: process 0's rows, then 1's."""
  run = _run.Run(config, mesh=_parallel.make_mesh(jax.devices()[:1]))
  state = run.init_state()
  step = _train.make_train_step(run)
  source = _data.open_source(config.data, 'train')
  shards = [
    _data.train_batches(
      source,
      batch_size=config.train.batch_size // 2,
      seed=config.seed,
      process_index=p,
      process_count=2,
      in_memory=True,
    )
    for p in (0, 1)
  ]
  for _ in range(num_steps):
    state, _ = step(state, {'image': np.concatenate([next(shard)['image'] for shard in shards])})
  return _parallel.local_copy(state.params)


def test_two_processes_train_resume_and_match_one_process(smoke_config, tmp_path):
  workdir = str(tmp_path)
  _run_two_processes(
    'train.py', '--config=configs/default.py:smoke', f'--workdir={workdir}', '--config.train.num_train_steps=3'
  )
  _run_two_processes('train.py', '--config=configs/default.py:smoke', f'--workdir={workdir}')  # resumes at 3

  for step in (3, 6):
    for p in (0, 1):  # each process saved its own input position
      position = tmp_path / 'checkpoints' / str(step) / 'data_iterator' / f'process_{p}-of-2.json'
      assert json.loads(position.read_text()) == {'next_index': step}
  _, restored = _run.Run(smoke_config, mesh=_parallel.make_mesh(jax.devices()[:1])).restore(tmp_path, [6])
  chex.assert_trees_all_close(
    _parallel.local_copy(restored.params), _reference_params(smoke_config, 6), rtol=1e-5, atol=1e-6
  )
  logged = [json.loads(line)['step'] for line in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert logged == [2, 3, 4, 6]  # written by process 0 only, once per step

  _run_two_processes('eval.py', f'--workdir={workdir}')
  two = json.loads((tmp_path / 'eval' / 'step_6.json').read_text())
  one = jaxvae.evaluate(tmp_path).bounds
  assert two['num_examples'] == one.num_examples == 200
  # The same bounds up to Monte Carlo noise.
  assert abs(two['elbo_nats']['mean'] - one.elbo.mean) < one.elbo.stderr
  assert abs(two['iwae_nats']['4']['mean'] - one.iwae[4].mean) < one.iwae[4].stderr


def test_sigterm_to_one_process_saves_the_same_step_on_both(tmp_path):
  processes = _start_two_processes(
    'train.py',
    '--config=configs/default.py:smoke',
    f'--workdir={tmp_path}',
    '--config.train.num_train_steps=100000',
    '--config.train.checkpoint_every=4',
  )
  try:
    deadline = time.monotonic() + 240
    while not ((tmp_path / 'metrics.jsonl').exists() and (tmp_path / 'metrics.jsonl').read_text()):
      assert all(p.poll() is None for p in processes) and time.monotonic() < deadline
      time.sleep(0.2)
    processes[1].send_signal(signal.SIGTERM)  # the preemption notice reaches one host only
    outputs = [process.communicate(timeout=60)[0] for process in processes]
  finally:
    for process in processes:
      process.kill()
  steps = set()
  for process, output in zip(processes, outputs, strict=True):
    assert process.returncode == 128 + signal.SIGTERM, output[-3000:]
    match = re.search(r'preempted at step (\d+): checkpoint saved; rerun the same command to resume', output)
    assert match, output[-3000:]
    steps.add(int(match.group(1)))
  assert len(steps) == 1  # every process saved the same step
  (step,) = steps
  for p in (0, 1):
    position = tmp_path / 'checkpoints' / str(step) / 'data_iterator' / f'process_{p}-of-2.json'
    assert json.loads(position.read_text()) == {'next_index': step}


def test_when_one_process_dies_the_other_stops_with_one_line(tmp_path):
  processes = _start_two_processes(
    'train.py', '--config=configs/default.py:smoke', f'--workdir={tmp_path}', '--config.train.num_train_steps=100000'
  )
  try:
    deadline = time.monotonic() + 240
    while not ((tmp_path / 'metrics.jsonl').exists() and (tmp_path / 'metrics.jsonl').read_text()):
      assert all(p.poll() is None for p in processes) and time.monotonic() < deadline
      time.sleep(0.2)
    processes[1].kill()  # kill -9
    killed = time.monotonic()
    output = processes[0].communicate(timeout=_parallel.PEER_TIMEOUT_S + 60)[0]
    seconds = time.monotonic() - killed
  finally:
    for process in processes:
      process.kill()
  assert processes[0].returncode == 1 and seconds < _parallel.PEER_TIMEOUT_S + 15, (seconds, output[-3000:])
  assert 'error: process 1 of 2 stopped' in output and 'process 0 stops too' in output, output[-3000:]
  assert 'Check failure stack trace' not in output and 'Fatal Python error' not in output
