"""One language-model run from the shared flags: what `lstm`, `problem1` and `problem2` do.

corpus -> the notebook's data checks -> batches -> cell and model -> `training.train`
(the course's log) -> bits per character -> `--eval_data` -> the comparison with the course.
Every user mistake ends as one line on stderr and exit status 1 (`fail`).
"""
import functools
import os
import random
import sys
import tempfile
import types
import zipfile

import numpy as np
import tensorflow as tf

from assignment6 import (checkpoints, cells, course, data, models, precision, summaries,
                         training)


class Log(object):
  """Prints each line and keeps it in `lines`; with a file, writes each line there too.

  `Log(path)` writes to `path` from the start. A script's run opens its file with `open`
  once its inputs are checked, so a mistake never leaves a half-written or emptied file.
  """

  def __init__(self, path=None):
    self.path = None
    self.lines = []
    self._file = None
    if path:
      self.open(path, overwrite=True)

  def open(self, path, kept=None, overwrite=False):
    """Write the log to `path` from now on (nothing if `path` is None).

    kept None: a new run; the file is created (replaced only with `overwrite`) and gets
    every line logged so far. kept, the text of a resumed run's log at its checkpoint: the
    lines become those; a file that begins with `kept` is cut to it and appended to (the
    lines a killed run printed after its checkpoint go), a missing one is written with it,
    any other is refused unless `overwrite`.
    """
    if kept is not None:
      self.lines = kept.split('\n')[:-1]
    if not path:
      return
    self.path = path
    try:
      if kept is None:
        self._file = open(path, 'w', encoding='utf-8', newline='\n')
        self._file.write(self.text())
      else:
        kept_bytes = kept.encode('utf-8')
        head = None
        if os.path.exists(path):
          with open(path, 'rb') as f:
            head = f.read(len(kept_bytes))
          if head != kept_bytes and os.path.getsize(path) and not overwrite:
            fail('--log_file=%s: does not begin with the log of the run being resumed; '
                 'give that run\'s log file, a new path, or --overwrite to replace it'
                 % path)
        if head == kept_bytes:
          with open(path, 'r+b') as f:  # drop what a killed run printed after it
            f.truncate(len(kept_bytes))
          self._file = open(path, 'a', encoding='utf-8', newline='\n')
        else:
          self._file = open(path, 'w', encoding='utf-8', newline='\n')
          self._file.write(kept)
      self._file.flush()
    except OSError as error:
      fail('--log_file=%s: cannot be written (%s); give a writable path'
           % (path, error.strerror))

  def __call__(self, line=''):
    print(line, flush=True)
    self.lines.append(line)
    if self._file:
      self._file.write(line + '\n')
      self._file.flush()

  def text(self):
    """The log so far as its file holds it: every line and its newline."""
    return ''.join(line + '\n' for line in self.lines)

  def close(self):
    if self._file:
      self._file.close()
      self._file = None


def reject_arguments(argv):
  """A script takes flags only: a stray word (a forgotten `--`) is one line and exit 1."""
  if len(argv) > 1:
    fail('unexpected arguments %s; every setting is a --flag (see --help)' % argv[1:])


def fail(message, status=1):
  """A user's mistake: one line on stderr naming the file or flag, exit status 1."""
  print('%s: error: %s' % (program(), message), file=sys.stderr, flush=True)
  sys.exit(status)


def note(message):
  """A remark that is not part of the course's log: one line on stderr."""
  print('%s: note: %s' % (program(), message), file=sys.stderr, flush=True)


def program():
  return os.path.basename(sys.argv[0]) or 'assignment6'


def load_trained_model(directory):
  """The trained model of a run's --checkpoint_dir for `sample` and `export`: (model,
  path of its checkpoint), its notes printed; a missing flag or a bad checkpoint is one line."""
  if not directory:
    fail('--checkpoint_dir: give the directory of a trained run (python -m '
         'assignment6.lstm --checkpoint_dir=DIR trains one)')
  try:
    model, _, path, notes = checkpoints.load_model(directory)
  except checkpoints.CheckpointError as error:
    fail(str(error))
  for line in notes:
    note(line)
  return model, path


