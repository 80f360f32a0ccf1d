"""The exercise notebooks, made from the solution notebooks as nbgrader makes them.

`notebooks/solutions/NAME.ipynb` is the master: each answer between `### BEGIN SOLUTION` and
`### END SOLUTION`. `notebooks/exercises/NAME.ipynb` is the same notebook with each region
replaced by `# YOUR CODE HERE` and `raise NotImplementedError()` (indented as its BEGIN
line), outputs and execution counts cleared: `make_notebooks()`, which
`python -m assignment6.exercises --make_notebooks` runs. Plain JSON, written as nbformat
writes it (nbformat is not a run-time dependency).
"""
import glob
import json
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOLUTIONS = os.path.join(ROOT, 'notebooks', 'solutions')  # the masters
EXERCISE_NOTEBOOKS = os.path.join(ROOT, 'notebooks', 'exercises')
_REGION = re.compile(r'^([ \t]*)### BEGIN SOLUTION[^\n]*\n.*?^[ \t]*### END SOLUTION[^\n]*$',
                     re.MULTILINE | re.DOTALL)


def blank_solutions(source):
  """nbgrader's student version of a cell's source: each `### BEGIN SOLUTION` ...
  `### END SOLUTION` region becomes `# YOUR CODE HERE` and `raise NotImplementedError()`,
  indented as its BEGIN line."""
  return _REGION.sub(lambda m: '%s# YOUR CODE HERE\n%sraise NotImplementedError()'
                     % (m.group(1), m.group(1)), source)


def source_lines(text):
  return text.splitlines(keepends=True)


def exercise_notebook(master):
  """The exercise version of a master notebook (a dict, nbformat 4): regions blanked,
  outputs and execution counts cleared."""
  notebook = json.loads(json.dumps(master))
  for cell in notebook['cells']:
    if cell['cell_type'] != 'code':
      continue
    source = cell['source']
    source = ''.join(source) if isinstance(source, list) else source
    cell['source'] = source_lines(blank_solutions(source))
    cell['outputs'] = []
    cell['execution_count'] = None
  return notebook


def notebook_text(notebook):
  """A notebook's file as nbformat writes it (one-space indent, sorted keys)."""
  return json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + '\n'


def make_notebooks(solutions=SOLUTIONS, exercises=EXERCISE_NOTEBOOKS):
  """Write exercises/NAME.ipynb from each solutions/NAME.ipynb; returns the paths."""
  os.makedirs(exercises, exist_ok=True)
  written = []
  for path in sorted(glob.glob(os.path.join(solutions, '*.ipynb'))):
    with open(path, encoding='utf-8') as f:
      master = json.load(f)
    target = os.path.join(exercises, os.path.basename(path))
    with open(target, 'w', encoding='utf-8', newline='\n') as f:
      f.write(notebook_text(exercise_notebook(master)))
    written.append(target)
  return written
