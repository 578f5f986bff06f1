"""What the study's notebooks call: one function per notebook step, so notebooks stay prose, a call and a table.

Runs talk through files: each notebook writes ``metrics.json`` (see :func:`write_metrics`) into its run directory;
checkpoints and stored features live in the run's work directory, outside ``results/``.
All accuracies in tables and ``metrics.json`` are percentages (0-100); CMC curves are stored as fractions (0-1).
"""
from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reidlib.plots import save_figure  # noqa: F401  (re-exported for the notebooks)

RANKS = (1, 5, 10, 20)


# ----------------------------------------------------------------------------------------------------------------
# metrics files
# ----------------------------------------------------------------------------------------------------------------
def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (np.floating, float)):
        value = float(obj)
        if not math.isfinite(value):
            raise ValueError(f"refusing to write a non-finite number ({value}) into metrics.json")
        return value
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_metrics(out_dir: str | Path, metrics: dict) -> Path:
    """Write ``metrics.json`` atomically (temp file, then rename); non-finite numbers are an error."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "metrics.json"
    tmp = out / f".metrics.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(_jsonable(metrics), indent=2))
    tmp.replace(path)
    return path


def read_metrics(path: str | Path) -> dict:
    """Read a run's ``metrics.json``; a clear error names the stage to run when it is missing.

    Recorded paths of work artefacts (checkpoints, stored features) may be repo-relative (the pipeline writes
    them so); they are returned as absolute paths inside this checkout.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run the stage that writes it first "
                                f"(./run_all.sh <profile> --only {path.parent.parent.name})")
    metrics = json.loads(path.read_text())
    if metrics.get("checkpoint"):
        metrics["checkpoint"] = repo_path(metrics["checkpoint"])
    for feats in (metrics.get("features") or {}).values():
        for key in ("query", "gallery"):
            if isinstance(feats, dict) and feats.get(key):
                feats[key] = repo_path(feats[key])
    return metrics


def repo_path(path: str | Path) -> str:
    """An absolute path: ``path`` itself, or a repo-relative one joined to this checkout's root."""
    from reidlib.pipeline import REPO_ROOT

    path = Path(path)
    return str(path if path.is_absolute() else REPO_ROOT / path)


# ----------------------------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------------------------
def load_dataset(spec: dict):
    """Build the dataset a profile entry ``{name, root, kwargs}`` describes."""
    from reidlib.data import build_dataset

    return build_dataset(spec["name"], spec["root"], **(spec.get("kwargs") or {}))


def dataset_records(loaded: dict) -> dict:
    """Per dataset and split: images, identities, cameras (JSON-ready)."""
    from reidlib.data.base import split_stats

    return {key: {"name": ds.name, "protocol": ds.protocol,
                  **{split: split_stats(getattr(ds, split)) for split in ("train", "query", "gallery")}}
            for key, ds in loaded.items()}


def dataset_table(loaded: dict) -> pd.DataFrame:
    """One row per dataset and split (images / ids / cameras)."""
    rows = []
    for key, rec in dataset_records(loaded).items():
        for split in ("train", "query", "gallery"):
            rows.append({"dataset": key, "split": split, **rec[split]})
    return pd.DataFrame(rows).set_index(["dataset", "split"])


def sample_grid(dataset, num_ids: int = 6, per_id: int = 6, seed: int = 0):
    """A figure with one row per identity (query + gallery images), for a first look at a dataset."""
    import matplotlib.pyplot as plt
    from PIL import Image

    by_pid: dict[int, list] = {}
    for path, pid, cam in list(dataset.query) + list(dataset.gallery):
        if pid > 0:
            by_pid.setdefault(pid, []).append((path, cam))
    rng = random.Random(seed)
    pids = sorted(by_pid)
    pids = rng.sample(pids, min(num_ids, len(pids)))
    fig, axes = plt.subplots(len(pids), per_id, figsize=(per_id * 0.9, len(pids) * 1.6), squeeze=False)
    for r, pid in enumerate(pids):
        items = sorted(by_pid[pid], key=lambda t: (t[1], t[0]))[:per_id]
        for c in range(per_id):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(items):
                with Image.open(items[c][0]) as img:
                    ax.imshow(img.convert("RGB"))
                ax.set_title(f"id {pid} c{items[c][1] + 1}", fontsize=6)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------------------------