def seed_everything(seed):
  """One --seed for Python's and NumPy's generators (samples) and TensorFlow's."""
  random.seed(seed)
  np.random.seed(seed)
  tf.random.set_seed(seed)


def print_data_checks(text, valid_size, batch_size, num_unrollings, log, vocabulary=None):
  """The notebook's data cells: sizes, heads, char2id/id2char, and the printed batches.

  Returns (train_batches, valid_batches) advanced as the notebook's printing leaves them.
  vocabulary: another than text8's (`--vocabulary=auto`) prints its characters instead of
  char2id's and the batches, and advances the generators as that printing does.
  """
  log('Data size %d' % len(text))
  valid_text = text[:valid_size]
  train_text = text[valid_size:]
  log('%d %s' % (len(train_text), train_text[:64]))
  log('%d %s' % (len(valid_text), valid_text[:64]))
  if vocabulary is not None and not vocabulary.is_text8:
    log('Vocabulary: %d characters %r' % (vocabulary.size, vocabulary.characters))
    train_batches = data.BatchGenerator(vocabulary.ids(train_text)[0], batch_size,
                                        num_unrollings)
    valid_batches = data.BatchGenerator(vocabulary.ids(valid_text)[0], 1, 1)
    for _ in range(2):
      train_batches.next_ids()
      valid_batches.next_ids()
    return train_batches, valid_batches
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


def token_count(characters, variant='character', bigram_stride=2):
  """Tokens a text of `characters` characters gives: characters, or bigrams cut with the
  stride (`data.bigram_ids`)."""
  if variant != 'bigram':
    return characters
  return len(range(0, max(characters - 1, 0), bigram_stride))


def check_sizes(text, settings, variant='character', bigram_stride=2):
  """Refuse texts too short for the split and the batches, naming the flags."""
  if len(text) <= settings.valid_size:
    fail('--valid_size=%d: the text has only %d characters; give a longer text or a '
         'smaller --valid_size' % (settings.valid_size, len(text)))
  if token_count(settings.valid_size, variant, bigram_stride) < 1:
    fail('--valid_size=%d: the bigram model needs at least 2 characters to validate on; '
         'give a larger --valid_size' % settings.valid_size)
  train_size = token_count(len(text) - settings.valid_size, variant, bigram_stride)
  needed = settings.batch_size * (settings.num_unrollings + 1)
  if train_size < needed:
    fail('--batch_size=%d, --num_unrollings=%d: the training text (%d %s) needs '
         'at least %d; give a longer text or smaller sizes'
         % (settings.batch_size, settings.num_unrollings, train_size,
            'bigrams' if variant == 'bigram' else 'characters', needed))


