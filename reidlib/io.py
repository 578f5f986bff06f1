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
from pathlib import Path
from typing import Any

import numpy as np


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` through a temporary file and a rename.

    Parent folders are created. On any error the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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
