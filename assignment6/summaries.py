"""TensorBoard: a run's figures as `tf.summary` event files in `--logdir` (no Keras).

    python -m assignment6.lstm --logdir=runs/tensorboard/lstm
    tensorboard --logdir=runs/tensorboard          # then open http://127.0.0.1:6006

At each log line the run writes the figures it prints, as scalars at that step (the
language models: `loss/average`, `perplexity/minibatch`, `perplexity/validation`,
`bits_per_character/validation`, `learning_rate`; Problem 3: `loss/average`,
`accuracy/validation`, `learning_rate`), and `speed/steps_per_second` since the previous
line; the samples and the run's flags as text. The figures are the printed ones, before
rounding (float32 in the event file); writing them changes no figure and no random draw.

A resumed run (`--resume`) continues the same curves: it first cuts every event file in
`--logdir` to the steps of its checkpoint (what a killed run wrote after its checkpoint
goes, as the lines it printed go from `--log_file`), then writes a new event file from the
next step on. So no step appears twice. A new run refuses a `--logdir` that holds event
files unless `--overwrite` (they are deleted); put each run in its own subdirectory, and
point TensorBoard at their parent to see them side by side.
"""
import glob
import math
import os
import time

import tensorflow as tf

EVENTS = 'events.out.tfevents.*'  # the name TensorBoard reads (tf.summary's writer's files)


class LogdirError(ValueError):
  """A --logdir problem, one line naming the flag and what to do."""


def event_files(logdir):
  """The event files directly in `logdir` (not its subdirectories), oldest first."""
  return sorted(glob.glob(os.path.join(glob.escape(logdir), EVENTS)))


def check_logdir(logdir, resume=False, overwrite=False):
  """Refuse a --logdir that is a file, or (for a new run) holds event files, unless
  --overwrite (then `remove_events` once the run's inputs are checked). Writes nothing."""
  if os.path.exists(logdir) and not os.path.isdir(logdir):
    raise LogdirError('--logdir=%s: is a file; give a directory' % logdir)
  if not resume and not overwrite and event_files(logdir):
    raise LogdirError('--logdir=%s: holds the event files of a run; add --resume to '
                      'continue its curves, --overwrite to delete them, or give another '
                      'directory' % logdir)


def remove_events(logdir):
  """Delete the event files in `logdir` (only those): --overwrite's new run."""
  for path in event_files(logdir):
    os.remove(path)


def read_events(path):
  """The `tf.compat.v1.Event`s of one event file, up to a truncated or damaged record."""
  events = []
  try:
    for record in tf.data.TFRecordDataset(path):
      events.append(tf.compat.v1.Event.FromString(record.numpy()))
  except tf.errors.DataLossError:  # a run killed while writing: what came before is whole
    pass
  return events


def cut_events(logdir, last_step):
  """Drop the summaries of steps after `last_step` from every event file in `logdir`.

  Each file that holds one is rewritten whole under a temporary name and renamed over the
  old one (a kill leaves either file complete). Returns the number of events dropped.
  """
  dropped = 0
  for path in event_files(logdir):
    events = read_events(path)
    kept = [e for e in events if not e.summary.value or e.step <= last_step]
    if len(kept) == len(events) and _whole(path, events):
      continue
    dropped += len(events) - len(kept)
    temporary = os.path.join(logdir, '.cut-events.tmp')
    with tf.io.TFRecordWriter(temporary) as writer:
      for event in kept:
        writer.write(event.SerializeToString())
    os.replace(temporary, path)
  return dropped


def _whole(path, events):
  """Whether the file is exactly its readable events (no damaged tail to drop)."""
  size = sum(len(e.SerializeToString()) + 16 for e in events)  # a record's 16 framing bytes
  return size == os.path.getsize(path)


def read_summaries(logdir, plugin, value_of):
  """{tag: [(step, value_of(tensor)), ...]} of every `plugin` summary ('scalars', 'text')
  in `logdir`'s event files, in file order."""
  found = {}
  for path in event_files(logdir):
    for event in read_events(path):
      for value in event.summary.value:
        if value.metadata.plugin_data.plugin_name == plugin:
          found.setdefault(value.tag, []).append(
              (event.step, value_of(tf.make_ndarray(value.tensor))))
  return found


def read_scalars(logdir):
  """{tag: [(step, value), ...]} of every scalar in `logdir`'s event files, in file order."""
  return read_summaries(logdir, 'scalars', float)


def read_texts(logdir):
  """{tag: [(step, text), ...]} of every text summary in `logdir`'s event files."""
  return read_summaries(logdir, 'text', lambda array: array.item().decode('utf-8'))


def flags_text(settings):
  """The run's settings as a Markdown table (TensorBoard renders it).

  settings: absl's FLAGS (the flags defined in assignment6's modules) or any object with
  the settings as attributes.
  """
  if hasattr(settings, 'flags_by_module_dict'):
    values = {}
    for module, module_flags in settings.flags_by_module_dict().items():
      if 'assignment6' in module:
        for flag in module_flags:
          values[flag.name] = flag.value
  else:
    values = dict(vars(settings))
  rows = ['| flag | value |', '|---|---|']
  rows += ['| --%s | %s |' % (name, values[name]) for name in sorted(values)]
  return '\n'.join(rows)


def _metadata(plugin):
  """The summary metadata TensorBoard's `scalars` or `text` plugin reads.

  What `tf.summary.scalar` and `tf.summary.text` write (their plugin data, version 0, is
  empty), through TensorFlow's own `tf.summary.write`: those two functions live in the
  `tensorboard` package, which TensorFlow 2.20 and later no longer install.
  """
  return tf.compat.v1.SummaryMetadata(
      plugin_data=tf.compat.v1.SummaryMetadata.PluginData(plugin_name=plugin))


class Summaries(object):
  """The run's event file: `scalars(step, {tag: value})` and `text(tag, step, text)`.

  start_step: the first step this (re)start trains; `speed/steps_per_second` is measured
  between log lines, from the time the object is made.
  """

  def __init__(self, logdir, start_step=0):
    self.logdir = logdir
    self.writer = tf.summary.create_file_writer(logdir)
    self._time = time.time()
    self._step = start_step - 1

  def scalars(self, step, values):
    """Write each value at `step`, and the steps per second since the previous call."""
    now = time.time()
    values = dict(values)
    if now > self._time:
      values['speed/steps_per_second'] = (step - self._step) / (now - self._time)
    self._time, self._step = now, step
    with self.writer.as_default():
      for tag, value in values.items():
        if value is not None and math.isfinite(value):
          tf.summary.write(tag, tf.constant(value, tf.float32), step=step,
                           metadata=_metadata('scalars'))
    self.writer.flush()

  def text(self, tag, step, text):
    with self.writer.as_default():
      tf.summary.write(tag, tf.constant(text), step=step, metadata=_metadata('text'))
    self.writer.flush()

  def close(self):
    self.writer.close()


def open_summaries(logdir, settings, start_step=0, resumed_step=None):
  """The run's `Summaries` in `logdir` (None without one), its flags written as text.

  resumed_step: a resumed run's last logged step; the events after it are cut first.
  """
  if not logdir:
    return None
  if resumed_step is not None:
    cut_events(logdir, resumed_step)
  summaries = Summaries(logdir, start_step)
  summaries.text('flags', start_step, flags_text(settings))
  return summaries
