"""Where things are: this checkout, its ``params/`` and ``notebooks/``, the shared folder beside it, ``results/``
and the work root (checkpoints, features, caches).

Every location can be moved with an environment variable, so tests and other checkouts can point elsewhere.
"""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PARAMS_DIR = REPO_ROOT / "params"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
DEFAULT_WORK_ROOT = REPO_ROOT / "work"
WORK_PREFIX = "work/"  # how records name a path under the work root, wherever the work root is


def expand_path(text: str | Path, what: str) -> Path:
    """``text`` with ``~`` and ``$VARS`` expanded; an unset variable is a ``ValueError`` naming ``what``."""
    expanded = os.path.expandvars(os.path.expanduser(str(text)))
    if "$" in expanded:
        raise ValueError(f"{what} {str(text)!r}: the environment variable in {expanded!r} is not set "
                         "(export it, or write the folder out)")
    return Path(expanded)


def shared_dir() -> Path:
    """The read-only ``shared/`` folder beside the repository (override with ``REIDLIB_SHARED``)."""
    return Path(os.environ.get("REIDLIB_SHARED", REPO_ROOT.parent / "shared")).resolve()


def results_root() -> Path:
    """Where profiles' results go: ``results/`` in the repository (override with ``REIDLIB_RESULTS_DIR``)."""
    return Path(os.environ.get("REIDLIB_RESULTS_DIR", REPO_ROOT / "results")).resolve()


def work_root() -> Path:
    """Where profiles' work folders go (``<work root>/<profile>/``): ``work/`` in the repository, or
    ``$REIDLIB_WORK_ROOT`` (``~`` and ``$VARS`` expanded; a relative path is relative to the current directory)."""
    value = os.environ.get("REIDLIB_WORK_ROOT")
    if not value:
        return DEFAULT_WORK_ROOT
    return expand_path(value, "REIDLIB_WORK_ROOT").resolve()


def repo_path(path: str | Path) -> str:
    """An absolute path: ``path`` itself, a recorded ``work/...`` path joined to the work root (:func:`work_root`),
    or another repo-relative one joined to this checkout's root."""
    text = str(path)
    if Path(text).is_absolute():
        return text
    if text.startswith(WORK_PREFIX):
        return str(work_root() / text[len(WORK_PREFIX):])
    return str(REPO_ROOT / text)
