"""The exercises: every check accepts the right answer, names each wrong answer's mistake,
says "not done yet" to a skeleton; the exercise notebooks are their solution notebooks with
the solution regions blanked; both run headless (as shipped and solved).

The wrong answers are in tests/exercise_answers.py (`WRONG`: each with the exercise and
the mistake its check must name).
"""
import json
import os
import re
import shutil

from ipykernel.kernelspec import write_kernel_spec
import nbclient
import nbformat
import numpy as np
import pytest

from assignment6 import diagnoses, exercise_notebooks, exercises
import exercise_answers as answers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BY_NAME = {exercise.name: exercise for exercise in exercises.EXERCISES}
NAMES = sorted(os.path.basename(p) for p in os.listdir(exercise_notebooks.SOLUTIONS)
               if p.endswith('.ipynb'))
STEPS = '101'  # ASSIGNMENT6_NOTEBOOK_STEPS: `train` logs steps 0 and 100


def right_answer(exercise):
  return answers.RIGHT.get(exercise.name) or getattr(answers, exercise.name)


@pytest.mark.parametrize('exercise', exercises.EXERCISES, ids=lambda e: e.name)
def test_the_right_answer_passes(exercise, capsys):
  assert exercise.check(right_answer(exercise)) is True
  printed = capsys.readouterr().out
  assert printed.startswith('%s: correct.' % exercise.name), printed


@pytest.mark.parametrize('name', sorted(answers.OTHER_RIGHT))
def test_a_right_answer_written_another_way_passes(name):
  outcome = BY_NAME[answers.OTHER_RIGHT[name]].result(getattr(answers, name))
  assert outcome.passed, outcome.message


@pytest.mark.parametrize('name', sorted(answers.WRONG))
def test_a_wrong_answer_gets_its_own_diagnosis(name, capsys):
  exercise, mistake = answers.WRONG[name]
  answer = getattr(answers, name)
  assert BY_NAME[exercise].check(answer) is False
  printed = capsys.readouterr().out
  outcome = BY_NAME[exercise].result(answer)
  assert outcome.mistake == mistake, outcome.message
  digits = lambda text: re.sub(r'[\d.]+', '#', text)  # dropout draws new masks each run
  assert digits(printed.strip()) == digits(outcome.message)
  assert 'Traceback' not in printed and len(printed.strip().splitlines()) == 1


def test_the_bank_is_large_and_covers_every_exercise():
  assert len(answers.WRONG) >= 25
  assert {e for e, _ in answers.WRONG.values()} == set(BY_NAME)
  assert len({m for _, m in answers.WRONG.values()}) >= 30


def skeleton(*args, **kwargs):
  # YOUR CODE HERE
  raise NotImplementedError()


class Skeleton(object):
  def __init__(self, *args):
    # YOUR CODE HERE
    raise NotImplementedError()


@pytest.mark.parametrize('exercise', exercises.EXERCISES, ids=lambda e: e.name)
def test_a_skeleton_is_not_done_yet(exercise, capsys):
  answer = Skeleton if isinstance(right_answer(exercise), type) else skeleton
  assert exercise.check(answer) is False
  assert capsys.readouterr().out.startswith('%s: not done yet' % exercise.name)


def test_an_exception_is_one_line_with_the_learners_line():
  outcome = exercises.lstm_cell.result(answers.cell_typo)
  assert outcome.mistake == 'exception'
  line = [l for l in open(answers.__file__) if "w['ux']" in l][0].strip()
  number = [n for n, l in enumerate(open(answers.__file__), 1) if "w['ux']" in l][0]
  assert 'line %d of cell_typo, `%s`: KeyError' % (number, line) in outcome.message


def test_the_tf0_traps_are_recognised_from_the_learners_line():
  for line, mistake in (('z = tf.concat(1, [a, b])', 'tf0_concat'),
                        ('a, b = tf.split(0, 2, z)', 'tf0_split'),
                        ('z = tf.concat([a, b], 1)', None)):
    assert diagnoses.explain_exception(ValueError('x'), line)[0] == mistake


def test_the_cell_diagnosis_comes_from_what_the_cell_computes():
  # an answer no test wrote: the course's cell with the update's and the output gate's
  # weight blocks exchanged, computed here from the general cell
  i, o, state, blocks = diagnoses.seeded_cell_inputs()
  got = diagnoses.general_cell(i, o, state, *diagnoses.blocks_of(blocks),
                               order=(0, 1, 3, 2))
  mistake, message = diagnoses.diagnose_cell(got, i, o, state, *diagnoses.blocks_of(blocks))
  assert mistake == 'gate_order'
  assert 'the update reads the output gate\'s block' in message
  right = diagnoses.general_cell(i, o, state, *diagnoses.blocks_of(blocks))
  assert diagnoses.diagnose_cell(right, i, o, state, *diagnoses.blocks_of(blocks)) is None


