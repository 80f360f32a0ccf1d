"""Fast paths for one LSTMP layer, each the twin of lstmlm.nn.lstm.lstmp_layer_reference.

    kernel      where it runs                       what it is
    reference   anywhere                            plain PyTorch, autograd does backward
    cpu         CPU, float32 and float64            C++ loops over time, hand-written backward (cpu.py)

`fast_path(kernel, x)` is how lstmlm.nn.LSTM chooses: "auto" takes the fastest path that applies
to x's device and dtype (the compiled CPU kernel for float32 on the CPU), and None means "use the
reference". Naming a kernel forces it, and says why when it cannot run.
"""
from __future__ import annotations

import logging
from typing import Callable

import torch
from torch import Tensor

from . import cpu

log = logging.getLogger(__name__)

KERNELS = ("auto", "reference", "cpu")
_warned: set[str] = set()


def check_kernel(kernel: str) -> str:
    """Validate a kernel name at the boundary."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
    return kernel


def fast_path(kernel: str, x: Tensor) -> Callable | None:
    """The layer function for `kernel` on input x (T, B, I); None where the reference should run."""
    if kernel == "reference":
        return None
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
    return None


def _warn_once(key: str, message: str, *args) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning(message, *args)
