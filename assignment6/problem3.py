"""Problem 3: train a sequence-to-sequence LSTM that mirrors every word, or use one.

    python -m assignment6.problem3                      # train (about 2.5 minutes on 2 cores)
    python -m assignment6.problem3 --resume             # continue it after a stop
    python -m assignment6.problem3 --mirror "the quick brown fox"   # with the saved model

A trained model in --checkpoint_dir is kept: a new run there needs --overwrite. The run
saves a checkpoint (`tf.train.CheckpointManager`: the model, Adam, the batch generator's
state, the settings) every --checkpoint_every steps at a log line and at its end; --resume
continues from the newest complete one and ends as an uninterrupted run ends.
The model and data code is `assignment6.mirror`; this is the command line.
"""
import os
import random
import sys
import zlib

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from assignment6 import checkpoints
from assignment6 import data
from assignment6 import mirror
from assignment6 import summaries

FLAGS = flags.FLAGS
flags.DEFINE_string('data', None, 'A text8-format corpus (text8.zip, .xz or plain text); '
                    'default ./text8.zip if present, else the embedded 5M-character sample.')
flags.DEFINE_bool('strict', False, 'Refuse a corpus with characters outside a-z and space.')
D = mirror.DEFAULTS
flags.DEFINE_integer('num_steps', D['num_steps'], 'Training steps (batches).')
flags.DEFINE_integer('batch_size', D['batch_size'], 'Sentences per batch.')
flags.DEFINE_integer('num_nodes', D['num_nodes'], 'Cells in the encoder and in the decoder '
                     'LSTM.')
flags.DEFINE_float('learning_rate', D['learning_rate'], "Adam's learning rate at the first "
                   'step.')
flags.DEFINE_float('decay_rate', D['decay_rate'], 'The learning rate at the last step, as a '
                   'fraction of --learning_rate (exponential decay in between).')
flags.DEFINE_float('clip_norm', 5.0, 'The global norm the gradients are clipped to.')
flags.DEFINE_integer('seed', 1, 'Seeds Python, NumPy and TensorFlow.')
flags.DEFINE_integer('summary_frequency', 200, 'Steps between two log lines.')
flags.DEFINE_integer('max_words', D['max_words'], 'The most words in a training sentence '
                     '(and in the held-out test table).')
flags.DEFINE_list('curriculum', [str(n) for n in D['curriculum']], 'Most words per sentence '
                  'in earlier stages of training, growing; the last stage is --max_words. '
                  'Steps are split evenly. Empty: no curriculum.')
flags.DEFINE_enum('batching', D['batching'], mirror.BATCHINGS, 'length: each batch holds '
                  'sentences of similar length, of any word count (padded at most 8 '
                  'characters more than its sentences); words: each batch holds sentences '
                  'of one word count n, padded to 8 n + 6 (the earlier default).')
flags.DEFINE_bool('fast', D['fast'], 'Train through Mirror.fast_loss (the same function in '
                  'fewer, larger ops); --nofast: through Mirror.loss, its plain twin.')
flags.DEFINE_bool('reverse_source', True, 'The encoder reads every sentence backwards '
                  '(Sutskever et al. 2014).')
flags.DEFINE_bool('attention', True, 'Luong et al. (2015) global attention over the '
                  "encoder's outputs, with input feeding.")
flags.DEFINE_integer('beam_width', 4, 'Beam width for the test table and --mirror; 1 is '
                     'greedy decoding.')
flags.DEFINE_integer('test_sentences', 1000, 'Held-out test sentences per length for the '
                     'table printed after training (beam search over 8,000 sentences takes '
                     'about a minute); a run of fewer than 1,000 steps uses 100 unless this '
                     'is given; 0: no table.')
flags.DEFINE_integer('valid_sentences', 50, 'Validation sentences per length, greedy.')
flags.DEFINE_string('checkpoint_dir', 'runs/problem3', 'Where the trained model is saved '
                    '(and read by --mirror).')
flags.DEFINE_integer('checkpoint_every', 1000, 'Steps between checkpoints (written at the '
                     'first log line at or past each multiple, and at the end).')
