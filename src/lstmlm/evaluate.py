"""Bits per character over a whole split, the LSTM state carried along parallel streams.

Every kind of model is scored on the same characters: all but the first two of the split (the
first two are context, since a bigram model needs a whole pair before its first prediction).
Pair models' nats per pair count for two characters; a trailing odd character is scored by the
probability of all pairs that begin with it.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .data import to_tokens
from .model import LanguageModel, State, detach_state
from .vocab import PairVocab


def _stream_nats(model: LanguageModel, inputs: torch.Tensor, targets: torch.Tensor, state: State | None,
                 num_unrollings: int, extra_nats: torch.Tensor | None) -> tuple[float, State | None]:
    """Summed negative log-likelihood (nats) of targets (B, L) given inputs (B, L + context), chunk by
    chunk, and the final state."""
    context = model.config.context
    device = model.head.weight.device
    total = 0.0
    for start in range(0, targets.shape[1], num_unrollings):
        state = detach_state(state)
        stop = min(start + num_unrollings, targets.shape[1])
        logits, state = model(inputs[:, start:stop + context].long().to(device), state)  # (B, t, V)
        chunk = targets[:, start:stop].reshape(-1).long().to(device)
        total += torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), chunk, reduction="sum").item()
        if extra_nats is not None:
            total += extra_nats[chunk].sum().item()
    return total, state


@torch.no_grad()
def evaluate(model: LanguageModel, char_ids: np.ndarray, batch_size: int = 64, num_unrollings: int = 100,
             pairs: PairVocab | None = None) -> dict:
    """Bits per character of char_ids[2:] (all but two characters of the text).

    The n predictions are cut into B contiguous streams of L = n // B (each starting from a zero
    state); the remainder continues the last stream's state, so every character is scored once.
    Returns bits_per_char, nats_per_char, perplexity (per character) and chars (characters scored).
    """
    if len(char_ids) < 3:
        raise ValueError(f"need at least 3 characters to evaluate, got {len(char_ids)}")
    context = model.config.context
    # (N,) or (N // 2,), kept compact (1 byte per character): one chunk at a time becomes int64
    all_ids = torch.from_numpy(np.ascontiguousarray(to_tokens(char_ids, pairs)))
    if pairs is not None:
        inputs, targets, chars_per_target = all_ids[:-1], all_ids[1:], 2
        extra_nats = torch.from_numpy(pairs.fallback_nats).to(model.head.weight.device)  # unseen pairs' share
    else:  # char ids [1 - context:] predict char ids [2:]
        inputs, targets, chars_per_target, extra_nats = all_ids[1 - context:-1], all_ids[2:], 1, None
    was_training = model.training
    model.eval()
    try:
        n = len(targets)
        batch = max(1, min(batch_size, n))
        length = n // batch
        main = batch * length
        block_inputs = inputs[:main + context].unfold(0, length + context, length)  # (B, L + context), a view
        nats, state = _stream_nats(model, block_inputs, targets[:main].view(batch, length), None,
                                                num_unrollings, extra_nats)
        state = (state[0][:, -1:], state[1][:, -1:])  # the last stream goes on
        if main < n:
            tail_nats, state = _stream_nats(model, inputs[None, main:], targets[None, main:], state,
                                                         num_unrollings, extra_nats)
            nats += tail_nats
        chars = n * chars_per_target
        if pairs is not None and len(char_ids) % 2 == 1:  # the odd last character: P(a pair starts with it)
            last = targets[None, -1:].long().to(model.head.weight.device)  # (1, 1): the last pair
            logits, _ = model(last, state)  # (1, 1, V): what follows it
            log_probs = torch.log_softmax(logits[0, -1].float(), dim=0)
            nats -= torch.logsumexp(log_probs[pairs.starting_with(int(char_ids[-1]))], dim=0).item()
            chars += 1
    finally:
        model.train(was_training)
    nats_per_char = nats / chars
    return {"bits_per_char": nats_per_char / math.log(2), "nats_per_char": nats_per_char,
            "perplexity": math.exp(nats_per_char), "chars": chars}
