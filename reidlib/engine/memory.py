"""glibc malloc tuning for fp32 CPU training, applied from inside the process.

``results/benchmarks/malloc_env.md`` measured an fp32 OSNet x0.25 training step ×1.21 faster when glibc keeps freed
memory instead of handing each step's large activation buffers back to the kernel and faulting fresh pages in on
the next step (environment ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=<huge>``, which glibc reads only when the
process starts). The same two settings can be changed at any time with ``mallopt(3)``; they then govern every
later allocation, which is what a training loop's per-step buffers are. :func:`keep_freed_memory` does that, so
:func:`reidlib.engine.fit` applies it itself on CPUs without native bf16 (bf16 gained nothing: ×0.95) and no
launcher (``run_all.sh``, the pipeline's notebook kernels, ``torchrun``) has to set environment variables.

Cost: the process keeps its peak heap (about +250 MiB for that fp32 step) until it exits; numerics are unchanged.
``REIDLIB_MALLOC=default`` turns it off.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1

_applied: str | None = None


def keep_freed_memory() -> str:
    """Ask glibc to serve large blocks from the heap and not to trim it; returns what was done.

    Returns one of ``"mallopt"`` (applied now or earlier in this process), ``"env"`` (``MALLOC_MMAP_MAX_`` was set
    when the process started), ``"off"`` (``REIDLIB_MALLOC=default``) or ``"unavailable"`` (not glibc).
    """
    global _applied
    if os.environ.get("REIDLIB_MALLOC", "").strip().lower() == "default":
        return "off"
    if "MALLOC_MMAP_MAX_" in os.environ:
        return "env"
    if _applied is not None:
        return _applied
    _applied = "unavailable"
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return _applied
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return _applied
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt takes a C int: 2 GiB is the largest trim threshold it accepts (the env variable allows more)
    if mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, _INT_MAX) == 1:
        _applied = "mallopt"
    return _applied
