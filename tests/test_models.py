"""Problem 2's pieces: bigram batches and labels, bits per character, dropout."""
import itertools
import math

import numpy as np
import pytest
import tensorflow as tf

from assignment6 import cells, data, models, training
from conftest import made_up_text


def independent_bigram_batches(text, batch_size, num_unrollings, stride, calls):
  """Bigram batches written from the course's generator's description, pair by pair."""
  pairs = [27 * data.char2id(text[p]) + data.char2id(text[p + 1])
           for p in range(0, len(text) - 1, stride)]
  segment = len(pairs) // batch_size
  cursor = [b * segment for b in range(batch_size)]

  def one():
    row = []
    for b in range(batch_size):
      row.append(pairs[cursor[b]])
      cursor[b] = (cursor[b] + 1) % len(pairs)
    return row

  last = one()
  out = []
  for _ in range(calls):
    rows = [last] + [one() for _ in range(num_unrollings)]
    last = rows[-1]
    out.append(np.array(rows))
  return out


@pytest.mark.parametrize('stride', [2, 1])
def test_bigram_batches_equal_an_independent_implementation(stride):
  text = made_up_text(300)
  generator = data.BigramBatchGenerator(text, 8, 5, stride)
  for ours, theirs in zip((generator.next() for _ in range(30)),
                          independent_bigram_batches(text, 8, 5, stride, 30)):
    assert ours.shape == (6, 8) and ours.dtype == np.int32
    np.testing.assert_array_equal(ours, theirs)


def test_bigram_text_round_trip():
  text = 'the quick brown fox'
  ids = data.text_to_ids(text)[0]
  assert data.bigram_text(data.bigram_ids(ids, 2), 2) == text[:18]
  assert data.bigram_text(data.bigram_ids(ids, 1), 1) == text
  assert data.bigram_ids(data.text_to_ids('ab')[0]).tolist() == [27 * 1 + 2]


def test_gather_labels_equal_one_hot():
  ids = tf.constant(np.random.default_rng(0).integers(0, 729, size=(10, 64)), tf.int32)
  np.testing.assert_array_equal(models.one_hot(ids, 729).numpy(),
                                tf.one_hot(ids, 729).numpy())


def bigram_model(keep_prob=1.0, stride=2, seed=0):
  cell = cells.ConcatCell(16, 32, seed=seed)
  return models.LanguageModel(cell, 8, 729, embedding_size=16, keep_prob=keep_prob,
                              seed=seed, stride=stride)


def test_bits_per_character_two_ways():
  """The pair's nats, and the sum of -log P(first) - log P(second | first) from the same
  729-way distribution, give the same bits per character."""
  model = bigram_model()
  text = made_up_text(100)[:400]
  _, perplexity, bits, characters = training.evaluate_text(model, text)
  assert characters == 400
  tokens = training.tokens_of(model, text)
  order = np.concatenate([tokens[2:], tokens[:2]])  # the validation generator's start
  previous = np.concatenate([tokens[1:], tokens[:1]])
  model.reset_sample_state()
  per_character = 0.0
  for feed, label in zip(previous, order):
    p = model.sample_prediction(tf.constant([feed], tf.int32)).numpy()[0].astype(np.float64)
    first, second = divmod(int(label), 27)
    p_first = p.reshape(27, 27)[first].sum()
    per_character += -math.log(p_first) - math.log(p[label] / p_first)
  assert bits == pytest.approx(per_character / 400 / math.log(2), rel=1e-5)
  assert perplexity == pytest.approx(2 ** bits, rel=1e-9)


def test_dropout_never_touches_the_recurrent_path():
  model = bigram_model(keep_prob=0.5)
  ids = tf.constant(np.random.default_rng(1).integers(0, 729, size=(6, 8)), tf.int32)
  output, state = model.saved_output, model.saved_state
  seed = tf.constant([3, 4], tf.int64)
  outputs, final_output, final_state = model.unroll(ids, output, state, seed)
  # By hand: the same input masks, the cell fed its own undropped output and state.
  inputs = model.inputs(ids)
  o, c = output, state
  kept_outputs = []
  for t in range(6):
    i = model.dropout(inputs[t], tf.random.experimental.stateless_fold_in(seed, 2 * t))
    o, c = model.cell(i, o, c)
    kept_outputs.append(o)
  np.testing.assert_allclose(final_output.numpy(), o.numpy(), rtol=1e-6)
  np.testing.assert_allclose(final_state.numpy(), c.numpy(), rtol=1e-6)
  for dropped, kept in zip(outputs, kept_outputs):
    dropped, kept = dropped.numpy(), kept.numpy()
    zero = dropped == 0
    assert 0.3 < zero.mean() < 0.7  # the classifier's input is dropped ...
    np.testing.assert_allclose(dropped[~zero], kept[~zero] / 0.5, rtol=1e-6)  # ... scaled


