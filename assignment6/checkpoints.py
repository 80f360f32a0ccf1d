"""Checkpoints of a language-model run: everything needed to continue it exactly.

A checkpoint is a `tf.train.Checkpoint` of variables and plain numbers (nothing pickled,
nothing executed on load):
- `model`: the cell, `w`, `b`, `saved_output`, `saved_state` and the sample state;
  `trainer`: its `global_step` (and any variable the trainer owns);
- `run` (`RunState`): the batch generators' cursors and carried rows (training and
  validation), the mean loss summed since the last log line, Python's `random` and NumPy's
  `np.random` states as integer arrays, and the log printed so far (one string);
- `settings`: the settings that define the model and its data (a different one is refused,
  naming the flag) and the training settings (a different one is allowed, and noted).

`tf.train.CheckpointManager` writes `ckpt-STEP.index` and `ckpt-STEP.data-*` (TensorFlow
writes them to a temporary name and renames them), and only then rewrites the `checkpoint`
index file (atomically), so a run killed while saving leaves the index pointing at the
previous checkpoint. `Checkpointer.restore` still reads every tensor of a checkpoint (and
its CRC) before trusting it, newest first, so a damaged or truncated newest checkpoint is
skipped, with a note, for the one before it.

Test hook, for tests only: with the environment variable
`ASSIGNMENT6_CHECKPOINT_PAUSE_AT=STEP` the save of the checkpoint of that step announces
itself on stderr and sleeps (up to ten minutes) after its files are written and before the
index is updated, so that a test can kill the run in the middle of a checkpoint write.
"""
import contextlib
import glob
import os
import random
import re
import sys
import time
import zlib

from absl import logging
from absl.logging import converter
import numpy as np
import tensorflow as tf

from assignment6 import cells, data, models, precision

PREFIX = 'ckpt'
MAX_TO_KEEP = 3  # the newest complete checkpoint, and two to fall back on
PAUSE_VARIABLE = 'ASSIGNMENT6_CHECKPOINT_PAUSE_AT'  # the test hook

# The settings that define the model and its data: a checkpoint written with other values
# is refused. (name, the flag to name in the error.)
MODEL_SETTINGS = (
    ('variant', '--variant'), ('bigram_stride', '--bigram_stride'), ('cell', '--cell'),
    ('num_nodes', '--num_nodes'), ('peepholes', '--peepholes'), ('num_proj', '--num_proj'),
    ('num_nonrec_proj', '--num_nonrec_proj'), ('cell_clip', '--cell_clip'),
    ('proj_clip', '--proj_clip'), ('proj_scale', '--proj_scale'),
    ('embedding_size', '--embedding_size'),
    ('batch_size', '--batch_size'), ('num_unrollings', '--num_unrollings'),
    ('valid_size', '--valid_size'), ('corpus_characters', '--data'),
    ('corpus_crc32', '--data'))
# Training settings: a resumed run may change them (e.g. a lower learning rate after the
# loss diverged); it is then no longer the same run, and a note says so.
TRAINING_SETTINGS = ('learning_rate', 'decay_steps', 'decay_rate', 'clip_norm', 'keep_prob',
                     'seed', 'summary_frequency', 'tf1_ref_variables', 'precision')
# Settings newer than some checkpoints (and settings objects): the value they mean.
# (A checkpoint written before the paper's clips and projection scale had neither: 1.0;
# one written before --precision computed in float32.)
SETTING_DEFAULTS = {'tf1_ref_variables': False, 'cell_clip': 0.0, 'proj_clip': 0.0,
                    'proj_scale': 1.0, 'precision': precision.FLOAT32}
# Their types (the rest are integers): a checkpoint's variables keep theirs.
FLOAT_SETTINGS = ('learning_rate', 'decay_rate', 'clip_norm', 'keep_prob', 'cell_clip',
                  'proj_clip', 'proj_scale')
STRING_SETTINGS = ('variant', 'cell', 'vocabulary', 'precision')
BOOL_SETTINGS = ('peepholes', 'tf1_ref_variables')


