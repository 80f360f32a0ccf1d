"""Training speed and activation memory of the LSTM implementations, against torch.nn.LSTM.

One training step, as in `lstmlm train`: input (one-hot or embedding) -> one LSTM layer -> linear
head -> cross-entropy -> backward -> gradient clipping -> SGD, over B streams x T characters, with
the state carried from step to step and detached (truncated BPTT). Every implementation is timed in
the same process, in interleaved rounds (the best round counts), so the ratio to torch.nn.LSTM
(oneDNN on CPU, cuDNN on GPU) is measured on the same machine under the same load.

    implementation      the layer
    nn.LSTM             torch.nn.LSTM (with proj_size for the LSTMP rows; it has no peepholes)
    reference           lstmlm.nn.LSTM(kernel="reference"): the plain-PyTorch recurrence
    <kernel>            lstmlm.nn.LSTM(kernel=<kernel>) for each name of lstmlm.kernels.KERNELS
                        (by default those that run on the device: "cpu" on the CPU, the others on CUDA)
    <name>+lstmp        the same with peepholes and a projection to proj_size

On CUDA each implementation's whole training step is captured in a CUDA graph and replayed (for
nn.LSTM too; --no-cuda-graphs times the eager steps), timed with CUDA events over runs of steps.
precision: fp32 (TF32 off), tf32 (TF32 products in matmuls and cuDNN), bf16 (autocast).

Memory: bytes of the tensors the layer saves for backward (counted once per storage, parameters
left out), captured with torch.autograd.graph.saved_tensors_hooks during the forward pass; on CUDA
also the peak memory allocated during one forward and backward of the layer, above what was
allocated before it (torch.cuda.max_memory_allocated), which counts workspaces and temporaries too.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import __version__, kernels
from .nn import LSTM

PRECISIONS = ("fp32", "tf32", "bf16")
CPU_KERNELS = ("cpu",)  # kernels that run on the CPU; every other one is a GPU kernel
EXPERIMENTAL = ("cooperative",)  # not run on a GPU yet: timed only when named (--kernel)


def kernel_names() -> tuple[str, ...]:
    """The kernels lstmlm.kernels offers now, besides "auto" and "reference"."""
    return tuple(k for k in kernels.KERNELS if k not in ("auto", "reference"))


def default_implementations(device: str = "cpu") -> tuple[str, ...]:
    """nn.LSTM, the reference and every kernel that runs on device, then the same with peepholes and
    a projection (nn.LSTM+proj: torch's projection without peepholes)."""
    on_cpu = torch.device(device).type == "cpu"
    names = ("reference", *(k for k in kernel_names() if (k in CPU_KERNELS) == on_cpu and k not in EXPERIMENTAL))
    return ("nn.LSTM", *names, "nn.LSTM+proj", *(f"{n}+lstmp" for n in names))


def all_implementations() -> tuple[str, ...]:
    """Every implementation name make_model accepts."""
    names = ("reference", "auto", *kernel_names())
    return ("nn.LSTM", *names, "nn.LSTM+proj", *(f"{n}+lstmp" for n in names))


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
# The issue's GPU goals: H64 to H2048, B16 (persistent kernels' ground) to B1024, T50; LSTMP P = H/4.
GPU_SIZES = tuple(BenchSize(h, b, 50, embedding_size=128) for h in (64, 256, 1024, 2048) for b in (16, 64, 256, 1024))


def default_sizes(device: str = "cpu") -> tuple[BenchSize, ...]:
    return DEFAULT_SIZES if torch.device(device).type == "cpu" else GPU_SIZES


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
    """The benchmark model for one implementation name of all_implementations()."""
    if implementation not in all_implementations():
        raise ValueError(f"implementation must be one of {', '.join(all_implementations())}, got {implementation!r}")
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


def _train_step(model, optimizer, ids, targets, state, autocast=contextlib.nullcontext(), into=None):
    """One training step from state (h, c); returns the next state. With into (fixed state buffers,
    for a CUDA graph) the state is read from and written back into them, the gradients are zeroed in
    place, and nothing synchronises with the host."""
    state = (state[0].detach(), state[1].detach())  # truncated BPTT
    with autocast:
        logits, new_state = model(ids, state)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    optimizer.zero_grad(set_to_none=into is None)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.25)
    optimizer.step()
    if into is None:
        return new_state
    for buffer, new in zip(into, new_state):
        buffer.copy_(new.detach())
    return into


