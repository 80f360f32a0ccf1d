"""How fast the course's run goes: the course's own code against the port, in one run.

    python -m assignment6.bench                       # the course's size, 3 repeats
    python -m assignment6.bench --num_nodes=256 --embedding_size=128 --part=steps
    python -m assignment6.bench --part=layers         # 256-1,024 cells against Keras's LSTM
    python -m assignment6.bench --part=mirror --repeats=1   # Problem 3, time to 99%

Implementations, interleaved (repeat 1 of each, then repeat 2 of each, ...):
  course      the course's code as the course wrote it: `course_tf1` (tf.compat.v1 graph,
              placeholders, feed_dict, character-by-character batches, one session.run
              per validation character) -- the yardstick every ratio is against
  plain       the port with the course's cell, one call per step and per character
  port        the port with the course's cell, one call per log line (--fast, the default)
  concat      Problem 1's cell, one call per log line
  fused       TensorFlow's fused BlockLSTM kernel, one call per log line

Parts: `steps` (training-step characters per second, one validation pass, one sample block,
the batches' share), `run` (the whole course run: --num_steps steps with their
validations and samples), `layers` (training steps at 256, 512 and 1,024 cells with
embeddings against the layer a TensorFlow user would otherwise pick, the concatenated cell
in float32 and with --precision=bfloat16; the Keras yardstick lives in the source
checkout's tests/layer_yardstick.py, as the package stays Keras-free; the header says
whether the CPU has bfloat16 instructions: without them bfloat16 is emulated, not a result),
`mirror` (Problem 3's training run before its faster step and batches and as
`python -m assignment6.problem3` runs it now: held-out accuracy against training seconds).
Every figure is the median of the repeats, with their spread (min-max).
"""
import os
import platform
import random
import statistics
import sys
import time

from absl import app
from absl import flags

from assignment6 import cells, course_tf1, data, mirror, models, training
from assignment6 import precision as precisions
import numpy as np
import tensorflow as tf

flags.DEFINE_multi_enum('part', ['steps', 'run'], ['steps', 'run', 'layers', 'mirror'],
                        'What to time (repeatable).')
flags.DEFINE_list('implementations', ['course', 'plain', 'port', 'concat', 'fused'],
                  'Which implementations to time.')
flags.DEFINE_integer('repeats', 3, 'Repeats of each measurement.', lower_bound=1)
flags.DEFINE_integer('num_steps', 7001, 'Steps of the whole run.', lower_bound=1)
flags.DEFINE_integer('timed_steps', 300, 'Training steps timed per repeat (part steps).',
                     lower_bound=1)
flags.DEFINE_integer('batch_size', 64, 'Batch size.', lower_bound=1)
flags.DEFINE_integer('num_unrollings', 10, 'Unrollings.', lower_bound=1)
flags.DEFINE_integer('num_nodes', 64, 'LSTM cells.', lower_bound=1)
flags.DEFINE_integer('embedding_size', 0, 'Embedding width (0: one-hot inputs).',
                     lower_bound=0)
flags.DEFINE_list('layer_sizes', ['256', '512', '1024'], 'Cells for part layers.')
flags.DEFINE_integer('layer_embedding_size', 128, 'Embedding width for part layers.',
                     lower_bound=1)
flags.DEFINE_integer('intra_op_threads', 0, 'TensorFlow\'s intra-op threads (0: its '
                     'default, one per core).', lower_bound=0)
flags.DEFINE_integer('inter_op_threads', 0, 'TensorFlow\'s inter-op threads (0: its '
                     'default).', lower_bound=0)
flags.DEFINE_list('mirror_configs', ['earlier', 'default'], 'Part mirror: Problem 3\'s '
                  'training runs to time, earlier (its configuration before the faster step '
                  'and batches) and default (python -m assignment6.problem3\'s).')
flags.DEFINE_integer('mirror_steps', 0, 'Part mirror: stop each run after this many steps '
                     '(0: its whole run; the schedule is still its whole run\'s).',
                     lower_bound=0)
flags.DEFINE_integer('mirror_sentences', 1000, 'Part mirror: held-out sentences per length '
                     '(1-5 words: the test table\'s) at each evaluation.', lower_bound=1)
flags.DEFINE_integer('mirror_evaluations', 24, 'Part mirror: held-out evaluations in a run '
                     '(evenly spaced, and at its end; not counted in its time).',
                     lower_bound=1)
FLAGS = flags.FLAGS

