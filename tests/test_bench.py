"""The benchmark runs end to end (tiny sizes) and prints its environment and ratios.

Speed itself is measured by `python -m assignment6.bench`, never asserted here."""
import os
import re
import subprocess
import sys

from conftest import ROOT


def test_bench_prints_environment_tables_and_ratios():
  result = subprocess.run(
      [sys.executable, '-m', 'assignment6.bench', '--part=steps', '--part=run',
       '--part=layers', '--repeats=1', '--num_steps=101', '--timed_steps=20',
       '--batch_size=8', '--num_nodes=16', '--layer_sizes=16', '--layer_embedding_size=8'],
      capture_output=True, text=True, timeout=600, env=dict(os.environ, PYTHONPATH=ROOT))
  assert result.returncode == 0, result.stderr
  out = result.stdout
  assert out.startswith('TensorFlow ') and 'logical cores' in out
  assert re.search(r'^bfloat16 instructions: (avx512_bf16|amx_bf16|none: )', out, re.M)
  for name in ('course', 'plain', 'port', 'concat', 'fused'):
    assert re.search(r'^%s +\| .* \| +\d+\.\d\dx \|' % name, out, re.M), name
  assert re.search(r'^course +\| .* \| +1\.00x \|', out, re.M)
  # The layers row, Keras included: concat, fused and concat with --precision=bfloat16.
  assert re.search(r'^16 +\| .*\| \d+\.\d\dx, \d+\.\d\dx, \d+\.\d\dx$', out, re.M)
  assert 'Traceback' not in result.stderr


def test_bench_mirror_prints_time_to_accuracy_for_both_runs():
  result = subprocess.run(
      [sys.executable, '-m', 'assignment6.bench', '--part=mirror', '--repeats=1',
       '--mirror_steps=3', '--mirror_sentences=2', '--mirror_evaluations=3'],
      capture_output=True, text=True, timeout=600, env=dict(os.environ, PYTHONPATH=ROOT))
  assert result.returncode == 0, result.stderr
  out = result.stdout
  assert out.startswith('TensorFlow ') and 'logical cores' in out
  assert re.search(r'^earlier +6000 steps, batch 64, words batches, curriculum 3,5 then 8 '
                   r'words, learning rate 0.003 .*plain step$', out, re.M)
  assert re.search(r'^default +2000 steps, batch 64, length batches, .*fast step$', out, re.M)
  for name in ('earlier', 'default'):
    rows = re.findall(r'^ +(\d+) \| +[\d.]+ \| +[\d.]+%$',
                      out.split('%s, repeat 1:' % name)[1].split('\n\n')[0], re.M)
    assert rows == ['1', '2', '3'], rows  # an evaluation after each step
    assert re.search(r'^%s +\| not reached in 1 of 1 +\| [\d.]+ \([\d.]+-[\d.]+\) +\| '
                     r'[\d.]+%%$' % name, out, re.M)
  assert 'Ratios earlier / default: time to 99% - (not reached), whole run ' in out
