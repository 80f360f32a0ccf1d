"""assignment6: the Udacity Deep Learning course's Assignment 6 (LSTMs) in TensorFlow 2.

Data flows one way: `data` (text8, batches) -> `cells` (the LSTM cells) -> `models`
(the language models) -> `training` (train step, validation, sampling, the log) ->
`course` (the comparison with the course's recorded run). `lstm`, `problem1`, `problem2`
and `problem3` are the scripts; `course_tf1` is the course's own code, TF1-style, the
yardstick the port is tested and timed against. After training: `sample`, `export`
(through `generate`) and `summaries` (TensorBoard). The learner's exercises: `exercises`
and `exercises_problems` (checks, hints, solutions), `diagnoses` (what a wrong answer
computes), `exercise_notebooks` (the exercise notebooks made from the solutions).
"""
import os
import sys


def _import_tensorflow_quietly():
  """Import TensorFlow with its C++ start-up messages silenced.

  A learner should see the course's log. TF_CPP_MIN_LOG_LEVEL quiets TensorFlow's own
  logging, but since 2.16 a few lines ("oneDNN custom operations are on", "Could not find
  cuda drivers") are written to file descriptor 2 before that setting is read, so the
  descriptor points at /dev/null while the import runs. Python errors still show.
  """
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
  if 'tensorflow' in sys.modules or os.environ.get('ASSIGNMENT6_VERBOSE_TF'):
    return
  try:
    sys.stderr.flush()
    saved = os.dup(2)
  except (OSError, ValueError):  # no real stderr (some notebook front ends)
    import tensorflow  # pylint: disable=unused-import
    return
  devnull = os.open(os.devnull, os.O_WRONLY)
  try:
    os.dup2(devnull, 2)
    import tensorflow  # pylint: disable=unused-import,redefined-outer-name
  finally:
    os.dup2(saved, 2)
    os.close(saved)
    os.close(devnull)


_import_tensorflow_quietly()
