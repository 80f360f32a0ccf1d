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
import math
import random

import numpy as np
import tensorflow as tf

from assignment6 import data
from assignment6.models import one_hot

# Grappler's arithmetic optimizer rewrites the sums of the bias gradients inside a
# while loop's body (`train_steps`) but not in a single step's graph, so the two paths would
# differ in the last bit of two biases, which SGD at rate 10 grows into different logs.
# Without it, several steps per call are bit for bit one call per step (and the course's).
tf.config.optimizer.set_experimental_options({'arithmetic_optimization': False})


class Trainer(tf.Module):
  """SGD on a `LanguageModel` as the course's optimizer does it (no Keras).

  learning_rate, decay_steps, decay_rate: `exponential_decay(..., staircase=True)`.
  clip_norm: the global norm the gradients are clipped to (the course's 1.25).
  seed: the dropout masks' seed (each step folds in its number: a resumed run draws the
  same masks).
  """

  def __init__(self, model, learning_rate=10.0, decay_steps=5000, decay_rate=0.1,
               clip_norm=1.25, seed=0, name='trainer'):
    super().__init__(name=name)
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
    return self._step_function(batches)

  def train_steps(self, batches):
    """Several steps in one call: ids (K, T + 1, B) -> losses (K,), the last step's
    train_prediction and learning rate. The same numbers as K calls of `train_step`."""
    if self._steps_function is None:
      signature = tf.TensorSpec([None] + list(batches.shape[1:]), tf.int32)
      self._steps_function = tf.function(self._steps, input_signature=[signature],
                                         autograph=False)
    return self._steps_function(batches)

  def _step(self, batches):
    loss, logits, learning_rate = self._update(batches)
    return loss, tf.nn.softmax(logits), learning_rate

  def _steps(self, batches):
    steps = tf.shape(batches)[0]

    def body(k, losses, logits, learning_rate):
      loss, logits, learning_rate = self._update(batches[k])
      return k + 1, losses.write(k, loss), logits, learning_rate

    _, losses, logits, learning_rate = tf.while_loop(
        lambda k, *_: k < steps, body,
        (tf.constant(0), tf.TensorArray(tf.float32, size=steps),
         tf.zeros([(batches.shape[1] - 1) * batches.shape[2], self.model.vocabulary_size]),
         tf.constant(0.0)))
    return losses.stack(), tf.nn.softmax(logits), learning_rate

  def _update(self, batches):
    """The step's graph: ids (T + 1, B) -> loss, logits (T * B, V), learning rate."""
    model = self.model
    learning_rate = self.learning_rate()
    dropout_seed = None
    if model.keep_prob < 1.0:
      dropout_seed = tf.random.experimental.stateless_fold_in(
          tf.constant([self.seed, 0], tf.int64), self.global_step)
    outputs, output, state = model.unroll(batches[:-1], model.saved_output,
                                          model.saved_state, dropout_seed)
    logits = model.logits(outputs)  # (T * B, V)
    labels = one_hot(tf.reshape(batches[1:], [-1]), model.vocabulary_size)  # (T * B, V)
    loss = tf.reduce_mean(
        tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    # Symbolic gradients in the traced graph, as the course's `compute_gradients`: they add
    # up each variable's contributions in the course's order, so the port's training is
    # the course's bit for bit (a GradientTape adds them in another order: the same maths,
    # last-bit differences that SGD at rate 10 grows to 1e-5 within 30 steps).
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
          valid_size=1000, log=print, fast=True, mean_loss=0.0, after_chunk=None):
  """The course's training loop and log, from `trainer.global_step` to `num_steps`.

  fast: each chunk of steps between two log lines in one `train_steps` call, validation
  and sampling in one call each; else one call per step and per token, as the course.
  after_chunk(step, mean_loss): called after each chunk (checkpoints); may stop the run
  by returning False.
  Returns the last validation perplexity per token (None if none was measured).
  """
  model = trainer.model
  validation_perplexity = None
  start = int(trainer.global_step.numpy())
  for first, last in summary_steps(start, num_steps, summary_frequency):
    if fast:
      ids = np.stack([train_batches.next_ids() for _ in range(first, last + 1)])
      losses, predictions, lr = trainer.train_steps(tf.constant(ids))
      batches = ids[-1]
      for l in losses.numpy():
        mean_loss += float(l)
    else:
      for _ in range(first, last + 1):
        batches = train_batches.next_ids()
        l, predictions, lr = trainer.train_step(tf.constant(batches))
        mean_loss += float(l)
    if not np.isfinite(mean_loss):
      raise FloatingPointError('the loss became %s by step %d' % (mean_loss, last))
    step = last
    if step % summary_frequency == 0:
      if step > 0:
        mean_loss = mean_loss / summary_frequency
      # The mean loss is an estimate of the loss over the last few batches.
      log('Average loss at step %d: %f learning rate: %f' % (step, mean_loss, float(lr)))
      mean_loss = 0.0
      labels = one_hot_np(batches[1:].reshape(-1), model)
      log('Minibatch perplexity: %.2f' % float(np.exp(
          data.logprob(predictions.numpy(), labels))))
      if step % (summary_frequency * 10) == 0:
        # Generate some samples.
        log('=' * 80)
        for sentence in sample_text(model, fast=fast):
          log(sentence)
        log('=' * 80)
      # Measure validation set perplexity.
      valid_logprob = validation_logprob(model, valid_batches, valid_size, fast)
      validation_perplexity = float(np.exp(valid_logprob / valid_size))
      log('Validation set perplexity: %.2f' % validation_perplexity)
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
