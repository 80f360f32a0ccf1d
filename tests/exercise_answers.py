"""The answers the exercise tests pass to the checks: a right one for every exercise
(the solution notebooks' answers) and a bank of wrong ones, each a learner's mistake."""
import re

import numpy as np
import tensorflow as tf
from assignment6 import data, mirror, models


def lstm_cell(i, o, state, w):
  input_gate = tf.sigmoid(tf.matmul(i, w['ix']) + tf.matmul(o, w['im']) + w['ib'])
  forget_gate = tf.sigmoid(tf.matmul(i, w['fx']) + tf.matmul(o, w['fm']) + w['fb'])
  update = tf.matmul(i, w['cx']) + tf.matmul(o, w['cm']) + w['cb']
  state = forget_gate * state + input_gate * tf.tanh(update)
  output_gate = tf.sigmoid(tf.matmul(i, w['ox']) + tf.matmul(o, w['om']) + w['ob'])
  return output_gate * tf.tanh(state), state


def unroll(lstm_cell, train_inputs, saved_output, saved_state):
  outputs = []
  output, state = saved_output, saved_state
  for i in train_inputs:
    output, state = lstm_cell(i, output, state)
    outputs.append(output)
  saved_output.assign(output)
  saved_state.assign(state)
  return outputs


def inputs_and_labels(batches):
  return batches[:-1], batches[1:]


def logprob(predictions, labels):
  predictions = np.maximum(predictions, 1e-10)
  return np.sum(labels * -np.log(predictions)) / labels.shape[0]


def concatenate_gates(course):
  return tuple(tf.concat([course[p + s] for p in 'ifco'], axis=1) for s in 'xmb')


def concat_cell(i, o, state, x_weights, m_weights, biases):
  z = tf.matmul(i, x_weights) + tf.matmul(o, m_weights) + biases
  input_gate, forget_gate, update, output_gate = tf.split(z, 4, axis=1)
  state = tf.sigmoid(forget_gate) * state + tf.sigmoid(input_gate) * tf.tanh(update)
  return tf.sigmoid(output_gate) * tf.tanh(state), state


def embedding(ids, embeddings):
  return tf.nn.embedding_lookup(embeddings, ids)


def bigram_ids(ids, stride=2):
  starts = np.arange(0, len(ids) - 1, stride)
  return ids[starts].astype(np.int32) * 27 + ids[starts + 1]


class BigramBatchGenerator(data.BatchGenerator):
  def __init__(self, text, batch_size, num_unrollings):
    super().__init__(bigram_ids(data.text_to_ids(text)[0]), batch_size, num_unrollings)
  def next(self):
    return self.next_ids()


def bigram_labels(ids):
  return tf.gather(tf.eye(729), ids)


def dropout(lstm_cell, inputs, output, state, keep_prob, training):
  outputs = []
  for i in inputs:
    if training:
      i = tf.nn.dropout(i, rate=1 - keep_prob)
    output, state = lstm_cell(i, output, state)
    outputs.append(tf.nn.dropout(output, rate=1 - keep_prob) if training else output)
  return outputs, output, state


def mirror_target(text):
  return ' '.join(word[::-1] for word in text.split(' '))


def mirror_sequences(sentence):
  ids = data.text_to_ids(sentence)[0]
  target = list(data.text_to_ids(mirror_target(sentence))[0])
  return list(ids[::-1]), [mirror.GO] + target, target + [mirror.EOS]


def mirror_encoder(cell, source, source_mask):
  o = tf.zeros([source.shape[0], cell.num_nodes])
  state = tf.zeros_like(o)
  for t in range(source.shape[1]):
    new_o, new_state = cell(mirror.one_hot(source[:, t]), o, state)
    keep = source_mask[:, t:t + 1]
    o = keep * new_o + (1 - keep) * o
    state = keep * new_state + (1 - keep) * state
  return o, state


# ---------------------------------------------------------------------------- wrong answers
# Each is a mistake a learner makes, written as a learner would; WRONG maps its name to
# (the exercise, the mistake the check must name).