# results of a training or fine-tuning run
# ----------------------------------------------------------------------------------------------------------------
def summarize(result: dict) -> dict:
    """Percentages of an :func:`reidlib.evaluation.evaluate` result: R1/R5/R10/R20, mAP, mINP."""
    cmc = np.asarray(result["cmc"], dtype=float)
    row = {f"R{r}": 100.0 * float(cmc[min(r, len(cmc)) - 1]) for r in RANKS}
    row["mAP"] = 100.0 * float(result["mAP"])
    row["mINP"] = 100.0 * float(result.get("mINP", float("nan")))
    return row


@dataclass
class Outcome:
    """What a training or fine-tuning run produced."""

    model_name: str
    dataset_label: str
    history: list[dict]
    evaluations: dict[str, dict]  # dataset key -> {label, role, summary numbers, cmc, ...}
    train_info: dict
    checkpoint: str | None
    features: dict[str, dict] = field(default_factory=dict)
    complexity: dict = field(default_factory=dict)

    def summary_table(self) -> pd.DataFrame:
        rows = []
        for key, ev in self.evaluations.items():
            rows.append({"dataset": key, "role": ev["role"], **{k: round(ev[k], 1) for k in (*[f"R{r}" for r in RANKS],
                                                                                            "mAP", "mINP")}})
        return pd.DataFrame(rows).set_index(["dataset", "role"])

    def to_metrics(self, **extra) -> dict:
        return {**extra, "model_name": self.model_name, "dataset_label": self.dataset_label,
                "train": self.train_info, "history": self.history, "evaluations": self.evaluations,
                "checkpoint": self.checkpoint, "features": self.features, "complexity": self.complexity}


def _transforms(image_size, train_cfg: dict):
    from reidlib.data import build_transforms

    h, w = image_size
    t = dict(train_cfg.get("transforms") or {})
    train_tf = build_transforms(h, w, is_train=True, **t)
    test_tf = build_transforms(h, w, is_train=False)
    return train_tf, test_tf


def _evaluate_split(model, ds, test_tf, evaluation: dict, device, precision, num_workers: int, role: str,
                    label: str, feature_dir: Path | None, key: str) -> tuple[dict, dict]:
    """Extract query/gallery features of ``ds`` and evaluate them; return (evaluation record, feature paths)."""
    from reidlib.data import make_test_loader
    from reidlib.evaluation import evaluate_features, extract_features

    t0 = time.time()
    feats = {}
    for split in ("query", "gallery"):
        loader = make_test_loader(getattr(ds, split), test_tf, batch_size=evaluation.get("batch_size", 128),
                                  num_workers=num_workers)
        feats[split] = extract_features(model, loader, flip=evaluation.get("flip", True), device=device,
                                        precision=precision, progress=False)
    extract_s = time.time() - t0
    qf, gf = feats["query"], feats["gallery"]
    result = evaluate_features(qf.feats, gf.feats, qf.pids, gf.pids, qf.camids, gf.camids,
                               metric=evaluation.get("metric", "euclidean"),
                               normalize=evaluation.get("normalize", True),
                               max_rank=evaluation.get("max_rank", 50), protocol=ds.protocol,
                               rerank=evaluation.get("rerank") or None)
    paths = {}
    if feature_dir is not None:
        feature_dir.mkdir(parents=True, exist_ok=True)
        for split, fs in feats.items():
            p = feature_dir / f"{key}_{split}.npz"
            fs.save(p)
            paths[split] = str(p)
        paths["protocol"] = ds.protocol
    n_img = len(qf.pids) + len(gf.pids)
    record = {"label": label, "role": role, **summarize(result), "cmc": np.asarray(result["cmc"]).tolist(),
              "num_query": len(qf.pids), "num_gallery": len(gf.pids),
              "num_valid_queries": int(result["num_valid_queries"]),
              "metric": evaluation.get("metric", "euclidean"), "normalize": bool(evaluation.get("normalize", True)),
              "flip": bool(evaluation.get("flip", True)), "rerank": bool(evaluation.get("rerank") or False),
              "extract_images_per_s": n_img * (2 if evaluation.get("flip", True) else 1) / max(extract_s, 1e-9)}
    return record, paths


