"""The LSTM cells, as `tf.Module`s that own their variables.

Every cell is called as the course's `lstm_cell(i, o, state)` and returns
`(output, state)`: `i` is the input (batch, input_size), `o` the previous output and
`state` the previous cell state.

- `CourseCell`: the course's cell, twelve variables `ix, im, ib, fx, ..., ob`, two matmuls
  per gate ("in this formulation, we omit the various connections between the previous
  state and the gates").
- `ConcatCell`: Problem 1's answer, the same cell with the four gates side by side in one
  variable per side, so a step is one matmul for the input and one for the output. With
  `peepholes`, `num_proj` and `num_nonrec_proj` it is the cell of Sak, Senior & Beaufays
  (2014), the course's reading, which the course's code leaves out.

The gates are stored in one declared order, the course's: `GATES`.
"""
import itertools

import tensorflow as tf

from assignment6 import precision as precisions

# The course's order of the four gates, and the letter that starts its variables' names.
GATES = ('input', 'forget', 'update', 'output')
GATE_PREFIXES = ('i', 'f', 'c', 'o')
COURSE_VARIABLES = tuple(p + s for p in GATE_PREFIXES for s in ('x', 'm', 'b'))


def seed_stream(seed):
  """Stateless seeds (seed, 0), (seed, 1), ...: each variable gets its own, in order."""
  return ((seed, k) for k in itertools.count())


def course_init(shape, seed):
  """The course's `tf.truncated_normal(shape, -0.1, 0.1)`.

  Its second and third arguments are the mean and the standard deviation, so the weights
  are drawn around -0.1 (not in [-0.1, 0.1]): a quirk of the course, kept on purpose.
  """
  return tf.random.stateless_truncated_normal(shape, seed=seed, mean=-0.1, stddev=0.1)


def paper_init(shape, seed):
  """The paper's additions (peepholes, projections) start zero-mean: truncated normal,
  standard deviation 0.1. With the course's mean of -0.1, a projection sums H weights
  of one sign, r_t starts far from zero, and SGD at the course's rate 10 diverged in one of
  three seeds (88 cells, 32 projected; README, "The paper's cell")."""
  return tf.random.stateless_truncated_normal(shape, seed=seed, mean=0.0, stddev=0.1)


class CourseCell(tf.Module):
  """The course's `lstm_cell`: for each gate g in (i, f, c, o) weights gx (input, H),
  gm (H, H) and a bias gb (1, H).

      input_gate  = sigmoid(i ix + o im + ib)
      forget_gate = sigmoid(i fx + o fm + fb)
      update      = i cx + o cm + cb
      state       = forget_gate * state + input_gate * tanh(update)
      output_gate = sigmoid(i ox + o om + ob)
      output      = output_gate * tanh(state)
  """

  def __init__(self, input_size, num_nodes, seed=0, name=None):
    super().__init__(name=name)
    self.input_size = input_size
    self.num_nodes = num_nodes
    self.output_size = num_nodes
    seeds = seed_stream(seed)
    for prefix in GATE_PREFIXES:
      setattr(self, prefix + 'x', tf.Variable(
          course_init([input_size, num_nodes], next(seeds)), name=prefix + 'x'))
      setattr(self, prefix + 'm', tf.Variable(
          course_init([num_nodes, num_nodes], next(seeds)), name=prefix + 'm'))
      setattr(self, prefix + 'b', tf.Variable(tf.zeros([1, num_nodes]), name=prefix + 'b'))

  def course_variables(self):
    """The twelve variables by their course names."""
    return {name: getattr(self, name) for name in COURSE_VARIABLES}

  can_fuse = True

  def sequence(self, inputs, output, state):
    """The whole unrolled loop in one fused op, the twelve variables concatenated."""
    return block_lstm(*concatenate_gates(self.course_variables()), inputs, output, state)

  def __call__(self, i, o, state):
    """One step: i (B, input_size), o (B, H), state (B, H) -> output (B, H), state (B, H)."""
    input_gate = tf.sigmoid(tf.matmul(i, self.ix) + tf.matmul(o, self.im) + self.ib)
    forget_gate = tf.sigmoid(tf.matmul(i, self.fx) + tf.matmul(o, self.fm) + self.fb)
    update = tf.matmul(i, self.cx) + tf.matmul(o, self.cm) + self.cb
    state = forget_gate * state + input_gate * tf.tanh(update)
    output_gate = tf.sigmoid(tf.matmul(i, self.ox) + tf.matmul(o, self.om) + self.ob)
    return output_gate * tf.tanh(state), state


