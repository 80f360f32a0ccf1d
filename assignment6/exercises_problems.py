"""The exercises of Problems 2 and 3 (`assignment6.exercises` holds the warm-up and
Problem 1, and lists them all): embeddings, bigram ids, batches and labels, dropout; the
mirror's targets, sequences and encoder. Each checks against the package's own code."""
import numpy as np
import tensorflow as tf

from assignment6 import cells, data, mirror, models, training
from assignment6.diagnoses import (TOLERANCE, Exercise, Mistake, both_ways, expect_pair,
                                   expect_shape, made_text, relative_error, run, shape_of)


# ---------------------------------------------------------------------------- Problem 2a

class Embedding(Exercise):
  name = 'embedding'
  references = (models.LanguageModel.inputs,)
  hint_text = """
      An embedding is a (vocabulary_size, embedding_size) variable; a token's input is
      its row: tf.nn.embedding_lookup(embeddings, ids), shape ids.shape + (embedding_size,).
      It is the one-hot input times the embeddings, without the multiply."""

  def verify(self, answer):
    rng = np.random.default_rng(0)
    ids = tf.constant(rng.integers(0, 27, (4, 6)), tf.int32)  # (T, B)
    embeddings = tf.constant(rng.normal(size=(27, 5)), tf.float32)
    model = models.LanguageModel(cells.CourseCell(5, 8), 6, 27, embedding_size=5)
    model.embeddings.assign(embeddings)
    expected = model.inputs(ids)  # (T, B, E)

    def compare(got, how):
      shape = shape_of(got)
      if shape == (4, 6, 27):
        raise Mistake('one_hot_not_embedded', 'the result is (T, B, 27), one-hot rows: '
                      'look the ids up in the embeddings, (T, B, embedding_size)')
      expect_shape('the embedded input (%s)' % how, got, (4, 6, 5),
                   'ids.shape + (embedding_size,)')
      if relative_error(got, expected) > TOLERANCE:
        for shift in (1, -1):
          if relative_error(got, tf.gather(embeddings, (ids + shift) % 27)) < TOLERANCE:
            raise Mistake('off_by_one', 'each id gets the row of id %+d: use the id itself '
                          'as the row' % shift)
        raise Mistake('values', 'the rows differ from embeddings[ids]')
      return 'Values %s: the embeddings\' rows for the ids.' % how

    return both_ways(answer, lambda: (ids, embeddings), compare)


# ---------------------------------------------------------------------------- Problem 2b

def pairs(ids, stride):
  starts = np.arange(0, len(ids) - 1, stride)
  return ids[starts].astype(np.int64), ids[starts + 1].astype(np.int64)


def describe_ids(got, ids, stride):
  """What a wrong bigram id computes: (mistake, message), from the ids it returns."""
  got = np.asarray(got, np.int64).ravel()
  for other in (stride, 3 - stride):
    first, second = pairs(ids, other)
    if len(got) != len(first):
      continue
    matrix = np.stack([first, second, np.ones_like(first)], 1).astype(np.float64)
    coefficients = np.linalg.lstsq(matrix, got.astype(np.float64), rcond=None)[0]
    rounded = np.round(coefficients)
    if not np.array_equal(matrix @ rounded, got):
      continue
    a, b, c = (int(x) for x in rounded)
    kind = 'overlapping' if other == 1 else 'non-overlapping'
    if other != stride:
      mistake = 'overlapping' if other == 1 else 'non_overlapping'
      reason = ('with stride 2 the pairs do not overlap (characters 0-1, 2-3, ...), so '
                'predicting the next pair predicts each character once' if stride == 2
                else 'with stride 1 the pairs overlap (characters 0-1, 1-2, ...)')
      if (a, b, c) == (27, 1, 0):
        return mistake, 'the pairs are %s; %s' % (kind, reason)
    if (a, b, c) == (1, 27, 0):
      return 'second_first', ('the id is second * 27 + first: the course\'s bigram id is '
                              '27 * first + second (data.bigram_ids)')
    if (a, b, c) == (27, 1, 0):
      return 'values', 'the ids are 27 * first + second over %s pairs, as asked' % kind
    return 'id_formula', ('the id is %d * first + %d * second + %d over %s pairs; with 27 '
                          'characters, 27 * first + second gives the 729 ids 0..728, each '
                          'pair its own' % (a, b, c, kind))
  return 'values', ('%d ids for %d characters with stride %d; expected %d (one per pair '
                    'starting at 0, %d, %d, ...)' % (len(got), len(ids), stride,
                                                      len(pairs(ids, stride)[0]), stride,
                                                      2 * stride))


