"""The dropout family, one regulariser per function (Zaremba et al. 2014; Gal & Ghahramani 2016;
Merity et al. 2017; Krueger et al. 2016). Each is the identity in evaluation mode.

    dropout(x)              Zaremba: a fresh mask for every element, on non-recurrent connections
    locked_dropout(x)       variational: one mask per sequence, the same at every time step
    embedding_dropout(w)    whole rows of the embedding matrix (every occurrence of a token)
    weight_drop(w_hh)       DropConnect on the recurrent weights, one mask per sequence (chunk)
    zoneout                 in nn/lstm.py's recurrence: units keep their previous value
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def check_probability(name: str, p: float) -> None:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {p}")


def dropout(x: Tensor, p: float, training: bool, locked: bool) -> Tensor:
    """x (T, B, F): Zaremba dropout, or with locked=True one (1, B, F) mask shared by every step."""
    if not training or p == 0:
        return x
    if not locked:
        return F.dropout(x, p, training=True)
    mask = x.new_empty(1, x.shape[1], x.shape[2]).bernoulli_(1 - p) / (1 - p)  # (1, B, F)
    return x * mask


def embedding_dropout(weight: Tensor, p: float, training: bool) -> Tensor:
    """weight (V, E) with whole rows zeroed with probability p, the rest scaled by 1 / (1 - p)."""
    if not training or p == 0:
        return weight
    mask = weight.new_empty(weight.shape[0], 1).bernoulli_(1 - p) / (1 - p)  # (V, 1)
    return weight * mask


def weight_drop(weight_hh: Tensor, p: float, training: bool) -> Tensor:
    """weight_hh (4H, R) with entries dropped (DropConnect); one mask for the whole sequence."""
    if not training or p == 0:
        return weight_hh
    return F.dropout(weight_hh, p, training=True)


__all__ = ["check_probability", "dropout", "embedding_dropout", "weight_drop"]
