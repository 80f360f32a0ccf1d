"""Tests for assignment6.course_tf1, the TF1-style yardstick, against hand computations and a
float64 NumPy LSTM with hand-written backpropagation through time."""
import os
import random
import re

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from assignment6 import course_tf1  # noqa: E402

BATCH_SIZE, NUM_UNROLLINGS, NUM_NODES = 4, 3, 8
VOCABULARY_SIZE = course_tf1.vocabulary_size


def made_up_text(num_words=120, seed=0):
    """A few hundred characters of 'the quick brown fox ...' words in a fixed random order."""
    words = "the quick brown fox jumps over the lazy dog".split()
    rng = random.Random(seed)
    return " ".join(rng.choice(words) for _ in range(num_words))


def random_weights(seed=0, num_nodes=NUM_NODES):
    """The 14 course variables, small random values (biases too, so they are exercised)."""
    rng = np.random.default_rng(seed)
    shapes = course_tf1._weight_shapes(VOCABULARY_SIZE, num_nodes)
    return {name: rng.normal(0.0, 0.3, size=shape).astype(np.float32)
            for name, shape in shapes.items()}


def one_hot_batches(text, batch_size=BATCH_SIZE, num_unrollings=NUM_UNROLLINGS):
    return course_tf1.BatchGenerator(text, batch_size, num_unrollings)


# --- A float64 NumPy reference: forward pass and backpropagation through time ---

def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def softmax(logits):
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def numpy_cell(p, i, output, state):
    """The course's cell in float64: its gates, the new state and the new output."""
    input_gate = sigmoid(i @ p["ix"] + output @ p["im"] + p["ib"])
    forget_gate = sigmoid(i @ p["fx"] + output @ p["fm"] + p["fb"])
    update = np.tanh(i @ p["cx"] + output @ p["cm"] + p["cb"])
    new_state = forget_gate * state + input_gate * update
    output_gate = sigmoid(i @ p["ox"] + output @ p["om"] + p["ob"])
    return (input_gate, forget_gate, update, output_gate, new_state,
            output_gate * np.tanh(new_state))


def numpy_step(weights, batches, output, state, aliased=False):
    """The course's training loss on `batches`, in float64, with its gradients.

    aliased: the gradient TF1's reference variables gave the course's graph: the first
    step's `o^T dz` and `d(state) * state` read the unroll's last output and state.
    Returns (loss, predictions, final output, final state, gradients by name).
    """
    p = {name: np.asarray(value, np.float64) for name, value in weights.items()}
    inputs = [np.asarray(x, np.float64) for x in batches[:-1]]
    labels = np.concatenate([np.asarray(x, np.float64) for x in batches[1:]])
    output, state = np.asarray(output, np.float64), np.asarray(state, np.float64)

    cache, outputs = [], []
    for i in inputs:
        input_gate, forget_gate, update, output_gate, new_state, new_output = numpy_cell(
            p, i, output, state)
        cache.append((i, output, state, input_gate, forget_gate, update, output_gate, new_state))
        output, state = new_output, new_state
        outputs.append(output)

    hidden = np.concatenate(outputs)  # (num_unrollings * B, num_nodes)
    predictions = softmax(hidden @ p["w"] + p["b"])
    rows = labels.shape[0]
    loss = -np.sum(labels * np.log(predictions)) / rows

    grads = {name: np.zeros_like(value) for name, value in p.items()}
    d_logits = (predictions - labels) / rows
    grads["w"] = hidden.T @ d_logits
    grads["b"] = d_logits.sum(axis=0)
    d_hidden = np.split(d_logits @ p["w"].T, len(inputs))
    d_output_next = np.zeros_like(output)
    d_state_next = np.zeros_like(state)
    for t in reversed(range(len(inputs))):
        i, o_prev, c_prev, ig, fg, u, og, c = cache[t]
        if aliased and t == 0:
            o_prev, c_prev = output, state  # the buffers after the assigns
        d_output = d_hidden[t] + d_output_next
        tanh_c = np.tanh(c)
        d_state = d_state_next + d_output * og * (1.0 - tanh_c ** 2)
        pre_activation_grads = {
            "i": d_state * u * ig * (1.0 - ig),
            "f": d_state * c_prev * fg * (1.0 - fg),
            "c": d_state * ig * (1.0 - u ** 2),
            "o": d_output * tanh_c * og * (1.0 - og),
        }
        d_output_next = np.zeros_like(o_prev)
        for gate, dz in pre_activation_grads.items():
            grads[gate + "x"] += i.T @ dz
            grads[gate + "m"] += o_prev.T @ dz
            grads[gate + "b"] += dz.sum(axis=0, keepdims=True)
            d_output_next += dz @ p[gate + "m"].T
        d_state_next = d_state * fg
    return loss, predictions, output, state, grads


