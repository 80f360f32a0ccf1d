"""The course's Assignment 6 code, TensorFlow 1 style: the yardstick the TF2 port is tested against.

This module re-expresses the cells of `6_lstm.ipynb` (Udacity Deep Learning, TF1) as the course
wrote them: a `tf.Graph` built with `tf.compat.v1`, placeholders fed one batch per unrolling,
a `tf.compat.v1.Session`, one `session.run` per training step and per validation character, and
data helpers that work character by character in Python loops. It imports only numpy, tensorflow
and the standard library, never the rest of `assignment6`, so it stays an independent reference;
the benchmark times it with `run_course`.

The graph is built inside `with graph.as_default():` so TF1 graph mode lives beside the eager
TF2 port in the same process (eager execution is never switched off globally).
"""
import os
import random
import string
import time
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

vocabulary_size = len(string.ascii_lowercase) + 1  # [a-z] + ' '
first_letter = ord(string.ascii_lowercase[0])

# The course's variable names, in its gate order: input, forget, update ("memory cell"), output;
# then the classifier.
CELL_VARIABLE_NAMES = ("ix", "im", "ib", "fx", "fm", "fb", "cx", "cm", "cb", "ox", "om", "ob")
WEIGHT_NAMES = CELL_VARIABLE_NAMES + ("w", "b")


# --- Data helpers (the notebook's "utility functions to map characters to vocabulary IDs") ---

def char2id(char):
    """Maps 'a'..'z' to 1..26 and ' ' to 0; anything else is reported and mapped to 0."""
    if char in string.ascii_lowercase:
        return ord(char) - first_letter + 1
    elif char == " ":
        return 0
    else:
        print("Unexpected character: %s" % char)
        return 0


def id2char(dictid):
    """Maps 1..26 back to 'a'..'z' and 0 (or anything not positive) to ' '."""
    if dictid > 0:
        return chr(dictid + first_letter - 1)
    else:
        return " "


class BatchGenerator:
    """The course's batch generator: `batch_size` cursors spread evenly over the text.

    Each call to `next()` returns `num_unrollings + 1` one-hot batches of shape
    (batch_size, vocabulary_size): the last batch of the previous call, then `num_unrollings`
    new ones, so consecutive calls overlap by one character (the inputs' last label becomes the
    next call's first input).
    """

    def __init__(self, text, batch_size, num_unrollings):
        self._text = text
        self._text_size = len(text)
        self._batch_size = batch_size
        self._num_unrollings = num_unrollings
        segment = self._text_size // batch_size
        self._cursor = [offset * segment for offset in range(batch_size)]
        self._last_batch = self._next_batch()

    def _next_batch(self):
        """One one-hot batch (batch_size, vocabulary_size) at the cursors; advances each by one."""
        batch = np.zeros(shape=(self._batch_size, vocabulary_size), dtype=np.float32)
        for b in range(self._batch_size):
            batch[b, char2id(self._text[self._cursor[b]])] = 1.0
            self._cursor[b] = (self._cursor[b] + 1) % self._text_size
        return batch

    def next(self):
        """The last batch of the previous call, then `num_unrollings` new batches."""
        batches = [self._last_batch]
        for _ in range(self._num_unrollings):
            batches.append(self._next_batch())
        self._last_batch = batches[-1]
        return batches


def characters(probabilities):
    """The most likely character of each row of (batch, vocabulary_size) probabilities."""
    return [id2char(c) for c in np.argmax(probabilities, 1)]


def batches2string(batches):
    """One string per batch row: the characters of a list of one-hot batches, side by side."""
    s = [""] * batches[0].shape[0]
    for b in batches:
        s = ["".join(x) for x in zip(s, characters(b))]
    return s


# --- Sampling and scoring (the notebook's "logprob", "sample_distribution", ... cell) ---

