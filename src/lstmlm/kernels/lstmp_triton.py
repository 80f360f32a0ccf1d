"""Triton kernels for the LSTMP recurrence, forward and backward (host side: gpu.py).

The input half of the gates, x_gates = x W_ih^T + b (T, B, 4H), is one large product computed
before these kernels run; they do the part that is sequential in time. Notation as in
lstmlm.nn.lstm (gate order i, f, g, o; R = proj_size or H; m_t = o_t ⊙ tanh(c_t); r_t = W_hr m_t).

Three families:

  persistent  one launch for the whole sequence. Program p owns BLOCK_B streams (rows of the
              batch) and all H cells, and loops over time itself; its recurrent weights (W_hh as four
              (R, H) tiles, W_hr as one (H, R) tile) are loaded once, before the loop, and stay on
              chip. No program waits on another, because the streams are independent. For small H,
              where one step is far too little work to be worth a launch.
  step        one launch per time step, tiled over (streams, cells): each program computes its
              (BLOCK_B, BLOCK_H) tile of all four gates with a K loop over R, then the cell update. The
              projection r_t = m_t W_hr^T and the backward's dr_t = dout_t + dgates_{t+1} W_hh are
              cuBLAS products between launches (gpu.py). For large H.
  cooperative one launch for the whole sequence at a small batch and any H: the programs split the
              cells and outputs and meet at a grid barrier twice a step (below). Experimental.

Every kernel saves, per step, the activated gates (i, f, g, o) and the cell c_t; backward
recomputes m_t from them. Products run in DOT precision ("ieee" fp32, "tf32", or "bf16" operands);
the cell state, the gates and every accumulation are fp32.

Pointers advance by their per-step stride inside the time loops (64-bit pointer arithmetic), so
T * B * 4H may exceed 2^31. Tiles are powers of two, at least 16 (the persistent kernel's H and R
at least 32), and masked: a padded cell has zero weights and stays exactly zero.
"""
import triton
import triton.language as tl


@triton.jit
def _tanh(x):
    return 2.0 * tl.sigmoid(2.0 * x) - 1.0


@triton.jit
def _round_to_bf16(x):
    """fp32 -> the nearest bf16 (ties to even), still as fp32, by bit arithmetic."""
    u = x.to(tl.uint32, bitcast=True)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.to(tl.float32, bitcast=True)


@triton.jit
def _dot(a, b, DOT: tl.constexpr):
    """a (M, K) @ b (K, N) in DOT precision, accumulated in fp32. "bf16-emulated": operands rounded
    to bf16, multiplied as fp32: the same products, for Triton's CPU interpreter, which cannot
    multiply bf16 and truncates where the GPU rounds."""
    if DOT == "bf16":
        return tl.dot(a.to(tl.bfloat16), b.to(tl.bfloat16), out_dtype=tl.float32)
    elif DOT == "bf16-emulated":
        return tl.dot(_round_to_bf16(a), _round_to_bf16(b), input_precision="ieee")
    elif DOT == "tf32":
        return tl.dot(a, b, input_precision="tf32")
    else:
        return tl.dot(a, b, input_precision="ieee")


@triton.jit
def _cell_forward(a_i, a_f, a_g, a_o, c, w_ci, w_cf, w_co, PEEP: tl.constexpr):
    """Pre-activations (each (M, N)) and the previous cell -> i, f, g, o, c_t, m_t."""
    if PEEP:
        a_i += w_ci[None, :] * c
        a_f += w_cf[None, :] * c
    i = tl.sigmoid(a_i)
    f = tl.sigmoid(a_f)
    g = _tanh(a_g)
    c = f * c + i * g
    if PEEP:
        a_o += w_co[None, :] * c
    o = tl.sigmoid(a_o)
    m = o * _tanh(c)
    return i, f, g, o, c, m