def _complexity(model_name: str, model_kwargs: dict, num_classes: int, image_size=(256, 128)) -> dict:
    """Trainable and inference-time parameters, and multiply-adds of one image at ``image_size`` (the paper's
    256x128 by default, whatever size a run trained at)."""
    from reidlib.models import build_model
    from reidlib.models.complexity import (
        count_flops,
        count_parameters,
        inference_parameter_count,
    )

    model = build_model(model_name, num_classes=num_classes, **model_kwargs)
    size = tuple(image_size)
    return {"params_trainable": count_parameters(model), "params_inference": inference_parameter_count(model, size),
            "gmacs": count_flops(model, size)["macs"] / 1e9, "image_size": list(size)}


def prepare_work_dir(work_dir: str | Path, run_key: str | None) -> Path:
    """Create a run's work directory (checkpoints, features) and decide between resuming and starting afresh.

    The pipeline passes the run's input hash as ``run_key``: the same key means an interrupted run of the same
    inputs, whose ``last.pt`` the trainer resumes; a different key means the inputs (parameters, code, upstream
    results) changed, and the old checkpoints are removed so training starts from scratch.
    ``run_key=None`` (a notebook opened by hand) keeps whatever is there.
    """
    import shutil

    work = Path(work_dir)
    marker = work / "run_key.txt"
    if run_key is not None and marker.is_file() and marker.read_text().strip() != run_key:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    if run_key is not None:
        marker.write_text(run_key)
    return work


def _fit_kwargs(train: dict, image_size, device, precision: str, seed: int, num_workers: int) -> dict:
    """Map a profile's ``training`` block onto :func:`reidlib.engine.fit` keywords (test evaluation is ours)."""
    kwargs = {k: v for k, v in train.items() if k not in ("transforms", "head_only_epochs")}
    kwargs.update(train.get("transforms") or {})
    kwargs.update(height=int(image_size[0]), width=int(image_size[1]), device=str(device), precision=precision,
                  seed=seed, num_workers=num_workers, evaluate_test=False)
    return kwargs


def _train_info(res, image_size, device, seed: int) -> dict:
    info = res.summary()
    info.update(epochs=res.epochs_planned, image_size=list(image_size), device=str(device), seed=seed,
                torch_threads=_threads(), select_on=res.selected_on,
                images_per_s=float(np.mean([r["images_per_s"] for r in res.history])) if res.history else None,
                recipe={k: v for k, v in res.config.items() if k not in ("device", "progress", "resume")})
    return info


def train_and_test(*, model_name: str, model_kwargs: dict, pretrained: str | None, dataset: dict, zero_shot: dict,
                   train: dict, evaluation: dict, image_size, work_dir: str, seed: int = 0, device: str = "auto",
                   precision: str = "auto", num_workers: int = 0, run_key: str | None = None) -> Outcome:
    """Train ``model_name`` on ``dataset`` with the profile's recipe, select on held-out ids, test once.

    ``train["epochs"] == 0`` skips training (a reference row: pretrained weights evaluated as they are).
    Then the selected model is evaluated on the test split and zero-shot on each dataset in ``zero_shot``;
    the test features are stored in ``work_dir/features`` for the distance study.
    """
    from reidlib.engine import fit
    from reidlib.models import build_model
    from reidlib.runtime import resolve_device, seed_everything

    work = prepare_work_dir(work_dir, run_key)
    seed_everything(seed)
    dev = resolve_device(device)
    ds = load_dataset(dataset)
    _, test_tf = _transforms(image_size, train)
    epochs = int(train.get("epochs", 0))
    kwargs = {**model_kwargs, "pretrained": pretrained} if pretrained else dict(model_kwargs)
    history: list[dict] = []
    checkpoint = None
    if epochs > 0:
        res = fit(model_name, ds, out_dir=work, model_kwargs=kwargs,
                  **_fit_kwargs(train, image_size, dev, precision, seed, num_workers))
        model, history, checkpoint = res.model, res.history, str(res.checkpoint)
        info = _train_info(res, image_size, dev, seed)
    else:
        model = build_model(model_name, num_classes=max(ds.num_train_pids, 1), **kwargs)
        info = {"epochs": 0, "epochs_completed": 0, "optimizer": None, "image_size": list(image_size),
                "device": str(dev), "seed": seed, "note": "no training: weights evaluated as loaded"}
    info["init"] = pretrained or "random"
    model.eval()
    evaluations, features = {}, {}
    evaluations["test"], features["test"] = _evaluate_split(
        model, ds, test_tf, evaluation, dev, precision, num_workers, "test", dataset.get("label", ds.name),
        work / "features", "test")
    for key, spec in (zero_shot or {}).items():
        zds = load_dataset(spec)
        evaluations[key], features[key] = _evaluate_split(
            model, zds, test_tf, evaluation, dev, precision, num_workers, "zero-shot", spec.get("label", key),
            work / "features", key)
    complexity = _complexity(model_name, model_kwargs, max(ds.num_train_pids, 1))
    return Outcome(model_name, dataset.get("label", ds.name), history, evaluations, info, checkpoint, features,
                   complexity)


