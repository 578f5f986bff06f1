"""Where things are: this checkout, its ``params/`` and ``notebooks/``, the shared folder beside it, ``results/``.

Every location can be moved with an environment variable, so tests and other checkouts can point elsewhere.
"""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PARAMS_DIR = REPO_ROOT / "params"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"


def shared_dir() -> Path:
    """The read-only ``shared/`` folder beside the repository (override with ``REIDLIB_SHARED``)."""
    return Path(os.environ.get("REIDLIB_SHARED", REPO_ROOT.parent / "shared")).resolve()


def results_root() -> Path:
    """Where profiles' results go: ``results/`` in the repository (override with ``REIDLIB_RESULTS_DIR``)."""
    return Path(os.environ.get("REIDLIB_RESULTS_DIR", REPO_ROOT / "results")).resolve()


def repo_path(path: str | Path) -> str:
    """An absolute path: ``path`` itself, or a repo-relative one joined to this checkout's root."""
    path = Path(path)
    return str(path if path.is_absolute() else REPO_ROOT / path)
