"""Problem 1: the course's LSTM with one matrix multiply per side for the four gates.

    python -m assignment6.problem1                # the course's run with --cell=concat
    python -m assignment6.problem1 --peepholes --num_proj=32   # the paper's cell

`cells.ConcatCell` holds the gates side by side (input, forget, update, output) in
`x_weights` (27, 4 * num_nodes) and `m_weights` (num_nodes, 4 * num_nodes); a step is two
matmuls instead of the course's eight. The same flags as `assignment6.lstm`.
"""
from absl import app
from absl import flags as absl_flags

from assignment6 import flags, runs

absl_flags.adopt_module_key_flags(flags)  # --helpshort and --help list the shared flags

flags.FLAGS.set_default('cell', 'concat')


def main(argv):
  runs.reject_arguments(argv)
  runs.run_language_model(flags.FLAGS, 'Problem 1: the four gates in one matmul per side')


if __name__ == '__main__':
  app.run(main)
