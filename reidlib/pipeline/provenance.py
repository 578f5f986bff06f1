"""Provenance: what a run's outputs depend on, hashed, and whether a recorded run is still up to date.

A run's *input hash* covers its notebook, its parameters (with machine folders written as ``{repo}``/``{shared}``),
the upstream runs' ``metrics.json``, the fingerprints of the datasets it reads (:mod:`.fingerprint`) and **only the
library code the run executes** (:mod:`.codehash`), hashed as what it does: comments, docstrings and layout are
left out, so editing them leaves every run up to date. Editing the distance study's module leaves every training
run up to date, and editing the trainer makes the training, fine-tune and report runs stale but not the distance
study (which only reads stored features); a run that builds one registered model leaves the *other* model
families' files out, and the runner (``reidlib/pipeline/``) is never hashed: it reaches a run only through the
run's parameters, which are.

A run counts as up to date only if its ``run.json`` records today's input hash, the checkpoint and stored
features listed in its ``metrics.json`` that exist can be read, **and** the ones later stages read still exist.
:func:`run_status` says which of these failed.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import zipfile
from pathlib import Path
from typing import Any

from reidlib.paths import DEFAULT_WORK_ROOT, REPO_ROOT, repo_path, shared_dir, work_root
from reidlib.stages.ids import REPORT_STAGE

from .codehash import library_hash
from .fingerprint import dataset_fingerprint, run_datasets
from .plan import Run, run_dir


def data_fingerprints(run: Run) -> dict[str, dict]:
    """Each dataset ``run`` reads (by key) -> its fingerprint record (:func:`.fingerprint.dataset_fingerprint`)
    with the folder, written portably; recorded in ``run.json`` so a changed dataset can be named."""
    return {key: {"root": portable(spec["root"]), **dataset_fingerprint(spec)}
            for key, spec in sorted(run_datasets(run.parameters).items())}


def portable(value: Any) -> Any:
    """``value`` with this checkout's and the shared folder's absolute paths written as ``{repo}``/``{shared}``,
    and the work root's (:func:`reidlib.paths.work_root`, wherever it is) as ``{repo}/work``.

    Applied to what is hashed and recorded, so a clone elsewhere, or a run with its work folders elsewhere, finds
    the same runs up to date and committed results name no machine's folders.
    """
    if isinstance(value, str):
        root = str(work_root())
        if root != str(DEFAULT_WORK_ROOT) and value.startswith(root) and value[len(root):len(root) + 1] in ("", "/"):
            value = str(DEFAULT_WORK_ROOT) + value[len(root):]
        return value.replace(str(REPO_ROOT), "{repo}").replace(str(shared_dir()), "{shared}")
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(v) for v in value]
    return value


# recipe keys that only guard a run (a cut-short run reports nothing and continues on rerun), so changing them
# neither changes a result nor discards a run's checkpoints
GUARD_KEYS = ("max_minutes",)


def hashed_parameters(parameters: dict) -> dict:
    """``parameters`` without the guard keys of their ``train``/``finetune`` recipe blocks."""
    out = dict(parameters)
    for block in ("train", "finetune"):
        if isinstance(out.get(block), dict):
            out[block] = {k: v for k, v in out[block].items() if k not in GUARD_KEYS}
    return out


# what an upstream run that has no results contributes to the hash
MISSING_UPSTREAM = b"missing"


def _input_pieces(run: Run, cfg: dict) -> list[tuple[str, bytes]]:
    """``(name, bytes)`` of each input, in hashing order: ``notebook``, ``parameters`` (guards aside, portable),
    ``library`` (the code it runs), ``data KEY`` per dataset read, ``upstream RUN_ID`` per run it reads."""
    pieces = [("notebook", run.notebook.read_bytes()),
              ("parameters", json.dumps(portable(hashed_parameters(run.parameters)), sort_keys=True,
                                        default=str).encode()),
              ("library", library_hash(run.stage, run.model_name).encode())]
    pieces += [(f"data {key}", f"data {key} {record['fingerprint']}\n".encode())
               for key, record in data_fingerprints(run).items()]
    for dep in run.depends_on:
        stage, name = dep.split("/", 1)
        metrics = run_dir(cfg, stage, name) / "metrics.json"
        pieces.append((f"upstream {dep}", metrics.read_bytes() if metrics.is_file() else MISSING_UPSTREAM))
    return pieces


def input_hash(run: Run, cfg: dict) -> str:
    """What a run's outputs depend on: notebook, parameters (guards aside), the library code it runs, the data it
    reads and upstream metrics, as one sha256 hex digest."""
    return _combined(_input_pieces(run, cfg))


def input_digests(run: Run, cfg: dict) -> dict[str, str]:
    """Each input of :func:`input_hash` hashed on its own (name -> first 16 hex digits of its sha256), recorded in
    ``run.json`` so that a stale run can be told *which* input changed."""
    return _digests(_input_pieces(run, cfg))


def hash_and_digests(run: Run, cfg: dict) -> tuple[str, dict[str, str]]:
    """:func:`input_hash` and :func:`input_digests` from one read of the run's inputs."""
    pieces = _input_pieces(run, cfg)
    return _combined(pieces), _digests(pieces)


