"""Problem 2: embeddings, the bigram LSTM, and dropout.

    python -m assignment6.problem2 --variant=embedding          # 2a: characters embedded
    python -m assignment6.problem2 --variant=bigram             # 2b: 729 bigrams
    python -m assignment6.problem2 --variant=bigram --keep_prob=0.5   # 2c: with dropout

2a feeds `tf.nn.embedding_lookup(embeddings, ids)` to the cell instead of one-hot rows.
2b predicts the next pair of characters: inputs and labels are bigram ids, the labels made
one-hot by `tf.gather` over a 729 x 729 identity, logits (batch * unrollings, 729). Pairs do
not overlap by default (a step advances two characters: each character is predicted once);
--bigram_stride=1 overlaps them as many published solutions do, and is then scored on the
whole pair although its first character is known (an upper bound per character).
2c: --keep_prob drops the LSTM's input and its output before the classifier while
training (Zaremba et al. 2014), never the state carried from step to step.
The course's `Validation set perplexity` is per token; the run ends with perplexity and bits
per character on the same 1,000 characters, comparable between every model.
"""
from absl import app
from absl import flags as absl_flags

from assignment6 import flags, runs

absl_flags.adopt_module_key_flags(flags)  # --helpshort and --help list the shared flags

absl_flags.DEFINE_enum('variant', 'bigram', ['embedding', 'bigram'], 'embedding: characters '
                  'through an embedding (2a); bigram: the 729-bigram LSTM (2b).')
absl_flags.DEFINE_integer('bigram_stride', 2, 'Characters between the starts of two bigrams: 2 '
                     '(pairs do not overlap) or 1 (they overlap).', lower_bound=1,
                     upper_bound=2)
flags.FLAGS.set_default('cell', 'concat')
flags.FLAGS.set_default('embedding_size', 128)


def main(argv):
  runs.reject_arguments(argv)
  settings = flags.FLAGS
  title = {'embedding': 'Problem 2a: characters through an embedding',
           'bigram': 'Problem 2b: the bigram LSTM'}[settings.variant]
  if settings.keep_prob < 1:
    title += ', dropout keeping %g (2c)' % settings.keep_prob
  runs.run_language_model(settings, title, settings.variant, settings.bigram_stride)


if __name__ == '__main__':
  app.run(main)