PORT_CELLS = {'plain': ('course', False), 'port': ('course', True),
              'concat': ('concat', True), 'fused': ('fused', True)}


def environment():
  """The lines that say where the figures come from."""
  cpu = platform.processor() or platform.machine()
  try:
    with open('/proc/cpuinfo') as f:
      cpu = next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
  except (OSError, StopIteration):
    pass
  return ['TensorFlow %s, NumPy %s, Python %s' % (tf.__version__, np.__version__,
                                                   platform.python_version()),
          'CPU: %s, %d logical cores; TensorFlow threads: intra-op %d, inter-op %d (0: one '
          'per core); oneDNN %s' % (cpu, os.cpu_count(),
                                    tf.config.threading.get_intra_op_parallelism_threads(),
                                    tf.config.threading.get_inter_op_parallelism_threads(),
                                    os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'default (on)')),
          precisions.describe_instructions(),
          'Load average at start: %.2f %.2f %.2f' % os.getloadavg()]


def spread(values, scale=1.0, form='%.3g'):
  """'median (min-max)' of timings."""
  values = [v * scale for v in values]
  return ('%s (%s-%s)' % (form, form, form)) % (statistics.median(values), min(values),
                                                max(values))


# ---------------------------------------------------------------------------- the port

def build_port(name, vocabulary_size=data.vocabulary_size, embedding_size=None,
               num_nodes=None, seed=0, precision=precisions.FLOAT32):
  """The model, its Trainer and whether it runs --fast, for an implementation's name;
  precision: `--precision` (bfloat16 needs the concat cell)."""
  cell, fast = PORT_CELLS[name]
  input_size = embedding_size or vocabulary_size
  num_nodes = num_nodes or FLAGS.num_nodes
  model = models.LanguageModel(cells.make_cell(cell, input_size, num_nodes, seed=seed,
                                               precision=precision),
                               FLAGS.batch_size, vocabulary_size, embedding_size, seed=seed)
  return model, training.Trainer(model), fast


def time_port_steps(name, text, embedding_size=None, num_nodes=None, steps=None):
  """Seconds per training step (warmed up), a validation pass, a sample block, batches."""
  model, trainer, fast = build_port(name, embedding_size=embedding_size,
                                    num_nodes=num_nodes)
  steps = steps or FLAGS.timed_steps
  batches = data.BatchGenerator(text[1000:], FLAGS.batch_size, FLAGS.num_unrollings)
  chunk = 100 if fast else 1
  ids = np.stack([batches.next_ids() for _ in range(chunk)])
  if fast:  # traced and warmed up before timing
    trainer.train_steps(tf.constant(ids))
  else:
    trainer.train_step(tf.constant(ids[0]))
  start = time.perf_counter()
  done = 0
  while done < steps:
    if fast:
      trainer.train_steps(tf.constant(ids))
    else:
      trainer.train_step(tf.constant(ids[0]))
    done += chunk
  step = (time.perf_counter() - start) / done
  valid = training.validation_batches(text[:1000])
  training.validation_logprob(model, valid, 1000, fast)
  start = time.perf_counter()
  training.validation_logprob(model, valid, 1000, fast)
  validation = time.perf_counter() - start
  training.sample_text(model, fast=fast)
  start = time.perf_counter()
  training.sample_text(model, fast=fast)
  sampling = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(1000):
    batches.next_ids()
  batch = (time.perf_counter() - start) / 1000
  return {'step': step, 'validation': validation, 'sampling': sampling, 'batch': batch}


def time_port_run(name, text):
  """The whole course run, from building the model to the last validation."""
  start = time.perf_counter()
  model, trainer, fast = build_port(name)
  train_batches = data.BatchGenerator(text[1000:], FLAGS.batch_size, FLAGS.num_unrollings)
  valid = training.validation_batches(text[:1000])
  random.seed(0)
  np.random.seed(0)
  perplexity = training.train(trainer, train_batches, valid, FLAGS.num_steps, 100, 1000,
                              log=lambda line: None, fast=fast)
  return {'total': time.perf_counter() - start, 'perplexity': perplexity}


# ---------------------------------------------------------------------------- the course

