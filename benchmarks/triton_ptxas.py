"""Compile the Triton LSTMP kernels for a GPU without one, and report ptxas's registers and spills.

    .venv/bin/python benchmarks/triton_ptxas.py                 # sm_90 (H100/H200), the default variants
    .venv/bin/python benchmarks/triton_ptxas.py --arch 80 --sizes 64,0 128,32 --dot tf32

Triton compiles to PTX and runs its bundled ptxas on the CPU, so this catches errors that the CPU
interpreter cannot (the compiler's frontend and type rules), and shows where the persistent kernel's
on-chip weights stop fitting in registers (spill bytes > 0). It sets TRITON_INTERPRET=0 for itself.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ["TRITON_INTERPRET"] = "0"

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from lstmlm.kernels import gpu, lstmp_triton as K  # noqa: E402

PTRS_FORWARD_PERSISTENT = ["xg_ptr", "h0_ptr", "c0_ptr", "whh_ptr", "wc_ptr", "whr_ptr", "out_ptr", "gates_ptr",
                           "cells_ptr"]
PTRS_BACKWARD_PERSISTENT = ["dout_ptr", "dhn_ptr", "dcn_ptr", "c0_ptr", "whh_ptr", "wc_ptr", "whr_ptr", "gates_ptr",
                            "cells_ptr", "dgates_ptr", "dr_ptr", "dh0_ptr", "dc0_ptr"]
PTRS_FORWARD_STEP = ["xg_ptr", "r_ptr", "c_ptr", "whh_ptr", "wc_ptr", "m_ptr", "gates_ptr", "cells_ptr"]
PTRS_BACKWARD_STEP = ["dr_ptr", "whr_ptr", "wc_ptr", "gates_ptr", "cells_ptr", "cprev_ptr", "dc_ptr", "dgates_ptr"]
PTRS_FORWARD_COOPERATIVE = ["xg_ptr", "h0_ptr", "c0_ptr", "whh_ptr", "wc_ptr", "whr_ptr", "out_ptr", "gates_ptr",
                            "cells_ptr", "m_ptr", "counter_ptr"]
PTRS_BACKWARD_COOPERATIVE = ["dout_ptr", "dhn_ptr", "c0_ptr", "whh_ptr", "wc_ptr", "whr_ptr", "gates_ptr", "cells_ptr",
                             "dgates_ptr", "dr_ptr", "dc_ptr", "counter_ptr"]


def _ptxas() -> str:
    return str(next(Path(triton.__file__).parent.glob("backends/nvidia/bin/ptxas")))


def compile_variant(fn, pointers, ints, constexprs, arch: int, num_warps: int, weight_dtype: str = "fp32") -> dict:
    """Compile one kernel variant to PTX, run ptxas -v on it; registers, spill bytes, shared memory."""
    sig = {p: (f"*{weight_dtype}" if p in ("whh_ptr", "whr_ptr") else "*i32" if p == "counter_ptr" else "*fp32")
           for p in pointers}
    sig.update({name: "i32" for name in ints})
    sig.update({name: "constexpr" for name in constexprs})
    kernel = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=constexprs),
                            target=GPUTarget("cuda", arch, 32), options={"num_warps": num_warps})
    with tempfile.TemporaryDirectory() as tmp:
        ptx = Path(tmp) / "k.ptx"
        ptx.write_text(kernel.asm["ptx"])
        sm = f"sm_{arch}a" if arch >= 90 else f"sm_{arch}"
        log = subprocess.run([_ptxas(), f"-arch={sm}", "-v", str(ptx), "-o", str(Path(tmp) / "k.cubin")],
                             capture_output=True, text=True, check=True).stderr
    regs = int(re.search(r"Used (\d+) registers", log).group(1))
    spills = [int(v) for v in re.findall(r"(\d+) bytes spill (?:stores|loads)", log)]
    return {"registers": regs, "spill_bytes": max(spills or [0]), "shared_bytes": kernel.metadata.shared}


def persistent_rows(hidden: int, proj: int, dot: str, arch: int, warps: int, peep: bool = True) -> list[dict]:
    """The persistent forward and backward kernels as gpu.py launches them for one layer size."""
    real = proj or hidden
    hp, rp = gpu.persistent_tiles(hidden, real)
    consts = {"H": hidden, "R": real, "HP": hp, "RP": rp, "PEEP": peep,
              "PROJ": proj > 0, "BLOCK_B": gpu.PERSISTENT_BLOCK_B, "DOT": dot}
    weights = "bf16" if dot == "bf16" else "fp32"
    rows = []
    for name, fn, ptrs in (("persistent forward", K.lstmp_forward_persistent, PTRS_FORWARD_PERSISTENT),
                           ("persistent backward", K.lstmp_backward_persistent, PTRS_BACKWARD_PERSISTENT)):
        result = compile_variant(fn, ptrs, ["T", "B"], consts, arch, warps, weights)
        rows.append({"kernel": name, "H": hidden, "P": proj, "dot": dot, "warps": warps, **result,
                     "auto_picks_it": gpu.persistent_fits(hidden, real, proj > 0)})
    return rows


def step_rows(block_h: int, dot: str, arch: int, peep: bool = True) -> list[dict]:
    """The per-step kernels at gpu._step_blocks' tiles (64 streams, block_h cells, K 32): the forward,
    the backward without and with projection."""
    consts = {"PEEP": peep, "BLOCK_B": 64, "BLOCK_H": block_h, "BLOCK_K": 32, "DOT": dot}
    weights = "bf16" if dot == "bf16" else "fp32"
    rows = [("step forward", K.lstmp_forward_step, PTRS_FORWARD_STEP, {}),
            ("step backward", K.lstmp_backward_step, PTRS_BACKWARD_STEP, {"PROJ": False}),
            ("step backward (projection)", K.lstmp_backward_step, PTRS_BACKWARD_STEP, {"PROJ": True})]
    return [{"kernel": name, "H": f"tile {block_h}", "P": "any", "dot": dot, "warps": gpu.STEP_WARPS,
             **compile_variant(fn, ptrs, ["B", "H", "R"], {**consts, **extra}, arch, gpu.STEP_WARPS, weights),
             "auto_picks_it": True} for name, fn, ptrs, extra in rows]


def cooperative_rows(block_b: int, dot: str, arch: int, peep: bool = True) -> list[dict]:
    """The cooperative kernels as gpu.py launches them for a batch padded to block_b streams."""
    consts = {"PEEP": peep, "PROJ": True, "BLOCK_B": block_b, "BLOCK_H": gpu.COOPERATIVE_BLOCK,
              "BLOCK_R": gpu.COOPERATIVE_BLOCK, "BLOCK_K": gpu.COOPERATIVE_BLOCK_K, "DOT": dot}
    weights = "bf16" if dot == "bf16" else "fp32"
    rows = []
    for name, fn, ptrs in (("cooperative forward", K.lstmp_forward_cooperative, PTRS_FORWARD_COOPERATIVE),
                           ("cooperative backward", K.lstmp_backward_cooperative, PTRS_BACKWARD_COOPERATIVE)):
        result = compile_variant(fn, ptrs, ["T", "B", "H", "R"], consts, arch, gpu.COOPERATIVE_WARPS, weights)
        rows.append({"kernel": name, "H": "any", "P": f"B {block_b}", "dot": dot, "warps": gpu.COOPERATIVE_WARPS,
                     **result, "auto_picks_it": False})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, default=90, help="compute capability, e.g. 80 (A100) or 90 (H100)")
    parser.add_argument("--sizes", nargs="*", default=["32,0", "64,0", "64,16", "128,32", "128,0"],
                        help="H,P of the persistent kernel (P 0: no projection)")
    parser.add_argument("--warps", type=int, default=gpu.PERSISTENT_WARPS, help="warps of the persistent kernel")
    parser.add_argument("--dot", nargs="+", default=["tf32", "bf16"], help="ieee, tf32 or bf16 products")
    parser.add_argument("--no-peepholes", action="store_true", help="the kernels without peephole connections")
    parser.add_argument("--cooperative-batches", type=int, nargs="*", default=[16, 64],
                        help="padded batches of the cooperative kernels")
    parser.add_argument("--step-tiles", type=int, nargs="*", default=[32, 16], help="cell tiles of the per-step kernels")
    args = parser.parse_args(argv)
    print(f"triton {triton.__version__}, compiled for sm_{args.arch} with its bundled ptxas (no GPU needed)\n")
    print("| kernel | H | P (cooperative: padded batch) | dot | warps | registers | spill bytes | shared memory (bytes) "
          "| auto picks it |")
    print("|---|---|---|---|---|---:|---:|---:|---|")

    def show(rows):
        for r in rows:
            print(f"| {r['kernel']} | {r['H']} | {r['P']} | {r['dot']} | {r['warps']} | {r['registers']} | "
                  f"{r['spill_bytes']} | {r['shared_bytes']:,} | {'yes' if r['auto_picks_it'] else 'no'} |", flush=True)

    for size in args.sizes:
        hidden, proj = (int(v) for v in size.split(","))
        for dot in args.dot:
            show(persistent_rows(hidden, proj, dot, args.arch, args.warps, not args.no_peepholes))
    for block_h in args.step_tiles:
        for dot in args.dot:
            show(step_rows(block_h, dot, args.arch, not args.no_peepholes))
    for block_b in args.cooperative_batches:
        for dot in args.dot:
            show(cooperative_rows(block_b, dot, args.arch, not args.no_peepholes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
