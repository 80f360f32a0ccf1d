"""The course's training: the train step, validation, sampling and the printed log.

`Trainer.train_step` is the course's `session.run([optimizer, loss, train_prediction,
learning_rate])` as one `tf.function`: the unrolled loop from the saved state, the mean
softmax cross-entropy, `clip_by_global_norm`, and SGD at the staircase-decayed rate
`learning_rate * decay_rate ** (step // decay_steps)`. `Trainer.train_steps` runs several
of those steps in one call (the faster path; the same numbers).

`train` prints the course's log: `Average loss at step N: L learning rate: R`,
`Minibatch perplexity: P`, five samples between rows of `=` every ten summaries, and
`Validation set perplexity: P`.
"""
import contextlib
import math
import random
import threading
import weakref

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2
from tensorflow.python.eager import context
from tensorflow.python.framework import ops

from assignment6 import cells, course_backward, data
from assignment6.models import one_hot


# ---------------------------------------------------------------------------- arithmetic

@contextlib.contextmanager
def course_arithmetic():
  """The port's own function calls without Grappler's arithmetic optimizer, on this thread.

  The optimizer rewrites the sums of the bias gradients inside a while loop's body
  (`train_steps`) but not in a single step's graph, so the two paths would differ in the
  last bit of two biases, which SGD at rate 10 grows into different logs. Without it,
  several steps per call are bit for bit one call per step (and the course's graph run
  with the optimizer off).

  TensorFlow reads the option when a function is called, not when it is traced: every
  eager call of a `tf.function` carries the thread's `function_call_options` (a
  serialized ConfigProto, rebuilt from the context's config) as its `config_proto`
  attribute, and the runtime instantiates and optimizes the function once per (function,
  attributes), so calls inside and outside this block run their own instantiation and
  switching costs nothing after the first call. Only this thread's call options change
  for the block (the process-wide `tf.config.optimizer` options are never touched) and
  they are put back after it.
  """
  ctx = context.context()
  saved = ctx.function_call_options
  config = config_pb2.ConfigProto()
  config.ParseFromString(saved.config_proto_serialized)
  config.graph_options.rewrite_options.arithmetic_optimization = (
      rewriter_config_pb2.RewriterConfig.OFF)
  ctx.function_call_options = context.FunctionCallOptions(
      executor_type=saved.executor_type, config_proto=config)
  try:
    yield
  finally:
    ctx.function_call_options = saved


# ---------------------------------------------------------------- TF1's reference variables

# graph -> {tensor.ref(): the tensor TF1's aliased buffer held when the gradient read it}
_ALIASES = weakref.WeakKeyDictionary()
_GRADIENTS = {'MatMul': 'Assignment6Tf1RefMatMul', 'Mul': 'Assignment6Tf1RefMul'}
_registered = threading.Lock()


class _AliasedOp(object):
  """An op as its gradient sees it with some inputs replaced (the rest is the op's)."""

  def __init__(self, op, inputs):
    self._op = op
    self.inputs = inputs

  def __getattr__(self, name):
    return getattr(self._op, name)


def _aliased_gradient(op_type):
  original = ops._gradient_registry.lookup(op_type)  # TensorFlow's own, fast paths included

  def gradient(op, *grads):
    aliases = _ALIASES.get(op.graph, {})
    inputs = [aliases.get(x.ref(), x) for x in op.inputs]
    if all(a is b for a, b in zip(inputs, op.inputs)):
      return original(op, *grads)
    return original(_AliasedOp(op, inputs), *grads)

  return gradient


def _register_aliased_gradients():
  """Register the two gradients once, at the first Trainer that asks for them."""
  with _registered:
    for op_type, name in _GRADIENTS.items():
      try:
        ops._gradient_registry.lookup(name)
      except LookupError:
        ops.RegisterGradient(name)(_aliased_gradient(op_type))


