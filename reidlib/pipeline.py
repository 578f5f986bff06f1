"""The study pipeline: profiles, the plan of notebook runs, and their execution with papermill.

A *profile* (``params/<name>.yaml``) describes one whole study: datasets, models, training recipe, fine-tune pairs,
distance study and report. :func:`plan` expands it into an ordered list of :class:`Run` (one executed notebook each):

    00_data             one run: dataset statistics (and sample grids for synthetic data)
    10_train            one run per (model, training dataset): train, select on validation, test once, zero-shot
    20_finetune         one run per (model, source -> target): fine-tune a trained model on the other domain
    30_distance_study   one run: the five distances (and re-ranking) on the trained models' features
    40_report           one run: tables and figures of the whole study into ``results/<profile>/report``

Each run executes ``notebooks/<stage>.ipynb`` with papermill into a temporary folder, which is renamed into
``results/<profile>/<stage>/<run>/`` only when the notebook succeeded. A run is skipped when its ``run.json``
records the same input hash (notebook, parameters, reidlib sources, upstream metrics).
Checkpoints and feature files live in the work directory (``work/<profile>/...``), never in ``results/``.

Command line (what ``./run_all.sh`` calls)::

    python -m reidlib.pipeline run [PROFILE] [--data-root DIR] [--only STAGE] [--force] [--dry-run]
    python -m reidlib.pipeline list
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reidlib.runtime import cpu_has_native_bf16, cpu_name

REPO_ROOT = Path(__file__).resolve().parents[1]
PARAMS_DIR = REPO_ROOT / "params"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
STAGES = ("00_data", "10_train", "20_finetune", "30_distance_study", "40_report")

_REQUIRED_KEYS = ("description", "datasets", "train_on", "models", "training", "evaluation")
_KNOWN_KEYS = set(_REQUIRED_KEYS) | {
    "seed", "device", "precision", "image_size", "data_root", "work_dir", "zero_shot", "finetune",
    "distance_study", "report", "real_data", "num_workers",
}


class ProfileError(ValueError):
    """A profile file is missing or malformed; the message says which key and how to fix it."""


# ----------------------------------------------------------------------------------------------------------------
# locations
# ----------------------------------------------------------------------------------------------------------------
def shared_dir() -> Path:
    """The read-only ``shared/`` folder beside the repository (override with ``REIDLIB_SHARED``)."""
    return Path(os.environ.get("REIDLIB_SHARED", REPO_ROOT.parent / "shared")).resolve()


def _expand(value: Any, mapping: dict[str, str]) -> Any:
    """Replace ``{shared}``, ``{data_root}``, ``{repo}`` placeholders in every string of a nested structure."""
    if isinstance(value, str):
        for key, sub in mapping.items():
            value = value.replace("{" + key + "}", sub)
        return value
    if isinstance(value, list):
        return [_expand(v, mapping) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v, mapping) for k, v in value.items()}
    return value


def _deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# ----------------------------------------------------------------------------------------------------------------
# profiles
# ----------------------------------------------------------------------------------------------------------------
def list_profiles() -> list[str]:
    """Names of the profiles in ``params/``."""
    return sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))


# what one entry of a profile's ``models`` list may hold
MODEL_KEYS = frozenset({"name", "run", "label", "kwargs", "pretrained", "train_on", "image_size", "train"})


def load_profile(profile: str | Path, data_root: str | Path | None = None) -> dict:
    """Read, check and resolve a profile.

    Args:
        profile: a name in ``params/`` (``"smoke"``) or a path to a YAML file.
        data_root: overrides the profile's ``data_root`` (where datasets live or synthetic ones are generated).

    Returns:
        The profile as a dict with ``name``, absolute ``data_root`` and ``work_dir``, placeholders expanded,
        ``models`` given unique ``run`` names and ``training`` merged into each model's own ``train`` block.
    """
    path = Path(profile)
    if not path.suffix:
        path = PARAMS_DIR / f"{profile}.yaml"
    if not path.is_file():
        raise ProfileError(f"profile {str(profile)!r} not found at {path}; available: {', '.join(list_profiles())}")
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(cfg, dict):
        raise ProfileError(f"{path} must hold a mapping of keys, got {type(cfg).__name__}")
    missing = [k for k in _REQUIRED_KEYS if k not in cfg]
    if missing:
        raise ProfileError(f"{path} lacks required key(s) {missing}; see params/default.yaml for a complete profile")
    unknown = sorted(set(cfg) - _KNOWN_KEYS)
    if unknown:
        raise ProfileError(f"{path} has unknown key(s) {unknown}; known keys: {sorted(_KNOWN_KEYS)}")

    name = path.stem
    root = Path(_expand(str(data_root if data_root is not None else cfg.get("data_root", "data")),
                        {"shared": str(shared_dir()), "repo": str(REPO_ROOT)}))
    root = root if root.is_absolute() else (REPO_ROOT / root)
    work = Path(cfg.get("work_dir", f"work/{name}"))
    work = work if work.is_absolute() else (REPO_ROOT / work)
    mapping = {"shared": str(shared_dir()), "data_root": str(root.resolve()), "repo": str(REPO_ROOT)}
    cfg = _expand(cfg, mapping)
    cfg.update(name=name, path=str(path), data_root=str(root.resolve()), work_dir=str(work.resolve()))
    cfg.setdefault("seed", 0)
    cfg.setdefault("device", "auto")
    cfg.setdefault("precision", "auto")
    cfg.setdefault("image_size", [256, 128])
    cfg.setdefault("zero_shot", [])
    cfg.setdefault("real_data", False)
    cfg.setdefault("num_workers", 0)

    datasets = cfg["datasets"]
    if not isinstance(datasets, dict) or not datasets:
        raise ProfileError(f"{path}: 'datasets' must map a short key to {{name, root, kwargs}}")
    for key, spec in datasets.items():
        if not isinstance(spec, dict) or "name" not in spec:
            raise ProfileError(f"{path}: datasets.{key} needs at least 'name' (a reidlib.data dataset name)")
        spec.setdefault("root", key)
        spec.setdefault("kwargs", {})
        spec["root"] = str(Path(spec["root"]) if Path(spec["root"]).is_absolute() else root / spec["root"])
        spec.setdefault("label", key)
    for role in ("train_on", "zero_shot"):
        for key in cfg[role]:
            if key not in datasets:
                raise ProfileError(f"{path}: {role} names dataset {key!r}, which is not under 'datasets' "
                                   f"({sorted(datasets)})")

    runs_seen: set[str] = set()
    models = []
    for i, spec in enumerate(cfg["models"]):
        if not isinstance(spec, dict) or "name" not in spec:
            raise ProfileError(f"{path}: models[{i}] needs 'name' (a reidlib.models model name)")
        stray = sorted(map(str, set(spec) - MODEL_KEYS))
        if stray:
            raise ProfileError(f"{path}: models[{i}] has unknown key(s) {stray}; known: {sorted(MODEL_KEYS)} "
                               "(a flow-style label holding a comma must be quoted)")
        spec = dict(spec)
        spec.setdefault("run", spec["name"])
        spec.setdefault("label", spec["run"])
        spec.setdefault("kwargs", {})
        spec.setdefault("pretrained", None)
        spec.setdefault("train_on", cfg["train_on"])
        size = spec.setdefault("image_size", list(cfg["image_size"]))
        if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
            raise ProfileError(f"{path}: models[{i}].image_size must be [height, width] in pixels, got {size!r}")
        spec["image_size"] = [int(v) for v in size]
        spec["train"] = _deep_merge(cfg["training"], spec.get("train", {}))
        if spec["run"] in runs_seen:
            raise ProfileError(f"{path}: two models share run name {spec['run']!r}; give each a unique 'run'")
        runs_seen.add(spec["run"])
        for key in spec["train_on"]:
            if key not in datasets:
                raise ProfileError(f"{path}: models[{i}].train_on names unknown dataset {key!r}")
        models.append(spec)
    cfg["models"] = models

    ft = cfg.get("finetune") or {}
    for pair in ft.get("pairs", []):
        if len(pair) != 2 or any(k not in datasets for k in pair):
            raise ProfileError(f"{path}: finetune.pairs entries must be [source, target] dataset keys, got {pair}")
    for run in ft.get("models", []):
        if run not in runs_seen:
            raise ProfileError(f"{path}: finetune.models names {run!r}, not a model run ({sorted(runs_seen)})")
    return cfg


# ----------------------------------------------------------------------------------------------------------------
# the plan
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class Run:
    """One notebook execution of the study."""

    stage: str
    name: str
    parameters: dict
    depends_on: list[str] = field(default_factory=list)  # ids (stage/name) of upstream runs
    model_name: str | None = None  # the registered model a training/fine-tune run builds (scopes its code hash)

    @property
    def id(self) -> str:
        return f"{self.stage}/{self.name}"

    @property
    def notebook(self) -> Path:
        return NOTEBOOKS_DIR / f"{self.stage}.ipynb"


def results_root() -> Path:
    """Where profiles' results go: ``results/`` in the repository (override with ``REIDLIB_RESULTS_DIR``)."""
    return Path(os.environ.get("REIDLIB_RESULTS_DIR", REPO_ROOT / "results")).resolve()


