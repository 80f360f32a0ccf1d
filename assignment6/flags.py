"""The flags every language-model script shares (`lstm`, `problem1`, `problem2`).

Defined once here, with the course's settings as defaults and a validator for each range;
a script imports this module and reads `flags.FLAGS`. A value out of range ends the script
with absl's one line naming the flag (exit status 1) before anything is read or written.
"""
import math

from absl import flags

from assignment6 import cells, precision

FLAGS = flags.FLAGS
MAX_SIZE = 8192  # the widest layer accepted: a (MAX_SIZE, 4 * MAX_SIZE) matrix is 1 GiB

# The course's settings.
flags.DEFINE_integer('num_steps', 7001, 'Training steps (the course: 7001).', lower_bound=1)
flags.DEFINE_integer('summary_frequency', 100, 'Steps between log lines; samples every '
                     'ten of them.', lower_bound=1)
flags.DEFINE_integer('batch_size', 64, 'Sequences trained side by side.', lower_bound=1)
flags.DEFINE_integer('num_unrollings', 10, 'Steps the LSTM is unrolled for.',
                     lower_bound=1)
flags.DEFINE_integer('num_nodes', 64, 'LSTM cells (the state size).', lower_bound=1,
                     upper_bound=MAX_SIZE)
flags.DEFINE_float('learning_rate', 10.0, 'SGD learning rate at step 0.')
flags.DEFINE_integer('decay_steps', 5000, 'Steps between learning-rate decays (staircase).',
                     lower_bound=1)
flags.DEFINE_float('decay_rate', 0.1, 'Factor the learning rate is multiplied by every '
                   'decay_steps steps.')
flags.DEFINE_float('clip_norm', 1.25, 'Global norm the gradients are clipped to.')
flags.DEFINE_integer('valid_size', 1000, 'Characters at the start of the text kept for '
                     'validation (the course: 1000).', lower_bound=1)
# The corpus, the run and its outputs.
flags.DEFINE_string('data', None, 'text8.zip, or a plain or .xz text8-format file. '
                    'Default: ./text8.zip if present, else the embedded sample.')
flags.DEFINE_bool('strict', False, 'Refuse a text with characters outside a-z and space '
                  '(the course maps them to spaces).')
flags.DEFINE_enum('vocabulary', 'text8', ['text8', 'auto'], 'text8: the course\'s 27 '
                  'characters (a-z and space); auto: every character of the --data text, '
                  'sorted (train on any UTF-8 text; kept in the checkpoint).')
flags.DEFINE_integer('seed', 0, 'Seeds Python, NumPy and TensorFlow (weights, samples, '
                     'dropout).', lower_bound=0, upper_bound=2**32 - 1)
flags.DEFINE_string('log_file', None, 'Also write the log to this file. An existing '
                    'file is refused unless --overwrite (replace it) or --resume (append '
                    'to it).')
flags.DEFINE_string('eval_data', None, 'After training, score this whole text8-format '
                    'file as the validation text is scored (perplexity and bits per '
                    'character, one line).')
flags.DEFINE_bool('fast', True, 'One TensorFlow call per log line, per validation pass and '
                  'per sample block; --nofast calls once per step and per character, as '
                  'the course does (the same figures, slower).')
flags.DEFINE_bool('compare', True, 'End with the side-by-side comparison with the course.')
# The cell (Problem 1 and the paper's cell).
flags.DEFINE_enum('cell', 'course', cells.CELLS, 'course: the course\'s twelve variables; '
                  'concat: the four gates in one matmul per side (Problem 1).')
flags.DEFINE_enum('precision', precision.FLOAT32, precision.PRECISIONS, 'float32: every '
                  'product in float32; bfloat16: the concatenated cell\'s matmuls in '
                  'bfloat16 (faster where the CPU has AVX512-BF16 or AMX; the variables, '
                  'state, gates, loss and updates stay float32). Needs --cell=concat; not '
                  'with --tf1_ref_variables. Kept in the checkpoint.')
flags.DEFINE_bool('peepholes', False, 'Peephole connections (Sak et al. 2014); needs '
                  '--cell=concat.')
flags.DEFINE_integer('num_proj', 0, 'Recurrent projection size (Sak et al. 2014); 0: none. '
                     'Needs --cell=concat.', lower_bound=0, upper_bound=MAX_SIZE)
flags.DEFINE_integer('num_nonrec_proj', 0, 'Non-recurrent projection size (Sak et al. '
                     '2014); 0: none. Needs --cell=concat.', lower_bound=0,
                     upper_bound=MAX_SIZE)
flags.DEFINE_float('cell_clip', 0.0, 'Clip the cell state c_t to [-cell_clip, cell_clip] '
                   '(TensorFlow 1 LSTMCell\'s cell_clip); 0: none. Needs --cell=concat or '
                   'fused.', lower_bound=0)
flags.DEFINE_float('proj_clip', 0.0, 'Clip the projections r_t and p_t to [-proj_clip, '
                   'proj_clip] (TensorFlow 1 LSTMCell\'s proj_clip); 0: none. Acts only '
                   'with --num_proj or --num_nonrec_proj.', lower_bound=0)
