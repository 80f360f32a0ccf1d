"""Fast paths for one LSTMP layer, each the twin of lstmlm.nn.lstm.lstmp_layer_reference.

    kernel      where it runs                       what it is
    reference   anywhere                            plain PyTorch, autograd does backward
    cpu         CPU, float32 and float64            C++ loops over time, hand-written backward (cpu.py)
    triton      CUDA, float32 (autocast bf16/fp16)  Triton, one launch per step, any size (gpu.py)
    persistent  CUDA, float32 (autocast bf16/fp16)  Triton, one launch per sequence, weights on chip,
                                                    small H (gpu.PERSISTENT_MAX_WEIGHTS)
    cooperative CUDA, float32 (autocast bf16/fp16)  Triton, one launch per sequence, cells split over
                                                    the SMs, batch <= 64; experimental, never auto

`fast_path(kernel, x, ...)` is how lstmlm.nn.LSTM chooses: "auto" takes the fastest path that
applies to x's device, dtype and the layer's sizes (the compiled CPU kernel for float32 on the CPU;
on CUDA the persistent kernel where its weights fit, else the per-step one), and None means "use
the reference". Naming a kernel forces it, and says why when it cannot run. The Triton kernels also
run on CPU tensors in Triton's interpreter (TRITON_INTERPRET=1), slowly: that is how CI tests them.
"""
from __future__ import annotations

import logging
from typing import Callable

import torch
from torch import Tensor

from . import cpu, gpu

log = logging.getLogger(__name__)

KERNELS = ("auto", "reference", "cpu", "triton", "persistent", "cooperative")
_GPU_LAYERS = {"triton": gpu.lstmp_layer_triton, "persistent": gpu.lstmp_layer_persistent,
               "cooperative": gpu.lstmp_layer_cooperative}
_warned: set[str] = set()


def check_kernel(kernel: str) -> str:
    """Validate a kernel name at the boundary."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
    return kernel


def fast_path(kernel: str, x: Tensor, hidden_size: int = 0, real_hidden: int = 0,
              projection: bool = False) -> Callable | None:
    """The layer function for `kernel` on input x (T, B, I) of a layer with hidden_size cells and
    real_hidden outputs (proj_size or hidden_size); None where the reference should run."""
    if kernel == "reference":
        return None
    if kernel in _GPU_LAYERS:
        reason = gpu.unavailable_reason(x)
        if reason:
            raise ValueError(f"kernel {kernel!r} cannot run here: {reason}; use kernel='auto' or 'reference'")
        return _GPU_LAYERS[kernel]
    if kernel == "cpu":
        if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
            raise ValueError(f"kernel 'cpu' runs float32/float64 tensors on the CPU, got {x.dtype} on {x.device}; "
                             "use kernel='auto' or 'reference'")
        cpu.load()  # raises, saying what is missing, if it cannot be built
        return cpu.lstmp_layer_cpu
    # auto; under autocast (bf16/fp16) the reference recurrence runs, its products in low precision
    if x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_autocast_enabled("cpu"):
        if cpu.available():
            return cpu.lstmp_layer_cpu
        _warn_once("cpu", "using the reference LSTMP recurrence: %s", cpu.unavailable_reason())
    if x.device.type == "cuda":
        reason = gpu.unavailable_reason(x)
        if not reason:
            if hidden_size and gpu.persistent_fits(hidden_size, real_hidden, projection):
                return gpu.lstmp_layer_persistent
            return gpu.lstmp_layer_triton
        _warn_once("cuda", "using the reference LSTMP recurrence: %s", reason)
    return None


def check_device(kernel: str, device: torch.device | str) -> None:
    """Raise ValueError, saying why, where a named kernel cannot run float32 layers on device: a
    check before a run starts rather than at its first step."""
    fast_path(check_kernel(kernel), torch.zeros(1, 1, 1, device=device))


def _warn_once(key: str, message: str, *args) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning(message, *args)
