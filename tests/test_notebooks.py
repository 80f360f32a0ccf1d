"""The notebooks run headless, and the stored ones come from a real run.

`test_notebook_runs` executes every `notebooks/*.ipynb` (new ones are picked up by name) in
a temporary directory with nbclient, `ASSIGNMENT6_NOTEBOOK_STEPS` set small so training is
short. A cell's error fails the test with that cell's traceback (nbclient's
`CellExecutionError`); the executed copy is thrown away, the stored notebook is left alone.

The kernel is this Python's ipykernel: a kernel spec named `python3` is written into a
temporary `JUPYTER_PATH` with `sys.executable` as its command, so neither PATH nor the
user's Jupyter set-up decides which Python runs the cells, and nothing is written under
the home directory (`JUPYTER_RUNTIME_DIR` and `IPYTHONDIR` are temporary too).
"""
import glob
import os
import re
import shutil
import sys
import time

from ipykernel.kernelspec import write_kernel_spec
from jupyter_client.kernelspec import KernelSpecManager
import nbclient
import nbformat
import pytest

pytestmark = pytest.mark.notebook

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, 'notebooks', '*.ipynb')))
KERNEL_NAME = 'python3'  # the notebooks' kernelspec name
STEPS = '201'  # ASSIGNMENT6_NOTEBOOK_STEPS: steps 0, 100 and 200 are logged
NOTEBOOK_SECONDS = 600  # time limit for a whole notebook


def notebook_params():
  return [pytest.param(path, id=os.path.basename(path)) for path in NOTEBOOKS]


def code_cells(nb):
  """The code cells that hold code (nbclient does not run empty ones)."""
  return [cell for cell in nb.cells if cell.cell_type == 'code' and cell.source.strip()]


# Lines that differ between two runs of the same code: TensorFlow's version, the run's
# length, wall-clock seconds.
VARIES = re.compile(r'^TensorFlow \d|^num_steps = \d+$|\b\d+(\.\d+)? s\b')
TRAINING = re.compile(r'^Average loss at step \d+: ', re.M)  # a training cell's log
LATER_STEP = re.compile(r'^Average loss at step [1-9]')
# A training cell's lines before its first later step that are the course's log: step 0's
# figures (its samples are the lines between two rows of '=').
STEP_ZERO = re.compile(r'^(Parameters: |Characters per token: |keep_prob |Initialized$|'
                       r'Average loss at step 0: |Minibatch perplexity: |'
                       r'Validation set perplexity: |={80}$)')
# Cells after the first training cell whose outputs do not depend on it (they build new
# data or models), by a piece of their source; besides these only `show(...)` listings of
# the package's code are compared after training.
UNTRAINED_AFTER_TRAINING = {
    'problem1.ipynb': ['paper_model = models.LanguageModel('],
    'problem2.ipynb': ['bigram_batches = data.BigramBatchGenerator(',
                       'labels = models.one_hot(', 'model_2b = models.LanguageModel('],
}


def stdout_text(cell):
  return ''.join(output.text for output in cell.outputs
                 if output.output_type == 'stream' and output.name == 'stdout')


def stable_lines(nb, name):
  """[(code cell number, line)] of the printed outputs that every run of the current code
  prints, whatever ASSIGNMENT6_NOTEBOOK_STEPS: every cell's before the first training cell
  (the data checks, shapes, the code shown), a training cell's step 0 (the course's log
  lines and samples: the same seed, the same first step), and after training the code
  shown and the cells of UNTRAINED_AFTER_TRAINING. Lines that VARIES matches are left out.
  """
  lines, trained = [], False
  untrained = UNTRAINED_AFTER_TRAINING.get(name, [])
  for number, cell in enumerate(code_cells(nb), 1):
    text = stdout_text(cell)
    training = TRAINING.search(text)
    if training:
      in_samples = False
      for line in text.splitlines():
        if LATER_STEP.match(line):
          break
        if STEP_ZERO.match(line) or in_samples:
          lines.append((number, line))
        if line == '=' * 80:
          in_samples = not in_samples
      trained = True
    elif (not trained or cell.source.lstrip().startswith('show(') or
          any(piece in cell.source for piece in untrained)):
      lines.extend((number, line) for line in text.splitlines() if not VARIES.search(line))
  return lines


NUMBER = re.compile(r'-?\d+\.(\d+)')