def logprob(predictions, labels):
    """Mean over rows of the labels' negative log-probability (nats); predictions clamped at 1e-10.

    Works on a copy: the course clamped `predictions` in place.
    """
    predictions = np.array(predictions)  # a copy
    predictions[predictions < 1e-10] = 1e-10
    return np.sum(np.multiply(labels, -np.log(predictions))) / labels.shape[0]


def sample_distribution(distribution):
    """One index drawn from a distribution (a sequence of probabilities) with Python's `random`."""
    r = random.uniform(0, 1)
    s = 0
    for i in range(len(distribution)):
        s += distribution[i]
        if s >= r:
            return i
    return len(distribution) - 1


def sample(prediction):
    """A one-hot (1, vocabulary_size) sample from the first row of `prediction`."""
    p = np.zeros(shape=[1, vocabulary_size], dtype=np.float32)
    p[0, sample_distribution(prediction[0])] = 1.0
    return p


def random_distribution():
    """A random (1, vocabulary_size) column of probabilities, drawn with NumPy's global RNG."""
    b = np.random.uniform(0.0, 1.0, size=[1, vocabulary_size])
    return b / np.sum(b, 1)[:, None]


# --- The graph (the notebook's "Simple LSTM Model" cell) ---

class CourseGraph:
    """The course's LSTM graph and its session: training, sampling and validation ops.

    Mirrors the "Simple LSTM Model" cell, with its separate variables per gate and input
    (`ix`, `im`, `ib`, ...), `truncated_normal(shape, -0.1, 0.1)` initialisation (mean -0.1,
    stddev 0.1: the course's quirk), state saved across steps in non-trainable variables,
    SGD with staircase exponential decay and clipping by global norm. The graph's tensors keep
    the course's names in `self.tensors` (`train_data`, `loss`, `train_prediction`, ...).

    `initial_weights` (name -> array for the 14 names in `WEIGHT_NAMES`) replaces the random
    initialisation; `seed` is the graph-level seed.

    `use_resource`: True, resource variables (a read copies the value: the gradient the code
    means); False, TensorFlow 1's reference variables, as the course ran (a read aliases the
    variable's buffer, so the backward pass of the first unrolled step sees `saved_output`
    and `saved_state` after the assigns have overwritten them); None, TensorFlow's default
    (reference variables after `tf.compat.v1.disable_v2_behavior()`, else resource).
    `arithmetic_optimization`: Grappler's arithmetic optimizer in this graph's session (off:
    it reorders float32 sums). The session gets its own ConfigProto, so the process-wide
    options never reach it.
    """

    def __init__(self, batch_size=64, num_unrollings=10, num_nodes=64, vocabulary_size=27,
                 learning_rate=10.0, decay_steps=5000, decay_rate=0.1, clip_norm=1.25,
                 initial_weights=None, seed=None, use_resource=True,
                 arithmetic_optimization=False):
        self.batch_size = batch_size
        self.num_unrollings = num_unrollings
        self.num_nodes = num_nodes
        self.vocabulary_size = vocabulary_size
        shapes = _weight_shapes(vocabulary_size, num_nodes)
        if initial_weights is not None:
            initial_weights = _checked_weights(initial_weights, shapes)

        self.graph = tf.Graph()
        with self.graph.as_default():
            if seed is not None:
                tf.compat.v1.set_random_seed(seed)

            def variable(name):
                """A trainable course variable: given, truncated_normal(-0.1, 0.1), or zeros."""
                shape = shapes[name]
                if initial_weights is not None:
                    initial = initial_weights[name]
                elif name.endswith("b"):  # ib, fb, cb, ob, b: biases
                    initial = tf.zeros(shape)
                else:
                    initial = tf.compat.v1.truncated_normal(shape, -0.1, 0.1)
                return tf.compat.v1.Variable(initial, name=name, use_resource=use_resource)

            # Parameters: input gate, forget gate, memory cell ("update"), output gate.
            ix, im, ib = variable("ix"), variable("im"), variable("ib")
            fx, fm, fb = variable("fx"), variable("fm"), variable("fb")
            cx, cm, cb = variable("cx"), variable("cm"), variable("cb")
            ox, om, ob = variable("ox"), variable("om"), variable("ob")
            # Variables saving state across unrollings.
            saved_output = tf.compat.v1.Variable(
                tf.zeros([batch_size, num_nodes]), trainable=False, name="saved_output",
                use_resource=use_resource)
            saved_state = tf.compat.v1.Variable(
                tf.zeros([batch_size, num_nodes]), trainable=False, name="saved_state",
                use_resource=use_resource)
            # Classifier weights and biases.
            w, b = variable("w"), variable("b")

            def lstm_cell(i, o, state):
                """One LSTM step: i (B, vocabulary_size), o and state (B, num_nodes)."""
                input_gate = tf.sigmoid(tf.matmul(i, ix) + tf.matmul(o, im) + ib)
                forget_gate = tf.sigmoid(tf.matmul(i, fx) + tf.matmul(o, fm) + fb)
                update = tf.matmul(i, cx) + tf.matmul(o, cm) + cb
                state = forget_gate * state + input_gate * tf.tanh(update)
                output_gate = tf.sigmoid(tf.matmul(i, ox) + tf.matmul(o, om) + ob)
                return output_gate * tf.tanh(state), state  # (B, num_nodes) each

            # Input data: num_unrollings + 1 one-hot batches, each (batch_size, vocabulary_size).
            train_data = [
                tf.compat.v1.placeholder(tf.float32, shape=[batch_size, vocabulary_size])
                for _ in range(num_unrollings + 1)]
            train_inputs = train_data[:num_unrollings]
            train_labels = train_data[1:]  # labels are inputs shifted by one time step

            # Unrolled LSTM loop.
            outputs = []
            output = saved_output
            state = saved_state
            for i in train_inputs:
                output, state = lstm_cell(i, output, state)
                outputs.append(output)

            # State saving across unrollings.
            with tf.control_dependencies([saved_output.assign(output),
                                          saved_state.assign(state)]):
                # Classifier.
                logits = tf.compat.v1.nn.xw_plus_b(
                    tf.concat(outputs, 0), w, b)  # (num_unrollings * batch_size, vocabulary_size)
                loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(
                    labels=tf.concat(train_labels, 0), logits=logits))

            # Optimizer.
            global_step = tf.compat.v1.Variable(0, trainable=False, name="global_step",
                                                use_resource=use_resource)
            learning_rate_tensor = tf.compat.v1.train.exponential_decay(
                learning_rate, global_step, decay_steps, decay_rate, staircase=True)
            optimizer = tf.compat.v1.train.GradientDescentOptimizer(learning_rate_tensor)
            trainable = [ix, im, ib, fx, fm, fb, cx, cm, cb, ox, om, ob, w, b]
            gradients, variables = zip(*[
                (g, v) for g, v in optimizer.compute_gradients(loss, var_list=trainable)
                if g is not None])
            gradients, _ = tf.clip_by_global_norm(gradients, clip_norm)
            optimizer = optimizer.apply_gradients(
                zip(gradients, variables), global_step=global_step)

            # Predictions.
            train_prediction = tf.nn.softmax(logits)

            # Sampling and validation eval: batch 1, no unrolling.
            sample_input = tf.compat.v1.placeholder(tf.float32, shape=[1, vocabulary_size])
            saved_sample_output = tf.compat.v1.Variable(
                tf.zeros([1, num_nodes]), trainable=False, name="saved_sample_output",
                use_resource=use_resource)
            saved_sample_state = tf.compat.v1.Variable(
                tf.zeros([1, num_nodes]), trainable=False, name="saved_sample_state",
                use_resource=use_resource)
            reset_sample_state = tf.group(
                saved_sample_output.assign(tf.zeros([1, num_nodes])),
                saved_sample_state.assign(tf.zeros([1, num_nodes])))
            sample_output, sample_state = lstm_cell(
                sample_input, saved_sample_output, saved_sample_state)
            with tf.control_dependencies([saved_sample_output.assign(sample_output),
                                          saved_sample_state.assign(sample_state)]):
                sample_prediction = tf.nn.softmax(
                    tf.compat.v1.nn.xw_plus_b(sample_output, w, b))  # (1, vocabulary_size)

            initializer = tf.compat.v1.global_variables_initializer()

        self.tensors = types.SimpleNamespace(
            train_data=train_data, loss=loss, train_prediction=train_prediction,
            learning_rate=learning_rate_tensor, optimizer=optimizer, global_step=global_step,
            saved_output=saved_output, saved_state=saved_state,
            sample_input=sample_input, sample_prediction=sample_prediction,
            reset_sample_state=reset_sample_state,
            saved_sample_output=saved_sample_output, saved_sample_state=saved_sample_state)
        self._weights = dict(zip(WEIGHT_NAMES, trainable))
        self.session = tf.compat.v1.Session(graph=self.graph,
                                            config=session_config(arithmetic_optimization))
        self.session.run(initializer)

    def train_step(self, batches):
        """One SGD step on `num_unrollings + 1` one-hot batches: the training loop's session.run.

        Returns (loss, train predictions (num_unrollings * batch_size, vocabulary_size), the
        learning rate used for this update).
        """
        t = self.tensors
        feed_dict = {t.train_data[i]: batches[i] for i in range(self.num_unrollings + 1)}
        _, loss, predictions, learning_rate = self.session.run(
            [t.optimizer, t.loss, t.train_prediction, t.learning_rate], feed_dict=feed_dict)
        return loss, predictions, learning_rate

    def reset_sample_state(self):
        """Zeros the batch-1 sampling state (`reset_sample_state.run()` in the course)."""
        self.session.run(self.tensors.reset_sample_state)

    def sample_prediction(self, feed):
        """Next-character probabilities (1, vocabulary_size) for a one-hot (1, vocabulary_size)
        `feed`; advances the sampling state (`sample_prediction.eval(...)` in the course)."""
        t = self.tensors
        return self.session.run(t.sample_prediction, feed_dict={t.sample_input: feed})

    def weights(self):
        """The 14 trainable variables' values, by the course's names (ix..ob, w, b)."""
        return self.session.run(self._weights)

    def saved_state_values(self):
        """(saved_output, saved_state), each (batch_size, num_nodes): the training state."""
        t = self.tensors
        return tuple(self.session.run([t.saved_output, t.saved_state]))

    def close(self):
        """Closes the session."""
        self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def session_config(arithmetic_optimization=False):
    """A ConfigProto with Grappler's arithmetic optimizer on or off (the rest TF's defaults)."""
    config = tf.compat.v1.ConfigProto()
    if not arithmetic_optimization:
        from tensorflow.core.protobuf import rewriter_config_pb2
        config.graph_options.rewrite_options.arithmetic_optimization = (
            rewriter_config_pb2.RewriterConfig.OFF)
    return config


