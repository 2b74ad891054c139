"""torchrun / DDP plumbing: one process per device, rank 0 writes files, rows sharded by rank."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from ecgmoe_cli.model.device import resolve_device


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: rank 0 of 1 when not launched by torchrun."""

    rank: int = 0
    world: int = 1
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def init_distributed(device: str) -> DistInfo:
    """Join the torchrun process group when WORLD_SIZE > 1 (gloo on CPU, nccl on GPU)."""
    device = resolve_device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(0, 1, device)
    import torch.distributed as dist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return DistInfo(rank, world, device)


def barrier(info: DistInfo) -> None:
    if info.distributed:
        import torch.distributed as dist

        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def all_mean(info: DistInfo, value: float) -> float:
    """Mean of a scalar over ranks (for logging the train loss of the whole epoch)."""
    if not info.distributed:
        return value
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64)
    if info.device.startswith("cuda"):
        t = t.to(info.device)
    dist.all_reduce(t)
    return float(t.item()) / info.world