class CheckpointError(ValueError):
  """A checkpoint problem, one line naming --checkpoint_dir and what to do."""


def run_settings(settings, variant, bigram_stride, text, vocabulary=None):
  """The settings a checkpoint records: {name: int, float, bool or str}.

  settings: the run's flags (absl FLAGS or any object with them); text: the whole corpus,
  recorded by its length and CRC-32 (a checkpoint continues on the same text only);
  vocabulary: the model's `data.Vocabulary` (text8's by default), recorded as its
  characters (`sample` and `export` read them back).
  """
  names = [name for name, _ in MODEL_SETTINGS[2:-2]] + list(TRAINING_SETTINGS)
  values = {name: getattr(settings, name, SETTING_DEFAULTS[name]) if name in SETTING_DEFAULTS
            else getattr(settings, name) for name in names}  # the flags of the same name
  values['variant'] = variant
  values['bigram_stride'] = bigram_stride if variant == 'bigram' else 0
  values['corpus_characters'] = len(text)
  values['corpus_crc32'] = zlib.crc32(text.encode('utf-8'))
  values['vocabulary'] = (vocabulary or data.TEXT8).characters
  for name, value in values.items():
    if name in FLOAT_SETTINGS:
      values[name] = float(value)
    elif name in STRING_SETTINGS:
      values[name] = str(value)
    elif name in BOOL_SETTINGS:
      values[name] = bool(value)
    else:
      values[name] = int(value)
  return values


def _variable(value):
  """A plain Python value as a tf.Variable of a fixed type."""
  if isinstance(value, (bool, np.bool_)):
    return tf.Variable(bool(value), dtype=tf.bool)
  if isinstance(value, (int, np.integer)):
    return tf.Variable(int(value), dtype=tf.int64)
  if isinstance(value, (float, np.floating)):
    return tf.Variable(float(value), dtype=tf.float64)
  return tf.Variable(str(value), dtype=tf.string)


def _plain(value):
  """A value read back from a checkpoint as Python's bool, int, float or str."""
  if isinstance(value, bytes):
    return value.decode('utf-8')
  return np.asarray(value).item()


# ---------------------------------------------------------------------------- the run

class RunState(tf.Module):
  """What a run holds besides the model: plain numbers in variables.

  batch_size: the training generator's, so its cursors are (batch_size,) int64; the
  validation generator's are (1,). Python's random state is its 624 Mersenne Twister words
  and position (625,) and `gauss_next`; NumPy's is its 624 words, position and cached
  Gaussian.
  """

  def __init__(self, batch_size, name='run'):
    super().__init__(name=name)
    int64 = lambda shape: tf.Variable(tf.zeros(shape, tf.int64))
    self.train_cursor = int64([batch_size])
    self.train_last_ids = int64([batch_size])
    self.valid_cursor = int64([1])
    self.valid_last_ids = int64([1])
    self.mean_loss = tf.Variable(0.0, dtype=tf.float64)  # summed since the last log line
    self.python_random_state = int64([625])
    self.python_random_has_gauss = tf.Variable(False)
    self.python_random_gauss = tf.Variable(0.0, dtype=tf.float64)
    self.numpy_random_keys = int64([624])
    self.numpy_random_pos = tf.Variable(0, dtype=tf.int64)
    self.numpy_random_has_gauss = tf.Variable(0, dtype=tf.int64)
    self.numpy_random_gauss = tf.Variable(0.0, dtype=tf.float64)
    self.log = tf.Variable('', dtype=tf.string)  # the log printed so far, lines + '\n'

  def capture(self, train_batches, valid_batches, mean_loss, log_text):
    """Copy the generators, the mean loss, both random states and the log in."""
    for generator, cursor, last_ids in ((train_batches, self.train_cursor,
                                         self.train_last_ids),
                                        (valid_batches, self.valid_cursor,
                                         self.valid_last_ids)):
      position, row = generator.get_state()
      cursor.assign(position)
      last_ids.assign(row)
    self.mean_loss.assign(mean_loss)
    version, words, gauss = random.getstate()
    assert version == 3, 'Python random state version %s' % version
    self.python_random_state.assign(np.array(words, dtype=np.int64))
    self.python_random_has_gauss.assign(gauss is not None)
    self.python_random_gauss.assign(0.0 if gauss is None else gauss)
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    assert kind == 'MT19937', kind
    self.numpy_random_keys.assign(keys.astype(np.int64))
    self.numpy_random_pos.assign(pos)
    self.numpy_random_has_gauss.assign(has_gauss)
    self.numpy_random_gauss.assign(cached)
    self.log.assign(log_text)

  def apply(self, train_batches, valid_batches):
    """Set the generators and both random states; returns (mean_loss, log_text)."""
    train_batches.set_state(self.train_cursor.numpy(), self.train_last_ids.numpy())
    valid_batches.set_state(self.valid_cursor.numpy(), self.valid_last_ids.numpy())
    gauss = (float(self.python_random_gauss.numpy())
             if self.python_random_has_gauss.numpy() else None)
    random.setstate((3, tuple(int(w) for w in self.python_random_state.numpy()), gauss))
    np.random.set_state(('MT19937', self.numpy_random_keys.numpy().astype(np.uint32),
                         int(self.numpy_random_pos.numpy()),
                         int(self.numpy_random_has_gauss.numpy()),
                         float(self.numpy_random_gauss.numpy())))
    return float(self.mean_loss.numpy()), self.log.numpy().decode('utf-8')