def cell_gates_swapped(i, o, state, w):  # input and output gates read each other's weights
  input_gate = tf.sigmoid(tf.matmul(i, w['ox']) + tf.matmul(o, w['om']) + w['ob'])
  forget_gate = tf.sigmoid(tf.matmul(i, w['fx']) + tf.matmul(o, w['fm']) + w['fb'])
  update = tf.matmul(i, w['cx']) + tf.matmul(o, w['cm']) + w['cb']
  state = forget_gate * state + input_gate * tf.tanh(update)
  output_gate = tf.sigmoid(tf.matmul(i, w['ix']) + tf.matmul(o, w['im']) + w['ib'])
  return output_gate * tf.tanh(state), state


def cell_no_forget_bias(i, o, state, w):
  input_gate = tf.sigmoid(tf.matmul(i, w['ix']) + tf.matmul(o, w['im']) + w['ib'])
  forget_gate = tf.sigmoid(tf.matmul(i, w['fx']) + tf.matmul(o, w['fm']))
  update = tf.matmul(i, w['cx']) + tf.matmul(o, w['cm']) + w['cb']
  state = forget_gate * state + input_gate * tf.tanh(update)
  output_gate = tf.sigmoid(tf.matmul(i, w['ox']) + tf.matmul(o, w['om']) + w['ob'])
  return output_gate * tf.tanh(state), state


def cell_sigmoid_tanh_swapped(i, o, state, w):
  input_gate = tf.tanh(tf.matmul(i, w['ix']) + tf.matmul(o, w['im']) + w['ib'])
  forget_gate = tf.sigmoid(tf.matmul(i, w['fx']) + tf.matmul(o, w['fm']) + w['fb'])
  update = tf.matmul(i, w['cx']) + tf.matmul(o, w['cm']) + w['cb']
  state = forget_gate * state + input_gate * tf.sigmoid(update)
  output_gate = tf.sigmoid(tf.matmul(i, w['ox']) + tf.matmul(o, w['om']) + w['ob'])
  return output_gate * tf.tanh(state), state


def cell_forget_on_update(i, o, state, w):
  input_gate = tf.sigmoid(tf.matmul(i, w['ix']) + tf.matmul(o, w['im']) + w['ib'])
  forget_gate = tf.sigmoid(tf.matmul(i, w['fx']) + tf.matmul(o, w['fm']) + w['fb'])
  update = tf.matmul(i, w['cx']) + tf.matmul(o, w['cm']) + w['cb']
  state = input_gate * state + forget_gate * tf.tanh(update)
  output_gate = tf.sigmoid(tf.matmul(i, w['ox']) + tf.matmul(o, w['om']) + w['ob'])
  return output_gate * tf.tanh(state), state


def cell_transposed(i, o, state, w):
  m = lambda name: tf.matmul(o, w[name], transpose_b=True)
  input_gate = tf.sigmoid(tf.matmul(i, w['ix']) + m('im') + w['ib'])
  forget_gate = tf.sigmoid(tf.matmul(i, w['fx']) + m('fm') + w['fb'])
  update = tf.matmul(i, w['cx']) + m('cm') + w['cb']
  state = forget_gate * state + input_gate * tf.tanh(update)
  output_gate = tf.sigmoid(tf.matmul(i, w['ox']) + m('om') + w['ob'])
  return output_gate * tf.tanh(state), state


def cell_returns_swapped(i, o, state, w):
  output, state = lstm_cell(i, o, state, w)
  return state, output


def cell_no_output_tanh(i, o, state, w):
  input_gate = tf.sigmoid(tf.matmul(i, w['ix']) + tf.matmul(o, w['im']) + w['ib'])
  forget_gate = tf.sigmoid(tf.matmul(i, w['fx']) + tf.matmul(o, w['fm']) + w['fb'])
  update = tf.matmul(i, w['cx']) + tf.matmul(o, w['cm']) + w['cb']
  state = forget_gate * state + input_gate * tf.tanh(update)
  output_gate = tf.sigmoid(tf.matmul(i, w['ox']) + tf.matmul(o, w['om']) + w['ob'])
  return output_gate * state, state