def _capture_step(model, optimizer, ids, targets, state, autocast) -> Callable[[], None]:
    """The training step captured in a CUDA graph, after 3 eager steps on a side stream; returns its
    replay, which advances the state held in the graph's own buffers."""
    buffers = (state[0].detach().clone(), state[1].detach().clone())
    device = ids.device
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(3):
            _train_step(model, optimizer, ids, targets, buffers, autocast, into=buffers)
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=side):
        _train_step(model, optimizer, ids, targets, buffers, autocast, into=buffers)
    return graph.replay


def saved_activation_bytes(model: _BenchModel, ids: Tensor, autocast=contextlib.nullcontext()) -> int:
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
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast:
        out, _ = model.rnn(x, state)
    del out
    return sum(seen.values())


def peak_activation_bytes(model: _BenchModel, ids: Tensor, autocast=contextlib.nullcontext()) -> int:
    """CUDA only: the peak memory allocated during one forward and backward of the LSTM layer, above
    what was allocated before it (activations kept for backward, workspaces, temporaries)."""
    device = ids.device
    x = model.embed(ids).detach().requires_grad_(model.embedding is not None)
    state = _initial_state(model, ids.shape[0])
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    with autocast:
        out, _ = model.rnn(x, state)
    out.float().sum().backward()
    del out
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base


def _time_steps(step: Callable[[], None], device: torch.device, seconds: float) -> tuple[int, float]:
    """Run step until at least `seconds` (and 2 steps) have passed; returns (steps, seconds). On CUDA
    the time is measured with CUDA events over runs of 1, 2, 4, ... steps, each ended by a
    synchronisation; elsewhere with the wall clock after every step."""
    steps, elapsed = 0, 0.0
    if device.type != "cuda":
        start = time.perf_counter()
        while True:
            step()
            steps += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds and steps >= 2:
                return steps, elapsed
    run = 1
    while elapsed < seconds or steps < 2:
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        for _ in range(run):
            step()
        end.record()
        end.synchronize()
        elapsed += begin.elapsed_time(end) / 1000
        steps += run
        run = min(2 * run, 256)
    return steps, elapsed


def check_options(device: str, precision: str, cuda_graphs: bool | None) -> None:
    """Say what is wrong with a device, precision and CUDA-graphs choice before anything runs."""
    cuda = torch.device(device).type == "cuda"
    if cuda and not torch.cuda.is_available():
        raise ValueError(f"device {device}: this torch sees no CUDA GPU; use --device cpu")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "tf32" and not cuda:
        raise ValueError("precision tf32 changes CUDA matmuls only; on the CPU use fp32 or bf16")
    if cuda_graphs and not cuda:
        raise ValueError(f"CUDA graphs need a CUDA device, got {device}; drop --cuda-graphs")