def concatenate_gates(course):
  """The course's twelve variables (a dict of arrays) -> ConcatCell's three, gate by gate.

  Returns x_weights (input, 4H), m_weights (H, 4H), biases (1, 4H) in `GATES` order.
  """
  return tuple(tf.concat([course[p + s] for p in GATE_PREFIXES], axis=1)
               for s in ('x', 'm', 'b'))


def split_gates(concatenated):
  """The inverse of `concatenate_gates`: (B, 4H) -> four (B, H), in `GATES` order."""
  return tf.split(concatenated, len(GATES), axis=1)


class ConcatCell(tf.Module):
  """Problem 1's cell: the four gates in one matmul per side; optionally the paper's cell.

  Variables: `x_weights` (input, 4H), `m_weights` (R, 4H), `biases` (1, 4H), the gates
  side by side in `GATES` order. Two variables rather than one over [input, output]: the
  input side can then be computed for all unrolled steps in one matmul before the loop
  (`input_projection`), and R may differ from H (the recurrent projection).

  Sak, Senior & Beaufays (2014), eqs. 1-6 (7-8 for the projections), in their names:

      i_t = sigmoid(W_ix x_t + W_ir r_{t-1} + W_ic * c_{t-1} + b_i)
      f_t = sigmoid(W_fx x_t + W_fr r_{t-1} + W_fc * c_{t-1} + b_f)
      c_t = f_t * c_{t-1} + i_t * tanh(W_cx x_t + W_cr r_{t-1} + b_c)
      o_t = sigmoid(W_ox x_t + W_or r_{t-1} + W_oc * c_t + b_o)
      m_t = o_t * tanh(c_t)
      r_t = W_rm m_t        (num_proj; else r_t = m_t)
      p_t = W_pm m_t        (num_nonrec_proj; joins r_t at the output layer)

  `W_ic, W_fc, W_oc` are diagonal (vectors `w_ic, w_fc, w_oc` of H) with `peepholes`.
  With `proj_scale` s the projections are r_t = s W_rm m_t and p_t = s W_pm m_t, their
  weights drawn s times wider (`paper_init` / s), so a new cell computes what it computes
  with s = 1; only SGD sees a difference: the product s W moves s^2 as fast as an
  unscaled W (as if the projections had their own learning rate, s^2 times the rest).
  `cell_clip` and `proj_clip` are TensorFlow 1 `LSTMCell`'s: c_t is clipped to
  [-cell_clip, cell_clip] before m_t and the output peephole read it (and is the state
  carried on), r_t and p_t to [-proj_clip, proj_clip]; None: no clip.
  The cell's output is [r_t, p_t] (B, P + Q): the output layer reads all of it, the next
  step reads r_t, its first R columns. With no option set this is exactly the course's cell.
  `precision` 'bfloat16' (`assignment6.precision`, --precision): every matmul (W_*x x_t,
  W_*r r_{t-1}, W_rm m_t, W_pm m_t) in bfloat16, everything else in float32 (`matmul`).
  """

  def __init__(self, input_size, num_nodes, peepholes=False, num_proj=None,
               num_nonrec_proj=None, seed=0, fused=False, name=None, cell_clip=None,
               proj_clip=None, proj_scale=1.0, precision=precisions.FLOAT32):
    super().__init__(name=name)
    precisions.check(precision)
    if fused and precision != precisions.FLOAT32:
      raise ValueError('--precision=%s needs --cell=concat (TensorFlow\'s fused kernel '
                       'computes in float32)' % precision)
    self.precision = precision
    self.round_once = True  # False: the reference, each matmul rounds its weights again
    if fused and (num_proj or num_nonrec_proj):
      raise ValueError('--cell=fused has no projections (TensorFlow\'s fused kernel has '
                       'none); use --cell=concat with --num_proj or --num_nonrec_proj')
    if fused and cell_clip:
      raise ValueError('--cell=fused: the gradient of TensorFlow\'s fused kernel ignores '
                       '--cell_clip; use --cell=concat with it')
    self.fused = fused
    self.input_size = input_size
    self.num_nodes = num_nodes
    self.peepholes = peepholes
    self.num_proj = num_proj or None
    self.num_nonrec_proj = num_nonrec_proj or None
    self.cell_clip = cell_clip or None
    self.proj_clip = proj_clip or None
    self.proj_scale = float(proj_scale)
    self.recurrent_size = self.num_proj or num_nodes  # R
    self.output_size = self.recurrent_size + (self.num_nonrec_proj or 0)
    seeds = seed_stream(seed)
    gates = len(GATES) * num_nodes
    self.x_weights = tf.Variable(course_init([input_size, gates], next(seeds)),
                                 name='x_weights')
    self.m_weights = tf.Variable(course_init([self.recurrent_size, gates], next(seeds)),
                                 name='m_weights')
    self.biases = tf.Variable(tf.zeros([1, gates]), name='biases')
    if peepholes:
      self.w_ic = tf.Variable(paper_init([num_nodes], next(seeds)), name='w_ic')
      self.w_fc = tf.Variable(paper_init([num_nodes], next(seeds)), name='w_fc')
      self.w_oc = tf.Variable(paper_init([num_nodes], next(seeds)), name='w_oc')
    if self.num_proj:
      self.w_rm = tf.Variable(paper_init([num_nodes, self.num_proj], next(seeds)) /
                              self.proj_scale, name='w_rm')
    if self.num_nonrec_proj:
      self.w_pm = tf.Variable(paper_init([num_nodes, self.num_nonrec_proj], next(seeds)) /
                              self.proj_scale, name='w_pm')

  def assign_course(self, course):
    """Set the gate variables from the course's twelve (a dict of arrays or variables)."""
    for variable, value in zip((self.x_weights, self.m_weights, self.biases),
                               concatenate_gates(course)):
      variable.assign(value)

  def matmul(self, a, weights):
    """a (N, K) @ weights (K, M) -> (N, M) float32: tf.matmul in float32; in bfloat16
    `precision.matmul`, whose weights a traced function rounds once for all its steps
    (`round_once`: the same numbers as rounding them at each step)."""
    return precisions.matmul(a, weights, self.precision, self.round_once)

  def input_projection(self, i):
    """The input side of every gate: i (N, input_size) -> (N, 4H)."""
    return self.matmul(i, self.x_weights) + self.biases

  def step(self, x_part, o, state):
    """One step given the input side: x_part (B, 4H), o (B, P + Q), state (B, H)."""
    r = o[:, :self.recurrent_size]  # (B, R)
    z = x_part + self.matmul(r, self.m_weights)  # (B, 4H)
    input_gate, forget_gate, update, output_gate = split_gates(z)  # 4 x (B, H)
    if self.peepholes:
      input_gate += self.w_ic * state
      forget_gate += self.w_fc * state
    state = tf.sigmoid(forget_gate) * state + tf.sigmoid(input_gate) * tf.tanh(update)
    if self.cell_clip:
      state = tf.clip_by_value(state, -self.cell_clip, self.cell_clip)
    if self.peepholes:
      output_gate += self.w_oc * state
    m = tf.sigmoid(output_gate) * tf.tanh(state)  # (B, H)
    outputs = [self.project(m, self.w_rm) if self.num_proj else m]  # r_t (B, R)
    if self.num_nonrec_proj:
      outputs.append(self.project(m, self.w_pm))  # p_t (B, Q)
    if self.proj_clip and (self.num_proj or self.num_nonrec_proj):
      outputs = [tf.clip_by_value(part, -self.proj_clip, self.proj_clip) for part in outputs]
    output = outputs[0] if len(outputs) == 1 else tf.concat(outputs, axis=1)
    return output, state

  def project(self, m, weights):
    """A projection: m (B, H) @ weights (H, P), times `proj_scale` -> (B, P)."""
    projection = self.matmul(m, weights)
    return projection if self.proj_scale == 1 else self.proj_scale * projection

  def __call__(self, i, o, state):
    """One step: i (B, input_size), o (B, P + Q), state (B, H) -> output, state."""
    return self.step(self.input_projection(i), o, state)

  @property
  def can_fuse(self):
    """Whether TensorFlow's fused kernel computes this cell (no projections, float32)."""
    return (not (self.num_proj or self.num_nonrec_proj) and
            self.precision == precisions.FLOAT32)

  def sequence(self, inputs, output, state):
    """The whole unrolled loop in one fused op (`block_lstm`): the faster twin of calling
    the cell T times. inputs (T, B, input_size) -> outputs (T, B, H), last output, state."""
    peepholes = (self.w_ic, self.w_fc, self.w_oc) if self.peepholes else None
    return block_lstm(self.x_weights, self.m_weights, self.biases, inputs, output, state,
                      peepholes, self.cell_clip)


