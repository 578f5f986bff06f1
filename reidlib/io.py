"""Files that are never seen half-written, and one way of turning results into JSON.

* :func:`write_atomic` writes to a temporary file in the target folder and renames it over the target, so a
  reader (or a run killed mid-write) never leaves a truncated file behind.
* :func:`to_jsonable` is the project's one converter: numpy scalars and arrays, tuples and paths become JSON
  types, and **non-finite floats (NaN, inf) become ``null``** (JSON has no NaN; ``null`` reads as "not measured").
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed over ``path`` when the block ends without error.

    Parent folders are created. On any error (Ctrl-C included) the temporary file is removed and ``path`` is left
    as it was. ``suffix`` keeps writers that look at the extension happy (``".npz"``, ``".png"``). The file gets
    the permissions an ordinary new file would (``mkstemp`` alone would leave it private).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` through :func:`atomic_path`."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    return Path(path)


def to_jsonable(obj: Any) -> Any:
    """``obj`` with numpy values, tuples and paths as JSON types and non-finite floats as ``None``."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | Path, obj: Any, indent: int = 2) -> Path:
    """Write ``obj`` as indented JSON atomically (through :func:`to_jsonable`)."""
    return write_atomic(path, json.dumps(to_jsonable(obj), indent=indent) + "\n")
