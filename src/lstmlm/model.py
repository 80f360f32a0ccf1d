"""The language model: one-hot, embedding or bigram-embedding input -> LSTMP stack -> softmax head.

    ids (B, T + context) --input--> (T, B, E) --dropout--> LSTM layer 1 --dropout--> ... --dropout--> head (B, T, V)

context is 1 for bigram input (each step sees the last two characters, so a chunk of T predictions
needs T + 1 input characters) and 0 otherwise. Tokens are characters, or non-overlapping character
pairs with tokens="bigram" (then V counts pair tokens).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import dropout as drop
from .nn import LSTM
from .nn.lstm import lstmp_layer_reference

State = tuple[Tensor, Tensor]  # h (num_layers, B, R), c (num_layers, B, H)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a LanguageModel (the vocabulary size comes from the data)."""

    tokens: str = "char"           # "char", or "bigram": non-overlapping character pairs
    input: str = "onehot"          # "onehot" (the assignment), "embedding", or "bigram": an embedding of the last two characters
    embedding_size: int = 64       # used when input is "embedding" or "bigram"
    hidden_size: int = 64
    num_layers: int = 1
    proj_size: int = 0             # 0: no recurrent projection
    peepholes: bool = False
    dropout: float = 0.0           # Zaremba et al. 2014: on the inputs of every layer and before the softmax
    locked_dropout: bool = False   # variational: the dropout mask is the same at every time step
    embedding_dropout: float = 0.0  # drop whole embedding rows (every occurrence of a token)
    weight_drop: float = 0.0       # DropConnect on weight_hh, one mask per chunk
    zoneout_cell: float = 0.0      # zoneout probabilities; > 0 runs the reference recurrence
    zoneout_hidden: float = 0.0
    init: str = "torch"            # "torch": U(-1/sqrt(H), 1/sqrt(H)); "notebook": TF's N(-0.1, 0.1) truncated, zero biases
    kernel: str = "auto"           # LSTM implementation (lstmlm.kernels.KERNELS); same results to rounding

    def __post_init__(self):
        if self.tokens not in ("char", "bigram"):
            raise ValueError(f"tokens must be 'char' or 'bigram', got {self.tokens!r}")
        if self.input not in ("onehot", "embedding", "bigram"):
            raise ValueError(f"input must be 'onehot', 'embedding' or 'bigram', got {self.input!r}")
        if self.input == "bigram" and self.tokens != "char":
            raise ValueError("--input bigram predicts characters; it needs --tokens char")
        if self.init not in ("torch", "notebook"):
            raise ValueError(f"init must be 'torch' or 'notebook', got {self.init!r}")
        for name in ("embedding_size", "hidden_size", "num_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.proj_size, int) or not 0 <= self.proj_size < self.hidden_size:
            raise ValueError(f"proj_size must be in [0, hidden_size={self.hidden_size}), got {self.proj_size!r}")
        for name in ("dropout", "embedding_dropout", "weight_drop", "zoneout_cell", "zoneout_hidden"):
            drop.check_probability(name, getattr(self, name))
        if self.embedding_dropout > 0 and self.input == "onehot":
            raise ValueError("embedding_dropout needs an embedding: use --input embedding or bigram")

    @property
    def context(self) -> int:
        """Input columns before the first prediction (1 for bigram input)."""
        return 1 if self.input == "bigram" else 0


class LanguageModel(nn.Module):
    """Predicts the next token: ids (B, T + context) + state -> logits (B, T, V) + state."""

    def __init__(self, vocab_size: int, config: ModelConfig):
        super().__init__()
        self.vocab_size = vocab_size
        self.config = config
        if config.input == "onehot":
            self.embedding = None
            input_size = vocab_size
        else:
            rows = vocab_size * vocab_size if config.input == "bigram" else vocab_size
            self.embedding = nn.Embedding(rows, config.embedding_size)
            input_size = config.embedding_size
        real_hidden = config.proj_size or config.hidden_size
        self.layers = nn.ModuleList(
            LSTM(input_size if k == 0 else real_hidden, config.hidden_size, proj_size=config.proj_size,
                 peepholes=config.peepholes, kernel=config.kernel) for k in range(config.num_layers))
        self.head = nn.Linear(real_hidden, vocab_size)
        if config.init == "notebook":
            self._init_like_notebook()

    def _init_like_notebook(self) -> None:
        """The assignment's initialisation: tf.truncated_normal(shape, -0.1, 0.1), i.e. mean -0.1,
        standard deviation 0.1, cut at two deviations; biases and peepholes start at zero."""
        with torch.no_grad():
            for name, p in self.named_parameters():
                if "bias" in name or ".weight_c" in name:
                    p.zero_()
                else:
                    nn.init.trunc_normal_(p, mean=-0.1, std=0.1, a=-0.3, b=0.1)

    def initial_state(self, batch_size: int) -> State:
        cfg = self.config
        weight = self.head.weight
        h = weight.new_zeros(cfg.num_layers, batch_size, cfg.proj_size or cfg.hidden_size)
        c = weight.new_zeros(cfg.num_layers, batch_size, cfg.hidden_size)
        return h, c

    def embed(self, ids: Tensor) -> Tensor:
        """ids (B, T + context) -> layer-1 input (T, B, E)."""
        cfg = self.config
        x = ids.t().long()  # (T + context, B)
        if self.embedding is None:
            return F.one_hot(x, self.vocab_size).to(self.head.weight.dtype)  # (T, B, V)
        if cfg.input == "bigram":
            x = x[:-1] * self.vocab_size + x[1:]  # (T, B): pair ids of (previous, current)
        weight = drop.embedding_dropout(self.embedding.weight, cfg.embedding_dropout, self.training)
        return F.embedding(x, weight)  # (T, B, E)

    def forward(self, ids: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        cfg = self.config
        if state is None:
            state = self.initial_state(ids.shape[0])
        x = self.embed(ids)  # (T, B, E)
        h_n, c_n = [], []
        for k, layer in enumerate(self.layers):
            x = drop.dropout(x, cfg.dropout, self.training, cfg.locked_dropout)
            x, (h, c) = self._run_layer(layer, x, state[0][k], state[1][k])  # (T, B, R)
            h_n.append(h)
            c_n.append(c)
        x = drop.dropout(x, cfg.dropout, self.training, cfg.locked_dropout)
        logits = self.head(x.transpose(0, 1))  # (B, T, V)
        return logits, (torch.stack(h_n), torch.stack(c_n))

    def _run_layer(self, layer: LSTM, x: Tensor, h0: Tensor, c0: Tensor) -> tuple[Tensor, State]:
        """One LSTM layer over x (T, B, I) from (h0 (B, R), c0 (B, H)), with weight-drop and zoneout.
        Returns output (T, B, R) and (h_n (B, R), c_n (B, H))."""
        cfg = self.config
        if cfg.zoneout_cell > 0 or cfg.zoneout_hidden > 0:  # zoneout lives in the reference recurrence
            w_ih, w_hh, bias, peepholes, w_hr = layer.layer_weights(0)
            w_hh = drop.weight_drop(w_hh, cfg.weight_drop, self.training)
            out, h, c = lstmp_layer_reference(x, h0, c0, w_ih, w_hh, bias, peepholes, w_hr,
                                              zoneout=(cfg.zoneout_cell, cfg.zoneout_hidden, self.training))
            return out, (h, c)
        if cfg.weight_drop > 0 and self.training:
            dropped = {"weight_hh_l0": drop.weight_drop(layer.weight_hh_l0, cfg.weight_drop, True)}
            out, (h, c) = torch.func.functional_call(layer, dropped, (x, (h0[None], c0[None])), strict=False)
        else:
            out, (h, c) = layer(x, (h0[None], c0[None]))
        return out, (h[0], c[0])


def detach_state(state: State | None) -> State | None:
    """Truncated BPTT: keep the state's values, cut its history. Called at the top of every chunk
    by training and evaluation alike."""
    if state is None:
        return None
    return state[0].detach(), state[1].detach()


def nats_per_token(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy in nats: logits (B, T, V), targets (B, T)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).long())
