"""Do the assignment yourself: one object per exercise, with checks that say what is wrong.

In an exercise notebook (`notebooks/exercises/`), after writing a function:

    from assignment6 import exercises
    exercises.lstm_cell.check(lstm_cell)   # prints a verdict, returns True or False
    exercises.lstm_cell.hint()
    exercises.lstm_cell.solution()         # the package's own code: the reference
    exercises.concat_cell.train(lstm_cell) # your cell in the port's training loop

A check runs the answer eagerly and under `tf.function` on seeded inputs, against the
package's own code (the reference): shapes first, then values (relative error), then
gradients. When the answer computes something else it names the mistake
(`assignment6.diagnoses`). A skeleton that still raises `NotImplementedError` is "not done
yet". `EXERCISES` lists them in the notebooks' order.

    python -m assignment6.exercises --make_notebooks   # notebooks/solutions -> exercises
"""
import os
import random

from absl import app
from absl import flags as absl_flags
import numpy as np
import tensorflow as tf

from assignment6 import cells, course, data, diagnoses, exercise_notebooks, models, training
from assignment6.diagnoses import (TOLERANCE, Exercise, Mistake, both_ways, expect_pair,
                                   expect_shape, made_text, relative_error, run, shape_of)

NOTEBOOK_STEPS = 'ASSIGNMENT6_NOTEBOOK_STEPS'


# ---------------------------------------------------------------------------- cells

class CellExercise(Exercise):
  """A cell (i, o, state, weights...) -> (output, state) against the course's cell."""

  input_size, num_nodes, batch = data.vocabulary_size, 8, 6
  square_recurrent = True

  def weights(self, blocks):
    """The answer's weight arguments from the course's twelve arrays."""
    raise NotImplementedError

  def reference_cell(self, blocks):
    cell = cells.CourseCell(self.input_size, self.num_nodes)
    for name, value in blocks.items():
      getattr(cell, name).assign(value)
    return cell

  def verify(self, answer):
    i, o, state, blocks = diagnoses.seeded_cell_inputs(self.input_size, self.num_nodes,
                                                       self.batch)
    reference = self.reference_cell(blocks)
    f32 = lambda x: tf.constant(x, tf.float32)
    weights = self.weights({k: f32(v) for k, v in blocks.items()})
    expected = reference(f32(i), f32(o), f32(state))
    why = '(batch, num_nodes): one row per example, one column per cell'

    def compare(got, how):
      got = expect_pair(got)
      for name, g in zip(('output', 'state'), got):
        expect_shape('the %s (%s)' % (name, how), g, (self.batch, self.num_nodes), why)
      errors = [relative_error(g, e) for g, e in zip(got, expected)]
      if max(errors) > TOLERANCE:
        found = diagnoses.diagnose_cell(got, i, o, state, *diagnoses.blocks_of(blocks),
                                        square_recurrent=self.square_recurrent)
        if found:
          raise Mistake(*found)
        where = diagnoses.localise_cell([diagnoses.numpy(g) for g in got], i, o, state,
                                        *diagnoses.blocks_of(blocks))
        raise Mistake('values', 'the cell computes something else than the course\'s '
                      '(relative error %.2g output, %.2g state); %s' % (*errors, where))
      return 'Values %s: relative error %.1e (output), %.1e (state).' % (how, *errors)

    lines = ['Shapes: output and state (%d, %d).' % (self.batch, self.num_nodes)]
    lines += both_ways(answer, lambda: (f32(i), f32(o), f32(state)) + tuple(weights),
                       compare)
    lines.append(self.gradient_check(answer, i, o, state, blocks, reference))
    return lines

  def gradient_check(self, answer, i, o, state, blocks, reference):
    """The answer's gradients against the course's cell's, with respect to i, o, state
    and the twelve weights (the reference's as its variables)."""
    names = ('i', 'o', 'state') + cells.COURSE_VARIABLES
    rng = np.random.default_rng(1)
    projections = [tf.constant(rng.normal(size=(self.batch, self.num_nodes)), tf.float32)
                   for _ in range(2)]
    inputs = [tf.constant(x, tf.float32) for x in (i, o, state)]
    twelve = [tf.constant(blocks[k], tf.float32) for k in cells.COURSE_VARIABLES]
    with tf.GradientTape(persistent=True) as tape:
      tape.watch(inputs + twelve)
      got = answer(*inputs, *self.weights(dict(zip(cells.COURSE_VARIABLES, twelve))))
      mine = tf.add_n([tf.reduce_sum(g * p) for g, p in zip(got, projections)])
      want = tf.add_n([tf.reduce_sum(w * p) for w, p in
                       zip(reference(*inputs), projections)])
    variables = [getattr(reference, k) for k in cells.COURSE_VARIABLES]
    got = tape.gradient(mine, inputs + twelve)
    expected = tape.gradient(want, inputs + variables)
    for name, g, w in zip(names, got, expected):
      if g is None:
        raise Mistake('no_gradient', 'no gradient flows to %s: is it used, or cut by '
                      'tf.stop_gradient or NumPy?' % name)
      error = relative_error(tf.convert_to_tensor(g), w)
      if error > 1e-4:
        raise Mistake('gradient', 'the gradient with respect to %s differs (relative '
                      'error %.2g): a step that is not differentiable?' % (name, error))
    return ('Gradients with respect to i, o, state and the twelve weights: relative '
            'error <= 1e-4.')


