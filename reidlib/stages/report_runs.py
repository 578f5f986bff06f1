"""What the report reads from each run: its ``metrics.json`` and ``run.json``, and the setting a run trained in.

A run record is the dict a stage wrote as ``metrics.json`` (keyed by run id ``"<stage>/<name>"`` in ``runs``);
the pipeline's ``run.json`` beside it is attached as ``m["run_info"]``. Accuracies are percentages (0-100).
"""
from __future__ import annotations

import json
from pathlib import Path

from .common import read_metrics
from .ids import DISTANCE_STAGE, in_stage


def load_runs(metrics_files: dict[str, str]) -> dict[str, dict]:
    """Every run's metrics.json that exists, keyed by run id (``stage/name``).

    The pipeline's ``run.json`` beside it (hardware, wall time, commit) is attached as ``m["run_info"]``.
    """
    runs = {}
    for run, path in metrics_files.items():
        if Path(path).is_file():
            runs[run] = read_metrics(path)
            info = Path(path).with_name("run.json")
            runs[run]["run_info"] = json.loads(info.read_text()) if info.is_file() else {}
    return runs


def on_test(m: dict) -> dict:
    """A training run's evaluation on its test split."""
    return m["evaluations"]["test"]


def result_eval(m: dict) -> dict | None:
    """The evaluation a run is reported by: a training run's test split, a fine-tune's fine-tuned target."""
    return m["evaluations"].get("test") or m["evaluations"].get("fine-tuned")


def distance_run(runs: dict) -> dict:
    """The distance study's record, or ``{}`` where it did not run."""
    return next((m for run, m in runs.items() if in_stage(run, DISTANCE_STAGE)), {})


def loss_terms(recipe: dict) -> str:
    """The loss terms a training recipe (``metrics.json`` ``train.recipe``) switched on, e.g. ``"CE + triplet"``."""
    kw = recipe.get("loss_kwargs") or {}
    terms = ["CE"] if float(kw.get("id_weight", 1.0)) > 0 else []
    terms += ["triplet"] if float(kw.get("triplet_weight", 1.0)) > 0 else []
    terms += ["center"] if float(recipe.get("center_weight", 5e-4) or 0) > 0 else []
    return " + ".join(terms)


def hardware_of(m: dict) -> str:
    """The machine a run used, from its run.json (e.g. "AMD EPYC (native bf16), 2 cores, 2 threads" or
    "GPU NVIDIA H100").

    "(native bf16)" / "(no native bf16)" appears where run.json recorded it: on a CPU it decides whether
    ``precision: auto`` trained in bf16 autocast or fp32, and it roughly doubles the speed of a training step.
    """
    env = (m.get("run_info") or {}).get("environment") or {}
    if not env:
        return "unknown"
    if env.get("cuda") and str(m.get("train", {}).get("device", "")).startswith("cuda"):
        return f"GPU {env['cuda']}"
    bf16 = env.get("cpu_native_bf16")
    cpu = env.get("cpu", "CPU") + ("" if bf16 is None else " (native bf16)" if bf16 else " (no native bf16)")
    return f"{cpu}, {env.get('cpu_count')} cores, {env.get('torch_threads')} threads"


def precision_of(m: dict) -> str:
    """The training precision: the recipe's, with ``auto`` resolved on a CPU whose run.json says whether it has
    native bf16 (bf16 autocast there, fp32 otherwise)."""
    chosen = str((m.get("train", {}).get("recipe") or {}).get("precision", "auto"))
    env = (m.get("run_info") or {}).get("environment") or {}
    if chosen != "auto" or str(m.get("train", {}).get("device", "")).startswith("cuda"):
        return chosen
    bf16 = env.get("cpu_native_bf16")
    return "auto" if bf16 is None else "bf16 autocast" if bf16 else "fp32"


def dataset_labels(runs: dict) -> dict[str, str]:
    """Each training set's profile key -> its human label, read from the training runs' records."""
    return {m["dataset_key"]: m.get("dataset_label") or m["dataset_key"]
            for m in runs.values() if m.get("dataset_key")}


def run_setting(m: dict) -> dict:
    """What a run trained in: ``init`` ("random", "ImageNet" or the weights file's stem), ``epochs`` (completed),
    ``input`` ("HxW"), ``hardware``, ``train_min`` (minutes of training), ``losses`` (:func:`loss_terms`; None for
    a record without its recipe) and ``frozen`` (frozen layers, comma-separated)."""
    tr = m.get("train", {})
    init = tr.get("init") or "random"
    init = {"random": "random", "imagenet": "ImageNet"}.get(str(init).lower(), Path(str(init)).stem)
    size = tr.get("image_size") or []
    recipe = tr.get("recipe") or {}
    return {"init": init, "epochs": tr.get("epochs_completed", tr.get("epochs")),
            "input": "x".join(str(v) for v in size), "hardware": hardware_of(m),
            "train_min": float(tr.get("train_seconds", 0.0) or 0.0) / 60,
            "losses": loss_terms(recipe) if recipe else None, "frozen": ", ".join(recipe.get("frozen_layers") or [])}
