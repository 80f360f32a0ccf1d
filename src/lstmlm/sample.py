"""Generating text from a trained model, one character at a time."""
from __future__ import annotations

from collections.abc import Iterator

import torch

from .model import LanguageModel
from .vocab import Vocab


def check_sampling(temperature: float, top_k: int, length: int) -> None:
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0 (0 means greedy), got {temperature}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0 (0 means no limit), got {top_k}")
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")


@torch.no_grad()
def sample_ids(model: LanguageModel, prime_ids: list[int], length: int, temperature: float = 1.0,
               top_k: int = 0, generator: torch.Generator | None = None) -> Iterator[int]:
    """Yield `length` ids continuing prime_ids (which must be non-empty), in bounded memory."""
    check_sampling(temperature, top_k, length)
    was_training = model.training
    model.eval()
    try:
        device = model.head.weight.device
        prime = torch.tensor([prime_ids], dtype=torch.long, device=device)  # (1, P)
        state = None
        if prime.shape[1] > 1:
            _, state = model(prime[:, :-1], state)
        current = prime[:, -1:]  # (1, 1)
        for _ in range(length):
            logits, state = model(current, state)
            logits = logits[0, -1].float()  # (V,)
            if temperature == 0:
                next_id = int(logits.argmax())
            else:
                logits = logits / temperature
                if 0 < top_k < logits.numel():
                    cutoff = torch.topk(logits, top_k).values[-1]
                    logits = logits.masked_fill(logits < cutoff, float("-inf"))
                probs = torch.softmax(logits, dim=0)
                next_id = int(torch.multinomial(probs.cpu(), 1, generator=generator))
            yield next_id
            current = torch.tensor([[next_id]], dtype=torch.long, device=device)
    finally:
        model.train(was_training)


def sample_text(model: LanguageModel, vocab: Vocab, prime: str = "", length: int = 200, temperature: float = 1.0,
                top_k: int = 0, seed: int = 0) -> Iterator[str]:
    """Yield `length` characters continuing `prime`; the same seed gives the same text.

    An empty prime starts from a symbol drawn uniformly at random, as the assignment does; that
    symbol is the first of the `length` yielded.
    """
    check_sampling(temperature, top_k, length)
    unknown = vocab.unknown(prime)
    if unknown:
        raise ValueError(f"--prime has characters outside the model's vocabulary: "
                         f"{', '.join(repr(c) for c in unknown)}; the vocabulary is {''.join(vocab.symbols)!r}")
    generator = torch.Generator().manual_seed(seed)
    if prime:
        prime_ids = [int(i) for i in vocab.encode(prime)]
    elif length > 0:
        prime_ids = [int(torch.randint(len(vocab), (1,), generator=generator))]
        yield vocab.symbols[prime_ids[0]]
        length -= 1
    else:
        return
    for next_id in sample_ids(model, prime_ids, length, temperature, top_k, generator):
        yield vocab.symbols[next_id]
