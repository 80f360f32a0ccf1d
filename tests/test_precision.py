"""--precision=bfloat16: the concatenated cell's matmuls in bfloat16, the rest float32.

Two references in float64 (`numpy_cell` of tests/test_cells.py):
- the arithmetic the docstring of `assignment6.precision` states, each product's factors
  and result rounded to bfloat16 (`bfloat16_matmul`, rounding written here apart from
  TensorFlow): the cell agrees with it to float32's digits (measured: 4e-7 at most), but
  where oneDNN's float32 sums fall on the other side of a bfloat16 rounding than float64's,
  by one bfloat16 step of a pre-activation; both are allowed, the second rarely (1%);
- the exact cell: bfloat16's unit roundoff u = 2^-9 (8 significant bits, about 3 decimal
  digits) bounds the error. A product a @ W with both factors and the result rounded is
  off by at most 3u (|a| @ |W|) (first order), and the gates' derivatives are at most 1, so
  a step is off by at most `step_bound` (a worst case: the errors measured are 3-4% of it,
  as rounding errors of random signs add up as a random walk), and by 100 times float32's
  error at least (measured: 10^4 times), so bfloat16 is what ran.
Gradients: against float64 central differences within 2% of each gradient's largest entry
(measured: 0.8% at most), against the float32 twin within 8u = 1.6% of its norm (measured:
0.2-0.6%). Measured on TF 2.21 and 2.16.2, a CPU with AVX512-BF16 and AMX-BF16.
"""
import os
import re
import types

import numpy as np
import pytest
import tensorflow as tf

from assignment6 import cells, checkpoints, models, precision, runs, training
from conftest import made_up_text, run_script
from test_cells import numpy_cell, numpy_gradients, tf_loss_and_gradients

U = 2.0 ** -9  # bfloat16's unit roundoff
B, INPUT, H = 8, 48, 32  # sums of 48 and 32 products: rounding errors that add up
OPTIONS = [(False, None, None), (True, 12, 6)]  # plain; peepholes and both projections


def bfloat16(a):
  """float64 -> the nearest bfloat16 (ties to even), as float64: the top 16 bits of
  float32, written here apart from TensorFlow's cast."""
  bits = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
  bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 << 16
  return bits.astype(np.uint32).view(np.float32).astype(np.float64)


def bfloat16_matmul(a, b):
  """The arithmetic the docstring of assignment6.precision states, in float64."""
  return bfloat16(bfloat16(a) @ bfloat16(b))


def setup(options, seed=0, size=(B, INPUT, H)):
  """A bfloat16 cell and its float32 twin with the same random weights, and inputs."""
  batch, input_size, num_nodes = size
  twins = [cells.ConcatCell(input_size, num_nodes, *options, seed=3, precision=p)
           for p in (precision.BFLOAT16, precision.FLOAT32)]
  rng = np.random.default_rng(seed)
  for variables in zip(*(cell.trainable_variables for cell in twins)):
    value = rng.normal(0, 0.3, size=variables[0].shape).astype(np.float32)
    for v in variables:
      v.assign(value)
  x = rng.normal(size=(batch, input_size))
  o = rng.normal(size=(batch, twins[0].output_size))
  c = rng.normal(size=(batch, num_nodes))
  ro = rng.normal(size=(batch, twins[0].output_size))
  rc = rng.normal(size=(batch, num_nodes))
  params = {v.name.split(':')[0].split('/')[-1]: v.numpy().astype(np.float64)
            for v in twins[0].trainable_variables}
  return twins, params, x, o, c, ro, rc


def pre_activations(params, x, o):
  """|z| of a step (B, 4H), in float64."""
  r = o[:, :params['m_weights'].shape[0]]
  return np.abs(x @ params['x_weights'] + r @ params['m_weights'] + params['biases'])


def step_bound(params, x, o, c, options):
  """First-order bound of a step's error from bfloat16 products: 3u (|a| @ |W|) per gate
  pre-activation, times (|c| / 4 + 1/4 + 1) for the state and + 1/4 for m_t (plus the
  projections' own rounding of |m| @ |W|)."""
  peepholes, num_proj, num_nonrec_proj = options
  r = o[:, :params['m_weights'].shape[0]]
  dz = 3 * U * (np.abs(x) @ np.abs(params['x_weights']) +
                np.abs(r) @ np.abs(params['m_weights'])).max()
  bound = dz * (np.abs(c).max() / 4 + 1.25) + dz / 4  # m_t
  if num_proj or num_nonrec_proj:
    widest = max(np.abs(params[w]).sum(axis=0).max() for w in ('w_rm', 'w_pm')
                 if w in params)
    bound = bound * widest + 3 * U * widest  # |m| <= 1
  return bound