def numpy_sample_step(weights, feed, output, state):
    """One batch-1 step of the sampling cell in float64: (probabilities, output, state)."""
    p = {name: np.asarray(value, np.float64) for name, value in weights.items()}
    *_, state, output = numpy_cell(p, np.asarray(feed, np.float64), output, state)
    return softmax(output @ p["w"] + p["b"]), output, state


def course_graph(**kwargs):
    settings = dict(batch_size=BATCH_SIZE, num_unrollings=NUM_UNROLLINGS, num_nodes=NUM_NODES)
    settings.update(kwargs)
    return course_tf1.CourseGraph(**settings)


# --- Data helpers ---

def test_char2id_and_id2char(capsys):
    assert [course_tf1.char2id(c) for c in "az "] == [1, 26, 0]
    assert [course_tf1.id2char(i) for i in (1, 26, 0)] == ["a", "z", " "]
    assert course_tf1.char2id("ï") == 0
    assert capsys.readouterr().out == "Unexpected character: ï\n"
    assert "".join(course_tf1.id2char(course_tf1.char2id(c)) for c in "the fox") == "the fox"


def test_batch_generator_first_calls_carry_the_last_batch_and_wrap_around():
    # 10 characters, 2 rows: segment 5, cursors at 0 and 5; the constructor takes 'a' and 'f'.
    batches = course_tf1.BatchGenerator("abcdefghij", 2, 3)
    first = batches.next()
    assert len(first) == 4
    assert all(b.shape == (2, VOCABULARY_SIZE) and b.dtype == np.float32 for b in first)
    assert all(np.array_equal(b.sum(axis=1), [1.0, 1.0]) for b in first)
    assert course_tf1.batches2string(first) == ["abcd", "fghi"]
    second = batches.next()
    assert np.array_equal(second[0], first[-1])  # the last batch is carried over
    assert course_tf1.batches2string(second) == ["defg", "ijab"]  # row 1 wraps around
    assert course_tf1.batches2string(batches.next()) == ["ghij", "bcde"]


def test_batch_generator_on_words_with_uneven_segments():
    # 19 characters, 3 rows: segment 6, cursors at 0, 6 and 12.
    batches = course_tf1.BatchGenerator("the quick brown fox", 3, 2)
    assert course_tf1.batches2string(batches.next()) == ["the", "ick", "own"]
    assert course_tf1.batches2string(batches.next()) == ["e q", "k b", "n f"]
    valid = course_tf1.BatchGenerator("ab c", 1, 1)
    assert [course_tf1.batches2string(valid.next()) for _ in range(5)] == [
        ["ab"], ["b "], [" c"], ["ca"], ["ab"]]


def test_logprob_matches_a_hand_computation_and_leaves_its_input_alone():
    predictions = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    labels = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    kept = predictions.copy()
    expected = (-np.log(1e-10) - np.log(0.3)) / 2
    assert course_tf1.logprob(predictions, labels) == pytest.approx(expected, rel=1e-12)
    assert np.array_equal(predictions, kept)


def test_sampling_helpers():
    random.seed(0)
    assert course_tf1.sample_distribution([0.0, 1.0, 0.0]) == 1
    assert course_tf1.sample_distribution([0.0, 0.0, 0.0]) == 2  # never reached: the last
    np.random.seed(0)
    distribution = course_tf1.random_distribution()
    assert distribution.shape == (1, VOCABULARY_SIZE)
    assert distribution.sum() == pytest.approx(1.0)
    one_hot = course_tf1.sample(np.eye(VOCABULARY_SIZE)[[5]])
    assert one_hot.shape == (1, VOCABULARY_SIZE) and one_hot[0, 5] == 1.0 and one_hot.sum() == 1
    assert course_tf1.characters(one_hot) == ["e"]


# --- The graph against the NumPy reference ---

def test_train_step_matches_numpy_forward_and_gradient():
    weights = random_weights()
    batches = one_hot_batches(made_up_text()).next()
    loss, predictions, final_output, final_state, grads = numpy_step(
        weights, batches, np.zeros((BATCH_SIZE, NUM_NODES)), np.zeros((BATCH_SIZE, NUM_NODES)))
    with course_graph(initial_weights=weights, clip_norm=1e9) as graph:
        assert all(np.array_equal(graph.weights()[name], weights[name]) for name in weights)
        tf_loss, tf_predictions, learning_rate = graph.train_step(batches)
        assert tf_predictions.shape == (NUM_UNROLLINGS * BATCH_SIZE, VOCABULARY_SIZE)
        assert tf_loss == pytest.approx(loss, abs=1e-5)
        np.testing.assert_allclose(tf_predictions, predictions, atol=1e-5)
        assert learning_rate == pytest.approx(10.0)
        saved_output, saved_state = graph.saved_state_values()
        np.testing.assert_allclose(saved_output, final_output, atol=1e-5)
        np.testing.assert_allclose(saved_state, final_state, atol=1e-5)
        updated = graph.weights()
    assert set(updated) == set(course_tf1.WEIGHT_NAMES)
    for name in course_tf1.WEIGHT_NAMES:
        assert np.abs(grads[name]).max() > 0, name
        np.testing.assert_allclose(updated[name], weights[name] - 10.0 * grads[name],
                                   atol=1e-5, err_msg=name)