def same_line(stored, executed):
  """Equal text; decimal numbers within one unit of their last printed digit (and 1e-5
  relative), for the last bits that another CPU or TensorFlow version may change."""
  if NUMBER.sub('#', stored) != NUMBER.sub('#', executed):
    return False
  for a, b in zip(NUMBER.finditer(stored), NUMBER.finditer(executed)):
    x, y = float(a.group()), float(b.group())
    if abs(x - y) > 1.01 * 10.0 ** -len(a.group(1)) + 1e-5 * abs(x):
      return False
  return True


def assert_same_stable_outputs(stored, executed, name):
  """The stable lines of the stored notebook are the executed copy's."""
  ours, theirs = stable_lines(stored, name), stable_lines(executed, name)
  for piece in UNTRAINED_AFTER_TRAINING.get(name, []):
    assert any(piece in cell.source for cell in code_cells(stored)), (
        '%s: no cell has %r (UNTRAINED_AFTER_TRAINING)' % (name, piece))
  assert any(TRAINING.search(stdout_text(cell)) for cell in code_cells(stored)), (
      '%s: the stored notebook shows no training log' % name)
  advice = ('%s: the stored outputs are stale; run the notebook top to bottom on the '
            'embedded sample (no text8.zip beside it) and save it' % name)
  for (number, stored_line), (executed_number, executed_line) in zip(ours, theirs):
    assert number == executed_number and same_line(stored_line, executed_line), (
        '%s: code cell %d stored %r, a run prints %r (code cell %d)'
        % (advice, number, stored_line, executed_line, executed_number))
  assert len(ours) == len(theirs), '%s: %d stable lines stored, a run prints %d' % (
      advice, len(ours), len(theirs))


@pytest.fixture(scope='module')
def venv_kernel(tmp_path_factory):
  """The environment of a kernel that runs `sys.executable`; yields the kernel's name."""
  jupyter = tmp_path_factory.mktemp('jupyter')
  write_kernel_spec(str(jupyter / 'data' / 'kernels' / KERNEL_NAME))
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv('JUPYTER_PATH', str(jupyter / 'data'))
    patch.setenv('JUPYTER_RUNTIME_DIR', str(jupyter / 'runtime'))
    patch.setenv('IPYTHONDIR', str(jupyter / 'ipython'))
    patch.setenv('ASSIGNMENT6_NOTEBOOK_STEPS', STEPS)
    spec = KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    assert spec.argv[0] == sys.executable, spec.argv
    yield KERNEL_NAME


def test_there_is_the_course_notebook():
  assert '6_lstm.ipynb' in [os.path.basename(path) for path in NOTEBOOKS]


@pytest.mark.parametrize('path', notebook_params())
def test_notebook_runs(path, venv_kernel, tmp_path):
  copy = tmp_path / os.path.basename(path)
  shutil.copyfile(path, copy)
  nb = nbformat.read(str(copy), as_version=4)
  deadline = time.monotonic() + NOTEBOOK_SECONDS
  client = nbclient.NotebookClient(
      nb, kernel_name=venv_kernel, resources={'metadata': {'path': str(tmp_path)}},
      timeout_func=lambda cell: max(1, deadline - time.monotonic()))
  client.execute()  # raises CellExecutionError, with the cell's traceback, on an error
  assert all(cell.execution_count for cell in code_cells(nb))
  assert_same_stable_outputs(nbformat.read(path, as_version=4), nb, os.path.basename(path))


@pytest.mark.parametrize('path', notebook_params())
def test_stored_outputs_come_from_a_real_run(path):
  nb = nbformat.read(path, as_version=4)
  nbformat.validate(nb)
  assert nb.metadata.kernelspec.name == KERNEL_NAME
  cells = code_cells(nb)
  counts = [cell.execution_count for cell in cells]
  assert counts == list(range(1, len(cells) + 1)), (
      'run the notebook top to bottom in a fresh kernel and save it; execution counts: %s'
      % counts)
  for number, cell in enumerate(cells, 1):
    for output in cell.outputs:
      assert output.output_type != 'error', 'code cell %d stored an error: %s: %s' % (
          number, output.ename, output.evalue)
      text = output.get('text', '') + str(output.get('data', {}).get('text/plain', ''))
      assert ROOT not in text, 'code cell %d shows a path of this machine' % number
