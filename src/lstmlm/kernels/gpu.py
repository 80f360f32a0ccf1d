"""The Triton fast paths for one LSTMP layer (device code: lstmp_triton.py), and their autograd.

`lstmp_layer_triton`, `lstmp_layer_persistent` and `lstmp_layer_cooperative` take the arguments
of `lstmlm.nn.lstm.lstmp_layer_reference` (their twin) and return the same (output (T, B, R),
h_n (B, R), c_n (B, H)). The input product x W_ih^T + b for the whole sequence is an ordinary
PyTorch op (so autocast and autograd handle it, and W_ih's gradient is one large product); the
recurrence is `RecurrenceFunction`, whose forward and backward run one of three ways (`mode`):
"persistent", one launch for the whole sequence, each program some streams and all cells (small H);
"step", one launch per step with cuBLAS products between (any size); "cooperative", one launch for
the whole sequence whose programs split the cells and meet at a grid barrier twice a step (small
batch, any H; experimental: not yet run on a GPU, so `auto` never picks it).

They run on CUDA tensors, and on CPU tensors under the Triton interpreter (TRITON_INTERPRET=1, set
before the first kernel is used), which is how CI tests them. Precision of the recurrent products:
bf16 operands under a bf16/fp16 autocast, TF32 where torch allows it for CUDA matmuls, else full
fp32; the cell state, gates and accumulations stay fp32.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

# The persistent kernel keeps W_hh (4H x R) and W_hr (R x H) on chip, padded to powers of two. Its
# limits come from compiling it for sm_90 (benchmarks/triton_ptxas.py; not yet timed on a GPU): up to
# 5 x 64 x 64 weights (H64, or H128 with P32) its backward needs at most ~210 KB of shared memory
# (an H100 block may have 227 KB) and 16 warps hold the rest in registers without spilling.
PERSISTENT_MAX_WEIGHTS = 5 * 64 * 64    # padded elements of W_hh and W_hr together
PERSISTENT_BLOCK_B = 16                 # streams per program (tl.dot needs >= 16 rows)
PERSISTENT_WARPS = 16                   # fewer warps spill registers at H64 (ptxas, sm_90)
STEP_WARPS = 8                          # per-step kernels; see _step_blocks
COOPERATIVE_MAX_BATCH = 64              # streams: all in one tile of every program
COOPERATIVE_BLOCK = 16                  # cells (and outputs) per slice
COOPERATIVE_BLOCK_K = 32
COOPERATIVE_WARPS = 8                   # 2 and 4 spill at 16 streams (ptxas, sm_90)


@functools.lru_cache(maxsize=1)
def _import_error() -> str:
    try:
        import triton  # noqa: F401
    except ImportError as error:
        return f"Triton is not installed ({error}); pip install triton"
    return ""


def interpreting() -> bool:
    """True when this process runs the kernels in Triton's CPU interpreter: TRITON_INTERPRET=1 was
    set when lstmp_triton was first imported (Triton decides when a kernel is defined)."""
    if _import_error():
        return False
    from . import lstmp_triton

    return type(lstmp_triton.lstmp_forward_step).__name__ == "InterpretedFunction"


def unavailable_reason(x: Tensor) -> str:
    """Why the Triton kernels cannot run on x ("" when they can)."""
    if _import_error():
        return _import_error()
    if x.device.type != "cuda" and not (x.device.type == "cpu" and interpreting()):
        return f"the Triton kernels run on CUDA tensors (or on the CPU with TRITON_INTERPRET=1), got {x.device}"
    if x.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        return f"the Triton kernels run float32 (or autocast bf16/fp16) inputs, got {x.dtype}"
    return ""


def persistent_fits(hidden_size: int, real_hidden: int, projection: bool) -> bool:
    """Whether the persistent kernel's on-chip weights fit: W_hh and W_hr padded to powers of two."""
    hp, rp = persistent_tiles(hidden_size, real_hidden)
    return (4 + int(projection)) * hp * rp <= PERSISTENT_MAX_WEIGHTS


def persistent_tiles(hidden_size: int, real_hidden: int) -> tuple[int, int]:
    """(HP, RP): the persistent kernel's padded H and R, powers of two >= 32 (ptxas spills H64 P16
    held as 16 columns, and not padded to 32)."""
    return _padded(hidden_size, 32), _padded(real_hidden, 32)


def _padded(n: int, minimum: int = 16) -> int:
    return max(minimum, 1 << (n - 1).bit_length())


def _dot_precision(device: torch.device) -> str:
    """'bf16' under a bf16/fp16 autocast, 'tf32' where torch allows TF32 for CUDA matmuls, else 'ieee'."""
    if torch.is_autocast_enabled(device.type):
        return "bf16-emulated" if interpreting() else "bf16"
    if device.type == "cuda" and (torch.backends.cuda.matmul.allow_tf32 or torch.get_float32_matmul_precision() != "highest"):
        return "tf32"
    return "ieee"