def cell_weights_first(i, o, state, w):
  input_gate = tf.sigmoid(tf.matmul(w['ix'], i) + tf.matmul(o, w['im']) + w['ib'])
  return input_gate, state


def cell_numpy(i, o, state, w):
  output, state = lstm_cell(i, o, state, w)
  return tf.constant(output.numpy()), state


def cell_typo(i, o, state, w):
  input_gate = tf.sigmoid(tf.matmul(i, w['ix']) + tf.matmul(o, w['im']) + w['ib'])
  forget_gate = tf.sigmoid(tf.matmul(i, w['fx']) + tf.matmul(o, w['fm']) + w['fb'])
  update = tf.matmul(i, w['ux']) + tf.matmul(o, w['um']) + w['ub']
  return update, state


def concat_split_axis0(i, o, state, x_weights, m_weights, biases):
  z = tf.matmul(i, x_weights) + tf.matmul(o, m_weights) + biases
  input_gate, forget_gate, update, output_gate = tf.split(z, 4, axis=0)
  state = tf.sigmoid(forget_gate) * state + tf.sigmoid(input_gate) * tf.tanh(update)
  return tf.sigmoid(output_gate) * tf.tanh(state), state


def concat_split_tf0(i, o, state, x_weights, m_weights, biases):
  z = tf.matmul(i, x_weights) + tf.matmul(o, m_weights) + biases
  input_gate, forget_gate, update, output_gate = tf.split(1, 4, z)
  state = tf.sigmoid(forget_gate) * state + tf.sigmoid(input_gate) * tf.tanh(update)
  return tf.sigmoid(output_gate) * tf.tanh(state), state


def concat_ifoc(i, o, state, x_weights, m_weights, biases):
  z = tf.matmul(i, x_weights) + tf.matmul(o, m_weights) + biases
  input_gate, forget_gate, output_gate, update = tf.split(z, 4, axis=1)
  state = tf.sigmoid(forget_gate) * state + tf.sigmoid(input_gate) * tf.tanh(update)
  return tf.sigmoid(output_gate) * tf.tanh(state), state


def concat_no_biases(i, o, state, x_weights, m_weights, biases):
  z = tf.matmul(i, x_weights) + tf.matmul(o, m_weights)
  input_gate, forget_gate, update, output_gate = tf.split(z, 4, axis=1)
  state = tf.sigmoid(forget_gate) * state + tf.sigmoid(input_gate) * tf.tanh(update)
  return tf.sigmoid(output_gate) * tf.tanh(state), state


def gates_axis0(course):
  return tuple(tf.concat([course[p + s] for p in 'ifco'], axis=0) for s in 'xmb')


def gates_tf0(course):
  return tuple(tf.concat(1, [course[p + s] for p in 'ifco']) for s in 'xmb')


def gates_icfo(course):
  return tuple(tf.concat([course[p + s] for p in 'icfo'], axis=1) for s in 'xmb')


def unroll_from_zero(lstm_cell, train_inputs, saved_output, saved_state):
  outputs = []
  output, state = tf.zeros_like(saved_output), tf.zeros_like(saved_state)
  for i in train_inputs:
    output, state = lstm_cell(i, output, state)
    outputs.append(output)
  saved_output.assign(output)
  saved_state.assign(state)
  return outputs


def unroll_not_saved(lstm_cell, train_inputs, saved_output, saved_state):
  outputs = []
  output, state = saved_output, saved_state
  for i in train_inputs:
    output, state = lstm_cell(i, output, state)
    outputs.append(output)
  return outputs


def unroll_not_carried(lstm_cell, train_inputs, saved_output, saved_state):
  outputs = []
  for i in train_inputs:
    output, state = lstm_cell(i, saved_output, saved_state)
    outputs.append(output)
  saved_output.assign(output)
  saved_state.assign(state)
  return outputs


def labels_not_shifted(batches):
  return batches[:-1], batches[:-1]


def labels_swapped(batches):
  return batches[1:], batches[:-1]


def logprob_no_clamp(predictions, labels):
  return np.sum(labels * -np.log(predictions)) / labels.shape[0]


