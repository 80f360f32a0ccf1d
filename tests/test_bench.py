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
