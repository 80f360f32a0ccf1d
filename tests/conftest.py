"""Shared test data: small texts the tests make themselves, and the repository's paths."""
import os
import random
import subprocess
import sys

import pytest

import assignment6  # noqa: F401  (quiets TensorFlow's start-up before any test imports it)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = ('the quick brown fox jumps over a lazy dog anarchism originated as term of abuse '
         'first used against early working class radicals including diggers english '
         'revolution and sans culottes french').split()


def run_script(module, *args, cwd=None):
  """`python -m assignment6.MODULE ARGS` in a subprocess, this checkout first on the path."""
  env = dict(os.environ, PYTHONPATH=ROOT)
  return subprocess.run([sys.executable, '-m', 'assignment6.' + module, *args],
                        capture_output=True, text=True, timeout=300, cwd=cwd, env=env)


def pytest_configure(config):
  config.addinivalue_line('markers', 'notebook: executes a notebook (CI runs these on the '
                          'newest TensorFlow only: .ci/run)')


def made_up_text(num_words=2000, seed=0):
  """Words of a fixed list in a seeded random order, joined by spaces."""
  rng = random.Random(seed)
  return ' '.join(rng.choice(WORDS) for _ in range(num_words))


@pytest.fixture
def text():
  return made_up_text()