def logprob_sum(predictions, labels):
  predictions = np.maximum(predictions, 1e-10)
  return np.sum(labels * -np.log(predictions))


def logprob_bits(predictions, labels):
  predictions = np.maximum(predictions, 1e-10)
  return np.sum(labels * -np.log2(predictions)) / labels.shape[0]


def bigram_second_first(ids, stride=2):
  starts = np.arange(0, len(ids) - 1, stride)
  return ids[starts + 1].astype(np.int32) * 27 + ids[starts]


def bigram_always_overlapping(ids, stride=2):
  return ids[:-1].astype(np.int32) * 27 + ids[1:]


def bigram_always_pairs(ids, stride=2):
  starts = np.arange(0, len(ids) - 1, 2)
  return ids[starts].astype(np.int32) * 27 + ids[starts + 1]


def bigram_times_26(ids, stride=2):
  starts = np.arange(0, len(ids) - 1, stride)
  return ids[starts].astype(np.int32) * 26 + ids[starts + 1]


class BatchesOfCharacters(data.BatchGenerator):
  def next(self):
    return self.next_ids()


class BatchesOverlapping(data.BatchGenerator):
  def __init__(self, text, batch_size, num_unrollings):
    super().__init__(bigram_ids(data.text_to_ids(text)[0], 1), batch_size, num_unrollings)

  def next(self):
    return self.next_ids()


class BatchesTransposed(BigramBatchGenerator):
  def next(self):
    return self.next_ids().T


class BatchesNotCarried(BigramBatchGenerator):
  def next(self):
    return self.next_ids(self._num_unrollings + 1)[1:]


def labels_27(ids):
  return tf.one_hot(ids, 27)


def labels_axis1(ids):
  return tf.gather(tf.eye(729), ids, axis=1)


def embedding_one_hot(ids, embeddings):
  return models.one_hot(ids, 27)


def dropout_recurrent(lstm_cell, inputs, output, state, keep_prob, training):
  outputs = []
  for i in inputs:
    if training:
      output = tf.nn.dropout(output, rate=1 - keep_prob)
    output, state = lstm_cell(i, output, state)
    outputs.append(output)
  return outputs, output, state


def dropout_state(lstm_cell, inputs, output, state, keep_prob, training):
  outputs = []
  for i in inputs:
    if training:
      i = tf.nn.dropout(i, rate=1 - keep_prob)
      state = tf.nn.dropout(state, rate=1 - keep_prob)
    output, state = lstm_cell(i, output, state)
    outputs.append(tf.nn.dropout(output, rate=1 - keep_prob) if training else output)
  return outputs, output, state


def dropout_always(lstm_cell, inputs, output, state, keep_prob, training):
  outputs = []
  for i in inputs:
    output, state = lstm_cell(tf.nn.dropout(i, rate=1 - keep_prob), output, state)
    outputs.append(tf.nn.dropout(output, rate=1 - keep_prob))
  return outputs, output, state


def dropout_tf0(lstm_cell, inputs, output, state, keep_prob, training):
  outputs = []
  for i in inputs:
    if training:
      i = tf.nn.dropout(i, keep_prob)
    output, state = lstm_cell(i, output, state)
    outputs.append(tf.nn.dropout(output, keep_prob) if training else output)
  return outputs, output, state


def dropout_saved(lstm_cell, inputs, output, state, keep_prob, training):
  outputs, output, state = dropout(lstm_cell, inputs, output, state, keep_prob, training)
  if training:
    output = tf.nn.dropout(output, rate=1 - keep_prob)
  return outputs, output, state


def dropout_keep_prob_keyword(lstm_cell, inputs, output, state, keep_prob, training):
  outputs = []
  for i in inputs:
    if training:
      i = tf.nn.dropout(i, keep_prob=keep_prob)
    output, state = lstm_cell(i, output, state)
    outputs.append(output)
  return outputs, output, state


def mirror_whole(text):
  return text[::-1]


def mirror_split(text):
  return ' '.join(word[::-1] for word in text.split())


def mirror_word_order(text):
  return ' '.join(reversed(text.split(' ')))


