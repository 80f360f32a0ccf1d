"""Problem 3: a sequence-to-sequence LSTM that mirrors every word of a sentence.

    the quick brown fox  ->  eht kciuq nworb xof

The course points to Sutskever, Vinyals & Le (2014), "Sequence to sequence learning with
neural networks": an encoder LSTM reads the source (reversed, which they found helps), a
decoder LSTM starts from the encoder's final (output, state), is fed a GO symbol and then
its own previous character, and emits characters until EOS. Teacher forcing in training
(the decoder is fed the true previous character); greedy or beam-search decoding after.

With `attention` the decoder also looks at every encoder output, as in Luong, Pham &
Manning (2015), "global attention" with the "general" score and input feeding (see
`Mirror.attend`). Both LSTMs are the port's `cells.ConcatCell`.

Data flows one way: text -> `split_words` (train, validation, test parts of the corpus)
-> `sample_sentences` / `test_sentences` -> `make_batch` (ids, masks) -> `Mirror`
(encode, decode) -> `Adam` + `train_step` -> `greedy_decode` / `beam_search` ->
`accuracy_by_length`.
"""
import math
import time

import numpy as np
import tensorflow as tf

from assignment6 import cells
from assignment6 import data

# The symbols: the course's 27 (0 is the space, 1..26 are a..z), then GO and EOS.
GO = data.vocabulary_size  # 27: the decoder's first input
EOS = data.vocabulary_size + 1  # 28: the decoder's last output
VOCABULARY_SIZE = data.vocabulary_size + 2  # 29
PAD = 0  # padded positions hold a space; the masks say they are not there
FRACTIONS = (0.9, 0.05, 0.05)  # train, validation, test: consecutive parts of the text
EXAMPLE = 'the quick brown fox'


# ---------------------------------------------------------------------------- the task

def mirror(text):
  """The target: every word reversed, words and spaces kept where they are.

  'the quick' -> 'eht kciuq'; repeated spaces stay ('a  bc' -> 'a  cb'), so the target
  always has the source's length.
  """
  return ' '.join(word[::-1] for word in text.split(' '))


def check_text(text, name='--mirror'):
  """Raise a one-line `data.DataError` if `text` holds a character outside a-z and space."""
  for position, char in enumerate(text):
    if char != ' ' and not 'a' <= char <= 'z':
      raise data.DataError(
          '%s: %r at position %d is not in text8\'s alphabet (a-z and space); lower-case '
          'the text and remove other characters' % (name, char, position))
  if not text.strip():
    raise data.DataError('%s: no words to mirror; give some words in a-z' % name)


def bucket_length(num_words):
  """The padded source length for sentences of `num_words` words: 8 n + 6 characters.

  On text8 this holds 99-99.5% of n-word runs (mean 5.94 n - 1 characters); training
  skips the longer ones, evaluation keeps them.
  """
  return 8 * num_words + 6


def split_words(text, fractions=FRACTIONS):
  """The corpus' words cut into consecutive, disjoint parts: train, validation, test."""
  words = text.split()
  bounds = np.cumsum([0] + [int(f * len(words)) for f in fractions])
  return [words[bounds[k]:bounds[k + 1]] for k in range(len(fractions))]


def sample_sentences(words, batch_size, num_words, rng, max_length=None):
  """`batch_size` runs of `num_words` consecutive words at random places in `words`.

  Runs longer than `max_length` characters are drawn again.
  """
  sentences = []
  while len(sentences) < batch_size:
    start = int(rng.integers(0, len(words) - num_words + 1))
    sentence = ' '.join(words[start:start + num_words])
    if max_length is None or len(sentence) <= max_length:
      sentences.append(sentence)
  return sentences


def test_sentences(words, max_words=8, count=1000, seed=0):
  """Held-out sentences by length: {n: `count` runs of n words} for n = 1..max_words.

  The runs start at random places (a fixed seed), lengths unfiltered.
  """
  rng = np.random.default_rng(seed)
  return {n: sample_sentences(words, count, n, rng) for n in range(1, max_words + 1)}


def make_batch(sentences, source_length=None, reverse_source=True):
  """Ids and masks for a batch of sentences (padded to `source_length`, else the longest).

  Returns a dict of NumPy arrays, S = source_length, T = S + 1:
    source (B, S) int32: the characters, each sentence reversed with `reverse_source`;
    source_mask (B, S) float32: 1 where a character is;
    decoder_inputs (B, T) int32: GO, then the target's characters (teacher forcing);
    targets (B, T) int32: the target's characters, then EOS;
    target_mask (B, T) float32: 1 up to and including EOS.
  """
  lengths = [len(s) for s in sentences]
  source_length = source_length or max(lengths)
  batch = len(sentences)
  source = np.full((batch, source_length), PAD, np.int32)
  decoder_inputs = np.full((batch, source_length + 1), PAD, np.int32)
  targets = np.full((batch, source_length + 1), PAD, np.int32)
  for row, sentence in enumerate(sentences):
    ids = data.text_to_ids(sentence)[0]
    target = data.text_to_ids(mirror(sentence))[0]
    n = len(ids)
    source[row, :n] = ids[::-1] if reverse_source else ids
    decoder_inputs[row, 0] = GO
    decoder_inputs[row, 1:n + 1] = target
    targets[row, :n] = target
    targets[row, n] = EOS
  positions = np.arange(source_length + 1)[None, :]
  lengths = np.asarray(lengths)[:, None]
  return dict(source=source,
              source_mask=(positions[:, :-1] < lengths).astype(np.float32),
              decoder_inputs=decoder_inputs, targets=targets,
              target_mask=(positions <= lengths).astype(np.float32))


