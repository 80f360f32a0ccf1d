"""Sampling from a run's checkpoint: the training run's own samples, temperature, primes."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from assignment6 import checkpoints, generate, runs, training
from conftest import ROOT, made_up_text, run_script

SMALL = ['--summary_frequency=100', '--batch_size=8', '--num_nodes=16', '--valid_size=300',
         '--nocompare']


run = run_script


def samples_of(out):
  """The texts between the first two rows of `=`."""
  return out.split('=' * 80 + '\n')[1].splitlines()


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
  path = tmp_path_factory.mktemp('corpus') / 'small.txt'
  path.write_text(made_up_text(3000))
  return path


@pytest.fixture(scope='module')
def trained(corpus, tmp_path_factory):
  """The course's cell, 301 steps: a model whose predictions are not uniform."""
  directory = tmp_path_factory.mktemp('trained')
  result = run('lstm', *SMALL, '--num_steps=301', '--data=%s' % corpus,
               '--checkpoint_dir=%s' % directory)
  assert result.returncode == 0, result.stderr
  return directory


@pytest.fixture(scope='module')
def bigrams(corpus, tmp_path_factory):
  """Problem 2b's bigram model (pairs, stride 2) on the fused cell."""
  directory = tmp_path_factory.mktemp('bigrams')
  result = run('problem2', *SMALL, '--num_steps=101', '--cell=fused', '--embedding_size=8',
               '--data=%s' % corpus, '--checkpoint_dir=%s' % directory)
  assert result.returncode == 0, result.stderr
  return directory


def load(directory):
  return checkpoints.load_model(str(directory))[0]


@pytest.mark.parametrize('script,args', [
    ('lstm', []),
    ('problem2', ['--variant=bigram', '--embedding_size=8', '--bigram_stride=1',
                  '--cell=concat', '--peepholes', '--num_proj=8']),
])
def test_the_training_runs_own_samples_at_temperature_1(corpus, tmp_path, script, args):
  """A 1-step run's log shows the samples its model drew right after seeding (step 0);
  its checkpoint is that model: sample.py from the same seed prints the same texts."""
  directory = tmp_path / 'run'
  result = run(script, *SMALL, '--num_steps=1', '--seed=3', '--data=%s' % corpus,
               '--checkpoint_dir=%s' % directory, *args)
  assert result.returncode == 0, result.stderr
  expected = samples_of(result.stdout)
  assert len(expected) == 5 and all(len(s) == 80 for s in expected)
  sampled = run('sample', '--checkpoint_dir=%s' % directory, '--seed=3', cwd=str(tmp_path))
  assert sampled.returncode == 0, sampled.stderr
  assert samples_of(sampled.stdout) == expected
  other = run('sample', '--checkpoint_dir=%s' % directory, '--seed=4')
  assert samples_of(other.stdout) != expected


@pytest.mark.parametrize('which', ['trained', 'bigrams'])
def test_sample_course_is_sample_text_after_seeding(request, which):
  model = load(request.getfixturevalue(which))
  runs.seed_everything(11)
  expected = training.sample_text(model, length=60, count=4)
  runs.seed_everything(11)
  assert generate.sample_course(model, length=60, count=4) == expected
  runs.seed_everything(11)
  assert generate.sample_course(model, length=60, count=4, temperature=1.5) != expected


@pytest.mark.parametrize('which,prime', [('trained', ''), ('trained', 'the quick'),
                                         ('bigrams', ''), ('bigrams', 'the quick ')])
def test_temperature_near_0_is_argmax(request, which, prime):
  model = load(request.getfixturevalue(which))
  runs.seed_everything(5)
  greedy = generate.sample_course(model, prime, length=60, count=3, argmax=True)
  runs.seed_everything(5)
  cold = generate.sample_course(model, prime, length=60, count=3, temperature=1e-4)
  assert cold == greedy
  assert all(text.startswith(prime) and len(text) == len(prime) + 60 for text in greedy)
  runs.seed_everything(5)
  assert generate.sample_course(model, prime, length=60, count=3) != greedy
  assert generate.sample_stateless(model, prime, length=60, count=3, seed=1,
                                   temperature=1e-4) == generate.sample_stateless(
                                       model, prime, length=60, count=3, seed=1,
                                       argmax=True)
  if prime:  # the draws do not matter: every seed gives the same greedy texts
    assert generate.sample_stateless(model, prime, length=60, count=3, seed=9,
                                     argmax=True) == greedy


def prediction_after(model, tokens):
  """The course's way: `sample_prediction` one token at a time from a reset state."""
  model.reset_sample_state()
  for token in tokens:
    prediction = model.sample_prediction(tf.constant([token], tf.int32)).numpy()[0]
  return prediction.astype(np.float64)


