"""One language-model run from the shared flags: what `lstm`, `problem1` and `problem2` do.

corpus -> the notebook's data checks -> batches -> cell and model -> `training.train`
(the course's log) -> bits per character -> `--eval_data` -> the comparison with the course.
Every user mistake ends as one line on stderr and exit status 1 (`fail`).
"""
import os
import random
import sys

import numpy as np
import tensorflow as tf

from assignment6 import cells, course, data, models, training


class Log(object):
  """Prints each line and, with a path, appends it to that file as it goes."""

  def __init__(self, path=None):
    self.path = path
    self.lines = []
    self._file = None
    if path:
      try:
        self._file = open(path, 'w', encoding='utf-8')
      except OSError as error:
        fail('--log_file=%s: cannot be written (%s); give a writable path'
             % (path, error.strerror))

  def __call__(self, line=''):
    print(line, flush=True)
    self.lines.append(line)
    if self._file:
      self._file.write(line + '\n')
      self._file.flush()

  def close(self):
    if self._file:
      self._file.close()


def fail(message):
  """A user's mistake: one line on stderr naming the file or flag, exit status 1."""
  print('%s: error: %s' % (os.path.basename(sys.argv[0]) or 'assignment6', message),
        file=sys.stderr, flush=True)
  sys.exit(1)


def seed_everything(seed):
  """One --seed for Python's and NumPy's generators (samples) and TensorFlow's."""
  random.seed(seed)
  np.random.seed(seed)
  tf.random.set_seed(seed)


def print_data_checks(text, valid_size, batch_size, num_unrollings, log):
  """The notebook's data cells: sizes, heads, char2id/id2char, and the printed batches.

  Returns (train_batches, valid_batches) advanced as the notebook's printing leaves them.
  """
  log('Data size %d' % len(text))
  valid_text = text[:valid_size]
  train_text = text[valid_size:]
  log('%d %s' % (len(train_text), train_text[:64]))
  log('%d %s' % (len(valid_text), valid_text[:64]))
  log('%d %d %d %d' % (data.char2id('a'), data.char2id('z'), data.char2id(' '),
                       data.char2id('\u00ef')))
  log('%s %s %s' % (data.id2char(1), data.id2char(26), data.id2char(0)))
  train_batches = data.BatchGenerator(train_text, batch_size, num_unrollings)
  log(str(data.batches2string(train_batches.next())))
  log(str(data.batches2string(train_batches.next())))
  valid_batches = data.BatchGenerator(valid_text, 1, 1)
  log(str(data.batches2string(valid_batches.next())))
  log(str(data.batches2string(valid_batches.next())))
  return train_batches, valid_batches


def check_sizes(text, settings):
  """Refuse texts too short for the split and the batches, naming the flags."""
  if len(text) <= settings.valid_size:
    fail('--valid_size=%d: the text has only %d characters; give a longer text or a '
         'smaller --valid_size' % (settings.valid_size, len(text)))
  train_size = len(text) - settings.valid_size
  needed = settings.batch_size * (settings.num_unrollings + 1)
  if train_size < needed:
    fail('--batch_size=%d, --num_unrollings=%d: the training text (%d characters) needs '
         'at least %d; give a longer text or smaller sizes'
         % (settings.batch_size, settings.num_unrollings, train_size, needed))


def build_model(settings, vocabulary_size=data.vocabulary_size, stride=1):
  """The cell and model the flags describe."""
  try:
    input_size = settings.embedding_size or vocabulary_size
    cell = cells.make_cell(settings.cell, input_size, settings.num_nodes,
                           settings.peepholes, settings.num_proj, settings.num_nonrec_proj,
                           seed=settings.seed)
  except ValueError as error:
    fail(str(error))
  return models.LanguageModel(cell, settings.batch_size, vocabulary_size,
                              settings.embedding_size, settings.keep_prob,
                              seed=settings.seed, stride=stride)


def parameter_count(model):
  return int(sum(np.prod(v.shape) for v in model.trainable_variables))


def run_language_model(settings, title, variant='character', bigram_stride=2):
  """The course's training run with the settings (absl FLAGS or any object with them).

  variant: 'character' (the course's tokens) or 'bigram' (Problem 2b: 729 pairs of
  characters cut with `bigram_stride`, through an embedding).
  """
  if variant == 'bigram' and not settings.embedding_size:
    fail('--variant=bigram: 729 bigrams go in through an embedding; give --embedding_size')
  log = Log(settings.log_file)
  try:
    text = data.load_corpus(settings.data, settings.strict, log)
    if settings.eval_data:
      eval_text = data.read_data(settings.eval_data)
  except data.DataError as error:
    fail(str(error))
  check_sizes(text, settings)
  seed_everything(settings.seed)
  log(title)
  train_batches, _ = print_data_checks(text, settings.valid_size, settings.batch_size,
                                       settings.num_unrollings, log)
  valid_text = text[:settings.valid_size]
  if variant == 'bigram':
    train_batches = data.BigramBatchGenerator(text[settings.valid_size:],
                                              settings.batch_size, settings.num_unrollings,
                                              bigram_stride)
    model = build_model(settings, data.bigram_vocabulary_size, bigram_stride)
  else:
    model = build_model(settings)
  valid_tokens = training.tokens_of(model, valid_text)
  valid_batches = training.validation_batches(valid_tokens)
  trainer = training.Trainer(model, settings.learning_rate, settings.decay_steps,
                             settings.decay_rate, settings.clip_norm, seed=settings.seed)
  log('Parameters: %d (cell %s, %d nodes)' % (parameter_count(model), settings.cell,
                                              settings.num_nodes))
  log('Initialized')
  try:
    training.train(trainer, train_batches, valid_batches, settings.num_steps,
                   settings.summary_frequency, len(valid_tokens), log, settings.fast)
  except FloatingPointError as error:
    fail('%s; lower --learning_rate or --clip_norm' % error)
  _, perplexity, bits, characters = training.evaluate_text(model, valid_text, settings.fast)
  log('Validation per character: perplexity %.4f, bits_per_character %.4f (%d characters)'
      % (perplexity, bits, characters))
  if settings.eval_data:
    evaluation = training.evaluate_text(model, eval_text, settings.fast)
    log('Evaluation on %s: perplexity %.4f per character, bits_per_character %.4f '
        '(%d characters)' % (settings.eval_data, evaluation[1], evaluation[2],
                             evaluation[3]))
  if settings.compare:
    log()
    for line in course.compare(course.parse_log('\n'.join(log.lines))):
      log(line)
  log.close()
  return model