@pytest.mark.parametrize('compiled', [False, True], ids=['eager', 'tf.function'])
@pytest.mark.parametrize('options', OPTIONS, ids=['plain', 'paper'])
def test_bfloat16_cell_equals_the_float64_reference_to_bfloat16s_digits(options, compiled):
  (cell, twin), params, x, o, c, ro, rc = setup(options)
  output, state, _ = tf_loss_and_gradients(cell, x, o, c, ro, rc, compiled)
  exact = numpy_cell(params, x, o, c, *options)
  rounded = numpy_cell(params, x, o, c, *options, matmul=bfloat16_matmul)
  twin_output, twin_state, _ = tf_loss_and_gradients(twin, x, o, c, ro, rc, compiled)
  bound = step_bound(params, x, o, c, options)
  for got, want, want_rounded, float32 in ((output, *exact[:1], rounded[0], twin_output),
                                           (state, exact[1], rounded[1], twin_state)):
    assert got.dtype == np.float32
    error = np.abs(got - want).max()
    assert error <= bound, (error, bound)  # bfloat16's digits, no fewer
    assert error > 100 * np.abs(float32 - want).max()  # and bfloat16 it is, not float32
    # The reference that rounds as assignment6.precision says: float32's digits, or (rarely)
    # one bfloat16 step 2u of the largest pre-activation, through derivatives <= 1.25.
    off = np.abs(got - want_rounded)
    assert np.mean(off > 1e-5) <= 0.01, np.mean(off > 1e-5)
    assert off.max() <= 1.25 * 2 * U * pre_activations(params, x, o).max()
  np.testing.assert_allclose(output, twin_output, atol=bound)


@pytest.mark.parametrize('compiled', [False, True], ids=['eager', 'tf.function'])
@pytest.mark.parametrize('options', [(False, None, None), (True, 3, 2)],
                         ids=['plain', 'paper'])
def test_bfloat16_cells_gradients_equal_central_differences(options, compiled):
  """At test_cells' small size, against float64 central differences of the exact cell:
  each gradient within 2% of its largest entry (measured: 0.8% at most); the float32
  twin is within 1e-4 (tests/test_cells.py)."""
  (cell, _), params, x, o, c, ro, rc = setup(options, size=(3, 5, 4))
  _, _, grads = tf_loss_and_gradients(cell, x, o, c, ro, rc, compiled)
  reference = numpy_gradients(params, x, o, c, ro, rc, options)
  assert set(grads) == set(reference)
  for name, gradient in reference.items():
    assert grads[name].dtype == np.float32, name
    scale = np.abs(gradient).max()
    assert np.abs(grads[name] - gradient).max() <= 0.02 * scale, name


@pytest.mark.parametrize('options', OPTIONS, ids=['plain', 'paper'])
def test_bfloat16_gradients_are_the_float32_twins_to_bfloat16s_digits(options):
  """Relative to each gradient's norm: within 8u = 1.6% (measured: 0.2-0.6%), and more
  than float32's rounding away (the backward products are bfloat16's too)."""
  (cell, twin), params, x, o, c, ro, rc = setup(options)
  _, _, grads = tf_loss_and_gradients(cell, x, o, c, ro, rc, True)
  _, _, twin_grads = tf_loss_and_gradients(twin, x, o, c, ro, rc, True)
  for name, gradient in twin_grads.items():
    relative = np.linalg.norm(grads[name] - gradient) / np.linalg.norm(gradient)
    assert 1e-4 < relative <= 8 * U, (name, relative)


def unrolled(cell, steps, round_once, seed=4):
  """T calls of the cell in one tf.function, their loss and gradients."""
  cell.round_once = round_once
  rng = np.random.default_rng(seed)
  inputs = tf.constant(rng.normal(size=(steps, B, cell.input_size)), tf.float32)
  o = tf.constant(rng.normal(size=(B, cell.output_size)), tf.float32)
  c = tf.constant(rng.normal(size=(B, cell.num_nodes)), tf.float32)

  @tf.function
  def run():
    with tf.GradientTape() as tape:
      tape.watch(inputs)
      output, state = o, c
      loss = 0.0
      for t in range(steps):
        output, state = cell(inputs[t], output, state)
        loss += tf.reduce_sum(output * output) + tf.reduce_sum(state)
    return loss, tape.gradient(loss, [inputs] + list(cell.trainable_variables))

  return run()


@pytest.mark.parametrize('options', OPTIONS, ids=['plain', 'paper'])
def test_weights_rounded_once_are_the_weights_rounded_each_step(options):
  """The faster path (`precision.rounded_once`: a traced function rounds each weight once
  for its T steps) against its plain twin (each step rounds it again): the same forward
  bits, the same gradients up to the order of float32 sums."""
  (cell, _), *_ = setup(options)
  fast_loss, fast = unrolled(cell, 10, True)
  plain_loss, plain = unrolled(cell, 10, False)
  assert float(fast_loss) == float(plain_loss)
  for a, b in zip(fast, plain):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5,
                               atol=1e-6 * np.abs(b.numpy()).max())