class BigramIds(Exercise):
  name = 'bigram_ids'
  references = (data.bigram_ids,)
  hint_text = """
      A bigram is two characters; its id is 27 * first + second (0..728). With stride 2
      the pairs start at characters 0, 2, 4, ... (no overlap); with stride 1 at 0, 1, 2,
      ...: starts = np.arange(0, len(ids) - 1, stride)."""

  def verify(self, answer):
    ids = data.text_to_ids('the quick brown fox jumps')[0]  # 25 characters
    lines = []
    for stride in (2, 1):
      expected = data.bigram_ids(ids, stride)
      got = np.asarray(run(answer, ids.copy(), stride))
      if got.shape != expected.shape or not np.array_equal(got, expected):
        raise Mistake(*describe_ids(got, ids, stride))
      lines.append('stride %d: %d ids, as data.bigram_ids.' % (stride, len(expected)))
    return lines


class BigramBatches(Exercise):
  name = 'bigram_batches'
  references = (data.BigramBatchGenerator, data.BatchGenerator)
  hint_text = """
      The course's BatchGenerator over bigram ids: cut the text into batch_size segments,
      one cursor each; next() returns num_unrollings + 1 rows of ids, shape
      (num_unrollings + 1, batch_size), the first row the last one of the previous call.
      data.BigramBatchGenerator subclasses data.BatchGenerator with the text's bigram ids
      (data.bigram_ids) in place of its character ids."""

  def verify(self, answer):
    text = made_text(60)
    batch, unrollings = 4, 5
    reference = data.BigramBatchGenerator(text, batch, unrollings)
    overlapping = data.BigramBatchGenerator(text, batch, unrollings, stride=1)
    characters = data.BatchGenerator(text, batch, unrollings)
    generator = run(answer, text, batch, unrollings)
    calls = [np.asarray(run(generator.next)) for _ in range(3)]
    expected = [reference.next() for _ in range(3)]
    got = calls[0]
    if got.shape == (batch, unrollings + 1):
      raise Mistake('batch_transposed', 'next() returns (batch_size, num_unrollings + '
                    '1); the course\'s batches are (num_unrollings + 1, batch_size): '
                    'one row per step')
    for call, got in enumerate(calls):
      if got.shape != expected[0].shape:
        raise Mistake('shape', 'call %d of next() returns shape %s, expected %s = '
                      '(num_unrollings + 1, batch_size)' % (call + 1, got.shape,
                                                            expected[0].shape))
    if calls[0].max() < data.vocabulary_size and np.array_equal(calls[0],
                                                                characters.next_ids()):
      raise Mistake('characters_not_bigrams', 'the batches hold character ids (0..26); cut '
                    'the text into bigram ids first (data.bigram_ids)')
    for call in (1, 2):
      if not np.array_equal(calls[call][0], calls[call - 1][-1]):
        raise Mistake('last_not_carried', 'the first row of call %d of next() is not the '
                      'last row of call %d (the course\'s `_last_batch`): the label of '
                      'one batch\'s last step is the first input of the next'
                      % (call + 1, call))
    if np.array_equal(calls[0], overlapping.next()):
      raise Mistake('overlapping', 'the pairs overlap (stride 1); Problem 2b\'s batches '
                    'use pairs that do not: characters 0-1, 2-3, ...')
    for call, (got, want) in enumerate(zip(calls, expected)):
      if not np.array_equal(got, want):
        rows = [data.bigram_text(row) for row in got.T]
        want = [data.bigram_text(row) for row in want.T]
        raise Mistake('values', 'call %d of next(): the segments read %r, expected %r'
                      % (call + 1, rows, want))
    return ['Three calls of next(): (%d, %d) bigram ids each, as data.BigramBatchGenerator.'
            % (unrollings + 1, batch)]


