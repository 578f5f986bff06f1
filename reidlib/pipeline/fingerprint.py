"""Fingerprints of what a run reads besides code and parameters: its datasets' files.

A folder dataset's fingerprint is the sha256 over its files' relative paths, sizes and contents (hidden files,
names starting with ``.``, are left out). Contents are hashed once: a cache file per dataset folder (under
:func:`cache_dir`) keeps each file's hash with its size, mtime and ctime, and a later call re-reads only files
whose ``stat`` changed (or that were modified within 2 s of the last look, as file times are coarse), so a
14k-image folder costs one walk of ``stat`` calls (about 0.1 s) after the first time.
Because paths are relative and contents (not times) are hashed, a copy of the same images elsewhere has the same
fingerprint, and an image overwritten in place with the same name is seen.

A synthetic dataset is not fingerprinted from disk: the data stage generates it deterministically from its
parameters (which are already part of every run's parameters) and the generator's code (hashed with the
library), and refuses a folder generated with other parameters; its fingerprint is those parameters and the
generator version.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from reidlib.io import write_json

CHUNK = 1 << 20  # bytes read at a time when hashing a file
RECENT_NS = 2_000_000_000  # files modified less than 2 s ago are hashed again next time (see _fingerprint)
# fingerprints computed by this process, by folder: a long pipeline run walks each dataset once. A folder changed
# while the process runs can only make a recorded fingerprint older than the data, i.e. the run reruns next time.
_MEMO: dict[str, dict[str, Any]] = {}


def forget_fingerprints() -> None:
    """Drop this process's memo of folder fingerprints (the next call walks the folders again)."""
    _MEMO.clear()


def cache_dir() -> Path:
    """Where folder fingerprints are cached: ``$REIDLIB_CACHE_DIR``, else ``$XDG_CACHE_HOME/reidlib`` (default
    ``~/.cache/reidlib``), then ``data-fingerprints/``."""
    root = os.environ.get("REIDLIB_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or
                                                         Path.home() / ".cache") / "reidlib"
    return Path(root).expanduser() / "data-fingerprints"


def _file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def _scan(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every non-hidden file under ``root`` (links followed) -> (size, mtime_ns, ctime_ns)."""
    found: dict[str, tuple[int, int, int]] = {}
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if name.startswith("."):
                continue
            full = os.path.join(folder, name)
            try:
                st = os.stat(full)
            except OSError:  # a dangling link: not a file the reader can use
                continue
            found[os.path.relpath(full, root)] = (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    return found


def folder_fingerprint(root: str | Path) -> dict[str, Any]:
    """``{"fingerprint": sha256 hex, "files": count, "bytes": total size}`` of the files under ``root``.

    A missing folder gives ``{"fingerprint": "missing", "files": 0, "bytes": 0}``. Computed once per process and
    folder (:func:`forget_fingerprints` starts over).
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        return {"fingerprint": "missing", "files": 0, "bytes": 0}
    if str(root) not in _MEMO:
        _MEMO[str(root)] = _fingerprint(root)
    return dict(_MEMO[str(root)])


def _fingerprint(root: Path) -> dict[str, Any]:
    cache_file = cache_dir() / (hashlib.sha256(str(root).encode()).hexdigest()[:24] + ".json")
    try:
        cached = json.loads(cache_file.read_text())
        known = cached["files"] if cached.get("root") == str(root) else {}
    except (OSError, ValueError, KeyError, TypeError):
        known = {}
    recent = time.time_ns() - RECENT_NS
    files = _scan(root)
    entries: dict[str, list] = {}
    for rel, stat in sorted(files.items()):
        old = known.get(rel)
        entries[rel] = old if old and tuple(old[:3]) == stat else [*stat, _file_sha256(str(root / rel))]
    h = hashlib.sha256()
    for rel, (size, _, _, digest) in entries.items():
        h.update(f"{rel}\0{size}\0{digest}\n".encode())
    # a file changed within RECENT_NS of now may change again without its stat changing (timestamps are coarse):
    # its hash is not cached
    keep = {rel: e for rel, e in entries.items() if max(e[1], e[2]) < recent}
    if keep != known:
        try:
            write_json(cache_file, {"root": str(root), "files": keep})
        except OSError:  # a read-only cache folder only costs the next call its speed
            pass
    return {"fingerprint": h.hexdigest(), "files": len(entries), "bytes": sum(e[0] for e in entries.values())}


def dataset_fingerprint(spec: dict) -> dict[str, Any]:
    """The fingerprint of one dataset entry of a run's parameters (``{name, root, kwargs, ...}``).

    Folder datasets: :func:`folder_fingerprint` of ``root``. Synthetic ones: their generation parameters and
    generator version (see the module docstring).
    """
    if spec.get("name") == "synthetic":
        from reidlib.data.synthetic import GENERATOR_VERSION

        params = json.dumps(spec.get("kwargs") or {}, sort_keys=True, default=str)
        digest = hashlib.sha256(f"synthetic v{GENERATOR_VERSION} {params}".encode()).hexdigest()
        return {"fingerprint": digest, "generated": True}
    return folder_fingerprint(spec["root"])


def run_datasets(parameters: dict) -> dict[str, dict]:
    """The datasets a run reads, by key, found in its parameters: ``datasets`` (data stage), ``dataset`` and
    ``zero_shot`` (training), ``target`` (fine-tune). Other stages read stored features, not images."""
    found: dict[str, dict] = {}
    found.update(parameters.get("datasets") or {})
    if parameters.get("dataset"):
        found[str(parameters.get("dataset_key", "dataset"))] = parameters["dataset"]
    found.update(parameters.get("zero_shot") or {})
    if parameters.get("target"):
        found[str(parameters.get("target_key", "target"))] = parameters["target"]
    return {k: v for k, v in found.items() if isinstance(v, dict) and v.get("root")}