@triton.jit
def _cell_backward(dm, dc, i, f, g, o, c, c_prev, w_ci, w_cf, w_co, PEEP: tl.constexpr):
    """Gradients through one cell update. dm: dL/dm_t; dc: dL/dc_t from step t+1 (through c_t only).
    Returns the pre-activation gradients (di, df, dg, do) and dL/dc_{t-1}."""
    tanh_c = _tanh(c)
    d_o = dm * tanh_c * o * (1.0 - o)
    dc = dc + dm * o * (1.0 - tanh_c * tanh_c)
    if PEEP:
        dc += d_o * w_co[None, :]
    d_i = dc * g * i * (1.0 - i)
    d_f = dc * c_prev * f * (1.0 - f)
    d_g = dc * i * (1.0 - g * g)
    dc_prev = dc * f
    if PEEP:
        dc_prev += d_i * w_ci[None, :] + d_f * w_cf[None, :]
    return d_i, d_f, d_g, d_o, dc_prev


@triton.jit
def _load4(at, mask, stride):
    """The four gates' blocks at pointers `at` (gate i), `at + stride` (f), ... (g, o): weight tiles,
    or a row block of a (B, 4H) gate tensor with stride H."""
    a_i = tl.load(at, mask=mask, other=0.0)
    a_f = tl.load(at + stride, mask=mask, other=0.0)
    a_g = tl.load(at + 2 * stride, mask=mask, other=0.0)
    a_o = tl.load(at + 3 * stride, mask=mask, other=0.0)
    return a_i, a_f, a_g, a_o


@triton.jit
def _store4(at, a_i, a_f, a_g, a_o, mask, stride):
    """_load4's inverse: the four gates' blocks to `at`, `at + stride`, ..."""
    tl.store(at, a_i, mask=mask)
    tl.store(at + stride, a_f, mask=mask)
    tl.store(at + 2 * stride, a_g, mask=mask)
    tl.store(at + 3 * stride, a_o, mask=mask)


@triton.jit
def _peepholes(wc_ptr, hs, H, PEEP: tl.constexpr):
    """w_ci, w_cf, w_co at cells hs from wc (3, H); without PEEP zeros, which _cell_forward and
    _cell_backward then ignore (a Triton function returns tensors of one type on every path)."""
    if PEEP:
        return (tl.load(wc_ptr + hs, mask=hs < H, other=0.0), tl.load(wc_ptr + H + hs, mask=hs < H, other=0.0),
                tl.load(wc_ptr + 2 * H + hs, mask=hs < H, other=0.0))
    else:
        zeros = tl.zeros(hs.shape, tl.float32)
        return zeros, zeros, zeros


# --------------------------------------------------------------------------- persistent


@triton.jit
def lstmp_forward_persistent(
    xg_ptr,        # (T, B, 4H) x W_ih^T + b
    h0_ptr,        # (B, R)
    c0_ptr,        # (B, H)
    whh_ptr,       # (4H, R)
    wc_ptr,        # (3, H) w_ci, w_cf, w_co (unused without PEEP)
    whr_ptr,       # (R, H) (unused without PROJ)
    out_ptr,       # (T, B, R) r_t
    gates_ptr,     # (T, B, 4H) activated i, f, g, o
    cells_ptr,     # (T, B, H) c_t
    T, B,
    H: tl.constexpr, R: tl.constexpr, HP: tl.constexpr, RP: tl.constexpr,
    PEEP: tl.constexpr, PROJ: tl.constexpr,
    BLOCK_B: tl.constexpr, DOT: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)  # (BB,)
    hs = tl.arange(0, HP)
    rs = tl.arange(0, RP)
    row_ok = rows[:, None] < B
    h_mask = row_ok & (hs[None, :] < H)  # (BB, HP)
    r_mask = row_ok & (rs[None, :] < R)  # (BB, RP)
    # W_k^T as (RP, HP): element (r, h) = W_hh[k H + h, r]
    w_i, w_f, w_g, w_o = _load4(whh_ptr + hs[None, :] * R + rs[:, None], (rs[:, None] < R) & (hs[None, :] < H),
                                       H * R)
    w_ci, w_cf, w_co = _peepholes(wc_ptr, hs, H, PEEP)
    if PROJ:  # W_hr^T as (HP, RP): element (h, r) = W_hr[r, h]
        w_r = tl.load(whr_ptr + rs[None, :] * H + hs[:, None], mask=(hs[:, None] < H) & (rs[None, :] < R), other=0.0)
    r = tl.load(h0_ptr + rows[:, None] * R + rs[None, :], mask=r_mask, other=0.0)  # (BB, RP)
    c = tl.load(c0_ptr + rows[:, None] * H + hs[None, :], mask=h_mask, other=0.0)  # (BB, HP)
    xg = xg_ptr + rows[:, None] * (4 * H) + hs[None, :]
    gates = gates_ptr + rows[:, None] * (4 * H) + hs[None, :]
    cells = cells_ptr + rows[:, None] * H + hs[None, :]
    out = out_ptr + rows[:, None] * R + rs[None, :]
    for _ in range(T):
        a_i, a_f, a_g, a_o = _load4(xg, h_mask, H)
        a_i += _dot(r, w_i, DOT)
        a_f += _dot(r, w_f, DOT)
        a_g += _dot(r, w_g, DOT)
        a_o += _dot(r, w_o, DOT)
        i, f, g, o, c, m = _cell_forward(a_i, a_f, a_g, a_o, c, w_ci, w_cf, w_co, PEEP)
        if PROJ:
            r = _dot(m, w_r, DOT)  # (BB, RP)
        else:
            r = m
        tl.store(out, r, mask=r_mask)
        _store4(gates, i, f, g, o, h_mask, H)
        tl.store(cells, c, mask=h_mask)
        xg += B * 4 * H
        gates += B * 4 * H
        cells += B * H
        out += B * R