def test_hint_and_solution_print(capsys):
  exercises.concat_cell.hint()
  exercises.concat_cell.solution()
  printed = capsys.readouterr().out
  assert 'tf.split(z, 4, axis=1)' in printed
  assert 'def step(self, x_part, o, state):' in printed  # cells.ConcatCell's own source


def test_train_runs_the_learners_cell(capsys):
  calls = []

  def counted(i, o, state, x_weights, m_weights, biases):
    calls.append(1)
    return answers.concat_cell(i, o, state, x_weights, m_weights, biases)

  text = exercises.made_text(3000)
  lines = exercises.concat_cell.train(counted, num_steps=2, text=text, log=lambda line: None)
  assert calls  # traced: the learner's code is the cell
  assert lines[1].startswith('Average loss at step 0:')
  assert lines[-1].startswith('Verdict:')
  assert exercises.concat_cell.train(skeleton) is None
  assert 'nothing trained' in capsys.readouterr().out


# ---------------------------------------------------------------------------- notebooks

def test_exercise_notebooks_are_their_masters_blanked():
  assert NAMES == ['problem1.ipynb', 'problem2.ipynb', 'problem3.ipynb', 'warmup.ipynb']
  for name in NAMES:
    with open(os.path.join(exercise_notebooks.SOLUTIONS, name), encoding='utf-8') as f:
      master = json.load(f)
    with open(os.path.join(exercise_notebooks.EXERCISE_NOTEBOOKS, name), encoding='utf-8') as f:
      shipped = f.read()
    assert shipped == exercise_notebooks.notebook_text(exercise_notebooks.exercise_notebook(master)), (
        '%s: run python -m assignment6.exercises --make_notebooks' % name)
    shipped = json.loads(shipped)
    for cell in shipped['cells']:
      if cell['cell_type'] == 'code':
        assert not cell['outputs'] and cell['execution_count'] is None
        assert 'SOLUTION' not in ''.join(cell['source'])
    regions = sum(''.join(c['source']).count('### BEGIN SOLUTION') for c in master['cells'])
    blanks = sum(''.join(c['source']).count('raise NotImplementedError()')
                 for c in shipped['cells'])
    assert regions == blanks > 0


def test_blank_solutions_is_nbgraders():
  source = 'def f(x):\n  y = 1\n  ### BEGIN SOLUTION\n  return x\n  ### END SOLUTION\n'
  assert exercise_notebooks.blank_solutions(source) == (
      'def f(x):\n  y = 1\n  # YOUR CODE HERE\n  raise NotImplementedError()\n')


@pytest.fixture(scope='module')
def kernel(tmp_path_factory):
  """As tests/test_notebooks.py: a kernel spec that runs this Python, in temporary dirs."""
  jupyter = tmp_path_factory.mktemp('jupyter')
  write_kernel_spec(str(jupyter / 'data' / 'kernels' / 'python3'))
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv('JUPYTER_PATH', str(jupyter / 'data'))
    patch.setenv('JUPYTER_RUNTIME_DIR', str(jupyter / 'runtime'))
    patch.setenv('IPYTHONDIR', str(jupyter / 'ipython'))
    patch.setenv(exercises.NOTEBOOK_STEPS, STEPS)
    patch.setenv('PYTHONPATH', ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    yield 'python3'


def execute(path, kernel, tmp_path):
  copy = tmp_path / os.path.basename(path)
  shutil.copyfile(path, copy)
  nb = nbformat.read(str(copy), as_version=4)
  nbclient.NotebookClient(nb, kernel_name=kernel, timeout=300,
                          resources={'metadata': {'path': str(tmp_path)}}).execute()
  return nb


def printed(cell):
  return ''.join(o.get('text', '') + str(o.get('data', {}).get('text/plain', ''))
                 for o in cell.outputs)


def check_cells(nb):
  return [c for c in nb.cells if c.cell_type == 'code' and '.check(' in c.source]


def train_cells(nb):
  return [c for c in nb.cells if c.cell_type == 'code' and '.train(' in c.source]


@pytest.mark.notebook
@pytest.mark.parametrize('name', NAMES)
def test_exercise_notebook_as_shipped(name, kernel, tmp_path):
  nb = execute(os.path.join(exercise_notebooks.EXERCISE_NOTEBOOKS, name), kernel, tmp_path)
  assert check_cells(nb)
  for cell in check_cells(nb):
    assert 'not done yet' in printed(cell), (cell.source, printed(cell))
    assert 'False' in printed(cell)
  for cell in train_cells(nb):
    assert 'nothing trained' in printed(cell)


@pytest.mark.notebook
@pytest.mark.parametrize('name', NAMES)
def test_solution_notebook(name, kernel, tmp_path):
  nb = execute(os.path.join(exercise_notebooks.SOLUTIONS, name), kernel, tmp_path)
  for cell in check_cells(nb):
    assert ': correct.' in printed(cell) and 'True' in printed(cell), printed(cell)
  for cell in train_cells(nb):
    log = printed(cell)
    assert 'Average loss at step 100:' in log and 'Validation set perplexity' in log
    assert 'Verdict:' in log
