"""The LSTMP layer: a drop-in for torch.nn.LSTM with peephole connections and a recurrent projection.

Sak, Senior & Beaufays (2014). Per layer and time step, with r the (projected) recurrent output:

    i_t = σ(W_ii x_t + W_hi r_{t-1} + w_ci ⊙ c_{t-1} + b_i)
    f_t = σ(W_if x_t + W_hf r_{t-1} + w_cf ⊙ c_{t-1} + b_f)
    g_t = tanh(W_ig x_t + W_hg r_{t-1} + b_g)
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
    o_t = σ(W_io x_t + W_ho r_{t-1} + w_co ⊙ c_t + b_o)
    m_t = o_t ⊙ tanh(c_t)
    r_t = W_hr m_t            (r_t = m_t without projection)

Weights are stored exactly as torch.nn.LSTM stores them (gate order i, f, g, o stacked in rows);
the diagonal peephole weights are extra parameters `weight_c{i,f,o}_l{k}`, each (hidden_size,).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..kernels import check_kernel, fast_path

GATES = ("i", "f", "g", "o")  # row blocks of weight_ih / weight_hh / biases, as in torch.nn.LSTM
PEEPHOLES = ("ci", "cf", "co")


def lstmp_layer_reference(
    x: Tensor,                    # (T, B, I)
    h0: Tensor,                   # (B, R)   R = proj_size or hidden_size
    c0: Tensor,                   # (B, H)
    weight_ih: Tensor,            # (4H, I)
    weight_hh: Tensor,            # (4H, R)
    bias: Tensor | None,          # (4H,)    bias_ih + bias_hh
    peepholes: tuple[Tensor, Tensor, Tensor] | None,  # w_ci, w_cf, w_co, each (H,)
    weight_hr: Tensor | None,     # (R, H)
    zoneout: tuple[float, float, bool] | None = None,  # (p_cell, p_hidden, training)
) -> tuple[Tensor, Tensor, Tensor]:
    """One direction of one layer over a whole sequence, in plain PyTorch (autograd does backward).

    The input half of all four gates is one matrix product for the whole sequence, hoisted out of
    the time loop; each step adds one (B, R) x (R, 4H) product. Returns output (T, B, R),
    h_n (B, R), c_n (B, H).

    zoneout (Krueger et al. 2016): in training each unit of c (and of the recurrent output r)
    keeps its previous value with probability p, a fresh mask every step; in evaluation the
    expectation, p * previous + (1 - p) * new.
    """
    hidden = weight_hh.shape[0] // 4
    x_gates = F.linear(x, weight_ih, bias)  # (T, B, 4H)
    w_hh_t = weight_hh.t()  # (R, 4H)
    h, c = h0, c0
    outputs = []
    for t in range(x.shape[0]):
        gates = torch.addmm(x_gates[t], h, w_hh_t)  # (B, 4H)
        i, f, g, o = gates.split(hidden, dim=1)  # each (B, H)
        if peepholes is not None:
            w_ci, w_cf, w_co = peepholes
            i = i + w_ci * c
            f = f + w_cf * c
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)  # (B, H)
        c = c_new if zoneout is None else _zoneout(c, c_new, zoneout[0], zoneout[2])
        if peepholes is not None:
            o = o + w_co * c
        h_new = torch.sigmoid(o) * torch.tanh(c)  # m_t (B, H)
        if weight_hr is not None:
            h_new = h_new @ weight_hr.t()  # r_t (B, R)
        h = h_new if zoneout is None else _zoneout(h, h_new, zoneout[1], zoneout[2])
        outputs.append(h)
    return torch.stack(outputs), h, c


def _zoneout(previous: Tensor, new: Tensor, p: float, training: bool) -> Tensor:
    if p == 0:
        return new
    if not training:
        return p * previous + (1 - p) * new
    keep = torch.empty_like(new).bernoulli_(p)  # 1: keep the previous value
    return torch.lerp(new, previous, keep)


class LSTM(nn.Module):
    """torch.nn.LSTM's arguments, call and state_dict, plus `peepholes`.

    input (T, B, input_size), or (B, T, input_size) with batch_first, or unbatched (T, input_size);
    hx = (h_0 (D*num_layers, B, R), c_0 (D*num_layers, B, H)), zeros when omitted, where D is 2 if
    bidirectional else 1 and R is proj_size if > 0 else hidden_size.
    Returns output (T, B, D*R) and (h_n, c_n) shaped like hx.

    kernel: which implementation runs each layer: "auto" (default) the fastest that applies to the
    input's device, dtype and sizes (lstmlm.kernels), "reference" lstmp_layer_reference, "cpu" the
    compiled CPU kernel, "triton" / "persistent" the Triton kernels (CUDA). All give the same results
    to rounding; the attribute may be changed after construction.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        peepholes: bool = False,
        device=None,
        dtype=None,
        kernel: str = "auto",
    ):
        super().__init__()
        self.kernel = check_kernel(kernel)
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(proj_size, int) or proj_size < 0 or proj_size >= hidden_size:
            raise ValueError(f"proj_size must be an integer in [0, hidden_size={hidden_size}), got {proj_size!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        self.peepholes = peepholes
        factory = {"device": device, "dtype": dtype}
        real_hidden = proj_size if proj_size > 0 else hidden_size
        directions = 2 if bidirectional else 1
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else real_hidden * directions
            for suffix in self._suffixes():
                def add(name: str, *shape: int) -> None:
                    self.register_parameter(f"{name}_l{layer}{suffix}", nn.Parameter(torch.empty(*shape, **factory)))
                add("weight_ih", 4 * hidden_size, layer_input)
                add("weight_hh", 4 * hidden_size, real_hidden)
                if bias:
                    add("bias_ih", 4 * hidden_size)
                    add("bias_hh", 4 * hidden_size)
                if proj_size > 0:
                    add("weight_hr", proj_size, hidden_size)
                if peepholes:
                    for p in PEEPHOLES:
                        add(f"weight_{p}", hidden_size)
        self.reset_parameters()

    def _suffixes(self) -> tuple[str, ...]:
        return ("", "_reverse") if self.bidirectional else ("",)

    def reset_parameters(self) -> None:
        """Uniform(-1/sqrt(H), 1/sqrt(H)) for every parameter, as torch.nn.LSTM."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        for name, default in (("bias", True), ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False), ("proj_size", 0), ("peepholes", False),
                              ("kernel", "auto")):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)}"
        return s

    def layer_weights(self, layer: int, suffix: str = ""):
        """The arguments of lstmp_layer_reference for one layer and direction."""
        get = lambda name: getattr(self, f"{name}_l{layer}{suffix}")  # noqa: E731
        bias = get("bias_ih") + get("bias_hh") if self.bias else None
        peepholes = tuple(get(f"weight_{p}") for p in PEEPHOLES) if self.peepholes else None
        weight_hr = get("weight_hr") if self.proj_size > 0 else None
        return get("weight_ih"), get("weight_hh"), bias, peepholes, weight_hr

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None):
        if isinstance(input, nn.utils.rnn.PackedSequence):
            raise TypeError("lstmlm.nn.LSTM does not take PackedSequence; pad the batch and pass a tensor")
        if input.dim() not in (2, 3):
            raise ValueError(f"LSTM: expected input of 2 (unbatched) or 3 dimensions, got {input.dim()}")
        if input.shape[-1] != self.input_size:
            raise ValueError(f"LSTM: input.size(-1) must be input_size={self.input_size}, got {input.shape[-1]}")
        unbatched = input.dim() == 2
        x = input.unsqueeze(1) if unbatched else (input.transpose(0, 1) if self.batch_first else input)  # (T, B, I)
        batch = x.shape[1]
        real_hidden = self.proj_size if self.proj_size > 0 else self.hidden_size
        directions = 2 if self.bidirectional else 1
        if hx is None:
            h0 = x.new_zeros(self.num_layers * directions, batch, real_hidden)
            c0 = x.new_zeros(self.num_layers * directions, batch, self.hidden_size)
        else:
            h0, c0 = hx
            if unbatched:
                h0, c0 = h0.unsqueeze(1), c0.unsqueeze(1)
            want_h = (self.num_layers * directions, batch, real_hidden)
            want_c = (self.num_layers * directions, batch, self.hidden_size)
            if tuple(h0.shape) != want_h or tuple(c0.shape) != want_c:
                raise ValueError(f"LSTM: expected hx shapes {want_h} and {want_c}, "
                                 f"got {tuple(h0.shape)} and {tuple(c0.shape)}")
        run_layer = fast_path(self.kernel, x, self.hidden_size, real_hidden, self.proj_size > 0) \
            or lstmp_layer_reference
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            outputs = []
            for d, suffix in enumerate(self._suffixes()):
                k = layer * directions + d
                seq = x.flip(0) if suffix else x
                out, h, c = run_layer(seq, h0[k], c0[k], *self.layer_weights(layer, suffix))
                outputs.append(out.flip(0) if suffix else out)
                h_n.append(h)
                c_n.append(c)
            x = outputs[0] if directions == 1 else torch.cat(outputs, dim=2)  # (T, B, D*R)
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, training=True)
        h_n, c_n = torch.stack(h_n), torch.stack(c_n)
        if unbatched:
            return x.squeeze(1), (h_n.squeeze(1), c_n.squeeze(1))
        return (x.transpose(0, 1) if self.batch_first else x), (h_n, c_n)

    @classmethod
    def from_torch(cls, lstm: nn.LSTM, peepholes: bool = False) -> "LSTM":
        """An lstmlm LSTM with `lstm`'s configuration and weights (peepholes, if asked, start at zero)."""
        if not isinstance(lstm, nn.LSTM):
            raise TypeError(f"from_torch expects a torch.nn.LSTM, got {type(lstm).__name__}")
        ref = next(lstm.parameters())
        new = cls(lstm.input_size, lstm.hidden_size, lstm.num_layers, lstm.bias, lstm.batch_first,
                  lstm.dropout, lstm.bidirectional, lstm.proj_size, peepholes, device=ref.device, dtype=ref.dtype)
        with torch.no_grad():
            if peepholes:
                for name, p in new.named_parameters():
                    if name.startswith("weight_c"):
                        p.zero_()
        new.load_state_dict(lstm.state_dict(), strict=not peepholes)
        return new

    def to_torch(self) -> nn.LSTM:
        """A torch.nn.LSTM with the same weights; refuses when peephole weights are non-zero."""
        state = self.state_dict()
        peep = {k: v for k, v in state.items() if k.startswith("weight_c")}
        if any(bool(v.ne(0).any()) for v in peep.values()):
            raise ValueError("to_torch: torch.nn.LSTM has no peepholes and this layer's peephole weights are non-zero")
        ref = next(self.parameters())
        lstm = nn.LSTM(self.input_size, self.hidden_size, self.num_layers, self.bias, self.batch_first,
                       self.dropout, self.bidirectional, self.proj_size, device=ref.device, dtype=ref.dtype)
        lstm.load_state_dict({k: v for k, v in state.items() if k not in peep})
        return lstm
