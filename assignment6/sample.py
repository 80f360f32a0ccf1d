"""Text from a trained model: `python -m assignment6.sample --checkpoint_dir=DIR`.

    python -m assignment6.lstm --checkpoint_dir=runs/lstm          # train and keep it
    python -m assignment6.sample --checkpoint_dir=runs/lstm        # the course's 5 x 80
    python -m assignment6.sample --checkpoint_dir=runs/lstm --prime='the king ' \\
        --temperature=0.5 --length=200 --count=3

Any language-model run's directory (lstm, problem1, problem2: characters or bigrams, any
cell); the model is rebuilt from the settings its checkpoint records, on any device. The
state is warmed on --prime, then each character is drawn from softmax(logits /
--temperature) (1: the course's sampling; towards 0: the most likely, --argmax). With no
prime, at temperature 1 and the run's --seed, the texts are those the training run's own
sampling draws after seeding (`training.sample_text`). --sampler=stateless draws as the
exported model does (`assignment6.export`). The texts are printed between rows of `=`, as
in the course's log.
"""
import math

from absl import app
from absl import flags

from assignment6 import generate, runs

flags.DEFINE_string('checkpoint_dir', None, 'The --checkpoint_dir of a language-model run '
                    '(its newest complete checkpoint is read).')
flags.DEFINE_string('prime', '', 'Text the state reads first; the samples continue it '
                    '(and begin with it). Empty: the first character is drawn, as the '
                    'course does.')
flags.DEFINE_integer('length', 80, 'Characters to write after the prime (the course: 80).',
                     lower_bound=1)
flags.DEFINE_float('temperature', 1.0, 'The logits are divided by it: below 1 more '
                   'likely characters, above 1 more varied; 1 is the course\'s sampling.')
flags.DEFINE_integer('count', 5, 'Samples to write (the course: 5).', lower_bound=1)
flags.DEFINE_integer('seed', 0, 'Seeds the draws (as the training run\'s --seed seeds '
                     'its samples).', lower_bound=0, upper_bound=2**32 - 1)
flags.DEFINE_bool('argmax', False, 'Write the most likely character each step (greedy) '
                  'instead of drawing one.')
flags.DEFINE_enum('sampler', 'course', ['course', 'stateless'], 'course: Python\'s random, '
                  'as the training run samples; stateless: the draws of the exported model '
                  '(tf.random.stateless_uniform from --seed).')
flags.register_validator('temperature', lambda t: t > 0 and math.isfinite(t),
                         '--temperature must be greater than 0 and finite (--argmax for '
                         'the most likely characters)')
FLAGS = flags.FLAGS


def main(argv):
  runs.reject_arguments(argv)
  model, path = runs.load_trained_model(FLAGS.checkpoint_dir)
  try:
    if FLAGS.sampler == 'course':
      runs.seed_everything(FLAGS.seed)
      texts = generate.sample_course(model, FLAGS.prime, FLAGS.length, FLAGS.count,
                                     FLAGS.temperature, FLAGS.argmax)
    else:
      texts = generate.sample_stateless(model, FLAGS.prime, FLAGS.length, FLAGS.count,
                                        FLAGS.temperature, FLAGS.argmax, FLAGS.seed)
  except generate.SampleError as error:
    runs.fail(str(error))
  runs.note('sampled from %s' % path)
  print('=' * 80)
  for text in texts:
    print(text)
  print('=' * 80)


if __name__ == '__main__':
  app.run(main)
