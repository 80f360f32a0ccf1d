"""The LSTM kernel sweep of BENCHMARKS.md: `lstmlm bench` over the default sizes, results kept here.

    flock /tmp/lstmlm-cpu.lock .venv/bin/python benchmarks/bench_lstm.py            # CPU, all implementations
    PYTHONPATH=src python3 benchmarks/bench_lstm.py --device cuda --precision tf32   # GPU: H64..H2048 x B16..B1024, T50

Prints the Markdown table (headed by device, torch version, dtype, threads, and on CUDA precision,
CUDA graphs, CUDA/cuDNN/Triton versions) and writes bench.json / bench.csv with the environment into
--out (default benchmarks/results/<device>, or <device>-<precision> when --precision is given).
On CUDA every implementation's training step is captured in a CUDA graph (--no-cuda-graphs: eager).
Extra arguments are passed to `lstmlm bench` (e.g. --sizes 64,64,10 --seconds 1).
benchmarks/gpu_check.sh runs this sweep at three precisions within a GPU session's few minutes.
"""
import sys

from lstmlm.cli import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--out" not in argv:
        device = argv[argv.index("--device") + 1] if "--device" in argv else "cpu"
        precision = f"-{argv[argv.index('--precision') + 1]}" if "--precision" in argv else ""
        argv += ["--out", f"benchmarks/results/{device}{precision}"]
    sys.exit(main(["bench", *argv]))
