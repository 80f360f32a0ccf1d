"""Training speed and activation memory of the LSTM implementations, against torch.nn.LSTM.

One training step, as in `lstmlm train`: input (one-hot or embedding) -> one LSTM layer -> linear
head -> cross-entropy -> backward -> gradient clipping -> SGD, over B streams x T characters, with
the state carried from step to step and detached (truncated BPTT). Every implementation is timed in
the same process, in interleaved rounds (the best round counts), so the ratio to torch.nn.LSTM
(oneDNN on CPU, cuDNN on GPU) is measured on the same machine under the same load.

    implementation      the layer
    nn.LSTM             torch.nn.LSTM (with proj_size for the LSTMP rows; it has no peepholes)
    reference           lstmlm.nn.LSTM(kernel="reference"): the plain-PyTorch recurrence
    cpu                 lstmlm.nn.LSTM(kernel="cpu"): the compiled CPU kernel
    <name>+lstmp        the same with peepholes and a projection to proj_size

Memory: bytes of the tensors the layer saves for backward (counted once per storage, parameters
left out), captured with torch.autograd.graph.saved_tensors_hooks during the forward pass.
"""
from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import __version__
from .nn import LSTM

IMPLEMENTATIONS = ("nn.LSTM", "reference", "cpu", "nn.LSTM+proj", "reference+lstmp", "cpu+lstmp")


@dataclass(frozen=True)
class BenchSize:
    """One benchmark configuration: hidden size H, batch B (streams), unrollings T (characters),
    input width (0: one-hot over the vocabulary, else an embedding of that width), projection for
    the LSTMP rows."""

    hidden_size: int
    batch_size: int
    num_unrollings: int
    embedding_size: int = 0
    proj_size: int = 0  # 0: hidden_size // 4

    @property
    def projection(self) -> int:
        return self.proj_size or max(1, self.hidden_size // 4)

    @property
    def label(self) -> str:
        inp = f"emb{self.embedding_size}" if self.embedding_size else "onehot"
        return f"H{self.hidden_size} B{self.batch_size} T{self.num_unrollings} {inp} P{self.projection}"


# From the smallest (the assignment) to its largest size, with two between.
DEFAULT_SIZES = (
    BenchSize(64, 64, 10),
    BenchSize(256, 64, 50, embedding_size=64),
    BenchSize(512, 128, 100, embedding_size=128),
    BenchSize(1024, 128, 100, embedding_size=128, proj_size=256),
)


def parse_size(text: str) -> BenchSize:
    """'H,B,T[,E[,P]]' -> BenchSize, e.g. '1024,128,100,128,256'."""
    try:
        values = [int(v) for v in text.split(",")]
        if not 3 <= len(values) <= 5 or min(values[:3]) <= 0 or min(values) < 0:
            raise ValueError
    except ValueError:
        raise ValueError(f"a size is H,B,T[,E[,P]] with positive H, B, T (E: embedding width, 0 one-hot; "
                         f"P: projection), got {text!r}") from None
    return BenchSize(*values)


class _BenchModel(nn.Module):
    """input (one-hot or embedding) -> one LSTM layer -> linear head; ids (B, T) -> logits (B, T, V)."""

    def __init__(self, rnn: nn.Module, vocab_size: int, embedding_size: int, output_size: int):
        super().__init__()
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, embedding_size) if embedding_size else None
        self.rnn = rnn
        self.head = nn.Linear(output_size, vocab_size)

    def embed(self, ids: Tensor) -> Tensor:
        x = ids.t()  # (T, B)
        if self.embedding is None:
            return F.one_hot(x, self.vocab_size).to(self.head.weight.dtype)  # (T, B, V)
        return self.embedding(x)  # (T, B, E)

    def forward(self, ids: Tensor, state: tuple[Tensor, Tensor]):
        out, state = self.rnn(self.embed(ids), state)  # (T, B, R)
        return self.head(out.transpose(0, 1)), state  # (B, T, V)


def make_model(implementation: str, size: BenchSize, vocab_size: int, device, dtype) -> _BenchModel:
    """The benchmark model for one implementation name of IMPLEMENTATIONS."""
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {', '.join(IMPLEMENTATIONS)}, got {implementation!r}")
    lstmp = implementation.endswith("+lstmp") or implementation == "nn.LSTM+proj"
    proj = size.projection if lstmp else 0
    inp = size.embedding_size or vocab_size
    if implementation.startswith("nn.LSTM"):
        rnn = nn.LSTM(inp, size.hidden_size, proj_size=proj)
    else:
        rnn = LSTM(inp, size.hidden_size, proj_size=proj, peepholes=lstmp, kernel=implementation.split("+")[0])
    model = _BenchModel(rnn, vocab_size, size.embedding_size, proj or size.hidden_size)
    return model.to(device=device, dtype=dtype)


def _initial_state(model: _BenchModel, batch: int) -> tuple[Tensor, Tensor]:
    rnn, weight = model.rnn, model.head.weight
    real = rnn.proj_size or rnn.hidden_size
    return weight.new_zeros(1, batch, real), weight.new_zeros(1, batch, rnn.hidden_size)