flags.DEFINE_float('proj_scale', 0.3, 'The projections are r_t = s W_rm m_t, p_t = s W_pm '
                   'm_t with W drawn 1/s wider: the same cell at the start, but SGD moves the '
                   'projections s^2 as fast (measured at the course\'s rate 10: s = 1 '
                   'diverged in 6 of 8 seeds with 64 cells and 1 of 5 with 88; 0.3 in none '
                   'of 40 runs). 1: the plain product. Acts only with --num_proj or '
                   '--num_nonrec_proj.')
# Problem 2.
flags.DEFINE_integer('embedding_size', 0, 'Embedding width for the inputs; 0: the '
                     'course\'s one-hot inputs.', lower_bound=0, upper_bound=MAX_SIZE)
flags.DEFINE_float('keep_prob', 1.0, 'Dropout keep probability on the non-recurrent '
                   'connections (Zaremba et al. 2014); 1: no dropout.')
# Faithful to the course's TensorFlow 1 run (assignment6.training, course_tf1).
flags.DEFINE_bool('tf1_ref_variables', False, 'The gradient the course\'s graph computed '
                  'with TensorFlow 1\'s reference variables: the first unrolled step\'s '
                  'backward pass reads saved_output and saved_state after the assigns '
                  'overwrote them (the unroll\'s last output and state). Default: the '
                  'gradient the code means. Not with --cell=fused.')
flags.DEFINE_string('init_from', None, 'Start from the weights in this .npz, by the '
                    'course\'s names (ix ... ob, w, b; for --cell=concat those or '
                    'x_weights, m_weights, biases; embeddings with an embedding), e.g. '
                    'written by python -m assignment6.course_tf1 --write_init=W.npz.')
# Checkpoints (assignment6.checkpoints).
flags.DEFINE_string('checkpoint_dir', None, 'Save the run here (created if missing) '
                    'every --checkpoint_every steps and at its end, to continue it with '
                    '--resume. A directory holding checkpoints needs --resume or '
                    '--overwrite.')
flags.DEFINE_integer('checkpoint_every', 500, 'Steps between checkpoints; one is written '
                     'at the end of the chunk of steps (between two log lines) that '
                     'reaches a multiple.', lower_bound=1)
flags.DEFINE_bool('resume', False, 'Continue the run in --checkpoint_dir from its newest '
                  'complete checkpoint: the log goes on as if it had never stopped (and '
                  '--log_file is appended to).')
flags.DEFINE_string('logdir', None, 'Write TensorBoard summaries here (`tensorboard '
                    '--logdir DIR`): the log\'s figures, the samples and the flags. A '
                    'resumed run continues its curves; a new one needs an empty directory '
                    'or --overwrite.')
flags.DEFINE_bool('overwrite', False, 'Replace an existing --log_file, and delete the '
                  'checkpoints in --checkpoint_dir (and the event files in --logdir) to '
                  'start a new run there.')


def _positive(value):
  return value > 0 and math.isfinite(value)


flags.register_validator('learning_rate', _positive,
                         '--learning_rate must be greater than 0 and finite')
flags.register_validator('clip_norm', _positive,
                         '--clip_norm must be greater than 0 and finite')
flags.register_validator('decay_rate', lambda value: 0 < value <= 1,
                         '--decay_rate must be in (0, 1]')
flags.register_validator('keep_prob', lambda value: 0 < value <= 1,
                         '--keep_prob must be in (0, 1]')
flags.register_multi_flags_validator(
    ['cell', 'peepholes', 'num_proj', 'num_nonrec_proj'],
    lambda f: f['cell'] == 'concat' or not (f['peepholes'] or f['num_proj'] or
                                            f['num_nonrec_proj']),
    '--peepholes, --num_proj and --num_nonrec_proj need --cell=concat')
flags.register_multi_flags_validator(
    ['cell', 'tf1_ref_variables'],
    lambda f: not (f['tf1_ref_variables'] and f['cell'] == 'fused'),
    '--tf1_ref_variables needs --cell=course or --cell=concat (the fused kernel\'s '
    'gradient cannot be given the aliased reads)')
flags.register_multi_flags_validator(
    ['cell', 'precision'],
    lambda f: f['precision'] == precision.FLOAT32 or f['cell'] == 'concat',
    '--precision=bfloat16 needs --cell=concat (the course\'s cell keeps the course\'s '
    'float32 arithmetic bit for bit; the fused kernel computes in float32)')
flags.register_multi_flags_validator(
    ['tf1_ref_variables', 'precision'],
    lambda f: f['precision'] == precision.FLOAT32 or not f['tf1_ref_variables'],
    '--precision=bfloat16 cannot be used with --tf1_ref_variables (it reproduces the '
    'course\'s float32 arithmetic bit for bit)')
flags.register_validator('proj_scale', _positive,
                         '--proj_scale must be greater than 0 and finite')
flags.register_validator('cell_clip', lambda value: math.isfinite(value),
                         '--cell_clip must be finite (0: no clip)')
flags.register_multi_flags_validator(
    ['cell', 'cell_clip'], lambda f: f['cell'] != 'course' or not f['cell_clip'],
    '--cell_clip needs --cell=concat or --cell=fused')
