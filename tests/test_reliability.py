"""Reliability: checkpoints, exact resume after a kill, and one line for every bad input.

The kill tests run the script as a learner does (a subprocess, SIGKILL at a random point,
`--resume`) and compare the log file byte for byte and every tensor of the final
checkpoint with an uninterrupted run's. The bad-input tests call
`runs.run_language_model` in this process (no TensorFlow start-up per case) with the
flags' defaults and catch its `SystemExit`; each asserts the one line on stderr, the exit
status and that no file changed (SHA-256 of every file around, before and after). Flag
ranges are checked by parsing the flags in this process; a few cases run the scripts.
"""
import hashlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import types
import zipfile

from absl import flags as absl_flags
import numpy as np
import pytest
import tensorflow as tf

from assignment6 import checkpoints, flags, runs
from conftest import ROOT, made_up_text

DEFAULTS = {flag.name: flag.default
            for flag in flags.FLAGS.get_flags_for_module('assignment6.flags')}
SMALL = dict(num_steps=36, summary_frequency=10, checkpoint_every=10, batch_size=4,
             num_unrollings=5, num_nodes=8, valid_size=100, compare=False)


# ---------------------------------------------------------------------------- helpers

def settings(**overrides):
  """The flags' defaults, small sizes, and `overrides`, as one settings object."""
  return types.SimpleNamespace(**dict(DEFAULTS, **dict(SMALL, **overrides)))


def run_in_process(capsys, variant='character', **overrides):
  """run_language_model; returns (exit status, stdout, stderr)."""
  status = 0
  try:
    runs.run_language_model(settings(**overrides), 'A small run', variant)
  except SystemExit as error:
    status = error.code
  out, err = capsys.readouterr()
  return status, out, err


def snapshot(*paths):
  """SHA-256 of every file under `paths` (files or directories): {path: digest}."""
  digests = {}
  for path in paths:
    path = str(path)
    files = [path] if os.path.isfile(path) else [
        os.path.join(folder, name) for folder, _, names in os.walk(path) for name in names]
    for name in files:
      with open(name, 'rb') as f:
        digests[name] = hashlib.sha256(f.read()).hexdigest()
  return digests


def assert_one_line_error(status, err, expected, code=1):
  """One line on stderr (besides notes) with `expected`, exit status `code`."""
  assert status == code, err
  lines = [line for line in err.splitlines() if line.strip() and ': note: ' not in line]
  assert len(lines) == 1, err
  assert ': error: ' in lines[0] and expected in lines[0], err
  assert 'Traceback' not in err


def assert_same_checkpoint(path_a, path_b, ignore=()):
  """Every tensor of two checkpoints is equal, exactly."""
  a, b = tf.train.load_checkpoint(path_a), tf.train.load_checkpoint(path_b)
  names = set(a.get_variable_to_shape_map())
  assert names == set(b.get_variable_to_shape_map())
  assert any(name.startswith('model/cell/') for name in names)
  for name in sorted(names):
    if any(name.startswith(prefix) for prefix in ignore):
      continue
    x, y = a.get_tensor(name), b.get_tensor(name)
    assert np.array_equal(x, y), name


def write_zip(path, members):
  with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as f:
    for name, text in members.items():
      f.writestr(name, text)


@pytest.fixture
def corpus(tmp_path):
  path = tmp_path / 'small.txt'
  path.write_text(made_up_text(1500))
  return path


@pytest.fixture(scope='module')
def finished(tmp_path_factory):
  """A finished in-process run of 36 steps: its folder, log and checkpoint directory.

  Its last chunk of steps (31-35) is not logged: the checkpoint carries its mean loss.
  """
  folder = tmp_path_factory.mktemp('finished')
  (folder / 'small.txt').write_text(made_up_text(1500))
  try:
    runs.run_language_model(settings(data=str(folder / 'small.txt'),
                                     log_file=str(folder / 'run.log'),
                                     checkpoint_dir=str(folder / 'ck')), 'A small run')
  except SystemExit as error:
    raise AssertionError('the fixture run failed: %s' % error)
  return folder


@pytest.fixture
def copy_of_finished(finished, tmp_path):
  """A copy of the finished run (corpus, log, checkpoints) to damage or resume."""
  folder = tmp_path / 'run'
  shutil.copytree(finished, folder)
  return folder


def unwritable_directory(tmp_path):
  """A directory where no file can be made: read-only for a user; /sys for root."""
  if os.geteuid() != 0:
    folder = tmp_path / 'read-only'
    folder.mkdir()
    folder.chmod(0o555)
    return str(folder)
  if runs.unwritable('/sys'):
    return '/sys'
  pytest.skip('running as root with no unwritable directory to test with')


# ---------------------------------------------------------------------------- checkpoints

