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

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch

from .corpora import BIBLE_SPECS, BIBLE_VERSION, cache_dir, load_corpus
from .vocab import PairVocab, Vocab

logger = logging.getLogger(__name__)

SPLITS = ("assignment", "standard")
PREPARED_FORMAT = 1  # bump when the prepared-corpus files change meaning
ASSIGNMENT_VALID_CHARS = 1000


def load_ids(corpus: str, alphabet: str = "raw", vocab: Vocab | None = None,
             prepared: bool = True) -> tuple[Vocab, np.ndarray]:
    """Read a corpus and encode it: returns the vocabulary (built from the text unless given) and
    ids (N,), a compact integer array (1 byte per character for up to 255 symbols).

    With prepared=True the encoded corpus is kept in cache_dir()/prepared as a .npy file beside its
    vocabulary, keyed by the file's path, size and modification time and the alphabet; later runs,
    and every rank of a distributed run, memory-map it (copy-on-write) instead of decoding again,
    sharing one copy in the page cache.
    """
    key = _prepared_key(corpus, alphabet) if prepared else None
    folder = cache_dir() / "prepared"
    if key is not None and (folder / f"{key}.npy").exists() and (folder / f"{key}.json").exists():
        cached = Vocab(json.loads((folder / f"{key}.json").read_text())["vocab"])
        if vocab is None or vocab == cached:
            return cached, np.load(folder / f"{key}.npy", mmap_mode="c")
    text = load_corpus(corpus, alphabet=alphabet)
    built = Vocab.from_text(text)
    ids = built.encode(text, what=f"corpus {corpus}")
    if key is not None:
        _save_prepared(folder, key, built, ids)
    if vocab is not None and vocab != built:
        ids = vocab.encode(text, what=f"corpus {corpus}")
    return vocab or built, ids


def _prepared_key(corpus: str, alphabet: str) -> str | None:
    """A name for the prepared form of a corpus file, or None when it can't be told apart (a directory)."""
    if corpus in BIBLE_SPECS:
        ident = f"bible {BIBLE_VERSION}"
    else:
        path = cache_dir() / "text8.zip" if corpus == "text8" else Path(corpus).expanduser()
        try:
            stat = path.stat()
        except OSError:
            return None  # load_corpus says what is wrong
        if not path.is_file():
            return None
        ident = f"{path.resolve()} {stat.st_size} {stat.st_mtime_ns}"
    return hashlib.sha256(f"{PREPARED_FORMAT} {ident} {alphabet}".encode()).hexdigest()[:24]


def _save_prepared(folder: Path, key: str, vocab: Vocab, ids: np.ndarray) -> None:
    """Write ids and vocabulary atomically; a cache that can't be written is only a warning."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{key}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            np.save(f, ids)
        os.replace(tmp, folder / f"{key}.npy")
        tmp.write_text(json.dumps({"vocab": vocab.to_list()}))
        os.replace(tmp, folder / f"{key}.json")
    except OSError as error:
        logger.warning("could not cache the prepared corpus in %s (%s); it will be decoded again next time",
                       folder, error)


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
