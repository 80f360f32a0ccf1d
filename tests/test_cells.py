"""The cells against a float64 NumPy reference of their equations, forward and gradients.

The reference (`numpy_cell`) is Sak, Senior & Beaufays (2014), eqs. 1-8, written here apart
from the package; its gradients are central differences in float64. Every cell is run
eagerly and under `tf.function`.
"""
import importlib
import itertools
import os

import numpy as np
import pytest
import tensorflow as tf

from assignment6 import cells

B, INPUT, H = 3, 5, 4


def sigmoid(x):
  return 1 / (1 + np.exp(-x))


def numpy_cell(p, x, o, c, peepholes, num_proj, num_nonrec_proj, cell_clip=None,
               proj_clip=None, proj_scale=1.0, matmul=np.matmul):
  """One step of the paper's cell in float64, from named parameters (gate order i f c o);
  TensorFlow 1 LSTMCell's clips and the projections' scale as the cell's docstring says.
  matmul: the products' arithmetic (tests/test_precision.py rounds them to bfloat16)."""
  r = o[:, :num_proj or p['m_weights'].shape[0]]
  z = matmul(x, p['x_weights']) + matmul(r, p['m_weights']) + p['biases']
  zi, zf, zc, zo = np.split(z, 4, axis=1)
  if peepholes:
    zi = zi + p['w_ic'] * c
    zf = zf + p['w_fc'] * c
  c_new = sigmoid(zf) * c + sigmoid(zi) * np.tanh(zc)
  if cell_clip:
    c_new = np.clip(c_new, -cell_clip, cell_clip)
  if peepholes:
    zo = zo + p['w_oc'] * c_new
  m = sigmoid(zo) * np.tanh(c_new)
  outputs = [proj_scale * matmul(m, p['w_rm']) if num_proj else m]
  if num_nonrec_proj:
    outputs.append(proj_scale * matmul(m, p['w_pm']))
  if proj_clip and (num_proj or num_nonrec_proj):
    outputs = [np.clip(part, -proj_clip, proj_clip) for part in outputs]
  return np.concatenate(outputs, axis=1), c_new


def random_inputs(cell, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(B, INPUT))
  o = rng.normal(size=(B, cell.output_size))
  c = rng.normal(size=(B, H))
  return x, o, c


def randomize(cell, seed=1):
  """Random values in every variable (biases and peepholes too), so each is exercised."""
  rng = np.random.default_rng(seed)
  for v in cell.trainable_variables:
    v.assign(rng.normal(0, 0.5, size=v.shape).astype(np.float32))


def loss_weights(cell, seed=2):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(B, cell.output_size)), rng.normal(size=(B, H))


def tf_loss_and_gradients(cell, x, o, c, ro, rc, compiled):
  x, o, c = (tf.constant(a, tf.float32) for a in (x, o, c))

  def run():
    with tf.GradientTape() as tape:
      tape.watch([x, o, c])
      output, state = cell(x, o, c)
      loss = tf.reduce_sum(output * ro) + tf.reduce_sum(state * rc)
    grads = tape.gradient(loss, [x, o, c] + list(cell.trainable_variables))
    return output, state, grads

  if compiled:
    run = tf.function(run)
  output, state, grads = run()
  names = ['x', 'o', 'c'] + [v.name.split(':')[0].split('/')[-1]
                             for v in cell.trainable_variables]
  return output.numpy(), state.numpy(), {n: g.numpy() for n, g in zip(names, grads)}


def numpy_gradients(params, x, o, c, ro, rc, options, eps=1e-6):
  """Central differences of the float64 reference's loss in every input and parameter."""
  values = dict(params, x=x, o=o, c=c)

  def loss():
    output, state = numpy_cell(values, values['x'], values['o'], values['c'], *options)
    return np.sum(output * ro) + np.sum(state * rc)

  gradients = {}
  for name, value in values.items():
    value = value.copy()
    values[name] = value
    gradient = np.zeros_like(value)
    for index in np.ndindex(value.shape):
      kept = value[index]
      value[index] = kept + eps
      up = loss()
      value[index] = kept - eps
      down = loss()
      value[index] = kept
      gradient[index] = (up - down) / (2 * eps)
    gradients[name] = gradient
  return gradients


