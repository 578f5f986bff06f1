"""Thin helpers over ``torch.distributed`` for multi-process data-parallel training (DDP).

Launch with ``torchrun --nproc_per_node=N -m reidlib.train ...``: torchrun sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and ``MASTER_ADDR/PORT``; :func:`init_distributed` reads them and joins the group with the
backend of the device the run trains on (:func:`backend_for`: gloo for a CPU run, nccl for a CUDA run) and a
collective timeout (:data:`DEFAULT_TIMEOUT_MINUTES`). Every helper also works, as a no-op, in a single process.
"""
from __future__ import annotations

import datetime
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


DEFAULT_TIMEOUT_MINUTES = 60.0
"""How long a collective waits for the other ranks before the run is aborted (torch's default for nccl is 10
minutes). Rank 0 evaluates alone while the others wait in a collective, so this must exceed the longest
selection or test evaluation."""


def backend_for(device: str | torch.device | None) -> str:
    """The ``torch.distributed`` backend for a run on ``device``: ``"gloo"`` for CPU, ``"nccl"`` for CUDA.

    ``None``/``"auto"`` mean CUDA when it is available (as :func:`reidlib.runtime.resolve_device`), so a CPU run on
    a GPU machine (``device="cpu"``) still gets gloo: nccl has no CPU tensors.
    """
    if device is None or str(device) == "auto":
        return "nccl" if torch.cuda.is_available() else "gloo"
    kind = torch.device(device).type
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"no distributed backend for device {str(device)!r}: use 'cpu' (gloo) or 'cuda' (nccl)")
    return "nccl" if kind == "cuda" else "gloo"


def init_distributed(backend: str | None = None, device: str | torch.device | None = None,
                     timeout_minutes: float | None = None) -> DistInfo:
    """Join the process group described by torchrun's environment, if any; return this process's place.

    ``backend=None`` takes :func:`backend_for` ``(device)``; ``device`` is the run's ``TrainConfig.device``.
    ``timeout_minutes`` (default :data:`DEFAULT_TIMEOUT_MINUTES`) bounds every collective wait. With nccl the
    process uses GPU ``LOCAL_RANK`` (an error when the node has fewer GPUs). Without ``WORLD_SIZE > 1`` in the
    environment (and no group already initialised) nothing happens and a single-process info is returned.
    """
    if dist.is_available() and dist.is_initialized():
        return dist_info()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed support")
    minutes = DEFAULT_TIMEOUT_MINUTES if timeout_minutes is None else float(timeout_minutes)
    if not minutes > 0:
        raise ValueError(f"timeout_minutes must be > 0, got {timeout_minutes!r}")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = backend or backend_for(device)
    if "nccl" in backend:
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise RuntimeError(f"LOCAL_RANK {local_rank} but this node has {count} CUDA device(s): start at most "
                               f"{count} processes per node (torchrun --nproc_per_node), or use backend gloo")
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=minutes))
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


def same_on_every_rank(value: Any, what: str, fix: str) -> Any:
    """``value`` when every rank holds an equal one (``==``); else a ``RuntimeError`` listing each rank's value.

    ``what`` names the value in the message, ``fix`` says how to make the ranks agree. One ``all_gather_object``
    under DDP; a no-op in a single process.
    """
    values = all_gather_objects(value)
    if any(v != values[0] for v in values[1:]):
        listing = ", ".join(f"rank {r}: {v!r}" for r, v in enumerate(values))
        raise RuntimeError(f"the ranks disagree on {what} ({listing}); {fix}")
    return value
