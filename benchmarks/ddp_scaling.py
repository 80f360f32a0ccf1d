"""DDP scaling on one machine: training chars/s with 1 process vs W processes (torchrun, gloo on CPU),
the same global batch, in the same run.

    python benchmarks/ddp_scaling.py --corpus ../shared/data/wiki8.txt.xz --processes 2

Threads are split evenly: 1 process uses all cores' threads, W processes use cores / W each.
Prints a table with the environment and the scaling efficiency (chars/s ratio / W), and writes
ddp_scaling.json into --out.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch


def _run(processes: int, threads: int, args, out: Path) -> float:
    run = out / f"p{processes}"
    flags = ["train", "--corpus", args.corpus, "--split", "standard", "--input", "embedding", "--embedding-size", "64",
             "--hidden-size", str(args.hidden_size), "--batch-size", str(args.batch_size), "--num-unrollings", "50",
             "--steps", str(args.steps), "--optimizer", "adam", "--learning-rate", "0.002", "--valid-every",
             str(args.steps), "--valid-chars", "20000", "--sample-every", "0", "--checkpoint-every", str(args.steps),
             "--out", str(run), "--quiet"]
    launcher = [sys.executable, "-m", "lstmlm"] if processes == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}", "-m", "lstmlm"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run(launcher + flags, check=True, env=env)
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    return float(rows[-1]["chars_per_second"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="../shared/data/wiki8.txt.xz")
    parser.add_argument("--out", default="runs/ddp-scaling")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cores = os.cpu_count() or 1
    one = _run(1, cores, args, out)
    many = _run(args.processes, max(1, cores // args.processes), args, out)
    env = {"device": "cpu", "cores": cores, "torch": torch.__version__, "dtype": "float32",
           "python": platform.python_version(), "backend": "gloo"}
    result = {"environment": env, "hidden_size": args.hidden_size, "global_batch": args.batch_size,
              "chars_per_second_1_process": one, f"chars_per_second_{args.processes}_processes": many,
              "speedup": many / one, "efficiency": many / one / args.processes}
    (out / "ddp_scaling.json").write_text(json.dumps(result, indent=2) + "\n")
    print(env)
    print("| processes | threads each | chars/s | ratio to 1 process |\n|---|---|---|---|")
    print(f"| 1 | {cores} | {one:,.0f} | 1.00 |")
    print(f"| {args.processes} | {max(1, cores // args.processes)} | {many:,.0f} | {many / one:.2f} |")
    print(f"scaling efficiency: {result['efficiency']:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
