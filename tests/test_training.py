"""The port's training against the course's code (an independent TF1 graph), and every
faster path against the plain one."""
import random

import numpy as np
import pytest
import tensorflow as tf

from assignment6 import cells, course_tf1, data, models, training
from conftest import made_up_text

SIZES = dict(batch_size=64, num_unrollings=10, num_nodes=64)  # the course's


def build(cell='course', seed=7, batch_size=64, num_nodes=64, vocabulary_size=27, **kwargs):
  decay = dict((k, kwargs.pop(k)) for k in ('decay_steps', 'learning_rate', 'clip_norm')
               if k in kwargs)
  model = models.LanguageModel(cells.make_cell(cell, vocabulary_size, num_nodes, seed=seed),
                               batch_size, vocabulary_size, seed=seed, **kwargs)
  return model, training.Trainer(model, **decay)


def course_weights(model):
  """The port's starting weights under the course's fourteen names."""
  if isinstance(model.cell, cells.CourseCell):
    weights = {k: v.numpy() for k, v in model.cell.course_variables().items()}
  else:
    parts = [np.split(v.numpy(), 4, axis=1) for v in
             (model.cell.x_weights, model.cell.m_weights, model.cell.biases)]
    weights = {prefix + side: parts[k][g] for k, side in enumerate('xmb')
               for g, prefix in enumerate(cells.GATE_PREFIXES)}
  return dict(weights, w=model.w.numpy(), b=model.b.numpy())


@pytest.mark.parametrize('cell,clip_norm', [('course', 1.25), ('course', 0.2),
                                            ('concat', 1.25)])
def test_port_follows_the_course_graph_for_50_steps(cell, clip_norm):
  """Equal losses, predictions and rates; clip_norm 0.2 clips every step. Problem 1's cell
  adds each gate's products in another order (one matmul for four, the input side as a
  gather of rows), so its predictions are held to float32's drift over 50 steps (5e-5)."""
  prediction_rtol = 1e-5 if cell == 'course' else 5e-5
  model, trainer = build(cell, decay_steps=30, clip_norm=clip_norm)
  graph = course_tf1.CourseGraph(**SIZES, decay_steps=30, clip_norm=clip_norm,
                                 initial_weights=course_weights(model))
  batches = data.BatchGenerator(made_up_text(20000), 64, 10)
  for step in range(50):
    ids = batches.next_ids()
    loss, predictions, lr = trainer.train_step(tf.constant(ids))
    course_loss, course_predictions, course_lr = graph.train_step(list(data.one_hot(ids)))
    np.testing.assert_allclose(float(loss), course_loss, rtol=1e-5, err_msg='step %d' % step)
    np.testing.assert_allclose(predictions.numpy(), course_predictions, rtol=prediction_rtol,
                               atol=1e-7, err_msg='step %d' % step)
    assert float(lr) == pytest.approx(course_lr, rel=1e-6)
    assert float(lr) == (10.0 if step < 30 else pytest.approx(1.0))
  course_after = graph.weights()
  for name, value in course_weights(model).items():
    np.testing.assert_allclose(value, course_after[name], rtol=1e-4, atol=1e-6 if cell == 'course'
                               else 1e-5, err_msg=name)
  output, state = graph.saved_state_values()
  np.testing.assert_allclose(model.saved_output.numpy(), output, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(model.saved_state.numpy(), state, rtol=1e-4, atol=1e-6)
  graph.close()


def test_sampling_and_validation_cell_follows_the_course_graph():
  model, _ = build(num_nodes=16, batch_size=4)
  graph = course_tf1.CourseGraph(batch_size=4, num_unrollings=10, num_nodes=16,
                                 initial_weights=course_weights(model))
  ids = data.text_to_ids(made_up_text(30))[0]
  for reset_at in (0, 20):
    if reset_at == 0:
      model.reset_sample_state()
      graph.reset_sample_state()
    for i in ids[:40]:
      ours = model.sample_prediction(tf.constant([i], tf.int32)).numpy()
      theirs = graph.sample_prediction(data.one_hot([i]))
      np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7)
  graph.close()


def test_several_steps_per_call_equal_one_call_per_step():
  plain_model, plain = build(seed=3, decay_steps=5)
  fast_model, fast = build(seed=3, decay_steps=5)
  ids = np.stack([b for b in iter_batches(12)])
  plain_losses = [float(plain.train_step(tf.constant(i))[0]) for i in ids]
  fast_losses, predictions, lr = fast.train_steps(tf.constant(ids))
  np.testing.assert_allclose(fast_losses.numpy(), plain_losses, rtol=1e-6)
  assert float(lr) == pytest.approx(0.1) and int(fast.global_step) == 12
  for a, b in zip(plain_model.trainable_variables, fast_model.trainable_variables):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)


def iter_batches(count, batch_size=64, num_unrollings=10, seed=0):
  batches = data.BatchGenerator(made_up_text(5000, seed), batch_size, num_unrollings)
  for _ in range(count):
    yield batches.next_ids()


def trained_model(steps=30, **kwargs):
  model, trainer = build(**kwargs)
  for ids in iter_batches(steps):
    trainer.train_step(tf.constant(ids))
  return model


def test_validation_in_one_call_equals_the_courses_loop():
  model = trained_model()
  text = made_up_text(60)[:300]
  fast = training.validation_logprob(model, training.validation_batches(text), len(text))
  plain = training.validation_logprob(model, training.validation_batches(text), len(text),
                                      fast=False)
  assert fast == pytest.approx(plain, rel=1e-6)
  # and the course's own graph, fed character by character as the notebook does
  graph = course_tf1.CourseGraph(**SIZES, initial_weights=course_weights(model))
  valid_batches = course_tf1.BatchGenerator(text, 1, 1)
  valid_batches.next(), valid_batches.next()
  graph.reset_sample_state()
  course = 0
  for _ in range(len(text)):
    b = valid_batches.next()
    course += course_tf1.logprob(graph.sample_prediction(b[0]), b[1])
  assert fast == pytest.approx(course, rel=1e-5)
  graph.close()