def block_lstm(x_weights, m_weights, biases, inputs, output, state, peepholes=None,
               cell_clip=None, all_states=False):
  """T steps of the cell in TensorFlow's fused kernel, `BlockLSTM`.

  x_weights (input, 4H), m_weights (H, 4H), biases (1, 4H) in `GATES` order; inputs
  (T, B, input), output and state (B, H); peepholes: None or (w_ic, w_fc, w_oc), each (H,).
  Returns outputs (T, B, H), the last output and the last state; with `all_states`,
  outputs (T, B, H) and states (T, B, H).
  BlockLSTM multiplies [x_t, m_{t-1}] by one (input + H, 4H) matrix, the two weights
  stacked, with its gates in the order input, update, forget, output ("ICFO"), so the
  columns are permuted from `GATES`; `forget_bias=0` and `cell_clip=-1` (none) make it the
  course's cell (a `cell_clip` clips c_t as `ConcatCell` does in the forward pass, but
  the kernel's gradient ignores it: used for validation only, never trained through); its
  peepholes are the paper's (`wci`, `wcf` on c_{t-1}, `wco` on c_t).
  (BlockLSTMV2 keeps `GATES` order, but its registered gradient does not match its forward
  in TensorFlow 2.21; tests/test_cells.py checks this one's against the cell's.)
  """
  def icfo(weights):  # (..., 4H) in GATES order -> (..., 4H) in BlockLSTM's
    input_gate, forget_gate, update, output_gate = tf.split(weights, 4, axis=-1)
    return tf.concat([input_gate, update, forget_gate, output_gate], axis=-1)

  num_nodes = state.shape[-1]
  w_ic, w_fc, w_oc = peepholes or (tf.zeros([num_nodes]),) * 3
  _, cs, _, _, _, _, h = tf.raw_ops.BlockLSTM(
      seq_len_max=tf.cast(tf.shape(inputs)[0], tf.int64), x=inputs, cs_prev=state,
      h_prev=output, w=icfo(tf.concat([x_weights, m_weights], axis=0)), wci=w_ic,
      wcf=w_fc, wco=w_oc, b=icfo(tf.reshape(biases, [-1])), forget_bias=0.0,
      cell_clip=float(cell_clip or -1.0), use_peephole=peepholes is not None)
  if all_states:
    return h, cs  # (T, B, H) each
  return h, h[-1], cs[-1]  # (T, B, H), (B, H), (B, H)