class LanguageModelTraining(object):
  """`train(answer)`: the learner's cell in the port's model and training loop, the
  course's settings and log, then the comparison with the course's recorded run."""

  def cell_for_training(self, answer, seed):
    raise NotImplementedError

  def train(self, answer, num_steps=None, seed=0, text=None, log=print):
    """Train the course's model with the answer as its cell; returns the log's lines.

    num_steps: the course's 7,001 unless the environment's ASSIGNMENT6_NOTEBOOK_STEPS
    says fewer. text: the corpus (default: `data.load_corpus()`).
    """
    outcome = self.result(answer)
    if outcome.mistake == 'not_done' or outcome.mistake in EXCEPTIONS:
      print(outcome.message)
      print('%s: train runs your code once it runs; nothing trained.' % self.name)
      return None
    if not outcome.passed:
      print(outcome.message)
      print('%s: training it anyway, to see what the mistake does.' % self.name)
    if num_steps is None:
      num_steps = int(os.environ.get(NOTEBOOK_STEPS, 7001))
    text = data.load_corpus(print_fn=log) if text is None else text
    valid_size, batch_size, num_unrollings = 1000, 64, 10
    valid_text, train_text = text[:valid_size], text[valid_size:]
    random.seed(seed)
    np.random.seed(seed)
    tf.random.set_seed(seed)
    model = models.LanguageModel(self.cell_for_training(answer, seed), batch_size,
                                 data.vocabulary_size, seed=seed)
    train_batches = data.BatchGenerator(train_text, batch_size, num_unrollings)
    train_batches.next()  # the two batches the course's notebook prints before training
    train_batches.next()
    trainer = training.Trainer(model, learning_rate=10.0, decay_steps=5000, decay_rate=0.1,
                               clip_norm=1.25, seed=seed)
    lines = []

    def logged(line=''):
      lines.append(line)
      log(line)

    logged('Initialized')
    training.train(trainer, train_batches, training.validation_batches(valid_text),
                   num_steps, 100, valid_size, log=logged)
    if num_steps < 7001:
      logged('(%d steps: the verdict\'s tolerance is measured over the course\'s 7,001 '
             'steps, from step 1,000; a short run only shows the log.)' % num_steps)
    for line in course.compare(course.parse_log('\n'.join(lines)),
                               names=('your cell', 'the course\'s run')):
      logged(line)
    return lines


