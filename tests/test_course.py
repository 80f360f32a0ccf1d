"""`course.verdict`: every outcome, with logs just inside and just outside the tolerance.

The tolerance is measured (`course.SEEDS_JSON`: runs of the course's code with ten seeds);
here it is recomputed from that file without the package's helper, and logs are made from
the course's recorded run and from a measured seed, moved by just under or just over it.
"""
import itertools
import json
import math

import pytest

from assignment6 import course

NAMES = ('this run', 'the course\'s run')
LENGTHS = (301, 1001, 3001, 7001)  # the runs learners make: --num_steps


def seeds_file():
  with open(course.SEEDS_JSON, encoding='utf-8') as f:
    return json.load(f)


def course_curve():
  return {r['step']: r['validation_perplexity'] for r in course.course_log()}


def log_of(curve, num_steps, offset=lambda step: 0.0):
  """Records as `parse_log` makes them: validation perplexity curve[step] + offset(step)."""
  return [{'step': step, 'validation_perplexity': value + offset(step)}
          for step, value in sorted(curve.items()) if step < num_steps]


def expected_tolerance(steps, against_course):
  """1.25 x the largest mean |difference| over `steps` (every 100th), from the file."""
  measured = seeds_file()
  index = [measured['steps'].index(step) for step in steps]
  curves = measured['validation_perplexity']
  if against_course:
    reference = course_curve()
    pairs = [(c, [reference[s] for s in measured['steps']]) for c in curves]
  else:
    pairs = itertools.combinations(curves, 2)
  return 1.25 * max(sum(abs(a[k] - b[k]) for k in index) / len(index) for a, b in pairs)


def test_the_measurement_is_ten_seeds_of_the_courses_code_at_every_logged_step():
  measured = seeds_file()
  assert len(measured['seeds']) == 10 and len(set(measured['seeds'])) == 10
  assert measured['steps'] == list(range(0, 7001, 100))
  assert all(len(c) == 71 and all(1 < v < 30 for v in c)
             for c in measured['validation_perplexity'])
  assert '--cell=course' in measured['command']


@pytest.mark.parametrize('num_steps', LENGTHS)
@pytest.mark.parametrize('against_course', [True, False])
def test_the_tolerance_is_the_measured_spread_over_the_same_steps(num_steps, against_course):
  steps = list(range(0, num_steps, 100))
  limit, distance = course.tolerance(steps, against_course)
  assert limit == pytest.approx(expected_tolerance(steps, against_course), rel=1e-12)
  assert limit == pytest.approx(course.MARGIN * distance)


def test_a_short_run_gets_the_wider_tolerance_its_early_steps_call_for():
  limits = [course.tolerance(list(range(0, n, 100)), True)[0] for n in LENGTHS]
  assert limits == sorted(limits, reverse=True) and limits[0] > 2 * limits[-1]


@pytest.mark.parametrize('num_steps', LENGTHS)
def test_just_inside_and_just_outside_the_tolerance_against_the_course(num_steps):
  curve = course_curve()
  limit = expected_tolerance(list(range(0, num_steps, 100)), True)
  verdict = lambda offset: course.verdict(log_of(curve, num_steps, lambda s: offset),
                                          course.course_log(), True, NAMES)
  assert verdict(0.99 * limit).startswith('Verdict: consistent with the course\'s run:')
  assert verdict(-0.99 * limit).startswith('Verdict: consistent with')
  assert verdict(1.01 * limit).startswith('Verdict: NOT consistent with the course\'s run:')
  assert verdict(-1.01 * limit).startswith('Verdict: better than the course\'s run:')
  line = verdict(0.5)
  assert ('differs by 0.500 on average (+0.500 signed) over %d common steps from 0 to %d;'
          % (len(range(0, num_steps, 100)), (num_steps - 1) // 100 * 100)) in line
  assert 'tolerance %.3f' % limit in line


@pytest.mark.parametrize('num_steps', LENGTHS)
def test_just_inside_and_just_outside_the_tolerance_between_two_logs(num_steps):
  measured = seeds_file()
  curve = dict(zip(measured['steps'], measured['validation_perplexity'][0]))
  limit = expected_tolerance(list(range(0, num_steps, 100)), False)
  theirs = log_of(curve, num_steps)
  verdict = lambda offset: course.verdict(log_of(curve, num_steps, lambda s: offset),
                                          theirs, False, ('a.log', 'b.log'))
  assert verdict(0.99 * limit).startswith('Verdict: consistent with b.log:')
  assert verdict(1.01 * limit).startswith('Verdict: NOT consistent with b.log:')
  assert verdict(-1.01 * limit).startswith('Verdict: better than b.log:')
  assert 'any two of 10 seeds' in verdict(0.0)


def test_a_run_that_crosses_the_course_by_more_than_the_tolerance_is_not_consistent():
  curve = course_curve()
  limit = expected_tolerance(list(range(0, 7001, 100)), True)
  crossing = log_of(curve, 7001, lambda s: 1.5 * limit if s // 100 % 2 else -1.5 * limit)
  line = course.verdict(crossing, course.course_log(), True, NAMES)
  assert line.startswith('Verdict: NOT consistent with')


def test_a_diverged_run_is_not_consistent():
  curve = course_curve()
  for bad in (math.nan, math.inf, 1e9):
    log = log_of(curve, 1001, lambda s: bad if s == 500 else 0.0)
    line = course.verdict(log, course.course_log(), True, NAMES)
    assert line.startswith('Verdict: NOT consistent'), line
    assert ('(a validation figure is not finite)' in line) == (not math.isfinite(bad))


def test_each_measured_seed_is_consistent_with_the_course_at_every_length():
  measured = seeds_file()
  for values in measured['validation_perplexity']:
    curve = dict(zip(measured['steps'], values))
    for num_steps in LENGTHS:
      line = course.verdict(log_of(curve, num_steps), course.course_log(), True, NAMES)
      assert line.startswith('Verdict: consistent with'), line


def test_no_common_steps_is_said():
  line = course.verdict([{'step': 50, 'validation_perplexity': 5.0}], course.course_log(),
                        True, NAMES)
  assert line == 'Verdict: no common validation figures; nothing to compare.'


def test_steps_the_seeds_did_not_log_count_as_the_nearest_they_did():
  limit, _ = course.tolerance([7100, 21000], False)
  assert limit == pytest.approx(expected_tolerance([7000], False))
  assert course.tolerance([50], True)[0] == pytest.approx(expected_tolerance([100], True))


def test_measure_seeds_reads_back_what_the_file_holds():
  measured = seeds_file()
  logs = [log_of(dict(zip(measured['steps'], values)), 7001)
          for values in measured['validation_perplexity']]
  again = course.measure_seeds(logs, measured['seeds'], measured['command'])
  assert again['steps'] == measured['steps']
  assert again['validation_perplexity'] == measured['validation_perplexity']
  with pytest.raises(ValueError, match='seed 11'):
    course.measure_seeds([logs[0], logs[1][:-1]], [10, 11])


def test_the_table_says_a_bigram_log_is_turned_per_character():
  bigram = course.parse_log(
      'Characters per token: 2\nAverage loss at step 0: 6.600000 learning rate: 10.000000\n'
      'Minibatch perplexity: 729.00\nValidation set perplexity: 400.00\n')
  lines = course.compare(bigram, names=('bigram.log', 'the course\'s run'))
  assert ('Per character: bigram.log logs per token of 2 characters (its loss lines are per '
          'pair); here its loss is divided by 2 and its perplexities taken to the power 1/2'
          in lines)
  assert not any(line.startswith('Per character')
                 for line in course.compare(course.course_log()))
