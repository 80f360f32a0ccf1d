"""The language model: one-hot or embedding input -> LSTMP stack -> softmax head."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .nn import LSTM

State = tuple[Tensor, Tensor]  # h (num_layers, B, R), c (num_layers, B, H)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a LanguageModel (the vocabulary size comes from the data)."""

    input: str = "onehot"          # "onehot" (the assignment) or "embedding"
    embedding_size: int = 64       # used when input == "embedding"
    hidden_size: int = 64
    num_layers: int = 1
    proj_size: int = 0             # 0: no recurrent projection
    peepholes: bool = False
    dropout: float = 0.0           # Zaremba et al. 2014: on the non-recurrent connections only
    init: str = "torch"            # "torch": U(-1/sqrt(H), 1/sqrt(H)); "notebook": TF's N(-0.1, 0.1) truncated, zero biases

    def __post_init__(self):
        if self.input not in ("onehot", "embedding"):
            raise ValueError(f"input must be 'onehot' or 'embedding', got {self.input!r}")
        if self.init not in ("torch", "notebook"):
            raise ValueError(f"init must be 'torch' or 'notebook', got {self.init!r}")
        for name in ("embedding_size", "hidden_size", "num_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.proj_size, int) or not 0 <= self.proj_size < self.hidden_size:
            raise ValueError(f"proj_size must be in [0, hidden_size={self.hidden_size}), got {self.proj_size!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class LanguageModel(nn.Module):
    """Predicts the next symbol: ids (B, T) + state -> logits (B, T, V) + state."""

    def __init__(self, vocab_size: int, config: ModelConfig):
        super().__init__()
        self.vocab_size = vocab_size
        self.config = config
        if config.input == "embedding":
            self.embedding = nn.Embedding(vocab_size, config.embedding_size)
            input_size = config.embedding_size
        else:
            self.embedding = None
            input_size = vocab_size
        self.lstm = LSTM(input_size, config.hidden_size, config.num_layers, dropout=config.dropout,
                         proj_size=config.proj_size, peepholes=config.peepholes)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.proj_size or config.hidden_size, vocab_size)
        if config.init == "notebook":
            self._init_like_notebook()

    def _init_like_notebook(self) -> None:
        """The assignment's initialisation: tf.truncated_normal(shape, -0.1, 0.1), i.e. mean -0.1,
        standard deviation 0.1, cut at two deviations; biases and peepholes start at zero."""
        with torch.no_grad():
            for name, p in self.named_parameters():
                if "bias" in name or name.startswith("lstm.weight_c"):
                    p.zero_()
                else:
                    nn.init.trunc_normal_(p, mean=-0.1, std=0.1, a=-0.3, b=0.1)

    def initial_state(self, batch_size: int) -> State:
        cfg = self.config
        weight = self.head.weight
        h = weight.new_zeros(cfg.num_layers, batch_size, cfg.proj_size or cfg.hidden_size)
        c = weight.new_zeros(cfg.num_layers, batch_size, cfg.hidden_size)
        return h, c

    def forward(self, ids: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        x = ids.t()  # (T, B)
        if self.embedding is not None:
            x = self.embedding(x)  # (T, B, E)
        else:
            x = F.one_hot(x.long(), self.vocab_size).to(self.head.weight.dtype)  # (T, B, V)
        x = self.drop(x)
        out, state = self.lstm(x, state)  # (T, B, R)
        out = self.drop(out)
        logits = self.head(out.transpose(0, 1))  # (B, T, V)
        return logits, state


def detach_state(state: State | None) -> State | None:
    """Truncated BPTT: keep the state's values, cut its history. Called at the top of every chunk
    by training and evaluation alike."""
    if state is None:
        return None
    return state[0].detach(), state[1].detach()


def nats_per_token(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy in nats: logits (B, T, V), targets (B, T)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).long())