flags.DEFINE_bool('resume', False, 'Continue the run in --checkpoint_dir from its newest '
                  'checkpoint: it ends as an uninterrupted run ends.')
flags.DEFINE_bool('overwrite', False, 'Delete the checkpoints in --checkpoint_dir (and the '
                  'event files in --logdir) and train a new model there.')
flags.DEFINE_string('logdir', None, 'Write TensorBoard summaries here: the log\'s figures, '
                    'the examples and the flags (see assignment6.summaries).')
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
flags.register_validator('test_sentences', lambda v: v >= 0, 'must be at least 0')
flags.register_validator('checkpoint_every', lambda v: v >= 1, 'must be at least 1')
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


# The settings a resumed run must share with its checkpoint (else it is another model or
# text), and those it may change (it is then no longer the same run: a note says so).
MODEL_FLAGS = ('num_nodes', 'attention', 'reverse_source', 'max_words')
TRAINING_FLAGS = ('num_steps', 'batch_size', 'learning_rate', 'decay_rate', 'clip_norm',
                  'seed', 'summary_frequency', 'curriculum', 'valid_sentences', 'batching',
                  'fast')


def run_settings(text):
  """The settings a checkpoint records, one `name=value` line each (the corpus by its
  length and CRC-32)."""
  lines = ['%s=%s' % (name, flag_value(FLAGS[name].value))
           for name in MODEL_FLAGS + TRAINING_FLAGS]
  lines.append('corpus=%d characters, CRC-32 %08x' % (len(text),
                                                      zlib.crc32(text.encode('utf-8'))))
  return '\n'.join(lines)


def flag_value(value):
  """A flag's value as it is typed: 3,5 for a list, true or false, %g for a float."""
  if isinstance(value, list):
    return ','.join(value)
  if isinstance(value, bool):
    return 'true' if value else 'false'
  return '%g' % value if isinstance(value, float) else str(value)


def compare_settings(saved, current):
  """Exit with one line if the checkpoint is of another model or text; else the notes
  for training settings that differ."""
  saved = dict(line.split('=', 1) for line in saved.split('\n') if '=' in line)
  current = dict(line.split('=', 1) for line in current.split('\n'))
  notes = []
  for name in MODEL_FLAGS + ('corpus',) + TRAINING_FLAGS:
    if saved.get(name) == current[name]:
      continue
    if name in TRAINING_FLAGS:
      notes.append('--%s=%s differs from the checkpoint\'s %s: the resumed run uses %s'
                   % (name, current[name], saved.get(name), current[name]))
    elif name == 'corpus':
      sys.exit('problem3: --checkpoint_dir=%s: the checkpoint was trained on another text '
               '(%s; this --data: %s); give the same --data or another --checkpoint_dir'
               % (FLAGS.checkpoint_dir, saved.get(name), current[name]))
    else:
      sys.exit('problem3: --checkpoint_dir=%s: the checkpoint is of a model with --%s=%s, '
               'this run has --%s=%s; give --%s=%s or another --checkpoint_dir'
               % (FLAGS.checkpoint_dir, name, saved.get(name), name, current[name], name,
                  saved.get(name)))
  return notes


def check_directories():
  """Before anything is read: a trained model is kept unless --resume or --overwrite."""
  directory = FLAGS.checkpoint_dir
  if os.path.exists(directory) and not os.path.isdir(directory):
    sys.exit('problem3: --checkpoint_dir=%s: is a file; give a directory' % directory)
  if FLAGS.resume:
    if not checkpoints.candidates(directory):
      sys.exit('problem3: --checkpoint_dir=%s: no checkpoint to resume; train without '
               '--resume' % directory)
  elif checkpoints.holds_checkpoints(directory):
    if not FLAGS.overwrite:
      sys.exit('problem3: --checkpoint_dir=%s: holds a trained model; add --resume to '
               'continue its training, --overwrite to train a new one (deleting it), or '
               'give another --checkpoint_dir' % directory)
  if FLAGS.logdir:
    try:
      summaries.check_logdir(FLAGS.logdir, FLAGS.resume, FLAGS.overwrite)
    except summaries.LogdirError as error:
      sys.exit('problem3: %s' % error)
  if not FLAGS.resume and FLAGS.overwrite:
    checkpoints.remove_checkpoints(directory)
    if FLAGS.logdir:
      summaries.remove_events(FLAGS.logdir)


