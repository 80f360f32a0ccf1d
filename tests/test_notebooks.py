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