def ids_to_sentence(ids):
  """Decoded ids -> text, stopping at the first EOS (GO and EOS are never characters)."""
  chars = []
  for i in ids:
    if i == EOS:
      break
    chars.append(data.id2char(int(i)) if i < data.vocabulary_size else '?')
  return ''.join(chars)


# ---------------------------------------------------------------------------- the model

def uniform_init(shape, seed, fan_in):
  """Uniform in +-1/sqrt(fan_in): the course's init (mean -0.1) is made for 64 cells."""
  limit = 1.0 / math.sqrt(fan_in)
  return tf.random.stateless_uniform(shape, seed=seed, minval=-limit, maxval=limit)


def one_hot(ids):
  """(...) int -> (..., VOCABULARY_SIZE) float32, as the course's one-hot inputs."""
  return tf.one_hot(ids, VOCABULARY_SIZE)


def last_steps(outputs, states, source_mask):
  """Each sentence's (output, state) at its last character: outputs, states (S, B, H),
  source_mask (B, S) -> (B, H), (B, H)."""
  last = tf.cast(tf.reduce_sum(source_mask, axis=1), tf.int32) - 1  # (B,)
  where = tf.stack([last, tf.range(tf.shape(source_mask)[0])], axis=1)  # (B, 2)
  return tf.gather_nd(outputs, where), tf.gather_nd(states, where)


