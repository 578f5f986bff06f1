"""Run records written next to the checkpoints: ``metrics.csv``, ``history.json``, ``result.json``.

Every file is written to a temporary name and renamed, so a reader never sees half a file.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Sequence

from reidlib import io

from .checkpoint import to_builtin


def write_json(path: str | Path, obj: Any) -> Path:
    """Atomically write ``obj`` (tensors, numpy values and Paths converted; NaN/inf as null) as indented JSON."""
    return io.write_json(path, to_builtin(obj))


def write_csv(path: str | Path, rows: Sequence[dict]) -> Path:
    """Atomically write ``rows`` as CSV; columns are the union of keys in first-seen order (lists are skipped)."""
    path = Path(path)
    columns: list[str] = []
    for row in rows:
        columns += [k for k, v in row.items() if k not in columns and not isinstance(v, (list, dict))]
    with io.atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(to_builtin(row))
    return path
