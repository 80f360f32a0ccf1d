"""A trained model used: text from a prime at a temperature, and the score of a text.

Two samplers, one model step (`LanguageModel.sample_after`: the state warmed on the prime,
then each next token drawn from softmax(logits / T) by inverse CDF with one uniform):
- the course's (`sample_course`): the uniforms are Python's `random.uniform` draws in the
  order `training.sample_text` makes them, and without a prime the first token is the
  course's `sample(random_distribution())`. At T = 1 from the same seed it prints what the
  training run's own sampling prints. `python -m assignment6.sample`'s default.
- the stateless one (`Generator.sample`), in the graph, so a SavedModel can run it without
  Python: the uniforms are `tf.random.stateless_uniform([count, N + 1], seed=[seed, 0],
  dtype=float64)`; column 0 picks the first token (uniformly: floor(u * V)) when there is
  no prime, columns 1..N are the inverse-CDF draws. `python -m assignment6.sample
  --sampler=stateless` and the exported model (`assignment6.export`) run this one function.

A token is a character, or a pair of characters (Problem 2b): `length` counts characters
after the prime; a bigram model with pairs that do not overlap (stride 2) reads a prime of
an even number of characters and writes two characters a token.
"""
import math
import os
import random
import shutil

import numpy as np
import tensorflow as tf

from assignment6 import data, training


class SampleError(ValueError):
  """A bad prime, length or temperature: one line naming the flag."""


# ---------------------------------------------------------------------------- token counts

def new_tokens(model, length, primed):
  """How many tokens to draw for `length` characters after a prime (or from none).

  Without a prime the first token is drawn too and counts, as in `training.sample_text`
  (`length` characters in all: 80 tokens, 40 pairs, or 79 overlapping pairs).
  """
  if training.is_bigram(model) and model.stride == 2:
    tokens = length // 2
  elif training.is_bigram(model) and not primed:
    tokens = length - 1  # the first pair gives two characters
  else:
    tokens = length
  return tokens if primed else max(tokens - 1, 0)


def prime_tokens(model, prime, flag='--prime'):
  """The token ids (P,) of a prime text; SampleError for one the model cannot read."""
  vocabulary = model.vocabulary
  unknown = vocabulary.unknown(prime)
  if unknown:
    raise SampleError('%s: %r is not in the model\'s %d characters (%r); give a prime of '
                      'those' % (flag, unknown[:20], vocabulary.size,
                                 vocabulary.characters[:60]))
  if training.is_bigram(model):
    if model.stride == 2 and len(prime) % 2:
      raise SampleError('%s: the bigram model reads pairs of characters that do not '
                        'overlap; give an even number of characters (not %d)'
                        % (flag, len(prime)))
    if len(prime) < 2:
      raise SampleError('%s: the bigram model reads pairs; give at least 2 characters'
                        % flag)
  return training.tokens_of(model, prime).astype(np.int32)


def check(length, temperature, count):
  if length < 1:
    raise SampleError('--length=%d: give at least 1 character' % length)
  if not (temperature > 0 and math.isfinite(temperature)):
    raise SampleError('--temperature=%g: give a number greater than 0 (1: the course\'s '
                      'sampling; --argmax for the most likely characters)' % temperature)
  if count < 1:
    raise SampleError('--count=%d: give at least 1 sample' % count)


# ---------------------------------------------------------------------------- the course's

def sample_course(model, prime='', length=80, count=5, temperature=1.0, argmax=False):
  """`count` texts of `length` characters after `prime`, drawn with Python's `random`.

  Call it after seeding as `runs.seed_everything` does: with no prime at temperature 1 the
  texts are those `training.sample_text(model, length, count)` would draw.
  Returns the texts, each beginning with the prime.
  """
  check(length, temperature, count)
  primed = bool(prime)
  tokens = prime_tokens(model, prime) if primed else None
  steps = new_tokens(model, length, primed)
  primes, uniforms = [], []
  for _ in range(count):
    if primed:
      primes.append(tokens)
    else:
      primes.append([data.sample_distribution(
          data.random_distribution(model.vocabulary_size)[0])])
    uniforms.append([random.uniform(0, 1) for _ in range(steps)])
  primes = np.array(primes, dtype=np.int32)  # (count, P)
  ids = model.sample_after(tf.constant(primes), tf.constant(uniforms, tf.float64,
                                                            shape=[count, steps]),
                           tf.constant(temperature, tf.float32), tf.constant(argmax))
  return [training.token_text(model, np.concatenate([p, row]))
          for p, row in zip(primes, ids.numpy())]


