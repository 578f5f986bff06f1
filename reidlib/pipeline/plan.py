"""The plan: a loaded profile expanded into the ordered notebook runs of the study.

    00_data             one run: dataset statistics, image check (and sample grids for synthetic data)
    10_train            one run per (model, training dataset): train, select on held-out ids, test once, zero-shot
                        (and per variant and seed: ids ``<dataset>-<model>@<variant>-seed<s>``, see :mod:`.variants`)
    20_finetune         one run per (model, source -> target): fine-tune a trained model on the other domain
                        (per variant, from the first seed's training run)
    30_distance_study   one run: the five distances (and re-ranking) on the trained models' features
    40_report           one run: tables and figures of the whole study into ``results/<profile>/report``

:func:`plan` is pure: it reads nothing but the profile dict (the report's list of stale runs is added by the
runner, which looks at ``results/``). A profile without ``variants`` and ``seeds`` plans the same runs, with the
same parameters, as before those keys existed; the distance study and the report's main tables read the profile's
own runs of its first seed, and the report gets the variant and seed runs as ``run_groups``.
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


def train_run_name(model_run: str, dataset_key: str, variant: str | None = None, seed: int | None = None) -> str:
    """``<dataset>-<model run>``, then ``@<variant>`` for a variant's run and ``-seed<s>`` for a seed other than the
    profile's first."""
    return f"{dataset_key}-{model_run}" + (f"@{variant}" if variant else "") + ("" if seed is None else f"-seed{seed}")


def finetune_run_name(model_run: str, source: str, target: str, variant: str | None = None) -> str:
    return f"{source}-to-{target}-{model_run}" + (f"@{variant}" if variant else "")


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
    seeds = cfg.get("seeds") or [cfg["seed"]]
    studies = [(None, cfg), *(cfg.get("variant_profiles") or {}).items()]
    groups: list[dict] = []  # per (variant, model, dataset): its runs, one per seed (the report's run_groups)
    finetunes: list[Run] = []  # after every study's training runs: the plan keeps stage order
    for variant, study in studies:
        train_ids: dict[tuple[str, str], str] = {}
        for model in study["models"]:
            # a model's own seeds replace the study's; a row evaluated as loaded (epochs 0) draws nothing at
            # random: one run, whatever the seeds
            model_seeds = model.get("seeds") or seeds
            model_seeds = model_seeds if int(model["train"].get("epochs", 1)) > 0 else model_seeds[:1]
            for key in model["train_on"]:
                group = {"stage": TRAIN_STAGE, "variant": variant, "model_run": model["run"], "dataset_key": key,
                         "model_label": model["label"], "dataset_label": _dataset_label(study, key),
                         "seeds": model_seeds, "runs": []}
                for i, seed in enumerate(model_seeds):
                    run = _train_run(cfg, study, model, key, variant, None if i == 0 else seed)
                    runs.append(run)
                    group["runs"].append(run.id)
                train_ids[(model["run"], key)] = group["runs"][0]
                groups.append(group)
        for run in _finetune_runs(cfg, study, variant, train_ids):
            finetunes.append(run)
            target, source = run.parameters["target_key"], run.parameters["source_key"]
            groups.append({"stage": FINETUNE_STAGE, "variant": variant, "model_run": run.parameters["model_run"],
                           "dataset_key": target, "source_key": source, "model_label": run.parameters["model_label"],
                           "dataset_label": _dataset_label(study, target),
                           "source_label": _dataset_label(study, source), "seeds": seeds[:1], "runs": [run.id]})
    runs += finetunes

    # the profile's own runs of its first seed: what the distance study and the report's main tables read
    base_runs = {g["runs"][0] for g in groups if g["variant"] is None}
    ids = [r.id for r in runs]
    twice = sorted({rid for rid in ids if ids.count(rid) > 1})
    if twice:
        raise ProfileError(f"run ids {twice} would be planned twice: give the variants or model runs names whose "
                           f"runs differ (a variant name ending in -seed<N> can clash with a seed's run)")
    train_runs = [r for r in runs if r.stage == TRAIN_STAGE and r.id in base_runs]
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
    extra = {r.id for r in runs if r.stage in (TRAIN_STAGE, FINETUNE_STAGE) and r.id not in base_runs}
    report = {
        **_common(cfg),
        "description": cfg["description"],
        "profile_path": cfg["path"],
        "metrics_files": {r.id: str(run_dir(cfg, r.stage, r.name) / "metrics.json") for r in runs
                          if r.id not in extra},
        "report": cfg.get("report") or {},
        "figures_dir": str(work / "figures" / "report"),
        "stale_runs": [r.id for r in runs],  # the runner replaces this with the runs that really are stale
    }
    report.update(_report_extras(cfg, groups, runs))
    runs.append(Run(REPORT_STAGE, "report", report,
                    depends_on=[r.id for r in upstream] + [f"{DATA_STAGE}/datasets"]))
    return runs