def check_paths(settings, options):
  """The files and directories the flags name, checked before anything is read or written.

  Refuses: --data or --eval_data that is a directory or missing (--eval_data), a --log_file
  or --checkpoint_dir that cannot be written, a --log_file that exists (unless --overwrite
  or --resume), a --log_file that is the --data, --eval_data or --checkpoint_dir, and
  --resume without --checkpoint_dir.
  """
  for flag, path in (('--data', settings.data), ('--eval_data', settings.eval_data)):
    if path and os.path.isdir(path):
      fail('%s=%s: is a directory; give the text8.zip or text file in it (e.g. %s=%s)'
           % (flag, path, flag, os.path.join(path, 'text8.zip')))
  if settings.eval_data and not os.path.exists(settings.eval_data):
    fail('--eval_data=%s: no such file; give a text8-format file (a-z and spaces) to score'
         % settings.eval_data)
  if options.resume and not options.checkpoint_dir:
    fail('--resume needs --checkpoint_dir, the directory of the run to continue')
  log_file, checkpoint_dir = settings.log_file, options.checkpoint_dir
  if log_file:
    for flag, other in (('--data', settings.data), ('--eval_data', settings.eval_data),
                        ('--checkpoint_dir', checkpoint_dir)):
      if other and same_path(log_file, other):
        fail('--log_file=%s: is also %s; give the log its own file' % (log_file, flag))
    if os.path.isdir(log_file):
      fail('--log_file=%s: is a directory; give a file path (e.g. %s)'
           % (log_file, os.path.join(log_file, 'run.log')))
    folder = os.path.dirname(os.path.abspath(log_file))
    problem = ('no directory %s' % folder if not os.path.isdir(folder)
               else unwritable(folder, log_file))
    if problem:
      fail('--log_file=%s: cannot be written (%s); give a writable path'
           % (log_file, problem))
    if (os.path.exists(log_file) and os.path.getsize(log_file) and not options.resume
        and not options.overwrite):
      fail('--log_file=%s: exists; give a new path, or --overwrite to replace it'
           % log_file)
  if checkpoint_dir:
    if os.path.exists(checkpoint_dir) and not os.path.isdir(checkpoint_dir):
      fail('--checkpoint_dir=%s: is a file; give a directory (it is created if missing)'
           % checkpoint_dir)
    problem = unwritable(os.path.abspath(checkpoint_dir))
    if problem:
      fail('--checkpoint_dir=%s: cannot be written (%s); give a writable directory'
           % (checkpoint_dir, problem))
  logdir = getattr(options, 'logdir', None)
  if logdir:  # TensorBoard's event files (assignment6.summaries)
    try:
      summaries.check_logdir(logdir, options.resume, options.overwrite)
    except summaries.LogdirError as error:
      fail(str(error))
    problem = unwritable(os.path.abspath(logdir))
    if problem:
      fail('--logdir=%s: cannot be written (%s); give a writable directory'
           % (logdir, problem))


def same_path(a, b):
  return os.path.realpath(a) == os.path.realpath(b)


def unwritable(directory, file=None):
  """Why a file cannot be made in `directory` (or its nearest existing parent), or None.

  Tries it (a nameless temporary file) rather than trusting permission bits, which say
  yes to root. file: an existing file that would be appended to or replaced.
  """
  while not os.path.exists(directory):
    parent = os.path.dirname(directory)
    if parent == directory:
      break
    directory = parent
  if not os.path.isdir(directory):
    return '%s is not a directory' % directory
  try:
    tempfile.TemporaryFile(dir=directory).close()
    if file and os.path.exists(file):
      open(file, 'ab').close()
  except OSError as error:
    return error.strerror or str(error)
  return None


def build_model(settings, vocabulary_size=data.vocabulary_size, stride=1, vocabulary=None):
  """The cell and model the flags describe (vocabulary: its `data.Vocabulary`)."""
  try:
    input_size = settings.embedding_size or vocabulary_size
    cell = cells.make_cell(settings.cell, input_size, settings.num_nodes,
                           settings.peepholes, settings.num_proj, settings.num_nonrec_proj,
                           seed=settings.seed,
                           cell_clip=getattr(settings, 'cell_clip', 0) or None,
                           proj_clip=getattr(settings, 'proj_clip', 0) or None,
                           proj_scale=getattr(settings, 'proj_scale', 1.0),
                           precision=getattr(settings, 'precision', precision.FLOAT32))
  except ValueError as error:
    fail(str(error))
  emulated = precision.emulation_note(getattr(settings, 'precision', precision.FLOAT32))
  if emulated:
    note(emulated)
  return models.LanguageModel(cell, settings.batch_size, vocabulary_size,
                              settings.embedding_size, settings.keep_prob,
                              seed=settings.seed, stride=stride, vocabulary=vocabulary)