def sequences_no_eos(sentence):
  ids = data.text_to_ids(sentence)[0]
  target = list(data.text_to_ids(mirror_target(sentence))[0])
  return list(ids[::-1]), [mirror.GO] + target[:-1], target


def sequences_not_reversed(sentence):
  ids = data.text_to_ids(sentence)[0]
  target = list(data.text_to_ids(mirror_target(sentence))[0])
  return list(ids), [mirror.GO] + target, target + [mirror.EOS]


def sequences_no_go(sentence):
  ids = data.text_to_ids(sentence)[0]
  target = list(data.text_to_ids(mirror_target(sentence))[0])
  return list(ids[::-1]), target, target + [mirror.EOS]


def encoder_no_mask(cell, source, source_mask):
  o = tf.zeros([source.shape[0], cell.num_nodes])
  state = tf.zeros_like(o)
  for t in range(source.shape[1]):
    o, state = cell(mirror.one_hot(source[:, t]), o, state)
  return o, state


WRONG = {
    'cell_gates_swapped': ('lstm_cell', 'gate_order'),
    'cell_no_forget_bias': ('lstm_cell', 'missing_bias'),
    'cell_sigmoid_tanh_swapped': ('lstm_cell', 'sigmoid_tanh_swapped'),
    'cell_forget_on_update': ('lstm_cell', 'forget_on_update'),
    'cell_transposed': ('lstm_cell', 'transposed_weights'),
    'cell_returns_swapped': ('lstm_cell', 'swapped_returns'),
    'cell_no_output_tanh': ('lstm_cell', 'missing_activation'),
    'cell_weights_first': ('lstm_cell', 'matmul_shapes'),
    'cell_numpy': ('lstm_cell', 'not_traceable'),
    'cell_typo': ('lstm_cell', 'exception'),
    'concat_split_axis0': ('concat_cell', 'split_axis'),
    'concat_split_tf0': ('concat_cell', 'tf0_split'),
    'concat_ifoc': ('concat_cell', 'gate_order'),
    'concat_no_biases': ('concat_cell', 'missing_bias'),
    'gates_axis0': ('concatenate_gates', 'concat_axis'),
    'gates_tf0': ('concatenate_gates', 'tf0_concat'),
    'gates_icfo': ('concatenate_gates', 'gate_order'),
    'unroll_from_zero': ('unroll', 'zero_start'),
    'unroll_not_saved': ('unroll', 'state_not_saved'),
    'unroll_not_carried': ('unroll', 'state_not_carried'),
    'labels_not_shifted': ('inputs_and_labels', 'labels_not_shifted'),
    'labels_swapped': ('inputs_and_labels', 'labels_swapped'),
    'logprob_no_clamp': ('logprob', 'no_clamp'),
    'logprob_sum': ('logprob', 'not_per_row'),
    'logprob_bits': ('logprob', 'log2'),
    'bigram_second_first': ('bigram_ids', 'second_first'),
    'bigram_always_overlapping': ('bigram_ids', 'overlapping'),
    'bigram_always_pairs': ('bigram_ids', 'non_overlapping'),
    'bigram_times_26': ('bigram_ids', 'id_formula'),
    'BatchesOfCharacters': ('bigram_batches', 'characters_not_bigrams'),
    'BatchesOverlapping': ('bigram_batches', 'overlapping'),
    'BatchesTransposed': ('bigram_batches', 'batch_transposed'),
    'BatchesNotCarried': ('bigram_batches', 'last_not_carried'),
    'labels_27': ('bigram_labels', 'one_hot_wrong_size'),
    'labels_axis1': ('bigram_labels', 'transposed'),
    'embedding_one_hot': ('embedding', 'one_hot_not_embedded'),
    'dropout_recurrent': ('dropout', 'dropout_recurrent'),
    'dropout_state': ('dropout', 'dropout_state'),
    'dropout_always': ('dropout', 'dropout_in_validation'),
    'dropout_tf0': ('dropout', 'rate_is_keep_prob'),
    'dropout_saved': ('dropout', 'dropout_saved_state'),
    'dropout_keep_prob_keyword': ('dropout', 'keep_prob_argument'),
    'mirror_whole': ('mirror_target', 'whole_sentence_reversed'),
    'mirror_split': ('mirror_target', 'spaces_collapsed'),
    'mirror_word_order': ('mirror_target', 'word_order_reversed'),
    'sequences_no_eos': ('mirror_sequences', 'missing_eos'),
    'sequences_not_reversed': ('mirror_sequences', 'source_not_reversed'),
    'sequences_no_go': ('mirror_sequences', 'missing_go'),
    'encoder_no_mask': ('mirror_encoder', 'padding_not_masked'),
}

