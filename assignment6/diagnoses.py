"""What a learner's answer computes, said in the learner's terms: the machinery of the checks.

`assignment6.exercises` holds one object per exercise; this module holds what they share:

- `run(answer, *args)`: the answer called eagerly (or under `tf.function`). A skeleton's
  `NotImplementedError` becomes `NotDone`; any other exception becomes `Mistake` with one
  line: the exception, the line of the learner's code it came from, and, for the traps
  this assignment is known for (TensorFlow 0.x's `tf.concat(0, values)`, `tf.split(0, 4,
  x)`, `keep_prob=`), what to write instead (`explain_exception`).
- `relative_error(x, y)`: CS231n's max |x - y| / max(|x| + |y|, 1e-8).
- `general_cell`: the course's LSTM cell in float64 NumPy with every choice a learner can
  get wrong as a parameter (the order of the gate blocks, which biases are added, each
  activation, what the forget gate multiplies, ...). `diagnose_cell` computes the answer's
  numbers against each single change of the course's choices and names the one the
  answer computes: a diagnosis from what the answer does, not from its source.
"""
import inspect
import itertools
import linecache
import re
import textwrap
import traceback

import numpy as np
import tensorflow as tf

from assignment6 import cells

TOLERANCE = 1e-5  # float32 against the float32 reference


class NotDone(Exception):
  """The answer still raises the skeleton's NotImplementedError."""


class Mistake(Exception):
  """What is wrong, in one message; `mistake` is a short name for it (tests read it)."""

  def __init__(self, mistake, message):
    super().__init__(message)
    self.mistake = mistake
    self.message = message


def learner_files(answer):
  """The files the learner's code lives in (a notebook cell's, a module's)."""
  files = set()
  objects = [answer]
  if isinstance(answer, type):
    objects = [v for v in vars(answer).values() if callable(v)]
  for obj in objects:
    code = getattr(getattr(obj, '__func__', obj), '__code__', None)
    if code is None and hasattr(obj, '__call__'):
      code = getattr(getattr(obj.__call__, '__func__', None), '__code__', None)
    if code is not None:
      files.add(code.co_filename)
  return files


def learner_frame(error, answer):
  """(line number, function name, source line) of the deepest frame in the learner's
  code, or None."""
  files = learner_files(answer)
  found = None
  for frame in traceback.extract_tb(error.__traceback__):
    if frame.filename in files:
      found = frame
  if found is None:
    return None
  line = found.line or linecache.getline(found.filename, found.lineno).strip()
  return found.lineno, found.name, line


_CONCAT_0X = re.compile(r'\bconcat\(\s*-?\d+\s*,')
_SPLIT_0X = re.compile(r'\bsplit\(\s*-?\d+\s*,')


def explain_exception(error, line):
  """(mistake, advice) for the exceptions this assignment's traps raise, else (None, '')."""
  text = str(error)
  line = line or ''
  if _CONCAT_0X.search(line):
    return ('tf0_concat', 'this is TensorFlow 0.x\'s argument order, tf.concat(axis, '
            'values); TensorFlow 2 takes tf.concat(values, axis)')
  if _SPLIT_0X.search(line):
    return ('tf0_split', 'this is TensorFlow 0.x\'s argument order, tf.split(axis, '
            'num, value); TensorFlow 2 takes tf.split(value, num, axis)')
  if 'keep_prob' in text:
    return ('keep_prob_argument', 'TensorFlow 2\'s tf.nn.dropout takes rate, the '
            'probability to drop: rate = 1 - keep_prob')
  if 'logits_size' in text and 'labels_size' in text:
    return ('one_hot_wrong_size', 'the one-hot labels have another width than the logits: '
            'labels are one-hot on the model\'s vocabulary (729 for bigrams)')
  if 'concat' in line and ('Dimensions must be equal' in text or 'size-incompatible' in text
                           or 'Incompatible shapes' in text):
    return ('concat_axis', 'the tensors were concatenated on another axis than meant: '
            'tf.concat(outputs, 0) puts the steps\' (B, H) outputs one under the other')
  if 'evenly divide' in text or 'evenly divisible' in text:
    return ('split_axis', 'tf.split cut an axis that is not the gates\' (the gates lie '
            'side by side on axis 1, the last)')
  if 'Matrix size-incompatible' in text or ('Dimensions must be equal' in text
                                            and 'MatMul' in text):
    return ('matmul_shapes', 'a matmul\'s inner sizes differ: are the weights '
            'transposed, or the operands the other way round (i @ W, not W @ i)?')
  if 'Incompatible shapes' in text or 'Dimensions must be equal' in text:
    return ('incompatible_shapes', 'two tensors of different shapes were combined')
  return None, ''