def _combined(pieces: list[tuple[str, bytes]]) -> str:
    h = hashlib.sha256()
    for _, piece in pieces:
        h.update(piece)
    return h.hexdigest()


def _digests(pieces: list[tuple[str, bytes]]) -> dict[str, str]:
    return {name: hashlib.sha256(piece).hexdigest()[:16] for name, piece in pieces}


# ----------------------------------------------------------------------------------------------------------------
# up to date = same inputs and usable outputs
# ----------------------------------------------------------------------------------------------------------------
def recorded_artefacts(metrics: dict) -> list[str]:
    """Work files a run's ``metrics.json`` says later stages will read: its checkpoint and stored features."""
    files = [metrics["checkpoint"]] if metrics.get("checkpoint") else []
    for feats in (metrics.get("features") or {}).values():
        if isinstance(feats, dict):
            files += [feats[k] for k in ("query", "gallery") if feats.get(k)]
    return [repo_path(f) for f in files]


def missing_artefacts(run: Run, cfg: dict) -> list[str]:
    """Recorded work files of ``run`` that no longer exist (e.g. ``work/`` was deleted or is a fresh clone)."""
    path = run_dir(cfg, run.stage, run.name) / "metrics.json"
    if not path.is_file():
        return []
    try:
        metrics = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return [str(path)]
    return [f for f in recorded_artefacts(metrics) if not Path(f).is_file()]


def _checkpoint_problem(path: str) -> str | None:
    try:
        from reidlib.engine.checkpoint import checkpoint_readable
    except ImportError:  # pragma: no cover - an engine without the check: the zip directory is what truncation loses
        return None if zipfile.is_zipfile(path) else f"checkpoint {path} is truncated or corrupt (no zip directory)"
    problem = checkpoint_readable(path)
    return problem.split(". If it is a run", 1)[0] if problem else None  # the rerun advice is what a rerun does


def unreadable_artefacts(run: Run, cfg: dict) -> list[str]:
    """Recorded work files of ``run`` that exist but cannot be read, each as a sentence naming the file and why
    (a checkpoint is opened as :func:`reidlib.engine.checkpoint.checkpoint_readable` does; stored features must
    be whole ``.npz`` archives)."""
    path = run_dir(cfg, run.stage, run.name) / "metrics.json"
    try:
        metrics = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return []
    checkpoint = repo_path(metrics["checkpoint"]) if metrics.get("checkpoint") else None
    problems = []
    for f in recorded_artefacts(metrics):
        if not Path(f).is_file():
            continue
        if f == checkpoint:
            problem = _checkpoint_problem(f)
        else:
            problem = None if zipfile.is_zipfile(f) else f"stored features {f} are truncated or corrupt (not an .npz)"
        if problem:
            problems.append(problem)
    return problems


