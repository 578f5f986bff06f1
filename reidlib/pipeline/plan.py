"""The plan: a loaded profile expanded into the ordered notebook runs of the study.

    00_data             one run: dataset statistics, image check (and sample grids for synthetic data)
    10_train            one run per (model, training dataset): train, select on held-out ids, test once, zero-shot
    20_finetune         one run per (model, source -> target): fine-tune a trained model on the other domain
    30_distance_study   one run: the five distances (and re-ranking) on the trained models' features
    40_report           one run: tables and figures of the whole study into ``results/<profile>/report``

:func:`plan` is pure: it reads nothing but the profile dict (the report's list of stale runs is added by the
runner, which looks at ``results/``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from reidlib.paths import NOTEBOOKS_DIR, results_root
from reidlib.stages.ids import DATA_STAGE, DISTANCE_STAGE, FINETUNE_STAGE, REPORT_STAGE, TRAIN_STAGE
from reidlib.stages.ids import STAGES as STAGES  # the pipeline's users import the stage ids from here

from .profile import deep_merge, load_profile
from .schema import ProfileError


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


def results_dir(cfg: dict) -> Path:
    """``results/<profile>/``."""
    return results_root() / cfg["name"]


def run_dir(cfg: dict, stage: str, name: str) -> Path:
    """Where a run's executed notebook, metrics.json and figures land."""
    if stage == REPORT_STAGE:
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
    """Expand a loaded profile (:func:`load_profile`) into the ordered list of runs."""
    work = Path(cfg["work_dir"])
    runs: list[Run] = [Run(DATA_STAGE, "datasets", {**_common(cfg), "datasets": cfg["datasets"],
                                                   "figures_dir": str(work / "figures" / DATA_STAGE),
                                                   "cache_dir": str(work / "image-check")})]
    train_ids: dict[tuple[str, str], str] = {}
    # decoded training images are cached once per profile and shared by its runs (a memory-mapped file)
    cache = {"cache_dir": str(work / "image-cache")}
    for model in cfg["models"]:
        for key in model["train_on"]:
            name = train_run_name(model["run"], key)
            zero_shot = {k: cfg["datasets"][k] for k in cfg["zero_shot"] if k != key}
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
                "zero_shot": zero_shot,
                "train": {**cache, **model["train"]},
                "evaluation": cfg["evaluation"],
                "work_dir": str(work / TRAIN_STAGE / name),
            }
            run = Run(TRAIN_STAGE, name, params, depends_on=[f"{DATA_STAGE}/datasets"], model_name=model["name"])
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
                "source_metrics": str(run_dir(cfg, TRAIN_STAGE, train_run_name(model_run, source)) / "metrics.json"),
                "finetune": deep_merge({**cache, **model["train"]},
                                       {k: v for k, v in ft.items() if k not in ("pairs", "models")}),
                "evaluation": cfg["evaluation"],
                "work_dir": str(work / FINETUNE_STAGE / name),
            }
            runs.append(Run(FINETUNE_STAGE, name, params, depends_on=[train_ids[(model_run, source)]],
                            model_name=model["name"]))

    train_runs = [r for r in runs if r.stage == TRAIN_STAGE]
    ds = cfg.get("distance_study") or {}
    if ds:
        params = {
            **_common(cfg),
            "train_metrics": [str(run_dir(cfg, r.stage, r.name) / "metrics.json") for r in train_runs],
            "metrics": ds.get("metrics", ["euclidean", "cosine", "correlation", "cityblock", "minkowski"]),
            "normalize": ds.get("normalize", [True, False]),
            "minkowski_p": ds.get("minkowski_p", 3),
            "rerank": ds.get("rerank", True),
            "verification": ds.get("verification", True),
            "max_impostors": ds.get("max_impostors", 1_000_000),
            "evaluation": cfg["evaluation"],
        }
        runs.append(Run(DISTANCE_STAGE, "all", params, depends_on=[r.id for r in train_runs]))

    named = list((cfg.get("report") or {}).get("ranking") or [])
    named += [ref["compare_with"] for ref in (cfg.get("report") or {}).get("references") or [] if "compare_with" in ref]
    for v in (cfg.get("report") or {}).get("variants") or []:
        named += [v["fixed"], v["variant"]]
    unknown = sorted({rid for rid in named if rid not in {r.id for r in runs}})
    if unknown:
        raise ProfileError(f"report.ranking/variants/references name {unknown}, which this profile does not run; "
                           f"its training runs are {[r.id for r in runs if r.stage == '10_train']}")
    upstream = [r for r in runs if r.stage != DATA_STAGE]
    report = {
        **_common(cfg),
        "description": cfg["description"],
        "profile_path": cfg["path"],
        "metrics_files": {r.id: str(run_dir(cfg, r.stage, r.name) / "metrics.json") for r in runs},
        "report": cfg.get("report") or {},
        "figures_dir": str(work / "figures" / "report"),
        "stale_runs": [r.id for r in runs],  # the runner replaces this with the runs that really are stale
    }
    runs.append(Run(REPORT_STAGE, "report", report,
                    depends_on=[r.id for r in upstream] + [f"{DATA_STAGE}/datasets"]))
    return runs


def metrics_files(profile: str, stage: str | None = None) -> dict[str, str] | list[str]:
    """``{run id: metrics.json path}`` of a profile's planned runs (a list of paths when ``stage`` is given).

    For notebooks opened by hand, without the parameters the pipeline injects.
    """
    cfg = load_profile(profile)
    files = {r.id: str(run_dir(cfg, r.stage, r.name) / "metrics.json") for r in plan(cfg)}
    if stage is None:
        return files
    return [path for run_id, path in files.items() if run_id.startswith(stage + "/")]


def train_metrics_path(profile: str, model_run: str, dataset_key: str) -> str:
    """The metrics.json of ``model_run`` trained on ``dataset_key`` in ``profile``."""
    cfg = load_profile(profile)
    return str(run_dir(cfg, TRAIN_STAGE, train_run_name(model_run, dataset_key)) / "metrics.json")