@contextlib.contextmanager
def tf1_reference_reads(saved_output, saved_state):
  """Build the unroll inside this block to give it the gradient TF1's graph computed.

  With TF1's reference variables, reading `saved_output` and `saved_state` does not copy
  them: the read aliases the variable's buffer, and the course's
  `control_dependencies([saved_output.assign(output), saved_state.assign(state)])`
  overwrites it before the backward pass. So wherever the gradient of the first unrolled
  step reads them (`o^T dz` for `im, fm, cm, om`, the forget gate's `d(state) * state`),
  it reads the unroll's last output and state. saved_output, saved_state: the tensors the
  unroll starts from (read once). Yields `alias(output, state)`, to be called with the
  unroll's last output and state before `tf.gradients`. Inside the block MatMul and Mul get
  TensorFlow's own gradients, given the last values in place of those two tensors: the ops
  and their order are the normal graph's.
  """
  _register_aliased_gradients()
  graph = tf.compat.v1.get_default_graph()
  aliases = _ALIASES.setdefault(graph, {})

  def alias(output, state):
    for read, last in ((saved_output, output), (saved_state, state)):
      aliases[read.ref()] = last
      for op in read.consumers():  # ConcatCell's o[:, :R]: a whole slice forwards the
        if op.type == 'StridedSlice' and op.outputs[0].shape == read.shape:  # buffer
          aliases[op.outputs[0].ref()] = last

  with graph.gradient_override_map(_GRADIENTS):
    yield alias