def course_samples(graph):
  """The notebook's sampling cell on the course's graph (`course_tf1`): five sentences,
  each from a reset state, one `sample_prediction` per character."""
  sentences = []
  for _ in range(5):
    feed = course_tf1.sample(course_tf1.random_distribution())
    sentence = course_tf1.characters(feed)[0]
    graph.reset_sample_state()
    for _ in range(79):
      prediction = graph.sample_prediction(feed)
      feed = course_tf1.sample(prediction)
      sentence += course_tf1.characters(feed)[0]
    sentences.append(sentence)
  return sentences


@pytest.mark.parametrize('seed', [11, 12])
def test_samples_in_one_call_equal_the_courses_loop(seed):
  """From the same weights and the same seeds of Python's and NumPy's generators, the
  samples drawn in one call are the course's own (its graph, its sampling loop), and the
  port's loop of one call per character gives the same."""
  model = trained_model()
  graph = course_tf1.CourseGraph(**SIZES, initial_weights=course_weights(model))
  drawn = {}
  for name, draw in (('one call', training.sample_text),
                     ('per character', lambda m: training.sample_text(m, fast=False)),
                     ('course', lambda m: course_samples(graph))):
    random.seed(seed)
    np.random.seed(seed)
    drawn[name] = draw(model)
  graph.close()
  assert drawn['one call'] == drawn['course']
  assert drawn['per character'] == drawn['course']
  assert len(set(drawn['course'])) == 5 and all(len(s) == 80 for s in drawn['course'])
  assert all(set(s) <= set('abcdefghijklmnopqrstuvwxyz ') for s in drawn['course'])


def test_fast_and_plain_runs_print_the_same_log():
  logs = []
  for fast in (True, False):
    random.seed(5)
    np.random.seed(5)
    model, trainer = build(seed=5, num_nodes=32, batch_size=16)
    text = made_up_text(3000)
    lines = []
    train_batches = data.BatchGenerator(text[200:], 16, 10)
    training.train(trainer, train_batches, training.validation_batches(text[:200]),
                   num_steps=2001, summary_frequency=100, valid_size=200, log=lines.append,
                   fast=fast)
    logs.append(lines)
  assert logs[0] == logs[1]
  assert logs[0][0].startswith('Average loss at step 0: ')
  assert sum(line == '=' * 80 for line in logs[0]) == 6  # samples at steps 0, 1000, 2000


def test_summary_chunks():
  assert training.summary_steps(0, 201, 100) == [(0, 0), (1, 100), (101, 200)]
  assert training.summary_steps(0, 150, 100) == [(0, 0), (1, 100), (101, 149)]
  assert training.summary_steps(101, 301, 100) == [(101, 200), (201, 300)]


def test_evaluation_is_the_validation_path():
  model = trained_model()
  text = made_up_text(200)[:500]
  nats = training.validation_logprob(model, training.validation_batches(text), len(text))
  perplexity, per_char, bits, count = training.evaluate_text(model, text)
  assert count == 500 and perplexity == per_char
  assert perplexity == pytest.approx(np.exp(nats / 500), rel=1e-12)
  assert bits == pytest.approx(nats / 500 / np.log(2), rel=1e-12)


def test_fused_kernel_follows_the_concat_cell():
  """--cell=fused (TensorFlow's BlockLSTM) against --cell=concat from the same weights, with
  dropout: losses, predictions and weights for 20 steps, then validation.

  The tolerances are float32's: measured over seeds 1, 2, 9 on TensorFlow 2.16.2 and 2.21
  (largest differences: losses 8.7e-8 relative, predictions 5.4e-7, weights 9.5e-7 absolute,
  validation 7.8e-8 relative), with a margin of about five to ten."""
  concat, concat_trainer = build('concat', seed=9, keep_prob=0.7)
  fused, fused_trainer = build('fused', seed=9, keep_prob=0.7)
  for a, b in zip(concat.trainable_variables, fused.trainable_variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  for step, ids in enumerate(iter_batches(20)):
    l1, p1, _ = concat_trainer.train_step(tf.constant(ids))
    l2, p2, _ = fused_trainer.train_step(tf.constant(ids))
    np.testing.assert_allclose(float(l2), float(l1), rtol=1e-6, err_msg='step %d' % step)
    np.testing.assert_allclose(p2.numpy(), p1.numpy(), rtol=1e-5, atol=3e-6,
                               err_msg='step %d' % step)
  for a, b in zip(concat.trainable_variables, fused.trainable_variables):
    np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=5e-6, err_msg=a.name)
  text = made_up_text(200)[:400]
  np.testing.assert_allclose(training.evaluate_text(fused, text),
                             training.evaluate_text(concat, text), rtol=1e-6)


@pytest.mark.parametrize('cell', ['course', 'fused'])
def test_long_texts_are_scored_in_pieces_with_the_state_carried(cell, monkeypatch):
  model, trainer = build(cell, seed=4, num_nodes=16, batch_size=8)
  for ids in iter_batches(10, batch_size=8):
    trainer.train_step(tf.constant(ids))
  text = made_up_text(300)[:1000]
  whole = training.evaluate_text(model, text)
  monkeypatch.setattr(training, 'PIECE', 137)
  assert training.evaluate_text(model, text) == pytest.approx(whole, rel=1e-6)