def finetune_and_test(*, source_metrics: str, target: dict, finetune: dict, evaluation: dict, image_size,
                      work_dir: str, seed: int = 0, device: str = "auto", precision: str = "auto",
                      num_workers: int = 0, run_key: str | None = None) -> Outcome:
    """Fine-tune a trained model (found through its ``metrics.json``) on ``target``; report zero-shot beside it."""
    from reidlib.engine import finetune as engine_finetune
    from reidlib.engine import load_model
    from reidlib.runtime import resolve_device, seed_everything

    src = read_metrics(source_metrics)
    if not src.get("checkpoint"):
        raise ValueError(f"{source_metrics} records no checkpoint (a run with epochs: 0 cannot be fine-tuned)")
    work = prepare_work_dir(work_dir, run_key)
    seed_everything(seed)
    dev = resolve_device(device)
    ds = load_dataset(target)
    _, test_tf = _transforms(image_size, finetune)
    source_model = load_model(src["checkpoint"]).eval()
    zero, _ = _evaluate_split(source_model, ds, test_tf, evaluation, dev, precision, num_workers, "zero-shot",
                              target.get("label", ds.name), None, "target")
    del source_model
    res = engine_finetune(src["checkpoint"], ds, out_dir=work, head_only_epochs=int(finetune.get("head_only_epochs", 0)),
                          **_fit_kwargs(finetune, image_size, dev, precision, seed, num_workers))
    model = res.model.eval()
    tuned, paths = _evaluate_split(model, ds, test_tf, evaluation, dev, precision, num_workers, "fine-tuned",
                                   target.get("label", ds.name), work / "features", "target")
    info = _train_info(res, image_size, dev, seed)
    info.update(init=f"fine-tuned from {src.get('model_run')} trained on {src.get('dataset_key')}",
                source_checkpoint=src["checkpoint"])
    return Outcome(src["model_name"], target.get("label", ds.name), res.history,
                   {"zero-shot": zero, "fine-tuned": tuned}, info, str(res.checkpoint), {"target": paths},
                   src.get("complexity", {}))


def _threads() -> int:
    import torch

    return torch.get_num_threads()


# ----------------------------------------------------------------------------------------------------------------
# figures for one run
# ----------------------------------------------------------------------------------------------------------------
def plot_history(history: list[dict], title: str = ""):
    """Loss parts per epoch (left) and validation rank-1 / mAP when evaluated (right)."""
    import matplotlib.pyplot as plt

    fig, (ax_l, ax_r) = plt.subplots(1, 2, figsize=(10, 3.6))
    if history:
        df = pd.DataFrame(history)
        for col in [c for c in df.columns if c == "loss" or c.startswith("loss_")]:
            ax_l.plot(df["epoch"], df[col], marker=".", label=col)
        ax_l.set_xlabel("epoch")
        ax_l.set_ylabel("loss")
        ax_l.legend(fontsize=7)
        for col in ("val_rank1", "val_mAP", "test_rank1", "test_mAP"):
            if col in df and df[col].notna().any():
                sub = df[df[col].notna()]
                ax_r.plot(sub["epoch"], 100.0 * sub[col], marker="o", label=col)
        ax_r.set_xlabel("epoch")
        ax_r.set_ylabel("validation (%)")
        if ax_r.lines:
            ax_r.legend(fontsize=7)
    else:
        ax_l.text(0.5, 0.5, "no training (evaluated as loaded)", ha="center", va="center")
    for ax in (ax_l, ax_r):
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_outcome_cmc(outcome: Outcome, label: str):
    """CMC curves of every evaluation of one run, on one figure."""
    from reidlib.plots import plot_cmc

    curves = {f"{label} · {ev['label']} ({ev['role']})": _as_eval(ev) for ev in outcome.evaluations.values()}
    return plot_cmc(curves, title=f"CMC: {label}")


