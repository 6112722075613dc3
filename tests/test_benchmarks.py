"""The benchmark scripts run (at toy sizes): they import only what the library still provides."""

import os
import subprocess
import sys

import pytest
from conftest import ROOT


def _run(*args):
  env = {name: value for name, value in os.environ.items() if name != 'XLA_FLAGS'}  # one device, as a user runs them
  result = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout


def test_throughput():
  out = _run('benchmarks/throughput.py', '--batch_sizes=512', '--iwae_num_samples=4', '--repeats=1')
  assert 'train step, batch 512' in out and 'IWAE eval, K=4' in out


def test_evaluation_bounds():
  out = _run('benchmarks/evaluation.py', '--ks=10,20', '--skip_metrics')
  assert 'XLA memory' in out and '    20' in out


@pytest.mark.slow
def test_pipeline_and_scaling():
  assert 'celeb_a 128' in _run('benchmarks/pipeline.py', '--seconds=0.2', '--train_steps=1')
  assert 'devices' in _run('benchmarks/scaling.py', '--device_counts=1,2', '--steps=1')


@pytest.mark.slow
def test_shape_appearance_throughput():
  out = _run('benchmarks/shape_appearance.py', '--variant=smoke', '--batch_size=2', '--steps=1', '--repeats=1')
  assert 'train step, 32x32x3, batch 2' in out and 'of peak' in out