def test_evaluation_is_deterministic_and_undropped():
  dropped = bigram_model(keep_prob=0.3, seed=2)
  plain = bigram_model(keep_prob=1.0, seed=2)
  text = made_up_text(50)[:200]
  first = training.evaluate_text(dropped, text)
  assert training.evaluate_text(dropped, text) == first
  assert training.evaluate_text(plain, text) == first
  np.random.seed(0)
  import random
  random.seed(0)
  samples = training.sample_text(dropped)
  random.seed(0)
  np.random.seed(0)
  assert training.sample_text(plain) == samples


@pytest.mark.parametrize('keep_prob', [0.2, 0.5, 0.9])
def test_kept_fraction_matches_keep_prob(keep_prob):
  model = bigram_model(keep_prob=keep_prob)
  n = 200_000
  kept = np.count_nonzero(model.dropout(tf.ones([n]), tf.constant([1, 2], tf.int64)).numpy())
  sigma = math.sqrt(n * keep_prob * (1 - keep_prob))
  assert abs(kept - n * keep_prob) < 5 * sigma


def record_masks(model, num_unrollings):
  """Make `model.dropout` keep the masks (1 kept, 0 dropped) of the last step traced through
  it in variables; returns a function that reads them: the T input masks (B, E), then the
  T output masks (B, H)."""
  masks = ([tf.Variable(tf.zeros([model.batch_size, model.input_size]))
            for _ in range(num_unrollings)] +
           [tf.Variable(tf.zeros([model.batch_size, model.cell.output_size]))
            for _ in range(num_unrollings)])
  dropout, calls = model.dropout, itertools.count()

  def recording(x, seed):
    y = dropout(x, seed)
    masks[next(calls) % len(masks)].assign(tf.cast(tf.not_equal(y, 0), tf.float32))
    return y

  model.dropout = recording
  return lambda: [m.numpy() for m in masks]


def test_two_steps_drop_different_units_on_the_same_batch():
  """From the same weights and state, the same batch: step 1 drops other units than step 0
  (about half of them differ at keep 0.5), and step 0 again drops the same ones."""
  model = bigram_model(keep_prob=0.5)
  trainer = training.Trainer(model, seed=3)
  read = record_masks(model, 5)
  batch = tf.constant(data.BigramBatchGenerator(made_up_text(3000), 8, 5).next())
  start = [v.numpy() for v in model.variables]

  def step_from_start(step):
    for variable, value in zip(model.variables, start):
      variable.assign(value)
    trainer.global_step.assign(step)
    loss = float(trainer.train_step(batch)[0])
    return loss, read()

  loss, masks = step_from_start(0)
  again, masks_again = step_from_start(0)
  other, other_masks = step_from_start(1)
  assert again == loss and other != loss
  for a, b, c in zip(masks, masks_again, other_masks):
    assert 0.3 < a.mean() < 0.7
    np.testing.assert_array_equal(a, b)
    assert 0.35 < np.mean(a != c) < 0.65  # independent masks: half the units differ


def test_a_resumed_run_draws_the_same_masks(tmp_path):
  """Six steps at once, and three steps, a checkpoint, and three more in new objects
  (TensorFlow's global seed changed between): the same masks and losses at steps 3-5,
  also when the three run in one `train_steps` call."""
  batches = data.BigramBatchGenerator(made_up_text(3000), 8, 5)
  ids = [batches.next() for _ in range(6)]

  def new_run():
    model = bigram_model(keep_prob=0.5, seed=4)
    return model, training.Trainer(model, seed=4), record_masks(model, 5)

  model, trainer, read = new_run()
  uninterrupted = []
  for batch in ids:
    loss = float(trainer.train_step(tf.constant(batch))[0])
    uninterrupted.append((loss, read()))
  model, trainer, _ = new_run()
  for batch in ids[:3]:
    trainer.train_step(tf.constant(batch))
  path = tf.train.Checkpoint(model=model, trainer=trainer).save(str(tmp_path / 'ckpt'))
  for fast in (False, True):
    tf.random.set_seed(1234)
    tf.random.uniform([3])
    model, trainer, read = new_run()
    tf.train.Checkpoint(model=model, trainer=trainer).restore(path).assert_consumed()
    assert int(trainer.global_step) == 3
    if fast:
      losses = trainer.train_steps(tf.constant(np.stack(ids[3:])))[0].numpy()
      assert list(losses) == [loss for loss, _ in uninterrupted[3:]]
      resumed = [read()]  # the last step's
      expected = [uninterrupted[5][1]]
    else:
      resumed = [(float(trainer.train_step(tf.constant(batch))[0]), read())
                 for batch in ids[3:]]
      assert [loss for loss, _ in resumed] == [loss for loss, _ in uninterrupted[3:]]
      resumed = [masks for _, masks in resumed]
      expected = [masks for _, masks in uninterrupted[3:]]
    for got, want in zip(resumed, expected):
      for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
  assert np.mean(uninterrupted[3][1][0] != uninterrupted[4][1][0]) > 0.3
