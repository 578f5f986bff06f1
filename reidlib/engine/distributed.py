"""Thin helpers over ``torch.distributed`` for multi-process data-parallel training (DDP).

Launch with ``torchrun --nproc_per_node=N -m reidlib.train ...``: torchrun sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and ``MASTER_ADDR/PORT``; :func:`init_distributed` reads them and joins the group
(gloo on CPU, nccl on CUDA). Every helper also works, as a no-op, in a single process.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size``; ``local_rank`` picks its GPU on a node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(backend: str | None = None) -> DistInfo:
    """Join the process group described by torchrun's environment, if any; return this process's place.

    ``backend=None`` picks ``"nccl"`` when CUDA is available, else ``"gloo"``. Without ``WORLD_SIZE > 1`` in
    the environment (and no group already initialised) nothing happens and a single-process info is returned.
    """
    if dist.is_available() and dist.is_initialized():
        return dist_info()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed support")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend)
    return dist_info()


def dist_info() -> DistInfo:
    """The current rank/world size (single process when no group is initialised)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if dist_info().enabled:
        dist.barrier()


def all_gather_objects(obj: Any) -> list[Any]:
    """Picklable ``obj`` of every rank, in rank order (``[obj]`` in a single process)."""
    info = dist_info()
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` as held by rank ``src``, on every rank."""
    if not dist_info().enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """All-reduce and average ``.grad`` of ``params`` over ranks (for parameters outside DDP, e.g. centres)."""
    info = dist_info()
    if not info.enabled:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(info.world_size)


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum of a tensor over ranks (returned unchanged in a single process)."""
    if dist_info().enabled:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The real module under DDP/DataParallel and ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def cleanup() -> None:
    """Leave the process group if one is initialised."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