class BigramLabels(Exercise):
  name = 'bigram_labels'
  references = (models.one_hot,)
  hint_text = """
      One-hot labels by tf.gather: the rows of an identity matrix, tf.gather(tf.eye(V),
      ids), with V = data.bigram_vocabulary_size = 729 for bigrams (27 for characters)."""

  def verify(self, answer):
    rng = np.random.default_rng(0)
    ids = tf.constant(rng.integers(0, data.bigram_vocabulary_size, 12), tf.int32)
    expected = models.one_hot(ids, data.bigram_vocabulary_size)

    def compare(got, how):
      shape = shape_of(got)
      if shape == (data.bigram_vocabulary_size, 12):
        raise Mistake('transposed', 'the labels are (729, N): one row per label is (N, '
                      '729); gather rows (axis 0), not columns')
      if shape is not None and len(shape) == 2 and shape[0] == 12 and shape[1] != 729:
        raise Mistake('one_hot_wrong_size', 'one-hot on %d classes%s; bigram labels need '
                      'data.bigram_vocabulary_size = 729' % (
                          shape[1], ' (the characters)' if shape[1] == 27 else ''))
      expect_shape('the labels (%s)' % how, got, (12, 729), '(number of ids, 729)')
      if got.dtype != tf.float32:
        raise Mistake('dtype', 'the labels are %s; softmax_cross_entropy_with_logits '
                      'takes float32 labels' % got.dtype.name)
      if relative_error(got, expected) > 0:
        raise Mistake('values', 'each row should be 1 at its id and 0 elsewhere')
      return 'Values %s: one-hot rows of 729.' % how

    return both_ways(answer, lambda: (ids,), compare)


# ---------------------------------------------------------------------------- Problem 2c

class RecordingCell(tf.Module):
  """A course cell that records what it is given and what it returns (eagerly)."""

  def __init__(self, cell):
    super().__init__()
    self.cell = cell
    self.calls = []

  def __call__(self, i, o, state):
    output, new_state = self.cell(i, o, state)
    self.calls.append([np.asarray(x) for x in (i, o, state, output, new_state)])
    return output, new_state


def dropped(got, kept, keep_prob):
  """How `got` relates to `kept`: 'same', ('dropout', scale, dropped fraction) or None."""
  got, kept = np.asarray(got, np.float64), np.asarray(kept, np.float64)
  if got.shape != kept.shape:
    return None
  if np.allclose(got, kept, rtol=1e-5, atol=1e-6):
    return 'same'
  zero = np.abs(got) < 1e-12
  live = ~zero & (np.abs(kept) > 1e-6)
  if not live.any():
    return ('dropout', 0.0, float(zero.mean()))
  scale = got[live] / kept[live]
  if np.allclose(scale, scale[0], rtol=1e-4):
    return ('dropout', float(scale[0]), float(zero.mean()))
  return None