def _as_eval(ev: dict) -> dict:
    """A metrics.json evaluation record back in :func:`reidlib.evaluation.evaluate`'s form (fractions)."""
    return {"cmc": np.asarray(ev["cmc"], dtype=float), "mAP": ev["mAP"] / 100.0, "mINP": ev.get("mINP", 0.0) / 100.0}


# ----------------------------------------------------------------------------------------------------------------
# distance study
# ----------------------------------------------------------------------------------------------------------------
def distance_study(train_metrics: Iterable[str], metrics: list[str], normalize: list[bool], p: float = 3,
                   rerank: bool = True, evaluation: dict | None = None) -> tuple[pd.DataFrame, dict]:
    """Evaluate every trained model's stored test features under each metric and normalisation.

    Returns:
        (table with one row per run x metric x normalisation, curves {run: {metric: evaluate-result}})
    """
    from reidlib.evaluation import FeatureSet, evaluate_features

    evaluation = evaluation or {}
    rows, curves = [], {}
    for path in train_metrics:
        m = read_metrics(path)
        feats = m.get("features", {}).get("test")
        if not feats:
            continue
        qf, gf = FeatureSet.load(feats["query"]), FeatureSet.load(feats["gallery"])
        run = f"{m['dataset_key']}-{m['model_run']}"
        curves[run] = {}
        settings = [(metric, norm, None) for metric in metrics for norm in normalize]
        if rerank:
            settings.append((evaluation.get("metric", "euclidean"), True, "k-reciprocal"))
        for metric, norm, rr in settings:
            t0 = time.time()
            res = evaluate_features(qf.feats, gf.feats, qf.pids, gf.pids, qf.camids, gf.camids, metric=metric,
                                    normalize=norm, p=p, max_rank=evaluation.get("max_rank", 50),
                                    protocol=feats.get("protocol", "market"), rerank=bool(rr) or None)
            rows.append({"run": run, "model": m["model_label"], "dataset": m["dataset_label"], "metric": metric,
                         "normalized": norm, "rerank": rr or "none", **summarize(res),
                         "seconds": round(time.time() - t0, 2), "p": str(p) if metric == "minkowski" else "-"})
            if norm and not rr:
                curves[run][metric] = res
    return pd.DataFrame(rows), curves


def pivot_distance_table(table: pd.DataFrame) -> pd.DataFrame:
    """Rank-1 / mAP per model x dataset (rows) and metric (columns)."""
    if table.empty:
        return table
    t = table.copy()
    t["setting"] = t["metric"] + np.where(t["normalized"], " (L2)", "") + np.where(t["rerank"] != "none", " +RK", "")
    t["R1/mAP"] = t["R1"].map("{:.1f}".format) + " / " + t["mAP"].map("{:.1f}".format)
    return t.pivot_table(index=["model", "dataset"], columns="setting", values="R1/mAP", aggfunc="first")


def plot_distance_cmc(curves: dict) -> dict:
    """One CMC figure per trained model with a curve per metric."""
    from reidlib.plots import plot_cmc

    return {run: plot_cmc(per_metric, title=f"CMC by distance: {run}") for run, per_metric in curves.items()}


# ----------------------------------------------------------------------------------------------------------------
# locating a profile's runs (for notebooks opened by hand, without papermill's injected parameters)
# ----------------------------------------------------------------------------------------------------------------
def profile_metrics_files(profile: str, stage: str | None = None) -> dict[str, str] | list[str]:
    """``{run id: metrics.json path}`` of a profile's planned runs (a list of paths when ``stage`` is given)."""
    from reidlib import pipeline

    cfg = pipeline.load_profile(profile)
    files = {r.id: str(pipeline.run_dir(cfg, r.stage, r.name) / "metrics.json") for r in pipeline.plan(cfg)}
    if stage is None:
        return files
    return [path for run_id, path in files.items() if run_id.startswith(stage + "/")]


def train_metrics_path(profile: str, model_run: str, dataset_key: str) -> str:
    """The metrics.json of ``model_run`` trained on ``dataset_key`` in ``profile``."""
    from reidlib import pipeline

    cfg = pipeline.load_profile(profile)
    return str(pipeline.run_dir(cfg, "10_train", pipeline.train_run_name(model_run, dataset_key)) / "metrics.json")