def read_initial_weights(path):
  """--init_from's file: name -> array, or one line naming the file."""
  if os.path.isdir(path) or not os.path.exists(path):
    fail('--init_from=%s: %s; give an .npz of weights, e.g. written by python -m '
         'assignment6.course_tf1 --write_init=%s'
         % (path, 'is a directory' if os.path.isdir(path) else 'no such file', path))
  if not zipfile.is_zipfile(path):
    fail('--init_from=%s: is not an .npz file; give the weights as written by numpy.savez, '
         'e.g. python -m assignment6.course_tf1 --write_init=W.npz' % path)
  try:
    with np.load(path, allow_pickle=False) as archive:
      return {name: archive[name] for name in archive.files}
  except Exception as error:  # OSError, a zip that is not an .npz, a bare .npy array
    fail('--init_from=%s: cannot be read as an .npz of weights (%s); give a file written '
         'by numpy.savez' % (path, checkpoints.first_line(error)))


def assign_initial_weights(model, path, weights):
  """--init_from: the model's initial values, checked for names and shapes."""
  try:
    model.assign_initial_weights(weights)
  except ValueError as error:
    fail('--init_from=%s: %s' % (path, error))


def parameter_count(model):
  return int(sum(np.prod(v.shape) for v in model.trainable_variables))


def run_options(settings):
  """The reliability settings, with defaults for a settings object made before them."""
  return types.SimpleNamespace(
      checkpoint_dir=getattr(settings, 'checkpoint_dir', None),
      checkpoint_every=getattr(settings, 'checkpoint_every', 500),
      resume=getattr(settings, 'resume', False),
      overwrite=getattr(settings, 'overwrite', False),
      logdir=getattr(settings, 'logdir', None))


def run_language_model(settings, title, variant='character', bigram_stride=2):
  """The course's training run with the settings (absl FLAGS or any object with them).

  variant: 'character' (the course's tokens) or 'bigram' (Problem 2b: 729 pairs of
  characters cut with `bigram_stride`, through an embedding).
  With --checkpoint_dir the run is saved every --checkpoint_every steps (at the end of a
  log line's chunk) and at its end; --resume continues it from its newest complete
  checkpoint and prints the log lines an uninterrupted run prints after that point.
  """
  try:
    return _run_language_model(settings, title, variant, bigram_stride)
  except KeyboardInterrupt:  # while reading or building; training has its own line
    fail('interrupted before training began; nothing was written', status=130)


