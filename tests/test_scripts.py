"""The scripts as a learner runs them: their log, the comparison, and one-line errors."""
import re

import pytest

from assignment6 import course
from conftest import made_up_text, run_script

SMALL = ['--num_steps=201', '--summary_frequency=50', '--batch_size=8', '--num_nodes=16',
         '--valid_size=300']


run = run_script


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
  folder = tmp_path_factory.mktemp('corpus')
  path = folder / 'small.txt'
  path.write_text(made_up_text(3000))
  return folder, path


@pytest.fixture(scope='module')
def small_run(corpus):
  folder, path = corpus
  text = path.read_text()
  (folder / 'valid.txt').write_text(text[:300])
  log = folder / 'run.log'
  result = run('lstm', *SMALL, '--data=%s' % path, '--log_file=%s' % log,
               '--eval_data=%s' % (folder / 'valid.txt'))
  return result, log


def test_lstm_prints_the_courses_log(small_run):
  result, log = small_run
  assert result.returncode == 0, result.stderr
  out = result.stdout
  assert 'Traceback' not in result.stderr and 'oneDNN' not in result.stderr
  assert out.splitlines()[0].startswith('Corpus: ')
  assert 'Initialized' in out
  assert re.search(r'^Average loss at step 0: \d+\.\d{6} learning rate: 10\.000000$', out,
                   re.M)
  assert re.search(r'^Minibatch perplexity: \d+\.\d\d$', out, re.M)
  assert re.search(r'^Validation set perplexity: \d+\.\d\d$', out, re.M)
  assert out.count('=' * 80) == 2  # one block of samples, at step 0
  samples = out.split('=' * 80 + '\n')[1].splitlines()
  assert len(samples) == 5 and all(len(s) == 80 for s in samples)
  assert [r['step'] for r in course.read_log(str(log))] == [0, 50, 100, 150, 200]
  assert 'Verdict: ' in out


def test_eval_data_on_the_validation_text_reports_the_validation_figure(small_run):
  out = small_run[0].stdout
  last = float(re.findall(r'^Validation set perplexity: (\S+)$', out, re.M)[-1])
  per_char = re.search(r'^Validation per character: perplexity (\S+),', out, re.M).group(1)
  evaluation = re.search(r'^Evaluation on .*valid.txt: perplexity (\S+) per character, '
                         r'bits_per_character (\S+) \(300 characters\)$', out, re.M)
  assert evaluation.group(1) == per_char
  assert round(float(evaluation.group(1)), 2) == last


def test_compare_two_logs_and_the_course(small_run, tmp_path):
  _, log = small_run
  result = run('compare', str(log))
  assert result.returncode == 0, result.stderr
  assert 'against the course\'s run' in result.stdout
  assert re.search(r'^     0 \|', result.stdout, re.M)
  result = run('compare', str(log), str(log))
  assert result.returncode == 0, result.stderr
  assert re.search(r'Verdict: consistent .* differs by 0\.000', result.stdout)


def test_compare_reads_the_courses_own_print_format(tmp_path):
  log = tmp_path / 'course.log'
  log.write_text('Initialized\nAverage loss at step 0 : 3.299042 learning rate: 10.000000\n'
                 'Minibatch perplexity: 27.09\nValidation set perplexity: 19.99\n')
  record, = course.read_log(str(log))
  expected = course.course_log()[0]
  assert record == dict(expected, average_loss=pytest.approx(expected['average_loss'],
                                                              abs=1e-6))