@contextlib.contextmanager
def precision_flags(precision: str, device: torch.device):
    """On CUDA: TF32 products in matmuls and cuDNN for "tf32", off otherwise; restored afterwards.
    Yields the autocast context of the training step (bf16, or none)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == "tf32"
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    try:
        yield autocast
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def run_benchmark(sizes=None, implementations=None, vocab_size: int = 65,
                  min_seconds: float = 1.0, rounds: int = 3, device: str = "cpu",
                  dtype: torch.dtype = torch.float32, seed: int = 0, progress=None, precision: str = "fp32",
                  cuda_graphs: bool | None = None, on_row=None) -> list[dict]:
    """Time a training step of every implementation at every size (default: default_sizes and
    default_implementations of the device); one dict per (size, implementation) with
    chars_per_second, ratio_to_nn_lstm (to nn.LSTM, or nn.LSTM+proj for the LSTMP rows, in this
    run), saved_bytes, memory_ratio_to_nn_lstm, on CUDA peak_bytes and peak_ratio_to_nn_lstm, and
    error (None, or why the implementation could not run; its numbers are then None).
    cuda_graphs (default: on for CUDA) captures each implementation's step in a CUDA graph; where
    capture fails the step is timed eagerly and the row says so. progress(str) is called with each
    formatted row, on_row(dict) with each row."""
    check_options(device, precision, cuda_graphs)
    device = torch.device(device)
    cuda = device.type == "cuda"
    cuda_graphs = cuda if cuda_graphs is None else cuda_graphs
    sizes = default_sizes(device) if sizes is None else sizes
    chosen = implementations
    results = []
    with precision_flags(precision, device) as autocast:
        for size in sizes:
            # each kernel where it applies: the persistent one where its weights fit, the cooperative one
            # at small batches
            implementations = [name for name in chosen or default_implementations(device) if applies(name, size)]
            torch.manual_seed(seed)
            ids = torch.randint(vocab_size, (size.batch_size, size.num_unrollings + 1), device=device)
            inputs, targets = ids[:, :-1], ids[:, 1:]
            runs = {name: _prepare(name, size, vocab_size, device, dtype, inputs, targets, autocast, cuda_graphs)
                    for name in implementations}
            for _ in range(rounds):
                for run in runs.values():
                    if run["error"] is None:
                        try:
                            steps, elapsed = _time_steps(run["step"], device, min_seconds / rounds)
                            run["best"] = max(run["best"], steps * size.batch_size * size.num_unrollings / elapsed)
                        except Exception as error:  # noqa: BLE001 - one implementation's failure ends only its row
                            run["error"] = _describe(error)
            for name in implementations:
                row = _row(name, size, runs, cuda)
                results.append(row)
                if on_row is not None:
                    on_row(row)
                if progress is not None:
                    progress(format_row(row, cuda))
            del runs
            if cuda:
                torch.cuda.empty_cache()
    return results


def applies(name: str, size: BenchSize) -> bool:
    """False for the persistent kernel at a size whose recurrent weights do not fit on chip, and for
    the cooperative one beyond its batch."""
    kernel = name.split("+")[0]
    if kernel == "cooperative":
        return size.batch_size <= kernels.gpu.COOPERATIVE_MAX_BATCH
    if kernel != "persistent":
        return True
    lstmp = name.endswith("+lstmp")
    real = size.projection if lstmp else size.hidden_size
    return kernels.gpu.persistent_fits(size.hidden_size, real, lstmp)


def _prepare(name, size, vocab_size, device, dtype, inputs, targets, autocast, cuda_graphs) -> dict:
    """Build one implementation, take a warm-up step (and build its kernel), measure its memory and
    make its timed step: a CUDA graph's replay, or an eager step."""
    run = {"best": 0.0, "saved_bytes": None, "peak_bytes": None, "error": None, "graphed": False, "note": ""}
    try:
        model = make_model(name, size, vocab_size, device, dtype)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        state = _train_step(model, optimizer, inputs, targets, _initial_state(model, size.batch_size), autocast)
        run["saved_bytes"] = saved_activation_bytes(model, inputs, autocast)
        if device.type == "cuda":
            run["peak_bytes"] = peak_activation_bytes(model, inputs, autocast)
        if cuda_graphs:
            try:
                run["step"], run["graphed"] = _capture_step(model, optimizer, inputs, targets, state, autocast), True
                return run
            except RuntimeError as error:
                run["note"] = f"timed eagerly: CUDA graph capture failed ({_describe(error)})"
                torch.cuda.synchronize(device)

        def step():
            run["state"] = _train_step(model, optimizer, inputs, targets, run["state"], autocast)

        run["state"], run["step"] = state, step
    except Exception as error:  # noqa: BLE001 - one implementation's failure ends only its row
        run["error"] = _describe(error)
        run.pop("step", None)
    return run


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())[:200]}"