CELLS = ('course', 'concat', 'fused')


def make_cell(cell, input_size, num_nodes, peepholes=False, num_proj=None,
              num_nonrec_proj=None, seed=0, cell_clip=None, proj_clip=None,
              proj_scale=1.0, precision=precisions.FLOAT32):
  """The cell a script's --cell names; the paper's options and --precision=bfloat16 need
  the concatenated cell."""
  if cell == 'course':
    if peepholes or num_proj or num_nonrec_proj or cell_clip:
      raise ValueError('--peepholes, --num_proj, --num_nonrec_proj and --cell_clip need '
                       '--cell=concat (or --cell=fused: no projections)')
    if precision != precisions.FLOAT32:
      raise ValueError('--precision=%s needs --cell=concat (the course\'s cell keeps the '
                       'course\'s float32 arithmetic bit for bit)' % precision)
    return CourseCell(input_size, num_nodes, seed=seed, name='lstm_cell')
  if cell in ('concat', 'fused'):
    return ConcatCell(input_size, num_nodes, peepholes, num_proj, num_nonrec_proj,
                      seed=seed, fused=cell == 'fused', name='lstm_cell',
                      cell_clip=cell_clip, proj_clip=proj_clip, proj_scale=proj_scale,
                      precision=precision)
  raise ValueError('--cell=%s: use one of %s' % (cell, ', '.join(CELLS)))
