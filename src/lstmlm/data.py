"""Text -> ids -> splits -> batch streams for truncated backpropagation through time.

How a text of N ids is cut into B streams (the assignment's BatchGenerator, vectorised):

    ids:     |s0 s0 s0 s0 s0 ...|s1 s1 s1 s1 ...|  ...  |sB-1 ...       |   segment = N // B
    cursor:   ^0                 ^segment               ^(B-1)*segment
    batch k: (B, T+1) ids at cursor + k*T + [0..T], wrapping at N; inputs [:, :T], targets [:, 1:]

The last column of batch k is the first column of batch k+1, so each stream's LSTM state carries
from one batch to the next. With context c (1 for bigram input) each window starts c ids earlier:
(B, T+1+c), inputs [:, :T+c], targets [:, 1+c:].

Tokens are characters, or non-overlapping pairs of them (PairVocab.encode) for bigram models.
"""
from __future__ import annotations

import numpy as np
import torch

from .corpora import load_corpus
from .vocab import PairVocab, Vocab

SPLITS = ("assignment", "standard")
ASSIGNMENT_VALID_CHARS = 1000


def load_ids(corpus: str, alphabet: str = "raw", vocab: Vocab | None = None) -> tuple[Vocab, np.ndarray]:
    """Read a corpus and encode it: returns the vocabulary (built from the text unless given) and
    ids (N,), a compact integer array (1 byte per character for up to 255 symbols)."""
    text = load_corpus(corpus, alphabet=alphabet)
    if vocab is None:
        vocab = Vocab.from_text(text)
    ids = vocab.encode(text, what=f"corpus {corpus}")
    return vocab, ids


def split_ids(ids: np.ndarray, split: str) -> dict[str, np.ndarray]:
    """Views of ids for 'train', 'valid' and 'test'.

    assignment: the first 1,000 characters validate, the rest train, no test split.
    standard:   90% / 5% / 5% in order (text8: 90M / 5M / 5M).
    """
    n = len(ids)
    if split == "assignment":
        if n <= ASSIGNMENT_VALID_CHARS:
            raise ValueError(f"the assignment split needs more than {ASSIGNMENT_VALID_CHARS} characters, "
                             f"the corpus has {n}")
        return {"train": ids[ASSIGNMENT_VALID_CHARS:], "valid": ids[:ASSIGNMENT_VALID_CHARS], "test": ids[:0]}
    if split == "standard":
        train_end, valid_end = n * 90 // 100, n * 95 // 100
        return {"train": ids[:train_end], "valid": ids[train_end:valid_end], "test": ids[valid_end:]}
    raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")


def to_tokens(char_ids: np.ndarray, pairs: PairVocab | None) -> np.ndarray:
    """The token sequence a model reads: the characters themselves, or their pairs (N // 2,)."""
    return char_ids if pairs is None else pairs.encode(char_ids)


class BatchStream:
    """B cursors spread evenly over ids; each call to next_batch() gives (B, T+1+context) int64 ids."""

    def __init__(self, ids: np.ndarray, batch_size: int, num_unrollings: int, context: int = 0):
        n = len(ids)
        if n < batch_size * (num_unrollings + 1 + context):
            raise ValueError(f"the training text has {n} tokens, fewer than batch_size × (num_unrollings + 1) "
                             f"= {batch_size} × {num_unrollings + 1 + context}; use a larger corpus or smaller "
                             f"--batch-size / --num-unrollings")
        self.ids = torch.from_numpy(np.ascontiguousarray(ids))  # (N,), shares memory
        self.num_unrollings = num_unrollings
        self.cursors = torch.arange(batch_size, dtype=torch.int64) * (n // batch_size)  # (B,)
        self._offsets = torch.arange(-context, num_unrollings + 1, dtype=torch.int64)  # (T+1+context,)

    def next_batch(self) -> torch.Tensor:
        positions = (self.cursors[:, None] + self._offsets) % len(self.ids)  # (B, T+1+context)
        self.cursors = (self.cursors + self.num_unrollings) % len(self.ids)
        return self.ids[positions].long()  # (B, T+1+context)

    def state_dict(self) -> dict:
        return {"cursors": self.cursors.clone()}

    def load_state_dict(self, state: dict) -> None:
        cursors = state["cursors"]
        if cursors.shape != self.cursors.shape:
            raise ValueError(f"saved data position has {cursors.shape[0]} streams, this run has {self.cursors.shape[0]}")
        self.cursors = cursors.clone().long()
