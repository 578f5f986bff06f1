"""Checkpoint files: atomic writes, safe loading, RNG states in a ``weights_only``-loadable form.

A training directory holds ``last.pt`` (full state, rewritten after every epoch) and ``best.pt`` (the
selected model and its metrics). Both are plain dicts of tensors, numbers, strings, lists and dicts, so
they load with ``torch.load(..., weights_only=True)``.

Every read goes through :func:`load_checkpoint`, which turns an unreadable file (empty, truncated, not written by
``torch.save``, refused as unsafe, or not a reidlib training checkpoint) into a :class:`CheckpointError` naming the
file, what is wrong and what to do; :func:`checkpoint_readable` answers the same question without raising.
"""
from __future__ import annotations

import warnings
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from reidlib.runtime import rng_state, set_rng_state

LAST = "last.pt"
BEST = "best.pt"
# what a last.pt must hold to be resumed (a best.pt copied over it has no optimizer state)
RESUME_KEYS = ("model", "optimizer", "scheduler", "config", "num_classes", "epoch")
_WHAT_TO_DO = ("If it is a run's last.pt or best.pt, delete it and train that run again (the pipeline: rerun the "
               "stage with --force); if it was copied or downloaded, copy it again")


class CheckpointError(ValueError):
    """A checkpoint file exists but cannot be used: the message names the file, the reason and the fix."""


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
        "numpy": (n["kind"], n["keys"].cpu().numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]),
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


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", mmap: bool = False,
                    require: Sequence[str] = ()) -> dict:
    """Load a checkpoint written by this module (``weights_only=True``); a folder means its best, else last.

    ``mmap=True`` maps the tensors' storage instead of reading it (a cheap structural check). ``require``: keys the
    dict must hold (``("model",)`` for a training checkpoint's ``best.pt``/``last.pt``).

    Raises:
        FileNotFoundError: no such file (or a folder without ``best.pt``/``last.pt``).
        CheckpointError: the file is empty, truncated or corrupt, not written by ``torch.save``, holds pickled
            objects ``weights_only`` refuses, is not a dict, is a bare state dict (a weights file), or lacks a
            ``require``-d key.
    """
    path = resolve_checkpoint(path)
    size = path.stat().st_size
    where = f"checkpoint {path} ({size:,} bytes)"
    if size == 0:
        raise CheckpointError(f"{where} is empty (a write that never finished). {_WHAT_TO_DO}.")
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic != b"PK\x03\x04" and not magic.startswith(b"\x80"):  # neither torch.save's zip nor a legacy pickle
        raise CheckpointError(f"{where} is not a file written by torch.save (it starts with {magic!r}; an HTML error "
                              f"page or a text file saved under a .pt name looks like this). {_WHAT_TO_DO}.")
    if magic == b"PK\x03\x04" and not zipfile.is_zipfile(path):
        raise CheckpointError(f"{where} is truncated: the zip archive torch.save writes has no central directory "
                              f"(its end is missing; a full disk or a killed copy does this). {_WHAT_TO_DO}.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "Detected pickle protocol ..." on non-checkpoint pickles
            state = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap and magic == b"PK\x03\x04")
    except Exception as err:  # torch signals bad files with RuntimeError, UnpicklingError, EOFError, ValueError...
        first = next((ln.strip() for ln in str(err).splitlines() if ln.strip()), "no detail")
        if "Weights only load failed" in first or "weights_only" in first:
            raise CheckpointError(
                f"{where} holds pickled Python objects other than tensors and plain containers, which could run code "
                "when loaded (torch.load(weights_only=True) refused it); reidlib checkpoints never do. "
                f"{_WHAT_TO_DO}.") from err
        kind = "corrupt" if magic == b"PK\x03\x04" else "not a file written by torch.save"
        raise CheckpointError(f"{where} cannot be read: {kind} ({type(err).__name__}: {first[:200]}). "
                              f"{_WHAT_TO_DO}.") from err
    bare = isinstance(state, dict) and len(state) > 0 and all(isinstance(v, torch.Tensor) for v in state.values())
    missing = [k for k in require if k not in state] if isinstance(state, dict) else list(require)
    if not isinstance(state, dict) or bare or missing:
        got = type(state).__name__ if not isinstance(state, dict) else f"a dict with keys {sorted(state)[:6]}"
        hint = (" It looks like a bare weights file (a state dict): pass it as weights (--weights FILE --model NAME, "
                "or build_model(name, pretrained=FILE)), not as a checkpoint." if bare else f" {_WHAT_TO_DO}.")
        want = ", ".join(repr(k) for k in require) or "'model'"
        raise CheckpointError(f"{where} is not a reidlib training checkpoint: expected a dict with {want}, got "
                              f"{got}.{hint}")
    return state


def checkpoint_readable(path: str | Path) -> str | None:
    """None when ``path`` (a checkpoint file, or a run folder) loads as a reidlib checkpoint, else the reason.

    Cheap: tensors are memory-mapped, not read (a truncated file fails on its missing zip directory). The reason is
    the message :func:`load_checkpoint` would raise (it names the file and what to do).
    """
    try:
        load_checkpoint(path, mmap=True, require=("model",))
    except (FileNotFoundError, CheckpointError, OSError) as err:
        return str(err)
    return None


def resolve_checkpoint(path: str | Path) -> Path:
    """``path`` itself if it is a file; for a training folder its ``best.pt``, else its ``last.pt``."""
    path = Path(path)
    if path.is_dir():
        for name in (BEST, LAST):
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(f"no {BEST} or {LAST} in {path}: give a checkpoint file or a finished run's folder")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist: give a run's best.pt / last.pt or its folder")
    return path