def one_line(error):
  """An exception's type and the first line of its message, without TensorFlow's node
  and device decorations."""
  text = str(error).strip().split('\n')[0]
  text = re.sub(r'\{\{[^}]*\}\}\s*', '', text)
  text = re.sub(r'\s*\[Op:\w+\].*$', '', text)
  text = re.sub(r" for '\{\{node.*?\}\}.*?'", '', text)
  if len(text) > 200:
    text = text[:197] + '...'
  return '%s: %s' % (type(error).__name__, text)


def run(answer, *args, function=False, **kwargs):
  """The answer's result on args: eagerly, or traced by `tf.function` (no autograph, so
  the learner's lines are the lines that run). Raises NotDone or Mistake."""
  call = tf.function(answer, autograph=False) if function else answer
  try:
    return call(*args, **kwargs)
  except NotImplementedError:
    raise NotDone() from None
  except Mistake:
    raise
  except Exception as error:  # pylint: disable=broad-except
    raise from_exception(error, answer, function) from None


def from_exception(error, answer, function=False):
  """The Mistake that says, in one line, what the learner's code raised and where."""
  where = learner_frame(error, answer)
  line = where[2] if where else ''
  mistake, advice = explain_exception(error, line)
  message = one_line(error)
  if where:
    message = 'line %d of %s, `%s`: %s' % (where[0], where[1], where[2], message)
  if function:
    message = 'it runs eagerly but not under tf.function: ' + message
    mistake = mistake or 'not_traceable'
    advice = advice or ('in a traced function tensors have no value yet: use tf ops, '
                        'not .numpy() or NumPy on tensors')
  if advice:
    message += ' -- ' + advice
  return Mistake(mistake or 'exception', message)


def numpy(x):
  return np.asarray(x.numpy() if hasattr(x, 'numpy') else x, dtype=np.float64)


def relative_error(x, y):
  """CS231n's relative error, over the whole tensor: max |x - y| / max(|x| + |y|, 1e-8)
  (elementwise it would blow up where both are near zero; float32 sits near 1e-7)."""
  x, y = numpy(x), numpy(y)
  if x.size == 0 and y.size == 0:
    return 0.0
  if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
    return float('inf')
  return float(np.max(np.abs(x - y)) / max(np.max(np.abs(x)) + np.max(np.abs(y)), 1e-8))


def shape_of(x):
  return tuple(x.shape) if hasattr(x, 'shape') else None


# ---------------------------------------------------------------------------- the cell

def sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


ACTIVATIONS = {'sigmoid': sigmoid, 'tanh': np.tanh, 'relu': lambda x: np.maximum(x, 0.0),
               'no activation': lambda x: x}
COURSE_SPEC = dict(
    order=(0, 1, 2, 3),  # the weight block gate k reads (`cells.GATES` order)
    biases=(True, True, True, True),
    activations=('sigmoid', 'sigmoid', 'tanh', 'sigmoid', 'tanh'),  # i, f, update, o, state
    combine='forget_state',  # state = f * state + i * g; else 'forget_update'
    transpose_recurrent=False,
    output_state='new',  # the output squashes the new state, else 'old'
    swap_returns=False)
ACTIVATION_PLACES = ('input gate', 'forget gate', 'update', 'output gate',
                     'state in the output')


def general_cell(i, o, state, x_blocks, m_blocks, b_blocks, **changes):
  """The course's cell in float64 with `changes` to COURSE_SPEC: i (B, D), o (B, H),
  state (B, H); blocks: four (D, H), (H, H), (1, H) in `cells.GATES` order."""
  spec = dict(COURSE_SPEC, **changes)
  pre = []
  for k in range(4):
    block = spec['order'][k]
    m = m_blocks[block].T if spec['transpose_recurrent'] else m_blocks[block]
    z = i @ x_blocks[block] + o @ m
    if spec['biases'][k]:
      z = z + b_blocks[block]
    pre.append(z)
    # i, f, g, o after their activations
  act = [ACTIVATIONS[name] for name in spec['activations']]
  input_gate, forget_gate, update, output_gate = (act[k](pre[k]) for k in range(4))
  if spec['combine'] == 'forget_state':
    new_state = forget_gate * state + input_gate * update
  else:
    new_state = input_gate * state + forget_gate * update
  squashed = act[4](new_state if spec['output_state'] == 'new' else state)
  output = output_gate * squashed
  if spec['swap_returns']:
    return new_state, output
  return output, new_state


def describe_order(order):
  """'the forget gate reads the input gate's weights, ...' for a permuted order."""
  parts = ['the %s reads the %s\'s block' % (
      ('input gate', 'forget gate', 'update', 'output gate')[k],
      ('input gate', 'forget gate', 'update', 'output gate')[block])
      for k, block in enumerate(order) if block != k]
  return '; '.join(parts)