class Mirror(tf.Module):
  """The encoder-decoder: two ConcatCells, a classifier `w, b`, optionally attention.

  num_nodes H: both LSTMs' width. The encoder's input is the one-hot character (29); the
  decoder's is the one-hot previous character, and with attention also the previous step's
  attentional vector (input feeding): 29 + H.
  """

  def __init__(self, num_nodes=256, attention=True, reverse_source=True, seed=0,
               name='mirror'):
    super().__init__(name=name)
    self.num_nodes = num_nodes
    self.attention = bool(attention)
    self.reverse_source = bool(reverse_source)
    decoder_input = VOCABULARY_SIZE + (num_nodes if attention else 0)
    self.encoder = cells.ConcatCell(VOCABULARY_SIZE, num_nodes, seed=seed, name='encoder')
    self.decoder = cells.ConcatCell(decoder_input, num_nodes, seed=seed + 1, name='decoder')
    seeds = cells.seed_stream(seed + 1_000_003)
    for cell in (self.encoder, self.decoder):
      # Re-initialized for H cells; forget-gate biases at 1 (Jozefowicz et al. 2015).
      cell.x_weights.assign(uniform_init(cell.x_weights.shape, next(seeds), num_nodes))
      cell.m_weights.assign(uniform_init(cell.m_weights.shape, next(seeds), num_nodes))
      forget = np.zeros([1, 4 * num_nodes], np.float32)
      forget[:, num_nodes:2 * num_nodes] = 1.0  # GATES order: input, forget, update, output
      cell.biases.assign(forget)
    if attention:
      self.attention_weights = tf.Variable(  # W_a (H, H)
          uniform_init([num_nodes, num_nodes], next(seeds), num_nodes), name='attention_weights')
      self.attentional_weights = tf.Variable(  # W_c (2H, H)
          uniform_init([2 * num_nodes, num_nodes], next(seeds), 2 * num_nodes),
          name='attentional_weights')
    self.w = tf.Variable(uniform_init([num_nodes, VOCABULARY_SIZE], next(seeds), num_nodes),
                         name='w')
    self.b = tf.Variable(tf.zeros([VOCABULARY_SIZE]), name='b')
    self.decode_step = tf.function(self._decode_step, input_signature=[
        tf.TensorSpec([None], tf.int32), tf.TensorSpec([None, num_nodes], tf.float32),
        tf.TensorSpec([None, num_nodes], tf.float32),
        tf.TensorSpec([None, num_nodes], tf.float32),
        tf.TensorSpec([None, None, num_nodes], tf.float32),
        tf.TensorSpec([None, None, num_nodes], tf.float32),
        tf.TensorSpec([None, None], tf.float32)])
    self.fast_encode = tf.function(self._fast_encode, input_signature=[
        tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None, None], tf.float32)])

  def encode(self, source, source_mask):
    """The encoder over source (B, S) ids with source_mask (B, S).

    Returns memory (B, S, H): its outputs (zero where padded), keys (B, S, H): memory W_a
    (None without attention), and its final (output, state), each (B, H), taken at each
    sentence's last character (padded steps leave them as they are).
    """
    batch = tf.shape(source)[0]
    x_parts = self.encoder.input_projection(
        tf.reshape(one_hot(source), [-1, VOCABULARY_SIZE]))  # (B * S, 4H)
    x_parts = tf.reshape(x_parts, [batch, -1, 4 * self.num_nodes])  # (B, S, 4H)
    o = tf.zeros([batch, self.num_nodes])  # (B, H)
    state = tf.zeros([batch, self.num_nodes])  # (B, H)
    outputs = []
    for t in range(source.shape[1]):  # unrolled: S is fixed for a traced batch shape
      new_o, new_state = self.encoder.step(x_parts[:, t], o, state)
      keep = source_mask[:, t:t + 1]  # (B, 1)
      o = keep * new_o + (1.0 - keep) * o
      state = keep * new_state + (1.0 - keep) * state
      outputs.append(keep * new_o)
    memory = tf.stack(outputs, axis=1)  # (B, S, H)
    keys = None
    if self.attention:
      keys = tf.einsum('bsh,hk->bsk', memory, self.attention_weights)  # (B, S, H)
    return memory, keys, o, state

  def _fast_encode(self, source, source_mask):
    """`encode` in one fused op (`cells.block_lstm`), no masks, any (B, S): the
    decoders' encoder. Returns memory (B, S, H; not zeroed where padded: attention gives
    those positions no weight), keys (memory without attention) and the final (o, state)
    at each sentence's last character."""
    batch = tf.shape(source)[0]
    zeros = tf.zeros([batch, self.num_nodes])  # (B, H)
    # 30 inputs, the last never set (a zero row of weights): BlockLSTM warns on every
    # call whose batch and input sizes are both odd.
    x_weights = tf.concat([self.encoder.x_weights, tf.zeros([1, 4 * self.num_nodes])], 0)
    outputs, states = cells.block_lstm(
        x_weights, self.encoder.m_weights, self.encoder.biases,
        tf.one_hot(tf.transpose(source), VOCABULARY_SIZE + 1), zeros, zeros,
        all_states=True)  # (S, B, H) each
    o, state = last_steps(outputs, states, source_mask)
    memory = tf.transpose(outputs, [1, 0, 2])  # (B, S, H)
    keys = memory
    if self.attention:
      keys = tf.einsum('bsh,hk->bsk', memory, self.attention_weights)  # (B, S, H)
    return memory, keys, o, state

  def attend(self, h, memory, keys, source_mask):
    """Luong et al. (2015) global attention, general score, for decoder outputs h (B, H):

        score(h_t, e_s) = h_t^T W_a e_s          (keys = e W_a, computed once)
        a_t(s)          = softmax_s(score)       (padded positions get -1e9)
        c_t             = sum_s a_t(s) e_s
        h~_t            = tanh(W_c [c_t; h_t])

    Returns h~_t (B, H), which the classifier reads and the next step is fed, and the
    alignment a_t (B, S).
    """
    scores = tf.einsum('bh,bsh->bs', h, keys)  # (B, S)
    scores += (source_mask - 1.0) * 1e9
    alignment = tf.nn.softmax(scores, axis=1)  # (B, S)
    context = tf.einsum('bs,bsh->bh', alignment, memory)  # (B, H)
    attentional = tf.tanh(tf.matmul(tf.concat([context, h], 1),
                                    self.attentional_weights))  # (B, H)
    return attentional, alignment

  def fast_attend(self, h, memory, keys, source_mask, record):
    """`attend` reading memory and keys through `tf.stop_gradient`: `Trainer` sums their
    gradients over all steps at once from what `record` (an AttentionRecord) keeps."""
    scores = tf.einsum('bh,bsh->bs', h, tf.stop_gradient(keys))  # (B, S)
    record.scores.append(scores)
    record.outputs.append(h)
    alignment = tf.nn.softmax(scores + (source_mask - 1.0) * 1e9, axis=1)  # (B, S)
    context = tf.einsum('bs,bsh->bh', alignment, tf.stop_gradient(memory))  # (B, H)
    record.alignments.append(alignment)
    record.contexts.append(context)
    attentional = tf.tanh(tf.matmul(tf.concat([context, h], 1),
                                    self.attentional_weights))  # (B, H)
    return attentional, alignment

  def decoder_cell(self, previous_ids, o, state, attentional, memory, keys, source_mask):
    """One decoder step from the previous character ids (B,): logits (B, V) and the state.

    Returns logits, o, state, attentional (B, H; zeros without attention), alignment
    (B, S; None without attention).
    """
    i = one_hot(previous_ids)  # (B, V)
    if self.attention:
      i = tf.concat([i, attentional], axis=1)  # (B, V + H): input feeding
    o, state = self.decoder(i, o, state)
    alignment = None
    top = o
    if self.attention:
      attentional, alignment = self.attend(o, memory, keys, source_mask)
      top = attentional
    logits = tf.matmul(top, self.w) + self.b  # (B, V)
    return logits, o, state, attentional, alignment

  def initial_attentional(self, o):
    return tf.zeros_like(o)  # (B, H)

  def loss(self, batch):
    """Mean cross-entropy (nats per target character, EOS included), teacher forcing."""
    memory, keys, o, state = self.encode(batch['source'], batch['source_mask'])
    attentional = self.initial_attentional(o)
    losses = []
    for t in range(batch['decoder_inputs'].shape[1]):  # unrolled, T = S + 1
      logits, o, state, attentional, _ = self.decoder_cell(
          batch['decoder_inputs'][:, t], o, state, attentional, memory, keys,
          batch['source_mask'])
      losses.append(tf.nn.sparse_softmax_cross_entropy_with_logits(
          labels=batch['targets'][:, t], logits=logits))  # (B,)
    losses = tf.stack(losses, axis=1)  # (B, T)
    mask = batch['target_mask']
    return tf.reduce_sum(losses * mask) / tf.reduce_sum(mask)

  def fast_loss(self, batch):
    """`loss` with fewer, larger ops: its faster twin (tests compare the two, and the
    gradients `Trainer` takes through each). Returns the loss and an `AttentionRecord`
    (None without attention).

    - No masks in the encoder: a sentence's padding follows its characters, so the steps
      that read them are the same; its final (output, state) is gathered at its last
      character, and attention gives a padded position exactly 0 weight (and gradient).
    - The input side of every gate is a lookup of x_weights' rows for all steps at once
      (the encoder's characters, and the decoder's, known under teacher forcing); the
      decoder multiplies [attentional, o] (B, 2H) by one stacked (2H, 4H) matrix.
    - Memory and keys are read through `tf.stop_gradient` in the decoder's steps; their
      gradients are summed over the steps in one product each (`attention_gradients`).
    - The classifier and the loss run once over all T steps.
    """
    source, source_mask = batch['source'], batch['source_mask']
    size = self.num_nodes
    x_parts = tf.unstack(tf.gather(self.encoder.x_weights, tf.transpose(source)) +
                         self.encoder.biases)  # S x (B, 4H)
    o = state = tf.zeros([tf.shape(source)[0], size])  # (B, H)
    outputs, states = [], []
    for x_part in x_parts:  # unrolled, no masks: padding only follows the characters
      o, state = self.encoder.step(x_part, o, state)
      outputs.append(o)
      states.append(state)
    outputs, states = tf.stack(outputs), tf.stack(states)  # (S, B, H) each
    o, state = last_steps(outputs, states, source_mask)  # (B, H) each
    memory = tf.transpose(outputs, [1, 0, 2])  # (B, S, H)
    keys = record = None
    if self.attention:
      keys = tf.einsum('bsh,hk->bsk', memory, self.attention_weights)  # (B, S, H)
      record = AttentionRecord(memory, keys)
    decoder = self.decoder
    x_weights = decoder.x_weights[:VOCABULARY_SIZE]  # (V, 4H): the one-hot characters'
    fed = decoder.x_weights[VOCABULARY_SIZE:]  # (H, 4H): the fed attentional vector's
    recurrent = tf.concat([fed, decoder.m_weights], 0) if self.attention else \
        decoder.m_weights  # (2H or H, 4H)
    decoder_inputs = batch['decoder_inputs']
    steps = decoder_inputs.shape[1]
    x_parts = tf.unstack(tf.gather(x_weights, tf.transpose(decoder_inputs)) +
                         decoder.biases)  # T x (B, 4H)
    attentional = self.initial_attentional(o)
    tops = []
    for t in range(steps):  # unrolled, T = S + 1
      r = tf.concat([attentional, o], 1) if self.attention else o  # (B, 2H or H)
      z = x_parts[t] + tf.matmul(r, recurrent)  # (B, 4H)
      input_gate, forget_gate, update, output_gate = cells.split_gates(z)
      state = tf.sigmoid(forget_gate) * state + tf.sigmoid(input_gate) * tf.tanh(update)
      o = tf.sigmoid(output_gate) * tf.tanh(state)  # (B, H)
      if self.attention:
        attentional, _ = self.fast_attend(o, memory, keys, source_mask, record)
        tops.append(attentional)
      else:
        tops.append(o)
    tops = tf.stack(tops, axis=1)  # (B, T, H)
    logits = tf.einsum('bth,hv->btv', tops, self.w) + self.b  # (B, T, V)
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=batch['targets'], logits=logits)  # (B, T)
    mask = batch['target_mask']
    return tf.reduce_sum(losses * mask) / tf.reduce_sum(mask), record

  def _decode_step(self, previous_ids, o, state, attentional, memory, keys, source_mask):
    """`decoder_cell` as log-probabilities, for the decoders (any batch, any S)."""
    logits, o, state, attentional, alignment = self.decoder_cell(
        previous_ids, o, state, attentional, memory, keys, source_mask)
    if alignment is None:
      alignment = tf.zeros_like(source_mask)
    return tf.nn.log_softmax(logits), o, state, attentional, alignment


