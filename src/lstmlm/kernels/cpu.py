"""The compiled CPU fast path for one LSTMP layer, and its autograd Function.

`lstmp_layer_cpu` takes the arguments of `lstmlm.nn.lstm.lstmp_layer_reference` (its twin) and
returns the same (output (T, B, R), h_n (B, R), c_n (B, H)). Forward and backward are C++ loops over
time (`lstmp_cpu.cpp`), compiled on first use with torch.utils.cpp_extension and cached in
torch's extension directory (`$TORCH_EXTENSIONS_DIR`, else `~/.cache/torch_extensions`), so
later processes load the built library in well under a second.
"""
from __future__ import annotations

import logging
import os
import shutil
import threading
from pathlib import Path

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

log = logging.getLogger(__name__)

_SOURCE = Path(__file__).with_name("lstmp_cpu.cpp")
_FLAGS = ["-O3", "-fopenmp", "-ffast-math", "-mavx2", "-mfma"]
_lock = threading.Lock()
_state: dict[str, object] = {}  # "ops" once built, or "error" (str) once failed


def _flags() -> list[str]:
    """-O3 with vector exp (libmvec needs -ffast-math); AVX2/FMA only where the CPU has them."""
    flags = list(_FLAGS)
    if not _cpu_has("avx2") or not _cpu_has("fma"):
        flags = [f for f in flags if f not in ("-mavx2", "-mfma")]
    return flags


def _cpu_has(flag: str) -> bool:
    try:
        return flag in Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False


def load() -> object:
    """Build (once per machine, cached) and load the extension; returns torch.ops.lstmlm_cpu.

    Raises RuntimeError saying what failed (no compiler, no ninja) when it cannot be built."""
    with _lock:
        if "ops" in _state:
            return _state["ops"]
        if "error" in _state:
            raise RuntimeError(_state["error"])
        try:
            from torch.utils import cpp_extension

            _put_ninja_on_path()
            log.info("loading the LSTMP CPU kernel (built once, about 15 s on 2 cores, then cached)")
            cpp_extension.load(name="lstmlm_cpu", sources=[str(_SOURCE)], extra_cflags=_flags(),
                               extra_ldflags=["-fopenmp"], is_python_module=False,
                               verbose=bool(os.environ.get("LSTMLM_VERBOSE_BUILD")))
            _state["ops"] = torch.ops.lstmlm_cpu
        except Exception as error:  # noqa: BLE001 - any build failure means "not available"
            _state["error"] = (f"the LSTMP CPU kernel could not be built ({type(error).__name__}: {error}); "
                               "it needs a C++ compiler (g++) and ninja (pip install ninja)")
            raise RuntimeError(_state["error"]) from error
        return _state["ops"]


def _put_ninja_on_path() -> None:
    """torch runs `ninja` from PATH; the pip package's binary is not there unless the venv is activated."""
    if shutil.which("ninja") is None:
        try:
            import ninja  # the PyPI package, a dependency of lstmlm
        except ImportError:
            return
        os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")


def available() -> bool:
    """True when the extension is built or can be built here (builds it on first call)."""
    try:
        load()
        return True
    except RuntimeError:
        return False


def unavailable_reason() -> str:
    """Why the extension cannot be used here ("" when it can)."""
    return "" if available() else str(_state["error"])


class LSTMPFunction(torch.autograd.Function):
    """Autograd for the compiled layer. Saves the activated gates (T, B, 4H) and the cells (T, B, H)
    besides its inputs and output; backward is one C++ pass backwards through time."""

    @staticmethod
    def forward(ctx, x, h0, c0, weight_ih, weight_hh, bias, w_ci, w_cf, w_co, weight_hr):
        ops = load()
        out, h_n, c_n, gates, cells = ops.forward(x, h0, c0, weight_ih, weight_hh, bias, w_ci, w_cf, w_co, weight_hr)
        ctx.has_bias = bias is not None
        ctx.save_for_backward(x, h0, c0, weight_ih, weight_hh, w_ci, w_cf, w_co, weight_hr, out, gates, cells)
        ctx.mark_non_differentiable(gates, cells)
        return out, h_n, c_n

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_h_n, d_c_n):
        x, h0, c0, weight_ih, weight_hh, w_ci, w_cf, w_co, weight_hr, out, gates, cells = ctx.saved_tensors
        d_out = torch.zeros_like(out) if d_out is None else d_out
        d_h_n = torch.zeros_like(h0) if d_h_n is None else d_h_n
        d_c_n = torch.zeros_like(c0) if d_c_n is None else d_c_n
        grads = load().backward(d_out, d_h_n, d_c_n, x, h0, c0, weight_ih, weight_hh, w_ci, w_cf, w_co, weight_hr,
                                out, gates, cells, ctx.has_bias, ctx.needs_input_grad[0])
        return tuple(grads)


def lstmp_layer_cpu(
    x: Tensor,                    # (T, B, I)
    h0: Tensor,                   # (B, R)
    c0: Tensor,                   # (B, H)
    weight_ih: Tensor,            # (4H, I)
    weight_hh: Tensor,            # (4H, R)
    bias: Tensor | None,          # (4H,)
    peepholes: tuple[Tensor, Tensor, Tensor] | None,  # w_ci, w_cf, w_co, each (H,)
    weight_hr: Tensor | None,     # (R, H)
) -> tuple[Tensor, Tensor, Tensor]:
    """lstmp_layer_reference's twin on the compiled CPU kernel: output (T, B, R), h_n (B, R), c_n (B, H)."""
    w_ci, w_cf, w_co = peepholes if peepholes is not None else (None, None, None)
    if torch.is_autocast_enabled("cpu"):  # forced under a CPU autocast: the kernel computes in float32
        with torch.autocast("cpu", enabled=False):
            return LSTMPFunction.apply(x.float(), h0.float(), c0.float(), weight_ih, weight_hh, bias,
                                       w_ci, w_cf, w_co, weight_hr)
    out, h_n, c_n = LSTMPFunction.apply(x, h0, c0, weight_ih, weight_hh, bias, w_ci, w_cf, w_co, weight_hr)
    return out, h_n, c_n
