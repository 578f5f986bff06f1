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


SLOW_EPOCH = 1.5  # an epoch taking this many times its kind's median counts as slowed by something else


def steady_minutes(m: TrainRecord) -> tuple[float, int] | None:
    """``(minutes, epochs slowed)``: the run's training minutes at its steady pace, each epoch that took more than
    :data:`SLOW_EPOCH` times the (lower) median of its kind, evaluated for selection or not, counted at that median.
    A run whose CPU was shared for a while (another job, a resume's first epoch) keeps its measured minutes beside
    this estimate. None for a run without per-epoch seconds."""
    rows = list(m.history)
    if not rows or any(h.epoch_seconds is None for h in rows):
        return None
    kinds: dict[bool, list[float]] = {}
    for h in rows:
        kinds.setdefault(h.select_score is not None or h.val_rank1 is not None, []).append(float(h.epoch_seconds))
    total, slowed = 0.0, 0
    for seconds in kinds.values():
        median = sorted(seconds)[(len(seconds) - 1) // 2]  # lower: of two epochs, a slowed one stands out
        slowed += sum(t > SLOW_EPOCH * median for t in seconds)
        total += sum(min(t, median) if t > SLOW_EPOCH * median else t for t in seconds)
    return total / 60, slowed


def minutes_text(setting: dict) -> str:
    """``"44.5 min"``, or with the steady-pace estimate where slowed epochs make the two differ by over 5 %:
    ``"44.5 min (30.9 at its steady pace: 2 epochs ran over 1.5 times slower than the median)"``."""
    text = f"{setting['train_min']:.1f} min"
    steady, slowed = setting.get("steady_min"), setting.get("slowed_epochs") or 0
    if steady is not None and slowed and steady < 0.95 * setting["train_min"]:
        text += (f" ({steady:.1f} at its steady pace: {slowed} epoch{'s' if slowed > 1 else ''} ran over "
                 f"{SLOW_EPOCH:g} times slower than the median)")
    return text


def run_setting(m: TrainRecord) -> dict:
    """What a run trained in: ``init`` ("random", "ImageNet" or the weights file's stem), ``epochs`` (completed),
    ``input`` ("HxW"), ``hardware``, ``train_min`` (minutes of training), ``steady_min`` and ``slowed_epochs``
    (:func:`steady_minutes`; None and 0 without per-epoch seconds), ``losses`` (:func:`loss_terms`; None for a
    record without its recipe) and ``frozen`` (frozen layers, comma-separated)."""
    tr = m.train
    init = tr.init or "random"
    init = {"random": "random", "imagenet": "ImageNet"}.get(str(init).lower(), Path(str(init)).stem)
    recipe = tr.recipe if tr.has_recipe else None
    frozen = (recipe.frozen_layers or ()) if recipe is not None else ()
    steady, slowed = steady_minutes(m) or (None, 0)
    return {"init": init, "epochs": tr.epochs_run,
            "input": "x".join(str(v) for v in tr.image_size or ()), "hardware": hardware_of(m),
            "train_min": float(tr.train_seconds or 0.0) / 60, "steady_min": steady, "slowed_epochs": slowed,
            "losses": loss_terms(recipe) if recipe is not None else None, "frozen": ", ".join(frozen)}
