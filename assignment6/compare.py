"""Compare a log with the course's recorded run, or two logs side by side.

    python -m assignment6.compare LOG            # LOG against the course's run on text8
    python -m assignment6.compare LOG OTHER_LOG  # two logs of this project
    python -m assignment6.compare --measure_seeds=OUT.json --seeds=10,...,19 LOG...

A log is what the scripts print (or write with --log_file): the course's `Average loss at
step`, `Minibatch perplexity` and `Validation set perplexity` lines. The verdict's
tolerance comes from runs of the course's code with several seeds (`course.SEEDS_JSON`);
--measure_seeds writes that file anew from such runs' logs, one per seed.
"""
from absl import app
from absl import flags

from assignment6 import course, runs

flags.DEFINE_string('measure_seeds', None, 'Instead of comparing: write the verdict\'s '
                    'measurement (as assignment6/data/course_seeds.json) to this file from '
                    'the LOGs, 7,001-step runs of the course\'s code, one per --seeds.')
flags.DEFINE_list('seeds', [], 'With --measure_seeds: the seed of each LOG, in order.')
flags.DEFINE_string('command', '', 'With --measure_seeds: the command that made the LOGs '
                    '(recorded in the file).')


def main(argv):
  settings = flags.FLAGS
  paths = argv[1:]
  if settings.measure_seeds:
    measure(settings, paths)
    return
  if not 1 <= len(paths) <= 2:
    runs.fail('give one log (compared with the course) or two logs; see --helpshort')
  try:
    logs = [course.read_log(path) for path in paths]
  except ValueError as error:
    runs.fail(str(error))
  if len(logs) == 1:
    lines = course.compare(logs[0], names=(paths[0], 'the course\'s run'))
  else:
    lines = course.compare(logs[0], logs[1], names=tuple(paths))
  print('\n'.join(lines))


def measure(settings, paths):
  """--measure_seeds: the seeds' validation curves, as `course.course_seeds` reads them."""
  import json
  if len(paths) < 2 or len(paths) != len(settings.seeds):
    runs.fail('--measure_seeds needs two or more logs and one --seeds value for each '
              '(%d logs, %d seeds); see --helpshort' % (len(paths), len(settings.seeds)))
  try:
    seeds = [int(seed) for seed in settings.seeds]
    measured = course.measure_seeds([course.read_log(path) for path in paths], seeds,
                                    settings.command)
  except ValueError as error:
    runs.fail('--seeds=%s: %s' % (','.join(settings.seeds), error)
              if 'invalid literal' in str(error) else str(error))
  try:
    with open(settings.measure_seeds, 'w', encoding='utf-8') as f:
      json.dump(measured, f, indent=1)
      f.write('\n')
  except OSError as error:
    runs.fail('--measure_seeds=%s: cannot be written (%s)' % (settings.measure_seeds,
                                                              error.strerror))
  print('Wrote %s: %d seeds, %d steps' % (settings.measure_seeds, len(seeds),
                                          len(measured['steps'])))


if __name__ == '__main__':
  app.run(main)