def initial_weights(seed=0, batch_size=64, num_unrollings=10, num_nodes=64):
    """The course graph's random initial weights at graph seed `seed`: name -> array (14)."""
    with CourseGraph(batch_size=batch_size, num_unrollings=num_unrollings,
                     num_nodes=num_nodes, seed=seed) as graph:
        return graph.weights()


def write_initial_weights(path, seed=0, num_nodes=64):
    """Writes `initial_weights(seed)` to `path` (.npz, the course's names): --init_from's file."""
    np.savez(path, **initial_weights(seed, num_nodes=num_nodes))


def _weight_shapes(vocabulary_size, num_nodes):
    """Name -> shape of the 14 trainable variables."""
    shapes = {}
    for gate in "ifco":
        shapes[gate + "x"] = (vocabulary_size, num_nodes)
        shapes[gate + "m"] = (num_nodes, num_nodes)
        shapes[gate + "b"] = (1, num_nodes)
    shapes["w"] = (num_nodes, vocabulary_size)
    shapes["b"] = (vocabulary_size,)
    return shapes


def _checked_weights(initial_weights, shapes):
    """`initial_weights` as float32 arrays, or a one-line ValueError naming what is wrong."""
    missing = sorted(set(shapes) - set(initial_weights))
    unknown = sorted(set(initial_weights) - set(shapes))
    if missing or unknown:
        raise ValueError("initial_weights needs exactly the names %s; missing %s, unknown %s"
                         % (list(WEIGHT_NAMES), missing, unknown))
    checked = {}
    for name, shape in shapes.items():
        value = np.asarray(initial_weights[name], dtype=np.float32)
        if value.shape != shape:
            raise ValueError("initial_weights[%r] has shape %s; expected %s"
                             % (name, value.shape, shape))
        checked[name] = value
    return checked