class RecurrenceFunction(torch.autograd.Function):
    """The LSTMP recurrence given the input half of the gates. Saves the activated gates (T, B, 4H),
    the cells (T, B, H) and the outputs (T, B, R); backward recomputes m_t = o_t tanh(c_t)."""

    @staticmethod
    def forward(ctx, x_gates, h0, c0, weight_hh, w_peep, weight_hr, mode: str, dot: str):
        # x_gates (T, B, 4H) fp32; h0 (B, R); c0 (B, H); weight_hh (4H, R); w_peep (3, H) or None;
        # weight_hr (R, H) or None
        from . import lstmp_triton as K

        T, B, four_h = x_gates.shape
        H, R = four_h // 4, weight_hh.shape[1]
        f32 = dict(device=x_gates.device, dtype=torch.float32)
        weight_hh = weight_hh.float().contiguous()
        weight_hr = None if weight_hr is None else weight_hr.float().contiguous()
        w_peep = None if w_peep is None else w_peep.float().contiguous()
        h0, c0 = h0.float().contiguous(), c0.float().contiguous()
        out = torch.empty(T, B, R, **f32)
        gates = torch.empty(T, B, 4 * H, **f32)
        cells = torch.empty(T, B, H, **f32)
        w_hh, w_hr = _for_dot(weight_hh, dot), _for_dot(weight_hr, dot)  # what the kernels read
        dummy = weight_hh  # for pointers a kernel does not read
        wc, whr = (w_peep if w_peep is not None else dummy), (w_hr if w_hr is not None else dummy)
        if mode == "cooperative":
            m = torch.empty(B, H, **f32) if weight_hr is not None else dummy
            K.lstmp_forward_cooperative[(_cooperative_programs(H, R, x_gates.device),)](
                x_gates, h0, c0, w_hh, wc, whr, out, gates, cells, m,
                torch.zeros(1, dtype=torch.int32, device=x_gates.device), T, B, H, R,
                PEEP=w_peep is not None, PROJ=weight_hr is not None, BLOCK_B=_padded(B), BLOCK_H=COOPERATIVE_BLOCK,
                BLOCK_R=COOPERATIVE_BLOCK, BLOCK_K=COOPERATIVE_BLOCK_K, DOT=dot, num_warps=COOPERATIVE_WARPS)
        elif mode == "persistent":
            HP, RP = persistent_tiles(H, R)
            grid = (triton_cdiv(B, PERSISTENT_BLOCK_B),)
            K.lstmp_forward_persistent[grid](
                x_gates, h0, c0, w_hh, wc, whr,
                out, gates, cells, T, B,
                H=H, R=R, HP=HP, RP=RP, PEEP=w_peep is not None, PROJ=weight_hr is not None,
                BLOCK_B=PERSISTENT_BLOCK_B, DOT=dot, num_warps=PERSISTENT_WARPS)
        else:
            block_b, block_h, block_k = _step_blocks(B, H, R, x_gates.device)
            grid = (triton_cdiv(B, block_b), triton_cdiv(H, block_h))
            m = torch.empty(B, H, **f32) if weight_hr is not None else None
            r_prev, c_prev = h0, c0
            for t in range(T):
                m_t = m if m is not None else out[t]
                K.lstmp_forward_step[grid](
                    x_gates[t], r_prev, c_prev, w_hh, wc, m_t, gates[t], cells[t], B, H, R,
                    PEEP=w_peep is not None, BLOCK_B=block_b, BLOCK_H=block_h, BLOCK_K=block_k, DOT=dot,
                    num_warps=STEP_WARPS)
                if weight_hr is not None:
                    _matmul(m_t, w_hr.t(), out[t], dot)  # r_t = m_t W_hr^T (B, R)
                r_prev, c_prev = out[t], cells[t]
        ctx.mode, ctx.dot = mode, dot
        ctx.has_peep, ctx.has_proj = w_peep is not None, weight_hr is not None
        ctx.save_for_backward(h0, c0, weight_hh, w_peep, weight_hr, out, gates, cells)
        return out, out[-1].clone(), cells[-1].clone()  # output (T, B, R), h_n (B, R), c_n (B, H)

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_h_n, d_c_n):
        from . import lstmp_triton as K

        h0, c0, weight_hh, w_peep, weight_hr, out, gates, cells = ctx.saved_tensors
        T, B, R = out.shape
        H = cells.shape[2]
        f32 = dict(device=out.device, dtype=torch.float32)
        d_out = torch.zeros(T, B, R, **f32) if d_out is None else d_out.float().contiguous()
        d_h_n = torch.zeros(B, R, **f32) if d_h_n is None else d_h_n.float().contiguous()
        d_c_n = torch.zeros(B, H, **f32) if d_c_n is None else d_c_n.float().contiguous()
        d_gates = torch.empty(T, B, 4 * H, **f32)  # dL/d(pre-activations) = dL/dx_gates
        # dL/dr_t in total, kept for W_hr's gradient (and by the per-step path between its launches)
        d_r = torch.empty(T, B, R, **f32) if ctx.has_proj or ctx.mode != "persistent" else d_out
        d_h0, d_c0 = torch.empty(B, R, **f32), torch.empty(B, H, **f32)
        w_hh, w_hr = _for_dot(weight_hh, ctx.dot), _for_dot(weight_hr, ctx.dot)
        dummy = weight_hh  # for pointers a kernel does not read
        wc, whr = (w_peep if w_peep is not None else dummy), (w_hr if w_hr is not None else dummy)
        if ctx.mode == "cooperative":
            d_c = d_c_n.clone()  # dL/dc carried backwards, each slice by its program
            K.lstmp_backward_cooperative[(_cooperative_programs(H, R, out.device),)](
                d_out[T - 1], d_h_n, c0, w_hh, wc, whr, gates[T - 1], cells[T - 1],
                d_gates[T - 1], d_r[T - 1], d_c, torch.zeros(1, dtype=torch.int32, device=out.device), T, B, H, R,
                PEEP=ctx.has_peep, PROJ=ctx.has_proj, BLOCK_B=_padded(B), BLOCK_H=COOPERATIVE_BLOCK,
                BLOCK_R=COOPERATIVE_BLOCK, BLOCK_K=COOPERATIVE_BLOCK_K, DOT=ctx.dot, num_warps=COOPERATIVE_WARPS)
            d_h0.copy_(_matmul(d_gates[0], w_hh, None, ctx.dot))  # dL/dr_{-1} = dgates_0 W_hh
            d_c0.copy_(d_c)
        elif ctx.mode == "persistent":
            HP, RP = persistent_tiles(H, R)
            grid = (triton_cdiv(B, PERSISTENT_BLOCK_B),)
            K.lstmp_backward_persistent[grid](
                d_out[T - 1], d_h_n, d_c_n, c0, w_hh, wc, whr,
                gates[T - 1], cells[T - 1], d_gates[T - 1], d_r[T - 1], d_h0, d_c0, T, B,
                H=H, R=R, HP=HP, RP=RP, PEEP=ctx.has_peep, PROJ=ctx.has_proj,
                BLOCK_B=PERSISTENT_BLOCK_B, DOT=ctx.dot, num_warps=PERSISTENT_WARPS)
        else:
            block_b, block_h, block_k = _step_blocks(B, H, R, out.device)
            grid = (triton_cdiv(B, block_b), triton_cdiv(H, block_h))
            d_c = d_c_n.clone()  # dL/dc carried backwards, updated in place by each step
            d_r_next = d_h_n
            for t in range(T - 1, -1, -1):
                torch.add(d_out[t], d_r_next, out=d_r[t])  # dL/dr_t (B, R)
                K.lstmp_backward_step[grid](
                    d_r[t], whr, wc, gates[t], cells[t],
                    cells[t - 1] if t > 0 else c0, d_c, d_gates[t], B, H, R,
                    PEEP=ctx.has_peep, PROJ=ctx.has_proj, BLOCK_B=block_b, BLOCK_H=block_h, BLOCK_K=block_k,
                    DOT=ctx.dot, num_warps=STEP_WARPS)
                d_r_next = _matmul(d_gates[t], w_hh, None, ctx.dot)  # dL/dr_{t-1} via W_hh (B, R)
            d_h0.copy_(d_r_next)
            d_c0.copy_(d_c)
        # Weight gradients: one large product each, over all T*B rows.
        r_prev = torch.cat([h0[None], out[:-1]])  # (T, B, R) r_{t-1}
        d_weight_hh = d_gates.reshape(T * B, 4 * H).t() @ r_prev.reshape(T * B, R)  # (4H, R)
        d_peep = d_weight_hr = None
        if ctx.has_peep:
            c_prev = torch.cat([c0[None], cells[:-1]])  # (T, B, H)
            d_i, d_f, _, d_o = d_gates.split(H, dim=2)
            d_peep = torch.stack([(d_i * c_prev).sum((0, 1)), (d_f * c_prev).sum((0, 1)), (d_o * cells).sum((0, 1))])
        if ctx.has_proj:
            m = gates[:, :, 3 * H:] * torch.tanh(cells)  # (T, B, H) m_t recomputed
            d_weight_hr = d_r.reshape(T * B, R).t() @ m.reshape(T * B, H)  # (R, H)
        return d_gates, d_h0, d_c0, d_weight_hh, d_peep, d_weight_hr, None, None


