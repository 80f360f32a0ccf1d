"""Problem 3: train a sequence-to-sequence LSTM that mirrors every word, or use one.

    python -m assignment6.problem3                      # train (about 9 minutes on 2 cores)
    python -m assignment6.problem3 --mirror "the quick brown fox"   # with the saved model

The model and data code is `assignment6.mirror`; this is the command line.
"""
import random
import sys

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from assignment6 import data
from assignment6 import mirror

FLAGS = flags.FLAGS
flags.DEFINE_string('data', None, 'A text8-format corpus (text8.zip, .xz or plain text); '
                    'default ./text8.zip if present, else the embedded 5M-character sample.')
flags.DEFINE_bool('strict', False, 'Refuse a corpus with characters outside a-z and space.')
flags.DEFINE_integer('num_steps', 6000, 'Training steps (batches).')
flags.DEFINE_integer('batch_size', 64, 'Sentences per batch.')
flags.DEFINE_integer('num_nodes', 128, 'Cells in the encoder and in the decoder LSTM.')
flags.DEFINE_float('learning_rate', 0.003, "Adam's learning rate at the first step.")
flags.DEFINE_float('decay_rate', 0.1, 'The learning rate at the last step, as a fraction of '
                   '--learning_rate (exponential decay in between).')
flags.DEFINE_float('clip_norm', 5.0, 'The global norm the gradients are clipped to.')
flags.DEFINE_integer('seed', 1, 'Seeds Python, NumPy and TensorFlow.')
flags.DEFINE_integer('summary_frequency', 200, 'Steps between two log lines.')
flags.DEFINE_integer('max_words', 8, 'The most words in a training sentence (and in the '
                     'held-out test table).')
flags.DEFINE_list('curriculum', ['3', '5'], 'Most words per sentence in earlier stages of '
                  'training, growing; the last stage is --max_words. Steps are split evenly. '
                  'Empty: no curriculum.')
flags.DEFINE_bool('reverse_source', True, 'The encoder reads every sentence backwards '
                  '(Sutskever et al. 2014).')
flags.DEFINE_bool('attention', True, 'Luong et al. (2015) global attention over the '
                  "encoder's outputs, with input feeding.")
flags.DEFINE_integer('beam_width', 4, 'Beam width for the test table and --mirror; 1 is '
                     'greedy decoding.')
flags.DEFINE_integer('test_sentences', 1000, 'Held-out test sentences per length.')
flags.DEFINE_integer('valid_sentences', 50, 'Validation sentences per length, greedy.')
flags.DEFINE_string('checkpoint_dir', 'runs/problem3', 'Where the trained model is saved '
                    '(and read by --mirror).')
flags.DEFINE_string('mirror', None, 'Mirror these words with the saved model instead of '
                    'training.')

flags.register_validator('num_steps', lambda v: v >= 1, '--num_steps must be at least 1')
flags.register_validator('batch_size', lambda v: 1 <= v <= 4096, 'must be in 1..4096')
flags.register_validator('num_nodes', lambda v: 1 <= v <= 4096, 'must be in 1..4096')
flags.register_validator('learning_rate', lambda v: 0 < v <= 1, 'must be in (0, 1]')
flags.register_validator('decay_rate', lambda v: 0 < v <= 1, 'must be in (0, 1]')
flags.register_validator('clip_norm', lambda v: v > 0, 'must be positive')
flags.register_validator('summary_frequency', lambda v: v >= 1, 'must be at least 1')
flags.register_validator('max_words', lambda v: 1 <= v <= 50, 'must be in 1..50')
flags.register_validator('beam_width', lambda v: 1 <= v <= 64, 'must be in 1..64')
flags.register_validator('test_sentences', lambda v: v >= 1, 'must be at least 1')
flags.register_validator('valid_sentences', lambda v: v >= 1, 'must be at least 1')
flags.register_validator(
    'curriculum', lambda v: all(s.isdigit() and int(s) >= 1 for s in v),
    'must be a comma-separated list of word counts (e.g. 3,5)')
flags.register_multi_flags_validator(
    ['curriculum', 'max_words'],
    lambda f: all(int(s) <= f['max_words'] for s in f['curriculum']),
    '--curriculum stages must not exceed --max_words')


def mirror_command():
  """--mirror: print the mirrored text, or exit with a one-line error."""
  mirror.check_text(FLAGS.mirror)
  model, max_words = mirror.load_model(FLAGS.checkpoint_dir)
  print(mirror.mirror_text(model, FLAGS.mirror, max_words, FLAGS.beam_width))