RIGHT = {'bigram_batches': BigramBatchGenerator}  # the answer of each other exercise: its name


def cell_two_mistakes(i, o, state, w):  # the forget bias missing and no tanh on the state
  input_gate = tf.sigmoid(tf.matmul(i, w['ix']) + tf.matmul(o, w['im']) + w['ib'])
  forget_gate = tf.sigmoid(tf.matmul(i, w['fx']) + tf.matmul(o, w['fm']))
  update = tf.matmul(i, w['cx']) + tf.matmul(o, w['cm']) + w['cb']
  state = forget_gate * state + input_gate * tf.tanh(update)
  output_gate = tf.sigmoid(tf.matmul(i, w['ox']) + tf.matmul(o, w['om']) + w['ob'])
  return output_gate * state, state


def cell_output_scaled(i, o, state, w):  # no hypothesis: located by what is right
  output, state = lstm_cell(i, o, state, w)
  return 0.5 * output, state


WRONG.update({
    'cell_two_mistakes': ('lstm_cell', 'missing_bias'),
    'cell_output_scaled': ('lstm_cell', 'values'),
})


def mirror_decode(model, sentences):
  memory, keys, o, state, mask = mirror.encode_sentences(model, sentences)
  attentional = model.initial_attentional(o)
  previous = tf.fill([len(sentences)], mirror.GO)
  outputs = []
  for _ in range(max(len(s) for s in sentences) + 10):
    log_probs, o, state, attentional, _ = model.decode_step(
        previous, o, state, attentional, memory, keys, mask)
    ids = np.argmax(log_probs.numpy(), axis=1).astype(np.int32)
    outputs.append(ids)
    if np.all(np.any(np.stack(outputs) == mirror.EOS, axis=0)):
      break
    previous = tf.constant(ids)
  return [mirror.ids_to_sentence(row) for row in np.stack(outputs, axis=1)]


def decode_no_feedback(model, sentences):
  memory, keys, o, state, mask = mirror.encode_sentences(model, sentences)
  attentional = model.initial_attentional(o)
  previous = tf.fill([len(sentences)], mirror.GO)
  outputs = []
  for _ in range(max(len(s) for s in sentences) + 1):
    log_probs, o, state, attentional, _ = model.decode_step(
        previous, o, state, attentional, memory, keys, mask)
    outputs.append(np.argmax(log_probs.numpy(), axis=1))
  return [mirror.ids_to_sentence(row) for row in np.stack(outputs, axis=1)]


def decode_no_stop(model, sentences):
  memory, keys, o, state, mask = mirror.encode_sentences(model, sentences)
  attentional = model.initial_attentional(o)
  previous = tf.fill([len(sentences)], mirror.GO)
  outputs = []
  for _ in range(max(len(s) for s in sentences) + 5):
    log_probs, o, state, attentional, _ = model.decode_step(
        previous, o, state, attentional, memory, keys, mask)
    ids = np.argmax(log_probs.numpy(), axis=1).astype(np.int32)
    outputs.append(ids)
    previous = tf.constant(ids)
  return [''.join(data.id2char(int(i)) for i in row if i < 27)
          for row in np.stack(outputs, axis=1)]


