"""Bits per character over a whole split, the LSTM state carried along parallel streams."""
from __future__ import annotations

import math

import numpy as np
import torch

from .model import LanguageModel, State, detach_state


def _sum_nats(model: LanguageModel, inputs: torch.Tensor, targets: torch.Tensor, state: State | None,
              num_unrollings: int) -> tuple[float, State | None]:
    """Summed negative log-likelihood (nats) of targets (B, L) given inputs (B, L), chunk by chunk."""
    total = 0.0
    for start in range(0, inputs.shape[1], num_unrollings):
        state = detach_state(state)
        logits, state = model(inputs[:, start:start + num_unrollings], state)  # (B, t, V)
        chunk_targets = targets[:, start:start + num_unrollings].reshape(-1)
        total += torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), chunk_targets, reduction="sum").item()
    return total, state


@torch.no_grad()
def evaluate(model: LanguageModel, ids: np.ndarray, batch_size: int = 64, num_unrollings: int = 100) -> dict:
    """Predict every id of ids[1:] from the ones before it.

    The N-1 predictions are cut into B contiguous streams of L = (N-1) // B (each starting from a
    zero state); the remainder continues the last stream's state, so every character is scored once.
    Returns bits_per_char, nats_per_char, perplexity (per character) and chars (predictions made).
    """
    if len(ids) < 2:
        raise ValueError(f"need at least 2 characters to evaluate, got {len(ids)}")
    was_training = model.training
    model.eval()
    try:
        all_ids = torch.from_numpy(np.ascontiguousarray(ids)).long()  # (N,)
        inputs, targets = all_ids[:-1], all_ids[1:]
        n = len(inputs)
        batch = max(1, min(batch_size, n))
        length = n // batch
        main = batch * length
        nats, state = _sum_nats(model, inputs[:main].view(batch, length), targets[:main].view(batch, length),
                                None, num_unrollings)
        if main < n:
            last = (state[0][:, -1:], state[1][:, -1:])
            tail_nats, _ = _sum_nats(model, inputs[main:].view(1, -1), targets[main:].view(1, -1), last,
                                     num_unrollings)
            nats += tail_nats
    finally:
        model.train(was_training)
    nats_per_char = nats / n
    return {"bits_per_char": nats_per_char / math.log(2), "nats_per_char": nats_per_char,
            "perplexity": math.exp(nats_per_char), "chars": n}