def test_reference_variables_give_the_first_step_the_last_output_and_state():
    """use_resource=False: TF1's variables, as the course ran. The update is the float64
    gradient with the aliased reads; resource variables give the gradient the code means."""
    weights = random_weights(seed=3)
    generator = one_hot_batches(made_up_text())
    first, second = generator.next(), generator.next()
    zeros = np.zeros((BATCH_SIZE, NUM_NODES))
    updated = {}
    for use_resource in (True, False):
        with course_graph(initial_weights=weights, clip_norm=1e9,
                          use_resource=use_resource) as graph:
            for variable in list(graph._weights.values()) + [graph.tensors.saved_output,
                                                             graph.tensors.saved_state]:
                kind = type(variable).__name__
                assert kind == ("ResourceVariable" if use_resource else "RefVariable"), kind
            graph.train_step(first)  # from zeros: the aliased reads are the last values
            carried_output, carried_state = graph.saved_state_values()
            after_first = graph.weights()
            graph.train_step(second)  # from the carried state
            updated[use_resource] = graph.weights()
        for aliased in (False, True):
            *_, grads = numpy_step(weights, first, zeros, zeros, aliased=aliased)
            close = all(np.allclose(after_first[name], weights[name] - 10.0 * grads[name],
                                    atol=1e-5) for name in course_tf1.WEIGHT_NAMES)
            assert close == (aliased != use_resource), (use_resource, aliased)
        *_, grads = numpy_step(after_first, second, carried_output, carried_state,
                               aliased=not use_resource)
        for name in course_tf1.WEIGHT_NAMES:
            np.testing.assert_allclose(updated[use_resource][name],
                                       after_first[name] - 10.0 * grads[name], atol=1e-5,
                                       err_msg=name)


def test_the_session_has_its_own_config_without_the_arithmetic_optimizer():
    from tensorflow.core.protobuf import rewriter_config_pb2
    with course_graph(seed=0) as graph:
        rewrite = graph.session._config.graph_options.rewrite_options
        assert rewrite.arithmetic_optimization == rewriter_config_pb2.RewriterConfig.OFF
    with course_graph(seed=0, arithmetic_optimization=True) as graph:
        rewrite = graph.session._config.graph_options.rewrite_options
        assert rewrite.arithmetic_optimization == rewriter_config_pb2.RewriterConfig.DEFAULT


def test_write_init_writes_the_graphs_initial_weights(tmp_path):
    path = str(tmp_path / "W.npz")
    course_tf1.main(["--write_init", path, "--seed", "5", "--num_nodes", str(NUM_NODES)])
    with np.load(path) as f:
        written = {name: f[name] for name in f.files}
    assert sorted(written) == sorted(course_tf1.WEIGHT_NAMES)
    expected = course_tf1.initial_weights(5, num_nodes=NUM_NODES)
    for name in course_tf1.WEIGHT_NAMES:
        np.testing.assert_array_equal(written[name], expected[name], err_msg=name)
    assert not np.array_equal(written["ix"], course_tf1.initial_weights(6, num_nodes=NUM_NODES)["ix"])


def test_gradients_are_clipped_by_their_global_norm():
    weights = random_weights(seed=1)
    batches = one_hot_batches(made_up_text()).next()
    *_, grads = numpy_step(
        weights, batches, np.zeros((BATCH_SIZE, NUM_NODES)), np.zeros((BATCH_SIZE, NUM_NODES)))
    global_norm = np.sqrt(sum(np.sum(g ** 2) for g in grads.values()))
    clip_norm = 0.1 * global_norm
    with course_graph(initial_weights=weights, clip_norm=clip_norm) as graph:
        graph.train_step(batches)
        updated = graph.weights()
    for name in course_tf1.WEIGHT_NAMES:
        np.testing.assert_allclose(
            updated[name], weights[name] - 10.0 * grads[name] * clip_norm / global_norm,
            atol=1e-5, err_msg=name)


def test_learning_rate_decays_in_a_staircase():
    batches = one_hot_batches(made_up_text())
    with course_graph(decay_steps=3, seed=0) as graph:
        rates = [graph.train_step(batches.next())[2] for _ in range(5)]
    np.testing.assert_allclose(rates, [10.0, 10.0, 10.0, 1.0, 1.0], rtol=1e-6)