class Dropout(Exercise):
  name = 'dropout'
  references = (models.LanguageModel.dropout, models.LanguageModel.unroll)
  keep_prob = 0.75
  hint_text = """
      Zaremba et al. (2014): dropout on the non-recurrent connections only -- each step's
      input before the cell and each output before the classifier -- never on the output
      and state fed to the next step or saved. Only in training: validation and sampling
      use the whole model. TensorFlow 2's tf.nn.dropout takes rate = 1 - keep_prob, and
      scales what it keeps by 1 / keep_prob."""

  def verify(self, answer):
    steps, batch, num_nodes = 6, 8, 16
    rng = np.random.default_rng(0)
    inputs = [tf.constant(rng.normal(size=(batch, 27)), tf.float32) for _ in range(steps)]
    output = tf.constant(rng.uniform(-1, 1, (batch, num_nodes)), tf.float32)
    state = tf.constant(rng.normal(size=(batch, num_nodes)), tf.float32)
    base = cells.CourseCell(27, num_nodes, seed=1)
    lines = []
    for training in (False, True):
      cell = RecordingCell(base)
      got = run(answer, cell, inputs, output, state, self.keep_prob, training)
      if not isinstance(got, (tuple, list)) or len(got) != 3:
        raise Mistake('returns', 'return (outputs, output, state): the list of outputs '
                      'for the classifier, and the last output and state to save')
      outputs, last_output, last_state = got
      calls = cell.calls
      if len(calls) != steps or len(outputs) != steps:
        raise Mistake('length', '%d cell calls and %d outputs for %d inputs'
                      % (len(calls), len(outputs), steps))
      received = [c[0] for c in calls]
      fed = [(c[1], c[2]) for c in calls]
      returned = [(c[3], c[4]) for c in calls]
      if not training:
        if any(dropped(r, i, 1) != 'same' for r, i in zip(received, inputs)) or any(
            dropped(g, r[0], 1) != 'same' for g, r in zip(outputs, returned)):
          raise Mistake('dropout_in_validation', 'with training=False the inputs or '
                        'outputs are still dropped: validation and sampling must use the '
                        'whole model (dropout only when training)')
        lines.append('training=False: no dropout (validation and sampling).')
        continue
      previous = [(output, state)] + returned[:-1]
      changed = [t for t, ((o, _), (want_o, _)) in enumerate(zip(fed, previous))
                 if dropped(o, want_o, 1) != 'same']
      if any(t > 0 for t in changed):
        raise Mistake('dropout_recurrent', 'the output fed to step %d is not the one the '
                      'previous step returned: dropout belongs on the non-recurrent '
                      'connections only, never on the recurrent path'
                      % [t for t in changed if t][0])
      if changed:
        raise Mistake('dropout_saved_state', 'the saved output fed to the first step is '
                      'changed: the state carried from the last batch is never dropped')
      for t, ((_, s), (_, want_s)) in enumerate(zip(fed, previous)):
        if dropped(s, want_s, 1) != 'same':
          raise Mistake('dropout_state', 'the state fed to step %d is changed: never '
                        'drop the cell state (it carries the memory)' % t)
      for name, got_x, want_x in (('output', last_output, returned[-1][0]),
                                  ('state', last_state, returned[-1][1])):
        if dropped(got_x, want_x, 1) != 'same':
          raise Mistake('dropout_saved_state', 'the returned %s (saved for the next batch) '
                        'is not the last step\'s: it is dropped or changed; save it as '
                        'the cell returned it' % name)
      for where, pairs_ in (('inputs', list(zip(received, inputs))),
                            ('outputs', [(g, r[0]) for g, r in zip(outputs, returned)])):
        relations = [dropped(a, b, self.keep_prob) for a, b in pairs_]
        if all(r == 'same' for r in relations):
          raise Mistake('no_dropout_%s' % where, 'the %s are not dropped in training: '
                        'apply dropout to each step\'s %s' % (
                            where, 'input' if where == 'inputs' else 'output before the '
                            'classifier'))
        if any(r is None for r in relations):
          raise Mistake('not_dropout', 'the %s are changed, but not by dropout (each '
                        'value kept and scaled, or zeroed)' % where)
        scales = [r[1] for r in relations if r != 'same']
        fraction = np.mean([r[2] for r in relations if r != 'same'])
        if abs(scales[0] - 1.0 / (1.0 - self.keep_prob)) < 1e-3:
          raise Mistake('rate_is_keep_prob', 'about %.0f%% of the %s are dropped and the '
                        'rest scaled by %.3g: keep_prob was given as the rate. TensorFlow '
                        '2\'s tf.nn.dropout(x, rate) drops `rate`: rate = 1 - keep_prob'
                        % (100 * fraction, where, scales[0]))
        if abs(scales[0] - 1.0) < 1e-4:
          raise Mistake('not_scaled', 'the kept %s are not scaled by 1 / keep_prob: the '
                        'expected sum would shrink when dropout is on' % where)
        if abs(scales[0] - 1.0 / self.keep_prob) > 1e-3:
          raise Mistake('wrong_scale', 'the kept %s are scaled by %.3g; dropout with '
                        'keep_prob %.2f scales them by %.3g' % (
                            where, scales[0], self.keep_prob, 1 / self.keep_prob))
        lines.append('training=True: %s dropped (%.0f%% zeroed, kept ones scaled by %.3g).'
                     % (where, 100 * fraction, scales[0]))
    lines.append('The output and state fed to the next step and saved are never dropped.')
    traced = run(answer, base, inputs, output, state, self.keep_prob, True, function=True)
    if len(traced[0]) != steps:
      raise Mistake('length', 'under tf.function it returns %d outputs' % len(traced[0]))
    lines.append('It runs under tf.function.')
    return lines


# ---------------------------------------------------------------------------- Problem 3