def cell_hypotheses(square_recurrent=True):
  """(mistake, message, changes): each single departure from the course's cell."""
  hypotheses = [('forget_on_update', 'the forget gate multiplies the update and the input '
                 'gate the previous state (the same as swapping the two gates); the course '
                 'has state = forget_gate * state + input_gate * tanh(update)',
                 dict(combine='forget_update'))]
  names = ('input gate', 'forget gate', 'update', 'output gate')
  for k in range(4):
    biases = tuple(j != k for j in range(4))
    hypotheses.append(('missing_bias', 'the %s\'s bias is missing (add b for every '
                       'gate)' % names[k], dict(biases=biases)))
  hypotheses.append(('missing_bias', 'every bias is missing',
                     dict(biases=(False,) * 4)))
  swapped = tuple({'sigmoid': 'tanh', 'tanh': 'sigmoid'}[a]
                  for a in COURSE_SPEC['activations'])
  hypotheses.append(('sigmoid_tanh_swapped', 'sigmoid and tanh are swapped everywhere: '
                     'the gates take sigmoid (0..1), the update and the state tanh',
                     dict(activations=swapped)))
  for place, name in enumerate(ACTIVATION_PLACES):
    course = COURSE_SPEC['activations'][place]
    for other in ACTIVATIONS:
      if other == course:
        continue
      activations = list(COURSE_SPEC['activations'])
      activations[place] = other
      mistake = {'no activation': 'missing_activation', 'relu': 'wrong_activation'}.get(
          other, 'sigmoid_tanh_swapped')
      hypotheses.append((mistake, 'the %s takes %s; the course\'s takes %s'
                         % (name, other, course), dict(activations=tuple(activations))))
  # two places swapped with each other (e.g. tanh on a gate and sigmoid on the update)
  for a, b in itertools.combinations(range(5), 2):
    activations = list(COURSE_SPEC['activations'])
    if activations[a] != activations[b]:
      activations[a], activations[b] = activations[b], activations[a]
      same = (' (the same numbers as their two weight blocks swapped)'
              if (a, b) == (0, 2) else '')
      hypotheses.append(('sigmoid_tanh_swapped', 'sigmoid and tanh are swapped between the '
                         '%s and the %s%s' % (ACTIVATION_PLACES[a], ACTIVATION_PLACES[b],
                                              same), dict(activations=tuple(activations))))
  for order in itertools.permutations(range(4)):
    if order != (0, 1, 2, 3):
      hypotheses.append(('gate_order', 'the gates are in another order than the course\'s '
                         '(input, forget, update, output; cells.GATES): %s'
                         % describe_order(order), dict(order=order)))
  hypotheses.append(('old_state_output', 'the output squashes the previous state; it '
                     'should be output_gate * tanh(new state)', dict(output_state='old')))
  hypotheses.append(('swapped_returns', 'it returns (state, output); the course\'s cell '
                     'returns (output, state)', dict(swap_returns=True)))
  if square_recurrent:
    hypotheses.append(('transposed_weights', 'the recurrent weights are transposed: '
                       'o @ im, not o @ transpose(im) (rows are the previous output\'s '
                       'units)', dict(transpose_recurrent=True)))
  return hypotheses


def diagnose_cell(got, i, o, state, x_blocks, m_blocks, b_blocks, tolerance=1e-4,
                  square_recurrent=True):
  """The (mistake, message) whose cell computes `got` (output, state), else None.

  Each single departure from the course's cell first, then each pair of departures that
  change different choices (two mistakes at once: both are named, the first's name kept).
  """
  got = [numpy(g) for g in got]

  def computes(changes):
    expected = general_cell(i, o, state, x_blocks, m_blocks, b_blocks, **changes)
    return all(g.shape == e.shape and relative_error(g, e) < tolerance
               for g, e in zip(got, expected))

  if computes({}):  # the course's cell (two changes can cancel: they are no mistake)
    return None
  hypotheses = cell_hypotheses(square_recurrent)
  for mistake, message, changes in hypotheses:
    if computes(changes):
      return mistake, message
  for (mistake, message, changes), (_, other, more) in itertools.combinations(hypotheses, 2):
    if not set(changes) & set(more) and computes(dict(changes, **more)):
      return mistake, 'two mistakes: %s; and %s' % (message, other)
  return None


def localise_cell(got, i, o, state, x_blocks, m_blocks, b_blocks, tolerance=1e-4):
  """Where a cell that matches no hypothesis goes wrong, from its two results."""
  expected = general_cell(i, o, state, x_blocks, m_blocks, b_blocks)
  output_right, state_right = (relative_error(g, e) < tolerance
                               for g, e in zip(got, expected))
  if state_right and not output_right:
    return ('the state is right and the output is not: the output is output_gate * '
            'tanh(state), with output_gate = sigmoid(i @ ox + o @ om + ob)')
  if output_right and not state_right:
    return 'the output is right and the returned state is not: return the new state'
  return ('the state already differs: check the input gate, the forget gate and the '
          'update, and state = forget_gate * state + input_gate * tanh(update)')


