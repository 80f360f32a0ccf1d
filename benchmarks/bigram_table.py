"""Issue 3's table: char one-hot, char + embedding, bigram, bigram + dropout, bigram input, trained on
the same number of characters under the same wall-clock budget, scored on the same test characters.

    python benchmarks/bigram_table.py --corpus ../shared/data/wiki8.txt.xz --out runs/bigram-table

Each row is one `lstmlm train` command then `lstmlm eval --split test`; the script prints a Markdown
table and writes results.json (rows, commands, environment) into --out.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

ROWS = {
    "char one-hot (the assignment)": ["--tokens", "char", "--input", "onehot"],
    "char + embedding": ["--tokens", "char", "--input", "embedding"],
    "bigram tokens": ["--tokens", "bigram", "--input", "embedding"],
    "bigram tokens + dropout": ["--tokens", "bigram", "--input", "embedding", "--dropout", "0.1"],
    "char tokens, bigram input": ["--tokens", "char", "--input", "bigram"],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="../shared/data/wiki8.txt.xz")
    parser.add_argument("--out", default="runs/bigram-table")
    parser.add_argument("--train-chars-per-step", type=int, default=3200, help="batch × unrollings × chars per token")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--max-seconds", type=float, default=240.0, help="the same wall-clock budget for every row")
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = {"device": "cpu", "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
           "dtype": "float32", "threads": torch.get_num_threads(), "python": platform.python_version()}
    common = ["--corpus", args.corpus, "--split", "standard", "--hidden-size", str(args.hidden_size),
              "--embedding-size", "64", "--batch-size", str(args.batch_size), "--steps", str(args.steps),
              "--optimizer", "adam", "--learning-rate", "0.002", "--lr-decay", "0.5", "--lr-decay-every", "600",
              "--clip-grad-norm", "1", "--valid-every", "500", "--valid-chars", "100000", "--sample-every", "0",
              "--checkpoint-every", "500", "--max-seconds", str(args.max_seconds), "--seed", "0", "--quiet"]
    rows = []
    for name, flags in ROWS.items():
        chars_per_token = 2 if "bigram" in flags[1] else 1
        unrollings = args.train_chars_per_step // args.batch_size // chars_per_token
        run = out / name.split(" (")[0].replace(" ", "-").replace(",", "").replace("+", "plus")
        train_cmd = ["lstmlm", "train", *common, *flags, "--num-unrollings", str(unrollings), "--out", str(run)]
        eval_cmd = ["lstmlm", "eval", str(run), "--split", "test", "--batch-size", "128"]
        if not (run / "summary.json").exists():
            subprocess.run([sys.executable, "-m", "lstmlm", *train_cmd[1:]], check=True)
        summary = json.loads((run / "summary.json").read_text())
        start = time.perf_counter()
        result = json.loads(subprocess.run([sys.executable, "-m", "lstmlm", *eval_cmd[1:]], check=True,
                                           capture_output=True, text=True).stdout)
        eval_seconds = time.perf_counter() - start
        metrics = (run / "metrics.csv").read_text().strip().splitlines()
        header, last = metrics[0].split(","), metrics[-1].split(",")
        row = {"row": name, "test_bits_per_char": result["bits_per_char"], "test_chars": result["chars"],
               "train_chars": summary["train_chars"], "steps": summary["steps"],
               "train_wall_seconds": summary["wall_seconds"],
               "chars_per_second": float(last[header.index("chars_per_second")]),
               "valid_bits_per_char": summary["valid_bits_per_char"], "eval_seconds": eval_seconds,
               "train_command": " ".join(train_cmd), "eval_command": " ".join(eval_cmd), **env}
        rows.append(row)
        print(json.dumps(row), flush=True)
    (out / "results.json").write_text(json.dumps({"environment": env, "rows": rows}, indent=2) + "\n")
    print(f"\n{env}\n")
    print("| model | test bits/char | training chars | steps | train wall s | train chars/s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['row']} | {r['test_bits_per_char']:.4f} | {r['train_chars']:,} | {r['steps']} | "
              f"{r['train_wall_seconds']:.0f} | {r['chars_per_second']:,.0f} |")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
