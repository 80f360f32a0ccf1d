"""Compare a log with the course's recorded run, or two logs side by side.

    python -m assignment6.compare LOG            # LOG against the course's run on text8
    python -m assignment6.compare LOG OTHER_LOG  # two logs of this project

A log is what the scripts print (or write with --log_file): the course's `Average loss at
step`, `Minibatch perplexity` and `Validation set perplexity` lines.
"""
from absl import app

from assignment6 import course, runs


def main(argv):
  paths = argv[1:]
  if not 1 <= len(paths) <= 2:
    runs.fail('give one log (compared with the course) or two logs; see --help')
  try:
    logs = [course.read_log(path) for path in paths]
  except ValueError as error:
    runs.fail(str(error))
  if len(logs) == 1:
    lines = course.compare(logs[0], names=(paths[0], 'the course\'s run'))
  else:
    lines = course.compare(logs[0], logs[1], names=tuple(paths))
  print('\n'.join(lines))


if __name__ == '__main__':
  app.run(main)