OPTIONS = list(itertools.product([False, True], [None, 3], [None, 2]))


@pytest.mark.parametrize('compiled', [False, True], ids=['eager', 'tf.function'])
@pytest.mark.parametrize('options', OPTIONS, ids=lambda o: 'peep%s-proj%s-nonrec%s' % o)
def test_concat_cell_equals_the_papers_equations(options, compiled):
  cell = cells.ConcatCell(INPUT, H, *options, seed=3)
  randomize(cell)
  x, o, c = random_inputs(cell)
  ro, rc = loss_weights(cell)
  params = {v.name.split(':')[0].split('/')[-1]: v.numpy().astype(np.float64)
            for v in cell.trainable_variables}
  output, state = numpy_cell(params, x, o, c, *options)
  tf_output, tf_state, tf_grads = tf_loss_and_gradients(cell, x, o, c, ro, rc, compiled)
  np.testing.assert_allclose(tf_output, output, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(tf_state, state, rtol=1e-5, atol=1e-6)
  grads = numpy_gradients(params, x, o, c, ro, rc, options)
  assert set(grads) == set(tf_grads)
  for name, gradient in grads.items():
    np.testing.assert_allclose(tf_grads[name], gradient, rtol=1e-4, atol=1e-5,
                               err_msg=name)


# TensorFlow 1 LSTMCell's clips and the projections' scale: (options, cell_clip, proj_clip,
# proj_scale). The clips are set where they cut some values of the random inputs.
CLIPPED = [((True, 3, 2), 0.8, 0.1, 0.3), ((False, 3, None), None, None, 0.3),
           ((True, None, 2), None, 0.5, 1.0), ((True, None, None), 0.6, None, 1.0),
           ((False, 3, 2), 0.5, 0.15, 0.5)]


@pytest.mark.parametrize('compiled', [False, True], ids=['eager', 'tf.function'])
@pytest.mark.parametrize('options,cell_clip,proj_clip,proj_scale', CLIPPED)
def test_clips_and_projection_scale_equal_the_reference(options, cell_clip, proj_clip,
                                                        proj_scale, compiled):
  cell = cells.ConcatCell(INPUT, H, *options, seed=3, cell_clip=cell_clip,
                          proj_clip=proj_clip, proj_scale=proj_scale)
  randomize(cell)
  x, o, c = random_inputs(cell)
  ro, rc = loss_weights(cell)
  params = {v.name.split(':')[0].split('/')[-1]: v.numpy().astype(np.float64)
            for v in cell.trainable_variables}
  every = options + (cell_clip, proj_clip, proj_scale)
  output, state = numpy_cell(params, x, o, c, *every)
  if cell_clip:  # the clip cuts some values: the test reaches its branch
    assert np.any(np.abs(numpy_cell(params, x, o, c, *options)[1]) > cell_clip)
  if proj_clip:
    assert np.any(np.abs(output) == proj_clip)
  tf_output, tf_state, tf_grads = tf_loss_and_gradients(cell, x, o, c, ro, rc, compiled)
  np.testing.assert_allclose(tf_output, output, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(tf_state, state, rtol=1e-5, atol=1e-6)
  grads = numpy_gradients(params, x, o, c, ro, rc, every)
  for name, gradient in grads.items():
    np.testing.assert_allclose(tf_grads[name], gradient, rtol=1e-4, atol=1e-5,
                               err_msg=name)


def test_a_projection_scale_starts_as_the_same_cell():
  """The scale only reparametrises: weights drawn 1/s wider, the same outputs at the start."""
  x, o, c = (tf.constant(a, tf.float32) for a in random_inputs(
      cells.ConcatCell(INPUT, H, True, 3, 2, seed=9)))
  plain = cells.ConcatCell(INPUT, H, True, 3, 2, seed=9)(x, o, c)
  scaled = cells.ConcatCell(INPUT, H, True, 3, 2, seed=9, proj_scale=0.3)(x, o, c)
  for a, b in zip(plain, scaled):
    np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=1e-6)


def course_as_paper(course_cell):
  """The course's twelve variables as the reference's named parameters."""
  values = {k: v.numpy().astype(np.float64) for k, v in
            course_cell.course_variables().items()}
  return {name: part.numpy().astype(np.float64) for name, part in
          zip(('x_weights', 'm_weights', 'biases'), cells.concatenate_gates(values))}


@pytest.mark.parametrize('compiled', [False, True], ids=['eager', 'tf.function'])
def test_course_cell_equals_the_reference_and_the_concat_cell(compiled):
  course_cell = cells.CourseCell(INPUT, H, seed=4)
  randomize(course_cell)
  concat_cell = cells.ConcatCell(INPUT, H, seed=5)
  concat_cell.assign_course(course_cell.course_variables())
  x, o, c = random_inputs(course_cell)
  ro, rc = loss_weights(course_cell)
  params = course_as_paper(course_cell)
  options = (False, None, None)
  output, state = numpy_cell(params, x, o, c, *options)
  grads = numpy_gradients(params, x, o, c, ro, rc, options)
  course_out = tf_loss_and_gradients(course_cell, x, o, c, ro, rc, compiled)
  concat_out = tf_loss_and_gradients(concat_cell, x, o, c, ro, rc, compiled)
  for tf_output, tf_state, tf_grads in (course_out, concat_out):
    np.testing.assert_allclose(tf_output, output, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tf_state, state, rtol=1e-5, atol=1e-6)
    for name in ('x', 'o', 'c'):
      np.testing.assert_allclose(tf_grads[name], grads[name], rtol=1e-4, atol=1e-5)
  # The course's twelve gradients, concatenated, are the concat cell's three.
  course_grads = {n: course_out[2][n] for n in cells.COURSE_VARIABLES}
  for name, part in zip(('x_weights', 'm_weights', 'biases'),
                        cells.concatenate_gates(course_grads)):
    np.testing.assert_allclose(part.numpy(), grads[name], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(concat_out[2][name], part.numpy(), rtol=1e-5, atol=1e-6)


def test_course_init_is_the_courses_quirk():
  cell = cells.CourseCell(27, 64, seed=0)
  weights = cell.ix.numpy()
  assert abs(weights.mean() + 0.1) < 0.01  # mean -0.1, not 0
  assert weights.min() >= -0.3 - 1e-6 and weights.max() <= 0.1 + 1e-6  # truncated at 2 sd
  assert not cell.ib.numpy().any()
  again = cells.CourseCell(27, 64, seed=0)
  np.testing.assert_array_equal(again.im.numpy(), cell.im.numpy())
  assert not np.array_equal(cells.CourseCell(27, 64, seed=1).im.numpy(), cell.im.numpy())


def test_make_cell_refuses_paper_options_on_the_course_cell():
  with pytest.raises(ValueError, match='--cell=concat'):
    cells.make_cell('course', 27, 8, peepholes=True)
  with pytest.raises(ValueError, match='--cell=lstm'):
    cells.make_cell('lstm', 27, 8)


@pytest.mark.parametrize('peepholes,cell_clip', [(False, None), (True, None), (True, 0.5)])
def test_fused_kernel_equals_the_cell_step_by_step(peepholes, cell_clip):
  """TensorFlow's own fused kernel (BlockLSTM, gates mapped from GATES order) against the
  ConcatCell called T times: outputs, final state and every gradient."""
  cell = cells.ConcatCell(INPUT, H, peepholes=peepholes, seed=6, fused=not cell_clip,
                          cell_clip=cell_clip)
  randomize(cell)
  rng = np.random.default_rng(7)
  x = tf.constant(rng.normal(size=(6, B, INPUT)), tf.float32)
  o0, c0 = (tf.constant(rng.normal(size=(B, H)), tf.float32) for _ in range(2))
  weights = tf.constant(rng.normal(size=(6, B, H)), tf.float32)

  def stepwise():
    o, c, outputs = o0, c0, []
    for t in range(6):
      o, c = cell(x[t], o, c)
      outputs.append(o)
    return tf.stack(outputs), o, c

  results = []
  for run in (stepwise, lambda: cell.sequence(x, o0, c0)):
    with tf.GradientTape() as tape:
      tape.watch([x, o0, c0])
      outputs, o, c = run()
      loss = tf.reduce_sum(outputs * weights) + tf.reduce_sum(c * c)
    results.append([outputs, o, c] + tape.gradient(
        loss, [x, o0, c0] + list(cell.trainable_variables)))
  if cell_clip:  # the kernel clips as the cell does; its gradient ignores the clip
    assert np.abs(results[0][2].numpy()).max() == pytest.approx(cell_clip)  # it cuts
    results = [r[:3] for r in results]
  for ours, fused in zip(*results):
    np.testing.assert_allclose(fused.numpy(), ours.numpy(), rtol=1e-5, atol=1e-6)


def test_fused_cell_refuses_a_cell_clip():
  with pytest.raises(ValueError, match='ignores --cell_clip'):
    cells.make_cell('fused', 27, 8, cell_clip=3.0)


def test_fused_cell_refuses_projections():
  with pytest.raises(ValueError, match='no projections'):
    cells.make_cell('fused', 27, 8, num_proj=4)


def legacy_cells():
  """TensorFlow 1's legacy cells from `tf_keras` (in the test extra, as pytest is).

  Missing, the test fails rather than skips: a suite run without the extra would otherwise
  pass with this reference silently gone. ASSIGNMENT6_ALLOW_SKIPS=1 skips it instead, for
  an environment where tf_keras cannot be installed.
  """
  try:
    return importlib.import_module('tf_keras.src.layers.rnn.legacy_cells')
  except ImportError as error:
    if os.environ.get('ASSIGNMENT6_ALLOW_SKIPS'):
      pytest.skip('tf_keras cannot be imported (%s)' % error)
    pytest.fail("tf_keras, of the test extra, cannot be imported (%s); pip install -e "
                "'.[test]', or set ASSIGNMENT6_ALLOW_SKIPS=1 to skip this test" % error)


@pytest.mark.filterwarnings('ignore:`tf.nn.rnn_cell.LSTMCell` is deprecated')
@pytest.mark.parametrize('peepholes,num_proj,cell_clip,proj_clip', [
    (False, None, None, None), (True, None, None, None), (True, 3, None, None),
    (False, 3, None, None), (True, 3, 0.8, 0.7)])
def test_concat_cell_equals_the_legacy_tensorflow_lstm_cell(peepholes, num_proj, cell_clip,
                                                            proj_clip):
  """The legacy `LSTMCell(use_peepholes=..., num_proj=...)` of TensorFlow 1, kept in the
  `tf_keras` package (a test extra): the same outputs, state and input gradients once its
  weights are ours, its gates mapped from `GATES` order to its own (i, j, f, o)."""
  legacy_module = legacy_cells()
  cell = cells.ConcatCell(INPUT, H, peepholes=peepholes, num_proj=num_proj, seed=8,
                          cell_clip=cell_clip, proj_clip=proj_clip)
  randomize(cell)
  legacy = legacy_module.LSTMCell(H, use_peepholes=peepholes, num_proj=num_proj,
                                  forget_bias=0.0, cell_clip=cell_clip, proj_clip=proj_clip)
  x, o, c = (tf.constant(a, tf.float32) for a in random_inputs(cell))
  legacy(x, (c, o))  # builds its variables

  def ijfo(weights):
    i, f, j, output_gate = np.split(weights, 4, axis=-1)
    return np.concatenate([i, j, f, output_gate], axis=-1)

  by_name = {v.name.split('/')[-1].split(':')[0]: v for v in legacy.variables
             if 'projection' not in v.name}
  by_name['kernel'].assign(ijfo(np.concatenate([cell.x_weights.numpy(),
                                                cell.m_weights.numpy()])))
  by_name['bias'].assign(ijfo(cell.biases.numpy()[0]))
  if peepholes:
    for ours, theirs in (('w_ic', 'w_i_diag'), ('w_fc', 'w_f_diag'), ('w_oc', 'w_o_diag')):
      by_name[theirs].assign(getattr(cell, ours))
  if num_proj:
    projection = [v for v in legacy.variables if 'projection' in v.name]
    projection[0].assign(cell.w_rm)
  with tf.GradientTape(persistent=True) as tape:
    tape.watch([x, o, c])
    ours = cell(x, o, c)
    output, (state, _) = legacy(x, (c, o))
    theirs = (output, state)
  for a, b in zip(ours, theirs):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    for wrt in (x, o, c):
      np.testing.assert_allclose(tape.gradient(a, wrt).numpy(), tape.gradient(b, wrt).numpy(),
                                 rtol=1e-5, atol=1e-6)
