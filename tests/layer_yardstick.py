"""The benchmark's yardstick for larger models: the same model with `keras.layers.LSTM`.

What a TensorFlow user would otherwise write: an Embedding, the Keras LSTM layer with its
state carried between calls, a Dense classifier, SGD with the course's global clipping.
Only `python -m assignment6.bench --part=layers` uses it; the package stays Keras-free.
"""
import keras
import tensorflow as tf


def train_step(vocabulary_size, embedding_size, num_nodes, batch_size, learning_rate=1.0,
               clip_norm=1.25):
  """A `tf.function` taking ids (T + 1, B) that makes one training step; returns the loss."""
  embedding = keras.layers.Embedding(vocabulary_size, embedding_size)
  lstm = keras.layers.LSTM(num_nodes, return_sequences=True, return_state=True)
  classifier = keras.layers.Dense(vocabulary_size)
  optimizer = keras.optimizers.SGD(learning_rate, global_clipnorm=clip_norm)
  saved_output = tf.Variable(tf.zeros([batch_size, num_nodes]), trainable=False)
  saved_state = tf.Variable(tf.zeros([batch_size, num_nodes]), trainable=False)
  layers = (embedding, lstm, classifier)
  classifier(lstm(embedding(tf.zeros([batch_size, 1], tf.int32)))[0])  # build

  @tf.function
  def step(ids):
    inputs, labels = tf.transpose(ids[:-1]), tf.transpose(ids[1:])  # (B, T)
    with tf.GradientTape() as tape:
      outputs, output, state = lstm(embedding(inputs),
                                    initial_state=[saved_output, saved_state])
      logits = classifier(outputs)  # (B, T, V)
      loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    variables = [v for layer in layers for v in layer.trainable_variables]
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    saved_output.assign(output)
    saved_state.assign(state)
    return loss

  return step
