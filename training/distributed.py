"""torchrun / DistributedDataParallel plumbing, and the same calls as no-ops in a single process.

`torchrun --nproc_per_node=N -m training train ...` sets RANK / WORLD_SIZE / LOCAL_RANK; each process then
trains on its shard (the sampler shards by rank), gradients are averaged by DDP, evaluation candidates are
gathered on rank 0, and only rank 0 writes files. Backend: NCCL on CUDA, gloo on CPU.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device_request: str) -> tuple[DistInfo, torch.device]:
    """Join the process group when launched by torchrun; pick this process's device."""
    from detector.predictor import resolve_device

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), resolve_device(device_request)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_request)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank=rank, world=world, local_rank=local_rank), device


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def any_flags(info: DistInfo, flags: list[bool], device: torch.device) -> list[bool]:
    """Each flag true on every rank when it is true on any (a stop request or a bad loss must stop all ranks together)."""
    if not info.enabled:
        return flags
    values = torch.tensor([float(f) for f in flags], device=device)
    dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return [bool(v > 0) for v in values.tolist()]


def sum_floats(info: DistInfo, values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Sum a dict of numbers over ranks (same keys everywhere, e.g. loss totals and counts)."""
    if not info.enabled or not values:
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return dict(zip(keys, tensor.tolist(), strict=False))


def gather_to_main(info: DistInfo, obj: Any) -> list[Any] | None:
    """Every rank's `obj` on rank 0 (None elsewhere)."""
    if not info.enabled:
        return [obj]
    out: list[Any] | None = [None] * info.world if info.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def broadcast(info: DistInfo, obj: Any) -> Any:
    """Rank 0's `obj` on every rank (e.g. the run folder rank 0 chose)."""
    if not info.enabled:
        return obj
    box = [obj if info.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
