"""DDP under torchrun on the CPU (gloo): two processes equal one with the same global batch."""
import os
import subprocess
import sys

import pytest
import torch

from lstmlm.checkpoint import load_checkpoint

FLAGS = ["--preset", "assignment", "--hidden-size", "16", "--batch-size", "8", "--num-unrollings", "10",
         "--learning-rate", "1", "--valid-every", "10", "--valid-batch-size", "4", "--sample-every", "0",
         "--checkpoint-every", "10", "--quiet"]


def _train(world_size, corpus, out, steps, resume=False):
    launcher = [sys.executable, "-m", "lstmlm"] if world_size == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={world_size}", "-m", "lstmlm"]
    args = ["train", "--resume", str(out), "--steps", str(steps), "--quiet"] if resume else \
        ["train", "--corpus", str(corpus), "--out", str(out), "--steps", str(steps), *FLAGS]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(launcher + args, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _assert_same_parameters(a, b):
    for name, tensor in a["model"].items():
        torch.testing.assert_close(b["model"][name], tensor, rtol=1e-4, atol=1e-5, msg=name)


def test_two_processes_equal_one_and_resume_on_another_world_size(tiny_corpus, tmp_path):
    _train(1, tiny_corpus, tmp_path / "one", 30)
    two = _train(2, tiny_corpus, tmp_path / "two", 30)
    assert two.stdout.count("run directory:") == 1  # rank 0 alone reports
    one, two = load_checkpoint(tmp_path / "one"), load_checkpoint(tmp_path / "two")
    assert one["step"] == two["step"] == 30
    _assert_same_parameters(one, two)
    torch.testing.assert_close(two["state"][1], one["state"][1], rtol=1e-4, atol=1e-5)  # the global LSTM state
    assert (tmp_path / "two" / "metrics.csv").read_text().count("\n") == 4  # header + 3 rows, written once
    # 2 processes for 20 steps, then 1 process to 30: the same as 1 process throughout
    _train(2, tiny_corpus, tmp_path / "moved", 20)
    _train(1, tiny_corpus, tmp_path / "moved", 30, resume=True)
    _assert_same_parameters(one, load_checkpoint(tmp_path / "moved"))


def test_batch_must_divide_among_processes():
    from lstmlm.distributed import World
    assert World(1, 2).streams(8) == slice(4, 8)
    with pytest.raises(ValueError, match="divisible"):
        World(0, 3).streams(8)
