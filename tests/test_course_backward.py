"""The written-out gradient of the course's cell (`course_backward`, the faster path of
`train_steps`) against `tf.gradients` through the cell's loop (`train_step`, its plain twin)."""
import numpy as np
import pytest
import tensorflow as tf

from assignment6 import cells, course_backward, data, exercises, models, training
from conftest import made_up_text

# As tests/test_training.py: equal to the last bit on the versions measured, else close.
EXACT = tf.__version__.startswith(('2.16.', '2.21.'))


def assert_same(actual, expected, what):
  if EXACT:
    np.testing.assert_array_equal(np.asarray(actual), np.asarray(expected), err_msg=what)
  else:
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-6, err_msg=what)


def trainer(tf1_ref_variables, keep_prob, batch_size, num_nodes, cell='course',
            embedding_size=None):
  model = models.LanguageModel(cells.make_cell(cell, embedding_size or 27, num_nodes, seed=5),
                               batch_size, 27, embedding_size, keep_prob=keep_prob, seed=5)
  return training.Trainer(model, decay_steps=20, seed=5, tf1_ref_variables=tf1_ref_variables)


@pytest.mark.parametrize('tf1_ref_variables,keep_prob,batch_size,num_nodes',
                         [(False, 1.0, 64, 64), (True, 1.0, 64, 64), (False, 0.7, 16, 32)])
def test_written_gradient_equals_tf_gradients_through_the_loop(tf1_ref_variables, keep_prob,
                                                               batch_size, num_nodes):
  """30 steps in one `train_steps` call (the written gradient) against 30 `train_step`
  calls (tf.gradients): every loss, the last predictions and rate, every weight and the
  saved state, bit for bit; the course's sizes in both variable modes, and dropout."""
  plain = trainer(tf1_ref_variables, keep_prob, batch_size, num_nodes)
  fast = trainer(tf1_ref_variables, keep_prob, batch_size, num_nodes)
  assert fast.written_gradient
  batches = data.BatchGenerator(made_up_text(20000), batch_size, 10)
  ids = np.stack([batches.next_ids() for _ in range(30)])
  losses = []
  for step in range(30):
    loss, predictions, lr = plain.train_step(tf.constant(ids[step]))
    losses.append(loss.numpy())
  fast_losses, fast_predictions, fast_lr = fast.train_steps(tf.constant(ids))
  assert_same(fast_losses.numpy(), np.float32(losses), 'losses')
  assert_same(fast_predictions.numpy(), predictions.numpy(), 'last predictions')
  assert_same(fast_lr.numpy(), lr.numpy(), 'learning rate')
  assert float(lr) == pytest.approx(1.0)  # the decay was crossed
  for a, b in zip(plain.model.trainable_variables, fast.model.trainable_variables):
    assert_same(b.numpy(), a.numpy(), a.name)
  assert_same(fast.model.saved_output.numpy(), plain.model.saved_output.numpy(), 'output')
  assert_same(fast.model.saved_state.numpy(), plain.model.saved_state.numpy(), 'state')


def test_the_written_gradient_is_the_course_cells_on_one_hot_inputs_only():
  assert trainer(False, 1.0, 4, 8).written_gradient
  assert not trainer(False, 1.0, 4, 8, cell='concat').written_gradient
  assert not trainer(False, 1.0, 4, 8, embedding_size=5).written_gradient
  learners = exercises.LearnerCourseCell(lambda i, o, state, w: (o, state), 27, 8)
  model = models.LanguageModel(learners, 4, 27)
  assert not training.Trainer(model).written_gradient  # the learner's step must run


def test_unroll_computes_the_cells_outputs_and_gradients():
  """Outside the trainer: the outputs and last state of the cell called T times, and the
  gradients of a loss through them to every weight (float32's rounding: the loss here
  is not the classifier's, so tf.gradients may add in another order)."""
  cell = cells.CourseCell(27, 16, seed=2)
  ids = tf.constant(np.random.default_rng(0).integers(0, 27, (6, 8)), tf.int32)
  inputs = models.one_hot(ids, 27)  # (T, B, 27)
  output = tf.random.stateless_normal([8, 16], (1, 2))
  state = tf.random.stateless_normal([8, 16], (3, 4))
  weights = cell.course_variables()
  with tf.GradientTape(persistent=True) as tape:
    outputs, last = course_backward.unroll(weights, inputs, output, state)
    loss = tf.reduce_sum(tf.concat(outputs, 0) ** 2)
    o, s, reference = output, state, []
    for i in tf.unstack(inputs):
      o, s = cell(i, o, s)
      reference.append(o)
    reference_loss = tf.reduce_sum(tf.concat(reference, 0) ** 2)
  for a, b in zip(outputs, reference):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  np.testing.assert_array_equal(last.numpy(), s.numpy())
  variables = list(weights.values())
  for g, r, v in zip(tape.gradient(loss, variables), tape.gradient(reference_loss, variables),
                     variables):
    np.testing.assert_allclose(g.numpy(), r.numpy(), rtol=1e-5, atol=1e-6, err_msg=v.name)


def test_the_written_gradient_is_only_used_where_the_kernels_agree(monkeypatch):
  """layouts_agree finds a kernel whose bits depend on the columns beside them, and then
  train_steps falls back to the plain unroll (still the bits of train_step)."""
  original = course_backward._matmul
  # A matmul whose result depends on how many columns it computes: the layouts differ.
  monkeypatch.setattr(course_backward, '_matmul', lambda a, b, **kw: original(a, b, **kw) * (
      1.0 + 1e-6 * tf.cast(tf.shape(b)[1 - int(kw.get('transpose_b', False))], tf.float32)))
  assert not course_backward._agree(4, 3, 5, 6)
  monkeypatch.setattr(course_backward, '_matmul', original)
  assert course_backward._agree(4, 3, 5, 6) == course_backward._agree(4, 3, 5, 6)
  calls = []
  monkeypatch.setattr(course_backward, 'layouts_agree', lambda *shape: calls.append(shape))
  monkeypatch.setattr(course_backward, 'unroll', lambda *a, **k: pytest.fail('written path'))
  model = models.LanguageModel(cells.make_cell('course', 27, 8, seed=0), 4, 27, seed=0)
  trainer = training.Trainer(model)
  ids = np.random.default_rng(0).integers(0, 27, size=(2, 11, 4)).astype(np.int32)
  trainer.train_steps(tf.constant(ids))
  assert calls and calls[0] == (4, 10, 27, 8)