def _train_step(model, optimizer, ids, targets, state):
    state = (state[0].detach(), state[1].detach())  # truncated BPTT
    logits, state = model(ids, state)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.25)
    optimizer.step()
    return state


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def saved_activation_bytes(model: _BenchModel, ids: Tensor) -> int:
    """Bytes the LSTM layer saves for backward in one training forward (each storage once,
    parameters excluded)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: Tensor):
        try:
            storage = t.untyped_storage()
            if storage.data_ptr() not in params:
                seen[storage.data_ptr()] = storage.nbytes()
        except (RuntimeError, NotImplementedError):  # opaque tensors (e.g. oneDNN's) have no storage view
            seen[id(t)] = t.numel() * t.element_size()
        return t

    x = model.embed(ids).detach().requires_grad_(model.embedding is not None)
    state = _initial_state(model, ids.shape[0])
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out, _ = model.rnn(x, state)
    del out
    return sum(seen.values())


def run_benchmark(sizes=DEFAULT_SIZES, implementations=IMPLEMENTATIONS, vocab_size: int = 65,
                  min_seconds: float = 1.0, rounds: int = 3, device: str = "cpu",
                  dtype: torch.dtype = torch.float32, seed: int = 0, progress=None) -> list[dict]:
    """Time a training step of every implementation at every size; one dict per (size, implementation)
    with chars_per_second, ratio_to_nn_lstm (to nn.LSTM, or nn.LSTM+proj for the LSTMP rows, in this run),
    saved_bytes and memory_ratio_to_nn_lstm. progress(str) is called after each measurement."""
    device = torch.device(device)
    results = []
    for size in sizes:
        torch.manual_seed(seed)
        ids = torch.randint(vocab_size, (size.batch_size, size.num_unrollings + 1), device=device)
        inputs, targets = ids[:, :-1], ids[:, 1:]
        runs = {}
        for name in implementations:
            model = make_model(name, size, vocab_size, device, dtype)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
            state = _initial_state(model, size.batch_size)
            state = _train_step(model, optimizer, inputs, targets, state)  # warm-up (and kernel build)
            runs[name] = {"model": model, "optimizer": optimizer, "state": state, "best": 0.0,
                          "saved_bytes": saved_activation_bytes(model, inputs)}
        for _ in range(rounds):
            for name in implementations:
                run = runs[name]
                steps, start = 0, time.perf_counter()
                _sync(device)
                while True:
                    run["state"] = _train_step(run["model"], run["optimizer"], inputs, targets, run["state"])
                    steps += 1
                    _sync(device)
                    elapsed = time.perf_counter() - start
                    if elapsed >= min_seconds / rounds and steps >= 2:
                        break
                chars = steps * size.batch_size * size.num_unrollings
                run["best"] = max(run["best"], chars / elapsed)
        for name in implementations:
            baseline = "nn.LSTM+proj" if (name.endswith("+lstmp") or name == "nn.LSTM+proj") else "nn.LSTM"
            base = runs.get(baseline)
            row = {"implementation": name, "size": size.label, **asdict(size), "proj_size": size.projection
                   if baseline == "nn.LSTM+proj" else 0, "peepholes": name.endswith("+lstmp"),
                   "chars_per_second": runs[name]["best"], "saved_bytes": runs[name]["saved_bytes"],
                   "baseline": baseline,
                   "ratio_to_nn_lstm": runs[name]["best"] / base["best"] if base else None,
                   "memory_ratio_to_nn_lstm": runs[name]["saved_bytes"] / base["saved_bytes"]
                   if base and base["saved_bytes"] else None}
            results.append(row)
            if progress is not None:
                progress(format_row(row))
        del runs
    return results


def environment(device: str = "cpu", dtype: torch.dtype = torch.float32) -> dict:
    """What the numbers were measured on."""
    env = {"lstmlm": __version__, "torch": torch.__version__, "python": platform.python_version(),
           "device": device, "device_name": platform.processor() or platform.machine(),
           "dtype": str(dtype).replace("torch.", ""), "threads": torch.get_num_threads(),
           "cpu_count": os.cpu_count(), "mkldnn": torch.backends.mkldnn.is_available(),
           "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                env["device_name"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if device.startswith("cuda") and torch.cuda.is_available():
        env["device_name"] = torch.cuda.get_device_name(torch.device(device))
    return env


def format_row(row: dict) -> str:
    ratio = "" if row["ratio_to_nn_lstm"] is None else f"{row['ratio_to_nn_lstm']:.2f}x"
    mem = "" if row["memory_ratio_to_nn_lstm"] is None else f"{row['memory_ratio_to_nn_lstm']:.2f}x"
    return (f"| {row['size']} | {row['implementation']} | {row['chars_per_second']:,.0f} | {ratio} | "
            f"{row['saved_bytes'] / 2**20:,.1f} | {mem} |")


def format_table(results: list[dict], env: dict) -> str:
    """A Markdown table headed by the environment."""
    head = (f"device: {env['device']} ({env['device_name']}), torch {env['torch']}, dtype {env['dtype']}, "
            f"threads {env['threads']}\n\n"
            "| H B T input P | implementation | chars/s | vs nn.LSTM | saved for backward (MiB) | vs nn.LSTM |\n"
            "|---|---|---|---|---|---|")
    return "\n".join([head, *(format_row(r) for r in results)])


def write_results(results: list[dict], env: dict, out_dir: str | Path) -> tuple[Path, Path]:
    """bench.json (environment and rows) and bench.csv (rows, environment in a comment line) in out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = out / "bench.json", out / "bench.csv"
    json_path.write_text(json.dumps({"environment": env, "results": results}, indent=1) + "\n")
    columns = list(results[0]) if results else []
    lines = ["# " + json.dumps(env), ",".join(columns)]
    lines += [",".join("" if r[c] is None else str(r[c]) for c in columns) for r in results]
    csv_path.write_text("\n".join(lines) + "\n")
    return json_path, csv_path
