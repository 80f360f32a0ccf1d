"""The course's recorded run and the side-by-side comparison with it.

`course_outputs()` gives what the course's notebook printed when it was run on text8 and
saved (tensorflow/examples, courses/udacity_deep_learning/6_lstm.ipynb; figures carried
here as package data): its settings, data checks, its log every 100 steps and its samples.
`parse_log` reads the same figures back from any log this project prints, and `compare`
sets two of them side by side with a one-line verdict.

The verdict's tolerances were measured (see the README, "Comparing with the course"):
- against the course's recorded run: how far the course's own code (`course_tf1`) lands
  from the recorded figures when run with other seeds on another text8-like corpus (the
  embedded sample); a run within that distance is as close as the course's code itself;
- between two runs on the same corpus: the spread of the final validation perplexity over
  seeds of the same settings.
"""
import json
import os
import re

COURSE_JSON = os.path.join(os.path.dirname(__file__), 'data', 'course_outputs.json')

# Measured (README, "Comparing with the course"): the largest distance seen, plus a quarter.
# The course's code with seeds 0-2 on the embedded sample lands 0.196-0.236 from the
# course's recorded run; seven runs on one corpus (the port with seeds 0-3, the course's
# code with seeds 0-2) differ pairwise by 0.048-0.120. Both are the mean |difference| of
# the validation perplexity over the logged steps from 1,000 on.
TOLERANCE_AGAINST_COURSE = 0.30
TOLERANCE_SAME_CORPUS = 0.15
VERDICT_FROM_STEP = 1000

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


def _mean_abs_difference(ours, theirs, from_step):
  """Mean |difference| of validation perplexity at the steps both logged from `from_step`."""
  theirs_by_step = {r['step']: r for r in theirs}
  pairs = [(r['validation_perplexity'], theirs_by_step[r['step']]['validation_perplexity'])
           for r in ours if r['step'] >= from_step and r['step'] in theirs_by_step
           and 'validation_perplexity' in r
           and 'validation_perplexity' in theirs_by_step[r['step']]]
  if not pairs:
    return None, 0
  return sum(abs(a - b) for a, b in pairs) / len(pairs), len(pairs)


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


def verdict(ours, theirs, against_course, names):
  """One line: is `ours` as close to `theirs` as runs of the course's code are?"""
  tolerance = TOLERANCE_AGAINST_COURSE if against_course else TOLERANCE_SAME_CORPUS
  steps = {r['step'] for r in theirs}
  from_step = VERDICT_FROM_STEP  # early figures move fast; a short run uses all it has
  if not any(r['step'] >= from_step and r['step'] in steps for r in ours):
    from_step = 0
  difference, count = _mean_abs_difference(ours, theirs, from_step)
  if difference is None:
    return 'Verdict: no common validation figures; nothing to compare.'
  kind = ('the course\'s own code lands from its recorded run with other seeds on '
          'another text8-like corpus' if against_course else
          'runs of the same settings spread over seeds')
  outcome = 'consistent' if difference <= tolerance else 'NOT consistent'
  return ('Verdict: %s with %s: validation perplexity differs by %.3f on average over %d '
          'common steps from %d; tolerance %.2f (how far %s).'
          % (outcome, names[1], difference, count, from_step, tolerance, kind))
