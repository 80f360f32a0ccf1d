"""The course's character LSTM on text8: `python -m assignment6.lstm`.

The flags' defaults are the course's settings (7,001 steps, batch 64, 10 unrollings, 64
nodes, SGD at 10 decayed to 1 at step 5,000, clipping at 1.25); `--helpshort` lists the flags.
"""
from absl import app
from absl import flags as absl_flags

from assignment6 import flags, runs

absl_flags.adopt_module_key_flags(flags)  # --helpshort and --help list the shared flags


def main(argv):
  runs.reject_arguments(argv)
  runs.run_language_model(flags.FLAGS, 'The course\'s LSTM (6_lstm.ipynb)')


if __name__ == '__main__':
  app.run(main)