# ---------------------------------------------------------------------------- on disk

def checkpoint_step(path):
  """The step in a checkpoint's name (`.../ckpt-600` -> 600), or None."""
  match = re.search(r'%s-(\d+)$' % PREFIX, path)
  return int(match.group(1)) if match else None


def candidates(directory):
  """Checkpoint paths in `directory`, newest (highest step) first.

  Those the `checkpoint` index lists, and any other `ckpt-N.index` on disk (one written
  whole just before a kill, or all of them if the index file is damaged or moved).
  """
  paths = set()
  try:
    with quiet_logging(logging.ERROR):  # a damaged index file is ignored: scan the disk
      state = tf.train.get_checkpoint_state(directory)
  except Exception:  # pylint: disable=broad-except
    state = None
  if state is not None:
    for path in state.all_model_checkpoint_paths:
      paths.add(os.path.join(directory, os.path.basename(path)))
  for index in glob.glob(os.path.join(glob.escape(directory), PREFIX + '-*.index')):
    paths.add(index[:-len('.index')])
  paths = [p for p in paths if checkpoint_step(p) is not None]
  return sorted(paths, key=checkpoint_step, reverse=True)


def holds_checkpoints(directory):
  """Whether `directory` holds a checkpoint or a `checkpoint` index file."""
  return bool(os.path.isdir(directory) and (
      candidates(directory) or os.path.exists(os.path.join(directory, 'checkpoint'))))


def damage(path):
  """Why the checkpoint at `path` cannot be trusted (one line), or None if it reads whole.

  Reads every tensor: TensorFlow checks each one's length and CRC-32C.
  """
  try:
    reader = tf.train.load_checkpoint(path)
    for name in reader.get_variable_to_shape_map():
      reader.get_tensor(name)
  except Exception as error:  # pylint: disable=broad-except  (any failure: do not trust it)
    return first_line(error)
  return None


def remove_checkpoints(directory):
  """Delete the checkpoints and the `checkpoint` index in `directory` (--overwrite).

  Only files named `ckpt-N.index`, `ckpt-N.data-*` and `checkpoint`; nothing else there.
  """
  for path in glob.glob(os.path.join(glob.escape(directory), PREFIX + '-*')):
    if re.match(r'%s-\d+\.(index|data-\d+-of-\d+)$' % PREFIX, os.path.basename(path)):
      os.remove(path)
  index = os.path.join(directory, 'checkpoint')
  if os.path.isfile(index):
    os.remove(index)


def read_settings(path):
  """The settings recorded in the checkpoint at `path`: {name: value}."""
  reader = tf.train.load_checkpoint(path)
  suffix = '/.ATTRIBUTES/VARIABLE_VALUE'
  return {key[len('settings/'):-len(suffix)]: _plain(reader.get_tensor(key))
          for key in reader.get_variable_to_shape_map()
          if key.startswith('settings/') and key.endswith(suffix)}


