"""Keep a trained model: `python -m assignment6.export --checkpoint_dir=D --export_dir=OUT`.

Writes a SavedModel (`tf.saved_model.save` of `generate.Generator`, a `tf.Module`) that
TensorFlow alone loads and runs, in a process without assignment6:

    import tensorflow as tf
    model = tf.saved_model.load('OUT')
    model.sample(prime='the ', length=80, temperature=1.0, seed=0, count=1)['samples']
    model.score(text='the quick brown fox')['log_probabilities']   # nats, each character
    model.evaluate(text=open('valid.txt').read())['bits_per_character']  # as --eval_data

(also as `model.signatures['sample']`, `['score']`, `['evaluate']`, with tensors). The
samples are the stateless sampler's (`python -m assignment6.sample --sampler=stateless`
prints the same texts); a temperature of 0 or less is greedy (--argmax).
"""
import os

from absl import app
from absl import flags

from assignment6 import checkpoints, generate, runs

flags.DEFINE_string('checkpoint_dir', None, 'The --checkpoint_dir of a language-model run '
                    '(its newest complete checkpoint is exported).')
flags.DEFINE_string('export_dir', None, 'The SavedModel directory to write (it must not '
                    'exist, unless --overwrite).')
flags.DEFINE_bool('overwrite', False, 'Replace an existing SavedModel in --export_dir.')
FLAGS = flags.FLAGS


def main(argv):
  runs.reject_arguments(argv)
  if not FLAGS.checkpoint_dir:
    runs.fail('--checkpoint_dir: give the directory of a trained run (python -m '
              'assignment6.lstm --checkpoint_dir=DIR trains one)')
  if not FLAGS.export_dir:
    runs.fail('--export_dir: give the directory to write the SavedModel to')
  directory = FLAGS.export_dir
  if os.path.exists(directory):
    if not os.path.isdir(directory):
      runs.fail('--export_dir=%s: is a file; give a directory path' % directory)
    if os.listdir(directory):
      if not os.path.exists(os.path.join(directory, 'saved_model.pb')):
        runs.fail('--export_dir=%s: holds other files; give a new or empty directory'
                  % directory)
      if not FLAGS.overwrite:
        runs.fail('--export_dir=%s: holds a SavedModel; give another directory, or '
                  '--overwrite to replace it' % directory)
  problem = runs.unwritable(os.path.dirname(os.path.abspath(directory)))
  if problem:
    runs.fail('--export_dir=%s: cannot be written (%s); give a writable directory'
              % (directory, problem))
  model, path = runs.load_trained_model(FLAGS.checkpoint_dir)
  try:
    with checkpoints.quiet_logging():
      generate.save(model, directory)
  except OSError as error:
    runs.fail('--export_dir=%s: cannot be written (%s); give a writable directory'
              % (directory, error.strerror or error))
  print('Exported %s to %s (SavedModel; signatures: %s). Load it with '
        'tf.saved_model.load(%r).' % (path, directory, ', '.join(generate.SIGNATURES),
                                      directory))


if __name__ == '__main__':
  app.run(main)