class MirrorTarget(Exercise):
  name = 'mirror_target'
  references = (mirror.mirror,)
  sentences = ('the quick brown fox', 'a  bc de', 'anarchism')
  hint_text = """
      Reverse each word in place, keeping the words' order and every space:
      ' '.join(word[::-1] for word in text.split(' ')). split(' ') (not split()) keeps
      repeated spaces, so the target has the source's length."""

  def verify(self, answer):
    for text in self.sentences:
      got = run(answer, text)
      expected = mirror.mirror(text)
      if got == expected:
        continue
      if got == text[::-1]:
        raise Mistake('whole_sentence_reversed', '%r -> %r reverses the whole sentence; '
                      'mirror each word in place: %r' % (text, got, expected))
      if got == ' '.join(reversed(text.split(' '))):
        raise Mistake('word_order_reversed', '%r -> %r reverses the order of the words; '
                      'reverse the characters of each word: %r' % (text, got, expected))
      if got == ' '.join(w[::-1] for w in text.split()):
        raise Mistake('spaces_collapsed', '%r -> %r loses a space: split(\' \') keeps '
                      'repeated spaces (the target must be as long as the source)'
                      % (text, got))
      if got == text:
        raise Mistake('unchanged', '%r is returned unchanged' % text)
      raise Mistake('values', '%r -> %r; expected %r' % (text, got, expected))
    return ['%r -> %r, and %d more.' % (self.sentences[0], mirror.mirror(self.sentences[0]),
                                        len(self.sentences) - 1)]


class MirrorSequences(Exercise):
  name = 'mirror_sequences'
  references = (mirror.make_batch,)
  hint_text = """
      For a sentence of n characters (ids by data.text_to_ids):
        source: its ids reversed (Sutskever et al. read the source backwards), n ids;
        decoder_inputs: GO, then the mirrored sentence's ids, n + 1;
        targets: the mirrored sentence's ids, then EOS, n + 1.
      The decoder is fed the true previous character (teacher forcing) and learns to
      stop by predicting EOS (mirror.GO = 27, mirror.EOS = 28)."""

  def verify(self, answer):
    lines = []
    for sentence in ('the quick brown fox', 'ab cd'):
      batch = mirror.make_batch([sentence])
      expected = [batch['source'][0], batch['decoder_inputs'][0], batch['targets'][0]]
      got = run(answer, sentence)
      got = [np.asarray(x).ravel() for x in expect_pair(got, ('source', 'decoder_inputs',
                                                              'targets'))]
      ids = data.text_to_ids(sentence)[0]
      mirrored = data.text_to_ids(mirror.mirror(sentence))[0]
      source, inputs, targets = got
      n = len(ids)
      if not np.array_equal(source, expected[0]):
        if np.array_equal(source, ids):
          raise Mistake('source_not_reversed', 'the source is in reading order; feed it '
                        'reversed (ids[::-1]), as Sutskever et al. do')
        if np.array_equal(source, mirrored):
          raise Mistake('source_mirrored', 'the source is the mirrored sentence; the '
                        'encoder reads the sentence itself, reversed')
        raise Mistake('source', 'the source of %r differs' % sentence)
      if len(targets) == n and np.array_equal(targets, mirrored):
        raise Mistake('missing_eos', 'the targets end without EOS: append mirror.EOS so '
                      'the decoder learns where to stop (n + 1 targets)')
      if len(inputs) == n and np.array_equal(inputs, mirrored):
        raise Mistake('missing_go', 'the decoder inputs do not start with mirror.GO: the '
                      'decoder\'s first input is GO, then the target shifted by one')
      if len(inputs) and inputs[-1] == mirror.EOS:
        raise Mistake('eos_in_inputs', 'the decoder inputs end with EOS: they are GO and '
                      'the target (n + 1); EOS is only a target, the symbol to predict last')
      if np.array_equal(inputs, targets):
        raise Mistake('not_shifted', 'the decoder inputs are the targets: the decoder would '
                      'be fed the character it must predict. Inputs are GO + target, '
                      'targets are target + EOS')
      for name, g, e in (('decoder_inputs', inputs, expected[1]),
                         ('targets', targets, expected[2])):
        if not np.array_equal(g, e):
          if len(g) == len(e) and np.array_equal(g[1:-1] if name == 'decoder_inputs'
                                                 else g[:-1], ids[::-1]):
            raise Mistake('whole_sentence_reversed', 'the %s hold the sentence reversed '
                          'as a whole; the target mirrors each word' % name)
          raise Mistake(name, 'the %s of %r are %s, expected %s'
                        % (name, sentence, [int(x) for x in g], [int(x) for x in e]))
      lines.append('%r: source, decoder inputs and targets as mirror.make_batch.'
                   % sentence)
    return lines