# ---------------------------------------------------------------------------- training

class Adam(tf.Module):
  """Adam (Kingma & Ba 2015) on tf.Variables, no Keras:

      m <- b1 m + (1 - b1) g,   v <- b2 v + (1 - b2) g^2
      x <- x - lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps)
  """

  def __init__(self, variables, learning_rate=0.002, beta1=0.9, beta2=0.999,
               epsilon=1e-8, name='adam'):
    super().__init__(name=name)
    self.learning_rate = tf.Variable(learning_rate, trainable=False, name='learning_rate')
    self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon
    self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name='step')
    self.m = [tf.Variable(tf.zeros_like(v), trainable=False, name='m') for v in variables]
    self.v = [tf.Variable(tf.zeros_like(v), trainable=False, name='v') for v in variables]

  def apply(self, gradients, variables):
    self.step.assign_add(1)
    t = tf.cast(self.step, tf.float32)
    rate = self.learning_rate * tf.sqrt(1.0 - self.beta2 ** t) / (1.0 - self.beta1 ** t)
    for g, x, m, v in zip(gradients, variables, self.m, self.v):
      m.assign(self.beta1 * m + (1.0 - self.beta1) * g)
      v.assign(self.beta2 * v + (1.0 - self.beta2) * tf.square(g))
      x.assign_sub(rate * m / (tf.sqrt(v) + self.epsilon))