def results_dir(cfg: dict) -> Path:
    return results_root() / cfg["name"]


def run_dir(cfg: dict, stage: str, name: str) -> Path:
    """Where a run's executed notebook, metrics.json and figures land."""
    if stage == "40_report":
        return results_dir(cfg) / "report"
    return results_dir(cfg) / stage / name


def train_run_name(model_run: str, dataset_key: str) -> str:
    return f"{dataset_key}-{model_run}"


def _common(cfg: dict) -> dict:
    return {
        "profile": cfg["name"],
        "seed": cfg["seed"],
        "device": cfg["device"],
        "precision": cfg["precision"],
        "image_size": list(cfg["image_size"]),
        "num_workers": cfg["num_workers"],
        "real_data": bool(cfg["real_data"]),
    }


def plan(cfg: dict) -> list[Run]:
    """Expand a loaded profile into the ordered list of runs."""
    work = Path(cfg["work_dir"])
    runs: list[Run] = [Run("00_data", "datasets", {**_common(cfg), "datasets": cfg["datasets"],
                                                   "figures_dir": str(work / "figures" / "00_data")})]
    train_ids: dict[tuple[str, str], str] = {}
    for model in cfg["models"]:
        for key in model["train_on"]:
            name = train_run_name(model["run"], key)
            params = {
                **_common(cfg),
                "image_size": model["image_size"],
                "model_name": model["name"],
                "model_run": model["run"],
                "model_label": model["label"],
                "model_kwargs": model["kwargs"],
                "pretrained": model["pretrained"],
                "dataset_key": key,
                "dataset": cfg["datasets"][key],
                "zero_shot": {k: cfg["datasets"][k] for k in cfg["zero_shot"] if k != key},
                "train": model["train"],
                "evaluation": cfg["evaluation"],
                "work_dir": str(work / "10_train" / name),
            }
            run = Run("10_train", name, params, depends_on=["00_data/datasets"], model_name=model["name"])
            runs.append(run)
            train_ids[(model["run"], key)] = run.id

    ft = cfg.get("finetune") or {}
    for model_run in ft.get("models", []):
        model = next(m for m in cfg["models"] if m["run"] == model_run)
        for source, target in ft.get("pairs", []):
            if (model_run, source) not in train_ids:
                raise ProfileError(f"finetune {source}->{target} for {model_run!r} needs that model trained on "
                                   f"{source!r}; add it to the model's train_on")
            name = f"{source}-to-{target}-{model_run}"
            params = {
                **_common(cfg),
                "image_size": model["image_size"],
                "model_run": model_run,
                "model_label": model["label"],
                "source_key": source,
                "target_key": target,
                "target": cfg["datasets"][target],
                "source_metrics": str(run_dir(cfg, "10_train", train_run_name(model_run, source)) / "metrics.json"),
                "finetune": _deep_merge(model["train"], {k: v for k, v in ft.items() if k not in ("pairs", "models")}),
                "evaluation": cfg["evaluation"],
                "work_dir": str(work / "20_finetune" / name),
            }
            runs.append(Run("20_finetune", name, params, depends_on=[train_ids[(model_run, source)]],
                            model_name=model["name"]))

    train_runs = [r for r in runs if r.stage == "10_train"]
    ds = cfg.get("distance_study") or {}
    if ds:
        params = {
            **_common(cfg),
            "train_metrics": [str(run_dir(cfg, r.stage, r.name) / "metrics.json") for r in train_runs],
            "metrics": ds.get("metrics", ["euclidean", "cosine", "correlation", "cityblock", "minkowski"]),
            "normalize": ds.get("normalize", [True, False]),
            "minkowski_p": ds.get("minkowski_p", 3),
            "rerank": ds.get("rerank", True),
            "evaluation": cfg["evaluation"],
        }
        runs.append(Run("30_distance_study", "all", params, depends_on=[r.id for r in train_runs]))

    upstream = [r for r in runs if r.stage != "00_data"]
    report = {
        **_common(cfg),
        "description": cfg["description"],
        "profile_path": cfg["path"],
        "metrics_files": {r.id: str(run_dir(cfg, r.stage, r.name) / "metrics.json") for r in runs},
        "report": cfg.get("report", {}),
        "figures_dir": str(work / "figures" / "report"),
        "stale_runs": stale_runs(runs, cfg),
    }
    runs.append(Run("40_report", "report", report, depends_on=[r.id for r in upstream] + ["00_data/datasets"]))
    return runs


