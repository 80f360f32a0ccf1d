"""Data parallelism on PyTorch's own engine: DistributedDataParallel under `torchrun`.

    torchrun --nproc-per-node 2 -m lstmlm train ...          (one machine)
    torchrun --nnodes 2 --node-rank R --rdzv-endpoint HOST:PORT --nproc-per-node 8 -m lstmlm train ...

The global batch keeps its meaning at any world size: B streams in all, rank r of W running
streams [r·B/W, (r+1)·B/W). DDP averages the gradients, so a step equals a single-process step
over all B streams. Rank 0 validates, samples, logs and checkpoints; checkpoints hold the global
data cursors and LSTM state, so a run resumes on any number of processes that divides B.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    device: str = "cpu"  # where this rank computes: "cuda:LOCAL_RANK" when CUDA is available, else "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def streams(self, batch_size: int) -> slice:
        """This rank's rows of the global batch."""
        if batch_size % self.size:
            raise ValueError(f"--batch-size {batch_size} must be divisible by the number of processes {self.size}")
        per_rank = batch_size // self.size
        return slice(self.rank * per_rank, (self.rank + 1) * per_rank)


def init_world() -> World:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, ...), or run alone."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    if size == 1:
        return World(device=device)
    if not dist.is_initialized():
        if device != "cpu":
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if device != "cpu" else "gloo")
    return World(dist.get_rank(), dist.get_world_size(), device)


def all_mean(values: torch.Tensor, world: World) -> torch.Tensor:
    """The mean over ranks of a small tensor (the identity alone)."""
    if world.size > 1:
        values = values.clone()
        dist.all_reduce(values)
        values /= world.size
    return values


def any_rank(flag: bool, world: World) -> bool:
    """True on every rank if it is true on any."""
    if world.size == 1:
        return flag
    value = torch.tensor([float(flag)], device=world.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def gather_rows(tensor: torch.Tensor, world: World, dim: int) -> torch.Tensor:
    """Concatenate every rank's slice along dim, in rank order (the global batch)."""
    if world.size == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world.size)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=dim)


def close_world(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