def _run_language_model(settings, title, variant, bigram_stride):
  options = run_options(settings)
  if variant == 'bigram' and not settings.embedding_size:
    fail('--variant=bigram: 729 bigrams go in through an embedding; give --embedding_size')
  check_paths(settings, options)
  initial_weights = None  # a resumed run's weights are its checkpoint's
  if getattr(settings, 'init_from', None) and not options.resume:
    initial_weights = read_initial_weights(settings.init_from)
  log = Log()
  silent = lambda line='': None  # a resumed run's opening lines are in its log already
  try:
    auto = getattr(settings, 'vocabulary', 'text8') == 'auto'
    text = data.load_corpus(settings.data, settings.strict,
                            silent if options.resume else log,
                            'auto' if auto else 'text8')
    vocabulary = data.Vocabulary.from_text(text) if auto else data.TEXT8
    if auto and variant == 'bigram':
      vocabulary.check_bigrams()
    eval_text = None
    if settings.eval_data:
      eval_text = data.read_data(settings.eval_data)
      if not auto:
        data.check_alphabet(settings.eval_data, eval_text)
      if token_count(len(eval_text), variant, bigram_stride) < 1:
        fail('--eval_data=%s: %d character(s) are too few to score; give a longer text'
             % (settings.eval_data, len(eval_text)))
  except data.DataError as error:
    fail(str(error))
  check_sizes(text, settings, variant, bigram_stride)
  seed_everything(settings.seed)
  valid_text = text[:settings.valid_size]
  try:
    if not options.resume:  # a resumed run's cursors come from its checkpoint
      log(title)
      train_batches, _ = print_data_checks(text, settings.valid_size, settings.batch_size,
                                           settings.num_unrollings, log, vocabulary)
    train_ids = vocabulary.ids(text[settings.valid_size:])[0]
    if variant == 'bigram':
      train_batches = data.BigramBatchGenerator(train_ids, settings.batch_size,
                                                settings.num_unrollings, bigram_stride,
                                                vocabulary.size)
      model = build_model(settings, vocabulary.size ** 2, bigram_stride, vocabulary)
    else:
      if options.resume:
        train_batches = data.BatchGenerator(train_ids, settings.batch_size,
                                            settings.num_unrollings)
      model = build_model(settings, vocabulary.size, vocabulary=vocabulary)
    valid_tokens = training.tokens_of(model, valid_text)
    valid_batches = training.validation_batches(valid_tokens)
    if initial_weights is not None:
      assign_initial_weights(model, settings.init_from, initial_weights)
    trainer = training.Trainer(model, settings.learning_rate, settings.decay_steps,
                               settings.decay_rate, settings.clip_norm, seed=settings.seed,
                               tf1_ref_variables=getattr(settings, 'tf1_ref_variables',
                                                         False))
  except data.DataError as error:
    fail(str(error))
  except (tf.errors.ResourceExhaustedError, MemoryError):
    fail('out of memory for this model; give a smaller --num_nodes, --embedding_size or '
         '--batch_size')
  if options.logdir and options.overwrite and not options.resume:
    summaries.remove_events(options.logdir)  # a new run's curves (checked: check_paths)
  checkpointer = open_checkpoints(settings, options, variant, bigram_stride, text, model,
                                  trainer, train_batches, valid_batches)
  mean_loss, kept = 0.0, None
  if options.resume:
    try:
      path, mean_loss, kept, notes = checkpointer.restore()
    except checkpoints.CheckpointError as error:
      fail(str(error))
  log.open(settings.log_file, kept, options.overwrite)
  if options.resume:
    for line in notes:
      note(line)
    note('resuming from %s at step %d (--num_steps=%d)'
         % (path, int(trainer.global_step.numpy()), settings.num_steps))
  else:
    log('Parameters: %d (cell %s, %d nodes)' % (parameter_count(model), settings.cell,
                                                settings.num_nodes))
    if variant == 'bigram':  # the course's per-token figures are per pair: compare says so
      log('Characters per token: %d' % bigram_stride)
    log('Initialized')
  writer = summaries.open_summaries(
      options.logdir, settings, int(trainer.global_step.numpy()),
      checkpointer.last_step if options.resume else None)
  try:
    train_with_checkpoints(trainer, train_batches, valid_batches, settings,
                           len(valid_tokens), log, mean_loss, checkpointer,
                           record=functools.partial(record, writer) if writer else None)
    _, perplexity, bits, characters = training.evaluate_text(model, valid_text,
                                                             settings.fast)
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
  except KeyboardInterrupt:
    fail('interrupted after step %d; %s' % (int(trainer.global_step.numpy()) - 1,
                                            kept_checkpoint(checkpointer)), status=130)
  finally:
    log.close()
    if writer:
      writer.close()
  return model


def record(writer, step, figures):
  """One log line's figures as TensorBoard summaries (`summaries.Summaries`)."""
  writer.scalars(step, {
      'loss/average': figures['average_loss'],
      'perplexity/minibatch': figures['minibatch_perplexity'],
      'perplexity/validation': figures['validation_perplexity'],
      'bits_per_character/validation': figures['validation_bits_per_character'],
      'learning_rate': figures['learning_rate']})
  if figures['samples']:
    writer.text('samples', step, '\n\n'.join('    ' + s for s in figures['samples']))