def train():
  """Train, log as the course does, save the checkpoint, print the held-out table."""
  random.seed(FLAGS.seed)
  np.random.seed(FLAGS.seed)
  tf.random.set_seed(FLAGS.seed)
  text = data.load_corpus(FLAGS.data, FLAGS.strict)
  train_words, valid_words, test_words = mirror.split_words(text)
  print('Words: %d train, %d validation, %d test (consecutive parts of the text).'
        % (len(train_words), len(valid_words), len(test_words)))
  valid = mirror.test_sentences(valid_words, FLAGS.max_words, FLAGS.valid_sentences,
                                FLAGS.seed)
  valid = [s for n in sorted(valid) for s in valid[n]]
  model = mirror.Mirror(FLAGS.num_nodes, FLAGS.attention, FLAGS.reverse_source, FLAGS.seed)
  trainer = mirror.Trainer(model, FLAGS.learning_rate, FLAGS.clip_norm)
  stages = [int(s) for s in FLAGS.curriculum] + [FLAGS.max_words]
  rng = np.random.default_rng(FLAGS.seed)
  timer = mirror.Timer()
  mean_loss = 0.0
  for step in range(FLAGS.num_steps):
    learning_rate = FLAGS.learning_rate * FLAGS.decay_rate ** (step / FLAGS.num_steps)
    trainer.adam.learning_rate.assign(learning_rate)
    max_words = mirror.curriculum_stage(step, FLAGS.num_steps, stages)
    batch = mirror.training_batch(train_words, FLAGS.batch_size, max_words, rng,
                                  FLAGS.reverse_source)
    mean_loss += float(trainer.train_step(mirror.to_tensors(batch)))
    if not np.isfinite(mean_loss):
      sys.exit('problem3: the loss became %s at step %d; lower --learning_rate'
               % (mean_loss, step))
    if step % FLAGS.summary_frequency == 0 or step == FLAGS.num_steps - 1:
      if step > 0:
        mean_loss /= FLAGS.summary_frequency if step % FLAGS.summary_frequency == 0 else (
            step % FLAGS.summary_frequency)
      print('Average loss at step %d: %f learning rate: %f' % (step, mean_loss,
                                                                learning_rate))
      mean_loss = 0.0
      decoded = mirror.decode(model, valid)
      accuracy = np.mean([d == mirror.mirror(s) for d, s in zip(decoded, valid)])
      print('Validation sentence accuracy: %.1f%% (greedy, 1-%d words; training on 1-%d '
            'words, %.0f s)' % (100 * accuracy, FLAGS.max_words, max_words, timer()))
      for source, output in zip([mirror.EXAMPLE, valid[-1]],
                                mirror.decode(model, [mirror.EXAMPLE, valid[-1]])):
        print('  %s -> %s' % (source, output))
  training_seconds = timer()
  print('Training time: %.0f s (%.1f minutes)' % (training_seconds, training_seconds / 60))
  path = mirror.checkpoint(model, trainer, FLAGS.max_words).save(
      FLAGS.checkpoint_dir + '/ckpt')
  print('Saved %s' % path)
  test = mirror.test_sentences(test_words, FLAGS.max_words, FLAGS.test_sentences,
                               FLAGS.seed + 1)
  timer = mirror.Timer()
  greedy = mirror.accuracy_by_length(model, test, 1)
  beam = None
  if FLAGS.beam_width > 1:
    beam = mirror.accuracy_by_length(model, test, FLAGS.beam_width)
  print('Held-out test sentences (%d per length), accuracy in %% (evaluated in %.0f s):'
        % (FLAGS.test_sentences, timer()))
  print(mirror.format_table(greedy, beam, FLAGS.beam_width))
  for name, table in (('greedy', greedy), ('beam', beam)):
    if table:
      short = [n for n in table if n <= 5]
      print('Exact sentences of 1-%d words, %s: %.2f%%' % (
          max(short), name, 100 * np.mean([table[n][0] for n in short])))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError('Unexpected arguments: %s' % ' '.join(argv[1:]))
  try:
    if FLAGS.mirror is not None:
      mirror_command()
    else:
      train()
  except data.DataError as error:
    sys.exit('problem3: %s' % error)


if __name__ == '__main__':
  app.run(main)
