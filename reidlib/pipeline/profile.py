"""Profiles: ``params/<name>.yaml`` read, checked against the schema and resolved into absolute paths.

A profile describes one whole study (datasets, models, training recipe, fine-tune pairs, distance study,
report). :func:`load_profile` returns it as a plain dict; every key is checked by :mod:`.schema` before anything
runs, so a typo fails in a second with the key's name, not an hour later inside a notebook.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from reidlib.paths import PARAMS_DIR, REPO_ROOT, shared_dir

from .schema import ProfileError, check_profile

__all__ = ["ProfileError", "deep_merge", "expand", "list_profiles", "load_profile", "profile_path"]


def expand(value: Any, mapping: dict[str, str]) -> Any:
    """Replace ``{shared}``, ``{data_root}``, ``{repo}`` placeholders in every string of a nested structure."""
    if isinstance(value, str):
        for key, sub in mapping.items():
            value = value.replace("{" + key + "}", sub)
        return value
    if isinstance(value, list):
        return [expand(v, mapping) for v in value]
    if isinstance(value, dict):
        return {k: expand(v, mapping) for k, v in value.items()}
    return value


def deep_merge(base: dict, override: dict | None) -> dict:
    """``base`` updated by ``override``, recursively for nested dicts (neither input is modified)."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def list_profiles() -> list[str]:
    """Names of the profiles in ``params/``."""
    return sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))


def profile_path(profile: str | Path, cwd: str | Path | None = None) -> Path:
    """The YAML file of ``profile``: a name in ``params/`` or a path (relative to ``cwd``, default: the process's)."""
    path = Path(profile)
    if not path.suffix and not path.is_file():
        return PARAMS_DIR / f"{profile}.yaml"
    if not path.is_absolute():
        path = Path(cwd or Path.cwd()) / path
    return path


def load_profile(profile: str | Path, data_root: str | Path | None = None, cwd: str | Path | None = None) -> dict:
    """Read, check and resolve a profile.

    Args:
        profile: a name in ``params/`` (``"smoke"``) or a path to a YAML file (relative to ``cwd``).
        data_root: overrides the profile's ``data_root`` (where datasets live or synthetic ones are generated);
            relative to ``cwd``. A ``data_root`` written *in* the profile is relative to the repository.
        cwd: the folder the user called from (``./run_all.sh`` passes it); default: the current directory.

    Returns:
        The profile as a dict with ``name``, absolute ``data_root`` and ``work_dir``, placeholders expanded,
        defaults filled in, ``models`` given unique ``run`` names and ``training`` merged into each model's own
        ``train`` block.

    Raises:
        ProfileError: the file is missing, is not YAML, or breaks the schema (the message names the key).
    """
    path = profile_path(profile, cwd)
    if not path.is_file():
        raise ProfileError(f"profile {str(profile)!r} not found at {path}; available: {', '.join(list_profiles())} "
                           "(or give the path to a YAML file)")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path} is not valid YAML: {exc}") from exc
    cfg = check_profile(raw, str(path))

    name = path.stem
    places = {"shared": str(shared_dir()), "repo": str(REPO_ROOT)}
    if data_root is not None:
        root = Path(expand(str(data_root), places))
        root = root if root.is_absolute() else Path(cwd or Path.cwd()) / root
    else:
        root = Path(expand(str(cfg.get("data_root", "data")), places))
        root = root if root.is_absolute() else REPO_ROOT / root
    work = Path(cfg.get("work_dir") or f"work/{name}")
    work = work if work.is_absolute() else REPO_ROOT / work
    cfg = expand(cfg, {**places, "data_root": str(root.resolve())})
    cfg.update(name=name, path=str(path), data_root=str(root.resolve()), work_dir=str(work.resolve()))

    for spec in cfg["datasets"].values():
        spec["root"] = str(Path(spec["root"]) if Path(spec["root"]).is_absolute() else root / spec["root"])

    models = []
    for spec in cfg["models"]:
        spec = dict(spec)
        spec["train"] = deep_merge(cfg["training"], spec.get("train") or {})
        models.append(spec)
    cfg["models"] = models
    return cfg
