"""The LSTM kernel sweep of BENCHMARKS.md: `lstmlm bench` over the default sizes, results kept here.

    flock /tmp/lstmlm-cpu.lock .venv/bin/python benchmarks/bench_lstm.py            # CPU, all implementations
    .venv/bin/python benchmarks/bench_lstm.py --device cuda --out benchmarks/results/gpu

Prints the Markdown table (headed by device, torch version, dtype and threads) and writes
bench.json / bench.csv with the environment into --out (default benchmarks/results/cpu).
Extra arguments are passed to `lstmlm bench` (e.g. --sizes 64,64,10 --seconds 1).
"""
import sys

from lstmlm.cli import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--out" not in argv:
        device = argv[argv.index("--device") + 1] if "--device" in argv else "cpu"
        argv += ["--out", f"benchmarks/results/{device}"]
    sys.exit(main(["bench", *argv]))