def _for_dot(weight: Tensor | None, dot: str) -> Tensor | None:
    """The recurrent weights as the kernels read them: bf16 for bf16 products on the GPU (half the
    bytes per step), else as they are (fp32)."""
    return weight.bfloat16() if weight is not None and dot == "bf16" else weight


def _matmul(a: Tensor, b: Tensor, out: Tensor | None, dot: str) -> Tensor:
    """a @ b between the per-step kernels, in the kernels' precision (bf16 operands, fp32 result)."""
    if dot.startswith("bf16"):
        result = (a.bfloat16() @ b.bfloat16()).float()
        return result if out is None else out.copy_(result)
    return torch.mm(a, b) if out is None else torch.mm(a, b, out=out)


def _step_blocks(B: int, H: int, R: int, device: torch.device) -> tuple[int, int, int]:
    """Tile sizes of the per-step kernels: (streams, cells, K) per program, each >= 16 (tl.dot).
    At most 64 x 32 cells per program with 8 warps, which ptxas compiles for sm_90 without spilling
    the four gates' accumulators (64 x 64 spills); K tiles of 32 keep the weight tiles of 3 pipeline
    stages in shared memory. The cell tile narrows until there is a program for every SM, so a small
    batch still spreads the reading of the weights over the whole GPU."""
    block_b = min(64, _padded(B))
    block_k = min(32, _padded(R))
    sms = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 1
    block_h = min(32, _padded(H))
    while block_h > 16 and triton_cdiv(B, block_b) * triton_cdiv(H, block_h) < sms:
        block_h //= 2
    return block_b, block_h, block_k


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _cooperative_programs(H: int, R: int, device: torch.device) -> int:
    """Programs of the cooperative kernels: one per slice of cells or outputs, at most one per SM so
    that all are resident at once (the grid barrier waits for every one); one in the interpreter,
    which runs programs one after another."""
    slices = max(triton_cdiv(H, COOPERATIVE_BLOCK), triton_cdiv(R, COOPERATIVE_BLOCK))
    if device.type != "cuda":
        return 1
    return min(slices, torch.cuda.get_device_properties(device).multi_processor_count)


