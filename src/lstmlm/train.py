"""Training: truncated BPTT over batch streams, periodic validation, samples and atomic checkpoints.

A run directory (--out) holds:
    config.json         model and training configuration, vocabulary, versions
    metrics.csv         one row every valid_every steps (train and valid bits per character, speed)
    samples.txt         the samples printed during training
    checkpoint.pt       the latest checkpoint (see checkpoint.py): `--resume RUN_DIR` continues from it
    summary.json        final validation result
    learning_curve.png  bits per character against steps
"""
from __future__ import annotations

import csv
import functools
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from .corpora import BIBLE_SPECS
from .distributed import World, all_mean, any_rank, close_world, gather_rows, init_world
from .data import SPLITS, BatchStream, load_ids, split_ids, to_tokens
from .evaluate import evaluate
from .kernels import check_device
from .model import LanguageModel, ModelConfig, detach_state, nats_per_token
from .sample import sample_text
from .vocab import PairVocab, Vocab

logger = logging.getLogger(__name__)

NAMED_CORPORA = (*BIBLE_SPECS, "text8")
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")


@dataclass(frozen=True)
class TrainConfig:
    """What to train on and how. Defaults are the assignment's recipe."""

    corpus: str = "bible"          # "bible" (embedded), "text8" (downloaded), or a path
    alphabet: str = "raw"          # "raw" or "text8" (clean to a-z and space)
    split: str = "standard"        # "standard" (90/5/5) or "assignment" (first 1,000 chars validate)
    batch_size: int = 64
    num_unrollings: int = 10
    steps: int = 7001
    optimizer: str = "sgd"         # "sgd" or "adam"
    learning_rate: float = 10.0
    lr_decay: float = 0.1          # the rate is multiplied by lr_decay every lr_decay_every steps
    lr_decay_every: int = 5000
    clip_grad_norm: float = 1.25   # global gradient norm; 0 disables clipping
    weight_decay: float = 0.0
    valid_every: int = 100
    valid_chars: int = 0           # periodic validation on the first valid_chars of the split; 0: all of it
    valid_batch_size: int = 64     # parallel streams for validation
    sample_every: int = 1000       # 0: no samples during training
    sample_count: int = 5
    sample_length: int = 80
    checkpoint_every: int = 1000
    seed: int = 0
    max_pairs: int = 4096          # bigram tokens: all V² pairs up to this many, else the pairs seen in training
    max_seconds: float = 0.0       # stop early after this much training wall time (0: no limit)
    precision: str = "fp32"        # "fp32", "tf32" (CUDA matmuls), "bf16" or "fp16" (autocast; cell state stays fp32)
    cuda_graphs: bool = False      # capture the whole training step in a CUDA graph and replay it (CUDA, one process)

    def __post_init__(self):
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        for name in ("batch_size", "num_unrollings", "steps", "lr_decay_every", "valid_every",
                     "valid_batch_size", "checkpoint_every", "sample_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("valid_chars", "sample_every", "sample_count", "max_pairs", "max_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        check_optimization(self)
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.cuda_graphs and self.precision == "fp16":
            raise ValueError("--cuda-graphs does not work with --precision fp16: its gradient scaler decides on the "
                             "host whether to skip each step; use --precision bf16, or drop --cuda-graphs")


def check_optimization(cfg) -> None:
    """Validate a config's learning_rate, lr_decay and clip_grad_norm (shared by every trainer)."""
    if not cfg.learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {cfg.learning_rate}")
    if not 0 < cfg.lr_decay <= 1:
        raise ValueError(f"lr_decay must be in (0, 1], got {cfg.lr_decay}")
    if not cfg.clip_grad_norm >= 0:
        raise ValueError(f"clip_grad_norm must be >= 0 (0 disables), got {cfg.clip_grad_norm}")


# Each preset gives values for ModelConfig ("model") and TrainConfig ("train"); flags override them.
PRESETS: dict[str, dict[str, dict]] = {
    # The assignment notebook: 64 nodes, one-hot input, batch 64 x 10 unrollings, SGD at 10 decayed
    # x0.1 every 5,000 steps, gradients clipped to 1.25, 7,001 steps on text8's assignment split.
    "assignment": {
        "model": {"input": "onehot", "hidden_size": 64, "init": "notebook"},
        "train": {"corpus": "text8", "split": "assignment", "batch_size": 64, "num_unrollings": 10,
                  "steps": 7001, "optimizer": "sgd", "learning_rate": 10.0, "lr_decay": 0.1,
                  "lr_decay_every": 5000, "clip_grad_norm": 1.25, "valid_every": 100,
                  "valid_batch_size": 1, "sample_every": 1000, "sample_count": 5, "sample_length": 80},
    },
    # The README's first command: the embedded King James Bible in about a minute and a half on 2 cores.
    "quickstart": {
        "model": {"input": "embedding", "embedding_size": 32, "hidden_size": 256},
        "train": {"corpus": "bible", "split": "standard", "batch_size": 32, "num_unrollings": 50,
                  "steps": 1200, "optimizer": "adam", "learning_rate": 3e-3, "lr_decay": 0.3,
                  "lr_decay_every": 800, "clip_grad_norm": 1.0, "valid_every": 200, "valid_chars": 50_000,
                  "sample_every": 0, "checkpoint_every": 400},
    },
    # Best test bits per character on text8 / wiki8 (standard split) in 10 minutes on 2 CPU cores.
    "text8-cpu": {
        "model": {"input": "embedding", "embedding_size": 64, "hidden_size": 512},
        "train": {"corpus": "text8", "split": "standard", "batch_size": 64, "num_unrollings": 100,
                  "steps": 1_000_000, "max_seconds": 540, "optimizer": "adam", "learning_rate": 2e-3,
                  "lr_decay": 0.7, "lr_decay_every": 300, "clip_grad_norm": 1.0, "valid_every": 200,
                  "valid_chars": 200_000, "sample_every": 0, "checkpoint_every": 200},
    },
    # Best test bits per character in 10 minutes on one H100/H200: a 2-layer LSTMP, bf16 autocast.
    # Not yet run on a GPU (no GPU was lent to the session that wrote it); tested on CPU at small size.
    "text8-gpu": {
        "model": {"input": "embedding", "embedding_size": 128, "hidden_size": 2048, "num_layers": 2,
                  "proj_size": 512, "peepholes": True, "dropout": 0.1, "locked_dropout": True},
        "train": {"corpus": "text8", "split": "standard", "batch_size": 256, "num_unrollings": 150,
                  "steps": 1_000_000, "max_seconds": 570, "precision": "bf16", "optimizer": "adam",
                  "learning_rate": 2e-3, "lr_decay": 0.6, "lr_decay_every": 1500, "clip_grad_norm": 1.0,
                  "valid_every": 500, "valid_chars": 500_000, "valid_batch_size": 256, "sample_every": 0,
                  "checkpoint_every": 500},
    },
    # A modern LSTMP language model: embeddings, two projected layers with peepholes, dropout, Adam.
    "lstmp": {
        "model": {"input": "embedding", "embedding_size": 64, "hidden_size": 512, "num_layers": 2,
                  "proj_size": 256, "peepholes": True, "dropout": 0.1},
        "train": {"batch_size": 64, "num_unrollings": 100, "steps": 20_000, "optimizer": "adam",
                  "learning_rate": 2e-3, "lr_decay": 0.5, "lr_decay_every": 5000, "clip_grad_norm": 1.0,
                  "valid_every": 500, "valid_chars": 200_000, "sample_every": 2000, "checkpoint_every": 500},
    },
}


def split_overrides(overrides: dict, model_class, train_class, what: str = "configuration") -> tuple[dict, dict]:
    """Given values (field name -> value, None meaning 'not given') split between two config
    dataclasses; an unknown field name is an error."""
    model_names = {f.name for f in fields(model_class)}
    train_names = {f.name for f in fields(train_class)}
    unknown = set(overrides) - model_names - train_names
    if unknown:
        raise ValueError(f"unknown {what} fields: {', '.join(sorted(unknown))}")
    given = {k: v for k, v in overrides.items() if v is not None}
    return ({k: v for k, v in given.items() if k in model_names},
            {k: v for k, v in given.items() if k in train_names})


def make_configs(preset: str | None, overrides: dict) -> tuple[ModelConfig, TrainConfig]:
    """Preset values, then overrides (field name -> value, None meaning 'not given')."""
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    chosen = PRESETS.get(preset, {"model": {}, "train": {}})
    model_given, train_given = split_overrides(overrides, ModelConfig, TrainConfig)
    model = {**chosen["model"], **model_given}
    train = {**chosen["train"], **train_given}
    if "corpus" in train:
        train["corpus"] = canonical_corpus(train["corpus"])
    return ModelConfig(**model), TrainConfig(**train)


def canonical_corpus(spec: str) -> str:
    """A named corpus stays a name; a path becomes absolute, so resume and eval work from anywhere."""
    return spec if spec in NAMED_CORPORA else str(Path(spec).expanduser().resolve())


def learning_rate_at(cfg: TrainConfig, step: int) -> float:
    """Staircase decay, as tf.train.exponential_decay(..., staircase=True) at 0-based step."""
    return cfg.learning_rate * cfg.lr_decay ** (step // cfg.lr_decay_every)


def make_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """SGD or Adam over the model's parameters. With cfg.cuda_graphs the update is torch's fused kernel
    (and Adam's is capturable), which also reads a learning rate held in a tensor (see StaticStep)."""
    graphs = {"fused": True, **({"capturable": True} if cfg.optimizer == "adam" else {})} if cfg.cuda_graphs else {}
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay, **graphs)
    return torch.optim.SGD(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay, **graphs)


def check_cuda_graphs(cfg: TrainConfig, world: World) -> None:
    """Refuse --cuda-graphs where the captured step cannot run: off CUDA, or across several processes."""
    if not cfg.cuda_graphs:
        return
    if torch.device(world.device).type != "cuda":
        raise ValueError(f"--cuda-graphs captures the training step on a CUDA GPU, and this run's device is "
                         f"{world.device}; drop --cuda-graphs (a run saved with it resumes only on CUDA)")
    if world.size > 1:
        raise ValueError(f"--cuda-graphs runs in one process, and this run has {world.size}: DDP's gradient "
                         f"all-reduce and the loss averaged over ranks are not captured; drop --cuda-graphs or "
                         f"run one process")


class MetricsLog:
    """metrics.csv, appended row by row; on resume, rows after the checkpoint's step are dropped."""

    COLUMNS = ("step", "learning_rate", "train_nats_per_char", "train_bits_per_char", "train_perplexity",
               "valid_bits_per_char", "valid_perplexity", "chars_per_second", "elapsed_seconds")

    def __init__(self, path: Path, keep_up_to_step: int):
        self.path = path
        rows = self.read(path) if keep_up_to_step > 0 and path.exists() else []
        rows = [r for r in rows if int(r["step"]) <= keep_up_to_step]
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, self.COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)
        self.rows = rows

    @staticmethod
    def read(path: Path) -> list[dict]:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))

    def append(self, row: dict) -> None:
        row = {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.COLUMNS).writerow(row)
        self.rows.append(row)


