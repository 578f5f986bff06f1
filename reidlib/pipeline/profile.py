"""Profiles: ``params/<name>.yaml`` read, checked against the specs and resolved into absolute paths.

A profile describes one whole study (datasets, models, training recipe, fine-tune pairs, distance study,
report). :func:`load_profile` returns it as a plain dict; every key is checked by :mod:`.specs` before anything
runs, so a typo fails in a second with the key's name, not an hour later inside a notebook.

A profile may start with ``extends: <base>`` (a shipped name in ``params/`` or a YAML path relative to the file)
and state only what differs from its base (:func:`read_profile`). Files in ``params/`` whose names start with
``_`` are such bases, not runnable profiles.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from reidlib.paths import DEFAULT_WORK_ROOT, PARAMS_DIR, REPO_ROOT, expand_path, shared_dir, work_root

from .mappings import deep_merge
from .references import resolve_report
from .specs import ProfileError, check_profile, with_defaults
from .variants import check_study_keys, variant_raws

__all__ = ["ProfileError", "deep_merge", "expand", "list_profiles", "load_profile", "profile_name", "profile_path",
           "read_profile", "read_yaml", "resolve_work_dir", "show_profile"]

# keys that name one profile's own places: an extending file never inherits them from its base
NOT_INHERITED = ("name", "work_dir")


class _DuplicateKey(Exception):
    def __init__(self, key: Any, first: int, second: int) -> None:
        super().__init__(key, first, second)
        self.key, self.first, self.second = key, first, second


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key written twice in one mapping (plain YAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` merges may be overridden by design
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise _DuplicateKey(key, seen[key], line)
                seen[key] = line
            except TypeError:  # an unhashable key: SafeLoader's own error follows
                break
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> Any:
    """The YAML file at ``path``, read safely; a key written twice in one mapping is an error.

    Raises:
        ProfileError: not valid YAML, or a duplicate key (the message names the key and both line numbers).
    """
    path = Path(path)
    try:
        return yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except _DuplicateKey as dup:
        raise ProfileError(f"{path}: key {dup.key!r} is written twice in one mapping (lines {dup.first} and "
                           f"{dup.second}); YAML would silently keep the second. Delete one of them") from None
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path} is not valid YAML: {exc}") from exc


def _base_path(ref: Any, child: Path) -> Path:
    """The file an ``extends:`` value names: a path relative to the extending file, or a shipped profile name."""
    if not isinstance(ref, str) or not ref.strip():
        raise ProfileError(f"{child}: extends must name a base profile (a shipped name such as 'smoke' or a YAML "
                           f"path relative to this file), got {ref!r}")
    ref = ref.strip()
    relative = (child.parent / Path(ref).expanduser()).resolve()
    if relative.is_file():
        return relative
    shipped = PARAMS_DIR / f"{ref}.yaml"
    if not Path(ref).suffix and "/" not in ref and shipped.is_file():
        return shipped
    raise ProfileError(f"{child}: extends {ref!r}, but neither {relative} nor a shipped profile of that name "
                       f"exists (shipped: {', '.join(list_profiles())})")


def read_profile(path: str | Path, _chain: tuple[Path, ...] = ()) -> tuple[dict, list[Path]]:
    """A profile file as a plain dict with its ``extends:`` chain merged in, before any checking.

    The base is read first (its own ``extends:`` followed), then the file's keys are merged over it: mappings
    key by key, at every depth; any other value (a list, a number, null) replaces the base's. ``name`` and
    ``work_dir`` are never inherited. Returns ``(merged dict, [this file, its base, the base's base, ...])``.

    Raises:
        ProfileError: unreadable YAML, a duplicate key, a missing base, or a cycle (the message shows the chain).
    """
    path = Path(path).resolve()
    chain = (*_chain, path)
    raw = read_yaml(path)
    raw = {} if raw is None else raw
    if not isinstance(raw, dict) or "extends" not in raw:
        return raw, [path]
    raw = dict(raw)
    base = _base_path(raw.pop("extends"), path)
    if base in chain:
        shown = " -> ".join(p.name for p in (*chain, base))
        raise ProfileError(f"{chain[0]}: extends forms a cycle ({shown}); a base must not extend its descendants")
    base_raw, base_chain = read_profile(base, chain)
    if not isinstance(base_raw, dict):
        raise ProfileError(f"{base} (the base of {path}) must hold a mapping of keys, got {type(base_raw).__name__}")
    base_raw = {k: v for k, v in base_raw.items() if k not in NOT_INHERITED}
    return deep_merge(base_raw, raw), [path, *base_chain]


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


def list_profiles() -> list[str]:
    """Names of the runnable profiles in ``params/`` (files starting with ``_`` are bases to extend, not profiles)."""
    return sorted(p.stem for p in PARAMS_DIR.glob("*.yaml") if not p.name.startswith("_"))


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
        profile: a name in ``params/`` (``"smoke"``) or a path to a YAML file (relative to ``cwd``); its
            ``extends:`` chain is merged first (:func:`read_profile`).
        data_root: overrides the profile's ``data_root`` (where datasets live or synthetic ones are generated);
            relative to ``cwd``. A ``data_root`` written *in* the profile is relative to the repository; both
            have ``~`` and ``$VARS`` expanded.
        cwd: the folder the user called from (``./run_all.sh`` passes it); default: the current directory.

    Returns:
        The profile as a dict with ``name`` (its ``name:`` key or the file's stem, :func:`profile_name`), ``path``,
        absolute ``data_root`` and ``work_dir`` (:func:`resolve_work_dir`), placeholders expanded,
        defaults filled in, ``models`` given unique ``run`` names and ``training`` merged into each model's own
        ``train`` block; ``seeds`` (a list or None) and ``test_split`` settled, and, for a profile with ``variants:``,
        ``variant_profiles``: each variant resolved the same way, by name (:mod:`.variants`).

    Raises:
        ProfileError: the file (or a base it extends) is missing, is not YAML, holds a key twice, or breaks the
            schema (the message names the key).
    """
    path = profile_path(profile, cwd)
    if not path.is_file():
        raise ProfileError(f"profile {str(profile)!r} not found at {path}; available: {', '.join(list_profiles())} "
                           "(or give the path to a YAML file)")
    raw, chain = read_profile(path)
    source = str(path) + (f" (extends {', which extends '.join(map(str, chain[1:]))})" if chain[1:] else "")
    raw = dict(raw) if isinstance(raw, dict) else raw
    name = profile_name(raw.pop("name", None) if isinstance(raw, dict) else None, path)
    cfg = _resolve(raw, source, name, path, data_root, cwd)
    variants = {variant: _resolve(merged, f"{source}, variant {variant!r}", name, path, data_root, cwd)
                for variant, merged in variant_raws(raw, source).items()}
    if variants:
        cfg["variant_profiles"] = variants
    return cfg


def _resolve(raw: Any, source: str, name: str, path: Path, data_root: str | Path | None,
             cwd: str | Path | None) -> dict:
    """One profile mapping (a file's, or a variant's merged one) checked and resolved as :func:`load_profile`
    describes, without its variants."""
    cfg = check_profile(raw or {}, source)
    if cfg.get("report") is not None:
        cfg["report"] = resolve_report(cfg["report"], source)  # reference keys -> the cited numbers

    places = {"shared": str(shared_dir()), "repo": str(REPO_ROOT)}
    if data_root is not None:
        root = _expand_place(expand(str(data_root), places), "--data-root")
        root = root if root.is_absolute() else Path(cwd or Path.cwd()) / root
    else:
        root = _expand_place(expand(str(cfg.get("data_root", "data")), places), f"{path}: data_root")
        root = root if root.is_absolute() else REPO_ROOT / root
    work = resolve_work_dir(cfg.get("work_dir"), name, path)
    cfg = expand(cfg, {**places, "data_root": str(root.resolve())})
    cfg.update(name=name, path=str(path), data_root=str(root.resolve()), work_dir=str(work))

    for spec in cfg["datasets"].values():
        spec["root"] = str(Path(spec["root"]) if Path(spec["root"]).is_absolute() else root / spec["root"])

    models = []
    for spec in cfg["models"]:
        spec = dict(spec)
        spec["train"] = deep_merge(cfg["training"], spec.get("train") or {})
        models.append(spec)
    cfg["models"] = models
    return check_study_keys(cfg, raw, source)


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


# folders of results/ that tools other than the pipeline write: no profile may take their names
RESERVED_NAMES = ("benchmarks", "complexity", "shared-weights", "sweeps")


def profile_name(value: Any, path: Path) -> str:
    """A profile's name, which names its ``results/<name>/`` and default work folder: its ``name:`` key, else the
    file's stem. A name is letters, digits, ``.``, ``_`` and ``-``, starting with a letter or digit, and not one of
    :data:`RESERVED_NAMES` (the tools' own results folders)."""
    if value is None and path.stem in RESERVED_NAMES:
        raise ProfileError(f"{path}: results/{path.stem}/ holds the output of the benchmark tools, so no profile may "
                           f"be called {path.stem!r}; rename the file or add name: my-{path.stem}")
    if value is None:
        return path.stem
    if value in RESERVED_NAMES:
        raise ProfileError(f"{path}: name: {value} would write into results/{value}/, which holds the output of the "
                           f"benchmark tools ({', '.join(RESERVED_NAMES)}); choose another name, e.g. my-{value}")
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ProfileError(f"{path}: name: must be a folder name of letters, digits, '.', '_' and '-' (starting "
                           f"with a letter or digit), e.g. name: my-copy; got {value!r}")
    return value


def _expand_place(text: str, what: str) -> Path:
    try:
        return expand_path(text, what)
    except ValueError as exc:
        raise ProfileError(str(exc)) from None


def _dangerous(work: Path) -> str | None:
    """Why ``work`` must not be a work folder (a run deletes its own files there), or None."""
    real = work.resolve()
    home = Path.home().resolve()
    if real == Path(real.anchor):
        return "it is the file system's root"
    if real == home:
        return "it is your home folder itself"
    if real == REPO_ROOT:
        return "it is this checkout"
    if REPO_ROOT.is_relative_to(real):
        return "it holds this checkout"
    if real == work_root().resolve():
        return "it is the work root, which holds every profile's work folder"
    return None


def resolve_work_dir(value: Any, name: str, path: Path) -> Path:
    """A profile's absolute work folder (checkpoints, features, caches).

    Without ``work_dir`` it is ``<work root>/<name>`` (:func:`reidlib.paths.work_root`). A ``work_dir`` has ``~``
    and ``$VARS`` expanded and is relative to the repository; one inside the checkout's ``work/`` moves with the
    work root (``work/x`` is ``<work root>/x``).

    Raises:
        ProfileError: an unset variable; a folder a run must not use (the file system's root, the home folder
            itself, the checkout or a folder holding it, the work root itself); a path that is, or runs through,
            a file.
    """
    if value is None:
        work = work_root() / name
    else:
        work = _expand_place(str(value), f"{path}: work_dir")
        work = Path(os.path.abspath(work if work.is_absolute() else REPO_ROOT / work))
        if work.is_relative_to(DEFAULT_WORK_ROOT):
            work = work_root() / work.relative_to(DEFAULT_WORK_ROOT)
    why = _dangerous(work)
    if why:
        raise ProfileError(f"{path}: work_dir {value or work} resolves to {work.resolve()}, and {why}: a run "
                           f"deletes its own files in its work folder, so give the profile a folder of its own, "
                           f"e.g. work_dir: work/{name} (or leave work_dir out)")
    for folder in (work, *work.parents):
        if folder.exists() and not folder.is_dir():
            raise ProfileError(f"{path}: work_dir {work} cannot be a folder: {folder} is a file; move that file "
                               f"or choose another work_dir")
    return work


class _ShowDumper(yaml.SafeDumper):
    """Plain YAML for reading: no ``&id`` anchors for repeated values, long text as a folded block."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = ">" if "\n" in text.strip() or len(text) > 100 else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_ShowDumper.add_representer(str, _represent_str)


def show_profile(profile: str | Path, data_root: str | Path | None = None, cwd: str | Path | None = None) -> str:
    """A profile fully resolved as YAML text: its ``extends:`` chain merged, checked, paths made absolute, and every
    default the stages apply written out (:func:`reidlib.pipeline.specs.with_defaults`); each model's ``train``
    block is the whole recipe that model trains with. ``variants`` are shown as written (the overrides)."""
    cfg = load_profile(profile, data_root, cwd=cwd)
    _, chain = read_profile(cfg["path"])
    head = [f"# {cfg['path']}" + "".join(f"\n#   extends {p}" for p in chain[1:]),
            "# resolved: bases merged, paths absolute, every default filled in"]
    shown = {k: v for k, v in with_defaults(cfg).items() if k != "variant_profiles"}
    body = yaml.dump(shown, Dumper=_ShowDumper, sort_keys=False, allow_unicode=True, width=120,
                     default_flow_style=None)
    return "\n".join(head) + "\n" + body