def recorded_run(run: Run, cfg: dict) -> dict:
    """The run's ``run.json`` ({} when it never ran or the file is unreadable)."""
    try:
        info = json.loads((run_dir(cfg, run.stage, run.name) / "run.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return info if isinstance(info, dict) else {}


def changed_datasets(run: Run, recorded: dict) -> list[str]:
    """The datasets whose fingerprint differs from the one recorded in ``run.json`` (``recorded``), each as
    ``"dataset KEY (ROOT) changed: N files then, M now"``."""
    before = recorded.get("data") or {}
    out = []
    for key, now in data_fingerprints(run).items():
        then = before.get(key) or {}
        if then and then.get("fingerprint") != now["fingerprint"]:
            counts = f": {then.get('files', '?')} files then, {now['files']} now" if "files" in now else ""
            out.append(f"dataset {key} ({now['root']}) changed{counts}")
    return out


def changed_parameters(run: Run, cfg: dict, limit: int = 3) -> str:
    """The parameters that differ from those the run was executed with (its ``params.yaml``), guards aside, as
    ``"parameters changed: train.lr 0.0015 -> 0.003, ..."``; empty when they are the same or none were recorded."""
    import yaml

    try:
        then = yaml.safe_load((run_dir(cfg, run.stage, run.name) / "params.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return ""
    if not isinstance(then, dict):
        return ""
    now = json.loads(json.dumps(portable(hashed_parameters(run.parameters)), default=str))
    then = json.loads(json.dumps(hashed_parameters(then), default=str))
    diffs: list[str] = []

    unset = object()

    def shown(value: Any) -> str:
        return "(unset)" if value is unset else json.dumps(value)

    def walk(a: Any, b: Any, key: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b), key=str):
                walk(a.get(k, unset), b.get(k, unset), f"{key}.{k}" if key else str(k))
        elif a != b:
            short = len(shown(a)) <= 40 and len(shown(b)) <= 40
            diffs.append(f"{key} {shown(a)} -> {shown(b)}" if short else key)

    walk(then, now, "")
    if not diffs:
        return ""
    more = f" and {len(diffs) - limit} more" if len(diffs) > limit else ""
    return "parameters changed: " + ", ".join(diffs[:limit]) + more


def stale_reasons(run: Run, cfg: dict, recorded: dict, now: dict[str, str] | None = None) -> list[str]:
    """Why a recorded run's input hash is no longer today's, one phrase per changed input: its notebook, its
    parameters (the keys), the library code it runs, a dataset, an upstream run's results. A record written before
    ``run.json`` held per-input digests is told apart as far as its ``params.yaml`` and data fingerprints allow.
    ``now``: today's :func:`input_digests`, where the caller has them."""
    reasons = changed_datasets(run, recorded)
    then = recorded.get("inputs")
    now = now if now is not None else input_digests(run, cfg)
    missing = hashlib.sha256(MISSING_UPSTREAM).hexdigest()[:16]
    upstream = [k for k in now if k.startswith("upstream ")]
    if isinstance(then, dict):
        if then.get("notebook") != now["notebook"]:
            reasons.append(f"notebook {run.notebook.name} changed")
        if then.get("parameters") != now["parameters"]:
            reasons.append(changed_parameters(run, cfg) or "parameters changed")
        if then.get("library") != now["library"]:
            reasons.append("the library code it runs changed")
        for key in upstream:
            dep = key.split(" ", 1)[1]
            if then.get(key) == now[key]:
                continue
            if now[key] == missing:
                reasons.append(f"{dep} has no results now")
            elif then.get(key) == missing:
                reasons.append(f"it ran before {dep} had results")
            else:
                reasons.append(f"the results of {dep} changed")
        return reasons
    params = changed_parameters(run, cfg)
    reasons += [params] if params else []
    reasons += [f"{k.split(' ', 1)[1]} has no results now" for k in upstream if now[k] == missing]
    if not reasons:
        reasons.append("its notebook, library code or upstream results changed; its record predates per-input "
                       "digests, so which one is not known")
    return reasons


def run_status(run: Run, cfg: dict, needed: bool = True) -> tuple[bool, str]:
    """``(up to date, why not)``. Why not is empty when the run never ran; else it names what changed (the inputs
    :func:`stale_reasons` finds), the unreadable checkpoint or features, or (``needed``: later stages read them)
    the work file that is gone."""
    recorded = recorded_run(run, cfg)
    key, digests = hash_and_digests(run, cfg)
    if recorded.get("input_hash") != key:
        return False, "; ".join(stale_reasons(run, cfg, recorded, digests)) if recorded else ""
    unreadable = unreadable_artefacts(run, cfg)
    if unreadable:
        return False, unreadable[0]
    missing = missing_artefacts(run, cfg) if needed else []
    if missing:
        return False, f"its work files are gone, e.g. {missing[0]}"
    return True, ""


def resume_point(run: Run, cfg: dict) -> tuple[int, int] | None:
    """``(epochs done, epochs planned)`` of an interrupted training or fine-tuning run that its next execution
    resumes: its work folder holds ``last.pt`` and ``history.json`` under today's input hash (``run_key.txt``).
    None for a run that starts at epoch 0 (no checkpoint, or one of other inputs) and for other stages."""
    work = run.parameters.get("work_dir")
    planned = (run.parameters.get("train") or run.parameters.get("finetune") or {}).get("epochs")
    if not work or not planned or not (Path(work) / "last.pt").is_file():
        return None
    try:
        if (Path(work) / "run_key.txt").read_text().strip() != input_hash(run, cfg):
            return None
        history = json.loads((Path(work) / "history.json").read_text())
        done = max(int(row["epoch"]) for row in history)
    except (OSError, ValueError, TypeError, KeyError):  # unreadable, empty or not this trainer's history
        return None
    return done, int(planned)


def began_in_other_precision(run: Run, resumes: tuple[int, int]) -> str | None:
    """Why resuming ``run`` (``resumes``: its :func:`resume_point`) on this machine would change its arithmetic
    halfway, or None.

    ``precision: auto`` resolves per machine (:func:`reidlib.runtime.resolve_precision`: bf16 autocast on a CPU
    with native bf16, fp32 on one without), and ``last.pt`` records the precision each stretch of a run trained in.
    A run begun on one kind of CPU and resumed on the other would train its epochs in two arithmetics, and its
    numbers would match neither kind's uninterrupted run; this names the run, both precisions and the ways out.
    """
    from reidlib.engine.checkpoint import CheckpointError, load_checkpoint
    from reidlib.runtime import resolve_device, resolve_precision

    try:
        state = load_checkpoint(Path(run.parameters["work_dir"]) / "last.pt", mmap=True)
        began = str(state["meta"]["runs"][-1]["precision"])
    except (OSError, CheckpointError, KeyError, IndexError, TypeError):  # unreadable: the trainer's resume says so
        return None
    chosen = str(run.parameters.get("precision") or "auto")
    here = resolve_precision(chosen, resolve_device(str(run.parameters.get("device") or "auto")))
    if began == here:
        return None
    return (f"{run.id} trained its first {resumes[0]} of {resumes[1]} epochs in {began}, but precision {chosen!r} "
            f"means {here} on this machine, so resuming would train the rest in another arithmetic. Resume it on a "
            f"machine of the kind it began on, start it afresh here (--force --only {run.id}), or set "
            f"`precision: fp32` in the profile so that every machine trains alike (that starts it afresh once).")


def recorded_hash(run: Run, cfg: dict) -> str | None:
    info = run_dir(cfg, run.stage, run.name) / "run.json"
    try:
        return json.loads(info.read_text()).get("input_hash")
    except (OSError, json.JSONDecodeError):
        return None


def is_current(run: Run, cfg: dict) -> bool:
    """The run's recorded inputs equal today's (its outputs may still lack their work files)."""
    return recorded_hash(run, cfg) == input_hash(run, cfg)


def is_up_to_date(run: Run, cfg: dict, needed: bool = True) -> bool:
    """Current, its checkpoint and features readable, and (when later stages will read them: ``needed``) on disk."""
    return run_status(run, cfg, needed)[0]


def stale_runs(runs: list[Run], cfg: dict) -> list[str]:
    """Ids of the runs (report excluded) whose recorded inputs differ from their current ones or that never ran.

    The report is given this list: with ``--only 40_report`` it may gather results that the current code or
    parameters would no longer produce, and it says so beside them.
    """
    return [r.id for r in runs if r.stage != REPORT_STAGE and not is_current(r, cfg)]


def with_stale_runs(runs: list[Run], cfg: dict) -> list[Run]:
    """``runs`` with the report's ``stale_runs`` parameter set from what is in ``results/`` now."""
    stale = stale_runs(runs, cfg)
    for run in runs:
        if run.stage == REPORT_STAGE:
            run.parameters["stale_runs"] = stale
    return runs


# ----------------------------------------------------------------------------------------------------------------
# what is recorded beside every result
# ----------------------------------------------------------------------------------------------------------------
def git_commit() -> str:
    """HEAD of this checkout, with ``+dirty`` when the library, notebooks or profiles have local changes."""
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10)
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--", "reidlib", "notebooks",
                                "params"], capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment_info() -> dict:
    """Hardware and package versions recorded beside every result."""
    import numpy
    import torch

    from reidlib.runtime import cpu_has_native_bf16, cpu_name

    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch_threads": torch.get_num_threads(),
        "cpu_native_bf16": cpu_has_native_bf16(),  # decides what precision "auto" trains in on a CPU
    }
    try:
        import timm
        import torchvision

        info.update(torchvision=torchvision.__version__, timm=timm.__version__)
    except ImportError:  # pragma: no cover - both are pinned requirements
        pass
    return info