# Mistakes that stop the code before it computes anything: `train` does not start.
EXCEPTIONS = ('exception', 'not_traceable', 'tf0_concat', 'tf0_split', 'keep_prob_argument',
              'split_axis', 'matmul_shapes', 'incompatible_shapes', 'returns', 'shape')


class LearnerCourseCell(cells.CourseCell):
  """The course's cell with the learner's `lstm_cell(i, o, state, weights)` as its step."""

  can_fuse = False

  def __init__(self, answer, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self.answer = answer

  def __call__(self, i, o, state):
    return self.answer(i, o, state, self.course_variables())


class LearnerConcatCell(cells.ConcatCell):
  """Problem 1's cell with the learner's `lstm_cell(i, o, state, x_weights, m_weights,
  biases)` as its step (never the fused kernel: the learner's code runs)."""

  can_fuse = False

  def __init__(self, answer, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self.answer = answer

  def __call__(self, i, o, state):
    return self.answer(i, o, state, self.x_weights, self.m_weights, self.biases)


class CourseLstmCell(CellExercise, LanguageModelTraining):
  name = 'lstm_cell'
  references = (cells.CourseCell.__call__,)
  hint_text = """
      Each gate is sigmoid(i @ gx + o @ gm + gb) for g in i, f, o (input, forget, output);
      the update is i @ cx + o @ cm + cb, squashed by tanh. Then
        state = forget_gate * state + input_gate * tanh(update)
        output = output_gate * tanh(state)
      and return (output, state). tf.matmul(i, w['ix']) multiplies (B, 27) by (27, H)."""

  def weights(self, blocks):
    return (blocks,)

  def cell_for_training(self, answer, seed):
    return LearnerCourseCell(answer, data.vocabulary_size, 64, seed=seed, name='lstm_cell')


class ConcatLstmCell(CellExercise, LanguageModelTraining):
  name = 'concat_cell'
  square_recurrent = False
  references = (cells.ConcatCell.input_projection, cells.ConcatCell.step,
                cells.split_gates)
  hint_text = """
      One matmul per side: z = tf.matmul(i, x_weights) + tf.matmul(o, m_weights) + biases
      is (B, 4 * H), the four gates' pre-activations side by side in the course's order
      (input, forget, update, output). Cut them with tf.split(z, 4, axis=1) -- TensorFlow
      2's order: the value first, then the number, then the axis -- and finish as the
      course's cell does."""

  def weights(self, blocks):
    return cells.concatenate_gates(blocks)

  def cell_for_training(self, answer, seed):
    return LearnerConcatCell(answer, data.vocabulary_size, 64, seed=seed, name='lstm_cell')


class ConcatenateGates(Exercise):
  name = 'concatenate_gates'
  references = (cells.concatenate_gates,)
  hint_text = """
      For each side s in x, m, b, put the four gates' variables side by side, in the
      course's order i, f, c, o: tf.concat([course['i' + s], course['f' + s], ...], axis=1).
      (TensorFlow 0.x wrote tf.concat(1, values); TensorFlow 2 takes the values first.)"""

  def verify(self, answer):
    _, _, _, blocks = diagnoses.seeded_cell_inputs(data.vocabulary_size, 8, 6)
    course_variables = {k: tf.constant(v, tf.float32) for k, v in blocks.items()}
    expected = cells.concatenate_gates(course_variables)
    shapes = ((27, 32), (8, 32), (1, 32))

    def compare(got, how):
      got = expect_pair(got, ('x_weights', 'm_weights', 'biases'))
      for name, g, e, side in zip(('x_weights', 'm_weights', 'biases'), got, expected, 'xmb'):
        shape = shape_of(g)
        rows, columns = shape_of(course_variables['i' + side])
        if shape == (4 * rows, columns):
          raise Mistake('concat_axis', '%s has shape %s: the gates are stacked on axis 0 '
                        '(one under the other); put them side by side, axis=1, shape %s'
                        % (name, shape, (rows, 4 * columns)))
        expect_shape(name, g, e.shape, '(rows of one gate\'s variable, 4 * num_nodes)')
        if relative_error(g, e) > TOLERANCE:
          parts = tf.split(g, 4, axis=1)
          found = []
          for k, part in enumerate(parts):
            for j, prefix in enumerate(cells.GATE_PREFIXES):
              if relative_error(part, course_variables[prefix + side]) < TOLERANCE:
                found.append((k, j))
          if len(found) == 4:
            raise Mistake('gate_order', 'the gates are in another order than the '
                          'course\'s (input, forget, update, output; cells.GATES): '
                          'in %s, block %s' % (name, ', '.join(
                              '%d holds %s' % (k, cells.GATES[j]) for k, j in found)))
          raise Mistake('values', '%s holds other numbers than the four variables '
                        '%s side by side' % (name, ', '.join(
                            p + side for p in cells.GATE_PREFIXES)))
      return 'Values %s: the course\'s twelve variables, side by side.' % how

    return both_ways(answer, lambda: (course_variables,), compare)


# ---------------------------------------------------------------------------- warm-up

class Unroll(Exercise):
  name = 'unroll'
  references = (models.LanguageModel.unroll,)
  hint_text = """
      Start from output = saved_output and state = saved_state; for each i in
      train_inputs, output, state = lstm_cell(i, output, state) and append the output.
      After the loop save the last ones: saved_output.assign(output),
      saved_state.assign(state) (the course's tf.control_dependencies). The next batch
      starts where this one ended."""

  def verify(self, answer):
    steps, batch, num_nodes = 5, 4, 8
    cell = cells.CourseCell(data.vocabulary_size, num_nodes, seed=3)
    model = models.LanguageModel(cell, batch, data.vocabulary_size)
    rng = np.random.default_rng(0)
    ids = tf.constant(rng.integers(0, 27, (steps, batch)), tf.int32)
    start_output = tf.constant(rng.uniform(-1, 1, (batch, num_nodes)), tf.float32)
    start_state = tf.constant(rng.normal(size=(batch, num_nodes)), tf.float32)
    inputs = list(tf.unstack(models.one_hot(ids, data.vocabulary_size)))
    expected, last_output, last_state = model.unroll(ids, start_output, start_state)
    zero = tf.zeros_like(start_output)
    from_zero = model.unroll(ids, zero, zero)[0]
    each_from_saved = [cell(i, start_output, start_state)[0] for i in inputs]
    states = []
    output, state = start_output, start_state
    for i in inputs:
      output, state = cell(i, output, state)
      states.append(state)
    first_output, first_state = cell(inputs[0], start_output, start_state)
    close = lambda a, b: (shape_of(a) == shape_of(b) and relative_error(a, b) < TOLERANCE)
    all_close = lambda xs, ys: len(xs) == len(ys) and all(close(x, y) for x, y in zip(xs, ys))

    def compare(got, how):
      if not isinstance(got, (list, tuple)):
        raise Mistake('returns', 'it returns %s; return the list of outputs, one per '
                      'input' % type(got).__name__)
      got = list(got)
      if len(got) in (2, 3) and isinstance(got[0], (list, tuple)):
        raise Mistake('returns', 'it returns a %d-tuple whose first item is a list: return '
                      'only the list of outputs (the last output and state go into '
                      'saved_output and saved_state)' % len(got))
      if len(got) != steps:
        raise Mistake('length', 'it returns %d outputs for %d inputs: one output per '
                      'unrolled step' % (len(got), steps))
      for t, g in enumerate(got):
        expect_shape('output %d' % t, g, (batch, num_nodes), '(batch, num_nodes)')
      if not all_close(got, expected):
        if all_close(got, from_zero):
          raise Mistake('zero_start', 'the loop starts from zeros: start from '
                        'saved_output and saved_state, so the state carries from one '
                        'batch to the next')
        if all_close(got, each_from_saved):
          raise Mistake('state_not_carried', 'every step starts from the saved state: '
                        'feed each step\'s (output, state) to the next step')
        if all_close(got, states):
          raise Mistake('states_appended', 'the list holds the states; the classifier '
                        'reads the outputs')
        raise Mistake('values', 'the outputs differ from the course\'s loop')
      return 'Outputs %s: %d steps, relative error %.1e.' % (how, steps, max(
          relative_error(g, e) for g, e in zip(got, expected)))

    lines = []
    for function in (False, True):
      saved_output = tf.Variable(start_output)
      saved_state = tf.Variable(start_state)
      how = 'under tf.function' if function else 'eagerly'
      got = run(answer, cell, inputs, saved_output, saved_state, function=function)
      lines.append(compare(got, how))
      saved = (saved_output.value(), saved_state.value())
      if close(saved[0], saved[1]) or (close(saved[0], last_state)
                                       and close(saved[1], last_output)):
        raise Mistake('saved_swapped', 'saved_output and saved_state are swapped: save '
                      'the output in saved_output, the state in saved_state')
      if close(saved[0], start_output) and close(saved[1], start_state):
        raise Mistake('state_not_saved', 'saved_output and saved_state are left as they '
                      'were: assign them the last output and state (%s)' % how)
      if close(saved[0], first_output) and close(saved[1], first_state):
        raise Mistake('saved_first', 'the saved state is the first step\'s; save the '
                      'last step\'s')
      if not (close(saved[0], last_output) and close(saved[1], last_state)):
        raise Mistake('saved_values', 'saved_output and saved_state do not hold the last '
                      'step\'s output and state (%s)' % how)
    lines.append('saved_output and saved_state hold the last step\'s output and state.')
    return lines


class InputsAndLabels(Exercise):
  name = 'inputs_and_labels'
  references = (training.Trainer._update,)
  hint_text = """
      batches holds num_unrollings + 1 arrays: the last one of the previous batch, then
      num_unrollings new ones. Each input predicts the character after it:
      train_inputs = batches[:num_unrollings], train_labels = batches[1:]."""

  def verify(self, answer):
    generator = data.BatchGenerator(made_text(), 4, 5)
    batches = generator.next()  # 6 one-hot (4, 27)
    got = run(answer, batches)
    got = expect_pair(got, ('train_inputs', 'train_labels'))
    inputs, labels = (list(g) for g in got)
    same = lambda xs, ys: len(xs) == len(ys) and all(
        np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(xs, ys))
    if same(inputs, labels):
      raise Mistake('labels_not_shifted', 'the labels are the inputs: each input must '
                    'predict the next character (labels shifted by one step). With '
                    'these labels the model learns to copy its input and the loss reads '
                    'near 0')
    if same(inputs, batches[1:]) and same(labels, batches[:-1]):
      raise Mistake('labels_swapped', 'inputs and labels are swapped: the model would '
                    'predict the previous character')
    if len(inputs) != 5 or len(labels) != 5:
      raise Mistake('length', '%d inputs and %d labels from %d arrays: both are '
                    'num_unrollings = %d long (the first array is the previous batch\'s '
                    'last)' % (len(inputs), len(labels), len(batches), 5))
    if not (same(inputs, batches[:-1]) and same(labels, batches[1:])):
      raise Mistake('values', 'the inputs should be batches[:num_unrollings] and the '
                    'labels batches[1:]')
    return ['Inputs are batches[:5], labels batches[1:]: each input predicts the next '
            'character.']


class Logprob(Exercise):
  name = 'logprob'
  references = (data.logprob,)
  hint_text = """
      The mean over the rows (examples) of -sum(labels * log(predictions)): nats per
      prediction. Clamp the predictions below at 1e-10 first (np.maximum) so a zero
      probability of the true label gives 23 nats, not infinity."""

  def verify(self, answer):
    rng = np.random.default_rng(0)
    batch, size = 8, 27
    predictions = rng.uniform(0, 1, (batch, size))
    labels = np.eye(size)[rng.integers(0, size, batch)]
    predictions[0] *= 1 - labels[0]  # the true label of row 0 has probability 0
    predictions /= predictions.sum(1, keepdims=True)
    expected = data.logprob(predictions, labels)
    with np.errstate(all='ignore'):  # a log of 0 is the learner's to see, as inf
      got = run(answer, predictions.copy(), labels.copy())
    try:
      got = float(np.asarray(got))
    except (TypeError, ValueError):
      raise Mistake('returns', 'it returns %s of shape %s; return one number (nats per '
                    'row)' % (type(got).__name__, shape_of(got))) from None
    if not np.isfinite(got):
      raise Mistake('no_clamp', 'it returns %s when a true label has probability 0: '
                    'clamp the predictions at 1e-10 (np.maximum(predictions, 1e-10))' % got)
    if abs(got - expected) > 1e-6 * abs(expected):
      ratio = got / expected
      for value, mistake, message in (
          (batch, 'not_per_row', 'the sum over the batch: divide by the number of rows '
           '(labels.shape[0])'),
          (1.0 / size, 'mean_over_all', 'a mean over every entry: divide by the number '
           'of rows only'),
          (1.0 / np.log(2), 'log2', 'in bits: the course\'s logprob is in nats (np.log)'),
          (-1.0, 'sign', 'the negative of the course\'s: -log p is positive')):
        if abs(ratio - value) < 1e-6 * abs(value):
          raise Mistake(mistake, 'it returns %.6g, %.6g times the course\'s %.6g: %s'
                        % (got, ratio, expected, message))
      raise Mistake('values', 'it returns %.6g; the course\'s logprob gives %.6g'
                    % (got, expected))
    return ['%.6f nats per row, as the course\'s (a zero probability clamped to 1e-10).'
            % got]


from assignment6.exercises_problems import (  # noqa: E402  (the problems' exercises)
    BigramBatches, BigramIds, BigramLabels, BigramLoss, Dropout, Embedding, MirrorEncoder,
    MirrorDecode, MirrorSequences, MirrorTarget)

lstm_cell = CourseLstmCell()
unroll = Unroll()
inputs_and_labels = InputsAndLabels()
logprob = Logprob()
concatenate_gates = ConcatenateGates()
concat_cell = ConcatLstmCell()
embedding = Embedding()
bigram_ids = BigramIds()
bigram_batches = BigramBatches()
bigram_labels = BigramLabels()
bigram_loss = BigramLoss()
dropout = Dropout()
mirror_target = MirrorTarget()
mirror_sequences = MirrorSequences()
mirror_encoder = MirrorEncoder()
mirror_decode = MirrorDecode()
EXERCISES = (lstm_cell, unroll, inputs_and_labels, logprob, concatenate_gates, concat_cell,
             embedding, bigram_ids, bigram_batches, bigram_labels, bigram_loss, dropout, mirror_target,
             mirror_sequences, mirror_encoder, mirror_decode)


# ---------------------------------------------------------------------------- the script

def main(argv):
  """`--make_notebooks`: notebooks/exercises from notebooks/solutions."""
  if len(argv) > 1 or not absl_flags.FLAGS.make_notebooks:
    print('usage: python -m assignment6.exercises --make_notebooks')
    return 1
  for path in exercise_notebooks.make_notebooks():
    print('Wrote %s' % os.path.relpath(path))
  return 0


if __name__ == '__main__':
  # Defined here, not at import: importing the exercises in a notebook defines no flag.
  absl_flags.DEFINE_bool('make_notebooks', False, 'Write notebooks/exercises/*.ipynb from '
                         'the solution notebooks in notebooks/solutions (nbgrader\'s '
                         'markers).')
  app.run(main)