class AttentionRecord(object):
  """What `Mirror.fast_loss` keeps of its attention steps, for `attention_gradients`."""

  def __init__(self, memory, keys):
    self.memory, self.keys = memory, keys  # (B, S, H) each
    self.scores, self.alignments = [], []  # T x (B, S)
    self.outputs, self.contexts = [], []  # T x (B, H): h_t, c_t


def attention_gradients(record, d_scores, d_contexts):
  """The gradients of memory and keys, summed over the T steps in one product each:

      dL/dkeys   = sum_t dL/dscore_t (x) h_t     (B, S, H)
      dL/dmemory = sum_t a_t (x) dL/dc_t         (B, S, H)

  from d_scores, T x (B, S), and d_contexts, T x (B, H), the gradients at the record's
  scores and contexts (autodiff would form the T outer products and add them one by one).
  Returns d_memory, d_keys.
  """
  d_scores = tf.stack(d_scores, axis=1)  # (B, T, S)
  d_contexts = tf.stack(d_contexts, axis=1)  # (B, T, H)
  outputs = tf.stack(record.outputs, axis=1)  # (B, T, H)
  alignments = tf.stack(record.alignments, axis=1)  # (B, T, S)
  d_keys = tf.einsum('bts,bth->bsh', d_scores, outputs)  # (B, S, H)
  d_memory = tf.einsum('bts,bth->bsh', alignments, d_contexts)  # (B, S, H)
  return d_memory, d_keys


class Trainer(tf.Module):
  """The train step: teacher-forced loss, clip_by_global_norm, Adam. One trace per shape."""

  def __init__(self, model, learning_rate=0.002, clip_norm=5.0, fast=True, name='trainer'):
    super().__init__(name=name)
    self.model = model
    self.fast = fast
    self.clip_norm = clip_norm
    self.variables_to_train = model.trainable_variables
    self.adam = Adam(self.variables_to_train, learning_rate)
    self.train_step = tf.function(self._train_step)

  def _train_step(self, batch):
    """One step on a batch of `make_batch` tensors: returns the loss (nats per character)."""
    variables = self.variables_to_train
    if not self.fast:
      with tf.GradientTape() as tape:
        loss = self.model.loss(batch)
      gradients = tape.gradient(loss, variables)
    else:
      with tf.GradientTape(persistent=True) as tape:
        loss, record = self.model.fast_loss(batch)
      if record is None:
        gradients = [tf.convert_to_tensor(g)  # dense: the lookups give IndexedSlices
                     for g in tape.gradient(loss, variables)]
      else:  # the loss through everything but memory and keys, then through them
        count, steps = len(variables), len(record.scores)
        found = tape.gradient(loss, list(variables) + record.scores + record.contexts,
                              unconnected_gradients=tf.UnconnectedGradients.ZERO)
        d_memory, d_keys = attention_gradients(
            record, found[count:count + steps], found[count + steps:])
        more = tape.gradient([record.memory, record.keys], variables,
                             output_gradients=[d_memory, d_keys],
                             unconnected_gradients=tf.UnconnectedGradients.ZERO)
        gradients = [tf.convert_to_tensor(a) + tf.convert_to_tensor(b)  # dense
                     for a, b in zip(found[:count], more)]
      del tape
    gradients, _ = tf.clip_by_global_norm(gradients, self.clip_norm)
    self.adam.apply(gradients, self.variables_to_train)
    return loss