def graph_ops(function, *args):
  return function.get_concrete_function(*args).graph.get_operations()


def test_a_bfloat16_training_step_keeps_float32_everywhere_but_the_products():
  model = models.LanguageModel(cells.make_cell('concat', 16, 32, precision='bfloat16'),
                               8, 27, embedding_size=16)
  twin = models.LanguageModel(cells.make_cell('concat', 16, 32), 8, 27, embedding_size=16)
  for a, b in zip(model.variables, twin.variables):
    assert a.dtype == tf.float32 and a.shape == b.shape
  ids = tf.constant(np.random.default_rng(0).integers(0, 27, size=(11, 8)), tf.int32)
  trainer, twin_trainer = training.Trainer(model), training.Trainer(twin)
  loss, predictions, _ = trainer.train_step(ids)
  twin_loss, _, _ = twin_trainer.train_step(ids)
  assert loss.dtype == predictions.dtype == tf.float32
  assert abs(float(loss) - float(twin_loss)) <= 8 * U * float(twin_loss)
  for variable in model.variables:  # state, weights and the trainer's after an update
    assert variable.dtype == tf.float32, variable.name
  operations = graph_ops(trainer._step_function, ids)
  products = [op for op in operations if op.type in ('MatMul', 'BatchMatMulV2')]
  bfloat16 = [op for op in products if op.get_attr('T') == tf.bfloat16]
  # Forward: the input side and the recurrent side of 10 steps; backward: two per product.
  assert len(bfloat16) == 3 * 2 * 10, [op.name for op in products]
  assert [op for op in products if op not in bfloat16]  # the classifier: float32
  # Each weight's bfloat16 copy is made once for the 10 steps (x_weights, m_weights).
  rounded = [op for op in operations if op.type == 'Cast' and op.get_attr('DstT') ==
             tf.bfloat16 and op.inputs[0].op.type == 'ReadVariableOp']
  assert len(rounded) == 2
  # The steps' gradients of a weight are summed in float32.
  for op in operations:
    if op.type == 'AddN':
      assert op.get_attr('T') == tf.float32, op.name
  assert not model.cell.can_fuse  # validation and sampling go step by step, in bfloat16


@pytest.mark.parametrize('cell', ['course', 'fused'])
def test_the_course_cell_and_the_fused_kernel_refuse_bfloat16(cell):
  with pytest.raises(ValueError) as error:
    cells.make_cell(cell, 27, 8, precision='bfloat16')
  assert '--precision=bfloat16 needs --cell=concat' in str(error.value)
  assert '\n' not in str(error.value)


def test_tf1_reference_variables_refuse_bfloat16():
  model = models.LanguageModel(cells.make_cell('concat', 27, 8, precision='bfloat16'), 4,
                               27)
  with pytest.raises(ValueError) as error:
    training.Trainer(model, tf1_ref_variables=True)
  assert re.fullmatch(r'--precision=bfloat16 cannot be used with --tf1_ref_variables .*',
                      str(error.value))


def test_an_unknown_precision_is_one_line():
  with pytest.raises(ValueError, match=r'^--precision=float16: use one of float32, '
                                       r'bfloat16$'):
    cells.make_cell('concat', 27, 8, precision='float16')


@pytest.mark.parametrize('args', [
    [],  # the default cell: the course's
    ['--cell=fused'],
    ['--cell=concat', '--tf1_ref_variables']])
def test_scripts_refuse_bfloat16_where_the_arithmetic_is_promised(args, tmp_path):
  corpus = tmp_path / 'small.txt'
  corpus.write_text(made_up_text(500))
  result = run_script('lstm', '--precision=bfloat16', *args, '--data=%s' % corpus,
                      '--num_steps=1', '--batch_size=2', '--num_nodes=4',
                      '--valid_size=100', '--nocompare')
  assert result.returncode == 1
  lines = [line for line in result.stderr.strip().splitlines()  # absl's pointer to --help
           if not line.startswith('Pass --helpshort')]
  assert len(lines) == 1 and '--precision=bfloat16' in lines[0], result.stderr
  assert 'Traceback' not in result.stderr


def write_cpuinfo(tmp_path, flags):
  path = tmp_path / 'cpuinfo'
  path.write_text('processor\t: 0\nmodel name\t: A CPU\nflags\t\t: fpu sse2 %s\n\n'
                  'processor\t: 1\nflags\t\t: fpu sse2 %s\n' % (flags, flags))
  return str(path)