class MirrorEncoder(Exercise):
  name = 'mirror_encoder'
  references = (mirror.Mirror.encode,)
  hint_text = """
      Run the encoder cell over the source one step at a time (one-hot inputs of
      mirror.VOCABULARY_SIZE = 29), from zero output and state. Padded steps (mask 0)
      must leave (output, state) as they were, so the decoder starts from each sentence's
      last character: keep = mask[:, t:t + 1]; o = keep * new_o + (1 - keep) * o (and
      the same for the state). Return the final (output, state)."""

  def verify(self, answer):
    model = mirror.Mirror(num_nodes=8, attention=False, seed=0)
    batch = mirror.make_batch(['the fox', 'a', 'brown dog'])
    source = tf.constant(batch['source'])
    mask = tf.constant(batch['source_mask'])
    expected = model.encode(source, mask)[2:]
    unmasked = model.encode(source, tf.ones_like(mask))[2:]

    def compare(got, how):
      got = expect_pair(got)
      for name, g in zip(('output', 'state'), got):
        expect_shape('the final %s (%s)' % (name, how), g, (3, 8), '(batch, num_nodes)')
      errors = [relative_error(g, e) for g, e in zip(got, expected)]
      if max(errors) > TOLERANCE:
        if max(relative_error(g, u) for g, u in zip(got, unmasked)) < TOLERANCE:
          raise Mistake('padding_not_masked', 'the final state is the one after the '
                        'padding: a padded step (mask 0) must leave output and state as '
                        'they were')
        if errors[0] <= TOLERANCE:
          raise Mistake('state_not_masked', 'the final output is right and the state is '
                        'not: a padded step must leave the state as it was too')
        if errors[1] <= TOLERANCE:
          raise Mistake('output_not_masked', 'the final state is right and the output is '
                        'not: a padded step must leave the output as it was too')
        raise Mistake('values', 'the final output and state differ from Mirror.encode\'s '
                      '(relative error %.2g, %.2g)' % tuple(errors))
      return 'Values %s: relative error %.1e, %.1e.' % (how, *errors)

    return both_ways(answer, lambda: (model.encoder, source, mask), compare)


class DecodingProbe(mirror.Mirror):
  """A Mirror with a scripted decoder, to see what a decoding loop does: fed GO first,
  then its own previous choice, and its own returned (o, state) from the encoder's, it
  emits each sentence's mirror and EOS (then more letters, for a loop that does not stop).
  Fed anything else it emits 'z'. Every call is recorded in `calls`."""

  WRONG = data.char2id('z')

  def __init__(self, sentences):
    super().__init__(num_nodes=8, attention=False, seed=0)
    self.sentences = list(sentences)
    self.targets = [list(data.text_to_ids(mirror.mirror(s))[0]) + [mirror.EOS] +
                    list(data.text_to_ids('qqqqqqqqqqqqqqqqqqqqqqqqqqqqqq')[0])
                    for s in self.sentences]
    self.calls = []
    self.decode_step = self.scripted_step
    self.fast_encode = self.scripted_encode  # what mirror.encode_sentences calls

  def scripted_encode(self, source, source_mask):
    memory, _, o, state = self.encode(source, source_mask)
    return memory, memory, o, state

  def encode(self, source, source_mask):
    batch = int(source.shape[0])
    rows = np.array([self.sentences.index(s) if s in self.sentences else -1
                     for s in self._batch_sentences(source)], np.float32)
    o = np.zeros([batch, 8], np.float32)
    o[:, 0] = 1.0  # "from the encoder"
    o[:, 1] = rows
    memory = tf.zeros([batch, source.shape[1], 8])
    return memory, None, tf.constant(o), tf.zeros([batch, 8])

  def _batch_sentences(self, source):
    ids = np.asarray(source)
    sentences = []
    for row in ids:
      text = data.ids_to_text(row[::-1] if self.reverse_source else row).strip()
      sentences.append(text)
    return sentences

  def scripted_step(self, previous_ids, o, state, attentional, memory, keys, source_mask):
    previous = np.asarray(previous_ids).reshape(-1)
    o, state = np.asarray(o), np.asarray(state)
    choice = np.full(len(previous), self.WRONG)
    for r in range(len(previous)):
      position = int(round(state[r, 0]))
      row = int(round(o[r, 1]))
      expected = mirror.GO if position == 0 else self.targets[row][position - 1]
      if o[r, 0] == 1.0 and row >= 0 and previous[r] == expected:
        choice[r] = self.targets[row][min(position, len(self.targets[row]) - 1)]
    log_probs = np.full((len(previous), mirror.VOCABULARY_SIZE), np.log(0.4 / 28))
    log_probs[np.arange(len(previous)), choice] = np.log(0.6)
    new_state = state.copy()
    new_state[:, 0] += 1
    self.calls.append(dict(previous=previous, o=o, state=state, choice=choice,
                           new_state=new_state))
    return (tf.constant(log_probs, tf.float32), tf.constant(o), tf.constant(new_state),
            attentional, tf.zeros_like(source_mask))