def _layer(x, h0, c0, weight_ih, weight_hh, bias, peepholes, weight_hr, mode: str):
    """x (T, B, I) -> output (T, B, R), h_n (B, R), c_n (B, H), lstmp_layer_reference's contract."""
    x_gates = F.linear(x, weight_ih, bias).float()  # (T, B, 4H), autocast may compute it in bf16
    w_peep = torch.stack(peepholes) if peepholes is not None else None  # (3, H)
    dot = _dot_precision(x.device)
    with torch.autocast(x.device.type, enabled=False):
        return RecurrenceFunction.apply(x_gates.contiguous(), h0, c0, weight_hh, w_peep, weight_hr, mode, dot)


def lstmp_layer_triton(x, h0, c0, weight_ih, weight_hh, bias, peepholes, weight_hr):
    """lstmp_layer_reference's twin on the per-step Triton kernels (any size)."""
    return _layer(x, h0, c0, weight_ih, weight_hh, bias, peepholes, weight_hr, mode="step")


def lstmp_layer_persistent(x, h0, c0, weight_ih, weight_hh, bias, peepholes, weight_hr):
    """lstmp_layer_reference's twin on the persistent Triton kernel (one launch per direction)."""
    H, R = weight_hh.shape[0] // 4, weight_hh.shape[1]
    if not persistent_fits(H, R, weight_hr is not None):
        raise ValueError(f"kernel 'persistent' keeps the recurrent weights on chip and fits up to "
                         f"{PERSISTENT_MAX_WEIGHTS} padded elements; hidden_size={H}, proj_size={R if weight_hr is not None else 0} "
                         "is too large: use kernel='triton' or 'auto'")
    return _layer(x, h0, c0, weight_ih, weight_hh, bias, peepholes, weight_hr, mode="persistent")


def lstmp_layer_cooperative(x, h0, c0, weight_ih, weight_hh, bias, peepholes, weight_hr):
    """lstmp_layer_reference's twin on the cooperative Triton kernels (one launch per direction, the
    cells split over the GPU's SMs); small batches only."""
    if x.shape[1] > COOPERATIVE_MAX_BATCH:
        raise ValueError(f"kernel 'cooperative' runs batches of up to {COOPERATIVE_MAX_BATCH} streams, got "
                         f"{x.shape[1]}: use kernel='triton' or 'auto'")
    return _layer(x, h0, c0, weight_ih, weight_hh, bias, peepholes, weight_hr, mode="cooperative")
