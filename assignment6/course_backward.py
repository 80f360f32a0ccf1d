"""The course's cell unrolled with its backward pass written out: the faster twin of
`tf.gradients` through `CourseCell`'s Python loop, with the same float32 operations in the
same order, so the same bits.

Through the loop, `tf.gradients` makes each step's eight matmuls sixteen (the one-hot
input's own gradient is pruned): 198 small matmuls a step at the course's sizes, most of
the step's time. A matmul's output element is one dot product, whose order does not depend
on how many columns or rows are computed beside it (measured with TensorFlow's oneDNN
matmul on 2.16.2 and 2.21: every element equal), so here the four gates' matmuls on one
side are one matmul over the four gates' weights side by side, in `cells.GATES` order:

    forward     i [ix fx cx ox]             o [im fm cm om]           (B, 4H) each
    backward    i^T [dz_i dz_f dz_c dz_o]   o^T [dz_i dz_f dz_c dz_o] (the weights' gradients)

and the input side of all T steps is one matmul. Additions are exact element by element,
so `i ix + o im + ib` is added for the four gates at once. What is summed across matmuls
keeps its own sums: the previous output's gradient adds the classifier's and the four
gates' `dz_g g_m^T` (four matmuls) in the order `tf.gradients` adds them, one
`AddN([classifier, o, f, i, c])`; a weight's gradient adds its T steps' in one `AddN`, last
step first. Each other step is the op `tf.gradients` emits (`Sigmoid`, `Tanh`,
`SigmoidGrad`, `TanhGrad`, the products of `Mul`'s gradient, the bias's `Sum` over the
batch). At the course's sizes a step has 70 matmuls instead of 198 and about 520 ops
instead of 880. `Trainer.train_steps` (the default `--fast` path) traces its steps with
it (`written_unroll`); `Trainer.train_step` keeps `tf.gradients`, the plain twin.
tests/test_course_backward.py checks the bits of one against the other, and
tests/test_training.py the plain one's (and `train`'s) against the course's graph.

Only the cell's weights get gradients: the inputs are one-hot (no gradient), and the saved
output and state the loop starts from are not trained; the last state's gradient is taken
as zero (it only feeds the saved state), as in the course's graph.
"""
import contextlib
import functools

import numpy as np
import tensorflow as tf

from assignment6 import cells


@contextlib.contextmanager
def written_unroll(trainer):
  """While `trainer`'s multi-step call is traced: its model's `unroll` with the cell's
  gradient written out (`model_unroll`), if `trainer.written_gradient`; else nothing.
  The model's own `unroll` (what `train_step` traces: the plain twin) stays as it is; an
  attribute of the instance stands in front of it for the block."""
  model = trainer.model
  if not trainer.written_gradient:
    yield
    return
  model.unroll = functools.partial(model_unroll, model, trainer.tf1_ref_variables)
  try:
    yield
  finally:
    del model.unroll


_AGREE = {}  # (batch, steps, input_size, num_nodes) -> bool, this process's machine


def layouts_agree(batch, steps, input_size, num_nodes):
  """Whether this machine's kernels give every gate the same bits side by side as alone:
  the matmuls and the bias sum `unroll` merges, on random numbers of the course's shapes,
  checked once per shape (eagerly, also from inside a trace). Where they do not (another
  CPU, another oneDNN), `written_unroll` leaves the plain unroll in place: the written
  gradient is only ever used where it gives tf.gradients' bits."""
  key = (batch, steps, input_size, num_nodes)
  if key not in _AGREE:
    with tf.init_scope():
      _AGREE[key] = _agree(*key)
  return _AGREE[key]


def _agree(batch, steps, input_size, num_nodes):
  rng = np.random.default_rng(0)
  normal = lambda *shape: tf.constant(rng.standard_normal(shape).astype(np.float32))
  inputs, output = normal(steps * batch, input_size), normal(batch, num_nodes)
  x_weights, m_weights = normal(input_size, 4 * num_nodes), normal(num_nodes, 4 * num_nodes)
  dz = normal(batch, 4 * num_nodes)
  gates = lambda x: tf.split(x, 4, axis=1)
  cases = [  # (merged, [each gate alone])
      (tf.matmul(inputs, x_weights), [tf.concat([tf.matmul(rows, w) for rows in tf.split(
          inputs, steps)], 0) for w in gates(x_weights)]),
      (tf.matmul(output, m_weights), [tf.matmul(output, w) for w in gates(m_weights)]),
      (_matmul(inputs[:batch], dz, transpose_a=True, grad_b=True),
       [_matmul(inputs[:batch], d, transpose_a=True, grad_b=True) for d in gates(dz)]),
      (_matmul(output, dz, transpose_a=True, grad_b=True),
       [_matmul(output, d, transpose_a=True, grad_b=True) for d in gates(dz)]),
      (tf.reduce_sum(dz, [0], keepdims=True),
       [tf.reduce_sum(d, [0], keepdims=True) for d in gates(dz)])]
  return all(np.array_equal(whole.numpy(), part.numpy())
             for merged, alone in cases for whole, part in zip(gates(merged), alone))