class MirrorDecode(Exercise):
  name = 'mirror_decode'
  references = (mirror.greedy_decode,)
  sentences = ('the quick brown fox', 'a lazy dog')
  hint_text = """
      Encode the sentences (mirror.encode_sentences(model, sentences) gives memory,
      keys, o, state, mask), then from previous = GO for every sentence call
      model.decode_step(previous, o, state, attentional, memory, keys, mask) with
      attentional = model.initial_attentional(o): it returns log-probabilities and the
      new o, state, attentional. Take the argmax, feed it back as the next previous,
      carry o, state and attentional, and stop at EOS (mirror.ids_to_sentence cuts there)."""

  def verify(self, answer):
    probe = DecodingProbe(self.sentences)
    got = run(answer, probe, list(self.sentences))
    expected = [mirror.mirror(s) for s in self.sentences]
    if not isinstance(got, (list, tuple)) or len(got) != len(expected):
      raise Mistake('returns', 'return one decoded string per sentence; it returns %r'
                    % (got,))
    calls = probe.calls
    if not calls:
      raise Mistake('no_decoding', 'model.decode_step is never called')
    rows = lambda call: call['o'][:, 1].astype(int)
    if np.any(calls[0]['previous'] != mirror.GO):
      raise Mistake('missing_go', 'the first decoder input is %s, not mirror.GO: the '
                    'decoder starts from GO' % list(calls[0]['previous']))
    if np.any(calls[0]['o'][:, 0] != 1.0):
      raise Mistake('zero_start', 'the decoder does not start from the encoder\'s final '
                    '(output, state): the sentence is all it knows')
    for before, after in zip(calls, calls[1:]):
      if len(before['previous']) == len(after['previous']) and np.array_equal(
          rows(before), rows(after)):
        if not np.allclose(after['state'], before['new_state']):
          raise Mistake('state_not_carried', 'each step starts from the encoder\'s state; '
                        'carry the (o, state) that decode_step returns to the next step')
        if not np.array_equal(after['previous'], before['choice']):
          taken = after['previous']
          if np.all(taken == mirror.GO):
            raise Mistake('not_fed_back', 'every step is fed GO: feed the character the '
                          'previous step chose (greedy decoding feeds back its own output)')
          raise Mistake('not_greedy', 'the character fed back is not the most likely one '
                        '(np.argmax of the log-probabilities): greedy decoding takes the '
                        'argmax, not a sample')
    got = [str(g) for g in got]
    for g, e in zip(got, expected):
      if g != e:
        if g.startswith(e) and len(g) > len(e):
          raise Mistake('no_stop_at_eos', '%r goes on after the mirror %r: stop at EOS '
                        '(mirror.ids_to_sentence cuts there)' % (g, e))
        if g == e[::-1]:
          raise Mistake('reversed_output', '%r is %r reversed' % (g, e))
        raise Mistake('values', 'decoded %r; a greedy decoder of this model gives %r'
                      % (g, e))
    steps = len(calls)
    return ['Greedy decoding: GO first, each step fed its own argmax and state, stopped at '
            'EOS (%d decode_step calls for %d sentences): %r.' % (steps, len(got), got[0])]


