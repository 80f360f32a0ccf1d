"""The language models: the course's character LSTM, and the same graph for bigrams.

`LanguageModel` owns what the course's graph owns besides the cell: the classifier `w, b`,
`saved_output, saved_state` (the training state carried from one call to the next) and
`saved_sample_output, saved_sample_state` (the batch-1 state of sampling and validation).
Tokens go in as integer ids; the course's one-hot input is `tf.gather` of an identity
matrix (the same numbers as its one-hot placeholders), an embedding (Problem 2a) replaces
it with `tf.nn.embedding_lookup`.
"""
import numpy as np
import tensorflow as tf

from assignment6 import cells, data


def one_hot(ids, depth):
  """One-hot rows by `tf.gather` over a (depth, depth) identity: ids (...) -> (..., depth)."""
  return tf.gather(tf.eye(depth), ids)


class LanguageModel(tf.Module):
  """A cell, an input (one-hot or embedding) and the course's classifier and saved states.

  vocabulary_size: 27 characters, or 729 bigrams (Problem 2b).
  embedding_size: None for the course's one-hot inputs, else the embedding's width.
  keep_prob: dropout's keep probability on the non-recurrent connections (Problem 2c).
  stride: characters a token advances (1 for characters; 2 or 1 for bigrams).
  vocabulary: the characters (`data.Vocabulary`, text8's by default); the tokens are
  they, or their pairs when `vocabulary_size` is their number squared.
  """

  def __init__(self, cell, batch_size, vocabulary_size, embedding_size=None,
               keep_prob=1.0, seed=0, stride=1, name='model', vocabulary=None):
    super().__init__(name=name)
    self.vocabulary = vocabulary or data.TEXT8
    self.stride = stride
    self.cell = cell
    self.batch_size = batch_size
    self.vocabulary_size = vocabulary_size
    self.embedding_size = embedding_size or None
    self.keep_prob = keep_prob
    self.seed = seed
    seeds = cells.seed_stream(seed + 1_000_003)  # apart from the cell's seeds
    if self.embedding_size:
      self.embeddings = tf.Variable(tf.random.stateless_uniform(
          [vocabulary_size, self.embedding_size], next(seeds), -1.0, 1.0),
          name='embeddings')
    # Classifier weights and biases.
    self.w = tf.Variable(cells.course_init([cell.output_size, vocabulary_size],
                                           next(seeds)), name='w')
    self.b = tf.Variable(tf.zeros([vocabulary_size]), name='b')
    # Variables saving state across unrollings.
    self.saved_output = tf.Variable(tf.zeros([batch_size, cell.output_size]),
                                    trainable=False, name='saved_output')
    self.saved_state = tf.Variable(tf.zeros([batch_size, cell.num_nodes]),
                                   trainable=False, name='saved_state')
    # Sampling and validation eval: batch 1, no unrolling.
    self.saved_sample_output = tf.Variable(tf.zeros([1, cell.output_size]),
                                           trainable=False, name='saved_sample_output')
    self.saved_sample_state = tf.Variable(tf.zeros([1, cell.num_nodes]),
                                          trainable=False, name='saved_sample_state')

  def initial_variables(self):
    """The variables `--init_from` sets, by name: the cell's (the course's `ix ... ob`, or
    ConcatCell's `x_weights, m_weights, biases` and the paper's `w_ic ... w_pm`), then the
    classifier's `w, b` and `embeddings` if the model has them."""
    if isinstance(self.cell, cells.CourseCell):
      named = dict(self.cell.course_variables())  # in the course's order
    else:
      named = {v.name.split('/')[-1].split(':')[0]: v for v in self.cell.trainable_variables}
    named.update(w=self.w, b=self.b)
    if self.embedding_size:
      named['embeddings'] = self.embeddings
    return named

  def assign_initial_weights(self, weights):
    """Start from given values: weights, name -> array, as `initial_variables` names them;
    for ConcatCell the course's twelve `ix ... ob` may stand for `x_weights, m_weights,
    biases`. Raises a one-line ValueError naming the first name or shape that does not fit;
    assigns nothing then."""
    variables = self.initial_variables()
    weights = dict(weights)
    if isinstance(self.cell, cells.ConcatCell) and set(cells.COURSE_VARIABLES) <= set(weights):
      course = {name: weights.pop(name) for name in cells.COURSE_VARIABLES}
      for name in cells.COURSE_VARIABLES:
        expected = ((1 if name[1] == 'b' else self.cell.input_size if name[1] == 'x'
                     else self.cell.recurrent_size), self.cell.num_nodes)
        if np.shape(course[name]) != expected:
          raise ValueError('%r has shape %s; this model needs %s'
                           % (name, tuple(np.shape(course[name])), expected))
      for name, value in zip(('x_weights', 'm_weights', 'biases'),
                             cells.concatenate_gates(course)):
        weights[name] = value.numpy()
    for name in variables:
      if name not in weights:
        raise ValueError('no %r; this model needs %s' % (name, ', '.join(variables)))
    for name in weights:
      if name not in variables:
        raise ValueError('%r is not a variable of this model (it has %s)'
                         % (name, ', '.join(variables)))
    for name, variable in variables.items():
      if tuple(np.shape(weights[name])) != tuple(variable.shape):
        raise ValueError('%r has shape %s; this model needs %s'
                         % (name, tuple(np.shape(weights[name])), tuple(variable.shape)))
    for name, variable in variables.items():
      variable.assign(np.asarray(weights[name], np.float32))

  @property
  def input_size(self):
    return self.embedding_size or self.vocabulary_size

  def inputs(self, ids):
    """The cell's inputs for token ids: (...) -> (..., input_size)."""
    if self.embedding_size:
      return tf.nn.embedding_lookup(self.embeddings, ids)
    return one_hot(ids, self.vocabulary_size)

  def dropout(self, x, seed):
    """Dropout with keep probability `keep_prob`, stateless: the same seed, the same mask."""
    if self.keep_prob >= 1.0:
      return x
    return tf.nn.experimental.stateless_dropout(x, rate=1.0 - self.keep_prob, seed=seed)

  def unroll(self, ids, output, state, dropout_seed=None):
    """The unrolled LSTM loop: ids (T, B) from (output, state) -> T outputs (B, P + Q).

    With `dropout_seed` (training), dropout applies to each step's input and output
    (Zaremba et al. 2014: non-recurrent connections only); the state and the output fed
    to the next step are never dropped.
    """
    steps = ids.shape[0]
    inputs = self.inputs(ids)  # (T, B, input_size)
    if dropout_seed is not None:
      inputs = tf.stack([self.dropout(i, tf.random.experimental.stateless_fold_in(
          dropout_seed, 2 * t)) for t, i in enumerate(tf.unstack(inputs, num=steps))])
    if getattr(self.cell, 'fused', False):  # the loop in one fused op
      sequence, output, state = self.cell.sequence(inputs, output, state)  # (T, B, H)
      outputs = tf.unstack(sequence, num=steps)
    else:  # a Python loop: unrolled as the course's, traced once
      outputs = []
      for i in tf.unstack(inputs, num=steps):  # (B, input_size) each
        output, state = self.cell(i, output, state)
        outputs.append(output)
    if dropout_seed is not None:
      outputs = [self.dropout(o, tf.random.experimental.stateless_fold_in(
          dropout_seed, 2 * t + 1)) for t, o in enumerate(outputs)]
    return outputs, output, state

  def classifier(self, output):
    """The course's `xw_plus_b(output, w, b)`: (N, P + Q) -> logits (N, V)."""
    return tf.nn.bias_add(tf.matmul(output, self.w), self.b)

  def logits(self, outputs):
    """The classifier on the concatenated outputs: T x (B, P + Q) -> (T * B, V)."""
    return self.classifier(tf.concat(outputs, 0))

  def reset_sample_state(self):
    self.saved_sample_output.assign(tf.zeros_like(self.saved_sample_output))
    self.saved_sample_state.assign(tf.zeros_like(self.saved_sample_state))

  @tf.function(autograph=False)
  def sample_prediction(self, sample_input):
    """The course's `sample_prediction`: one step of the batch-1 cell from its saved state.

    sample_input: ids (1,). Returns probabilities (1, V); saves the new state.
    """
    output, state = self.cell(self.inputs(sample_input), self.saved_sample_output,
                              self.saved_sample_state)
    self.saved_sample_output.assign(output)
    self.saved_sample_state.assign(state)
    return tf.nn.softmax(self.classifier(output))

  def zero_state(self, batch):
    return (tf.zeros([batch, self.cell.output_size]),
            tf.zeros([batch, self.cell.num_nodes]))

  # autograph=False here and below: the loops are written as `tf.while_loop`s, so tracing
  # does not convert the call tree (cell, classifier, inputs): that conversion cost about
  # half a second of every run's first validation and first samples.
  @tf.function(autograph=False)
  def sequence_logprob(self, ids, output, state):
    """Validation in one call: the summed nats of ids[1:] given ids[:-1].

    ids (N + 1,) int32; output and state (1, ...) the batch-1 state to start from (zeros
    for the course's `reset_sample_state`). Returns (nats, output, state), so a long text
    goes in pieces. Equals N calls of `sample_prediction` scored by the course's `logprob`
    (probabilities clamped at 1e-10, summed in float64).
    """
    if self.cell.can_fuse:  # the whole piece in one op: the fused kernel
      sequence, output, state = self.cell.sequence(self.inputs(ids[:-1, None]), output,
                                                   state)
      probabilities = tf.nn.softmax(self.classifier(sequence[:, 0]))  # (N, V)
      picked = tf.gather(probabilities, ids[1:], batch_dims=1)  # (N,)
      nats = -tf.reduce_sum(tf.math.log(tf.maximum(tf.cast(picked, tf.float64), 1e-10)))
      return nats, output, state

    def body(t, nats, output, state):  # one token: the cell, then its prediction's nats
      output, state = self.cell(self.inputs(tf.reshape(ids[t], [1])), output, state)
      probabilities = tf.nn.softmax(self.classifier(output))  # (1, V)
      p = tf.maximum(tf.cast(probabilities[0, ids[t + 1]], tf.float64), 1e-10)
      return t + 1, nats - tf.math.log(p), output, state

    _, nats, output, state = tf.while_loop(
        lambda t, *_: t < tf.shape(ids)[0] - 1, body,
        (tf.constant(0), tf.constant(0.0, tf.float64), output, state))
    return nats, output, state

  @tf.function(autograph=False)
  def sample_sequences(self, first_ids, uniforms):
    """Sampling in one call: S sequences, each from a zero state, drawn by inverse CDF.

    first_ids (S,) int32, uniforms (S, L - 1) float64: the `random.uniform` draws that the
    course's `sample_distribution` would make, in order. Returns ids (S, L).
    """
    count = tf.shape(first_ids)[0]
    output, state = self.zero_state(count)
    sampled = tf.TensorArray(tf.int32, size=tf.shape(uniforms)[1] + 1)
    sampled = sampled.write(0, first_ids)

    def body(t, feed, output, state, sampled):  # one token for every sequence
      output, state = self.cell(self.inputs(feed), output, state)
      probabilities = tf.nn.softmax(self.classifier(output))  # (S, V)
      cumulative = tf.cumsum(tf.cast(probabilities, tf.float64), axis=1)  # (S, V)
      below = tf.cast(cumulative < uniforms[:, t:t + 1], tf.int32)
      feed = tf.minimum(tf.reduce_sum(below, axis=1), self.vocabulary_size - 1)  # (S,)
      return t + 1, feed, output, state, sampled.write(t + 1, feed)

    _, _, _, _, sampled = tf.while_loop(
        lambda t, *_: t < tf.shape(uniforms)[1], body,
        (tf.constant(0), first_ids, output, state, sampled))
    return tf.transpose(sampled.stack())

  @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32),
                                tf.TensorSpec([None, None], tf.float64),
                                tf.TensorSpec([], tf.float32), tf.TensorSpec([], tf.bool)])
  def sample_after(self, prime_ids, uniforms, temperature, argmax):
    """Continue S primes by N tokens: the state warmed on each prime, then inverse CDF.

    prime_ids (S, P) int32, P >= 1: the state reads prime_ids[:, :-1], then each step feeds
    the last token and draws the next from softmax(logits / temperature) with the next
    uniform, as the course's `sample_distribution` (the first id whose cumulative
    probability reaches the draw). uniforms (S, N) float64; temperature () float32 (1: the
    course's sampling, exactly); argmax () bool: the most likely token instead (greedy).
    Returns the N new ids (S, N). With P = 1 and temperature 1 it is `sample_sequences`.
    """
    count = tf.shape(prime_ids)[0]
    output, state = self.zero_state(count)
    for t in tf.range(tf.shape(prime_ids)[1] - 1):  # warm the state on the prime
      output, state = self.cell(self.inputs(prime_ids[:, t]), output, state)
    temperature = tf.where(argmax, tf.constant(1.0), temperature)  # no 0 division
    feed = prime_ids[:, -1]
    sampled = tf.TensorArray(tf.int32, size=tf.shape(uniforms)[1], element_shape=[None])
    for t in tf.range(tf.shape(uniforms)[1]):
      output, state = self.cell(self.inputs(feed), output, state)
      logits = self.classifier(output) / temperature  # (S, V)
      probabilities = tf.nn.softmax(logits)  # (S, V)
      cumulative = tf.cumsum(tf.cast(probabilities, tf.float64), axis=1)  # (S, V)
      below = tf.cast(cumulative < uniforms[:, t:t + 1], tf.int32)
      drawn = tf.minimum(tf.reduce_sum(below, axis=1), self.vocabulary_size - 1)  # (S,)
      feed = tf.where(argmax, tf.argmax(logits, axis=1, output_type=tf.int32), drawn)
      sampled = sampled.write(t, feed)
    return tf.reshape(tf.transpose(sampled.stack()), [count, -1])

  @tf.function(input_signature=[tf.TensorSpec([None], tf.int32)])
  def log_probabilities(self, ids):
    """Each token's log-probability given those before it, from a zero state.

    ids (N + 1,) int32 -> (N,) float64 nats <= 0: log p(ids[t + 1] | ids[:t + 1]), the
    probability clamped at 1e-10 as the course's `logprob` does, one cell step at a time
    (the reference twin of `sequence_logprob`'s sum).
    """
    output, state = self.zero_state(1)
    scores = tf.TensorArray(tf.float64, size=tf.shape(ids)[0] - 1, element_shape=[])
    for t in tf.range(tf.shape(ids)[0] - 1):
      output, state = self.cell(self.inputs(tf.reshape(ids[t], [1])), output, state)
      probabilities = tf.nn.softmax(self.classifier(output))  # (1, V)
      p = tf.maximum(tf.cast(probabilities[0, ids[t + 1]], tf.float64), 1e-10)
      scores = scores.write(t, tf.math.log(p))
    return scores.stack()
