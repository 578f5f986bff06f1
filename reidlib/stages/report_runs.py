"""What the report reads from each run: its ``metrics.json`` and ``run.json`` as typed records
(:mod:`.records`), and the setting a run trained in.

``runs`` maps run ids ``"<stage>/<name>"`` to records (:class:`~.records.TrainRecord`,
:class:`~.records.FinetuneRecord`, :class:`~.records.DistanceRecord`, :class:`~.records.DataRecord`), each with the
pipeline's ``run.json`` as ``run_info``. Accuracies are percentages (0-100).
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .ids import DISTANCE_STAGE, in_stage
from .records import DistanceRecord, Recipe, RunRecord, Runs, TrainRecord, load_run


def load_runs(metrics_files: Mapping[str, str]) -> dict[str, RunRecord]:
    """Every run's metrics.json that exists, read as its stage's record and keyed by run id (``stage/name``).

    The pipeline's ``run.json`` beside it (hardware, wall time, commit) is attached as ``run_info``.
    """
    return {run: load_run(path, run) for run, path in metrics_files.items() if Path(path).is_file()}


def distance_run(runs: Runs) -> DistanceRecord:
    """The distance study's record, or an empty one where it did not run."""
    return next((m for run, m in runs.items() if in_stage(run, DISTANCE_STAGE)), DistanceRecord())


def or_dash(value: object) -> object:
    """``value``, or ``"-"`` where a record lacks it (``None``), as the report prints missing values."""
    return "-" if value is None else value


def loss_terms(recipe: Recipe) -> str:
    """The loss terms a training recipe (``train.recipe``) switched on, e.g. ``"CE + triplet"``."""
    terms = ["CE"] if recipe.id_weight > 0 else []
    terms += ["triplet"] if recipe.triplet_weight > 0 else []
    terms += ["center"] if float(recipe.center_weight or 0) > 0 else []
    return " + ".join(terms)


def _on_cuda(m: TrainRecord) -> bool:
    return str(m.train.device or "").startswith("cuda")


def hardware_of(m: TrainRecord) -> str:
    """The machine a run used, from its run.json (e.g. "AMD EPYC (native bf16), 2 cores, 2 threads" or
    "GPU NVIDIA H100").

    "(native bf16)" / "(no native bf16)" appears where run.json recorded it: on a CPU it decides whether
    ``precision: auto`` trained in bf16 autocast or fp32, and it roughly doubles the speed of a training step.
    """
    env = m.run_info.environment
    if env is None or env.is_empty():
        return "unknown"
    if env.cuda and _on_cuda(m):
        return f"GPU {env.cuda}"
    bf16 = env.cpu_native_bf16
    cpu = (env.cpu if env.cpu is not None else "CPU") + (
        "" if bf16 is None else " (native bf16)" if bf16 else " (no native bf16)")
    return f"{cpu}, {env.cpu_count} cores, {env.torch_threads} threads"


def precision_of(m: TrainRecord) -> str:
    """The training precision: the recipe's, with ``auto`` resolved on a CPU whose run.json says whether it has
    native bf16 (bf16 autocast there, fp32 otherwise)."""
    recipe = m.train.recipe
    chosen = str(recipe.precision if recipe is not None and recipe.precision is not None else "auto")
    if chosen != "auto" or _on_cuda(m):
        return chosen
    env = m.run_info.environment
    bf16 = None if env is None else env.cpu_native_bf16
    return "auto" if bf16 is None else "bf16 autocast" if bf16 else "fp32"


def dataset_labels(runs: Runs) -> dict[str, str]:
    """Each training set's profile key -> its human label, read from the training runs' records."""
    return {m.dataset_key: m.dataset_label or m.dataset_key
            for m in runs.values() if isinstance(m, TrainRecord) and m.dataset_key}


def run_setting(m: TrainRecord) -> dict:
    """What a run trained in: ``init`` ("random", "ImageNet" or the weights file's stem), ``epochs`` (completed),
    ``input`` ("HxW"), ``hardware``, ``train_min`` (minutes of training), ``losses`` (:func:`loss_terms`; None for
    a record without its recipe) and ``frozen`` (frozen layers, comma-separated)."""
    tr = m.train
    init = tr.init or "random"
    init = {"random": "random", "imagenet": "ImageNet"}.get(str(init).lower(), Path(str(init)).stem)
    recipe = tr.recipe if tr.has_recipe else None
    frozen = (recipe.frozen_layers or ()) if recipe is not None else ()
    return {"init": init, "epochs": tr.epochs_run,
            "input": "x".join(str(v) for v in tr.image_size or ()), "hardware": hardware_of(m),
            "train_min": float(tr.train_seconds or 0.0) / 60,
            "losses": loss_terms(recipe) if recipe is not None else None, "frozen": ", ".join(frozen)}