class BigramLoss(Exercise):
  name = 'bigram_loss'
  references = (training.Trainer._update,)
  hint_text = """
      The course's loss, for the bigram model: outputs, output, state =
      model.unroll(batches[:-1], model.saved_output, model.saved_state) (the inputs: all
      but the last row), logits = model.logits(outputs) ((T * B, 729): the steps' outputs
      one under the other), labels one-hot on 729 from batches[1:] in the same order
      (tf.reshape(batches[1:], [-1]) and tf.gather(tf.eye(729), ...)), then
      tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=..., logits=...))."""

  _fixture = None

  def fixture(self):
    """The model and its learning-rate-0 trainer, made once (its step is traced once)."""
    if self._fixture is None:
      cell = cells.ConcatCell(16, 8, seed=2, name='lstm_cell')
      model = models.LanguageModel(cell, 3, data.bigram_vocabulary_size,
                                   embedding_size=16, seed=2, stride=2)
      BigramLoss._fixture = model, training.Trainer(model, learning_rate=0.0)
    return self._fixture

  def verify(self, answer):
    steps, batch = 4, 3
    model, trainer = self.fixture()
    rng = np.random.default_rng(0)
    model.saved_output.assign(rng.uniform(-1, 1, (batch, 8)))
    model.saved_state.assign(rng.normal(size=(batch, 8)))
    saved = (model.saved_output.value(), model.saved_state.value())
    batches = tf.constant(rng.integers(0, data.bigram_vocabulary_size, (steps + 1, batch)),
                          tf.int32)

    def reference(ids, start=saved):
      """The package's own train step at learning rate 0: its loss, nothing changed."""
      model.saved_output.assign(start[0])
      model.saved_state.assign(start[1])
      loss = float(trainer.train_step(ids)[0])
      model.saved_output.assign(saved[0])
      model.saved_state.assign(saved[1])
      return loss

    expected = reference(batches)
    zero = tf.zeros_like(saved[0])
    hypotheses = (
        ('labels_not_shifted', 'the labels are the inputs (batches[:-1]): each input '
         'predicts the next bigram, batches[1:]; with these labels a trained model copies '
         'its input and the loss reads near 0',
         lambda: _loss_with_labels(model, batches, tf.reshape(batches[:-1], [-1]))),
        ('labels_order', 'the labels are in another order than the logits: model.logits '
         'puts step 0\'s batch first, then step 1\'s, ...; reshape batches[1:] (T, B) as it is',
         lambda: _loss_with_labels(model, batches, tf.reshape(tf.transpose(batches[1:]),
                                                              [-1]))),
        ('zero_start', 'the loop starts from zeros: start from model.saved_output and '
         'model.saved_state', lambda: reference(batches, (zero, zero))))

    def compare(got, how):
      value = np.asarray(got, np.float64)
      if value.shape != ():
        raise Mistake('not_mean', 'the loss has shape %s: take the mean over the T * B '
                      'predictions (tf.reduce_mean), one number' % (value.shape,))
      value = float(value)
      if abs(value - expected) > 1e-5 * abs(expected):
        if abs(value / expected - steps * batch) < 1e-3:
          raise Mistake('not_mean', 'the loss is the sum over the %d predictions: the '
                        'course\'s is the mean (tf.reduce_mean)' % (steps * batch))
        for mistake, message, loss in hypotheses:
          if abs(value - loss()) < 1e-5 * abs(expected):
            raise Mistake(mistake, message)
        raise Mistake('values', 'the loss is %.6f; the course\'s train step gives %.6f'
                      % (value, expected))
      return 'Loss %s: %.6f nats per bigram, as the package\'s train step.' % (how, value)

    return both_ways(answer, lambda: (model, batches), compare)


def _loss_with_labels(model, batches, label_ids):
  """The course's loss with other label ids (a learner's order): (T * B,) ids."""
  outputs, _, _ = model.unroll(batches[:-1], model.saved_output, model.saved_state)
  labels = models.one_hot(label_ids, model.vocabulary_size)
  return float(tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(
      labels=labels, logits=model.logits(outputs))))