def test_saved_state_carries_across_train_steps():
    weights = random_weights(seed=2)
    generator = one_hot_batches(made_up_text())
    first, second = generator.next(), generator.next()
    zeros = np.zeros((BATCH_SIZE, NUM_NODES))
    with course_graph(initial_weights=weights) as graph:
        graph.train_step(first)
        after_first = graph.weights()
        carried_output, carried_state = graph.saved_state_values()
        _, _, first_output, first_state, _ = numpy_step(weights, first, zeros, zeros)
        np.testing.assert_allclose(carried_output, first_output, atol=1e-5)
        np.testing.assert_allclose(carried_state, first_state, atol=1e-5)
        second_loss = graph.train_step(second)[0]
    expected, *_ = numpy_step(after_first, second, carried_output, carried_state)
    from_zeros, *_ = numpy_step(after_first, second, zeros, zeros)
    assert second_loss == pytest.approx(expected, abs=1e-5)
    assert abs(expected - from_zeros) > 1e-4  # the carried state matters


def test_sample_prediction_carries_its_state_until_reset():
    weights = random_weights(seed=3)
    feed = np.eye(VOCABULARY_SIZE, dtype=np.float32)[[20]]  # one-hot "t"
    with course_graph(initial_weights=weights) as graph:
        first = graph.sample_prediction(feed)
        second = graph.sample_prediction(feed)
        graph.reset_sample_state()
        after_reset = graph.sample_prediction(feed)
    zeros = np.zeros((1, NUM_NODES))
    expected_first, output, state = numpy_sample_step(weights, feed, zeros, zeros)
    expected_second, *_ = numpy_sample_step(weights, feed, output, state)
    assert first.shape == (1, VOCABULARY_SIZE)
    np.testing.assert_allclose(first, expected_first, atol=1e-6)
    np.testing.assert_allclose(second, expected_second, atol=1e-6)
    assert np.abs(first - second).max() > 1e-4
    np.testing.assert_allclose(after_reset, first, atol=1e-7)


def test_initial_weights_are_checked():
    weights = random_weights()
    del weights["w"]
    with pytest.raises(ValueError, match="missing \\['w'\\]"):
        course_graph(initial_weights=weights)
    weights = random_weights()
    weights["ix"] = weights["ix"].T
    with pytest.raises(ValueError, match="initial_weights\\['ix'\\] has shape"):
        course_graph(initial_weights=weights)


def test_seed_fixes_the_random_initialisation():
    with course_graph(seed=7) as one, course_graph(seed=7) as two:
        first, second = one.weights(), two.weights()
    for name in course_tf1.WEIGHT_NAMES:
        np.testing.assert_array_equal(first[name], second[name])
    assert first["ix"].mean() < -0.05  # truncated_normal(shape, -0.1, 0.1): mean -0.1
    assert not first["ib"].any() and not first["b"].any()


# --- The whole notebook session ---

LOG_LINE = re.compile(
    r"Average loss at step (\d+): \d+\.\d{6} learning rate: \d+\.\d{6}$|"
    r"Minibatch perplexity: \d+\.\d{2}$|"
    r"Validation set perplexity: \d+\.\d{2}$|"
    r"={80}$|"
    r"[a-z ]{80}$|"
    r"Initialized$|"
    r"\[('[a-z ]*'(, )?)+\]$")


def run_tiny_course(seed):
    lines = []
    result = course_tf1.run_course(
        made_up_text(), num_steps=21, summary_frequency=10, valid_size=50,
        batch_size=BATCH_SIZE, num_unrollings=NUM_UNROLLINGS, num_nodes=NUM_NODES,
        seed=seed, print_fn=lines.append)
    return lines, result


def test_run_course_prints_the_course_log_and_is_reproducible():
    lines, result = run_tiny_course(seed=3)
    for line in lines:
        assert LOG_LINE.match(line), line
    steps = [int(m.group(1)) for m in map(LOG_LINE.match, lines) if m.group(1)]
    assert steps == [0, 10, 20]
    assert lines[4] == "Initialized"
    assert lines[0] == str(course_tf1.batches2string(
        course_tf1.BatchGenerator(made_up_text()[50:], BATCH_SIZE, NUM_UNROLLINGS).next()))
    assert sum(line == "=" * 80 for line in lines) == 2
    assert [len(v) for v in result["samples"].values()] == [5]
    assert [record["step"] for record in result["log"]] == [0, 10, 20]
    assert lines[-1] == "Validation set perplexity: %.2f" % result["validation_perplexity"]
    for name in ("train", "batch", "validation", "sampling", "graph", "total"):
        assert result[name + "_seconds"] >= 0.0

    again, _ = run_tiny_course(seed=3)
    assert again == lines