@pytest.mark.parametrize('which,prime', [('trained', 'the quick brown'),
                                         ('bigrams', 'over a lazy ')])
@pytest.mark.parametrize('temperature', [1.0, 0.5])
def test_a_prime_warms_the_state(request, which, prime, temperature):
  """The first character drawn after a prime follows the model's prediction after reading
  the whole prime: for every uniform u, the draw is the inverse CDF of that prediction."""
  model = load(request.getfixturevalue(which))
  tokens = generate.prime_tokens(model, prime)
  prediction = prediction_after(model, tokens)
  tempered = prediction ** (1 / temperature)
  tempered /= tempered.sum()
  uniforms = (np.arange(400) + 0.5) / 400
  drawn = model.sample_after(
      tf.constant(np.tile(tokens, (400, 1))), tf.constant(uniforms[:, None], tf.float64),
      tf.constant(temperature, tf.float32), tf.constant(False)).numpy()[:, 0]
  expected = np.minimum(np.searchsorted(np.cumsum(tempered), uniforms), len(prediction) - 1)
  mismatches = np.flatnonzero(drawn != expected)
  # float32 softmax against float64 powers: a draw may land on the other side of a boundary
  # only when u is within 1e-5 of it
  boundaries = np.cumsum(tempered)
  for i in mismatches:
    assert np.min(np.abs(boundaries - uniforms[i])) < 1e-5
  assert len(mismatches) <= 2
  # reading the prime changed the state: the last token alone predicts otherwise
  assert not np.allclose(prediction, prediction_after(model, tokens[-1:]), atol=1e-3)


def test_the_prime_begins_every_sample(trained):
  model = load(trained)
  runs.seed_everything(0)
  texts = generate.sample_course(model, 'anarchism ', length=30, count=3)
  assert all(t.startswith('anarchism ') and len(t) == 40 for t in texts)
  assert len(set(texts)) > 1


def one_error_line(result, expected):
  assert result.returncode == 1, result.stdout
  assert 'Traceback' not in result.stderr
  errors = [line for line in result.stderr.splitlines() if line.strip()
            and not line.startswith('Pass --helpshort')]
  assert len(errors) == 1 and expected in errors[0], result.stderr


@pytest.mark.parametrize('args,expected', [
    ([], '--checkpoint_dir: give the directory of a trained run'),
    (['--checkpoint_dir=/nonexistent/run'], '--checkpoint_dir=/nonexistent/run: no such '
                                            'directory'),
    (['--prime=The Quick'], '--prime: \'QT\' is not in the model\'s 27 characters'),
    (['--temperature=0'], '--temperature must be greater than 0'),
    (['--temperature=-1'], '--temperature must be greater than 0'),
    (['--length=0'], '--length'),
    (['stray'], 'unexpected arguments'),
])
def test_bad_input_is_one_line(trained, args, expected):
  if not any(a.startswith('--checkpoint_dir') for a in args) and args:
    args = ['--checkpoint_dir=%s' % trained] + args
  one_error_line(run('sample', *args), expected)


def test_bad_checkpoints_and_primes(tmp_path, trained, bigrams):
  with pytest.raises(checkpoints.CheckpointError, match='holds no checkpoint'):
    checkpoints.load_model(str(tmp_path))
  with pytest.raises(generate.SampleError, match='even number of characters'):
    generate.prime_tokens(load(bigrams), 'odd')
  with pytest.raises(generate.SampleError, match='--temperature=inf'):
    generate.sample_course(load(trained), temperature=float('inf'))
  with pytest.raises(generate.SampleError, match='--temperature=nan'):
    generate.sample_stateless(load(trained), temperature=float('nan'))


def test_a_checkpoint_moved_elsewhere_samples_on_a_cpu(trained, tmp_path):
  """No path is baked in: the directory copied elsewhere samples the same texts."""
  moved = tmp_path / 'moved'
  moved.mkdir()
  for name in os.listdir(trained):
    if name != 'checkpoint':  # the index names absolute paths; the files are found anyway
      (moved / name).write_bytes((trained / name).read_bytes())
  env = dict(os.environ, PYTHONPATH=ROOT, CUDA_VISIBLE_DEVICES='')
  results = [subprocess.run([sys.executable, '-m', 'assignment6.sample',
                             '--checkpoint_dir=%s' % d, '--count=2', '--prime=the '],
                            capture_output=True, text=True, timeout=300, env=env,
                            cwd=str(tmp_path)) for d in (trained, moved)]
  assert all(r.returncode == 0 for r in results), results[1].stderr
  assert samples_of(results[0].stdout) == samples_of(results[1].stdout)
  assert re.search(r'sampled from .*moved', results[1].stderr)