class Trainer(tf.Module):
  """SGD on a `LanguageModel` as the course's optimizer does it (no Keras).

  learning_rate, decay_steps, decay_rate: `exponential_decay(..., staircase=True)`.
  clip_norm: the global norm the gradients are clipped to (the course's 1.25).
  seed: the dropout masks' seed (each step folds in its number: a resumed run draws the
  same masks).
  tf1_ref_variables: the gradient the course's graph computed with TensorFlow 1's
  reference variables (`tf1_reference_reads`): the first unrolled step's weight and forget
  gate gradients read the unroll's last output and state where the previous ones belong.
  False: the gradient the code means (resource variables).
  """

  def __init__(self, model, learning_rate=10.0, decay_steps=5000, decay_rate=0.1,
               clip_norm=1.25, seed=0, name='trainer', tf1_ref_variables=False):
    super().__init__(name=name)
    if tf1_ref_variables and getattr(model.cell, 'fused', False):
      raise ValueError('--tf1_ref_variables needs --cell=course or --cell=concat (the '
                       'fused kernel\'s gradient cannot be given the aliased reads)')
    if tf1_ref_variables and getattr(model.cell, 'precision', 'float32') != 'float32':
      raise ValueError('--precision=%s cannot be used with --tf1_ref_variables (it '
                       'reproduces the course\'s float32 arithmetic bit for bit)'
                       % model.cell.precision)
    self.tf1_ref_variables = tf1_ref_variables
    self.model = model
    self.initial_learning_rate = learning_rate
    self.decay_steps = decay_steps
    self.decay_rate = decay_rate
    self.clip_norm = clip_norm
    self.seed = seed
    self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name='global_step')
    # autograph=False: the graph is plain Python code traced once, and converting the whole
    # call tree (unroll, cell) cost a second of every run's start.
    self._step_function = tf.function(self._step, autograph=False)
    self._steps_function = None  # traced once, at the first call, for any number of steps

  def learning_rate(self):
    """The staircase decay, in float32 as `tf.train.exponential_decay` computes it."""
    p = tf.floor(tf.cast(self.global_step, tf.float32) / self.decay_steps)
    return self.initial_learning_rate * tf.pow(tf.constant(self.decay_rate, tf.float32), p)

  def train_step(self, batches):
    """One step on ids (T + 1, B): inputs batches[:-1], labels batches[1:].

    Returns the loss, train_prediction (T * B, V) and the learning rate it used: the
    course's `session.run([optimizer, loss, train_prediction, learning_rate])`.
    """
    with course_arithmetic():
      return self._step_function(batches)

  def train_steps(self, batches):
    """Several steps in one call: ids (K, T + 1, B) -> losses (K,), the last step's
    train_prediction and learning rate. The same numbers as K calls of `train_step`."""
    if self._steps_function is None:
      signature = tf.TensorSpec([None] + list(batches.shape[1:]), tf.int32)
      self._steps_function = tf.function(self._steps, input_signature=[signature],
                                         autograph=False)
    with course_arithmetic():
      return self._steps_function(batches)

  def _step(self, batches):
    loss, logits, learning_rate = self._update(batches)
    return loss, tf.nn.softmax(logits), learning_rate

  def _steps(self, batches):
    steps = tf.shape(batches)[0]

    def body(k, losses, logits, learning_rate):
      with course_backward.written_unroll(self):  # the faster path; _step is its twin
        loss, logits, learning_rate = self._update(batches[k])
      return k + 1, losses.write(k, loss), logits, learning_rate

    _, losses, logits, learning_rate = tf.while_loop(
        lambda k, *_: k < steps, body,
        (tf.constant(0), tf.TensorArray(tf.float32, size=steps),
         tf.zeros([(batches.shape[1] - 1) * batches.shape[2], self.model.vocabulary_size]),
         tf.constant(0.0)))
    return losses.stack(), tf.nn.softmax(logits), learning_rate

  @property
  def written_gradient(self):
    """Whether `train_steps` takes the cell's gradient from `course_backward`: the course's
    own cell (not a subclass: an exercise's cell runs the learner's step) on one-hot
    inputs. The same bits as `train_step`'s `tf.gradients` through the loop, fewer ops."""
    return type(self.model.cell) is cells.CourseCell and not self.model.embedding_size

  def _update(self, batches):
    """The step's graph: ids (T + 1, B) -> loss, logits (T * B, V), learning rate."""
    model = self.model
    learning_rate = self.learning_rate()
    dropout_seed = None
    if model.keep_prob < 1.0:
      dropout_seed = tf.random.experimental.stateless_fold_in(
          tf.constant([self.seed, 0], tf.int64), self.global_step)
    saved_output = tf.convert_to_tensor(model.saved_output)  # read once: (B, P + Q)
    saved_state = tf.convert_to_tensor(model.saved_state)  # (B, H)
    if self.tf1_ref_variables:
      with tf1_reference_reads(saved_output, saved_state) as alias:
        outputs, output, state = model.unroll(batches[:-1], saved_output, saved_state,
                                              dropout_seed)
      alias(output, state)
    else:
      outputs, output, state = model.unroll(batches[:-1], saved_output, saved_state,
                                            dropout_seed)
    logits = model.logits(outputs)  # (T * B, V)
    labels = one_hot(tf.reshape(batches[1:], [-1]), model.vocabulary_size)  # (T * B, V)
    loss = tf.reduce_mean(
        tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    # Symbolic gradients in the traced graph, as the course's `compute_gradients` (and what
    # `tf1_reference_reads` overrides). Measured (TF 2.16.2 and 2.21, 300 steps against
    # course_tf1, the course's cell): a GradientTape here gives the same bits too, and so
    # do `tanh(state) * output_gate` and `i ix + (o im + ib)`; `o im + (i ix + ib)`, the
    # bias added first, or a sigmoid written through tanh differ from step 1 (step 0 for
    # the sigmoid) and end 0.2 to 0.7 apart in a prediction. What holds the bits is the
    # cell's float32 ops in the course's order and grouping, not the choice of tape.
    variables = model.trainable_variables
    gradients = tf.gradients(loss, variables)
    gradients, _ = tf.clip_by_global_norm(gradients, self.clip_norm)
    for gradient, variable in zip(gradients, variables):
      if isinstance(gradient, tf.IndexedSlices):  # an embedding's rows
        variable.scatter_sub(tf.IndexedSlices(learning_rate * gradient.values,
                                              gradient.indices))
      else:  # the op the course's GradientDescentOptimizer applies: var -= alpha * delta
        tf.raw_ops.ResourceApplyGradientDescent(var=variable.handle, alpha=learning_rate,
                                                delta=gradient)
    # State saving across unrollings.
    model.saved_output.assign(output)
    model.saved_state.assign(state)
    self.global_step.assign_add(1)
    return loss, logits, learning_rate


# ---------------------------------------------------------------------------- validation

PIECE = 100_000  # tokens scored per call (a 729-way softmax over 100,000 is 0.3 GB)

def validation_batches(text):
  """The course's validation generator, `BatchGenerator(valid_text, 1, 1)`, after the two
  calls whose batches the notebook prints: validation starts at the third character and
  goes round the text once. Every validation and `--eval_data` goes through it."""
  valid_batches = data.BatchGenerator(text, 1, 1)
  valid_batches.next_ids()
  valid_batches.next_ids()
  return valid_batches


def validation_logprob(model, valid_batches, valid_size, fast=True):
  """Summed nats of `valid_size` next-token predictions, the course's validation loop.

  fast: one `tf.function` call; else the course's one `sample_prediction` per token.
  """
  with course_arithmetic():
    return _validation_logprob(model, valid_batches, valid_size, fast)


def _validation_logprob(model, valid_batches, valid_size, fast):
  if fast:
    ids = valid_batches.next_ids(valid_size)[:, 0]  # (valid_size + 1,)
    output, state = model.zero_state(1)
    nats = 0.0
    for start in range(0, valid_size, PIECE):  # long texts in pieces, the state carried
      piece, output, state = model.sequence_logprob(
          tf.constant(ids[start:start + PIECE + 1]), output, state)
      nats += float(piece)
    return nats
  model.reset_sample_state()
  valid_logprob = 0
  for _ in range(valid_size):
    b = valid_batches.next_ids()  # (2, 1)
    predictions = model.sample_prediction(tf.constant(b[0])).numpy()
    valid_logprob = valid_logprob + data.logprob(predictions, one_hot_np(b[1], model))
  return valid_logprob


def one_hot_np(ids, model):
  return data.one_hot(ids, model.vocabulary_size)


def is_bigram(model):
  """Whether the model's tokens are pairs of its vocabulary's characters."""
  return model.vocabulary_size == model.vocabulary.size ** 2 != model.vocabulary.size


def token_text(model, ids):
  """The characters of token ids (characters or bigrams)."""
  if is_bigram(model):
    return model.vocabulary.bigram_text(ids, model.stride)
  return model.vocabulary.text(ids)


def tokens_of(model, text):
  """A text's token ids for the model: characters, or bigrams cut with its stride."""
  ids = model.vocabulary.ids(text)[0]
  if is_bigram(model):
    return data.bigram_ids(ids, model.stride, model.vocabulary.size)
  return ids


# ---------------------------------------------------------------------------- sampling

def sample_text(model, length=80, count=5, fast=True):
  """The course's samples: `count` strings of `length` characters, each from a reset
  state, its first token drawn from `random_distribution()`, then each next token
  drawn from the prediction by `sample_distribution` (Python's `random`).

  fast: all strings in one `tf.function` call, given the same random draws in the same
  order; else the course's one `sample_prediction` call per token.
  """
  with course_arithmetic():
    return _sample_text(model, length, count, fast)


def _sample_text(model, length, count, fast):
  if is_bigram(model):
    tokens = length // 2 if model.stride == 2 else length - 1
  else:
    tokens = length
  size = model.vocabulary_size
  if fast:
    firsts, uniforms = [], []
    for _ in range(count):
      firsts.append(data.sample_distribution(data.random_distribution(size)[0]))
      uniforms.append([random.uniform(0, 1) for _ in range(tokens - 1)])
    ids = model.sample_sequences(tf.constant(firsts, tf.int32),
                                 tf.constant(uniforms, tf.float64)).numpy()
    return [token_text(model, row) for row in ids]
  sentences = []
  for _ in range(count):
    feed = data.sample(data.random_distribution(size))
    ids = [int(np.argmax(feed))]
    model.reset_sample_state()
    for _ in range(tokens - 1):
      prediction = model.sample_prediction(tf.constant(ids[-1:], tf.int32)).numpy()
      ids.append(int(np.argmax(data.sample(prediction))))
    sentences.append(token_text(model, ids))
  return sentences


# ---------------------------------------------------------------------------- the run

def summary_steps(start, num_steps, summary_frequency):
  """The chunks of steps a run makes between log lines: [(first, last), ...]."""
  chunks = []
  step = start
  while step < num_steps:
    last = min((step + summary_frequency - 1) // summary_frequency * summary_frequency,
               num_steps - 1)
    chunks.append((step, last))
    step = last + 1
  return chunks


def train(trainer, train_batches, valid_batches, num_steps, summary_frequency=100,
          valid_size=1000, log=print, fast=True, mean_loss=0.0, after_chunk=None,
          step_losses=None, record=None):
  """The course's training loop and log, from `trainer.global_step` to `num_steps`.

  fast: each chunk of steps between two log lines in one `train_steps` call, validation
  and sampling in one call each; else one call per step and per token, as the course.
  after_chunk(step, mean_loss): called after each chunk (checkpoints); may stop the run
  by returning False.
  step_losses: a list to which the loss of every step is appended (a float), in order.
  record(step, figures): called at each log line with the figures it prints, unrounded
  (`average_loss`, `learning_rate`, `minibatch_perplexity`, `validation_perplexity`,
  `validation_bits_per_character`, and `samples`: the sampled strings, or None).
  Returns the last validation perplexity per token (None if none was measured).
  """
  model = trainer.model
  validation_perplexity = None
  # The course adds session.run's np.float32 losses to a Python number: NumPy 1 sums them
  # in float64, NumPy 2 (NEP 50) in float32. The port adds the same np.float32s the same
  # way, so its averages print as the course's code prints them under the same NumPy.
  start = int(trainer.global_step.numpy())
  for first, last in summary_steps(start, num_steps, summary_frequency):
    if fast:
      ids = np.stack([train_batches.next_ids() for _ in range(first, last + 1)])
      losses, predictions, lr = trainer.train_steps(tf.constant(ids))
      batches = ids[-1]
      for l in losses.numpy():
        mean_loss += l  # np.float32, as the course's `mean_loss += l` (see below)
        if step_losses is not None:
          step_losses.append(float(l))
    else:
      for _ in range(first, last + 1):
        batches = train_batches.next_ids()
        l, predictions, lr = trainer.train_step(tf.constant(batches))
        mean_loss += l.numpy()
        if step_losses is not None:
          step_losses.append(float(l))
    if not np.isfinite(mean_loss):
      raise FloatingPointError('the loss became %s by step %d' % (mean_loss, last))
    step = last
    if step % summary_frequency == 0:
      if step > 0:
        mean_loss = mean_loss / summary_frequency
      # The mean loss is an estimate of the loss over the last few batches.
      log('Average loss at step %d: %f learning rate: %f' % (step, mean_loss, float(lr)))
      figures = {'average_loss': mean_loss, 'learning_rate': float(lr), 'samples': None}
      mean_loss = 0.0
      labels = one_hot_np(batches[1:].reshape(-1), model)
      figures['minibatch_perplexity'] = float(np.exp(
          data.logprob(predictions.numpy(), labels)))
      log('Minibatch perplexity: %.2f' % figures['minibatch_perplexity'])
      if step % (summary_frequency * 10) == 0:
        # Generate some samples.
        log('=' * 80)
        figures['samples'] = sample_text(model, fast=fast)
        for sentence in figures['samples']:
          log(sentence)
        log('=' * 80)
      # Measure validation set perplexity.
      valid_logprob = validation_logprob(model, valid_batches, valid_size, fast)
      validation_perplexity = float(np.exp(valid_logprob / valid_size))
      log('Validation set perplexity: %.2f' % validation_perplexity)
      if record is not None:
        figures['validation_perplexity'] = validation_perplexity
        figures['validation_bits_per_character'] = (
            valid_logprob / valid_size / math.log(2) / model.stride)
        record(step, figures)
    if after_chunk is not None and after_chunk(step, mean_loss) is False:
      break
  return validation_perplexity


def per_character(nats, characters):
  """Perplexity per character and bits per character of `nats` over `characters`."""
  return math.exp(nats / characters), nats / characters / math.log(2)


def evaluate_text(model, text, fast=True):
  """Score a whole text as the course's validation scores its 1,000 characters.

  Each token predicts `model.stride` characters: a character model's token is one, a
  bigram model's pair two (stride 2). With overlapping pairs (stride 1) a prediction is
  scored on the whole pair although its first character is known: an upper bound on the
  nats of the one new character.
  Returns (perplexity per token, perplexity per character, bits per character,
  characters).
  """
  tokens = tokens_of(model, text)
  nats = validation_logprob(model, validation_batches(tokens), len(tokens), fast)
  characters = len(tokens) * model.stride
  perplexity, bits = per_character(nats, characters)
  return math.exp(nats / len(tokens)), perplexity, bits, characters