def test_run_state_round_trips_generators_random_states_and_log():
  from assignment6 import data
  text = made_up_text(200)
  train, valid = data.BatchGenerator(text, 4, 3), data.BatchGenerator(text[:50], 1, 1)
  for _ in range(3):
    train.next_ids()
    valid.next_ids()
  random.seed(5)
  np.random.seed(6)
  random.gauss(0, 1)  # Python keeps a spare Gaussian
  np.random.standard_normal()  # and so does NumPy
  state = checkpoints.RunState(4)
  state.capture(train, valid, 12.5, 'line one\nline \u00e9\n')
  expected = ([train.next_ids() for _ in range(3)], valid.next_ids(2), random.gauss(0, 1),
              random.random(), np.random.standard_normal(), np.random.rand())
  other_train = data.BatchGenerator(text, 4, 3)
  other_valid = data.BatchGenerator(text, 1, 1)
  random.seed(0)
  np.random.seed(0)
  assert state.apply(other_train, other_valid) == (12.5, 'line one\nline \u00e9\n')
  got = ([other_train.next_ids() for _ in range(3)], other_valid.next_ids(2),
         random.gauss(0, 1), random.random(), np.random.standard_normal(), np.random.rand())
  for a, b in zip(expected, got):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize('first,last,due', [(0, 0, False), (1, 10, True), (11, 19, False),
                                            (11, 20, True), (20, 20, True), (21, 29, False),
                                            (21, 45, True)])
def test_a_checkpoint_is_due_when_a_chunk_crosses_a_multiple(first, last, due):
  checkpointer = types.SimpleNamespace(every=10)
  assert checkpoints.Checkpointer.due(checkpointer, first, last) is due


def test_the_finished_run_kept_three_complete_checkpoints(finished):
  directory = str(finished / 'ck')
  assert [checkpoints.checkpoint_step(p) for p in checkpoints.candidates(directory)] == [
      35, 30, 20]
  assert all(checkpoints.damage(p) is None for p in checkpoints.candidates(directory))
  saved = checkpoints.read_settings(os.path.join(directory, 'ckpt-35'))
  assert saved['num_nodes'] == 8 and saved['cell'] == 'course' and saved['variant'] == (
      'character') and saved['learning_rate'] == 10.0
  reader = tf.train.load_checkpoint(os.path.join(directory, 'ckpt-35'))
  assert reader.get_tensor('trainer/global_step/.ATTRIBUTES/VARIABLE_VALUE') == 36
  assert reader.get_tensor('run/mean_loss/.ATTRIBUTES/VARIABLE_VALUE') > 0
  log = reader.get_tensor('run/log/.ATTRIBUTES/VARIABLE_VALUE').decode()
  assert (finished / 'run.log').read_text().startswith(log)
  assert log.endswith('Validation set perplexity: %s\n' % re.findall(
      r'Validation set perplexity: (\S+)', log)[-1])
  for name in ('saved_output', 'saved_state', 'saved_sample_output', 'saved_sample_state'):
    assert ('model/%s/.ATTRIBUTES/VARIABLE_VALUE' % name
            in reader.get_variable_to_shape_map())


