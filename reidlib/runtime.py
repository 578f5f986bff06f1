"""Where and how computation runs: device choice, precision, memory format, seeding.

Every module that runs a network goes through these helpers so the CPU fast path (channels_last + bf16
autocast, see ``../shared/paper/cpu_facts.md``) and the CUDA path (AMP) are chosen in one place.
"""
from __future__ import annotations

import contextlib
import os
import platform
import random
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

PRECISIONS = ("fp32", "bf16", "fp16", "auto")


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """Return ``device`` as a ``torch.device``; ``None`` or ``"auto"`` picks CUDA when present, else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} was requested but CUDA is not available; use device='cpu' or 'auto'")
    return dev


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (empty where it cannot be read)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_name() -> str:
    """The CPU's model name, for provenance records."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 in hardware (AVX512-BF16 or AMX), where bf16 autocast is fast.

    Without it (e.g. AVX2-only CPUs) oneDNN emulates bf16 and autocast is many times *slower* than fp32:
    OSNet x0.25 inference measured 3.9 vs 79 img/s on an AVX2 AMD EPYC (``benchmarks/complexity.py``).
    """
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def cuda_has_native_bf16(device: torch.device) -> bool:
    """True when the CUDA ``device`` computes bf16 in hardware: compute capability 8.0 (Ampere) or later.

    ``torch.cuda.is_bf16_supported()`` is not used: it also counts emulated bf16 as support, and on compute
    capability 7.x (V100, T4) cuDNN has no bf16 convolutions, so bf16 autocast there is slow.
    """
    return torch.cuda.get_device_capability(device) >= (8, 0)


def resolve_precision(precision: str, device: torch.device) -> str:
    """Map ``"auto"`` to the fastest safe precision for ``device``.

    CUDA: bf16 on compute capability >= 8.0 (:func:`cuda_has_native_bf16`), else fp16 (trained with a GradScaler).
    CPU: bf16 only where the CPU has native bf16 (:func:`cpu_has_native_bf16`), else fp32.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if cuda_has_native_bf16(device) else "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """Autocast context for ``precision`` ("fp32" disables it). Losses should be computed in fp32 outside it."""
    precision = resolve_precision(precision, device)
    if precision == "fp32":
        yield
        return
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def to_memory_format(x: torch.Tensor | torch.nn.Module, channels_last: bool):
    """Move a 4-D batch or a module to channels_last when asked (a no-op otherwise)."""
    if not channels_last:
        return x
    if isinstance(x, torch.Tensor) and x.dim() != 4:
        return x
    return x.to(memory_format=torch.channels_last)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python, numpy and torch (CPU and CUDA) and set torch's determinism switches both ways.

    ``deterministic=True``: ``torch.use_deterministic_algorithms(True, warn_only=True)``,
    ``cudnn.deterministic = True``, ``cudnn.benchmark = False`` (and ``CUBLAS_WORKSPACE_CONFIG`` if unset).
    ``deterministic=False``: all three switched off again (a deterministic call earlier in the process does not
    leak into this one), and where CUDA is available ``cudnn.benchmark = True``: the batches have a fixed size,
    so cuDNN times its kernels once per input shape and keeps the fastest.
    """
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic and torch.cuda.is_available()


def rng_state() -> dict:
    """Capture every RNG state a training run depends on (for exact resume)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore states captured by :func:`rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())  # generator states are CPU byte tensors, wherever they were loaded
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