def stale_runs(runs: list[Run], cfg: dict) -> list[str]:
    """Ids of the runs whose recorded inputs differ from their current ones (or that never ran).

    The report is given this list: with ``--only 40_report`` it may gather results that the current code or
    parameters would no longer produce, and it says so beside them.
    """
    return [r.id for r in runs if r.stage != "40_report" and not is_up_to_date(r, cfg)]


# ----------------------------------------------------------------------------------------------------------------
# provenance and up-to-date checks
# ----------------------------------------------------------------------------------------------------------------
def _sha256_files(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(str(p.relative_to(REPO_ROOT)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


# presentation-only modules: editing them re-runs the report, never a training or evaluation stage
REPORT_ONLY_MODULES = ("reidlib/reporting.py",)
# the runner itself: it reaches a run only through the run's parameters, which are hashed on their own
RUNNER_MODULES = ("reidlib/pipeline.py",)


def model_family_files() -> dict[str, Path]:
    """Each registered model name -> the file that defines its family (e.g. ``reidlib/models/osnet.py``)."""
    import inspect

    from reidlib.models.registry import get_entry, list_models

    return {name: Path(inspect.getfile(get_entry(name).factory)).resolve() for name in list_models()}


def library_files(stage: str | None = None, model_name: str | None = None) -> list[Path]:
    """reidlib's sources a run depends on.

    Every module except the runner (:data:`RUNNER_MODULES`); the report-only modules only for ``40_report``; and
    for a run that builds one registered model (``model_name``), not the files of the *other* model families, so
    fixing MobileNetV3 leaves the OSNet and ResNet50 runs up to date.
    """
    files = sorted((REPO_ROOT / "reidlib").rglob("*.py"))
    skip = set(RUNNER_MODULES) | (set() if stage == "40_report" else set(REPORT_ONLY_MODULES))
    families = model_family_files() if model_name is not None else {}
    if model_name in families:
        skip |= {p.relative_to(REPO_ROOT).as_posix() for p in families.values() if p != families[model_name]}
    return [p for p in files if p.relative_to(REPO_ROOT).as_posix() not in skip]


def library_hash(stage: str | None = None, model_name: str | None = None) -> str:
    """Hash of :func:`library_files`: a code change makes the runs that depend on it stale."""
    return _sha256_files(library_files(stage, model_name))


def portable(value: Any) -> Any:
    """``value`` with this checkout's and the shared folder's absolute paths written as ``{repo}``/``{shared}``.

    Applied to what is hashed and recorded, so a clone elsewhere finds the same runs up to date and committed
    results name no machine's folders.
    """
    if isinstance(value, str):
        return value.replace(str(REPO_ROOT), "{repo}").replace(str(shared_dir()), "{shared}")
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(v) for v in value]
    return value


def input_hash(run: Run, cfg: dict) -> str:
    """What a run's outputs depend on: notebook, parameters, library code and upstream metrics."""
    h = hashlib.sha256()
    h.update(run.notebook.read_bytes())
    h.update(json.dumps(portable(run.parameters), sort_keys=True, default=str).encode())
    h.update(library_hash(run.stage, run.model_name).encode())
    for dep in run.depends_on:
        stage, name = dep.split("/", 1)
        metrics = run_dir(cfg, stage, name) / "metrics.json"
        h.update(metrics.read_bytes() if metrics.is_file() else b"missing")
    return h.hexdigest()


def git_commit() -> str:
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
        import torchvision
        import timm

        info.update(torchvision=torchvision.__version__, timm=timm.__version__)
    except ImportError:  # pragma: no cover - both are pinned requirements
        pass
    return info


def is_up_to_date(run: Run, cfg: dict) -> bool:
    info = run_dir(cfg, run.stage, run.name) / "run.json"
    if not info.is_file():
        return False
    try:
        return json.loads(info.read_text()).get("input_hash") == input_hash(run, cfg)
    except (json.JSONDecodeError, OSError):
        return False


# ----------------------------------------------------------------------------------------------------------------
# execution
# ----------------------------------------------------------------------------------------------------------------
class StageFailed(RuntimeError):
    """A notebook raised; the message names the executed notebook that shows the error."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_orphans(final: Path) -> list[Path]:
    """Clean up after a pipeline process killed while executing the run that ends in ``final``.

    Its half-written ``.tmp-<run>-<pid>`` folder is deleted; its ``.old-<run>-<pid>`` (the previous result, set aside
    for the swap) is moved back to ``final`` if nothing took its place, else deleted. Only folders whose pid is no
    longer alive are touched. Returns the folders removed or restored.
    """
    touched = []
    for folder in sorted(final.parent.glob(f".tmp-{final.name}-*")) + sorted(final.parent.glob(f".old-{final.name}-*")):
        pid = folder.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or _pid_alive(int(pid)):
            continue
        if folder.name.startswith(".old-") and not final.exists():
            folder.rename(final)
        else:
            shutil.rmtree(folder, ignore_errors=True)
        touched.append(folder)
    return touched


def execute(run: Run, cfg: dict, log_output: bool = False) -> Path:
    """Execute one run's notebook into a temporary folder and move it into place when it succeeds.

    Returns:
        The final run directory. On failure the executed notebook is kept under ``work/<profile>/failed/`` and
        :class:`StageFailed` names it; ``results/`` is left as it was.
    """
    import papermill as pm

    final = run_dir(cfg, run.stage, run.name)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(final)
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    out_nb = tmp / f"{run.stage}.ipynb"
    key = input_hash(run, cfg)
    # run_key lets a training notebook tell "resume my interrupted run" (same key) from "inputs changed" (new key)
    params = {**run.parameters, "out_dir": str(tmp), "run_key": key}
    (tmp / "params.yaml").write_text(yaml.safe_dump(portable(run.parameters), sort_keys=False))
    started = time.time()
    try:
        pm.execute_notebook(str(run.notebook), str(out_nb), parameters=params, cwd=str(NOTEBOOKS_DIR),
                            kernel_name="python3", progress_bar=False, log_output=log_output)
    except Exception as exc:
        failed = Path(cfg["work_dir"]) / "failed" / run.stage / f"{run.name}.ipynb"
        failed.parent.mkdir(parents=True, exist_ok=True)
        if out_nb.is_file():
            shutil.copy2(out_nb, failed)
        shutil.rmtree(tmp, ignore_errors=True)
        raise StageFailed(f"{run.id} failed: {type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}\n"
                          f"  executed notebook with the error: {failed}") from exc
    except BaseException:  # Ctrl-C: leave results/ as it was
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not (tmp / "metrics.json").is_file():
        shutil.rmtree(tmp, ignore_errors=True)
        raise StageFailed(f"{run.id}: notebook finished but wrote no metrics.json into out_dir")
    _scrub_tmp_paths(tmp, final)
    info = {
        "run": run.id,
        "profile": cfg["name"],
        "notebook": str(run.notebook.relative_to(REPO_ROOT)),
        "command": f"./run_all.sh {cfg['name']} --only {run.stage}",
        "input_hash": key,
        "git_commit": git_commit(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "wall_seconds": round(time.time() - started, 1),
        "environment": environment_info(),
    }
    (tmp / "run.json").write_text(json.dumps(info, indent=2))
    trash = final.parent / f".old-{final.name}-{os.getpid()}"
    if final.exists():
        final.rename(trash)
    tmp.rename(final)
    shutil.rmtree(trash, ignore_errors=True)
    return final


def _scrub_tmp_paths(tmp: Path, final: Path) -> None:
    """In a run's text outputs, write the temporary folder as the final one, every path inside this checkout
    as repo-relative and the shared folder as ``{shared}`` (:func:`reidlib.study.read_metrics` resolves them)."""
    replacements = [(str(tmp), str(final)), (str(REPO_ROOT) + "/", ""), (str(shared_dir()), "{shared}")]
    for path in list(tmp.glob("*.json")) + list(tmp.glob("*.ipynb")) + list(tmp.glob("*.md")):
        text = original = path.read_text()
        for old, new in replacements:
            text = text.replace(old, new)
        if text != original:
            path.write_text(text)


def run_study(profile: str, data_root: str | None = None, only: list[str] | None = None, force: bool = False,
              dry_run: bool = False, log_output: bool = False) -> list[Path]:
    """Run (or refresh) a whole profile. ``only`` restricts to stages (e.g. ``["10_train"]``) or run ids."""
    cfg = load_profile(profile, data_root)
    runs = plan(cfg)
    if only:
        unknown = [o for o in only if o not in STAGES and o not in {r.id for r in runs}]
        if unknown:
            raise ProfileError(f"--only {unknown}: not a stage {STAGES} nor a run id of this profile")
        runs = [r for r in runs if r.stage in only or r.id in only]
    done: list[Path] = []
    total = time.time()
    everything = plan(cfg)
    for i, run in enumerate(runs, 1):
        head = f"[{i}/{len(runs)}] {run.id}"
        if run.stage == "40_report":  # the runs executed above are up to date now
            run.parameters["stale_runs"] = stale_runs(everything, cfg)
        if not force and is_up_to_date(run, cfg):
            print(f"{head}: up to date, skipped", flush=True)
            continue
        if dry_run:
            print(f"{head}: would run {run.notebook.name}", flush=True)
            continue
        t0 = time.time()
        print(f"{head}: running {run.notebook.name} ...", flush=True)
        out = execute(run, cfg, log_output=log_output)
        print(f"{head}: done in {time.time() - t0:.0f} s -> {out}", flush=True)
        done.append(out)
    print(f"profile {cfg['name']}: {len(done)} run(s) executed in {time.time() - total:.0f} s; "
          f"results in {results_dir(cfg)}/", flush=True)
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reidlib.pipeline", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_run = sub.add_parser("run", help="run a profile's notebooks into results/<profile>/")
    p_run.add_argument("profile", nargs="?", default="default", help=f"one of {list_profiles()} or a YAML path")
    p_run.add_argument("--data-root", default=None, help="where datasets live / synthetic data is generated")
    p_run.add_argument("--only", action="append", default=None, help=f"a stage {STAGES} or run id; repeatable")
    p_run.add_argument("--force", action="store_true", help="rerun even when outputs are up to date")
    p_run.add_argument("--dry-run", action="store_true", help="print what would run")
    p_run.add_argument("--log-output", action="store_true", help="stream notebook output to the terminal")
    sub.add_parser("list", help="list profiles and their runs")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "list":
            for name in list_profiles():
                cfg = load_profile(name)
                print(f"{name}: {cfg['description'].strip().splitlines()[0]}")
                for run in plan(cfg):
                    print(f"    {run.id}")
            return 0
        run_study(args.profile, args.data_root, args.only, args.force, args.dry_run, args.log_output)
        return 0
    except (ProfileError, StageFailed) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
