import numpy as np
import pytest

from lstmlm.vocab import Vocab


def test_text8_ids_match_the_assignment():
    vocab = Vocab.from_text("the quick brown fox jumps over the lazy dog")
    assert vocab.symbols[0] == " " and vocab.symbols[1] == "a" and vocab.symbols[26] == "z"
    ids = vocab.encode("az b")
    assert ids.dtype == np.uint8
    assert ids.tolist() == [1, 26, 0, 2]
    assert vocab.decode(ids) == "az b"


def test_unicode_round_trip_and_compact_dtype():
    text = "naïve café — ünïcödé ✓\n" * 3
    vocab = Vocab.from_text(text)
    ids = vocab.encode(text)
    assert ids.dtype == np.uint8 and len(ids) == len(text)
    assert vocab.decode(ids) == text


def test_large_alphabet_uses_wider_ids():
    text = "".join(chr(0x4E00 + i) for i in range(300))
    vocab = Vocab.from_text(text)
    ids = vocab.encode(text)
    assert ids.dtype == np.int32 and ids.tolist() == list(range(300))


@pytest.mark.parametrize("text", ["abcXd", "abc\u00e9"])
def test_unknown_characters_are_named(text):
    vocab = Vocab.from_text("abcd")
    with pytest.raises(ValueError, match="outside the vocabulary") as info:
        vocab.encode(text, what="--prime")
    assert repr(text[3]) in str(info.value) and "--prime" in str(info.value)


def test_empty_text_has_no_vocabulary():
    with pytest.raises(ValueError, match="empty"):
        Vocab.from_text("")