def compare_settings(directory, saved, current):
  """Refuse a checkpoint of another model or text; notes on changed training settings.

  Raises CheckpointError naming --checkpoint_dir and the first flag that differs; returns
  one line per training setting that differs.
  """
  if not saved:
    raise CheckpointError('--checkpoint_dir=%s: its checkpoint is not one of an '
                          'assignment6 language-model run; give that run\'s directory or '
                          'another --checkpoint_dir' % directory)
  saved = dict(SETTING_DEFAULTS, **saved)  # what an older checkpoint's settings meant
  for name, flag in MODEL_SETTINGS:
    if name not in saved:
      raise CheckpointError('--checkpoint_dir=%s: its checkpoint does not record %s '
                            '(another version?); give another --checkpoint_dir'
                            % (directory, flag))
    if saved[name] != current[name]:
      if flag == '--data':
        raise CheckpointError(
            '--checkpoint_dir=%s: the checkpoint was trained on another text (%d '
            'characters, CRC-32 %08x; this --data has %d, %08x); give the same --data or '
            'another --checkpoint_dir' % (directory, saved['corpus_characters'],
                                  saved['corpus_crc32'], current['corpus_characters'],
                                  current['corpus_crc32']))
      raise CheckpointError('--checkpoint_dir=%s: the checkpoint is of a model with %s=%s, '
                            'this run has %s=%s; give %s=%s or another --checkpoint_dir'
                            % (directory, flag, _flag_value(saved[name]), flag,
                               _flag_value(current[name]), flag, _flag_value(saved[name])))
  saved_vocabulary = saved.get('vocabulary', data.TEXT8_CHARACTERS)
  current_vocabulary = current.get('vocabulary', data.TEXT8_CHARACTERS)
  if saved_vocabulary != current_vocabulary:
    raise CheckpointError('--checkpoint_dir=%s: the checkpoint\'s model reads %d characters '
                          '(%s), this run\'s %d; give --vocabulary=%s or another '
                          '--checkpoint_dir'
                          % (directory, len(saved_vocabulary),
                             'text8\'s' if saved_vocabulary == data.TEXT8_CHARACTERS
                             else 'the text\'s', len(current_vocabulary),
                             'text8' if saved_vocabulary == data.TEXT8_CHARACTERS
                             else 'auto'))
  return ['--%s=%s differs from the checkpoint\'s %s: the resumed run uses %s'
          % (name, _flag_value(current[name]), _flag_value(saved.get(name)),
             _flag_value(current[name]))
          for name in TRAINING_SETTINGS
          if saved.get(name, SETTING_DEFAULTS.get(name)) != current[name]]


def first_line(error):
  """An exception's message, its first line, at most 200 characters."""
  return (str(error).strip().split('\n')[0] or type(error).__name__)[:200]


def _flag_value(value):
  if isinstance(value, bool):
    return 'true' if value else 'false'
  return '%g' % value if isinstance(value, float) else str(value)


@contextlib.contextmanager
def quiet_logging(level=logging.WARNING):
  """absl's and TensorFlow's Python logging at `level` and above for a while: a learner
  sees the course's log and one line per problem."""
  verbosity = logging.get_verbosity()
  logger = tf.get_logger()
  python_level = logger.level
  logging.set_verbosity(min(verbosity, level))
  logger.setLevel(max(python_level, converter.absl_to_standard(level)))
  try:
    yield
  finally:
    logging.set_verbosity(verbosity)
    logger.setLevel(python_level)


# ---------------------------------------------------------------------------- checkpointer