def open_checkpoints(settings, options, variant, bigram_stride, text, model, trainer,
                     train_batches, valid_batches):
  """The run's `checkpoints.Checkpointer`, or None without --checkpoint_dir.

  A directory that holds checkpoints is refused unless the run resumes them (--resume) or
  replaces them (--overwrite: they are deleted now, before the first new one).
  """
  directory = options.checkpoint_dir
  if not directory:
    return None
  if not options.resume and checkpoints.holds_checkpoints(directory):
    if not options.overwrite:
      newest = checkpoints.candidates(directory)
      fail('--checkpoint_dir=%s: holds the checkpoints of a run%s; add --resume to '
           'continue it, --overwrite to start again (deleting them), or give another '
           'directory'
           % (directory, ' (newest %s)' % os.path.basename(newest[0]) if newest else ''))
    checkpoints.remove_checkpoints(directory)
  if not options.resume:  # a resumed run's directory exists, or there is nothing to resume
    try:
      os.makedirs(directory, exist_ok=True)
    except OSError as error:
      fail('--checkpoint_dir=%s: cannot be made (%s); give a writable directory'
           % (directory, error.strerror))
  return checkpoints.Checkpointer(
      directory, model, trainer, train_batches, valid_batches,
      checkpoints.run_settings(settings, variant, bigram_stride, text, model.vocabulary),
      options.checkpoint_every)


def kept_checkpoint(checkpointer):
  """Which checkpoint a stopped run keeps, for its one line."""
  if checkpointer is None:
    return 'nothing was saved (--checkpoint_dir keeps checkpoints)'
  return checkpointer.kept() + ': --resume continues from it'


def divergence_watch(log, vocabulary_size):
  """`log`, and a note on stderr (once) when a validation perplexity is above the
  vocabulary size: worse than a uniform guess over the tokens, a run that diverged."""
  noted = []

  def watched(line=''):
    log(line)
    if line.startswith('Validation set perplexity: ') and not noted:
      perplexity = float(line.split(': ')[1])
      if not perplexity <= vocabulary_size:  # nan too
        noted.append(perplexity)
        note('validation perplexity %s is above %d, the vocabulary size (worse than a '
             'uniform guess): the run diverged; lower --learning_rate or --clip_norm'
             % (line.split(': ')[1], vocabulary_size))

  watched.text = log.text
  return watched


def train_with_checkpoints(trainer, train_batches, valid_batches, settings, valid_size, log,
                           mean_loss=0.0, checkpointer=None, record=None):
  """`training.train` with checkpoints, and one line for a run that cannot go on.

  A checkpoint is written after each chunk of steps that crosses a multiple of
  --checkpoint_every, and after the last; never after the loss or a weight went non-finite.
  """
  chunk = {'first': int(trainer.global_step.numpy())}
  log = divergence_watch(log, trainer.model.vocabulary_size)

  def after_chunk(step, chunk_mean_loss):
    if checkpointer is not None and (step == settings.num_steps - 1 or
                                     checkpointer.due(chunk['first'], step)):
      checkpointer.save(step, chunk_mean_loss, log.text())
    chunk['first'] = step + 1

  try:
    training.train(trainer, train_batches, valid_batches, settings.num_steps,
                   settings.summary_frequency, valid_size, log, settings.fast,
                   mean_loss=mean_loss, after_chunk=after_chunk, record=record)
  except FloatingPointError as error:
    fail('%s; %s; lower --learning_rate or --clip_norm'
         % (error, kept_checkpoint(checkpointer)))
  except checkpoints.CheckpointError as error:
    fail(str(error))
  except (tf.errors.ResourceExhaustedError, MemoryError):
    fail('out of memory at step %d; %s; give a smaller --num_nodes, --embedding_size or '
         '--batch_size' % (int(trainer.global_step.numpy()),
                           kept_checkpoint(checkpointer)))