# ---------------------------------------------------------------------------- in the graph

class Generator(tf.Module):
  """The model's sampling and scoring as TensorFlow functions of strings and numbers.

  What `tf.saved_model.save` exports (`assignment6.export`): it holds the model's variables
  and the vocabulary as constants; every function takes and returns tensors only.
  """

  def __init__(self, model, name='generator'):
    super().__init__(name=name)
    self.model = model
    vocabulary = model.vocabulary
    self.characters = tf.constant(list(vocabulary.characters))  # (V,) strings
    self.codes = tf.constant(vocabulary.codes, tf.int32)  # (V,) sorted code points
    self.bigram = training.is_bigram(model)
    self.stride = model.stride

  def _character_ids(self, text):
    """A UTF-8 string -> (character ids (n,) int32, count outside the vocabulary)."""
    codes = tf.strings.unicode_decode(text, 'UTF-8')  # (n,)
    size = tf.shape(self.codes)[0]
    places = tf.minimum(tf.searchsorted(self.codes, codes), size - 1)
    known = tf.equal(tf.gather(self.codes, places), codes)
    return (tf.where(known, places, 0),
            tf.reduce_sum(tf.cast(tf.logical_not(known), tf.int32)))

  def _tokens(self, text):
    """A UTF-8 string -> (token ids (m,) int32, count outside the vocabulary)."""
    ids, unknown = self._character_ids(text)
    if not self.bigram:
      return ids, unknown
    starts = tf.range(0, tf.maximum(tf.shape(ids)[0] - 1, 0), self.stride)
    size = tf.shape(self.codes)[0]
    return tf.gather(ids, starts) * size + tf.gather(ids, starts + 1), unknown

  def _text(self, ids):
    """Token ids (S, T) -> (S,) UTF-8 strings, as `training.token_text`."""
    if not self.bigram:
      return tf.strings.reduce_join(tf.gather(self.characters, ids), axis=1)
    size = tf.shape(self.codes)[0]
    first, second = ids // size, ids % size  # (S, T) each
    if self.stride == 2:
      pairs = tf.reshape(tf.stack([first, second], axis=2), [tf.shape(ids)[0], -1])
      return tf.strings.reduce_join(tf.gather(self.characters, pairs), axis=1)  # (S, 2T)
    return (tf.gather(self.characters, first[:, 0]) +
            tf.strings.reduce_join(tf.gather(self.characters, second), axis=1))

  @tf.function(input_signature=[
      tf.TensorSpec([], tf.string, name='prime'),
      tf.TensorSpec([], tf.int32, name='length'),
      tf.TensorSpec([], tf.float32, name='temperature'),
      tf.TensorSpec([], tf.int64, name='seed'), tf.TensorSpec([], tf.int32, name='count')])
  def sample(self, prime, length, temperature, seed, count):
    """`count` texts of `length` characters after `prime` (UTF-8; '' for none), stateless.

    temperature > 0 divides the logits (1: the model's own probabilities); 0 or less: the
    most likely token each step (greedy). seed: the draws, `stateless_uniform([count,
    N + 1], seed=[seed, 0])` (the module docstring). Returns {'samples': (count,) strings}
    beginning with the prime. A prime outside the vocabulary, or not whole pairs for a
    bigram model, is an InvalidArgumentError.
    """
    model = self.model
    tokens, unknown = self._tokens(prime)
    primed = tf.strings.length(prime) > 0
    tf.debugging.assert_equal(unknown, 0, message='the prime has characters outside the '
                              'vocabulary')
    characters = tf.strings.length(prime, unit='UTF8_CHAR')
    if self.bigram:
      tf.debugging.assert_equal(tf.logical_or(tf.logical_not(primed), tf.logical_and(
          characters >= 2, characters % self.stride == 0)), True,
          message='a bigram model reads a prime of whole pairs of characters')
    if self.bigram and self.stride == 2:
      steps = length // 2
    elif self.bigram:
      steps = tf.where(primed, length, length - 1)
    else:
      steps = length
    steps = tf.maximum(tf.where(primed, steps, steps - 1), 0)
    uniforms = tf.random.stateless_uniform(
        tf.stack([count, steps + 1]), tf.stack([seed, tf.constant(0, tf.int64)]),
        dtype=tf.float64)  # (count, N + 1)
    first = tf.minimum(tf.cast(uniforms[:, 0] * model.vocabulary_size, tf.int32),
                       model.vocabulary_size - 1)  # (count,)
    primes = tf.cond(primed, lambda: tf.tile(tokens[None, :], tf.stack([count, 1])),
                     lambda: first[:, None])  # (count, P)
    ids = model.sample_after(primes, uniforms[:, 1:], temperature, temperature <= 0)
    return {'samples': self._text(tf.concat([primes, ids], axis=1))}

  @tf.function(input_signature=[tf.TensorSpec([], tf.string, name='text')])
  def score(self, text):
    """The log-probability of each token of a UTF-8 text given those before it.

    From a zero state, token t + 1 given tokens 0..t (`LanguageModel.log_probabilities`;
    characters outside the vocabulary read as id 0, as `char2id` reads them as spaces).
    Returns {'log_probabilities': (m - 1,) float64 nats, 'nats': their negated sum,
    'bits_per_character', 'characters': the characters predicted, 'unknown_characters'}.
    """
    tokens, unknown = self._tokens(text)
    scores = self.model.log_probabilities(tokens)  # (m - 1,)
    nats = -tf.reduce_sum(scores)
    characters = tf.cast(tf.shape(scores)[0] * self.stride, tf.float64)
    return {'log_probabilities': scores, 'nats': nats,
            'bits_per_character': nats / characters / math.log(2),
            'characters': tf.cast(characters, tf.int64), 'unknown_characters': unknown}

  @tf.function(input_signature=[tf.TensorSpec([], tf.string, name='text')])
  def evaluate(self, text):
    """A text scored as `--eval_data` scores it (`training.evaluate_text`).

    The course's validation order: from the text's third token, round it once back to the
    third (`training.validation_batches`), `sequence_logprob` from a zero state.
    Returns {'nats', 'perplexity' (per character), 'bits_per_character', 'characters'}:
    the figures of its `Evaluation on ...` line (equal to the last bit for texts under
    `training.PIECE` tokens, which `--eval_data` scores in one piece).
    """
    tokens, _ = self._tokens(text)
    size = tf.shape(tokens)[0]
    ids = tf.gather(tokens, (tf.range(size + 1) + 2) % size)  # (m + 1,)
    output, state = self.model.zero_state(1)
    nats, _, _ = self.model.sequence_logprob(ids, output, state)
    characters = tf.cast(size * self.stride, tf.float64)
    return {'nats': nats, 'perplexity': tf.exp(nats / characters),
            'bits_per_character': nats / characters / math.log(2),
            'characters': tf.cast(characters, tf.int64)}


