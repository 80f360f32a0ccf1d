"""The course's recorded run and the side-by-side comparison with it.

`course_outputs()` gives what the course's notebook printed when it was run on text8 and
saved (tensorflow/examples, courses/udacity_deep_learning/6_lstm.ipynb; figures carried
here as package data): its settings, data checks, its log every 100 steps and its samples.
`parse_log` reads the same figures back from any log this project prints, and `compare`
sets two of them side by side with a one-line verdict.

The verdict's tolerance is measured, step by step, from runs of the course's code:
`SEEDS_JSON` holds the validation perplexity at every 100th step of 7,001-step runs of the
course's cell (the port with `--cell=course`, the course's arithmetic bit for bit) with ten
seeds on the embedded sample. For the steps a comparison has in common, the tolerance is a quarter more
than the most any of those seeds differs, on average over the same steps, from the course's
recorded run (or, between two logs, any seed from another). Early steps move fast and the
seeds spread there, so a short run gets the wider tolerance its own steps call for. Made
with `measure_seeds` (`python -m assignment6.compare --measure_seeds=OUT LOG...`; README,
"Comparing with the course").
"""
import itertools
import json
import math
import os
import re

COURSE_JSON = os.path.join(os.path.dirname(__file__), 'data', 'course_outputs.json')
SEEDS_JSON = os.path.join(os.path.dirname(__file__), 'data', 'course_seeds.json')

# The tolerance: the largest mean |difference| the course's code shows over the same steps
# (from SEEDS_JSON), times this. The quarter covers seeds not measured.
MARGIN = 1.25

FIELDS = ('average_loss', 'learning_rate', 'minibatch_perplexity', 'validation_perplexity')

_LOSS = re.compile(r'Average loss at step (\d+) ?: ([-+\d.naif]+) learning rate: ([\d.e+-]+)')
_MINIBATCH = re.compile(r'Minibatch perplexity: ([\d.naif]+)')
_VALIDATION = re.compile(r'Validation set perplexity: ([\d.naif]+)')
_PER_TOKEN = re.compile(r'^Characters per token: (\d+)')


def course_outputs():
  """The course's recorded outputs (a dict: settings, data_checks, log, samples)."""
  with open(COURSE_JSON, encoding='utf-8') as f:
    return json.load(f)


def course_log():
  """The course's log as records: [{step, average_loss, ..., validation_perplexity}]."""
  return course_outputs()['log']


def parse_log(text):
  """The records of a log printed by the course's loop (this project's or the course's).

  A record starts at `Average loss at step N`; its minibatch and validation perplexities
  are the next such lines. Lines of any other kind are skipped. The figures are per
  character: a bigram model's log says `Characters per token: 2`, and its per-token loss
  and perplexities are turned into per-character ones (nats / 2, perplexity ** (1 / 2)).
  """
  records = []
  per_token = 1
  for line in text.splitlines():
    match = _PER_TOKEN.search(line)
    if match:
      per_token = int(match.group(1))
      continue
    match = _LOSS.search(line)
    if match:
      records.append({'step': int(match.group(1)),
                      'average_loss': float(match.group(2)),
                      'learning_rate': float(match.group(3))})
      continue
    for name, pattern in (('minibatch_perplexity', _MINIBATCH),
                          ('validation_perplexity', _VALIDATION)):
      match = pattern.search(line)
      if match and records and name not in records[-1]:
        records[-1][name] = float(match.group(1))
  if per_token > 1:
    for record in records:
      record['characters_per_token'] = per_token
      record['average_loss'] /= per_token
      for name in ('minibatch_perplexity', 'validation_perplexity'):
        if name in record:
          record[name] **= 1.0 / per_token
  return records


def read_log(path):
  """`parse_log` of a file; a file with no log line is an error naming it."""
  try:
    with open(path, encoding='utf-8', errors='replace') as f:
      records = parse_log(f.read())
  except OSError as error:
    raise ValueError('%s: cannot be read (%s)' % (path, error.strerror)) from None
  if not records:
    raise ValueError('%s: no "Average loss at step" line; give a log printed by '
                     'assignment6 (--log_file) or by the course\'s notebook' % path)
  return records


def course_seeds():
  """The measured runs of the course's code (a dict: description, command, tensorflow,
  seeds, steps and `validation_perplexity`, one list per seed over `steps`)."""
  with open(SEEDS_JSON, encoding='utf-8') as f:
    return json.load(f)


def measure_seeds(logs, seeds, command=''):
  """What `SEEDS_JSON` holds, from the logs of runs of the course's code with `seeds`.

  logs: parsed logs (`read_log`), one per seed, all logging the same steps (every 100th
  of a 7,001-step run). Returns the dict `course_seeds` reads.
  """
  import tensorflow as tf  # only to record the version measured on
  steps = [r['step'] for r in logs[0] if 'validation_perplexity' in r]
  curves = []
  for seed, log in zip(seeds, logs):
    by_step = {r['step']: r.get('validation_perplexity') for r in log}
    if any(by_step.get(step) is None for step in steps):
      raise ValueError('the log of seed %d does not have the steps of the first' % seed)
    curves.append([by_step[step] for step in steps])
  return {'description': 'Validation perplexity of the course\'s code (the port with '
                         '--cell=course) with several seeds on the embedded sample; the '
                         'verdict\'s tolerance (assignment6.course.verdict).',
          'command': command, 'tensorflow': tf.__version__, 'seeds': list(seeds),
          'steps': steps, 'validation_perplexity': curves}


