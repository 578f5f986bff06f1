"""Checkpoint files: atomic writes, safe loading, RNG states in a ``weights_only``-loadable form.

A training directory holds ``last.pt`` (full state, rewritten after every epoch) and ``best.pt`` (the
selected model and its metrics). Both are plain dicts of tensors, numbers, strings, lists and dicts, so
they load with ``torch.load(..., weights_only=True)``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from reidlib.runtime import rng_state, set_rng_state

LAST = "last.pt"
BEST = "best.pt"


def to_builtin(obj: Any) -> Any:
    """Recursively turn numpy scalars/arrays, tuples and Paths into builtins (tensors are kept)."""
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, dict):
        return {str(k): to_builtin(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_builtin(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def pack_rng() -> dict:
    """:func:`reidlib.runtime.rng_state` with the numpy and python states made ``weights_only``-safe."""
    state = rng_state()
    kind, keys, pos, has_gauss, cached = state["numpy"]
    state["numpy"] = {"kind": kind, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}
    version, internal, gauss = state["python"]
    state["python"] = {"version": version, "internal": list(internal), "gauss": gauss}
    return state


def unpack_rng(state: dict) -> None:
    """Restore RNG states written by :func:`pack_rng`."""
    n = state["numpy"]
    py = state["python"]
    set_rng_state({
        "python": (py["version"], tuple(py["internal"]), py["gauss"]),
        "numpy": (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]),
        "torch": state["torch"],
        **({"cuda": state["cuda"]} if "cuda" in state else {}),
    })


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file in the same folder, then ``os.replace``)."""
    from reidlib.io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by this module (``weights_only=True``); a folder means its best, else last."""
    path = resolve_checkpoint(path)
    return torch.load(path, map_location=map_location, weights_only=True)


def resolve_checkpoint(path: str | Path) -> Path:
    """``path`` itself if it is a file; for a training folder its ``best.pt``, else its ``last.pt``."""
    path = Path(path)
    if path.is_dir():
        for name in (BEST, LAST):
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(f"no {BEST} or {LAST} in {path}")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    return path