def _train_run(cfg: dict, study: dict, model: dict, key: str, variant: str | None, seed: int | None) -> Run:
    """The ``10_train`` run of ``model`` on dataset ``key`` in ``study`` (the profile, or one of its variants);
    ``seed`` None: the profile's first seed (the parameters a profile without ``seeds`` gives)."""
    work = Path(cfg["work_dir"])
    name = train_run_name(model["run"], key, variant, seed)
    params = {
        **_common(study),
        "image_size": model["image_size"],
        "model_name": model["name"],
        "model_run": model["run"],
        "model_label": model["label"],
        "model_kwargs": model["kwargs"],
        "pretrained": model["pretrained"],
        "dataset_key": key,
        "dataset": study["datasets"][key],
        "zero_shot": {k: study["datasets"][k] for k in study["zero_shot"] if k != key},
        # decoded training images are cached once per profile and shared by its runs (a memory-mapped file)
        "train": {"cache_dir": str(work / "image-cache"), **model["train"]},
        "evaluation": study["evaluation"],
        "work_dir": str(work / TRAIN_STAGE / name),
    }
    if seed is not None:
        params["seed"] = seed
    if not study.get("test_split", True):
        params["test_split"] = False
    return Run(TRAIN_STAGE, name, params, depends_on=[f"{DATA_STAGE}/datasets"], model_name=model["name"])


def _dataset_label(study: dict, key: str) -> str:
    """The label a study gives dataset ``key`` (the key itself where it names none)."""
    return str(study["datasets"][key].get("label") or key)


def _finetune_runs(cfg: dict, study: dict, variant: str | None, train_ids: dict[tuple[str, str], str]) -> list[Run]:
    """The ``20_finetune`` runs of ``study`` (the profile or a variant), each from the first seed's training run
    (``train_ids``: (model run, dataset) -> its run id)."""
    work = Path(cfg["work_dir"])
    ft = study.get("finetune") or {}
    runs = []
    for model_run in ft.get("models", []):
        model = next(m for m in study["models"] if m["run"] == model_run)
        for source, target in ft.get("pairs", []):
            if (model_run, source) not in train_ids:
                raise ProfileError(f"finetune {source}->{target} for {model_run!r} needs that model trained on "
                                   f"{source!r}; add it to the model's train_on")
            name = finetune_run_name(model_run, source, target, variant)
            source_run = train_ids[(model_run, source)].split("/", 1)[1]
            params = {
                **_common(study),
                "image_size": model["image_size"],
                "model_run": model_run,
                "model_label": model["label"],
                "source_key": source,
                "target_key": target,
                "target": study["datasets"][target],
                "source_metrics": str(run_dir(cfg, TRAIN_STAGE, source_run) / "metrics.json"),
                "finetune": deep_merge({"cache_dir": str(work / "image-cache"), **model["train"]},
                                       {k: v for k, v in ft.items() if k not in ("pairs", "models")}),
                "evaluation": study["evaluation"],
                "work_dir": str(work / FINETUNE_STAGE / name),
            }
            runs.append(Run(FINETUNE_STAGE, name, params, depends_on=[train_ids[(model_run, source)]],
                            model_name=model["name"]))
    return runs


def _report_extras(cfg: dict, groups: list[dict], runs: list[Run]) -> dict:
    """The report's parameters for variants, seeds and held-out-only profiles (none for a profile without them,
    so its report's inputs stay what they were): ``run_groups`` (each group's runs, one per seed, with their
    ``metrics.json``), ``variant_overrides`` (what each variant changes, as written) and ``test_split``. A held-out
    profile always gets its groups: its whole report is built from them, variants or not."""
    out: dict = {}
    held_out = not cfg.get("test_split", True)
    if held_out or cfg.get("seeds") or cfg.get("variant_profiles") or any(m.get("seeds") for m in cfg["models"]):
        where = {r.id: str(run_dir(cfg, r.stage, r.name) / "metrics.json") for r in runs}
        out["run_groups"] = [{**g, "metrics": [where[rid] for rid in g["runs"]]} for g in groups]
        out["variant_overrides"] = {k: v for k, v in (cfg.get("variants") or {}).items() if v is not None}
    if held_out:
        out["test_split"] = False
    return out


def metrics_files(profile: str, stage: str | None = None) -> dict[str, str] | list[str]:
    """``{run id: metrics.json path}`` of the runs a profile's report gathers: every planned run but the report,
    variants and seeds after the first left out (a list of paths when ``stage`` is given).

    For notebooks opened by hand, without the parameters the pipeline injects.
    """
    cfg = load_profile(profile)
    files = next(r for r in plan(cfg) if r.stage == REPORT_STAGE).parameters["metrics_files"]
    if stage is None:
        return files
    return [path for run_id, path in files.items() if run_id.startswith(stage + "/")]


def train_metrics_path(profile: str, model_run: str, dataset_key: str) -> str:
    """The metrics.json of ``model_run`` trained on ``dataset_key`` in ``profile``."""
    cfg = load_profile(profile)
    return str(run_dir(cfg, TRAIN_STAGE, train_run_name(model_run, dataset_key)) / "metrics.json")