def time_course_steps(text):
  graph = course_tf1.CourseGraph(FLAGS.batch_size, FLAGS.num_unrollings, FLAGS.num_nodes)
  batches = course_tf1.BatchGenerator(text[1000:], FLAGS.batch_size, FLAGS.num_unrollings)
  graph.train_step(batches.next())
  timed = [batches.next() for _ in range(100)]
  start = time.perf_counter()
  for k in range(FLAGS.timed_steps):
    graph.train_step(timed[k % 100])
  step = (time.perf_counter() - start) / FLAGS.timed_steps
  valid = course_tf1.BatchGenerator(text[:1000], 1, 1)
  start = time.perf_counter()
  graph.reset_sample_state()
  for _ in range(1000):
    b = valid.next()
    course_tf1.logprob(graph.sample_prediction(b[0]), b[1])
  validation = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(5):
    feed = course_tf1.sample(course_tf1.random_distribution())
    graph.reset_sample_state()
    for _ in range(79):
      feed = course_tf1.sample(graph.sample_prediction(feed))
  sampling = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(100):
    batches.next()
  batch = (time.perf_counter() - start) / 100
  graph.close()
  return {'step': step, 'validation': validation, 'sampling': sampling, 'batch': batch}


def time_course_run(text):
  result = course_tf1.run_course(text, num_steps=FLAGS.num_steps, seed=0,
                                 print_fn=lambda *args: None, batch_size=FLAGS.batch_size,
                                 num_unrollings=FLAGS.num_unrollings,
                                 num_nodes=FLAGS.num_nodes)
  return {'total': result['total_seconds'], 'perplexity': result['validation_perplexity']}


# ---------------------------------------------------------------------------- parts

def bench_steps(text, names, say):
  results = {name: [] for name in names}
  for _ in range(FLAGS.repeats):
    for name in names:
      if name == 'course':
        results[name].append(time_course_steps(text))
      else:
        results[name].append(time_port_steps(name, text,
                                              FLAGS.embedding_size or None))
  characters = FLAGS.batch_size * FLAGS.num_unrollings
  say('Training steps, batch %d x %d unrollings, %d nodes%s: characters per second '
      '(median (min-max) of %d repeats), and the ratio to the course\'s code'
      % (FLAGS.batch_size, FLAGS.num_unrollings, FLAGS.num_nodes,
         ', embedding %d' % FLAGS.embedding_size if FLAGS.embedding_size else '',
         FLAGS.repeats))
  say('%-8s | %-28s | %6s | %-22s | %-22s | %s' % (
      'impl', 'train chars/s', 'ratio', 'validation pass ms', 'sample block ms',
      'batches share'))
  base = results.get('course')
  for name in names:
    runs = results[name]
    speed = [characters / r['step'] for r in runs]
    ratio = (statistics.median(speed) / statistics.median(
        [characters / r['step'] for r in base])) if base else float('nan')
    share = statistics.median([r['batch'] / (r['step'] + r['batch']) for r in runs])
    say('%-8s | %-28s | %5.2fx | %-22s | %-22s | %.1f%%' % (
        name, spread(speed, form='%.0f'), ratio,
        spread([r['validation'] for r in runs], 1e3, '%.1f'),
        spread([r['sampling'] for r in runs], 1e3, '%.1f'), 100 * share))