def _tensorboard(out_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(out_dir / "tensorboard"))


def plot_learning_curve(rows: list[dict], path: Path) -> None:
    """Train and validation bits per character against steps, as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [int(r["step"]) for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, [float(r["train_bits_per_char"]) for r in rows], label="train (running mean)")
    ax.plot(steps, [float(r["valid_bits_per_char"]) for r in rows], label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("bits per character")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


class Run:
    """Everything a training run holds between steps; what a checkpoint saves and restores."""

    def __init__(self, model_cfg: ModelConfig, train_cfg: TrainConfig, vocab: Vocab, ids: np.ndarray,
                 world: World | None = None):
        self.model_cfg, self.cfg, self.vocab = model_cfg, train_cfg, vocab
        self.world = world or World()
        self.rows = self.world.streams(train_cfg.batch_size)  # this rank's streams of the global batch
        self.splits = split_ids(ids, train_cfg.split)
        self.pairs = None
        if model_cfg.tokens == "bigram":
            self.pairs = PairVocab.from_ids(vocab, self.splits["train"], train_cfg.max_pairs)
            if len(self.splits["train"]) % 2:
                logger.info("the training text has an odd number of characters: its last one is context only, "
                            "never a target")
        torch.manual_seed(train_cfg.seed)
        self.model = LanguageModel(len(vocab) if self.pairs is None else len(self.pairs), model_cfg)
        self.model.to(self.world.device)
        check_device(model_cfg.kernel, self.world.device)  # e.g. --kernel triton on a CPU, before any file
        if self.world.rank > 0:  # different dropout masks on every rank
            torch.manual_seed(train_cfg.seed + 7919 * self.world.rank)
        self.trainer = self.model  # what the training step calls: the model, or DDP around it
        if self.world.size > 1:
            self.trainer = torch.nn.parallel.DistributedDataParallel(self.model)
        self.optimizer = make_optimizer(train_cfg, self.model)
        device_type = torch.device(self.world.device).type
        self.autocast = torch.autocast(device_type, dtype=torch.bfloat16 if train_cfg.precision == "bf16" else torch.float16,
                                       enabled=train_cfg.precision in ("bf16", "fp16"))
        self.scaler = torch.amp.GradScaler(device_type, enabled=train_cfg.precision == "fp16")
        if train_cfg.precision == "tf32":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        try:
            self.stream = BatchStream(to_tokens(self.splits["train"], self.pairs), train_cfg.batch_size,
                                      train_cfg.num_unrollings, model_cfg.context)
        except ValueError as error:  # say which corpus is too short
            raise ValueError(f"corpus {train_cfg.corpus} ({train_cfg.split} split): {error}") from None
        self.state = self.model.initial_state(self.rows.stop - self.rows.start)  # this rank's streams
        self.step = 0

    def checkpoint_payload(self) -> dict:
        optimizer = self.optimizer.state_dict()
        for group in optimizer["param_groups"]:  # a StaticStep's learning rate is a tensor on the device
            group["lr"] = float(group["lr"])
        return {
            "model_config": asdict(self.model_cfg), "train_config": asdict(self.cfg),
            "vocab": self.vocab.to_list(), "lstmlm_version": __version__,
            "pair_vocab": None if self.pairs is None else {"pairs": self.pairs.to_list()},
            "model": self.model.state_dict(), "optimizer": optimizer,
            "step": self.step, "data": self.stream.state_dict(),  # the global cursors and LSTM state
            "state": [gather_rows(t.detach(), self.world, dim=1).cpu() for t in self.state],
            "rng": {"torch": torch.get_rng_state(), "scaler": self.scaler.state_dict()},
        }

    def restore(self, payload: dict) -> None:
        if self.pairs is not None and self.pairs.to_list() != payload["pair_vocab"]["pairs"]:
            raise ValueError("the corpus's training pairs differ from the checkpoint's pair vocabulary; "
                             "resume with the corpus the run started with")
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.stream.load_state_dict(payload["data"])
        self.state = tuple(t[:, self.rows].to(self.world.device) for t in payload["state"])
        self.step = int(payload["step"])
        if self.world.rank == 0:
            torch.set_rng_state(payload["rng"]["torch"])
        else:
            torch.manual_seed(self.cfg.seed + 7919 * self.world.rank + self.step)
        if payload["rng"].get("scaler"):
            self.scaler.load_state_dict(payload["rng"]["scaler"])


def start_training(model_cfg: ModelConfig, train_cfg: TrainConfig, out_dir: str | os.PathLike,
                   progress: bool = True) -> dict:
    """Train a new model into out_dir (which must not already hold a run). Returns the summary
    (on rank 0 of a distributed run; other ranks return {})."""
    out = Path(out_dir).expanduser()
    if (out / CHECKPOINT_NAME).exists():
        raise FileExistsError(f"{out} already holds a run; continue it with `lstmlm train --resume {out}` "
                              f"or choose another --out")
    t0 = time.perf_counter()
    world = init_world()
    _check_world(train_cfg, world)
    vocab, ids = load_ids(train_cfg.corpus, train_cfg.alphabet)
    run = Run(model_cfg, train_cfg, vocab, ids, world)
    if not world.is_main:
        return _train_loop(run, out, False, t0)
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / "config.json", {
        "model": asdict(model_cfg), "train": asdict(train_cfg), "vocab": vocab.to_list(),
        "parameters": sum(p.numel() for p in run.model.parameters()),
        "lstmlm_version": __version__, "torch_version": torch.__version__})
    logger.info("model: %d parameters; vocabulary: %d symbols", sum(p.numel() for p in run.model.parameters()),
                len(vocab))
    return _train_loop(run, out, progress, t0)


def resume_training(run_dir: str | os.PathLike, steps: int | None = None, progress: bool = True) -> dict:
    """Continue the run in run_dir from its latest checkpoint (optionally to a new total of steps)."""
    t0 = time.perf_counter()
    out = Path(run_dir).expanduser()
    payload = load_checkpoint(out / CHECKPOINT_NAME if out.is_dir() else out)
    out = out if out.is_dir() else out.parent
    model_cfg = ModelConfig(**payload["model_config"])
    train_cfg = TrainConfig(**payload["train_config"])
    if steps is not None:
        train_cfg = replace(train_cfg, steps=steps)
    vocab = Vocab(payload["vocab"])
    _, ids = load_ids(train_cfg.corpus, train_cfg.alphabet, vocab)
    world = init_world()
    _check_world(train_cfg, world)
    run = Run(model_cfg, train_cfg, vocab, ids, world)
    try:
        run.restore(payload)
    except (KeyError, RuntimeError) as error:  # a field missing, renamed or of the wrong shape
        raise ValueError(f"the checkpoint in {out} does not fit this lstmlm {__version__} (written by lstmlm "
                         f"{payload.get('lstmlm_version')}): {' '.join(str(error).split())[:300]}; start a new "
                         f"run, or resume with the lstmlm version that wrote it") from None
    if world.is_main:
        logger.info("resuming %s at step %d of %d on %d process(es)", out, run.step, train_cfg.steps, world.size)
    return _train_loop(run, out, progress and world.is_main, t0)


def _samples(run: Run, step: int) -> list[str]:
    cfg = run.cfg
    return ["".join(sample_text(run.model, run.vocab, "", cfg.sample_length, seed=cfg.seed * 1_000_003 + step * 101 + k,
                                pairs=run.pairs)) for k in range(cfg.sample_count)]


def _check_world(cfg: TrainConfig, world: World) -> None:
    try:
        check_cuda_graphs(cfg, world)
    except ValueError:
        close_world(world)
        raise


def _forward_loss(run: Run, batch: torch.Tensor, state) -> tuple[torch.Tensor, tuple]:
    """Forward and loss under the run's autocast: batch (B / world, T+1+context) ids on the device,
    state (h, c) without history. Returns the loss in nats per token (0-dim) and the next state."""
    context = run.model_cfg.context
    with run.autocast:
        logits, state = run.trainer(batch[:, :-1], state)  # (B / world, T, V)
        loss = nats_per_token(logits.float(), batch[:, 1 + context:])
    return loss, state


def _clip_and_update(run: Run) -> None:
    """Clip the gradients to cfg.clip_grad_norm (0: no clipping), then take the optimizer step."""
    if run.cfg.clip_grad_norm > 0:
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.clip_grad_norm)
    run.scaler.step(run.optimizer)
    run.scaler.update()


def _train_step(run: Run, lr: float) -> float:
    """One optimizer step on this rank's streams; returns the loss in nats per token, averaged over
    ranks (NaN if any rank's loss is not finite, before the parameters change)."""
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    batch = run.stream.next_batch()[run.rows].to(run.world.device)  # (B / world, T+1+context)
    loss, run.state = _forward_loss(run, batch, detach_state(run.state))
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()  # DDP averages the gradients over ranks here
    loss_value = all_mean(loss.detach(), run.world).item()
    if not math.isfinite(loss_value):
        return loss_value
    _clip_and_update(run)
    run.step += 1
    return loss_value


class StaticStep:
    """The training step on buffers that never move: what --cuda-graphs captures once, then replays.

    The batch (B, T+1+context) ids, the carried LSTM state h (L, B, R), c (L, B, H) and the learning
    rate (a 0-dim tensor that every parameter group reads) live in fixed tensors, copied in
    before each step. body() reads them and runs forward, loss, backward, clipping and the optimizer
    step with no host synchronisation, writing the loss into self.loss and the next state back into
    the state buffers, which are run.state (so checkpoints save them). With capture (the default on
    CUDA) the first WARMUP_STEPS calls run body() eagerly on a side stream (kernels compile, gradients
    and optimizer state are allocated), the next captures it into a CUDA graph, and every later call
    replays the graph. Without capture (the CPU, in tests) body() simply runs, and on the CPU it gives
    the same numbers as _train_step, bit for bit.

    One difference from _train_step: the update is inside the step, so a non-finite loss is seen after
    it has reached the parameters. The training loop then stops without checkpointing them, as it
    does when _train_step sees one before the update; the last good checkpoint is kept either way.
    """

    WARMUP_STEPS = 3

    def __init__(self, run: Run, capture: bool | None = None):
        device = torch.device(run.world.device)
        self.run = run
        self.capture = device.type == "cuda" if capture is None else capture
        rows, cfg = run.rows.stop - run.rows.start, run.cfg
        self.batch = torch.zeros(rows, cfg.num_unrollings + 1 + run.model_cfg.context, dtype=torch.long,
                                 device=device)  # (B / world, T+1+context)
        self.state = tuple(t.detach().clone() for t in run.state)  # h (L, B, R), c (L, B, H)
        run.state = self.state
        # fused updates read a CUDA lr as float32 and a CPU lr as a double, as they read a Python float
        self.lr = torch.tensor(cfg.learning_rate, dtype=torch.float64 if device.type == "cpu" else torch.float32,
                               device=device)
        for group in run.optimizer.param_groups:
            group["lr"] = self.lr
        self.loss = torch.zeros((), device=device)  # nats per token of the last step
        self.side_stream = torch.cuda.Stream(device) if self.capture else None
        self.graph = None
        self.eager_steps = 0

    def body(self) -> None:
        """Forward, loss, backward, clipping and update on the buffers; no host synchronisation."""
        run = self.run
        loss, state = _forward_loss(run, self.batch, self.state)
        run.optimizer.zero_grad(set_to_none=False)  # the gradients keep their addresses
        run.scaler.scale(loss).backward()
        _clip_and_update(run)
        for buffer, new in zip(self.state, state):
            buffer.copy_(new.detach())
        self.loss.copy_(loss.detach())

    def __call__(self, lr: float) -> float:
        """One optimizer step on the next batch at learning rate lr. Returns the loss in nats per token;
        run.step advances only if it is finite."""
        run = self.run
        self.batch.copy_(run.stream.next_batch()[run.rows])
        self.lr.fill_(lr)
        if self.graph is None and self.capture and self.eager_steps >= self.WARMUP_STEPS:
            self.graph = self._capture()
        if self.graph is not None:
            self.graph.replay()
        elif self.capture:  # warm-up, on a side stream as graph capture requires
            current = torch.cuda.current_stream(self.batch.device)
            self.side_stream.wait_stream(current)
            with torch.cuda.stream(self.side_stream):
                self.body()
            current.wait_stream(self.side_stream)
            self.eager_steps += 1
        else:
            self.body()
        loss_value = self.loss.item()
        if math.isfinite(loss_value):
            run.step += 1
        return loss_value

    def _capture(self) -> torch.cuda.CUDAGraph:
        logger.info("capturing the training step in a CUDA graph after %d eager steps", self.eager_steps)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, stream=self.side_stream):
                self.body()
        except RuntimeError as error:  # the first error raised inside the capture says most
            first = error
            while isinstance(first.__context__, RuntimeError):
                first = first.__context__
            raise ValueError(f"--cuda-graphs could not capture the training step ({' '.join(str(first).split())[:300]}); "
                             f"train without --cuda-graphs") from error
        return graph


