"""Where a training step's time goes: torch.profiler over a few steps of each implementation, by kernel.

    PYTHONPATH=src python benchmarks/profile_step.py --device cuda --sizes 1024,16,50,128,256 2048,1024,50,128,512
    .venv/bin/python benchmarks/profile_step.py --sizes 64,8,10 --kernel cpu+lstmp    # on the CPU

For each size and implementation (the names of `lstmlm bench`), it takes warm-up steps, then
profiles --steps eager training steps (forward, loss, backward, clip, SGD; the same step as the
bench) and prints the environment, the step time and the --top operators and kernels by self time on
the device (CUDA time on a GPU, CPU time on the CPU), so one run on a GPU says which launches
dominate, and how many there are per step.
"""
from __future__ import annotations

import argparse
import sys

import torch
from torch.profiler import ProfilerActivity, profile

from lstmlm.bench import _initial_state, _train_step, environment, make_model, parse_size


def profile_size(name: str, size, device: torch.device, steps: int, top: int, vocab_size: int = 65) -> str:
    """The profiler's table for `steps` training steps of one implementation at one size."""
    torch.manual_seed(0)
    model = make_model(name, size, vocab_size, device, torch.float32)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    ids = torch.randint(vocab_size, (size.batch_size, size.num_unrollings + 1), device=device)
    state = _initial_state(model, size.batch_size)
    for _ in range(3):  # kernels compile, memory is allocated
        state = _train_step(model, optimizer, ids[:, :-1], ids[:, 1:], state)
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    if cuda:
        torch.cuda.synchronize(device)
    with profile(activities=activities) as prof:
        for _ in range(steps):
            state = _train_step(model, optimizer, ids[:, :-1], ids[:, 1:], state)
        if cuda:
            torch.cuda.synchronize(device)
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    events = prof.key_averages()
    table = events.table(sort_by=key, row_limit=top, max_name_column_width=60)
    head = f"### {size.label} | {name} | {steps} steps"
    if cuda:  # kernels' time on the GPU (microseconds in the profiler)
        total_us = sum(e.self_device_time_total for e in events)
        head += f" | GPU time per step {total_us / steps / 1000:.3f} ms"
    return f"{head}\n{table}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", nargs="+", default=["64,16,50,128", "1024,16,50,128,256"],
                        help="H,B,T[,E[,P]] as for lstmlm bench")
    parser.add_argument("--kernel", nargs="+", default=None,
                        help="implementations (default: nn.LSTM+proj and auto+lstmp, i.e. cuDNN/oneDNN against "
                             "what lstmlm picks)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    env = environment(str(device))
    print(f"device {env['device']} ({env['device_name']}), torch {env['torch']}, float32, threads {env['threads']}")
    for text in args.sizes:
        size = parse_size(text)
        for name in args.kernel or ["nn.LSTM+proj", "auto+lstmp"]:
            print(profile_size(name, size, device, args.steps, args.top), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
