"""The course's character LSTM on text8: `python -m assignment6.lstm`.

The flags' defaults are the course's settings (7,001 steps, batch 64, 10 unrollings, 64
nodes, SGD at 10 decayed to 1 at step 5,000, clipping at 1.25); see `--helpfull`.
"""
from absl import app

from assignment6 import flags, runs


def main(argv):
  runs.reject_arguments(argv)
  runs.run_language_model(flags.FLAGS, 'The course\'s LSTM (6_lstm.ipynb)')


if __name__ == '__main__':
  app.run(main)
