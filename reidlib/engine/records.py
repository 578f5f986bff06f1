"""Run records written next to the checkpoints: ``metrics.csv``, ``history.json``, ``result.json``.

Every file is written to a temporary name and renamed, so a reader never sees half a file.
"""
from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

from .checkpoint import to_builtin


def _finite(obj: Any) -> Any:
    """JSON has no NaN/inf: write them as ``None``."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def write_json(path: str | Path, obj: Any) -> Path:
    """Atomically write ``obj`` (numpy values and Paths converted) as indented JSON."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(_finite(to_builtin(obj)), indent=2) + "\n")
    os.replace(tmp, path)
    return path


def write_csv(path: str | Path, rows: Sequence[dict]) -> Path:
    """Atomically write ``rows`` as CSV; columns are the union of keys in first-seen order (lists are skipped)."""
    path = Path(path)
    columns: list[str] = []
    for row in rows:
        columns += [k for k, v in row.items() if k not in columns and not isinstance(v, (list, dict))]
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(to_builtin(row))
    os.replace(tmp, path)
    return path