def _row(name: str, size: BenchSize, runs: dict, cuda: bool) -> dict:
    baseline = "nn.LSTM+proj" if (name.endswith("+lstmp") or name == "nn.LSTM+proj") else "nn.LSTM"
    run, base = runs[name], runs.get(baseline)
    ok = run["error"] is None
    base_ok = base is not None and base["error"] is None

    def ratio(key):
        return run[key] / base[key] if ok and base_ok and base[key] else None

    return {"implementation": name, "size": size.label, **asdict(size),
            "proj_size": size.projection if baseline == "nn.LSTM+proj" else 0, "peepholes": name.endswith("+lstmp"),
            "chars_per_second": run["best"] if ok else None, "saved_bytes": run["saved_bytes"] if ok else None,
            "baseline": baseline, "ratio_to_nn_lstm": ratio("best"), "memory_ratio_to_nn_lstm": ratio("saved_bytes"),
            "peak_bytes": run["peak_bytes"] if ok else None, "peak_ratio_to_nn_lstm": ratio("peak_bytes") if cuda else None,
            "cuda_graph": run["graphed"], "error": run["error"], "note": run["note"]}


def environment(device: str = "cpu", dtype: torch.dtype = torch.float32, precision: str = "fp32",
                cuda_graphs: bool | None = None) -> dict:
    """What the numbers were measured on."""
    cuda = torch.device(device).type == "cuda"
    env = {"lstmlm": __version__, "torch": torch.__version__, "python": platform.python_version(),
           "device": device, "device_name": platform.processor() or platform.machine(),
           "dtype": str(dtype).replace("torch.", ""), "threads": torch.get_num_threads(),
           "cpu_count": os.cpu_count(), "mkldnn": torch.backends.mkldnn.is_available(),
           "precision": precision, "cuda_graphs": cuda if cuda_graphs is None else cuda_graphs,
           "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                env["device_name"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if cuda and torch.cuda.is_available():
        env["device_name"] = torch.cuda.get_device_name(torch.device(device))
        env["cuda"] = torch.version.cuda
        env["cudnn"] = torch.backends.cudnn.version()
        try:
            import triton
            env["triton"] = triton.__version__
        except ImportError:
            env["triton"] = None
    return env


def format_row(row: dict, peak: bool = False) -> str:
    """One Markdown table row; peak adds the CUDA peak-memory columns."""
    def ratio(value):
        return "" if value is None else f"{value:.2f}x"

    def mib(value):
        return "" if value is None else f"{value / 2**20:,.1f}"

    name = row["implementation"] + (" (eager)" if row.get("note") else "")
    if row.get("error"):
        return f"| {row['size']} | {name} | failed: {row['error']} |" + " |" * (5 if peak else 3)
    cells = [row["size"], name, f"{row['chars_per_second']:,.0f}", ratio(row["ratio_to_nn_lstm"]),
             mib(row["saved_bytes"]), ratio(row["memory_ratio_to_nn_lstm"])]
    if peak:
        cells += [mib(row.get("peak_bytes")), ratio(row.get("peak_ratio_to_nn_lstm"))]
    return "| " + " | ".join(cells) + " |"


def format_table(results: list[dict], env: dict) -> str:
    """A Markdown table headed by the environment."""
    cuda = env["device"].startswith("cuda")
    extra = ""
    if cuda or env.get("precision", "fp32") != "fp32":
        extra = f", precision {env.get('precision')}, CUDA graphs {'on' if env.get('cuda_graphs') else 'off'}"
    if cuda:
        extra += f", CUDA {env.get('cuda')}, cuDNN {env.get('cudnn')}, Triton {env.get('triton')}"
    columns = "| H B T input P | implementation | chars/s | vs nn.LSTM | saved for backward (MiB) | vs nn.LSTM |"
    rule = "|---|---|---|---|---|---|"
    if cuda:
        columns += " peak fwd+bwd (MiB) | vs nn.LSTM |"
        rule += "---|---|"
    head = (f"device: {env['device']} ({env['device_name']}), torch {env['torch']}, dtype {env['dtype']}, "
            f"threads {env['threads']}{extra}\n\n{columns}\n{rule}")
    return "\n".join([head, *(format_row(r, cuda) for r in results)])


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