# --- The session (the notebook's training cell) ---

def run_course(text, num_steps=7001, summary_frequency=100, valid_size=1000, batch_size=64,
               num_unrollings=10, num_nodes=64, seed=None, print_fn=print, initial_weights=None,
               use_resource=True, arithmetic_optimization=False):
    """Runs the notebook from the data split to the end of training, printing its log.

    Mirrors the cells that split text8 (first `valid_size` characters for validation), build the
    batch generators (and print their first two calls), build the graph, and train: every
    `summary_frequency` steps the average loss, learning rate and minibatch perplexity, every
    `10 * summary_frequency` steps five 80-character samples, then the validation perplexity
    measured one character per `session.run`. `seed` seeds Python's `random`, NumPy and the graph.

    Returns a dict: `validation_perplexity` (the last one), `log` (one record per summary:
    step, average_loss, learning_rate, minibatch_perplexity, validation_perplexity), `samples`
    (step -> five strings), and wall-clock seconds: `train_seconds` (train_step calls),
    `batch_seconds` (training batches), `validation_seconds` (validation runs and their batches),
    `sampling_seconds`, `graph_seconds` (building the graph and initialising it), `total_seconds`.
    """
    start = time.perf_counter()
    if seed is not None:
        random.seed(seed)
        np.random.seed(seed)

    valid_text = text[:valid_size]
    train_text = text[valid_size:]
    train_batches = BatchGenerator(train_text, batch_size, num_unrollings)
    valid_batches = BatchGenerator(valid_text, 1, 1)
    print_fn(str(batches2string(train_batches.next())))
    print_fn(str(batches2string(train_batches.next())))
    print_fn(str(batches2string(valid_batches.next())))
    print_fn(str(batches2string(valid_batches.next())))

    graph_start = time.perf_counter()
    graph = CourseGraph(batch_size=batch_size, num_unrollings=num_unrollings,
                        num_nodes=num_nodes, vocabulary_size=vocabulary_size,
                        initial_weights=initial_weights, seed=seed,
                        use_resource=use_resource,
                        arithmetic_optimization=arithmetic_optimization)
    seconds = {"graph": time.perf_counter() - graph_start,
               "train": 0.0, "batch": 0.0, "validation": 0.0, "sampling": 0.0}
    print_fn("Initialized")

    log = []
    samples = {}
    valid_perplexity = None
    mean_loss = 0
    with graph:
        for step in range(num_steps):
            tick = time.perf_counter()
            batches = train_batches.next()
            tock = time.perf_counter()
            loss, predictions, learning_rate = graph.train_step(batches)
            seconds["batch"] += tock - tick
            seconds["train"] += time.perf_counter() - tock
            mean_loss += loss
            if step % summary_frequency == 0:
                if step > 0:
                    mean_loss = mean_loss / summary_frequency
                # The mean loss estimates the loss over the last summary_frequency batches.
                print_fn("Average loss at step %d: %f learning rate: %f"
                         % (step, mean_loss, learning_rate))
                labels = np.concatenate(list(batches)[1:])
                minibatch_perplexity = float(np.exp(logprob(predictions, labels)))
                print_fn("Minibatch perplexity: %.2f" % minibatch_perplexity)
                if step % (summary_frequency * 10) == 0:
                    # Generate some samples.
                    tick = time.perf_counter()
                    print_fn("=" * 80)
                    samples[step] = []
                    for _ in range(5):
                        feed = sample(random_distribution())
                        sentence = characters(feed)[0]
                        graph.reset_sample_state()
                        for _ in range(79):
                            prediction = graph.sample_prediction(feed)
                            feed = sample(prediction)
                            sentence += characters(feed)[0]
                        print_fn(sentence)
                        samples[step].append(sentence)
                    print_fn("=" * 80)
                    seconds["sampling"] += time.perf_counter() - tick
                # Measure validation set perplexity.
                tick = time.perf_counter()
                graph.reset_sample_state()
                valid_logprob = 0
                for _ in range(valid_size):
                    b = valid_batches.next()
                    predictions = graph.sample_prediction(b[0])
                    valid_logprob = valid_logprob + logprob(predictions, b[1])
                valid_perplexity = float(np.exp(valid_logprob / valid_size))
                print_fn("Validation set perplexity: %.2f" % valid_perplexity)
                seconds["validation"] += time.perf_counter() - tick
                log.append({"step": step, "average_loss": float(mean_loss),
                            "learning_rate": float(learning_rate),
                            "minibatch_perplexity": minibatch_perplexity,
                            "validation_perplexity": valid_perplexity})
                mean_loss = 0

    result = {"validation_perplexity": valid_perplexity, "log": log, "samples": samples}
    result.update({name + "_seconds": value for name, value in seconds.items()})
    result["total_seconds"] = time.perf_counter() - start
    return result