def sample_stateless(model, prime='', length=80, count=5, temperature=1.0, argmax=False,
                     seed=0, generator=None):
  """`Generator.sample` from Python, with `sample_course`'s checks: the exported model's
  texts. Returns a list of `count` strings."""
  check(length, temperature, count)
  if prime:
    prime_tokens(model, prime)  # the one-line errors, before the graph's
  generator = generator or Generator(model)
  samples = generator.sample(tf.constant(prime), tf.constant(length, tf.int32),
                             tf.constant(0.0 if argmax else temperature, tf.float32),
                             tf.constant(seed, tf.int64), tf.constant(count, tf.int32))
  return [s.decode('utf-8') for s in samples['samples'].numpy()]


# ---------------------------------------------------------------------------- export

SIGNATURES = ('sample', 'score', 'evaluate')


def save(model, directory):
  """Write the model's `Generator` as a SavedModel in `directory`.

  The signatures `sample`, `score` and `evaluate` (and the same functions as attributes
  of the loaded object) need TensorFlow only: `tf.saved_model.load(directory)` in any
  Python process, without assignment6. Written to `directory + '.partial'`, which
  replaces `directory` (any previous export there) only when whole.
  """
  generator = Generator(model)
  partial = directory.rstrip(os.sep) + '.partial'
  if os.path.isdir(partial):
    shutil.rmtree(partial)
  tf.saved_model.save(generator, partial, signatures={
      name: getattr(generator, name).get_concrete_function() for name in SIGNATURES})
  if os.path.isdir(directory):
    shutil.rmtree(directory)
  os.replace(partial, directory)
  return generator