def decode_state_reset(model, sentences):
  memory, keys, o0, state0, mask = mirror.encode_sentences(model, sentences)
  attentional = model.initial_attentional(o0)
  previous = tf.fill([len(sentences)], mirror.GO)
  outputs = []
  for _ in range(max(len(s) for s in sentences) + 10):
    log_probs, _, _, attentional, _ = model.decode_step(
        previous, o0, state0, attentional, memory, keys, mask)
    ids = np.argmax(log_probs.numpy(), axis=1).astype(np.int32)
    outputs.append(ids)
    previous = tf.constant(ids)
  return [mirror.ids_to_sentence(row) for row in np.stack(outputs, axis=1)]


WRONG.update({
    'decode_no_feedback': ('mirror_decode', 'not_fed_back'),
    'decode_no_stop': ('mirror_decode', 'no_stop_at_eos'),
    'decode_state_reset': ('mirror_decode', 'state_not_carried'),
})


def bigram_loss(model, batches):
  outputs, _, _ = model.unroll(batches[:-1], model.saved_output, model.saved_state)
  logits = model.logits(outputs)  # (T * B, 729)
  labels = tf.gather(tf.eye(729), tf.reshape(batches[1:], [-1]))
  return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits))


def loss_not_shifted(model, batches):
  outputs, _, _ = model.unroll(batches[:-1], model.saved_output, model.saved_state)
  labels = tf.gather(tf.eye(729), tf.reshape(batches[:-1], [-1]))
  return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(
      labels=labels, logits=model.logits(outputs)))


def loss_labels_27(model, batches):
  outputs, _, _ = model.unroll(batches[:-1], model.saved_output, model.saved_state)
  labels = tf.one_hot(tf.reshape(batches[1:], [-1]), 27)
  return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(
      labels=labels, logits=model.logits(outputs)))


def loss_concat_axis1(model, batches):
  outputs, _, _ = model.unroll(batches[:-1], model.saved_output, model.saved_state)
  logits = model.classifier(tf.concat(outputs, 1))
  labels = tf.gather(tf.eye(729), tf.reshape(batches[1:], [-1]))
  return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits))


def loss_sum(model, batches):
  outputs, _, _ = model.unroll(batches[:-1], model.saved_output, model.saved_state)
  labels = tf.gather(tf.eye(729), tf.reshape(batches[1:], [-1]))
  return tf.reduce_sum(tf.nn.softmax_cross_entropy_with_logits(
      labels=labels, logits=model.logits(outputs)))


WRONG.update({
    'loss_not_shifted': ('bigram_loss', 'labels_not_shifted'),
    'loss_labels_27': ('bigram_loss', 'one_hot_wrong_size'),
    'loss_concat_axis1': ('bigram_loss', 'concat_axis'),
    'loss_sum': ('bigram_loss', 'not_mean'),
})


def cell_relu_update(i, o, state, w):
  gate = lambda p: tf.matmul(i, w[p + 'x']) + tf.matmul(o, w[p + 'm']) + w[p + 'b']
  state = tf.sigmoid(gate('f')) * state + tf.sigmoid(gate('i')) * tf.nn.relu(gate('c'))
  return tf.sigmoid(gate('o')) * tf.tanh(state), state


def encoder_state_unmasked(cell, source, source_mask):
  o = tf.zeros([source.shape[0], cell.num_nodes])
  state = tf.zeros_like(o)
  for t in range(source.shape[1]):
    new_o, state = cell(mirror.one_hot(source[:, t]), o, state)
    keep = source_mask[:, t:t + 1]
    o = keep * new_o + (1 - keep) * o
  return o, state


def sequences_eos_in_inputs(sentence):
  ids = data.text_to_ids(sentence)[0]
  target = list(data.text_to_ids(mirror_target(sentence))[0])
  return list(ids[::-1]), [mirror.GO] + target + [mirror.EOS], target + [mirror.EOS]


def dropout_not_scaled(lstm_cell, inputs, output, state, keep_prob, training):
  outputs = []
  for i in inputs:
    if training:
      i = i * tf.cast(tf.random.uniform(tf.shape(i)) < keep_prob, tf.float32)
    output, state = lstm_cell(i, output, state)
    outputs.append(output)
  return outputs, output, state


def unroll_returns_three(lstm_cell, train_inputs, saved_output, saved_state):
  outputs = unroll(lstm_cell, train_inputs, saved_output, saved_state)
  return outputs, saved_output, saved_state