def curriculum_stage(step, num_steps, stages):
  """The most words a sentence has at `step`: `stages` (e.g. (3, 5, 8)) in equal parts."""
  return stages[min(len(stages) - 1, step * len(stages) // max(num_steps, 1))]


def training_batch(words, batch_size, max_words, rng, reverse_source=True):
  """A batch of n-word sentences, n uniform in 1..max_words, padded to bucket_length(n).

  One n per batch: each n is one traced shape, and short sentences are not padded to long.
  """
  num_words = int(rng.integers(1, max_words + 1))
  length = bucket_length(num_words)
  sentences = sample_sentences(words, batch_size, num_words, rng, length)
  return make_batch(sentences, length, reverse_source)


class WordRuns(object):
  """Runs of consecutive words of a corpus part, drawn many at a time.

  A run of n words from position p has len(' '.join(words[p:p + n])) characters, which
  `lengths` reads off the words' cumulative lengths without joining.
  """

  def __init__(self, words):
    self.words = words
    self.ends = np.concatenate([[0], np.cumsum([len(w) for w in words])])  # (W + 1,)

  def lengths(self, starts, num_words):
    """Characters of the runs (starts (N,), num_words (N,)) -> (N,)."""
    return self.ends[starts + num_words] - self.ends[starts] + num_words - 1

  def sentence(self, start, num_words):
    return ' '.join(self.words[start:start + num_words])


def length_batch(runs, batch_size, max_words, rng, reverse_source=True, draws=4096):
  """A batch of sentences of similar length, padded to the bucket that holds them.

  Every sentence is a run of n consecutive words, n uniform in 1..max_words, at a random
  place (`training_batch`'s sentences); runs over bucket_length(max_words) characters are
  drawn again. The batch's first sentence chooses the bucket: the smallest
  bucket_length(k), k = 1..max_words, that holds it; the others are drawn until
  `batch_size` fall in that bucket (longer than bucket_length(k - 1)). So each sentence
  comes from the same distribution as `training_batch`'s, and a batch is padded to at
  most 8 characters more than its sentences (`training_batch`'s n-word batches are
  padded to 8 n + 6, 2 n + 7 more than n words' mean). The same traced shapes: one per
  bucket. runs: a `WordRuns`.
  """
  edges = np.array([bucket_length(k) for k in range(1, max_words + 1)])
  last = len(runs.words)
  sentences = []
  low = high = None
  while len(sentences) < batch_size:
    num_words = rng.integers(1, max_words + 1, size=draws)  # (draws,)
    starts = rng.integers(0, last - num_words + 1)  # (draws,)
    lengths = runs.lengths(starts, num_words)  # (draws,)
    if high is None:
      first = int(np.argmax(lengths <= edges[-1]))
      if lengths[first] > edges[-1]:
        continue
      bucket = int(np.searchsorted(edges, lengths[first]))
      high, low = edges[bucket], edges[bucket - 1] if bucket else 0
      num_words, starts, lengths = num_words[first:], starts[first:], lengths[first:]
    for k in np.nonzero((lengths > low) & (lengths <= high))[0]:
      if len(sentences) < batch_size:
        sentences.append(runs.sentence(int(starts[k]), int(num_words[k])))
  return make_batch(sentences, int(high), reverse_source)


def to_tensors(batch):
  return {key: tf.constant(value) for key, value in batch.items()}


BATCHINGS = ('length', 'words')

# The training run of `python -m assignment6.problem3`, and the one it had before the
# faster step and batches (`python -m assignment6.bench --part=mirror` times the two).
DEFAULTS = dict(num_steps=2000, batch_size=64, num_nodes=128, learning_rate=0.005,
                decay_rate=0.05, curriculum=(5,), max_words=8, batching='length',
                fast=True)
EARLIER = dict(DEFAULTS, num_steps=6000, learning_rate=0.003, decay_rate=0.1,
               curriculum=(3, 5), batching='words', fast=False)


def training_steps(trainer, train_words, rng, num_steps, batch_size=64, stages=(8,),
                   learning_rate=0.003, decay_rate=0.1, batching='length',
                   reverse_source=True, start=0):
  """The training run's steps, one at a time: yields (step, loss, learning rate, most
  words) after each (loss a Python float, nats per character).

  Step k (from `start`) trains at learning_rate * decay_rate^(k / num_steps) on a batch of
  sentences of 1..`curriculum_stage(k)` words: `length_batch` (batching 'length') or
  `training_batch` ('words', one word count per batch), drawn with `rng`.
  """
  runs = WordRuns(train_words) if batching == 'length' else None
  for step in range(start, num_steps):
    rate = learning_rate * decay_rate ** (step / num_steps)
    trainer.adam.learning_rate.assign(rate)
    max_words = curriculum_stage(step, num_steps, stages)
    if batching == 'length':
      batch = length_batch(runs, batch_size, max_words, rng, reverse_source)
    else:
      batch = training_batch(train_words, batch_size, max_words, rng, reverse_source)
    yield step, float(trainer.train_step(to_tensors(batch))), rate, max_words


# ---------------------------------------------------------------------------- decoding

def encode_sentences(model, sentences, fast=True):
  """The encoder over sentences (any length): memory, keys, o, state, mask.

  fast: `Mirror.fast_encode` (one traced function, one fused op); else `Mirror.encode`,
  its twin, eagerly.
  """
  batch = make_batch(sentences, reverse_source=model.reverse_source)
  mask = tf.constant(batch['source_mask'])
  if fast:
    return model.fast_encode(tf.constant(batch['source']), mask) + (mask,)
  memory, keys, o, state = model.encode(tf.constant(batch['source']), mask)
  if keys is None:
    keys = memory
  return memory, keys, o, state, mask


def greedy_decode(model, sentences, max_extra=10, return_alignments=False, fast=True):
  """The most likely character at each step until EOS: a list of strings.

  Decodes at most len(longest sentence) + max_extra characters. With return_alignments,
  also the alignments (steps, B, S) as NumPy (source in the order the encoder read it).
  fast: as `encode_sentences`.
  """
  memory, keys, o, state, mask = encode_sentences(model, sentences, fast)
  attentional = model.initial_attentional(o)
  previous = tf.fill([len(sentences)], GO)
  outputs, alignments = [], []
  done = np.zeros(len(sentences), bool)
  for _ in range(max(len(s) for s in sentences) + max_extra):
    log_probs, o, state, attentional, alignment = model.decode_step(
        previous, o, state, attentional, memory, keys, mask)
    ids = np.argmax(log_probs.numpy(), axis=1).astype(np.int32)  # (B,)
    outputs.append(ids)
    alignments.append(alignment.numpy())
    done |= ids == EOS
    if done.all():
      break
    previous = tf.constant(ids)
  outputs = np.stack(outputs, axis=1)  # (B, steps)
  decoded = [ids_to_sentence(row) for row in outputs]
  if return_alignments:
    return decoded, np.stack(alignments)
  return decoded


def beam_search(model, sentences, beam_width=4, max_extra=10, fast=True):
  """Beam search: the `beam_width` best partial outputs by summed log-probability.

  Each step extends every live beam by every symbol and keeps the best `beam_width` of
  the B x V candidates; a candidate ending in EOS is a finished output and leaves the beam.
  A sentence is done when its best finished output scores above every live beam (scores
  only fall). Width 1 is greedy decoding. fast: as `encode_sentences`.
  """
  k = beam_width
  batch = len(sentences)
  memory, keys, o, state, mask = encode_sentences(model, sentences, fast)
  repeat = lambda x: tf.repeat(x, k, axis=0)  # (B, ...) -> (B * k, ...)
  memory, keys, o, state, mask = map(repeat, (memory, keys, o, state, mask))
  attentional = model.initial_attentional(o)
  scores = np.full((batch, k), -np.inf)  # (B, k): only beam 0 is live at the start
  scores[:, 0] = 0.0
  history = np.zeros((batch, k, 0), np.int32)
  previous = np.full(batch * k, GO, np.int32)
  best_score = np.full(batch, -np.inf)
  best = [None] * batch
  rows = np.arange(batch)[:, None]
  for _ in range(max(len(s) for s in sentences) + max_extra):
    log_probs, o, state, attentional, _ = model.decode_step(
        tf.constant(previous), o, state, attentional, memory, keys, mask)
    total = scores[:, :, None] + log_probs.numpy().reshape(batch, k, -1)  # (B, k, V)
    total = total.reshape(batch, -1)  # (B, k * V)
    top = np.argsort(-total, axis=1, kind='stable')[:, :k]  # (B, k)
    beams, ids = top // VOCABULARY_SIZE, (top % VOCABULARY_SIZE).astype(np.int32)
    scores = total[rows, top]
    history = np.concatenate([history[rows, beams], ids[:, :, None]], axis=2)
    for b, j in zip(*np.nonzero((ids == EOS) & np.isfinite(scores))):
      if scores[b, j] > best_score[b]:
        best_score[b], best[b] = scores[b, j], history[b, j]
    scores[ids == EOS] = -np.inf
    if np.all(best_score >= scores.max(axis=1)):
      break
    order = tf.constant((np.arange(batch)[:, None] * k + beams).reshape(-1))
    o, state, attentional = (tf.gather(x, order) for x in (o, state, attentional))
    previous = ids.reshape(-1)
  for b in range(batch):
    if best[b] is None:  # nothing finished: the best live beam
      best[b] = history[b, int(np.argmax(scores[b]))]
  return [ids_to_sentence(row) for row in best]


def decode(model, sentences, beam_width=1, batch_size=500):
  """Mirror sentences with the model: greedy (beam_width 1) or beam search."""
  decoded = []
  for start in range(0, len(sentences), batch_size):
    chunk = sentences[start:start + batch_size]
    decoded += (greedy_decode(model, chunk) if beam_width == 1
                else beam_search(model, chunk, beam_width))
  return decoded


def exact_accuracy(model, sentences):
  """The share of sentences mirrored exactly, greedy (the log's validation figure)."""
  decoded = decode(model, sentences)
  return float(np.mean([d == mirror(s) for d, s in zip(decoded, sentences)]))


def word_accuracy(decoded, sentence):
  """The share of the sentence's words mirrored right, word by word in place."""
  target = mirror(sentence).split(' ')
  output = decoded.split(' ')
  return sum(a == b for a, b in zip(output, target)) / len(target)


def accuracy_by_length(model, sentences_by_length, beam_width=1):
  """{n: (exact-sentence accuracy, per-word accuracy)} over held-out sentences by length."""
  results = {}
  for n, sentences in sorted(sentences_by_length.items()):
    decoded = decode(model, sentences, beam_width)
    exact = np.mean([d == mirror(s) for d, s in zip(decoded, sentences)])
    words = np.mean([word_accuracy(d, s) for d, s in zip(decoded, sentences)])
    results[n] = (float(exact), float(words))
  return results


def mirror_text(model, text, max_words=8, beam_width=1):
  """Mirror any text in a-z and spaces, `max_words` words at a time (spaces normalized)."""
  words = text.split()
  chunks = [' '.join(words[k:k + max_words]) for k in range(0, len(words), max_words)]
  return ' '.join(decode(model, chunks, beam_width))


# ---------------------------------------------------------------------------- checkpoints

CONFIG = ('num_nodes', 'attention', 'reverse_source', 'max_words')


def checkpoint(model, trainer=None, max_words=8, progress=None):
  """A tf.train.Checkpoint of the model, its optimizer and its settings (plain numbers).

  progress: a `Progress`, for a run that can be resumed (the script's).
  """
  config = tf.Module(name='config')
  for key, value in zip(CONFIG, (model.num_nodes, model.attention, model.reverse_source,
                                 max_words)):
    setattr(config, key, tf.Variable(int(value), dtype=tf.int64, trainable=False))
  if trainer is None:
    return tf.train.Checkpoint(model=model, config=config)
  if progress is None:
    return tf.train.Checkpoint(model=model, config=config, trainer=trainer)
  return tf.train.Checkpoint(model=model, config=config, trainer=trainer,
                             progress=progress)


class Progress(tf.Module):
  """What a resumed run needs besides the model and Adam (whose `step` counts the steps
  done): the batch generator's NumPy PCG64 state (its 128-bit `state` and `inc` as decimal
  strings, `has_uint32`, `uinteger`) and the run's settings (`name=value` lines), plain
  values in variables."""

  def __init__(self, name='progress'):
    super().__init__(name=name)
    self.rng_state = tf.Variable('', dtype=tf.string)
    self.rng_inc = tf.Variable('', dtype=tf.string)
    self.rng_has_uint32 = tf.Variable(0, dtype=tf.int64)
    self.rng_uinteger = tf.Variable(0, dtype=tf.int64)
    self.settings = tf.Variable('', dtype=tf.string)

  def capture(self, rng, settings):
    state = rng.bit_generator.state
    assert state['bit_generator'] == 'PCG64', state['bit_generator']
    self.rng_state.assign(str(state['state']['state']))
    self.rng_inc.assign(str(state['state']['inc']))
    self.rng_has_uint32.assign(int(state['has_uint32']))
    self.rng_uinteger.assign(int(state['uinteger']))
    self.settings.assign(settings)

  def apply(self, rng):
    """Set the generator's state; returns the saved settings text."""
    rng.bit_generator.state = {
        'bit_generator': 'PCG64',
        'state': {'state': int(self.rng_state.numpy()), 'inc': int(self.rng_inc.numpy())},
        'has_uint32': int(self.rng_has_uint32.numpy()),
        'uinteger': int(self.rng_uinteger.numpy())}
    return self.settings.numpy().decode('utf-8')


def load_model(checkpoint_dir):
  """The model saved in `checkpoint_dir` (its latest checkpoint) and its max_words."""
  path = tf.train.latest_checkpoint(checkpoint_dir)
  if path is None:
    raise data.DataError('--checkpoint_dir=%s: no checkpoint there; train one first with '
                         'python -m assignment6.problem3 --checkpoint_dir=%s'
                         % (checkpoint_dir, checkpoint_dir))
  reader = tf.train.load_checkpoint(path)
  config = {key: int(reader.get_tensor('config/%s/.ATTRIBUTES/VARIABLE_VALUE' % key))
            for key in CONFIG}
  model = Mirror(config['num_nodes'], config['attention'], config['reverse_source'])
  checkpoint(model).restore(path).expect_partial()
  return model, config['max_words']


def format_table(greedy, beam=None, beam_width=None):
  """Markdown rows: words, exact and per-word accuracy (%), greedy and beam."""
  header = '| words | exact (greedy) | per word (greedy) |'
  rule = '|---|---|---|'
  if beam:
    header += ' exact (beam %d) | per word (beam %d) |' % (beam_width, beam_width)
    rule += '---|---|'
  lines = [header, rule]
  for n in sorted(greedy):
    line = '| %d | %.1f | %.1f |' % (n, 100 * greedy[n][0], 100 * greedy[n][1])
    if beam:
      line += ' %.1f | %.1f |' % (100 * beam[n][0], 100 * beam[n][1])
    lines.append(line)
  return '\n'.join(lines)


class Timer(object):
  """Seconds since creation, for the log."""

  def __init__(self):
    self.start = time.time()

  def __call__(self):
    return time.time() - self.start