def seeded_cell_inputs(input_size=27, num_nodes=8, batch=6, seed=0):
  """Inputs that tell the mistakes apart: one-hot i, random o and state, the course's
  initial weights plus noise, and non-zero biases (so a missing one shows)."""
  rng = np.random.default_rng(seed)
  i = np.eye(input_size)[rng.integers(0, input_size, batch)]
  o = rng.uniform(-1, 1, (batch, num_nodes))
  state = rng.normal(size=(batch, num_nodes))
  blocks = {}
  for p in cells.GATE_PREFIXES:
    blocks[p + 'x'] = rng.normal(0, 0.5, (input_size, num_nodes))
    blocks[p + 'm'] = rng.normal(0, 0.5, (num_nodes, num_nodes))
    blocks[p + 'b'] = rng.normal(0, 0.5, (1, num_nodes))
  return i, o, state, blocks


def blocks_of(weights):
  """The three lists of four blocks (x, m, b) of a dict of the course's twelve."""
  return tuple([weights[p + s] for p in cells.GATE_PREFIXES] for s in ('x', 'm', 'b'))


# ---------------------------------------------------------------------------- exercises

class Result(object):
  """A check's outcome: passed, the mistake's short name (None if passed) and the text."""

  def __init__(self, passed, mistake, message):
    self.passed, self.mistake, self.message = passed, mistake, message

  def __repr__(self):
    return 'Result(%r, %r, %r)' % (self.passed, self.mistake, self.message)


class Exercise(object):
  """An exercise: `check(answer)`, `hint()`, `solution()`; `result(answer)` for tests."""

  name = ''
  hint_text = ''
  references = ()  # the package's objects whose source `solution()` shows

  def verify(self, answer):
    """Raise Mistake or NotDone; return the lines to print when all is right."""
    raise NotImplementedError

  def result(self, answer):
    try:
      lines = self.verify(answer)
    except (NotDone, NotImplementedError):
      return Result(False, 'not_done', '%s: not done yet (replace `raise '
                    'NotImplementedError()` with your code; exercises.%s.hint() helps)'
                    % (self.name, self.name))
    except Mistake as mistake:
      return Result(False, mistake.mistake, '%s: not yet: %s' % (self.name, mistake.message))
    except Exception as error:  # pylint: disable=broad-except
      # What the answer returned could not be used (a string for a tensor, ...), or its
      # code raised where the check called it directly: one line, never a traceback.
      found = from_exception(error, answer)
      if found.mistake == 'exception' and not learner_frame(error, answer):
        found = Mistake('unusable', 'the check could not use what your code returned (%s); '
                        'compare its types and shapes with the exercise\'s text'
                        % one_line(error))
      return Result(False, found.mistake, '%s: not yet: %s' % (self.name, found.message))
    return Result(True, None, '\n'.join(['%s: correct.' % self.name] + list(lines)))

  def check(self, answer):
    outcome = self.result(answer)
    print(outcome.message)
    return outcome.passed

  def hint(self):
    print(textwrap.dedent(self.hint_text).strip())

  def solution(self):
    print('\n\n'.join(textwrap.dedent(inspect.getsource(o)).rstrip()
                      for o in self.references))


def both_ways(answer, arguments, compare):
  """Run the answer eagerly, then under tf.function; `compare(result, how)` checks each."""
  lines = []
  for function in (False, True):
    how = 'under tf.function' if function else 'eagerly'
    got = run(answer, *arguments(), function=function)
    lines.append(compare(got, how))
  return lines


def expect_pair(got, names=('output', 'state')):
  if not isinstance(got, (tuple, list)) or len(got) != len(names):
    raise Mistake('returns', 'it returns %s; return the pair (%s)' % (
        type(got).__name__, ', '.join(names)))
  return got


def expect_shape(name, got, expected, why):
  shape = shape_of(got)
  if shape is None:
    raise Mistake('shape', '%s is a %s, not a tensor of shape %s = %s' % (
        name, type(got).__name__, tuple(expected), why))
  if shape != tuple(expected):
    raise Mistake('shape', '%s has shape %s, expected %s = %s' % (
        name, shape, tuple(expected), why))


def made_text(num_words=200, seed=0):
  """A seeded text of common words (the checks' corpus)."""
  words = ('the quick brown fox jumps over a lazy dog anarchism originated as a term of '
           'abuse first used against early working class radicals').split()
  rng = np.random.default_rng(seed)
  return ' '.join(words[k] for k in rng.integers(0, len(words), num_words))


