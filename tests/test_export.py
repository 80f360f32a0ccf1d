"""The exported SavedModel: loaded by TensorFlow alone, the package's samples and scores."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from assignment6 import checkpoints, generate, training
from conftest import made_up_text, run_script

SMALL = ['--num_steps=201', '--summary_frequency=100', '--batch_size=8', '--num_nodes=16',
         '--valid_size=300', '--nocompare']
PRIMES = ['', 'the quick ']

# Runs in a process where `import assignment6` fails (the package is blocked from every
# import path: the venv may hold it as an editable install); prints JSON.
LOADER = r'''
import json, sys
class Blocked:
  def find_spec(self, name, path=None, target=None):
    if name.split('.')[0] == 'assignment6':
      raise ModuleNotFoundError('No module named %r' % name)
sys.meta_path.insert(0, Blocked())
try:
  import assignment6
  importable = True
except ModuleNotFoundError:
  importable = False
import tensorflow as tf
out = {'importable': importable, 'modules': [], 'models': []}
primes, text = json.loads(sys.argv[1]), sys.argv[2]
for directory in sys.argv[3:]:
  model = tf.saved_model.load(directory)
  samples = {}
  for prime in primes:
    for temperature in (1.0, 0.5, 0.0):
      key = '%s|%g' % (prime, temperature)
      samples[key] = [s.decode('utf-8') for s in model.signatures['sample'](
          prime=tf.constant(prime), length=tf.constant(50), temperature=tf.constant(
              temperature), seed=tf.constant(7, tf.int64),
          count=tf.constant(3))['samples'].numpy()]
  score = model.score(text=text)
  evaluation = model.evaluate(text=text)
  out['models'].append({'samples': samples,
                        'log_probabilities': score['log_probabilities'].numpy().tolist(),
                        'nats': float(score['nats']),
                        'evaluate': {k: float(v) for k, v in evaluation.items()}})
out['modules'] = sorted(m for m in sys.modules if m.startswith('assignment6'))
print(json.dumps(out))
'''


run = run_script


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
  """A character run (the course's cell) and a bigram run, trained with --eval_data and
  exported; the SavedModels loaded in a clean process."""
  folder = tmp_path_factory.mktemp('export')
  corpus, valid = folder / 'small.txt', folder / 'eval.txt'
  corpus.write_text(made_up_text(3000))
  valid.write_text(made_up_text(120, seed=5))
  runs = {}
  for name, script, args in (('characters', 'lstm', []),
                             ('bigrams', 'problem2', ['--embedding_size=8'])):
    directory, export_dir = folder / name, folder / (name + '.savedmodel')
    result = run(script, *SMALL, *args, '--data=%s' % corpus, '--eval_data=%s' % valid,
                 '--checkpoint_dir=%s' % directory)
    assert result.returncode == 0, result.stderr
    exported_run = run('export', '--checkpoint_dir=%s' % directory,
                       '--export_dir=%s' % export_dir)
    assert exported_run.returncode == 0, exported_run.stderr
    assert 'Exported' in exported_run.stdout
    runs[name] = (directory, export_dir, result.stdout)
  out = load_elsewhere(tmp_path_factory.mktemp('elsewhere'), PRIMES, valid.read_text(),
                       [runs[name][1] for name in runs])
  return runs, dict(zip(runs, out['models'])), out, valid


def load_elsewhere(folder, primes, text, directories):
  """LOADER in a process without assignment6 (no PYTHONPATH, cwd `folder`)."""
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
  loaded = subprocess.run([sys.executable, '-c', LOADER, json.dumps(primes), text] +
                          [str(d) for d in directories], capture_output=True, text=True,
                          timeout=300, env=env, cwd=str(folder))
  assert loaded.returncode == 0, loaded.stderr
  return json.loads(loaded.stdout.splitlines()[-1])


def test_the_savedmodel_loads_without_the_package(exported):
  _, _, out, _ = exported
  assert out['importable'] is False
  assert out['modules'] == []


@pytest.mark.parametrize('name', ['characters', 'bigrams'])
def test_the_same_samples_as_the_package(exported, name):
  runs, models, _, _ = exported
  model = checkpoints.load_model(str(runs[name][0]))[0]
  generator = generate.Generator(model)
  for prime in PRIMES:
    for temperature in (1.0, 0.5, 0.0):
      expected = generate.sample_stateless(model, prime, 50, 3, temperature or 1.0,
                                           argmax=temperature == 0, seed=7,
                                           generator=generator)
      loaded = models[name]['samples']['%s|%g' % (prime, temperature)]
      assert loaded == expected, (prime, temperature)
      assert all(s.startswith(prime) and len(s) == len(prime) + 50 for s in loaded)
  assert len(set(models[name]['samples']['|1'])) == 3  # three different draws


@pytest.mark.parametrize('name', ['characters', 'bigrams'])
def test_scores_equal_eval_datas(exported, name):
  """evaluate: the figures of the run's `Evaluation on` line, and `evaluate_text`'s
  exactly; score: each token's log-probability, as the course's step by step."""
  runs, models, _, valid = exported
  text = valid.read_text()
  directory, _, log = runs[name]
  line = re.search(r'^Evaluation on .*: perplexity (\S+) per character, bits_per_character '
                   r'(\S+) \((\d+) characters\)$', log, re.M)
  evaluation = models[name]['evaluate']
  assert '%.4f' % evaluation['perplexity'] == line.group(1)
  assert '%.4f' % evaluation['bits_per_character'] == line.group(2)
  assert int(evaluation['characters']) == int(line.group(3))
  model = checkpoints.load_model(str(directory))[0]
  tokens = training.tokens_of(model, text)
  nats = training.validation_logprob(model, training.validation_batches(tokens),
                                     len(tokens))
  assert evaluation['nats'] == nats  # to the last bit: the same fused or stepped graph
  _, perplexity, bits, characters = training.evaluate_text(model, text)
  assert evaluation['perplexity'] == pytest.approx(perplexity, rel=1e-14)
  assert evaluation['bits_per_character'] == pytest.approx(bits, rel=1e-14)
  model.reset_sample_state()
  expected = []
  for now, following in zip(tokens[:-1], tokens[1:]):
    prediction = model.sample_prediction(tf.constant([now], tf.int32)).numpy()[0]
    expected.append(np.log(max(float(prediction[following]), 1e-10)))
  scores = models[name]['log_probabilities']
  np.testing.assert_allclose(scores, expected, rtol=1e-6, atol=1e-6)
  assert models[name]['nats'] == pytest.approx(-sum(scores))


def test_export_refuses_bad_input(exported, tmp_path):
  runs, _, _, _ = exported
  directory, export_dir, _ = runs['characters']
  (tmp_path / 'notes.txt').write_text('mine')
  for args, expected in (
      (['--checkpoint_dir=%s' % directory, '--export_dir=%s' % export_dir],
       'holds a SavedModel; give another directory, or --overwrite'),
      (['--checkpoint_dir=%s' % directory, '--export_dir=%s' % tmp_path],
       'holds other files'),
      (['--checkpoint_dir=%s' % tmp_path, '--export_dir=%s' % (tmp_path / 'new')],
       'holds no checkpoint'),
      (['--export_dir=%s' % (tmp_path / 'new')], '--checkpoint_dir: give')):
    result = run('export', *args)
    assert result.returncode == 1 and 'Traceback' not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
  assert (tmp_path / 'notes.txt').read_text() == 'mine'
  assert not (tmp_path / 'new').exists()
  result = run('export', '--checkpoint_dir=%s' % directory, '--export_dir=%s' % export_dir,
               '--overwrite')
  assert result.returncode == 0, result.stderr
  assert os.path.exists(os.path.join(export_dir, 'saved_model.pb'))


WORDS = 'Käse Straße über grün Ärger Öl schön Μήλο νερό ψωμί καλημέρα ça déjà français'


def own_text(seed=0, lines=300):
  """A small German, Greek and French UTF-8 text with newlines: 44 distinct characters."""
  rng = np.random.RandomState(seed)
  words = WORDS.split()
  return '\n'.join(' '.join(words[i] for i in rng.randint(len(words), size=8))
                   for _ in range(lines))


def test_your_own_text_trains_samples_and_exports(tmp_path):
  """--vocabulary=auto: the text's own characters (sorted, in the checkpoint), for
  characters and bigrams; sample and the SavedModel read them back."""
  corpus, valid = tmp_path / 'own.txt', tmp_path / 'eval.txt'
  corpus.write_text(own_text(), encoding='utf-8')
  valid.write_text(own_text(seed=1, lines=10), encoding='utf-8')
  characters = ''.join(sorted(set(corpus.read_text(encoding='utf-8'))))
  runs, exports = {}, []
  for name, script, args in (('characters', 'lstm', []),
                             ('bigrams', 'problem2', ['--embedding_size=8'])):
    directory = tmp_path / name
    result = run(script, *SMALL, *args, '--vocabulary=auto', '--data=%s' % corpus,
                 '--eval_data=%s' % valid, '--checkpoint_dir=%s' % directory)
    assert result.returncode == 0, result.stderr
    assert 'Vocabulary: %d characters %r' % (len(characters), characters) in result.stdout
    model = checkpoints.load_model(str(directory))[0]
    assert model.vocabulary.characters == characters
    assert model.vocabulary_size == len(characters) ** (2 if name == 'bigrams' else 1)
    sampled = run('sample', '--checkpoint_dir=%s' % directory, '--prime=grün Öl ',
                  '--count=3', '--length=40')
    assert sampled.returncode == 0, sampled.stderr
    texts = sampled.stdout.split('=' * 80 + '\n')[1].splitlines(True)
    assert ''.join(texts).count('grün Öl ') >= 3
    assert set(''.join(texts)) <= set(characters)
    export_dir = tmp_path / (name + '.savedmodel')
    assert run('export', '--checkpoint_dir=%s' % directory,
               '--export_dir=%s' % export_dir).returncode == 0
    runs[name] = (model, result.stdout)
    exports.append(export_dir)
  primes = ['', 'grün Öl ']  # whole pairs for the bigram model
  out = load_elsewhere(tmp_path, primes, valid.read_text(encoding='utf-8'), exports)
  assert out['importable'] is False
  for (name, (model, log)), loaded in zip(runs.items(), out['models']):
    for prime in primes:
      for temperature in (1.0, 0.5, 0.0):
        assert loaded['samples']['%s|%g' % (prime, temperature)] == (
            generate.sample_stateless(model, prime, 50, 3, temperature or 1.0,
                                      argmax=temperature == 0, seed=7)), name
    line = re.search(r'^Evaluation on .*: perplexity (\S+) per character', log, re.M)
    assert '%.4f' % loaded['evaluate']['perplexity'] == line.group(1)
  assert any(set(s) & set('äöüßΜήλονερόψωμίκαέçé')
             for s in out['models'][0]['samples']['|1'])


def test_a_vocabulary_too_large_for_bigrams_is_one_line(tmp_path):
  corpus = tmp_path / 'many.txt'
  alphabet = ''.join(chr(c) for c in range(0x400, 0x400 + 140))  # 139 of them used
  corpus.write_text(' '.join(alphabet[i:i + 5] for i in range(0, 135)) * 20,
                    encoding='utf-8')
  result = run('problem2', *SMALL, '--vocabulary=auto', '--data=%s' % corpus)
  assert result.returncode == 1 and 'Traceback' not in result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1, result.stderr
  assert ('--vocabulary=auto: the text has 140 distinct characters, so 19600 bigrams'
          in lines[0]) and '--variant=embedding' in lines[0]


def test_a_run_resumes_only_with_its_vocabulary():
  saved = {name: 0 for name, _ in checkpoints.MODEL_SETTINGS}
  saved.update({name: 0 for name in checkpoints.TRAINING_SETTINGS})
  text = own_text(lines=5)
  saved['vocabulary'] = ''.join(sorted(set(text)))
  current = dict(saved, vocabulary=checkpoints.data.TEXT8_CHARACTERS)
  with pytest.raises(checkpoints.CheckpointError,
                     match=r'reads 44 characters \(the text.s\), this run.s 27; give '
                           r'--vocabulary=auto'):
    checkpoints.compare_settings('runs/mine', saved, current)
  assert checkpoints.compare_settings('runs/mine', saved, dict(saved)) == []
  del saved['vocabulary']  # a checkpoint from before --vocabulary: text8's
  assert checkpoints.compare_settings('runs/mine', saved, current) == []