def _common(ours, theirs):
  """(step, ours, theirs) validation perplexities at the steps both logged."""
  theirs_by_step = {r['step']: r for r in theirs}
  return [(r['step'], r['validation_perplexity'],
           theirs_by_step[r['step']]['validation_perplexity'])
          for r in ours if r['step'] in theirs_by_step and 'validation_perplexity' in r
          and 'validation_perplexity' in theirs_by_step[r['step']]]


def tolerance(steps, against_course, measured=None):
  """The tolerance for a comparison over `steps`, and the measured distance it comes from.

  Against the course: the most any measured seed's validation perplexity differs from the
  course's recorded run, on average over `steps`; between two logs: the most any two
  seeds differ from each other. Times `MARGIN`. A step the seeds did not log (past their
  last, or between two) counts as the nearest one they did.
  """
  measured = measured or course_seeds()
  logged = measured['steps']
  index = {step: min(range(len(logged)), key=lambda k: (abs(logged[k] - step), -k))
           for step in steps}
  curves = measured['validation_perplexity']
  if against_course:
    course_by_step = {r['step']: r['validation_perplexity'] for r in course_log()
                      if 'validation_perplexity' in r}
    course_curve = [course_by_step[step] for step in logged]
    pairs = [(curve, course_curve) for curve in curves]
  else:
    pairs = list(itertools.combinations(curves, 2))
  largest = max(sum(abs(a[index[s]] - b[index[s]]) for s in steps) / len(steps)
                for a, b in pairs)
  return MARGIN * largest, largest


def compare(ours, theirs=None, names=('this run', 'course'), every=1000):
  """Lines of a side-by-side table and a verdict: `ours` against `theirs` (default: the
  course's recorded run). Rows every `every` steps and at the last common step."""
  against_course = theirs is None
  theirs = course_log() if against_course else theirs
  theirs_by_step = {r['step']: r for r in theirs}
  common = [r for r in ours if r['step'] in theirs_by_step]
  lines = []
  header = '%6s | %-25s | %-25s | %-25s' % (
      'step', 'average loss', 'minibatch perplexity', 'validation perplexity')
  lines.append('Comparison: %s against %s (each cell: %s, %s, difference)'
               % (names[0], names[1], names[0], names[1]))
  for name, log in zip(names, (ours, theirs)):
    per_token = max([r.get('characters_per_token', 1) for r in log] or [1])
    if per_token > 1:
      lines.append('Per character: %s logs per token of %d characters (its loss lines '
                   'are per pair); here its loss is divided by %d and its perplexities '
                   'taken to the power 1/%d' % (name, per_token, per_token, per_token))
  lines.append(header)
  lines.append('-' * len(header))
  last = common[-1]['step'] if common else None
  for record in common:
    if record['step'] % every and record['step'] != last:
      continue
    other = theirs_by_step[record['step']]
    cells = []
    for name in ('average_loss', 'minibatch_perplexity', 'validation_perplexity'):
      if name in record and name in other:
        cells.append('%7.3f %7.3f %+8.3f' % (record[name], other[name],
                                               record[name] - other[name]))
      else:
        cells.append('%25s' % '-')
    lines.append('%6d | %s' % (record['step'], ' | '.join(cells)))
  lines.append(verdict(ours, theirs, against_course, names))
  return lines


def verdict(ours, theirs, against_course, names, measured=None):
  """One line: is `ours` as close to `theirs` as runs of the course's code are?

  Over the steps both logged: consistent when the mean |difference| of the validation
  perplexity is within `tolerance`; else better than `theirs` when `ours` is lower by more
  than the tolerance on average, and NOT consistent otherwise (higher, or crossing it, or
  a figure that is not finite: a diverged run).
  """
  pairs = _common(ours, theirs)
  if not pairs:
    return 'Verdict: no common validation figures; nothing to compare.'
  steps = [step for step, _, _ in pairs]
  limit, measured_distance = tolerance(steps, against_course, measured)
  differences = [a - b for _, a, b in pairs]
  finite = all(math.isfinite(d) for d in differences)
  mean_abs = sum(abs(d) for d in differences) / len(differences)
  mean = sum(differences) / len(differences)
  if not finite:
    outcome = 'NOT consistent (a validation figure is not finite)'
  elif mean_abs <= limit:
    outcome = 'consistent'
  elif mean <= -limit:
    outcome = 'better than'
  else:
    outcome = 'NOT consistent'
  seeds = len((measured or course_seeds())['seeds'])
  kind = ('any of %d seeds of the course\'s code on the embedded sample differs from it'
          % seeds if against_course else
          'any two of %d seeds of the course\'s code differ' % seeds)
  return ('Verdict: %s %s %s: validation perplexity differs by %.3f on average (%+.3f '
          'signed) over %d common steps from %d to %d; tolerance %.3f (%.2f x %.3f, the '
          'most %s over these steps).'
          % (outcome, 'with' if outcome.startswith(('consistent', 'NOT')) else '', names[1],
             mean_abs, mean, len(pairs), steps[0], steps[-1], limit, MARGIN,
             measured_distance, kind)).replace('  ', ' ')