WRONG.update({
    'cell_relu_update': ('lstm_cell', 'wrong_activation'),
    'encoder_state_unmasked': ('mirror_encoder', 'state_not_masked'),
    'sequences_eos_in_inputs': ('mirror_sequences', 'eos_in_inputs'),
    'dropout_not_scaled': ('dropout', 'not_scaled'),
    'unroll_returns_three': ('unroll', 'returns'),
})


def cell_returns_text(i, o, state, w):
  return 'output', 'state'


def cell_returns_strings(i, o, state, w):  # what the check cannot use: one line, no traceback
  output, state = lstm_cell(i, o, state, w)
  return tf.strings.as_string(output), state


def logprob_returns_rows(predictions, labels):
  predictions = np.maximum(predictions, 1e-10)
  return np.sum(labels * -np.log(predictions), axis=1)


WRONG.update({
    'cell_returns_text': ('lstm_cell', 'shape'),
    'cell_returns_strings': ('lstm_cell', 'unusable'),
    'logprob_returns_rows': ('logprob', 'returns'),
})


# ---------------------------------------------------------------------------- other right answers
# Written another way than the solutions: each must pass its check.


def concat_one_matmul(i, o, state, x_weights, m_weights, biases):
  z = tf.matmul(tf.concat([i, o], 1), tf.concat([x_weights, m_weights], 0)) + biases
  H = state.shape[1]
  ig, fg, u, og = tf.unstack(tf.reshape(z, [-1, 4, H]), axis=1)
  state = tf.sigmoid(fg) * state + tf.sigmoid(ig) * tf.tanh(u)
  return tf.sigmoid(og) * tf.tanh(state), state


def loss_sparse(model, batches):
  outputs, _, _ = model.unroll(batches[:-1], model.saved_output, model.saved_state)
  return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=tf.reshape(batches[1:], [-1]), logits=model.logits(outputs)))


def embed_matmul(ids, embeddings):
  return tf.tensordot(tf.one_hot(ids, embeddings.shape[0]), embeddings, 1)


def logprob_mean(predictions, labels):
  return float(np.mean(-np.log(np.maximum(np.sum(labels * predictions, 1), 1e-10))))


def mirror_regex(text):
  return re.sub(r'[a-z]+', lambda m: m.group(0)[::-1], text)


def dropout_stateless(lstm_cell, inputs, output, state, keep_prob, training):
  outs = []
  for t, i in enumerate(inputs):
    if training:
      i = tf.nn.experimental.stateless_dropout(i, 1 - keep_prob, seed=[1, t])
    output, state = lstm_cell(i, output, state)
    if training:
      output_kept = tf.nn.experimental.stateless_dropout(output, 1 - keep_prob, seed=[2, t])
    outs.append(output_kept if training else output)
  return outs, output, state


def unroll_deps(lstm_cell, train_inputs, saved_output, saved_state):
  outputs = list()
  output = saved_output
  state = saved_state
  for i in train_inputs:
    output, state = lstm_cell(i, output, state)
    outputs.append(output)
  with tf.control_dependencies([saved_output.assign(output), saved_state.assign(state)]):
    return [tf.identity(x) for x in outputs]


def ids_list(ids, stride=2):
  return [27 * int(ids[k]) + int(ids[k + 1]) for k in range(0, len(ids) - 1, stride)]


def sequences_np(sentence):
  ids = data.text_to_ids(sentence)[0]
  t = data.text_to_ids(mirror.mirror(sentence))[0]
  return ids[::-1], np.concatenate([[mirror.GO], t]), np.concatenate([t, [mirror.EOS]])


OTHER_RIGHT = {
    'concat_one_matmul': 'concat_cell', 'loss_sparse': 'bigram_loss',
    'embed_matmul': 'embedding', 'logprob_mean': 'logprob', 'mirror_regex': 'mirror_target',
    'dropout_stateless': 'dropout', 'unroll_deps': 'unroll', 'ids_list': 'bigram_ids',
    'sequences_np': 'mirror_sequences',
}