@triton.jit
def lstmp_backward_persistent(
    dout_ptr,      # (T, B, R) dL/dr_t from above, pointing at step T-1
    dhn_ptr,       # (B, R)
    dcn_ptr,       # (B, H)
    c0_ptr,        # (B, H)
    whh_ptr,       # (4H, R)
    wc_ptr,        # (3, H)
    whr_ptr,       # (R, H)
    gates_ptr,     # (T, B, 4H) saved, pointing at step T-1
    cells_ptr,     # (T, B, H) saved, pointing at step T-1
    dgates_ptr,    # (T, B, 4H) out: dL/d(pre-activations), pointing at step T-1
    dr_ptr,        # (T, B, R) out: dL/dr_t in total (when PROJ), pointing at step T-1
    dh0_ptr,       # (B, R) out
    dc0_ptr,       # (B, H) out
    T, B,
    H: tl.constexpr, R: tl.constexpr, HP: tl.constexpr, RP: tl.constexpr,
    PEEP: tl.constexpr, PROJ: tl.constexpr,
    BLOCK_B: tl.constexpr, DOT: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    hs = tl.arange(0, HP)
    rs = tl.arange(0, RP)
    row_ok = rows[:, None] < B
    h_mask = row_ok & (hs[None, :] < H)
    r_mask = row_ok & (rs[None, :] < R)
    # W_k as (HP, RP): element (h, r) = W_hh[k H + h, r]
    w_i, w_f, w_g, w_o = _load4(whh_ptr + hs[:, None] * R + rs[None, :], (hs[:, None] < H) & (rs[None, :] < R),
                                       H * R)
    w_ci, w_cf, w_co = _peepholes(wc_ptr, hs, H, PEEP)
    if PROJ:  # W_hr as (RP, HP)
        w_r = tl.load(whr_ptr + rs[:, None] * H + hs[None, :], mask=(rs[:, None] < R) & (hs[None, :] < H), other=0.0)
    dr = tl.load(dhn_ptr + rows[:, None] * R + rs[None, :], mask=r_mask, other=0.0)  # (BB, RP)
    dc = tl.load(dcn_ptr + rows[:, None] * H + hs[None, :], mask=h_mask, other=0.0)  # (BB, HP)
    dout = dout_ptr + rows[:, None] * R + rs[None, :]
    drs = dr_ptr + rows[:, None] * R + rs[None, :]
    gates = gates_ptr + rows[:, None] * (4 * H) + hs[None, :]
    dgates = dgates_ptr + rows[:, None] * (4 * H) + hs[None, :]
    cells = cells_ptr + rows[:, None] * H + hs[None, :]
    for step in range(T):
        dr += tl.load(dout, mask=r_mask, other=0.0)
        if PROJ:
            tl.store(drs, dr, mask=r_mask)
            dm = _dot(dr, w_r, DOT)  # (BB, HP)
        else:
            dm = dr
        i, f, g, o = _load4(gates, h_mask, H)
        c = tl.load(cells, mask=h_mask, other=0.0)
        if step == T - 1:
            c_prev = tl.load(c0_ptr + rows[:, None] * H + hs[None, :], mask=h_mask, other=0.0)
        else:
            c_prev = tl.load(cells - B * H, mask=h_mask, other=0.0)
        d_i, d_f, d_g, d_o, dc = _cell_backward(dm, dc, i, f, g, o, c, c_prev, w_ci, w_cf, w_co, PEEP)
        _store4(dgates, d_i, d_f, d_g, d_o, h_mask, H)
        # dL/dr_{t-1} through the recurrent product: dgates_t W_hh (BB, RP)
        dr = _dot(d_i, w_i, DOT) + _dot(d_f, w_f, DOT) + _dot(d_g, w_g, DOT) + _dot(d_o, w_o, DOT)
        dout -= B * R
        drs -= B * R
        gates -= B * 4 * H
        dgates -= B * 4 * H
        cells -= B * H
    tl.store(dh0_ptr + rows[:, None] * R + rs[None, :], dr, mask=r_mask)
    tl.store(dc0_ptr + rows[:, None] * H + hs[None, :], dc, mask=h_mask)


# --------------------------------------------------------------------------- one step


@triton.jit
def lstmp_forward_step(
    xg_ptr,        # (B, 4H) x_t W_ih^T + b
    r_ptr,         # (B, R) r_{t-1}
    c_ptr,         # (B, H) c_{t-1}
    whh_ptr,       # (4H, R)
    wc_ptr,        # (3, H)
    m_ptr,         # (B, H) out: m_t (r_t itself without projection)
    gates_ptr,     # (B, 4H) out: activated i, f, g, o
    cells_ptr,     # (B, H) out: c_t
    B, H, R,
    PEEP: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
    DOT: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    hs = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    ks = tl.arange(0, BLOCK_K)
    h_mask = (rows[:, None] < B) & (hs[None, :] < H)
    xg = xg_ptr + rows[:, None] * (4 * H) + hs[None, :]
    a_i, a_f, a_g, a_o = _load4(xg, h_mask, H)
    for k in range(0, R, BLOCK_K):
        k_ok = (k + ks) < R
        r = tl.load(r_ptr + rows[:, None] * R + (k + ks)[None, :], mask=(rows[:, None] < B) & k_ok[None, :], other=0.0)
        # (BK, BH) each: W_hh[gate H + h, k]
        w_i, w_f, w_g, w_o = _load4(whh_ptr + hs[None, :] * R + (k + ks)[:, None], k_ok[:, None] & (hs[None, :] < H),
                                    H * R)
        a_i += _dot(r, w_i, DOT)
        a_f += _dot(r, w_f, DOT)
        a_g += _dot(r, w_g, DOT)
        a_o += _dot(r, w_o, DOT)
    c = tl.load(c_ptr + rows[:, None] * H + hs[None, :], mask=h_mask, other=0.0)
    w_ci, w_cf, w_co = _peepholes(wc_ptr, hs, H, PEEP)
    i, f, g, o, c, m = _cell_forward(a_i, a_f, a_g, a_o, c, w_ci, w_cf, w_co, PEEP)
    gates = gates_ptr + rows[:, None] * (4 * H) + hs[None, :]
    _store4(gates, i, f, g, o, h_mask, H)
    tl.store(cells_ptr + rows[:, None] * H + hs[None, :], c, mask=h_mask)
    tl.store(m_ptr + rows[:, None] * H + hs[None, :], m, mask=h_mask)


@triton.jit
def lstmp_backward_step(
    dr_ptr,        # (B, R) dL/dr_t in total
    whr_ptr,       # (R, H) (unused without PROJ: then dm_t = dr_t)
    wc_ptr,        # (3, H)
    gates_ptr,     # (B, 4H) saved activated gates of step t
    cells_ptr,     # (B, H) c_t
    cprev_ptr,     # (B, H) c_{t-1}
    dc_ptr,        # (B, H) in: dL/dc_t from step t+1; out: dL/dc_{t-1} (each program its own tile)
    dgates_ptr,    # (B, 4H) out: dL/d(pre-activations) of step t
    B, H, R,
    PEEP: tl.constexpr, PROJ: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
    BLOCK_K: tl.constexpr, DOT: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    hs = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    ks = tl.arange(0, BLOCK_K)
    h_mask = (rows[:, None] < B) & (hs[None, :] < H)
    if PROJ:  # dm_t = dr_t W_hr, (BB, BH)
        dm = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)
        for k in range(0, R, BLOCK_K):
            k_ok = (k + ks) < R
            dr = tl.load(dr_ptr + rows[:, None] * R + (k + ks)[None, :], mask=(rows[:, None] < B) & k_ok[None, :],
                         other=0.0)
            w = tl.load(whr_ptr + (k + ks)[:, None] * H + hs[None, :], mask=k_ok[:, None] & (hs[None, :] < H),
                        other=0.0)
            dm += _dot(dr, w, DOT)
    else:
        dm = tl.load(dr_ptr + rows[:, None] * R + hs[None, :], mask=h_mask, other=0.0)
    gates = gates_ptr + rows[:, None] * (4 * H) + hs[None, :]
    i, f, g, o = _load4(gates, h_mask, H)
    at = rows[:, None] * H + hs[None, :]
    c = tl.load(cells_ptr + at, mask=h_mask, other=0.0)
    c_prev = tl.load(cprev_ptr + at, mask=h_mask, other=0.0)
    dc = tl.load(dc_ptr + at, mask=h_mask, other=0.0)
    w_ci, w_cf, w_co = _peepholes(wc_ptr, hs, H, PEEP)
    d_i, d_f, d_g, d_o, dc = _cell_backward(dm, dc, i, f, g, o, c, c_prev, w_ci, w_cf, w_co, PEEP)
    dgates = dgates_ptr + rows[:, None] * (4 * H) + hs[None, :]
    _store4(dgates, d_i, d_f, d_g, d_o, h_mask, H)
    tl.store(dc_ptr + at, dc, mask=h_mask)


# --------------------------------------------------------------------------- cooperative
#
# One launch for the whole sequence at a small batch and any H: the programs split the cells (and,
# for the projection, the outputs) among themselves, program p taking slices p, p + P, p + 2P, ...,
# and meet at a grid-wide barrier between the phases of each step, so that the work of a step
# spreads over the whole GPU while the weights stay in L2 and nothing is launched per step. The
# programs must all be resident at once (gpu.py launches at most one per SM); in Triton's interpreter,
# which runs programs one after another, it launches one, which takes every slice itself.


@triton.jit
def _grid_sync(counter_ptr, target):
    """Every program's writes so far are visible to every program once the counter, which each
    program increments once per barrier, reaches target = programs x barriers passed."""
    tl.debug_barrier()  # this program's threads have all issued their stores
    tl.atomic_add(counter_ptr, 1, sem="release", scope="gpu")
    while tl.atomic_add(counter_ptr, 0, sem="acquire", scope="gpu") < target:
        pass
    tl.debug_barrier()


@triton.jit
def lstmp_forward_cooperative(
    xg_ptr,        # (T, B, 4H) x W_ih^T + b
    h0_ptr,        # (B, R)
    c0_ptr,        # (B, H)
    whh_ptr,       # (4H, R)
    wc_ptr,        # (3, H)
    whr_ptr,       # (R, H) (unused without PROJ)
    out_ptr,       # (T, B, R) out: r_t
    gates_ptr,     # (T, B, 4H) out: activated i, f, g, o
    cells_ptr,     # (T, B, H) out: c_t
    m_ptr,         # (B, H) scratch: m_t, between the two phases of a step (PROJ)
    counter_ptr,   # (1,) int32, zero: the grid barrier's counter
    T, B, H, R,
    PEEP: tl.constexpr, PROJ: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
    BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr, DOT: tl.constexpr,
):
    pid = tl.program_id(0)
    programs = tl.num_programs(0)
    rows = tl.arange(0, BLOCK_B)
    row_ok = rows < B
    ks = tl.arange(0, BLOCK_K)
    barriers = 0
    r_prev = h0_ptr   # r_{t-1} (B, R)
    c_prev = c0_ptr   # c_{t-1} (B, H)
    xg, out, gates, cells = xg_ptr, out_ptr, gates_ptr, cells_ptr  # step t
    for _ in range(T):
        # phase 1: the gates and cells of this program's slices of H
        for s in range(pid, tl.cdiv(H, BLOCK_H), programs):
            hs = s * BLOCK_H + tl.arange(0, BLOCK_H)
            h_mask = row_ok[:, None] & (hs[None, :] < H)
            at = rows[:, None] * (4 * H) + hs[None, :]
            a_i, a_f, a_g, a_o = _load4(xg + at, h_mask, H)
            for k in range(0, R, BLOCK_K):
                k_ok = (k + ks) < R
                r = tl.load(r_prev + rows[:, None] * R + (k + ks)[None, :], mask=row_ok[:, None] & k_ok[None, :],
                            other=0.0, cache_modifier=".cg")  # written by other programs
                w_i, w_f, w_g, w_o = _load4(whh_ptr + hs[None, :] * R + (k + ks)[:, None],
                                                   k_ok[:, None] & (hs[None, :] < H), H * R)
                a_i += _dot(r, w_i, DOT)
                a_f += _dot(r, w_f, DOT)
                a_g += _dot(r, w_g, DOT)
                a_o += _dot(r, w_o, DOT)
            w_ci, w_cf, w_co = _peepholes(wc_ptr, hs, H, PEEP)
            c = tl.load(c_prev + rows[:, None] * H + hs[None, :], mask=h_mask, other=0.0, cache_modifier=".cg")
            i, f, g, o, c, m = _cell_forward(a_i, a_f, a_g, a_o, c, w_ci, w_cf, w_co, PEEP)
            _store4(gates + at, i, f, g, o, h_mask, H)
            tl.store(cells + rows[:, None] * H + hs[None, :], c, mask=h_mask)
            if PROJ:
                tl.store(m_ptr + rows[:, None] * H + hs[None, :], m, mask=h_mask)
            else:
                tl.store(out + rows[:, None] * R + hs[None, :], m, mask=h_mask)
        barriers += 1
        _grid_sync(counter_ptr, barriers * programs)
        if PROJ:  # phase 2: r_t = m_t W_hr^T, this program's slices of R
            for q in range(pid, tl.cdiv(R, BLOCK_R), programs):
                rs = q * BLOCK_R + tl.arange(0, BLOCK_R)
                acc = tl.zeros((BLOCK_B, BLOCK_R), dtype=tl.float32)
                for k in range(0, H, BLOCK_K):
                    k_ok = (k + ks) < H
                    m = tl.load(m_ptr + rows[:, None] * H + (k + ks)[None, :], mask=row_ok[:, None] & k_ok[None, :],
                                other=0.0, cache_modifier=".cg")
                    w = tl.load(whr_ptr + rs[None, :] * H + (k + ks)[:, None], mask=k_ok[:, None] & (rs[None, :] < R),
                                other=0.0)  # (BK, BR): W_hr[r, k]
                    acc += _dot(m, w, DOT)
                tl.store(out + rows[:, None] * R + rs[None, :], acc, mask=row_ok[:, None] & (rs[None, :] < R))
            barriers += 1
            _grid_sync(counter_ptr, barriers * programs)
        r_prev, c_prev = out, cells
        xg += B * 4 * H
        gates += B * 4 * H
        cells += B * H
        out += B * R


@triton.jit
def lstmp_backward_cooperative(
    dout_ptr,      # (T, B, R) dL/dr_t from above, pointing at step T-1
    dhn_ptr,       # (B, R)
    c0_ptr,        # (B, H)
    whh_ptr,       # (4H, R)
    wc_ptr,        # (3, H)
    whr_ptr,       # (R, H) (unused without PROJ)
    gates_ptr,     # (T, B, 4H) saved, pointing at step T-1
    cells_ptr,     # (T, B, H) saved, pointing at step T-1
    dgates_ptr,    # (T, B, 4H) out: dL/d(pre-activations), pointing at step T-1
    dr_ptr,        # (T, B, R) out: dL/dr_t in total, pointing at step T-1
    dc_ptr,        # (B, H) in: dL/dc_n; out: dL/dc_0 (each slice kept by the program that owns it)
    counter_ptr,   # (1,) int32, zero
    T, B, H, R,
    PEEP: tl.constexpr, PROJ: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
    BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr, DOT: tl.constexpr,
):
    pid = tl.program_id(0)
    programs = tl.num_programs(0)
    rows = tl.arange(0, BLOCK_B)
    row_ok = rows < B
    ks = tl.arange(0, BLOCK_K)
    barriers = 0
    dout, gates, cells, dgates, dr = dout_ptr, gates_ptr, cells_ptr, dgates_ptr, dr_ptr  # step t
    for step in range(T):
        # phase A: dL/dr_t = dout_t + dgates_{t+1} W_hh (dh_n at the last step), slices of R
        for q in range(pid, tl.cdiv(R, BLOCK_R), programs):
            rs = q * BLOCK_R + tl.arange(0, BLOCK_R)
            r_mask = row_ok[:, None] & (rs[None, :] < R)
            acc = tl.load(dout + rows[:, None] * R + rs[None, :], mask=r_mask, other=0.0)
            if step == 0:
                acc += tl.load(dhn_ptr + rows[:, None] * R + rs[None, :], mask=r_mask, other=0.0)
            else:
                for k in range(0, 4 * H, BLOCK_K):
                    k_ok = (k + ks) < 4 * H
                    dg = tl.load(dgates + B * 4 * H + rows[:, None] * (4 * H) + (k + ks)[None, :],
                                 mask=row_ok[:, None] & k_ok[None, :], other=0.0, cache_modifier=".cg")
                    w = tl.load(whh_ptr + (k + ks)[:, None] * R + rs[None, :], mask=k_ok[:, None] & (rs[None, :] < R),
                                other=0.0)  # (BK, BR): W_hh[k, r]
                    acc += _dot(dg, w, DOT)
            tl.store(dr + rows[:, None] * R + rs[None, :], acc, mask=r_mask)
        barriers += 1
        _grid_sync(counter_ptr, barriers * programs)
        # phase B: through the cells of this program's slices of H
        for s in range(pid, tl.cdiv(H, BLOCK_H), programs):
            hs = s * BLOCK_H + tl.arange(0, BLOCK_H)
            h_mask = row_ok[:, None] & (hs[None, :] < H)
            if PROJ:  # dm_t = dr_t W_hr
                dm = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)
                for k in range(0, R, BLOCK_K):
                    k_ok = (k + ks) < R
                    d = tl.load(dr + rows[:, None] * R + (k + ks)[None, :], mask=row_ok[:, None] & k_ok[None, :],
                                other=0.0, cache_modifier=".cg")
                    w = tl.load(whr_ptr + (k + ks)[:, None] * H + hs[None, :], mask=k_ok[:, None] & (hs[None, :] < H),
                                other=0.0)
                    dm += _dot(d, w, DOT)
            else:
                dm = tl.load(dr + rows[:, None] * R + hs[None, :], mask=h_mask, other=0.0, cache_modifier=".cg")
            at = rows[:, None] * (4 * H) + hs[None, :]
            i, f, g, o = _load4(gates + at, h_mask, H)
            cell_at = rows[:, None] * H + hs[None, :]
            c = tl.load(cells + cell_at, mask=h_mask, other=0.0)
            if step == T - 1:
                c_prev = tl.load(c0_ptr + cell_at, mask=h_mask, other=0.0)
            else:
                c_prev = tl.load(cells - B * H + cell_at, mask=h_mask, other=0.0)
            dc = tl.load(dc_ptr + cell_at, mask=h_mask, other=0.0)
            w_ci, w_cf, w_co = _peepholes(wc_ptr, hs, H, PEEP)
            d_i, d_f, d_g, d_o, dc = _cell_backward(dm, dc, i, f, g, o, c, c_prev, w_ci, w_cf, w_co, PEEP)
            _store4(dgates + at, d_i, d_f, d_g, d_o, h_mask, H)
            tl.store(dc_ptr + cell_at, dc, mask=h_mask)
        barriers += 1
        _grid_sync(counter_ptr, barriers * programs)
        dout -= B * R
        dr -= B * R
        gates -= B * 4 * H
        dgates -= B * 4 * H
        cells -= B * H
