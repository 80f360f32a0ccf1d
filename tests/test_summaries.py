"""TensorBoard summaries (`--logdir`): the event files read back hold the printed log's
figures, the samples and the flags; writing them changes nothing printed; a resumed run
continues the curves with no step twice; a damaged tail is cut; a used --logdir is refused.

Runs are `runs.run_language_model` in this process at small sizes (as test_reliability);
the events are read with `tf.data.TFRecordDataset` and `tf.compat.v1.Event`
(`summaries.read_events`), independently of the writer.
"""
import contextlib
import io
import os
import re
import shutil
import types

import pytest
import tensorflow as tf

from assignment6 import flags, runs, summaries
from conftest import made_up_text

DEFAULTS = {flag.name: flag.default
            for flag in flags.FLAGS.get_flags_for_module('assignment6.flags')}
SMALL = dict(num_steps=51, summary_frequency=5, checkpoint_every=20, batch_size=4,
             num_unrollings=5, num_nodes=8, valid_size=100, compare=False)
STEPS = list(range(0, 51, 5))  # the logged steps; samples at 0 and 50


def settings(**overrides):
  return types.SimpleNamespace(**dict(DEFAULTS, **dict(SMALL, **overrides)))


def run(capsys, **overrides):
  """One small run in this process: (exit status, stdout, stderr)."""
  status = 0
  try:
    runs.run_language_model(settings(**overrides), 'A small run')
  except SystemExit as error:
    status = error.code
  out, err = capsys.readouterr()
  return status, out, err


def printed_figures(log):
  """{tag: [(step, printed value, decimals)]} from the course's log lines."""
  figures = {}
  step = None
  patterns = (
      (r'Average loss at step (\d+): ([\d.]+) learning rate: ([\d.]+)', None),
      (r'Minibatch perplexity: ([\d.]+)', 'perplexity/minibatch'),
      (r'Validation set perplexity: ([\d.]+)', 'perplexity/validation'))
  for line in log.splitlines():
    for pattern, tag in patterns:
      match = re.fullmatch(pattern, line)
      if match and tag is None:
        step = int(match.group(1))
        figures.setdefault('loss/average', []).append((step, match.group(2)))
        figures.setdefault('learning_rate', []).append((step, match.group(3)))
      elif match:
        figures.setdefault(tag, []).append((step, match.group(1)))
  return figures


def assert_equal_to_printed(value, printed):
  """The float32 value prints as the log's figure (within its last digit's rounding)."""
  decimals = len(printed.split('.')[1])
  assert abs(value - float(printed)) <= 0.5 * 10**-decimals + 2**-23 * abs(value), (
      value, printed)


@pytest.fixture(scope='module')
def logged(tmp_path_factory):
  """A run with --logdir and checkpoints, and the same run without --logdir."""
  folder = tmp_path_factory.mktemp('logged')
  (folder / 'small.txt').write_text(made_up_text(1500))
  outputs = []
  for logdir, directory in ((folder / 'tb', folder / 'ck'), (None, None)):
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
      runs.run_language_model(settings(data=str(folder / 'small.txt'),
                                       logdir=logdir and str(logdir),
                                       checkpoint_dir=directory and str(directory)),
                              'A small run')
    outputs.append(stdout.getvalue())
  return folder, outputs[0], outputs[1]


def test_scalars_equal_the_printed_log(logged):
  folder, log, _ = logged
  scalars = summaries.read_scalars(str(folder / 'tb'))
  printed = printed_figures(log)
  assert set(printed) < set(scalars)
  for tag, rows in printed.items():
    assert [step for step, _ in scalars[tag]] == [step for step, _ in rows], tag
    for (_, value), (_, figure) in zip(scalars[tag], rows):
      assert_equal_to_printed(value, figure)
  assert [s for s, _ in printed['loss/average']] == STEPS
  # Bits per character: log2 of the validation perplexity; the last one is the final
  # line's (the same 100 characters from a reset state).
  for (_, bits), (_, perplexity) in zip(scalars['bits_per_character/validation'],
                                        scalars['perplexity/validation']):
    assert abs(2**bits - perplexity) <= 1e-5 * perplexity
  final = re.search(r'bits_per_character ([\d.]+)', log).group(1)
  assert_equal_to_printed(scalars['bits_per_character/validation'][-1][1], final)
  speeds = scalars['speed/steps_per_second']
  assert [s for s, _ in speeds] == STEPS and all(v > 0 for _, v in speeds)