@pytest.mark.parametrize('args,expected', [
    (['--batch_size=0'], '--batch_size'),
    (['--num_nodes=-3'], '--num_nodes'),
    (['--learning_rate=0'], '--learning_rate must be greater than 0'),
    (['--clip_norm=-1'], '--clip_norm must be greater than 0'),
    (['--keep_prob=1.5'], '--keep_prob must be in (0, 1]'),
    (['--decay_rate=0'], '--decay_rate must be in (0, 1]'),
    (['--cell=lstm'], '--cell'),
    (['--peepholes'], 'need --cell=concat'),
    (['--num_steps=0'], '--num_steps'),
    (['--data=/nonexistent/text8.zip'], '/nonexistent/text8.zip: no such file'),
    (['--valid_size=100000'], '--valid_size=100000: the text has only'),
    (['--batch_size=4000'], '--batch_size=4000, --num_unrollings=10'),
    (['--log_file=/nonexistent/dir/run.log'], '--log_file=/nonexistent/dir/run.log'),
    (['stray'], 'unexpected arguments'),
])
def test_bad_input_is_one_line(corpus, args, expected):
  _, path = corpus
  result = run('lstm', '--data=%s' % path, '--num_steps=1', *args)
  assert result.returncode != 0
  assert expected in result.stderr
  assert 'Traceback' not in result.stderr
  errors = [line for line in result.stderr.splitlines() if line.strip()
            and not line.startswith('Pass --helpshort')]
  assert len(errors) == 1, result.stderr


def test_compare_errors(tmp_path):
  (tmp_path / 'empty.log').write_text('nothing here\n')
  for args, expected in (([str(tmp_path / 'missing.log')], 'missing.log: cannot be read'),
                         ([str(tmp_path / 'empty.log')], 'no "Average loss at step" line'),
                         ([], 'give one log')):
    result = run('compare', *args)
    assert result.returncode == 1 and expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and 'Traceback' not in result.stderr


def test_the_embedded_sample_is_the_default(tmp_path):
  result = run('lstm', '--num_steps=1', '--nocompare', '--batch_size=4', '--num_nodes=8',
               cwd=str(tmp_path))
  assert result.returncode == 0, result.stderr
  assert 'embedded text8 sample' in result.stdout.splitlines()[0]
  assert 'Data size 5000000' in result.stdout


def test_a_bigram_log_compares_per_character():
  log = ('Characters per token: 2\nAverage loss at step 0: 6.600000 learning rate: 10.000000\n'
         'Minibatch perplexity: 729.00\nValidation set perplexity: 400.00\n')
  record, = course.parse_log(log)
  assert record['average_loss'] == pytest.approx(3.3)
  assert record['minibatch_perplexity'] == pytest.approx(27.0)
  assert record['validation_perplexity'] == pytest.approx(20.0)


@pytest.mark.parametrize('module,own_flags', [
    ('lstm', ['--num_steps', '--learning_rate', '--clip_norm', '--cell', '--num_proj',
              '--proj_clip', '--log_file', '--checkpoint_dir']),
    ('problem1', ['--num_steps', '--peepholes', '--num_proj', '--num_nonrec_proj']),
    ('problem2', ['--variant', '--bigram_stride', '--embedding_size', '--keep_prob',
                  '--num_steps']),
    ('problem3', ['--num_steps', '--attention', '--mirror', '--checkpoint_dir']),
    ('compare', ['--measure_seeds', '--seeds']),
])
@pytest.mark.parametrize('help_flag', ['--helpshort', '--help'])
def test_help_lists_the_scripts_own_flags(module, own_flags, help_flag):
  """What every flag error points to (`Pass --helpshort or --helpfull`) lists the flags."""
  result = run(module, help_flag)  # absl ends a help flag with exit status 1
  assert 'Traceback' not in result.stderr, result.stderr
  listed = set(re.findall(r'^  --(?:\[no\])?(\w+)', result.stdout, re.M))
  assert {flag[2:] for flag in own_flags} <= listed, result.stdout
  assert 'log_dir' not in listed and 'verbosity' not in listed  # absl's own: --helpfull
  error = run(module, '--no_such_flag=1')
  assert error.returncode != 0 and 'Pass --helpshort or --helpfull' in error.stderr


def test_a_diverging_run_says_so_in_one_line(corpus):
  _, path = corpus
  result = run('lstm', *SMALL, '--data=%s' % path, '--learning_rate=1000', '--nocompare')
  notes = [line for line in result.stderr.splitlines() if 'the run diverged' in line]
  assert len(notes) == 1, result.stderr
  assert re.search(r'note: validation perplexity [\d.]+ is above 27, the vocabulary size '
                   r'\(worse than a uniform guess\): the run diverged; lower '
                   r'--learning_rate or --clip_norm$', notes[0])
  calm = run('lstm', *SMALL, '--data=%s' % path, '--nocompare')
  assert calm.returncode == 0 and 'diverged' not in calm.stderr
