"""Character vocabularies: text <-> integer ids, saved inside every checkpoint."""
from __future__ import annotations

import numpy as np

_CHUNK_CHARS = 8 << 20  # encode non-ASCII text in slices of 8M characters to bound temporaries


def _ascii_counts(text: str) -> np.ndarray:
    """How often each of the 128 ASCII codes occurs in text, counted in slices to bound memory."""
    raw = np.frombuffer(text.encode("ascii"), np.uint8)  # (N,)
    counts = np.zeros(128, dtype=np.int64)
    for start in range(0, len(raw), _CHUNK_CHARS):
        counts += np.bincount(raw[start:start + _CHUNK_CHARS], minlength=128)
    return counts


def _describe(chars: list[str], limit: int = 10) -> str:
    shown = ", ".join(repr(c) for c in chars[:limit])
    more = f" and {len(chars) - limit} more" if len(chars) > limit else ""
    return shown + more


class Vocab:
    """An ordered set of symbols; id i stands for symbols[i].

    Built from text, symbols are the distinct characters sorted by code point, so text8 gives
    ' ' = 0, 'a' = 1, ..., 'z' = 26, the assignment's ids.
    """

    def __init__(self, symbols: list[str] | tuple[str, ...]):
        symbols = tuple(symbols)
        if not symbols:
            raise ValueError("a vocabulary needs at least one symbol, got none")
        if any(not isinstance(s, str) or len(s) != 1 for s in symbols):
            raise ValueError("vocabulary symbols must be single characters")
        if len(set(symbols)) != len(symbols):
            raise ValueError("vocabulary symbols must be distinct")
        self.symbols = symbols
        self._index = {s: i for i, s in enumerate(symbols)}
        self._dtype = np.uint8 if len(symbols) <= 255 else np.int32

    @classmethod
    def from_text(cls, text: str) -> "Vocab":
        if not text:
            raise ValueError("cannot build a vocabulary from empty text")
        if text.isascii():
            return cls([chr(b) for b in np.flatnonzero(_ascii_counts(text))])
        return cls(sorted(set(text)))

    def __len__(self) -> int:
        return len(self.symbols)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and other.symbols == self.symbols

    def __repr__(self) -> str:
        return f"Vocab({len(self)} symbols: {''.join(self.symbols)!r})"

    def unknown(self, text: str) -> list[str]:
        """The characters of `text` that are not in the vocabulary, sorted."""
        return sorted(set(text) - self._index.keys())

    def encode(self, text: str, *, what: str = "text") -> np.ndarray:
        """text (N chars) -> ids (N,), uint8 for up to 255 symbols else int32.

        Raises ValueError naming the characters outside the vocabulary (`what` says whose).
        """
        if text.isascii() and all(ord(s) < 128 for s in self.symbols):
            table = np.full(128, 255 if self._dtype == np.uint8 else -1, dtype=self._dtype)
            for i, s in enumerate(self.symbols):
                table[ord(s)] = i
            missing = [chr(b) for b in np.flatnonzero(_ascii_counts(text)) if chr(b) not in self._index]
            if missing:
                raise ValueError(f"{what} has characters outside the vocabulary: {_describe(missing)}")
            return table[np.frombuffer(text.encode("ascii"), np.uint8)]  # (N,)
        missing = self.unknown(text)
        if missing:
            raise ValueError(f"{what} has characters outside the vocabulary: {_describe(missing)}")
        codes = np.array([ord(s) for s in self.symbols], dtype=np.uint32)
        order = np.argsort(codes)
        ids = np.empty(len(text), dtype=self._dtype)
        for start in range(0, len(text), _CHUNK_CHARS):
            chunk = np.frombuffer(text[start:start + _CHUNK_CHARS].encode("utf-32-le"), np.uint32)
            ids[start:start + len(chunk)] = order[np.searchsorted(codes[order], chunk)]
        return ids

    def decode(self, ids) -> str:
        """ids (N,) -> text."""
        return "".join(self.symbols[int(i)] for i in np.asarray(ids).reshape(-1))

    def to_list(self) -> list[str]:
        return list(self.symbols)


class PairVocab:
    """Tokens for non-overlapping character pairs ("bigrams") over a character Vocab of V symbols.

    When V² <= max_pairs every pair is a token, id = first * V + second (text8: 27² = 729).
    Otherwise the tokens are the pairs the training text contains, plus one fallback token per first
    character standing for all of its unseen pairs. Policy for unseen pairs: a fallback token's
    probability is shared equally among the unseen pairs it stands for, so bits per character stay
    a proper measure, and sampling one emits a uniformly drawn unseen second character.
    """

    def __init__(self, chars: Vocab, pairs: list[str] | None = None):
        self.chars = chars
        V = len(chars)
        if pairs is None:  # every pair
            first, second = np.divmod(np.arange(V * V), V)
            self.first, self.second = first, second  # (n_tokens,) each; second -1 marks a fallback
            self.table = np.arange(V * V, dtype=np.int32).reshape(V, V)  # (V, V) -> token id
            self.unseen = np.zeros(V, dtype=np.int64)
        else:
            ids = [(chars._index[p[0]], chars._index[p[1]]) for p in pairs]
            if len(set(ids)) != len(ids):
                raise ValueError("pair vocabulary has duplicate pairs")
            seen = np.zeros((V, V), dtype=bool)
            for a, b in ids:
                seen[a, b] = True
            n_seen = len(ids)
            self.first = np.array([a for a, _ in ids] + list(range(V)), dtype=np.int64)
            self.second = np.array([b for _, b in ids] + [-1] * V, dtype=np.int64)
            self.table = (n_seen + np.arange(V, dtype=np.int32))[:, None].repeat(V, axis=1)  # fallbacks
            for token, (a, b) in enumerate(ids):
                self.table[a, b] = token
            self.unseen = (~seen).sum(axis=1)  # (V,) unseen second characters per first character
        self.pairs = pairs
        fallback = self.second < 0
        # nats to add when a fallback token is the target: it is shared by unseen[first] pairs
        self.fallback_nats = np.where(fallback, np.log(np.maximum(self.unseen[self.first], 1)), 0.0)

    @classmethod
    def from_ids(cls, chars: Vocab, ids: np.ndarray, max_pairs: int = 4096) -> "PairVocab":
        """All pairs if V² <= max_pairs, else the pairs that char ids (N,) contain."""
        V = len(chars)
        if V * V <= max_pairs:
            return cls(chars)
        counts = np.zeros(V * V, dtype=np.int64)
        even = ids[: len(ids) // 2 * 2].astype(np.int64)
        for start in range(0, len(even), 1 << 24):
            chunk = even[start:start + (1 << 24)]
            counts += np.bincount(chunk[0::2] * V + chunk[1::2], minlength=V * V)
        seen = np.flatnonzero(counts)
        return cls(chars, [chars.symbols[i // V] + chars.symbols[i % V] for i in seen])

    def __len__(self) -> int:
        return len(self.first)

    def encode(self, ids: np.ndarray) -> np.ndarray:
        """Character ids (N,) -> pair tokens (N // 2,); a trailing odd character is not included
        (callers score it explicitly, see evaluate.py)."""
        even = ids[: len(ids) // 2 * 2]
        tokens = self.table[even[0::2], even[1::2]]  # (N // 2,)
        return tokens.astype(np.int16 if len(self) < 32768 else np.int32)

    def starting_with(self, char_id: int) -> np.ndarray:
        """The tokens whose first character is char_id."""
        return np.flatnonzero(self.first == char_id)

    def to_list(self) -> list[str] | None:
        return None if self.pairs is None else list(self.pairs)