@pytest.mark.parametrize('damage', ['truncated', 'flipped', 'no data', 'no index'])
def test_damaged_checkpoints_are_found(copy_of_finished, damage):
  prefix = str(copy_of_finished / 'ck' / 'ckpt-35')
  data_file = prefix + '.data-00000-of-00001'
  content = open(data_file, 'rb').read()
  if damage == 'truncated':
    open(data_file, 'wb').write(content[:len(content) // 2])
  elif damage == 'flipped':
    open(data_file, 'wb').write(content[:100] + bytes([content[100] ^ 1]) + content[101:])
  elif damage == 'no data':
    os.remove(data_file)
  else:
    os.remove(prefix + '.index')
  assert checkpoints.damage(prefix) is not None
  assert checkpoints.damage(str(copy_of_finished / 'ck' / 'ckpt-30')) is None


# ---------------------------------------------------------------------------- exact resume

def test_resume_after_a_damaged_newest_checkpoint_falls_back_and_ends_the_same(
    finished, copy_of_finished, capsys):
  """The newest checkpoint the index lists is truncated: the run resumes from the one
  before, cuts the log back to it, and ends with the same log file and weights."""
  folder = copy_of_finished
  data_file = folder / 'ck' / 'ckpt-35.data-00000-of-00001'
  data_file.write_bytes(data_file.read_bytes()[:50])
  status, out, err = run_in_process(capsys, data=str(folder / 'small.txt'), resume=True,
                                    log_file=str(folder / 'run.log'),
                                    checkpoint_dir=str(folder / 'ck'))
  assert status == 0, err
  assert re.search(r'note: .*ckpt-35 is damaged or incomplete', err)
  assert re.search(r'note: resuming from .*ckpt-30 at step 31', err)
  assert out.startswith('Validation per character:')  # steps 31-35 are not logged
  assert (folder / 'run.log').read_bytes() == (finished / 'run.log').read_bytes()
  assert_same_checkpoint(str(finished / 'ck' / 'ckpt-35'), str(folder / 'ck' / 'ckpt-35'))


def test_a_finished_run_extended_equals_a_longer_run(finished, copy_of_finished, tmp_path,
                                                     capsys):
  """The finished 36 steps (the mean loss of steps 31-35 carried in the checkpoint), then
  --resume to 51 steps, equal 51 steps at once."""
  common = dict(data=str(finished / 'small.txt'), compare=True, num_steps=51)
  status, _, err = run_in_process(capsys, log_file=str(tmp_path / 'a.log'),
                                  checkpoint_dir=str(tmp_path / 'a'), **common)
  assert status == 0, err
  folder = copy_of_finished
  status, out, err = run_in_process(capsys, log_file=str(folder / 'run.log'),
                                    checkpoint_dir=str(folder / 'ck'), resume=True,
                                    **common)
  assert status == 0, err
  assert out.startswith('Average loss at step 40:')
  assert (folder / 'run.log').read_bytes() == (tmp_path / 'a.log').read_bytes()
  assert 'Verdict: ' in out  # the comparison reads the whole run's log
  # The finished run saved one checkpoint more (step 35): its save counter differs.
  assert_same_checkpoint(str(tmp_path / 'a' / 'ckpt-50'), str(folder / 'ck' / 'ckpt-50'),
                         ignore=('save_counter/',))


def test_resume_without_log_file_writes_the_whole_log_to_a_new_one(
    finished, copy_of_finished, capsys):
  folder = copy_of_finished
  (folder / 'run.log').unlink()
  status, _, err = run_in_process(capsys, data=str(folder / 'small.txt'), resume=True,
                                  log_file=str(folder / 'new.log'),
                                  checkpoint_dir=str(folder / 'ck'))
  assert status == 0, err
  assert (folder / 'new.log').read_bytes() == (finished / 'run.log').read_bytes()


def test_a_damaged_index_file_falls_back_to_the_checkpoints_on_disk(copy_of_finished,
                                                                   capsys):
  folder = copy_of_finished
  (folder / 'ck' / 'checkpoint').write_text('garbage {{{\n')
  status, _, err = run_in_process(capsys, data=str(folder / 'small.txt'), resume=True,
                                  checkpoint_dir=str(folder / 'ck'), num_steps=41)
  assert status == 0, err
  notes = [line for line in err.splitlines() if 'the run diverged' not in line]  # 8 cells
  assert notes == ['%s: note: resuming from %s at step 36 (--num_steps=41)'
                   % (runs.program(), folder / 'ck' / 'ckpt-35')]
  assert tf.train.get_checkpoint_state(str(folder / 'ck')).model_checkpoint_path.endswith(
      'ckpt-40')


MODELS = {  # name: (variant, settings) of the models besides the course's
    'bigram': ('bigram', dict(cell='concat', embedding_size=8)),
    'embedding': ('character', dict(cell='concat', embedding_size=8)),
    'concat': ('character', dict(cell='concat')),
    'fused': ('character', dict(cell='fused')),
    'dropout': ('bigram', dict(cell='concat', embedding_size=8, keep_prob=0.5)),
}


@pytest.mark.parametrize('name', MODELS)
def test_every_model_interrupted_resumes_exactly(name, tmp_path, capsys, corpus,
                                                 monkeypatch):
  """Each model's run, stopped where it would save step 20 (its log is at step 20, its
  newest checkpoint at step 10), then resumed: the log file byte for byte and every tensor
  of the last checkpoint equal an uninterrupted run's. A log line every 2 steps, so the
  samples of step 20 are drawn after the resume."""
  variant, model_settings = MODELS[name]
  common = dict(model_settings, data=str(corpus), summary_frequency=2)
  status, _, err = run_in_process(capsys, variant, log_file=str(tmp_path / 'a.log'),
                                  checkpoint_dir=str(tmp_path / 'a'), **common)
  assert status == 0, err
  save = checkpoints.Checkpointer.save

  def interrupted(checkpointer, step, *args):
    if step == 20:
      raise KeyboardInterrupt
    return save(checkpointer, step, *args)

  with monkeypatch.context() as patch:
    patch.setattr(checkpoints.Checkpointer, 'save', interrupted)
    status, _, err = run_in_process(capsys, variant, log_file=str(tmp_path / 'b.log'),
                                    checkpoint_dir=str(tmp_path / 'b'), **common)
  assert status == 130, err
  stopped = (tmp_path / 'b.log').read_text()
  assert 'Average loss at step 20:' in stopped and stopped.count('=' * 80) == 4
  status, out, err = run_in_process(capsys, variant, log_file=str(tmp_path / 'b.log'),
                                    checkpoint_dir=str(tmp_path / 'b'), resume=True,
                                    **common)
  assert status == 0, err
  assert 'resuming from %s at step 11' % (tmp_path / 'b' / 'ckpt-10') in err
  assert out.startswith('Average loss at step 12:') and out.count('=' * 80) == 2
  assert (tmp_path / 'b.log').read_bytes() == (tmp_path / 'a.log').read_bytes()
  assert_same_checkpoint(str(tmp_path / 'a' / 'ckpt-35'), str(tmp_path / 'b' / 'ckpt-35'))


# ---------------------------------------------------------------------------- killed runs

KILL_ARGS = ['--num_steps=601', '--summary_frequency=50', '--checkpoint_every=100',
             '--batch_size=8', '--num_nodes=16', '--valid_size=200']


def script(module, *args, env=None, **kwargs):
  """The command line and environment of a script run as a learner runs it."""
  env = dict(os.environ, PYTHONPATH=ROOT, **(env or {}))
  return [sys.executable, '-m', 'assignment6.' + module, *args], env


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
  """The reference: the kill tests' run, never stopped."""
  folder = tmp_path_factory.mktemp('uninterrupted')
  (folder / 'small.txt').write_text(made_up_text(3000))
  command, env = script('lstm', *KILL_ARGS, '--data=%s' % (folder / 'small.txt'),
                        '--log_file=%s' % (folder / 'run.log'),
                        '--checkpoint_dir=%s' % (folder / 'ck'))
  result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr
  assert result.stderr == ''
  return folder


def resume_and_compare(folder, uninterrupted, module='lstm', args=KILL_ARGS, last=600):
  """Resume the run in `folder` (the script `module` with `args`); its log file and last
  checkpoint (`ckpt-<last>`) equal the reference's."""
  command, env = script(module, *args, '--data=%s' % (uninterrupted / 'small.txt'),
                        '--log_file=%s' % (folder / 'run.log'),
                        '--checkpoint_dir=%s' % (folder / 'ck'), '--resume')
  result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr
  reference = (uninterrupted / 'run.log').read_text()
  assert result.stdout and reference.endswith(result.stdout)  # the lines after the resume
  assert (folder / 'run.log').read_bytes() == (uninterrupted / 'run.log').read_bytes()
  assert_same_checkpoint(str(uninterrupted / 'ck' / ('ckpt-%d' % last)),
                         str(folder / 'ck' / ('ckpt-%d' % last)))
  return result


def kill_when(command, env, stream, reached, delay=0.0):
  """Run `command`, read its `stream` ('stdout' or 'stderr') until a line is `reached`,
  wait `delay` seconds, then SIGKILL it. Returns the ended process."""
  pipes = {name: subprocess.PIPE if name == stream else subprocess.DEVNULL
           for name in ('stdout', 'stderr')}
  process = subprocess.Popen(command, env=env, text=True, **pipes)
  lines = getattr(process, stream)
  try:
    for line in lines:
      if reached(line):
        time.sleep(delay)
        break
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
  finally:
    process.kill()
    lines.close()
  return process


def test_killed_at_a_random_step_resumes_exactly(uninterrupted, tmp_path):
  seed = random.randrange(10**6)
  rng = random.Random(seed)
  kill_after = rng.randrange(150, 551, 50)  # a logged step; ckpt-100 is written by then
  delay = rng.uniform(0, 0.05)  # then a moment: in training, validation, sampling, saving
  command, env = script('lstm', *KILL_ARGS, '--data=%s' % (uninterrupted / 'small.txt'),
                        '--log_file=%s' % (tmp_path / 'run.log'),
                        '--checkpoint_dir=%s' % (tmp_path / 'ck'))

  def reached(line):
    match = re.match(r'Average loss at step (\d+):', line)
    return match and int(match.group(1)) >= kill_after

  process = kill_when(command, env, 'stdout', reached, delay)
  assert process.returncode == -signal.SIGKILL, 'it ended before the kill (seed %d)' % seed
  killed_log = (tmp_path / 'run.log').read_text()
  assert (uninterrupted / 'run.log').read_text().startswith(killed_log)
  result = resume_and_compare(tmp_path, uninterrupted)
  resumed_at = int(re.search(r'ckpt-(\d+) at step', result.stderr).group(1))
  assert 'Average loss at step %d:' % resumed_at in killed_log, (seed, result.stderr)


def test_killed_inside_a_checkpoint_write_resumes_from_a_complete_one(uninterrupted,
                                                                      tmp_path):
  """A kill after a checkpoint's files are written and before the index names it; the
  test then truncates those files as a kill during the write would have left them. The
  index still names the one before, and the damaged one is skipped."""
  step = random.choice([200, 300, 400, 500])
  command, env = script('lstm', *KILL_ARGS, '--data=%s' % (uninterrupted / 'small.txt'),
                        '--log_file=%s' % (tmp_path / 'run.log'),
                        '--checkpoint_dir=%s' % (tmp_path / 'ck'),
                        env={checkpoints.PAUSE_VARIABLE: str(step)})
  process = kill_when(command, env, 'stderr',
                      lambda line: 'pausing inside the write of' in line)
  assert process.returncode == -signal.SIGKILL
  directory = str(tmp_path / 'ck')
  assert tf.train.get_checkpoint_state(directory).model_checkpoint_path.endswith(
      'ckpt-%d' % (step - 100))
  written = tmp_path / 'ck' / ('ckpt-%d.data-00000-of-00001' % step)
  assert checkpoints.damage(directory + '/ckpt-%d' % step) is None  # whole, not indexed
  written.write_bytes(written.read_bytes()[:written.stat().st_size // 2])
  result = resume_and_compare(tmp_path, uninterrupted)
  assert 'ckpt-%d is damaged or incomplete' % step in result.stderr
  assert 'resuming from %s/ckpt-%d at step %d' % (directory, step - 100,
                                                  step - 99) in result.stderr


SCRIPTS = {  # Problem 1's and 2's scripts, each with its own flags' defaults
    'problem1': [],
    'problem2': ['--variant=bigram', '--keep_prob=0.5', '--embedding_size=16'],
}
SCRIPT_ARGS = ['--num_steps=301', '--summary_frequency=25', '--checkpoint_every=100',
               '--batch_size=8', '--num_nodes=16', '--valid_size=200']


@pytest.mark.parametrize('module', SCRIPTS)
def test_problem_scripts_killed_at_a_random_step_resume_exactly(module, tmp_path):
  """`python -m assignment6.problem1` and `problem2` (bigrams with dropout) as a learner runs
  them: SIGKILL at a random logged step, --resume, and the log file and last checkpoint
  equal an uninterrupted run's (which runs at the same time)."""
  seed = random.randrange(10**6)
  rng = random.Random(seed)
  kill_after = rng.randrange(125, 251, 25)  # ckpt-100 is written by then; 50 steps left
  reference, run = tmp_path / 'reference', tmp_path / 'run'
  reference.mkdir()
  run.mkdir()
  (reference / 'small.txt').write_text(made_up_text(3000))
  args = SCRIPTS[module] + SCRIPT_ARGS
  outputs = dict(data=reference / 'small.txt', log_file=reference / 'run.log',
                 checkpoint_dir=reference / 'ck')
  command, env = script(module, *args, *('--%s=%s' % item for item in outputs.items()))
  uninterrupted = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
  try:
    command, env = script(module, *args, '--data=%s' % (reference / 'small.txt'),
                          '--log_file=%s' % (run / 'run.log'),
                          '--checkpoint_dir=%s' % (run / 'ck'))

    def reached(line):
      match = re.match(r'Average loss at step (\d+):', line)
      return match and int(match.group(1)) >= kill_after

    process = kill_when(command, env, 'stdout', reached, rng.uniform(0, 0.05))
    _, err = uninterrupted.communicate(timeout=600)
  finally:
    uninterrupted.kill()
  assert uninterrupted.returncode == 0 and err == '', err
  assert process.returncode == -signal.SIGKILL, 'it ended before the kill (seed %d)' % seed
  log = (reference / 'run.log').read_text()
  assert log.startswith('Corpus: ') and 'Parameters: ' in log and '(cell concat,' in log
  assert ('Characters per token: 2' in log) == (module == 'problem2')
  assert log.startswith((run / 'run.log').read_text())
  resume_and_compare(run, reference, module, args, last=300)


# ---------------------------------------------------------------------------- bad data

@pytest.mark.parametrize('case,expected', [
    ('empty zip', 'text8.zip: not a valid zip file (truncated or corrupt)'),
    ('truncated zip', 'text8.zip: not a valid zip file (truncated or corrupt)'),
    ('corrupt member', 'text8.zip: cannot be read (Bad CRC-32'),
    ('zip without member', 'text8.zip: the zip holds no file'),
    ('empty text', 'text.txt: the text is empty'),
    ('corrupt xz', 'text.xz: cannot be read'),
    ('not text8', 'characters are outside a-z and space; is it a text8-format'),
    ('strict', 'text.txt: 2 characters outside a-z and space (--strict)'),
    ('directory', 'is a directory; give the text8.zip or text file in it'),
])
def test_bad_data_is_one_line_and_nothing_is_written(tmp_path, capsys, case, expected):
  text = made_up_text(1500)
  zip_path, txt_path = tmp_path / 'text8.zip', tmp_path / 'text.txt'
  data, extra = zip_path, {}
  if case == 'empty zip':
    zip_path.write_bytes(b'')
  elif case == 'truncated zip':
    write_zip(zip_path, {'text8': text})
    zip_path.write_bytes(zip_path.read_bytes()[:300])
  elif case == 'corrupt member':
    with zipfile.ZipFile(zip_path, 'w', zipfile.ZIP_STORED) as f:
      f.writestr('text8', text)
    content = bytearray(zip_path.read_bytes())
    content[1000] = ord('A')
    zip_path.write_bytes(bytes(content))
  elif case == 'zip without member':
    write_zip(zip_path, {})
  elif case == 'empty text':
    data = txt_path
    txt_path.write_text('')
  elif case == 'corrupt xz':
    data = tmp_path / 'text.xz'
    data.write_bytes(b'\xfd7zXZ\x00 not really xz')
  elif case == 'not text8':
    data = txt_path
    txt_path.write_bytes(bytes(range(128, 248)) * 25)  # say, a gzip file: no letters at all
  elif case == 'strict':
    data = txt_path
    txt_path.write_text(text[:5000] + '\u00e9 3' + text[5000:])
    extra = dict(strict=True)
  elif case == 'directory':
    data = tmp_path / 'data'
    data.mkdir()
  (tmp_path / 'ck').mkdir()
  before = snapshot(tmp_path)
  status, _, err = run_in_process(capsys, data=str(data),
                                  log_file=str(tmp_path / 'run.log'),
                                  checkpoint_dir=str(tmp_path / 'ck'), **extra)
  assert_one_line_error(status, err, expected)
  assert snapshot(tmp_path) == before  # no log file, no checkpoint


def test_characters_outside_the_alphabet_are_counted_once(tmp_path, capsys):
  (tmp_path / 'text.txt').write_text(made_up_text(1500).replace('fox', 'Fox', 3))
  status, out, err = run_in_process(capsys, data=str(tmp_path / 'text.txt'), num_steps=1)
  assert status == 0, err
  assert out.count('Unexpected characters: 3 mapped to spaces') == 1


@pytest.mark.parametrize('case,expected', [
    ('missing', '--eval_data=%s/none.txt: no such file'),
    ('directory', '--eval_data=%s: is a directory'),
    ('too short for bigrams', '--eval_data=%s/short.txt: 1 character(s) are too few'),
])
def test_bad_eval_data(tmp_path, capsys, corpus, case, expected):
  (tmp_path / 'short.txt').write_text('a')
  path = {'missing': tmp_path / 'none.txt', 'directory': tmp_path,
          'too short for bigrams': tmp_path / 'short.txt'}[case]
  variant = 'bigram' if case == 'too short for bigrams' else 'character'
  before = snapshot(tmp_path)
  status, _, err = run_in_process(capsys, variant, data=str(corpus), eval_data=str(path),
                                  embedding_size=8, log_file=str(tmp_path / 'run.log'))
  assert_one_line_error(status, err, expected % tmp_path)
  assert snapshot(tmp_path) == before


def test_bigram_validation_needs_two_characters(tmp_path, capsys, corpus):
  status, _, err = run_in_process(capsys, 'bigram', data=str(corpus), valid_size=1,
                                  embedding_size=8)
  assert_one_line_error(status, err, '--valid_size=1: the bigram model needs at least 2')


# ---------------------------------------------------------------------------- bad paths

@pytest.mark.parametrize('case,expected', [
    ('log file exists', '--log_file=%(log)s: exists; give a new path, or --overwrite'),
    ('log file is a directory', '--log_file=%(dir)s: is a directory'),
    ('log file is the data', '--log_file=%(data)s: is also --data'),
    ('log file is the checkpoint dir', '--log_file=%(ck)s: is also --checkpoint_dir'),
    ('checkpoint dir is a file', '--checkpoint_dir=%(log)s: is a file; give a directory'),
    ('resume without checkpoint dir', '--resume needs --checkpoint_dir'),
    ('resume with no checkpoint', '--checkpoint_dir=%(ck)s: no checkpoint to resume'),
])
def test_bad_paths_are_one_line_and_nothing_is_written(tmp_path, capsys, corpus, case,
                                                       expected):
  log = tmp_path / 'old.log'
  log.write_text('a log a learner wants to keep\n')
  names = dict(log=log, dir=tmp_path, data=corpus, ck=tmp_path / 'ck')
  flags_of_case = {
      'log file exists': dict(log_file=log),
      'log file is a directory': dict(log_file=tmp_path),
      'log file is the data': dict(log_file=corpus, overwrite=True),
      'log file is the checkpoint dir': dict(log_file=tmp_path / 'ck',
                                             checkpoint_dir=tmp_path / 'ck'),
      'checkpoint dir is a file': dict(checkpoint_dir=log, overwrite=True),
      'resume without checkpoint dir': dict(resume=True),
      'resume with no checkpoint': dict(checkpoint_dir=tmp_path / 'ck', resume=True),
  }[case]
  before = snapshot(tmp_path)
  status, _, err = run_in_process(capsys, data=str(corpus),
                                  **{k: v if isinstance(v, bool) else str(v)
                                     for k, v in flags_of_case.items()})
  assert_one_line_error(status, err, expected % names)
  assert snapshot(tmp_path) == before
  assert not (tmp_path / 'ck').exists()


@pytest.mark.parametrize('flag', ['log_file', 'checkpoint_dir'])
def test_unwritable_log_file_or_checkpoint_dir(tmp_path, capsys, corpus, flag):
  folder = unwritable_directory(tmp_path)
  path = os.path.join(folder, 'run.log' if flag == 'log_file' else 'ck')
  status, _, err = run_in_process(capsys, data=str(corpus), **{flag: path})
  assert_one_line_error(status, err, '--%s=%s: cannot be written' % (flag, path))
  assert not os.path.exists(path)


def test_overwrite_replaces_the_log_file(tmp_path, capsys, corpus):
  log = tmp_path / 'old.log'
  log.write_text('an old log\n')
  status, out, err = run_in_process(capsys, data=str(corpus), log_file=str(log),
                                    overwrite=True, num_steps=1)
  assert status == 0, err
  assert log.read_text() == out.replace('Unexpected character: \u00ef\n', '')


# ---------------------------------------------------------------------------- refused

def test_a_checkpoint_dir_in_use_needs_resume_or_overwrite(copy_of_finished, capsys):
  folder = copy_of_finished
  before = snapshot(folder)
  status, _, err = run_in_process(capsys, data=str(folder / 'small.txt'),
                                  checkpoint_dir=str(folder / 'ck'))
  assert_one_line_error(status, err, '--checkpoint_dir=%s: holds the checkpoints of a run '
                        '(newest ckpt-35); add --resume' % (folder / 'ck'))
  assert snapshot(folder) == before
  (folder / 'ck' / 'notes.txt').write_text('a learner\'s own file')
  status, _, err = run_in_process(capsys, data=str(folder / 'small.txt'), num_steps=15,
                                  checkpoint_dir=str(folder / 'ck'), overwrite=True)
  assert status == 0, err
  assert sorted(os.listdir(folder / 'ck')) == [
      'checkpoint', 'ckpt-10.data-00000-of-00001', 'ckpt-10.index',
      'ckpt-14.data-00000-of-00001', 'ckpt-14.index', 'notes.txt']


@pytest.mark.parametrize('change,expected', [
    (dict(num_nodes=16), 'a model with --num_nodes=8, this run has --num_nodes=16; give '
     '--num_nodes=8 or another --checkpoint_dir'),
    (dict(cell='concat'), 'with --cell=course, this run has --cell=concat'),
    (dict(batch_size=5), 'with --batch_size=4, this run has --batch_size=5'),
    (dict(valid_size=99), 'with --valid_size=100, this run has --valid_size=99'),
    (dict(variant='bigram', embedding_size=8), 'with --variant=character'),
    (dict(data='other'), 'the checkpoint was trained on another text'),
])
def test_a_checkpoint_of_another_model_or_text_is_refused(copy_of_finished, capsys, change,
                                                          expected):
  folder = copy_of_finished
  (folder / 'other.txt').write_text(made_up_text(1500, seed=1))
  change = dict(change)
  variant = change.pop('variant', 'character')
  data = str(folder / ('other.txt' if change.pop('data', None) else 'small.txt'))
  before = snapshot(folder)
  status, _, err = run_in_process(capsys, variant, data=data, resume=True,
                                  checkpoint_dir=str(folder / 'ck'),
                                  log_file=str(folder / 'run.log'), **change)
  assert_one_line_error(status, err, '--checkpoint_dir=%s: ' % (folder / 'ck'))
  assert expected in err
  assert snapshot(folder) == before


def test_a_changed_training_setting_is_noted(copy_of_finished, capsys):
  folder = copy_of_finished
  status, _, err = run_in_process(capsys, data=str(folder / 'small.txt'), resume=True,
                                  checkpoint_dir=str(folder / 'ck'), num_steps=41,
                                  learning_rate=5.0)
  assert status == 0, err
  assert "note: --learning_rate=5 differs from the checkpoint's 10" in err
  saved = checkpoints.read_settings(str(folder / 'ck' / 'ckpt-40'))
  assert saved['learning_rate'] == 5.0


@pytest.mark.parametrize('case,expected', [
    ('all damaged', 'no complete checkpoint (the newest, %(ck)s/ckpt-35: '),
    ('not a language model', 'its checkpoint is not one of an assignment6 language-model'),
    ('log file of another run',
     '--log_file=%(log)s: does not begin with the log of the run'),
])
def test_unusable_checkpoints_are_refused(copy_of_finished, capsys, case, expected):
  folder = copy_of_finished
  ck = folder / 'ck'
  if case == 'all damaged':
    for name in os.listdir(ck):
      if name.endswith('.index'):
        (ck / name).write_bytes(b'not an index')
  elif case == 'not a language model':
    shutil.rmtree(ck)
    tf.train.Checkpoint(x=tf.Variable(1.0)).save(str(ck / 'ckpt'))  # problem3 saves so
  elif case == 'log file of another run':
    (folder / 'run.log').write_text('another run\'s log\n')
  before = snapshot(folder)
  status, _, err = run_in_process(capsys, data=str(folder / 'small.txt'), resume=True,
                                  checkpoint_dir=str(ck), log_file=str(folder / 'run.log'))
  assert_one_line_error(status, err, expected % dict(ck=ck, log=folder / 'run.log'))
  assert snapshot(folder) == before


# ---------------------------------------------------------------------------- a stopped run

def test_a_loss_that_becomes_nan_keeps_the_last_good_checkpoint(copy_of_finished, capsys):
  folder = copy_of_finished
  before = snapshot(folder / 'ck')
  status, _, err = run_in_process(capsys, data=str(folder / 'small.txt'), resume=True,
                                  checkpoint_dir=str(folder / 'ck'), num_steps=61,
                                  learning_rate=1e38, log_file=str(folder / 'run.log'))
  assert "note: --learning_rate=1e+38 differs from the checkpoint's 10" in err
  assert re.search(r'error: the loss became (nan|inf|-inf) by step 40;', err), err
  assert_one_line_error(status, err, 'by step 40; the '
                        'last good checkpoint is %s (step 35): --resume continues from it'
                        % (folder / 'ck' / 'ckpt-35'))
  assert snapshot(folder / 'ck') == before  # nothing saved after the loss went bad
  assert (folder / 'run.log').read_text().count('Average loss at step 0:') == 1


def test_a_failed_checkpoint_write_names_the_last_complete_one(tmp_path, capsys, corpus,
                                                               monkeypatch):
  save = tf.train.CheckpointManager.save

  def disk_full(manager, checkpoint_number=None, **kwargs):
    if checkpoint_number == 20:
      raise tf.errors.ResourceExhaustedError(None, None, 'No space left on device')
    return save(manager, checkpoint_number=checkpoint_number, **kwargs)

  monkeypatch.setattr(tf.train.CheckpointManager, 'save', disk_full)
  status, _, err = run_in_process(capsys, data=str(corpus),
                                  checkpoint_dir=str(tmp_path / 'ck'))
  assert_one_line_error(status, err, '--checkpoint_dir=%s: cannot write the checkpoint of '
                        'step 20 (No space left on device); the last complete checkpoint '
                        'is %s' % (tmp_path / 'ck', tmp_path / 'ck' / 'ckpt-10'))


def test_an_interrupt_says_which_checkpoint_is_kept(tmp_path, capsys, corpus, monkeypatch):
  save = checkpoints.Checkpointer.save

  def interrupted(checkpointer, step, *args):
    if step == 20:
      raise KeyboardInterrupt
    return save(checkpointer, step, *args)

  monkeypatch.setattr(checkpoints.Checkpointer, 'save', interrupted)
  status, _, err = run_in_process(capsys, data=str(corpus),
                                  checkpoint_dir=str(tmp_path / 'ck'))
  assert_one_line_error(status, err, 'interrupted after step 20; the last good checkpoint '
                        'is %s (step 10)' % (tmp_path / 'ck' / 'ckpt-10'), code=130)


# ---------------------------------------------------------------------------- flag ranges

@pytest.mark.parametrize('arg,expected', [
    ('--summary_frequency=0', '--summary_frequency=0'),
    ('--num_unrollings=0', '--num_unrollings=0'),
    ('--decay_steps=0', '--decay_steps=0'),
    ('--valid_size=0', '--valid_size=0'),
    ('--num_nodes=100000', '--num_nodes=100000'),
    ('--embedding_size=-1', '--embedding_size=-1'),
    ('--num_proj=-1', '--num_proj=-1'),
    ('--seed=4294967296', '--seed=4294967296'),
    ('--learning_rate=inf', '--learning_rate must be greater than 0 and finite'),
    ('--clip_norm=nan', '--clip_norm must be greater than 0 and finite'),
    ('--keep_prob=0', '--keep_prob must be in (0, 1]'),
    ('--decay_rate=1.5', '--decay_rate must be in (0, 1]'),
    ('--checkpoint_every=0', '--checkpoint_every=0'),
])
def test_flags_out_of_range(arg, expected):
  try:
    with pytest.raises(absl_flags.IllegalFlagValueError) as error:
      flags.FLAGS(['lstm', arg])
  finally:
    flags.FLAGS.unparse_flags()
  assert expected in str(error.value) and '\n' not in str(error.value)


@pytest.mark.parametrize('module,args,expected', [
    ('problem2', ['--variant=trigram'], 'flag --variant=trigram: value should be one of'),
    ('problem2', ['--bigram_stride=3'], 'flag --bigram_stride=3'),
    ('problem3', ['--beam_width=0'], 'flag --beam_width=0: must be in 1..64'),
])
def test_scripts_refuse_bad_flags_in_one_line(module, args, expected, tmp_path):
  command, env = script(module, *args)
  result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300,
                          cwd=str(tmp_path))
  assert result.returncode == 1
  errors = [line for line in result.stderr.splitlines()
            if line.strip() and not line.startswith('Pass --helpshort')]
  assert len(errors) == 1 and expected in errors[0], result.stderr
  assert os.listdir(tmp_path) == []