class Checkpointer(object):
  """Saves and restores a run in `directory` with `tf.train.CheckpointManager`.

  model, trainer: the `LanguageModel` and its `Trainer`; train_batches, valid_batches: the
  run's generators; settings: `run_settings(...)`; every: steps between checkpoints.
  """

  def __init__(self, directory, model, trainer, train_batches, valid_batches, settings,
               every, max_to_keep=MAX_TO_KEEP):
    self.directory = directory
    self.model = model
    self.train_batches = train_batches
    self.valid_batches = valid_batches
    self.settings = settings
    self.every = every
    self.run = RunState(train_batches.get_state()[0].shape[0])
    self.settings_variables = {k: _variable(v) for k, v in settings.items()}
    self.checkpoint = tf.train.Checkpoint(
        model=model, trainer=trainer, run=self.run,
        settings=tf.train.Checkpoint(**self.settings_variables))
    self.max_to_keep = max_to_keep
    self._manager = None
    self.last_path = None  # the newest complete checkpoint written or restored
    self.last_step = None

  @property
  def manager(self):
    if self._manager is None:
      self._manager = tf.train.CheckpointManager(
          self.checkpoint, self.directory, max_to_keep=self.max_to_keep,
          checkpoint_name=PREFIX)
    return self._manager

  def due(self, first, last):
    """Whether the chunk of steps first..last reaches a multiple of `every` (not 0)."""
    return last // self.every > max(first - 1, 0) // self.every

  def restore(self):
    """Restore the newest complete checkpoint of the same model and text.

    Returns (path, mean_loss, log_text, notes): notes are one-line remarks (a damaged
    checkpoint skipped, a training setting changed). Raises CheckpointError.
    """
    paths = candidates(self.directory)
    if not paths:
      raise CheckpointError('--checkpoint_dir=%s: no checkpoint to resume; start the run '
                            'without --resume' % self.directory)
    notes = []
    for path in paths:
      problem = damage(path)
      if problem is None:
        break
      notes.append('%s is damaged or incomplete (%s); trying the one before it'
                   % (path, problem))
    else:
      raise CheckpointError('--checkpoint_dir=%s: no complete checkpoint (the newest, '
                            '%s: %s); start again with --overwrite or another '
                            '--checkpoint_dir'
                            % (self.directory, paths[0], damage(paths[0])))
    notes += compare_settings(self.directory, read_settings(path), self.settings)
    try:
      self.checkpoint.restore(path).assert_consumed()
    except (AssertionError, ValueError, tf.errors.OpError) as error:
      raise CheckpointError('--checkpoint_dir=%s: %s does not fit this model (%s); give '
                            'another --checkpoint_dir' % (self.directory, path,
                                                          first_line(error))) from None
    for name, variable in self.settings_variables.items():  # this run's, for its saves
      variable.assign(self.settings[name])
    mean_loss, log_text = self.run.apply(self.train_batches, self.valid_batches)
    self.last_path, self.last_step = path, checkpoint_step(path)
    return path, mean_loss, log_text, notes

  def save(self, step, mean_loss, log_text):
    """Write `ckpt-STEP` for the state after `step`; refuses non-finite weights.

    Raises FloatingPointError (nothing written) or CheckpointError (the write failed).
    """
    for variable in self.model.variables:
      if variable.dtype.is_floating and not np.all(np.isfinite(variable.numpy())):
        raise FloatingPointError('the weights became non-finite by step %d (%s)'
                                 % (step, variable.name))
    self.run.capture(self.train_batches, self.valid_batches, mean_loss, log_text)
    options = None
    if os.environ.get(PAUSE_VARIABLE) == str(step):
      options = tf.train.CheckpointOptions(experimental_write_callbacks=[self._pause])
    try:
      with quiet_logging():  # TensorFlow's saver logs each save at INFO
        path = self.manager.save(checkpoint_number=step, options=options)
    except (OSError, tf.errors.OpError) as error:
      kept = ('the last complete checkpoint is %s' % self.last_path if self.last_path
              else 'no checkpoint was completed')
      raise CheckpointError('--checkpoint_dir=%s: cannot write the checkpoint of step %d '
                            '(%s); %s; free space or give another --checkpoint_dir'
                            % (self.directory, step, first_line(error), kept)) from None
    self.last_path, self.last_step = path, step
    return path

  @staticmethod
  def _pause(path):
    """The test hook: the files are written, the `checkpoint` index is not yet."""
    print('%s: pausing inside the write of %s' % (PAUSE_VARIABLE, path), file=sys.stderr,
          flush=True)
    time.sleep(600)

  def kept(self):
    """One line: which checkpoint a stopped run keeps."""
    if self.last_path is None:
      return 'no checkpoint was written yet in --checkpoint_dir=%s' % self.directory
    return 'the last good checkpoint is %s (step %d)' % (self.last_path, self.last_step)


