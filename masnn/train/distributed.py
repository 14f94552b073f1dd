"""Distributed data parallel helpers (``torchrun``): process group, sharding, reductions.

Launch with ``torchrun --nproc_per_node=N -m masnn.cli train ...``. The process group uses
NCCL on CUDA and gloo on CPU. Training batches are *global*: ``run.batch_size`` samples per
step, split evenly over the ranks, so N processes compute the same update as one process
(gradients are averaged) for layers without batch statistics; BatchNorm uses SyncBatchNorm on
CUDA and per-rank statistics on CPU. Evaluation shards are disjoint and unpadded (rank ``r`` takes
samples ``r, r + N, ...``) and counts are summed over ranks, so every rank reports the
metric of the whole set (the official code divided a shard's count by the full set size).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def shutdown_distributed() -> None:
    """Leave the process group (the trainer synchronises the ranks before, on success)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def train_batches(
    n: int, batch_size: int, seed: int, epoch: int, info: DistInfo
) -> list[list[int]]:
    """This rank's index lists for one epoch.

    The permutation depends only on ``(seed, epoch)``; global batches of ``batch_size`` are cut
    from it (the incomplete tail is dropped) and rank ``r`` takes positions ``r::world_size`` of
    each, so the union over ranks of step ``k`` is exactly the single-process batch ``k``.
    """
    if batch_size % info.world_size:
        raise ValueError(
            f"run.batch_size={batch_size} must be divisible by the number of processes "
            f"({info.world_size}): batches are global"
        )
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    perm = torch.randperm(n, generator=g).tolist()
    steps = n // batch_size
    if steps == 0:
        raise ValueError(f"run.batch_size={batch_size} exceeds the training set ({n} samples)")
    return [
        perm[k * batch_size : (k + 1) * batch_size][info.rank :: info.world_size]
        for k in range(steps)
    ]


def eval_indices(n: int, info: DistInfo) -> list[int]:
    """This rank's disjoint, unpadded evaluation shard."""
    return list(range(info.rank, n, info.world_size))


def all_reduce_sum(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    """Sum a list of numbers over ranks (identity without DDP)."""
    if not info.enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()