def newest_complete_checkpoint(directory):
  """The newest checkpoint that reads whole (a damaged or missing one is noted, skipped)."""
  for path in checkpoints.candidates(directory):
    problem = checkpoints.damage(path)
    if problem is None:
      return path
    print('problem3: note: %s is damaged or incomplete (%s); trying the one before it'
          % (path, problem), file=sys.stderr)
  sys.exit('problem3: --checkpoint_dir=%s: no complete checkpoint; train a new model with '
           '--overwrite or give another --checkpoint_dir' % directory)


def test_count(num_steps):
  """--test_sentences, or 100 for a run of fewer than 1,000 steps that does not give it."""
  if FLAGS['test_sentences'].present or num_steps >= 1000:
    return FLAGS.test_sentences
  return 100


def train():
  """Train, log as the course does, save checkpoints, print the held-out table."""
  check_directories()
  random.seed(FLAGS.seed)
  np.random.seed(FLAGS.seed)
  tf.random.set_seed(FLAGS.seed)
  text = data.load_corpus(FLAGS.data, FLAGS.strict,
                          (lambda line='': None) if FLAGS.resume else print)
  train_words, valid_words, test_words = mirror.split_words(text)
  valid = mirror.test_sentences(valid_words, FLAGS.max_words, FLAGS.valid_sentences,
                                FLAGS.seed)
  valid = [s for n in sorted(valid) for s in valid[n]]
  model = mirror.Mirror(FLAGS.num_nodes, FLAGS.attention, FLAGS.reverse_source, FLAGS.seed)
  trainer = mirror.Trainer(model, FLAGS.learning_rate, FLAGS.clip_norm, FLAGS.fast)
  stages = [int(s) for s in FLAGS.curriculum] + [FLAGS.max_words]
  rng = np.random.default_rng(FLAGS.seed)
  progress = mirror.Progress()
  saver = mirror.checkpoint(model, trainer, FLAGS.max_words, progress)
  manager = tf.train.CheckpointManager(saver, FLAGS.checkpoint_dir, max_to_keep=3,
                                       checkpoint_name=checkpoints.PREFIX)
  settings = run_settings(text)
  if FLAGS.resume:
    path = newest_complete_checkpoint(FLAGS.checkpoint_dir)
    try:
      saved = tf.train.load_checkpoint(path).get_tensor(
          'progress/settings/.ATTRIBUTES/VARIABLE_VALUE').decode('utf-8')
    except (KeyError, ValueError, tf.errors.OpError):
      sys.exit('problem3: --checkpoint_dir=%s: %s holds no training to resume (written '
               'by another version?); train a new model with --overwrite or give another '
               '--checkpoint_dir' % (FLAGS.checkpoint_dir, path))
    notes = compare_settings(saved, settings)  # another model or text: one line, exit
    try:
      with checkpoints.quiet_logging():
        saver.restore(path).assert_consumed()
    except (AssertionError, ValueError, tf.errors.OpError) as error:
      sys.exit('problem3: --checkpoint_dir=%s: %s is not a checkpoint of this script\'s '
               'training (%s); give another --checkpoint_dir'
               % (FLAGS.checkpoint_dir, path, checkpoints.first_line(error)))
    progress.apply(rng)
    for line in notes:
      print('problem3: note: %s' % line, file=sys.stderr)
    start = int(trainer.adam.step.numpy())
    print('problem3: note: resuming from %s at step %d (--num_steps=%d)'
          % (path, start, FLAGS.num_steps), file=sys.stderr, flush=True)
  else:
    start = 0
    print('Words: %d train, %d validation, %d test (consecutive parts of the text).'
          % (len(train_words), len(valid_words), len(test_words)))
  writer = summaries.open_summaries(FLAGS.logdir, FLAGS, start,
                                    start - 1 if FLAGS.resume else None)
  timer = mirror.Timer()
  mean_loss = 0.0  # zero at every checkpoint: they are written after a log line
  saved = start - 1
  try:
    for step, loss, learning_rate, max_words in mirror.training_steps(
        trainer, train_words, rng, FLAGS.num_steps, FLAGS.batch_size, stages,
        FLAGS.learning_rate, FLAGS.decay_rate, FLAGS.batching, FLAGS.reverse_source,
        start):
      mean_loss += loss
      if not np.isfinite(mean_loss):
        sys.exit('problem3: the loss became %s at step %d; lower --learning_rate'
                 % (mean_loss, step))
      if step % FLAGS.summary_frequency == 0 or step == FLAGS.num_steps - 1:
        if step > 0:
          mean_loss /= FLAGS.summary_frequency if step % FLAGS.summary_frequency == 0 else (
              step % FLAGS.summary_frequency)
        print('Average loss at step %d: %f learning rate: %f' % (step, mean_loss,
                                                                  learning_rate))
        accuracy = mirror.exact_accuracy(model, valid)
        print('Validation sentence accuracy: %.1f%% (greedy, 1-%d words; training on 1-%d '
              'words, %.0f s)' % (100 * accuracy, FLAGS.max_words, max_words, timer()))
        examples = []
        for source, output in zip([mirror.EXAMPLE, valid[-1]],
                                  mirror.decode(model, [mirror.EXAMPLE, valid[-1]])):
          examples.append('  %s -> %s' % (source, output))
          print(examples[-1])
        sys.stdout.flush()
        if writer:
          writer.scalars(step, {'loss/average': mean_loss,
                                'accuracy/validation': float(accuracy),
                                'learning_rate': learning_rate})
          writer.text('examples', step, '\n\n'.join('    ' + e for e in examples))
        mean_loss = 0.0
        if step == FLAGS.num_steps - 1 or step // FLAGS.checkpoint_every > max(
            saved, 0) // FLAGS.checkpoint_every:
          progress.capture(rng, settings)
          with checkpoints.quiet_logging():  # TensorFlow's saver logs each save at INFO
            path = manager.save(checkpoint_number=step)
          saved = step
  except KeyboardInterrupt:
    sys.exit('problem3: interrupted; %s' % (
        'the last checkpoint is %s: --resume continues from it' % manager.latest_checkpoint
        if manager.latest_checkpoint else 'no checkpoint was written yet'))
  training_seconds = timer()
  print('Training time: %.0f s (%.1f minutes)' % (training_seconds, training_seconds / 60))
  print('Saved %s' % manager.latest_checkpoint)
  count = test_count(FLAGS.num_steps)
  if count:
    test_table(model, test_words, count, writer)
  if writer:
    writer.close()


def test_table(model, test_words, count, writer=None):
  """The held-out table: `count` sentences of each length, greedy and beam search."""
  test = mirror.test_sentences(test_words, FLAGS.max_words, count, FLAGS.seed + 1)
  timer = mirror.Timer()
  greedy = mirror.accuracy_by_length(model, test, 1)
  beam = None
  if FLAGS.beam_width > 1:
    beam = mirror.accuracy_by_length(model, test, FLAGS.beam_width)
  print('Held-out test sentences (%d per length%s), accuracy in %% (evaluated in %.0f s):'
        % (count, '' if count == FLAGS.test_sentences else
           ' for a run under 1,000 steps; --test_sentences sets it', timer()))
  table = mirror.format_table(greedy, beam, FLAGS.beam_width)
  print(table)
  for name, results in (('greedy', greedy), ('beam', beam)):
    if results:
      short = [n for n in results if n <= 5]
      print('Exact sentences of 1-%d words, %s: %.2f%%' % (
          max(short), name, 100 * np.mean([results[n][0] for n in short])))
  if writer:
    writer.text('test_table', FLAGS.num_steps - 1, table)


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