def test_bfloat16_instructions_read_the_cpu_flags(tmp_path):
  both = write_cpuinfo(tmp_path, 'avx512f avx512_bf16 amx_tile amx_bf16 amx_int8')
  assert precision.bfloat16_instructions(both) == ('avx512_bf16', 'amx_bf16')
  assert precision.describe_instructions(('avx512_bf16', 'amx_bf16')) == (
      'bfloat16 instructions: avx512_bf16, amx_bf16 (oneDNN uses them)')
  (tmp_path / 'other').mkdir()
  none = write_cpuinfo(tmp_path / 'other', 'avx2 avx512f avx512_vnni')
  assert precision.bfloat16_instructions(none) == ()
  assert precision.bfloat16_instructions(str(tmp_path / 'missing')) == ()
  assert 'none: --precision=bfloat16 would be emulated, slower; not a result' in (
      precision.describe_instructions(()))


def test_without_bfloat16_instructions_a_run_says_so_once(monkeypatch, capsys):
  monkeypatch.setattr(precision, 'bfloat16_instructions', lambda: ())
  settings = types.SimpleNamespace(
      cell='concat', embedding_size=0, num_nodes=4, peepholes=False, num_proj=0,
      num_nonrec_proj=0, seed=0, batch_size=2, keep_prob=1.0, precision='bfloat16')
  model = runs.build_model(settings)
  assert model.cell.precision == 'bfloat16'
  lines = capsys.readouterr().err.strip().splitlines()
  assert len(lines) == 1 and 'no bfloat16 instructions' in lines[0], lines
  settings.precision = 'float32'
  runs.build_model(settings)
  assert not capsys.readouterr().err


def test_a_bfloat16_checkpoint_records_it_and_samples(tmp_path):
  corpus = tmp_path / 'small.txt'
  corpus.write_text(made_up_text(3000))
  directory = tmp_path / 'run'
  common = ['--data=%s' % corpus, '--batch_size=8', '--num_nodes=16', '--valid_size=300',
            '--embedding_size=8', '--nocompare', '--checkpoint_dir=%s' % directory]
  result = run_script('problem1', '--precision=bfloat16', '--num_steps=101', *common)
  assert result.returncode == 0, result.stderr
  path, _ = checkpoints.newest_complete(str(directory))
  assert checkpoints.read_settings(path)['precision'] == 'bfloat16'
  model, settings, _, _ = checkpoints.load_model(str(directory))
  assert settings['precision'] == 'bfloat16' and model.cell.precision == 'bfloat16'
  # Resumed in float32: allowed (the weights are float32), and noted.
  result = run_script('problem1', '--num_steps=201', '--resume', *common)
  assert result.returncode == 0, result.stderr
  assert '--precision=float32 differs from the checkpoint\'s bfloat16' in result.stderr
  assert checkpoints.load_model(str(directory))[0].cell.precision == 'float32'
  result = run_script('problem1', '--precision=bfloat16', '--num_steps=301', '--resume',
                      *common)
  assert result.returncode == 0, result.stderr
  result = run_script('sample', '--checkpoint_dir=%s' % directory, '--count=2',
                      '--length=30')
  assert result.returncode == 0, result.stderr
  texts = result.stdout.split('=' * 80 + '\n')[1].splitlines()
  assert len(texts) == 2 and all(len(t) == 30 for t in texts)
  result = run_script('export', '--checkpoint_dir=%s' % directory,
                      '--export_dir=%s' % (tmp_path / 'saved'))
  assert result.returncode == 0, result.stderr
  exported = tf.saved_model.load(str(tmp_path / 'saved'))
  assert len(exported.sample(prime='the ', length=10, temperature=1.0, seed=0,
                             count=1)['samples'].numpy()[0]) == 14


def test_a_checkpoint_from_before_precision_means_float32():
  saved = {name: 0 for name, _ in checkpoints.MODEL_SETTINGS}
  saved.update({name: 0 for name in checkpoints.TRAINING_SETTINGS}, precision='bfloat16')
  current = dict(saved, precision='float32')
  assert checkpoints.compare_settings('runs/mine', saved, current) == [
      '--precision=float32 differs from the checkpoint\'s bfloat16: the resumed run uses '
      'float32']
  del saved['precision']  # a checkpoint from before --precision: float32
  assert checkpoints.compare_settings('runs/mine', saved, current) == []
  settings = types.SimpleNamespace(**{name: 0 for name, _ in checkpoints.MODEL_SETTINGS},
                                   **{name: 0 for name in checkpoints.TRAINING_SETTINGS
                                      if name != 'precision'})
  assert checkpoints.run_settings(settings, 'character', 0, 'abc')['precision'] == 'float32'