# ---------------------------------------------------------------------------- trained model

def newest_complete(directory, flag='--checkpoint_dir'):
  """The newest checkpoint in `directory` that reads whole: (path, notes on skipped ones).

  Raises CheckpointError naming `flag` when there is none.
  """
  if not os.path.isdir(directory):
    raise CheckpointError('%s=%s: no such directory; give the --checkpoint_dir of a '
                          'language-model run (e.g. python -m assignment6.lstm '
                          '--checkpoint_dir=DIR)' % (flag, directory))
  paths = candidates(directory)
  if not paths:
    raise CheckpointError('%s=%s: holds no checkpoint; give the --checkpoint_dir of a '
                          'language-model run (e.g. python -m assignment6.lstm '
                          '--checkpoint_dir=DIR)' % (flag, directory))
  notes = []
  for path in paths:
    problem = damage(path)
    if problem is None:
      return path, notes
    notes.append('%s is damaged or incomplete (%s); trying the one before it'
                 % (path, problem))
  raise CheckpointError('%s=%s: no complete checkpoint (the newest, %s: %s); train the '
                        'run again' % (flag, directory, paths[0], damage(paths[0])))


def load_model(directory, flag='--checkpoint_dir'):
  """The trained `LanguageModel` of a run's directory, from its newest complete checkpoint.

  The model is rebuilt from the settings the checkpoint records (cell, sizes, tokens,
  vocabulary: nothing else is needed, no path is read from it, and it runs on any device)
  and its variables restored. Returns (model, settings, path, notes); raises
  CheckpointError (one line naming `flag`).
  """
  path, notes = newest_complete(directory, flag)
  settings = read_settings(path)
  settings = dict(SETTING_DEFAULTS, **settings) if settings else settings
  missing = [name for name, _ in MODEL_SETTINGS if name not in settings]
  if not settings or missing:
    raise CheckpointError('%s=%s: %s is not a checkpoint of an assignment6 language-model '
                          'run (lstm, problem1, problem2); give that run\'s directory'
                          % (flag, directory, os.path.basename(path)))
  try:
    vocabulary = data.Vocabulary(settings.get('vocabulary', data.TEXT8_CHARACTERS))
  except data.DataError as error:
    raise CheckpointError('%s=%s: %s' % (flag, directory, error)) from None
  bigram = settings['variant'] == 'bigram'
  vocabulary_size = vocabulary.size ** 2 if bigram else vocabulary.size
  embedding_size = settings['embedding_size'] or None
  try:
    cell = cells.make_cell(settings['cell'], embedding_size or vocabulary_size,
                           settings['num_nodes'], settings['peepholes'],
                           settings['num_proj'], settings['num_nonrec_proj'],
                           cell_clip=settings['cell_clip'] or None,
                           proj_clip=settings['proj_clip'] or None,
                           proj_scale=settings['proj_scale'],
                           precision=settings['precision'])
  except ValueError as error:
    raise CheckpointError('%s=%s: %s' % (flag, directory, error)) from None
  emulated = precision.emulation_note(settings['precision'])
  if emulated:
    notes.append(emulated)
  model = models.LanguageModel(cell, settings['batch_size'], vocabulary_size,
                               embedding_size, settings['keep_prob'],
                               stride=settings['bigram_stride'] if bigram else 1,
                               vocabulary=vocabulary)
  try:
    status = tf.train.Checkpoint(model=model).restore(path)
    status.expect_partial().assert_existing_objects_matched()
  except (AssertionError, ValueError, tf.errors.OpError) as error:
    raise CheckpointError('%s=%s: %s does not fit the model its settings describe (%s)'
                          % (flag, directory, path, first_line(error))) from None
  return model, settings, path, notes