# --- The command line: the course's run, or its initial weights for --init_from ---

def read_data(filename):
    """The course's `read_data`: the first file of a zip as a string; a plain file as is."""
    import zipfile
    if zipfile.is_zipfile(filename):
        with zipfile.ZipFile(filename) as f:
            return tf.compat.as_str(f.read(f.namelist()[0]))
    with open(filename, encoding="utf-8") as f:
        return f.read()


def main(argv=None):
    """`python -m assignment6.course_tf1 --write_init=W.npz --seed=0`, or a run:
    `python -m assignment6.course_tf1 --data=text8.zip --init_from=W.npz --reference_variables`.
    """
    import argparse
    import sys
    parser = argparse.ArgumentParser(prog="python -m assignment6.course_tf1",
                                     description=main.__doc__)
    parser.add_argument("--write_init", help="write the graph's initial weights (.npz) and stop")
    parser.add_argument("--seed", type=int, default=0, help="graph, Python and NumPy seed")
    parser.add_argument("--data", help="text8.zip or a plain text file to train on")
    parser.add_argument("--init_from", help="initial weights (.npz by the course's names)")
    parser.add_argument("--num_steps", type=int, default=7001)
    parser.add_argument("--num_nodes", type=int, default=64)
    parser.add_argument("--reference_variables", action="store_true",
                        help="TF1's reference variables (the course's run); else resource ones")
    parser.add_argument("--tf_default_variables", action="store_true",
                        help="TensorFlow's default variables (after --disable_v2_behavior: "
                             "reference variables)")
    parser.add_argument("--disable_v2_behavior", action="store_true",
                        help="tf.compat.v1.disable_v2_behavior() first, as one runs the "
                             "course's notebook today")
    args = parser.parse_args(argv)
    if args.disable_v2_behavior:
        tf.compat.v1.disable_v2_behavior()
    if args.write_init:
        write_initial_weights(args.write_init, args.seed, args.num_nodes)
        return
    if not args.data:
        parser.error("--data is needed to train (or give --write_init)")
    weights = None
    if args.init_from:
        with np.load(args.init_from) as f:
            weights = {name: f[name] for name in f.files}
    use_resource = None if args.tf_default_variables else not args.reference_variables
    run_course(read_data(args.data), num_steps=args.num_steps, num_nodes=args.num_nodes,
               seed=args.seed, initial_weights=weights, use_resource=use_resource,
               print_fn=lambda line: print(line, flush=True))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