def _train_loop(run: Run, out: Path, progress: bool, t0: float) -> dict:
    from tqdm import tqdm

    cfg, model, main = run.cfg, run.model, run.world.is_main
    valid_ids = run.splits["valid"][:cfg.valid_chars] if cfg.valid_chars else run.splits["valid"]
    metrics = MetricsLog(out / "metrics.csv", keep_up_to_step=run.step) if main else None
    board = _tensorboard(out) if main else None
    chars_per_token = 1 if run.pairs is None else 2
    chars_per_step = cfg.batch_size * cfg.num_unrollings * chars_per_token  # the global batch
    loss_sum, loss_steps, train_seconds, budget_seconds = 0.0, 0, 0.0, 0.0
    last_valid = None
    bar = tqdm(total=cfg.steps, initial=run.step, disable=not progress, unit="step", dynamic_ncols=True,
               leave=True, desc="train")
    say = bar.write if progress else logger.info
    model.train()
    step = StaticStep(run) if cfg.cuda_graphs else functools.partial(_train_step, run)
    while run.step < cfg.steps:
        tick = time.perf_counter()
        lr = learning_rate_at(cfg, run.step)
        loss_value = step(lr)
        if not math.isfinite(loss_value):
            bar.close()
            close_world(run.world)
            raise FloatingPointError(f"the training loss became {loss_value} at step {run.step + 1}; training "
                                     f"stopped and the last good checkpoint in {out} is kept (try a lower "
                                     f"--learning-rate or --clip-grad-norm)")
        train_seconds += time.perf_counter() - tick
        budget_seconds += time.perf_counter() - tick
        final = run.step == cfg.steps or (cfg.max_seconds > 0 and any_rank(budget_seconds >= cfg.max_seconds,
                                                                             run.world))
        loss_sum += loss_value
        loss_steps += 1
        bar.update(1)
        chars_per_second = loss_steps * chars_per_step / max(train_seconds, 1e-9)
        if run.step % 10 == 0:
            bpc = loss_value / chars_per_token / math.log(2)
            bar.set_postfix(loss=f"{loss_value:.3f}", ppl=f"{2 ** bpc:.2f}", bpc=f"{bpc:.3f}",
                            chars_s=f"{chars_per_second:,.0f}", refresh=False)

        if main and (run.step % cfg.valid_every == 0 or final):
            last_valid = evaluate(model, valid_ids, cfg.valid_batch_size, max(cfg.num_unrollings, 100), run.pairs)
            train_nats = loss_sum / loss_steps / chars_per_token
            row = {"step": run.step, "learning_rate": lr, "train_nats_per_char": train_nats,
                   "train_bits_per_char": train_nats / math.log(2), "train_perplexity": math.exp(train_nats),
                   "valid_bits_per_char": last_valid["bits_per_char"], "valid_perplexity": last_valid["perplexity"],
                   "chars_per_second": chars_per_second, "elapsed_seconds": time.perf_counter() - t0}
            metrics.append(row)
            if board is not None:
                for key in ("train_bits_per_char", "valid_bits_per_char", "learning_rate", "chars_per_second"):
                    board.add_scalar(key, row[key], run.step)
            say(f"step {run.step}: train {row['train_bits_per_char']:.3f} bits/char, valid "
                f"{last_valid['bits_per_char']:.3f} bits/char (perplexity {last_valid['perplexity']:.2f}), "
                f"lr {lr:g}, {chars_per_second:,.0f} chars/s")
        if run.step % cfg.valid_every == 0 or final:
            loss_sum, loss_steps, train_seconds = 0.0, 0, 0.0

        if main and cfg.sample_every and run.step % cfg.sample_every == 0:
            samples = _samples(run, run.step)
            with open(out / "samples.txt", "a") as f:
                f.write(f"step {run.step}\n" + "".join(s + "\n" for s in samples))
            for s in samples:
                say(f"  sample: {s!r}")

        if run.step % cfg.checkpoint_every == 0 or final:
            payload = run.checkpoint_payload()  # every rank takes part: it gathers the LSTM state
            if main:
                save_checkpoint(out / CHECKPOINT_NAME, payload)
        if final:
            break
    bar.close()
    if board is not None:
        board.close()
    if not main:
        close_world(run.world)
        return {}

    full_valid = run.splits["valid"]
    if last_valid is None or len(valid_ids) != len(full_valid):
        last_valid = evaluate(model, full_valid, cfg.valid_batch_size, max(cfg.num_unrollings, 100), run.pairs)
    summary = {
        "steps": run.step, "valid_bits_per_char": last_valid["bits_per_char"],
        "valid_perplexity": last_valid["perplexity"], "valid_chars": last_valid["chars"],
        "train_chars": run.step * chars_per_step, "wall_seconds": time.perf_counter() - t0,
        "sample": "".join(sample_text(model, run.vocab, "", 200, seed=cfg.seed, pairs=run.pairs)),
        "run_dir": str(out),
    }
    _write_json(out / "summary.json", summary)
    if metrics.rows:
        plot_learning_curve(metrics.rows, out / "learning_curve.png")
    close_world(run.world)
    return summary