def bench_run(text, names, say):
  results = {name: [] for name in names}
  for _ in range(FLAGS.repeats):
    for name in names:
      results[name].append(time_course_run(text) if name == 'course'
                           else time_port_run(name, text))
  say('The whole course run: %d steps with %d validations and %d sample blocks, '
      'seconds (median (min-max) of %d repeats)'
      % (FLAGS.num_steps, (FLAGS.num_steps - 1) // 100 + 1,
         (FLAGS.num_steps - 1) // 1000 + 1, FLAGS.repeats))
  say('%-8s | %-24s | %6s | %s' % ('impl', 'seconds', 'ratio', 'final validation '
                                                                'perplexity'))
  base = statistics.median([r['total'] for r in results['course']]) \
      if 'course' in results else float('nan')
  for name in names:
    totals = [r['total'] for r in results[name]]
    say('%-8s | %-24s | %5.2fx | %s' % (
        name, spread(totals, form='%.2f'), base / statistics.median(totals),
        ', '.join('%.2f' % r['perplexity'] for r in results[name])))


def layer_yardstick():
  """The Keras LSTM training step from the source checkout's tests/ (not the package)."""
  tests = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       'tests')
  if not os.path.exists(os.path.join(tests, 'layer_yardstick.py')):
    return None
  sys.path.insert(0, tests)
  import layer_yardstick  # pylint: disable=import-outside-toplevel
  return layer_yardstick


def bench_layers(text, say):
  yardstick = layer_yardstick()
  embedding = FLAGS.layer_embedding_size
  say('Larger models, embedding %d, batch %d x %d: training step ms (median (min-max) '
      'of %d repeats), ratio = Keras LSTM time / this time'
      % (embedding, FLAGS.batch_size, FLAGS.num_unrollings, FLAGS.repeats))
  if yardstick is None:
    say('(the Keras yardstick is in the source checkout\'s tests/layer_yardstick.py; '
        'not found here, so only the port is timed)')
  say('(concat bf16: --cell=concat --precision=bfloat16, the cell\'s matmuls in bfloat16; '
      'the rest float32)')
  say('%-6s | %-24s | %-24s | %-24s | %-24s | %s' % (
      'cells', 'keras LSTM', 'concat', 'fused', 'concat bf16',
      'ratios concat, fused, concat bf16'))
  ids = np.stack([data.BatchGenerator(text, FLAGS.batch_size, FLAGS.num_unrollings)
                  .next_ids() for _ in range(1)])[0]
  ports = (('concat', 'concat', precisions.FLOAT32), ('fused', 'fused', precisions.FLOAT32),
           ('concat bf16', 'concat', precisions.BFLOAT16))
  for size in [int(s) for s in FLAGS.layer_sizes]:
    steps = max(5, min(60, int(2e5 / size ** 1.5)))
    times = {'keras': [], 'concat': [], 'fused': [], 'concat bf16': []}
    for _ in range(FLAGS.repeats):
      if yardstick:
        step = yardstick.train_step(data.vocabulary_size, embedding, size, FLAGS.batch_size)
        times['keras'].append(timed_calls(step, ids, steps))
      for column, name, precision in ports:
        model, trainer, _ = build_port(name, embedding_size=embedding, num_nodes=size,
                                       precision=precision)
        times[column].append(timed_calls(trainer.train_step, ids, steps))
    keras = statistics.median(times['keras']) if times['keras'] else float('nan')
    say('%-6d | %-24s | %-24s | %-24s | %-24s | %s' % (
        size, spread(times['keras'], 1e3, '%.1f') if times['keras'] else '-',
        spread(times['concat'], 1e3, '%.1f'), spread(times['fused'], 1e3, '%.1f'),
        spread(times['concat bf16'], 1e3, '%.1f'),
        ', '.join('%.2fx' % (keras / statistics.median(times[column]))
                  for column, _, _ in ports)))


def timed_calls(step, ids, steps):
  ids = tf.constant(ids)
  step(ids)
  step(ids)
  start = time.perf_counter()
  for _ in range(steps):
    step(ids)
  return (time.perf_counter() - start) / steps


# ---------------------------------------------------------------------------- Problem 3

def time_mirror(config, text, say, seed=1):
  """Problem 3's training run as `problem3` trains it, timed: its steps, batches and log
  line validations (every 200 steps, greedy over 50 sentences per length); held-out
  evaluations between them stop the clock. Returns rows (step, seconds, exact share of
  held-out 1-5-word sentences, greedy) and the run's seconds."""
  random.seed(seed)
  np.random.seed(seed)
  tf.random.set_seed(seed)
  train_words, valid_words, test_words = mirror.split_words(text)
  valid = mirror.test_sentences(valid_words, config['max_words'], 50, seed)
  valid = [s for n in sorted(valid) for s in valid[n]]
  held_out = mirror.test_sentences(test_words, config['max_words'],
                                   FLAGS.mirror_sentences, seed + 1)  # the test table's
  held_out = [s for n in range(1, 6) for s in held_out.get(n, [])]
  num_steps = config['num_steps']
  stop = min(FLAGS.mirror_steps or num_steps, num_steps)
  every = max(1, stop // FLAGS.mirror_evaluations)
  rows = []
  seconds = 0.0
  start = time.perf_counter()
  model = mirror.Mirror(config['num_nodes'], True, True, seed)
  trainer = mirror.Trainer(model, config['learning_rate'], 5.0, config['fast'])
  stages = list(config['curriculum']) + [config['max_words']]
  steps = mirror.training_steps(trainer, train_words, np.random.default_rng(seed), num_steps,
                                config['batch_size'], stages, config['learning_rate'],
                                config['decay_rate'], config['batching'])
  for step, _, _, _ in steps:
    if step % 200 == 0 or step == num_steps - 1:
      mirror.exact_accuracy(model, valid)  # the log line's validation, as problem3's
    if (step + 1) % every == 0 or step + 1 == stop:
      seconds += time.perf_counter() - start
      rows.append((step + 1, seconds, mirror.exact_accuracy(model, held_out)))
      say('  %6d | %7.1f | %6.2f%%' % (rows[-1][0], rows[-1][1], 100 * rows[-1][2]))
      start = time.perf_counter()
    if step + 1 == stop:
      break
  return rows, seconds


MIRROR_CONFIGS = {'earlier': mirror.EARLIER, 'default': mirror.DEFAULTS}


def describe(config):
  return ('%d steps, batch %d, %s batches, curriculum %s then %d words, learning rate %g '
          'decayed to %g x, %s step' % (
              config['num_steps'], config['batch_size'], config['batching'],
              ','.join(map(str, config['curriculum'])) or '-', config['max_words'],
              config['learning_rate'], config['decay_rate'],
              'fast' if config['fast'] else 'plain'))


def bench_mirror(text, say):
  names = FLAGS.mirror_configs
  unknown = [n for n in names if n not in MIRROR_CONFIGS]
  if unknown:
    print('bench: error: --mirror_configs: unknown %s; use %s'
          % (', '.join(unknown), ', '.join(MIRROR_CONFIGS)), file=sys.stderr)
    sys.exit(1)
  say('Problem 3, time to accuracy: exact held-out sentences of 1-5 words (greedy, %d per '
      'length, the test table\'s) against training seconds (held-out evaluations not '
      'counted; %d repeat%s)' % (FLAGS.mirror_sentences, FLAGS.repeats,
                                 '' if FLAGS.repeats == 1 else 's'))
  for name in names:
    say('%-8s  %s' % (name, describe(MIRROR_CONFIGS[name])))
  results = {name: [] for name in names}
  for repeat in range(FLAGS.repeats):
    for name in names:
      say()
      say('%s, repeat %d: step | seconds | exact 1-5 words' % (name, repeat + 1))
      results[name].append(time_mirror(MIRROR_CONFIGS[name], text, say))
  say()
  say('%-8s | %-28s | %-24s | %s' % ('config', 'seconds to 99% (first row)',
                                      'seconds, whole run', 'exact 1-5 words at the end'))
  to_99 = {}
  for name in names:
    first = [next((at for _, at, a in rows if a >= 0.99), None) for rows, _ in results[name]]
    reached = None not in first
    to_99[name] = statistics.median(first) if reached else float('nan')
    say('%-8s | %-28s | %-24s | %s' % (
        name, spread(first, form='%.1f') if reached else 'not reached in %d of %d' % (
            first.count(None), len(first)),
        spread([s for _, s in results[name]], form='%.1f'),
        ', '.join('%.2f%%' % (100 * rows[-1][2]) for rows, _ in results[name])))
  if 'earlier' in to_99 and 'default' in to_99:
    whole = {name: statistics.median([s for _, s in results[name]]) for name in names}
    ratio = to_99['earlier'] / to_99['default']  # nan where a run never reached 99%
    say('Ratios earlier / default: time to 99%% %s, whole run %.2fx'
        % ('%.2fx' % ratio if ratio == ratio else '- (not reached)',
           whole['earlier'] / whole['default']))


def main(argv):
  del argv
  tf.config.threading.set_intra_op_parallelism_threads(FLAGS.intra_op_threads)
  tf.config.threading.set_inter_op_parallelism_threads(FLAGS.inter_op_threads)
  tf.get_logger().setLevel('ERROR')  # each model traces its own functions: no retracing notes
  say = lambda line='': print(line, flush=True)
  for line in environment():
    say(line)
  text = data.read_data(data.SAMPLE_ZIP)
  names = [n for n in FLAGS.implementations]
  unknown = [n for n in names if n != 'course' and n not in PORT_CELLS]
  if unknown:
    print('bench: error: --implementations: unknown %s; use course, %s'
          % (', '.join(unknown), ', '.join(PORT_CELLS)), file=sys.stderr)
    sys.exit(1)
  say('Corpus: %s' % data.SAMPLE_DESCRIPTION)
  for part in FLAGS.part:
    say()
    if part == 'steps':
      bench_steps(text, names, say)
    elif part == 'run':
      if FLAGS.embedding_size:
        say('(the whole run uses the course\'s one-hot inputs; --embedding_size ignored)')
      bench_run(text, names, say)
    elif part == 'layers':
      bench_layers(text, say)
    else:
      bench_mirror(text, say)


if __name__ == '__main__':
  app.run(main)