def test_samples_and_flags_are_written_as_text(logged):
  folder, log, _ = logged
  texts = summaries.read_texts(str(folder / 'tb'))
  blocks = log.split('=' * 80)[1::2]  # the samples at steps 0 and 50
  assert len(blocks) == 2 and all(len(b.strip().split('\n')) == 5 for b in blocks)
  assert texts['samples'] == [
      (step, '\n\n'.join('    ' + s for s in block.strip().split('\n')))
      for step, block in zip((0, 50), blocks)]
  [(step, table)] = texts['flags']
  assert step == 0 and '| --num_nodes | 8 |' in table and '| --num_steps | 51 |' in table


def test_writing_summaries_changes_nothing_printed(logged):
  _, with_logdir, without = logged
  assert with_logdir == without


def test_a_resumed_run_continues_the_curves_without_duplicated_steps(logged, tmp_path,
                                                                     capsys):
  """As if the run was killed after writing the events of steps 25-50 but before their
  checkpoints were complete: the newest checkpoint is step 20's."""
  folder, log, _ = logged
  run_folder = tmp_path / 'run'
  shutil.copytree(folder, run_folder)
  for name in os.listdir(run_folder / 'ck'):
    if re.match(r'ckpt-(40|50)\.', name):
      os.remove(run_folder / 'ck' / name)
  status, out, err = run(capsys, data=str(run_folder / 'small.txt'),
                         logdir=str(run_folder / 'tb'), checkpoint_dir=str(run_folder / 'ck'),
                         resume=True)
  assert status == 0, err
  assert 'ckpt-20 at step 21' in err
  assert out and log.endswith(out)  # the lines after step 20, as the uninterrupted run's
  resumed = summaries.read_scalars(str(run_folder / 'tb'))
  reference = summaries.read_scalars(str(folder / 'tb'))
  assert set(resumed) == set(reference)
  for tag in reference:
    steps = [step for step, _ in resumed[tag]]
    assert steps == STEPS, (tag, steps)  # once each, in order
    if tag != 'speed/steps_per_second':
      assert resumed[tag] == reference[tag], tag
  assert len(summaries.event_files(str(run_folder / 'tb'))) == 2  # one per (re)start
  assert [s for s, _ in summaries.read_texts(str(run_folder / 'tb'))['flags']] == [0, 21]


def test_cut_events_drops_later_steps_and_a_damaged_tail(tmp_path):
  logdir = str(tmp_path)
  writer = summaries.Summaries(logdir)
  for step in range(5):
    writer.scalars(step, {'x': float(step)})
  writer.close()
  [path] = summaries.event_files(logdir)
  with open(path, 'ab') as f:
    f.write(b'\x13\x00\x00\x00\x00\x00\x00\x00half a record')  # killed while writing
  assert [s for s, _ in summaries.read_scalars(logdir)['x']] == [0, 1, 2, 3, 4]
  summaries.cut_events(logdir, 2)
  assert summaries.read_scalars(logdir)['x'] == [(0, 0.0), (1, 1.0), (2, 2.0)]
  events = list(tf.data.TFRecordDataset(path))  # the file is whole again: no DataLossError
  assert tf.compat.v1.Event.FromString(events[0].numpy()).file_version
  size = os.path.getsize(path)
  summaries.cut_events(logdir, 2)  # nothing to cut: the file stays as it is
  assert os.path.getsize(path) == size


def test_a_used_logdir_is_refused_unless_overwrite(logged, tmp_path, capsys):
  folder, _, _ = logged
  shutil.copytree(folder / 'tb', tmp_path / 'tb')
  before = {name: (tmp_path / 'tb' / name).read_bytes() for name in os.listdir(tmp_path / 'tb')}
  status, out, err = run(capsys, data=str(folder / 'small.txt'), logdir=str(tmp_path / 'tb'))
  assert status == 1 and out == ''
  assert err.count('\n') == 1 and '--logdir=%s: holds the event files' % (tmp_path / 'tb') in err
  assert {name: (tmp_path / 'tb' / name).read_bytes()
          for name in os.listdir(tmp_path / 'tb')} == before
  status, _, err = run(capsys, data=str(folder / 'small.txt'), logdir=str(tmp_path / 'tb'),
                       overwrite=True, num_steps=11)
  assert status == 0, err
  [path] = summaries.event_files(str(tmp_path / 'tb'))
  assert os.path.basename(path) not in before
  assert [s for s, _ in summaries.read_scalars(str(tmp_path / 'tb'))['loss/average']] == [
      0, 5, 10]
