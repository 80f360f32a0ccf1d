"""The opt-in `--precision=bfloat16`: the cell's matmuls in bfloat16, everything else float32.

bfloat16 keeps float32's 8-bit exponent and 8 of its 24 significant bits (about 3
decimal digits). With `bfloat16` the matmuls of `cells.ConcatCell` (input side, recurrent
side, projections) round both factors to bfloat16, multiply them (oneDNN accumulates the
sums in float32 and rounds the product to bfloat16) and cast the product back to float32:

    a @ W  ->  float32(bfloat16(bfloat16(a) @ bfloat16(W)))

The variables, the state c_t, the gate arithmetic (sigmoid, tanh, products), the
classifier, the loss, the sum of each weight's gradients over the unrolled steps and the
SGD update stay float32. On a CPU with bfloat16 instructions (AVX512-BF16, AMX-BF16)
oneDNN runs the products on them; elsewhere TensorFlow emulates them, slower
(`bfloat16_instructions` says which; the benchmark prints it).
"""
import tensorflow as tf

FLOAT32 = 'float32'
BFLOAT16 = 'bfloat16'
PRECISIONS = (FLOAT32, BFLOAT16)
# The /proc/cpuinfo flags of the x86 instructions oneDNN uses for bfloat16 products.
BFLOAT16_FLAGS = ('avx512_bf16', 'amx_bf16')


def bfloat16_instructions(cpuinfo='/proc/cpuinfo'):
  """The CPU's bfloat16 instruction sets among `BFLOAT16_FLAGS`, e.g. ('avx512_bf16',
  'amx_bf16'); () where it has none or /proc/cpuinfo cannot be read (not Linux)."""
  try:
    with open(cpuinfo) as f:
      flags = next((line.split(':', 1)[1].split() for line in f
                    if line.startswith('flags')), [])
  except OSError:
    return ()
  return tuple(name for name in BFLOAT16_FLAGS if name in flags)


def describe_instructions(found=None):
  """One line for the benchmark's header: which bfloat16 instructions the CPU has."""
  found = bfloat16_instructions() if found is None else found
  if found:
    return 'bfloat16 instructions: %s (oneDNN uses them)' % ', '.join(found)
  return ('bfloat16 instructions: none: --precision=bfloat16 would be emulated, slower; '
          'not a result')


def emulation_note(precision):
  """The one-line note for --precision=bfloat16 on a CPU without the instructions, or None."""
  if precision == BFLOAT16 and not bfloat16_instructions():
    return ('--precision=bfloat16: this CPU has no bfloat16 instructions (%s); TensorFlow '
            'emulates them, slower than float32' % ', '.join(BFLOAT16_FLAGS))
  return None


def check(precision):
  if precision not in PRECISIONS:
    raise ValueError('--precision=%s: use one of %s' % (precision, ', '.join(PRECISIONS)))


# The attribute of a traced function's graph that holds its rounded copies,
# {weights.ref(): `rounded_once(weights)`}: they go with the graph (a dictionary keyed by
# graphs would keep every graph alive through the tensors its values hold).
_ROUNDED = '_assignment6_rounded_weights'


def matmul(a, weights, precision=FLOAT32, round_once=False):
  """a (M, K) @ weights (K, N) -> (M, N) float32.

  float32: tf.matmul. bfloat16: both factors rounded to bfloat16, multiplied, the product
  cast back to float32 (each call rounds `weights` again: the reference twin). With
  round_once, inside a traced function the weights are rounded at its first call and that
  copy serves its later calls (`rounded_once`: the same numbers, forward and backward); a
  function that assigns the weights and then multiplies by them again would read them as
  they were at its first call (the language model's functions never do).
  """
  if precision == FLOAT32:
    return tf.matmul(a, weights)
  if round_once and not tf.executing_eagerly():
    graph = tf.compat.v1.get_default_graph()
    products = getattr(graph, _ROUNDED, None)
    if products is None:
      products = {}
      setattr(graph, _ROUNDED, products)
    if weights.ref() not in products:
      products[weights.ref()] = rounded_once(weights)
    return products[weights.ref()](a)
  return tf.cast(tf.matmul(tf.cast(a, tf.bfloat16), tf.cast(weights, tf.bfloat16)),
                 tf.float32)


def rounded_once(weights):
  """`lambda a: matmul(a, weights, 'bfloat16')`, with `weights` (K, N) rounded to bfloat16
  once for every call (T unrolled steps round them once, not T times: a (1024, 4096) cast
  costs about as much as the product it feeds).

  The same numbers as `matmul`, forward and backward: the gradient is the one TensorFlow
  derives for `matmul` (dz rounded to bfloat16; da = dz W^T, dW = a^T dz in bfloat16, each
  cast to float32), and each call's dW reaches `weights` in float32, so the sum over the
  steps is float32's (a single cast before the calls would sum them in bfloat16).
  """
  weights = tf.convert_to_tensor(weights)  # (K, N) float32: one read of the variable
  rounded = tf.cast(weights, tf.bfloat16)  # (K, N)

  @tf.custom_gradient
  def product(a, weights):
    del weights  # its rounded copy is used; its gradient is returned
    a = tf.cast(a, tf.bfloat16)  # (M, K)

    def gradient(dz):  # dz (M, N) float32
      dz = tf.cast(dz, tf.bfloat16)
      return (tf.cast(tf.matmul(dz, rounded, transpose_b=True), tf.float32),  # (M, K)
              tf.cast(tf.matmul(a, dz, transpose_a=True), tf.float32))  # (K, N)

    return tf.cast(tf.matmul(a, rounded), tf.float32), gradient  # (M, N)

  return lambda a: product(a, weights)
