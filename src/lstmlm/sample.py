"""Generating text from a trained model, one token at a time, in bounded memory."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from .model import LanguageModel
from .vocab import PairVocab, Vocab


def check_sampling(temperature: float, top_k: int, length: int) -> None:
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0 (0 means greedy), got {temperature}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0 (0 means no limit), got {top_k}")
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")


def _draw(logits: Tensor, temperature: float, top_k: int, generator: torch.Generator,
          allowed: np.ndarray | None = None) -> int:
    """One token id from logits (V,): greedy at temperature 0, else softmax(logits / T) over the
    top_k (0: all) tokens, restricted to `allowed` ids when given."""
    logits = logits.float().cpu()
    if allowed is not None:
        mask = torch.full_like(logits, float("-inf"))
        mask[torch.from_numpy(allowed)] = 0
        logits = logits + mask
    if temperature == 0:
        return int(logits.argmax())
    logits = logits / temperature
    if 0 < top_k < logits.numel():
        cutoff = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < cutoff, float("-inf"))
    return int(torch.multinomial(torch.softmax(logits, dim=0), 1, generator=generator))


def _step(model: LanguageModel, ids: list[int], state) -> tuple[Tensor, tuple]:
    """Run ids (one sequence) through the model; the last step's logits (V,) and the state."""
    device = model.head.weight.device
    logits, state = model(torch.tensor([ids], dtype=torch.long, device=device), state)
    return logits[0, -1], state


def _sample_chars(model: LanguageModel, vocab: Vocab, prime_ids: list[int], length: int, temperature: float,
                  top_k: int, generator: torch.Generator) -> Iterator[str]:
    context = model.config.context
    if not prime_ids:  # the assignment starts from a uniformly drawn character
        prime_ids = [int(torch.randint(len(vocab), (1,), generator=generator))]
        yield vocab.symbols[prime_ids[0]]
        length -= 1
    if len(prime_ids) < 1 + context:  # bigram input needs a previous character: a space if there is one
        pad = vocab.symbols.index(" ") if " " in vocab.symbols else prime_ids[0]
        prime_ids = [pad] * (1 + context - len(prime_ids)) + prime_ids
    logits, state = _step(model, prime_ids, None)
    window = prime_ids[len(prime_ids) - context:]  # the last `context` ids: the input's left context
    for _ in range(length):
        next_id = _draw(logits, temperature, top_k, generator)
        yield vocab.symbols[next_id]
        window = (window + [next_id])[-(1 + context):]  # (context + 1,)
        logits, state = _step(model, window, state)


def _sample_pairs(model: LanguageModel, pairs: PairVocab, prime_ids: list[int], length: int, temperature: float,
                  top_k: int, generator: torch.Generator) -> Iterator[str]:
    symbols = pairs.chars.symbols

    def second_char(token: int) -> int:
        second = int(pairs.second[token])
        if second >= 0:
            return second
        unseen = np.flatnonzero(pairs.table[pairs.first[token]] == token)  # a fallback: any unseen pair
        return int(unseen[torch.randint(len(unseen), (1,), generator=generator)])

    tokens = [int(t) for t in pairs.encode(np.array(prime_ids, dtype=np.int64))]
    odd = prime_ids[-1] if len(prime_ids) % 2 else None
    emitted = 0
    if not tokens:  # nothing to condition on: a uniformly drawn pair (starting with the prime's character)
        allowed = pairs.starting_with(odd) if odd is not None else np.arange(len(pairs))
        token = int(allowed[torch.randint(len(allowed), (1,), generator=generator)])
        chars = [second_char(token)] if odd is not None else [int(pairs.first[token]), second_char(token)]
        logits, state = _step(model, [token], None)
    else:
        logits, state = _step(model, tokens, None)
        chars = []
        if odd is not None:  # complete the half pair: a token that starts with the odd character
            token = _draw(logits, temperature, top_k, generator, allowed=pairs.starting_with(odd))
            chars = [second_char(token)]
            logits, state = _step(model, [token], state)
    while True:
        for char in chars:
            if emitted == length:
                return
            yield symbols[char]
            emitted += 1
        token = _draw(logits, temperature, top_k, generator)
        chars = [int(pairs.first[token]), second_char(token)]
        logits, state = _step(model, [token], state)


@torch.no_grad()
def sample_text(model: LanguageModel, vocab: Vocab, prime: str = "", length: int = 200, temperature: float = 1.0,
                top_k: int = 0, seed: int = 0, pairs: PairVocab | None = None) -> Iterator[str]:
    """Yield `length` characters continuing `prime`; the same seed gives the same text.

    An empty prime starts from a symbol (or pair) drawn uniformly at random, as the assignment
    does; it counts among the `length` yielded. Pair models accept primes of odd length: the next
    pair is drawn among those that begin with the prime's last character.
    """
    check_sampling(temperature, top_k, length)
    unknown = vocab.unknown(prime)
    if unknown:
        raise ValueError(f"--prime has characters outside the model's vocabulary: "
                         f"{', '.join(repr(c) for c in unknown)}; the vocabulary is {''.join(vocab.symbols)!r}")
    if length == 0:
        return
    generator = torch.Generator().manual_seed(seed)
    prime_ids = [int(i) for i in vocab.encode(prime)] if prime else []
    was_training = model.training
    model.eval()
    try:
        if pairs is None:
            yield from _sample_chars(model, vocab, prime_ids, length, temperature, top_k, generator)
        else:
            yield from _sample_pairs(model, pairs, prime_ids, length, temperature, top_k, generator)
    finally:
        model.train(was_training)