def model_unroll(model, tf1_ref_variables, ids, output, state, dropout_seed=None):
  """`LanguageModel.unroll` for the course's cell on one-hot inputs with `unroll` as its
  loop: ids (T, B) -> T outputs (B, H), the last output and state; dropout as there.
  Where this machine's kernels would not give tf.gradients' bits (`layouts_agree`), it is
  the model's own unroll."""
  steps = ids.shape[0]
  if not layouts_agree(ids.shape[1], steps, model.cell.input_size, model.cell.num_nodes):
    return type(model).unroll(model, ids, output, state, dropout_seed)
  inputs = model.inputs(ids)  # (T, B, input_size)
  if dropout_seed is not None:
    inputs = tf.stack([model.dropout(i, tf.random.experimental.stateless_fold_in(
        dropout_seed, 2 * t)) for t, i in enumerate(tf.unstack(inputs, num=steps))])
  outputs, state = unroll(model.cell.course_variables(), inputs, output, state,
                          tf1_ref_variables)
  output = outputs[-1]  # the one carried on, never dropped
  if dropout_seed is not None:
    outputs = [model.dropout(o, tf.random.experimental.stateless_fold_in(
        dropout_seed, 2 * t + 1)) for t, o in enumerate(outputs)]
  return outputs, output, state


def _matmul(a, b, **attributes):
  return tf.raw_ops.MatMul(a=a, b=b, **attributes)


def unroll(weights, inputs, output, state, tf1_ref_variables=False):
  """The cell over T steps: weights, the twelve `ix ... ob` (variables or tensors, read
  once); inputs (T, B, input), one-hot; output and state (B, H) to start from.

  Returns (T outputs (B, H), the last state (B, H)). tf1_ref_variables: the first step's
  gradient reads the last output and state where the first ones belong
  (`training.tf1_reference_reads`: TF1's reference variables).
  """
  steps, batch, input_size = inputs.shape
  prefixes = cells.GATE_PREFIXES

  @tf.custom_gradient
  def loop(output, state, *values):
    w = dict(zip(cells.COURSE_VARIABLES, values))
    x_weights, m_weights, biases = cells.concatenate_gates(w)  # (input | H | 1, 4H)
    inputs_by_step = tf.unstack(inputs, num=steps)  # T x (B, input)
    # The input side of every step in one matmul (rows do not change a row's sums).
    x_sides = tf.split(tf.matmul(tf.reshape(inputs, [steps * batch, input_size]),
                                 x_weights), steps, axis=0)  # T x (B, 4H)
    saved, outputs = [], []
    for i, x_side in zip(inputs_by_step, x_sides):  # the course's lstm_cell
      # i ix + o im + ib for the four gates at once: additions, element by element.
      z = x_side + tf.matmul(output, m_weights) + biases  # (B, 4H)
      input_gate, forget_gate, update, output_gate = cells.split_gates(z)  # 4 x (B, H)
      input_gate = tf.sigmoid(input_gate)
      forget_gate = tf.sigmoid(forget_gate)
      update = tf.tanh(update)
      new_state = forget_gate * state + input_gate * update
      output_gate = tf.sigmoid(output_gate)
      tanh_state = tf.tanh(new_state)
      saved.append((i, output, state, input_gate, forget_gate, update, output_gate,
                    tanh_state))
      output, state = output_gate * tanh_state, new_state
      outputs.append(output)

    def gradient(*upstream):
      """upstream: the T outputs' gradients, then the last state's (taken as zero)."""
      x_parts, m_parts, bias_parts = [], [], []  # per step, last first: (., 4H) each
      recurrent = state_part = None  # from step t + 1: o's four gate terms, Mul's term
      for t in reversed(range(steps)):
        i, o, s, input_gate, forget_gate, update, output_gate, tanh_state = saved[t]
        if t == 0 and tf1_ref_variables:  # the reads alias the saved variables' buffers
          o, s = outputs[-1], state  # the last output and state
        d_output = upstream[t]
        if recurrent is not None:
          d_output = tf.math.add_n([d_output] + recurrent)
        d_output_gate = d_output * tanh_state
        d_state = tf.raw_ops.TanhGrad(y=tanh_state, dy=d_output * output_gate)
        if state_part is not None:
          d_state = tf.math.add_n([state_part, d_state])
        d_forget_gate = d_state * s
        d_input_gate = d_state * update
        d_update = d_state * input_gate
        if t > 0:
          state_part = d_state * forget_gate
        dz = {'i': tf.raw_ops.SigmoidGrad(y=input_gate, dy=d_input_gate),
              'f': tf.raw_ops.SigmoidGrad(y=forget_gate, dy=d_forget_gate),
              'c': tf.raw_ops.TanhGrad(y=update, dy=d_update),
              'o': tf.raw_ops.SigmoidGrad(y=output_gate, dy=d_output_gate)}
        dz_all = tf.concat([dz[p] for p in prefixes], axis=1)  # (B, 4H)
        bias_parts.append(tf.reduce_sum(dz_all, [0], keepdims=True))  # (1, 4H)
        x_parts.append(_matmul(i, dz_all, transpose_a=True, grad_b=True))
        m_parts.append(_matmul(o, dz_all, transpose_a=True, grad_b=True))
        if t > 0:  # o's gradient from this step's gates, in tf.gradients' order
          recurrent = [_matmul(dz[p], w[p + 'm'], transpose_b=True, grad_a=True)
                       for p in ('o', 'f', 'i', 'c')]
      grads = {}
      for side, parts in (('x', x_parts), ('m', m_parts), ('b', bias_parts)):
        grads.update(zip([p + side for p in prefixes],
                         tf.split(tf.math.add_n(parts), 4, axis=1)))
      return [None, None] + [grads[name] for name in cells.COURSE_VARIABLES]

    return (outputs, state), gradient

  values = [tf.convert_to_tensor(weights[name]) for name in cells.COURSE_VARIABLES]
  outputs, state = loop(output, state, *values)
  return list(outputs), state
