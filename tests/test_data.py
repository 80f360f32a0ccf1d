import numpy as np
import pytest

from lstmlm.data import BatchStream, split_ids


def test_batches_follow_the_assignment_layout():
    ids = np.arange(100, dtype=np.int64) % 251  # position i holds id i
    stream = BatchStream(ids, batch_size=4, num_unrollings=5)
    first = stream.next_batch()
    second = stream.next_batch()
    assert first.shape == (4, 6)
    # cursors spread evenly: segment = 100 // 4 = 25
    assert first[:, 0].tolist() == [0, 25, 50, 75]
    assert first[1].tolist() == [25, 26, 27, 28, 29, 30]
    # the last column of one batch is the first of the next: the state carries over
    assert second[:, 0].tolist() == first[:, -1].tolist()
    assert second[0].tolist() == [5, 6, 7, 8, 9, 10]


def test_cursors_wrap_around_the_text():
    ids = np.arange(12, dtype=np.int64)
    stream = BatchStream(ids, batch_size=2, num_unrollings=5)
    stream.next_batch()
    batch = stream.next_batch()
    assert batch[1].tolist() == [11, 0, 1, 2, 3, 4]


def test_stream_position_round_trips():
    ids = np.arange(1000) % 7
    a = BatchStream(ids, 8, 10)
    for _ in range(3):
        a.next_batch()
    b = BatchStream(ids, 8, 10)
    b.load_state_dict(a.state_dict())
    assert a.next_batch().equal(b.next_batch())


def test_corpus_shorter_than_a_batch_is_a_clear_error():
    with pytest.raises(ValueError, match="fewer than batch_size"):
        BatchStream(np.zeros(50, dtype=np.uint8), batch_size=8, num_unrollings=10)


def test_splits():
    ids = np.arange(10_000)
    standard = split_ids(ids, "standard")
    assert [len(standard[k]) for k in ("train", "valid", "test")] == [9000, 500, 500]
    assert standard["valid"][0] == 9000 and standard["test"][-1] == 9999
    assignment = split_ids(ids, "assignment")
    assert assignment["valid"].tolist() == list(range(1000))
    assert assignment["train"][0] == 1000 and len(assignment["test"]) == 0
    with pytest.raises(ValueError, match="split must be one of"):
        split_ids(ids, "random")


def test_prepared_corpus_is_memory_mapped_and_follows_the_file(tmp_path):
    import time

    from lstmlm.data import load_ids
    path = tmp_path / "c.txt"
    path.write_text("hello world " * 100)
    vocab, first = load_ids(str(path))
    again_vocab, again = load_ids(str(path))
    assert isinstance(again, np.memmap) and again_vocab == vocab
    assert np.array_equal(first, again) and vocab.decode(again[:11]) == "hello world"
    time.sleep(0.01)
    path.write_text("goodbye moon " * 100)  # a changed file is prepared again
    vocab2, changed = load_ids(str(path))
    assert vocab2.decode(changed[:12]) == "goodbye moon"
    with pytest.raises(ValueError, match="outside the vocabulary"):
        load_ids(str(path), vocab=vocab)  # the old vocabulary cannot encode the new text
