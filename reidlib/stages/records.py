"""Typed, read-only views of what the stages write as ``metrics.json``, for the report to read run data through.

=========================  ===================================================================================
class                      what it holds
=========================  ===================================================================================
:class:`EvalRecord`        one evaluation (test split, zero-shot, fine-tuned or held-out): rank-k, mAP, mINP,
                           CMC, interval, per-query data, chance rank-1
:class:`TrainRecord`       a ``10_train`` run: its ``train`` section (:class:`TrainInfo`, :class:`Recipe`),
                           history (:class:`Epoch` rows), evaluations per key, stored features, complexity
:class:`FinetuneRecord`    a ``20_finetune`` run: a :class:`TrainRecord` with ``source_key``
:class:`DistanceRecord`    the ``30_distance_study`` run: ranking rows, paired rows, verification, pair head, ROC
:class:`DataRecord`        the ``00_data`` run: split statistics per dataset
:class:`RunInfo`           the pipeline's ``run.json`` beside a record (hardware, wall time, commit)
=========================  ===================================================================================

Units, as the stages write them: R1/R5/R10/R20, mAP, mINP and ``chance_R1`` are percentages (0-100); ``ci95``
holds ``(lo, hi)`` pairs in percent; the CMC curve is fractions (0-1; entry k-1 is rank k); per-query AP values are
fractions; verification AUC/EER/TAR are percentages, ROC curves fractions. Evaluation keys keep their written
names (``R1``, ``mAP``, ...).

Every class reads the keys it knows into attributes and keeps the rest in ``extra``. A key a record lacks (records
written before ``format`` 1 have no ``ci95``, ``per_query`` or ``chance_R1``, untrained reference rows no
``recipe``, ...) reads as its default (``None`` or empty) and is listed in ``absent``, so :meth:`Written.to_dict`
gives back exactly what was written. A record in a format newer than
:data:`reidlib.stages.common.METRICS_FORMAT` is refused (:func:`check_format`).

The report reads run data only through these classes. The stages that write the records (``train``,
``finetune``, ``distance``) do not import this module: editing it leaves their finished runs up to date.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import pandas as pd

from .common import METRICS_FORMAT, MetricsFormatError, as_eval, read_metrics
from .ids import DATA_STAGE, DISTANCE_STAGE, FINETUNE_STAGE, TRAIN_STAGE
from .uncertainty import decode_per_query, fmt_record, fmt_value, paired

W = TypeVar("W", bound="Written")
Interval = tuple[float, float]  # (lo, hi), percent


# ----------------------------------------------------------------------------------------------------------------
# reading and writing back one JSON object
# ----------------------------------------------------------------------------------------------------------------
def _field(default: Any = None, *, key: str | None = None, load: Callable[[Any], Any] | None = None,
           factory: Callable[[], Any] | None = None) -> Any:
    """A dataclass field read from JSON key ``key`` (default: the attribute's name), converted by ``load`` (not
    applied to ``null``)."""
    meta = {k: v for k, v in (("key", key), ("load", load)) if v is not None}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _plain(value: Any) -> Any:
    """``value`` in its JSON form: records as their dicts, tuples as lists, mappings as dicts."""
    if isinstance(value, Written):
        return value.to_dict()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _seq(value: Any) -> Any:
    """A JSON list as a tuple (anything else as it is)."""
    return tuple(value) if isinstance(value, list) else value


def _intervals(value: Mapping[str, Any]) -> dict[str, Interval]:
    """``{"R1": [lo, hi], "mAP": [lo, hi]}`` (percent) with tuples."""
    return {stat: tuple(ci) if isinstance(ci, list) else ci for stat, ci in value.items()}


def _many(cls: type[W]) -> Callable[[list], tuple[W, ...]]:
    return lambda rows: tuple(cls.from_dict(row) for row in rows)


def _by_key(cls: type[W]) -> Callable[[Mapping], dict[str, W]]:
    return lambda block: {key: cls.from_dict(value) for key, value in block.items()}


_BOOKKEEPING = ("extra", "absent")


@dataclass(frozen=True, kw_only=True)
class Written:
    """A JSON object as a frozen dataclass: known keys as attributes, the others in ``extra``, the known keys it
    lacked (by attribute name) in ``absent``. ``from_dict(d).to_dict() == d`` for any JSON object ``d``."""

    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)
    absent: frozenset[str] = field(default_factory=frozenset, repr=False)

    @classmethod
    def _wire_fields(cls) -> list:
        return [f for f in fields(cls) if f.name not in _BOOKKEEPING]

    @classmethod
    def from_dict(cls: type[W], data: Mapping[str, Any]) -> W:
        """Build from a written JSON object (unknown keys kept in ``extra``, missing ones listed in ``absent``)."""
        return cls._build(data)

    @classmethod
    def _build(cls: type[W], data: Mapping[str, Any]) -> W:
        if not isinstance(data, Mapping):
            raise TypeError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        values, absent, known = {}, set(), set()
        for f in cls._wire_fields():
            key = f.metadata.get("key", f.name)
            known.add(key)
            if key not in data:
                absent.add(f.name)
            elif data[key] is None or "load" not in f.metadata:
                values[f.name] = data[key]
            else:
                values[f.name] = f.metadata["load"](data[key])
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(**values, extra=extra, absent=frozenset(absent))

    def to_dict(self) -> dict[str, Any]:
        """The JSON object as written (known keys first, then ``extra``; keys listed in ``absent`` left out)."""
        out = {f.metadata.get("key", f.name): _plain(getattr(self, f.name))
               for f in self._wire_fields() if f.name not in self.absent}
        return {**out, **_plain(self.extra)}

    def has(self, name: str) -> bool:
        """True when attribute ``name`` was written (or the record was built in code)."""
        return name not in self.absent

    def is_empty(self) -> bool:
        """True when nothing was written (``{}``)."""
        return not self.to_dict()


# ----------------------------------------------------------------------------------------------------------------
# one evaluation
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class PerQuery(Written):
    """Per valid query, in query order, as written: space-separated strings (lists are read too). ``pid``: the
    query's identity (absent in distance-study rows, which share their run's test record's); ``first_hit``: the
    1-based rank of its first true match; ``ap``: its average precision (fraction, 4 decimals)."""

    pid: str | list | None = None
    first_hit: str | list | None = None
    ap: str | list | None = None

    def decode(self) -> dict[str, np.ndarray]:
        """The arrays (``pid``, ``first_hit`` int64; ``ap`` float64), each of shape (num valid queries,)."""
        return decode_per_query(self.to_dict())


@dataclass(frozen=True, kw_only=True)
class EvalRecord(Written):
    """One evaluation record of a training or fine-tuning run (``evaluations[<key>]`` in ``metrics.json``).

    ``R1``..``R20``, ``mAP``, ``mINP`` and ``chance_R1``: percent; ``ci95``: ``{"R1": (lo, hi), "mAP": (lo, hi)}``
    in percent (empty for records made before intervals); ``cmc``: fractions, shape (max_rank,);
    ``extract_images_per_s``: images embedded per second (flip counts twice); ``per_query``: :class:`PerQuery`.
    """

    STATS: ClassVar[tuple[str, ...]] = ("R1", "R5", "R10", "R20", "mAP", "mINP")

    label: str | None = None
    role: str | None = None
    R1: float | None = None
    R5: float | None = None
    R10: float | None = None
    R20: float | None = None
    mAP: float | None = None
    mINP: float | None = None
    cmc: tuple[float, ...] = _field(factory=tuple, load=_seq)
    num_query: int | None = None
    num_gallery: int | None = None
    num_valid_queries: int | None = None
    metric: str | None = None
    normalize: bool | None = None
    flip: bool | None = None
    rerank: bool | None = None
    extract_images_per_s: float | None = None
    chance_R1: float | None = None
    ci95: Mapping[str, Interval] = _field(factory=dict, load=_intervals)
    per_query: PerQuery | None = _field(load=PerQuery.from_dict)

    def value(self, stat: str) -> float:
        """``R1``, ``R5``, ``R10``, ``R20``, ``mAP`` or ``mINP`` in percent (a ``KeyError`` for any other name)."""
        if stat not in self.STATS:
            raise KeyError(f"{stat!r} is not an evaluation statistic; known: {self.STATS}")
        return getattr(self, stat)

    def interval(self, stat: str) -> Interval | None:
        """The 95 % interval of ``stat`` (percent), or None for a record without one."""
        return (self.ci95 or {}).get(stat)

    @property
    def has_intervals(self) -> bool:
        """True when the record carries ``ci95`` (made after intervals were added)."""
        return bool(self.ci95)

    def paired(self, other: EvalRecord, stat: str = "mAP") -> dict | None:
        """This record minus ``other`` on ``stat`` in points with a paired 95 % identity-bootstrap interval, as
        :func:`reidlib.stages.uncertainty.paired` computes it (None without per-query data on the same queries)."""
        return paired(self.to_dict(), other.to_dict(), stat)

    def as_eval(self) -> dict:
        """In :func:`reidlib.evaluation.evaluate`'s form (fractions): ``{"cmc", "mAP", "mINP"}``."""
        return as_eval(self.to_dict())

    def fmt_value(self, stat: str) -> str:
        """``stat`` with its interval, ``"50.1 [47.3, 52.9]"`` (``"[n/a]"`` for older records)."""
        return fmt_value(self.to_dict(), stat)

    def fmt_record(self) -> str:
        """Rank-1 / mAP with their intervals, ``"50.1 [47.3, 52.9] / 47.1 [44.0, 50.2]"``."""
        return fmt_record(self.to_dict())


# ----------------------------------------------------------------------------------------------------------------
# a training or fine-tuning run
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Recipe(Written):
    """``train.recipe``: the trainer's configuration as the run used it (the keys the report reads typed, every
    other :class:`reidlib.engine.TrainConfig` field in ``extra``). ``center_weight`` reads as the trainer's default
    (5e-4) in a recipe that lacks it; ``height``/``width`` in pixels; ``lr`` per step."""

    epochs: int | None = None
    optimizer: str | None = None
    lr: float | None = None
    batch_size: int | None = None
    num_instances: int | None = None
    height: int | None = None
    width: int | None = None
    seed: int | None = None
    select_on: str | None = None
    precision: str | None = None
    triplet_margin: float | None = None
    center_weight: float | None = 5e-4
    loss_kwargs: Mapping[str, Any] = _field(factory=dict)
    frozen_layers: tuple[str, ...] = _field(factory=tuple, load=_seq)

    @property
    def id_weight(self) -> float:
        """Weight of the identity (cross-entropy) loss; 1.0 where ``loss_kwargs`` does not set it."""
        return float((self.loss_kwargs or {}).get("id_weight", 1.0))

    @property
    def triplet_weight(self) -> float:
        """Weight of the triplet loss; 1.0 where ``loss_kwargs`` does not set it."""
        return float((self.loss_kwargs or {}).get("triplet_weight", 1.0))


@dataclass(frozen=True, kw_only=True)
class TrainInfo(Written):
    """A run's ``train`` section: how training went. ``train_seconds``: seconds of training epochs;
    ``images_per_s``: mean training throughput; ``image_size``: (height, width) in pixels; ``select_*``: the
    selection split's numbers at the selected epoch (fractions, as the trainer reports them); ``init``: "random",
    a weights name or path, or "fine-tuned from ..."."""

    optimizer: str | None = None
    selected_on: str | None = None
    selection: str | None = None
    epochs_planned: int | None = None
    epochs_completed: int | None = None
    best_epoch: int | None = None
    stopped_early: str | None = None
    checkpoint: str | None = None
    train_seconds: float | None = None
    select_score: float | None = None
    select_rank1: float | None = None
    select_rank5: float | None = None
    select_rank10: float | None = None
    select_mAP: float | None = None
    select_mINP: float | None = None
    select_num_valid_queries: int | None = None
    epochs: int | None = None
    image_size: tuple[int, ...] = _field(factory=tuple, load=_seq)
    device: str | None = None
    seed: int | None = None
    torch_threads: int | None = None
    select_on: str | None = None
    images_per_s: float | None = None
    recipe: Recipe | None = _field(load=Recipe.from_dict)
    note: str | None = None
    init: str | None = None
    source_checkpoint: str | None = None

    @property
    def has_recipe(self) -> bool:
        """True when the section carries a non-empty recipe (records of untrained reference rows do not)."""
        return self.recipe is not None and not self.recipe.is_empty()

    @property
    def epochs_run(self) -> int | None:
        """Epochs completed, or the planned ``epochs`` for a record that lacks the count."""
        return self.epochs_completed if self.epochs_completed is not None else self.epochs


@dataclass(frozen=True, kw_only=True)
class Epoch(Written):
    """One epoch of a run's ``history``: losses, train accuracy (fraction), learning rate, seconds, and where
    evaluated the selection split's ``val_*`` numbers (fractions; ``None`` on epochs not evaluated). Other keys
    (``test_*`` of runs selected on the test split, ...) stay in ``extra``."""

    epoch: int | None = None
    lr: float | None = None
    head_only: bool | None = None
    loss: float | None = None
    loss_id: float | None = None
    loss_triplet: float | None = None
    loss_center: float | None = None
    train_acc: float | None = None
    images: int | None = None
    epoch_seconds: float | None = None
    train_seconds: float | None = None
    images_per_s: float | None = None
    dist_ap: float | None = None
    dist_an: float | None = None
    feat_norm: float | None = None
    select_score: float | None = None
    val_rank1: float | None = None
    val_rank5: float | None = None
    val_rank10: float | None = None
    val_mAP: float | None = None
    val_mINP: float | None = None
    val_num_valid_queries: int | None = None


@dataclass(frozen=True, kw_only=True)
class FeaturePaths(Written):
    """Where a run stored one evaluation's features (``.npz`` files in its work folder; absolute once read) and
    the ranking protocol of that split."""

    query: str | None = None
    gallery: str | None = None
    protocol: str | None = None

    def exist(self) -> bool:
        """True when the query file is still on disk (work folders are not kept in git)."""
        return bool(self.query) and Path(self.query).is_file()


@dataclass(frozen=True, kw_only=True)
class Complexity(Written):
    """Parameters (counts) and multiply-adds (GMACs) of one image at ``image_size`` (height, width)."""

    params_trainable: int | None = None
    params_inference: int | None = None
    gmacs: float | None = None
    image_size: tuple[int, ...] = _field(factory=tuple, load=_seq)


@dataclass(frozen=True, kw_only=True)
class Environment(Written):
    """``run.json`` ``environment``: the machine a run used."""

    python: str | None = None
    platform: str | None = None
    cpu: str | None = None
    cpu_count: int | None = None
    torch: str | None = None
    numpy: str | None = None
    cuda: str | None = None
    torch_threads: int | None = None
    cpu_native_bf16: bool | None = None


@dataclass(frozen=True, kw_only=True)
class RunInfo(Written):
    """The pipeline's ``run.json`` beside a run's ``metrics.json``; ``wall_seconds``: the whole notebook."""

    run: str | None = None
    profile: str | None = None
    command: str | None = None
    input_hash: str | None = None
    git_commit: str | None = None
    started: str | None = None
    wall_seconds: float | None = None
    environment: Environment | None = _field(load=Environment.from_dict)


@dataclass(frozen=True, kw_only=True)
class RunRecord(Written):
    """What every stage's ``metrics.json`` holds (``format``: 0 for records written before the key existed), and
    the ``run.json`` the report attaches (``run_info``; empty where there is none)."""

    STAGE: ClassVar[str | None] = None

    format: int = 0
    stage: str | None = None
    profile: str | None = None
    run_info: RunInfo = _field(factory=RunInfo, load=RunInfo.from_dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], stage: str | None = None, *,
                  run_id: str | None = None) -> RunRecord:
        """The record of the stage ``stage`` (else the record's own ``"stage"``, else this class's) built from
        ``data``; called on :class:`RunRecord`, the class is chosen by stage (:data:`RECORD_TYPES`).

        Raises:
            MetricsFormatError: ``data`` is in a format newer than this reidlib reads (the message names the
                command that regenerates it; ``run_id`` makes it exact).
            ValueError: no record type for the stage, or ``stage`` differs from the record's own.
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        written = data.get("stage")
        stage = stage or written or cls.STAGE
        if written is not None and stage is not None and written != stage:
            raise ValueError(f"{run_id or 'record'}: written by stage {written!r}, read as {stage!r}")
        check_format(data, stage, run_id)
        target = RECORD_TYPES.get(stage) if stage is not None else None
        if target is None or not issubclass(target, cls):
            raise ValueError(f"{run_id or 'record'}: no {cls.__name__} for stage {stage!r}; "
                             f"stages with records: {sorted(RECORD_TYPES)}")
        return target._build(data)


@dataclass(frozen=True, kw_only=True)
class DataRecord(RunRecord):
    """The ``00_data`` run: ``datasets`` maps each profile dataset key to its split statistics (images, ids,
    cameras per split) as written."""

    STAGE: ClassVar[str | None] = DATA_STAGE

    datasets: Mapping[str, Any] = _field(factory=dict)


@dataclass(frozen=True, kw_only=True)
class TrainRecord(RunRecord):
    """A ``10_train`` run (:meth:`reidlib.stages.train.Outcome.to_metrics`): one model trained on one dataset
    (``dataset_key`` in the profile, ``dataset_label`` as printed), tested on its test split (evaluation key
    ``"test"``), zero-shot on other datasets (keyed by dataset key), or on held-out identities (``"held-out"``).
    ``checkpoint`` and ``features`` paths are absolute once read by :func:`read_record` from a file."""

    STAGE: ClassVar[str | None] = TRAIN_STAGE

    model_run: str | None = None
    model_label: str | None = None
    dataset_key: str | None = None
    model_name: str | None = None
    dataset_label: str | None = None
    train: TrainInfo = _field(factory=TrainInfo, load=TrainInfo.from_dict)
    history: tuple[Epoch, ...] = _field(factory=tuple, load=_many(Epoch))
    evaluations: Mapping[str, EvalRecord] = _field(factory=dict, load=_by_key(EvalRecord))
    checkpoint: str | None = None
    features: Mapping[str, FeaturePaths] = _field(factory=dict, load=_by_key(FeaturePaths))
    complexity: Complexity = _field(factory=Complexity, load=Complexity.from_dict)

    def evaluation(self, key: str) -> EvalRecord | None:
        """The evaluation written under ``key`` ("test", a zero-shot dataset key, "held-out", "zero-shot",
        "fine-tuned"), or None."""
        return (self.evaluations or {}).get(key)

    def require_eval(self, key: str) -> EvalRecord:
        """:meth:`evaluation`, raising a ``KeyError`` that lists the record's evaluations when it has none."""
        ev = self.evaluation(key)
        if ev is None:
            raise KeyError(f"this {self.stage or self.STAGE} record has no {key!r} evaluation "
                           f"(it has {sorted(self.evaluations or {})})")
        return ev

    @property
    def test_eval(self) -> EvalRecord | None:
        """The evaluation on the run's own test split, or None."""
        return self.evaluation("test")

    @property
    def result_eval(self) -> EvalRecord | None:
        """The evaluation the run is reported by: the test split, else (a fine-tune) the fine-tuned target."""
        return self.evaluation("test") or self.evaluation("fine-tuned")

    def stored_features(self, key: str) -> FeaturePaths | None:
        """The stored features of evaluation ``key``, or None where the run stored none."""
        return (self.features or {}).get(key)

    def history_dicts(self) -> list[dict]:
        """The history as written, one dict per epoch (what :mod:`reidlib.learning_curves` draws)."""
        return [epoch.to_dict() for epoch in self.history or ()]


@dataclass(frozen=True, kw_only=True)
class FinetuneRecord(TrainRecord):
    """A ``20_finetune`` run: a :class:`TrainRecord` of a model fine-tuned on ``dataset_key`` from its training run
    on ``source_key``; its evaluations are ``"zero-shot"`` (the source model on the target) and ``"fine-tuned"``."""

    STAGE: ClassVar[str | None] = FINETUNE_STAGE

    source_key: str | None = None


# ----------------------------------------------------------------------------------------------------------------
# the distance study
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class DistanceRow(Written):
    """One ranking row: a run's stored test features under one distance (``metric``, ``normalized``: L2 before,
    ``rerank``: "none" or "k-reciprocal"); rank-k, mAP, mINP in percent, ``ci95`` pairs in percent, ``seconds``
    of ranking, ``p`` of minkowski ("-" otherwise); ``per_query`` without ``pid``; ``chance_R1``: the split's
    random-ranking rank-1 in percent (None in studies written before it was recorded)."""

    run: str | None = None
    model: str | None = None
    dataset: str | None = None
    metric: str | None = None
    normalized: bool | None = None
    rerank: str | None = None
    R1: float | None = None
    R5: float | None = None
    R10: float | None = None
    R20: float | None = None
    mAP: float | None = None
    mINP: float | None = None
    seconds: float | None = None
    p: str | None = None
    chance_R1: float | None = None
    ci95: Mapping[str, Interval] = _field(factory=dict, load=_intervals)
    per_query: PerQuery | None = _field(load=PerQuery.from_dict)


@dataclass(frozen=True, kw_only=True)
class PairedRow(Written):
    """One paired comparison of two distance settings on the same model and queries (points; ``comparison``:
    "vs reference" or "lead"), with its 95 % interval (points); ``near_chance``: the model's rank-1 is within
    2 points of chance, ``ties``: settings that rank the queries exactly as ``setting`` (both None in studies
    written before they were recorded)."""

    run: str | None = None
    model: str | None = None
    dataset: str | None = None
    comparison: str | None = None
    setting: str | None = None
    versus: str | None = None
    r1_diff: float | None = _field(key="R1 diff")
    r1_ci95: Interval | None = _field(key="R1 ci95", load=_seq)
    map_diff: float | None = _field(key="mAP diff")
    map_ci95: Interval | None = _field(key="mAP ci95", load=_seq)
    near_chance: bool | None = None
    ties: tuple[str, ...] | None = _field(load=_seq)


@dataclass(frozen=True, kw_only=True)
class VerificationRow(Written):
    """Verification of one run under one distance (``method``): AUC, EER and TAR at FAR 1e-3/1e-2/1e-1 in percent;
    ``pairs`` scored, ``genuine`` among them (the pair-head rows: ``held_out_pairs`` instead)."""

    run: str | None = None
    model: str | None = None
    dataset: str | None = None
    method: str | None = None
    auc: float | None = _field(key="AUC")
    eer: float | None = _field(key="EER")
    tar_far_1e3: float | None = _field(key="TAR@FAR=1e-3")
    tar_far_1e2: float | None = _field(key="TAR@FAR=1e-2")
    tar_far_1e1: float | None = _field(key="TAR@FAR=1e-1")
    pairs: int | None = None
    genuine: int | None = None
    held_out_pairs: int | None = _field(key="held-out pairs")


@dataclass(frozen=True, kw_only=True)
class RocCurve(Written):
    """One run's verification ROC: TAR (fractions) per distance at each FAR of ``far`` (fractions, ascending)."""

    model: str | None = None
    dataset: str | None = None
    far: tuple[float, ...] = _field(factory=tuple, load=_seq)
    tar: Mapping[str, tuple[float, ...]] = _field(factory=dict, load=lambda d: {k: _seq(v) for k, v in d.items()})


def _frame(rows: tuple[Written, ...]) -> pd.DataFrame:
    """Rows in their written form as a DataFrame (columns named as written)."""
    return pd.DataFrame([row.to_dict() for row in rows or ()])


@dataclass(frozen=True, kw_only=True)
class DistanceRecord(RunRecord):
    """The ``30_distance_study`` run (:func:`reidlib.stages.distance.distance_study` and what follows it):
    ranking ``rows``, ``paired`` comparisons, ``verification`` and ``pair_head`` rows, ``roc`` curves per run.
    The ``*_frame`` methods give them as the DataFrames the :mod:`reidlib.stages.distance` tables take."""

    STAGE: ClassVar[str | None] = DISTANCE_STAGE

    rows: tuple[DistanceRow, ...] = _field(factory=tuple, load=_many(DistanceRow))
    paired: tuple[PairedRow, ...] = _field(factory=tuple, load=_many(PairedRow))
    verification: tuple[VerificationRow, ...] = _field(factory=tuple, load=_many(VerificationRow))
    pair_head: tuple[VerificationRow, ...] = _field(factory=tuple, load=_many(VerificationRow))
    roc: Mapping[str, RocCurve] = _field(factory=dict, load=_by_key(RocCurve))

    def rows_frame(self) -> pd.DataFrame:
        return _frame(self.rows)

    def paired_frame(self) -> pd.DataFrame:
        return _frame(self.paired)

    def verification_frame(self) -> pd.DataFrame:
        return _frame(self.verification)

    def pair_head_frame(self) -> pd.DataFrame:
        return _frame(self.pair_head)

    def roc_dict(self) -> dict[str, dict]:
        """``{run: {"model", "dataset", "far", "tar": {metric: [...]}}}`` as written (fractions)."""
        return {run: curve.to_dict() for run, curve in (self.roc or {}).items()}


Runs = Mapping[str, RunRecord]  # run id "<stage>/<name>" -> record, what the report reads

RECORD_TYPES: dict[str, type[RunRecord]] = {DATA_STAGE: DataRecord, TRAIN_STAGE: TrainRecord,
                                            FINETUNE_STAGE: FinetuneRecord, DISTANCE_STAGE: DistanceRecord}


# ----------------------------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------------------------
def regenerate_command(metrics: Mapping[str, Any], stage: str | None = None, run_id: str | None = None) -> str:
    """``./run_all.sh <profile> --only <run id> --force``, the command :func:`reidlib.stages.common.read_metrics`
    names for a record it refuses (the stage where the run id is unknown)."""
    profile = metrics.get("profile") or "<profile>"
    return f"./run_all.sh {profile} --only {run_id or stage or '<run id>'} --force"


def check_format(metrics: Mapping[str, Any], stage: str | None = None, run_id: str | None = None) -> int:
    """The record's ``format`` (0 where it has none); refuse a format this reidlib does not read, worded as
    :func:`reidlib.stages.common.read_metrics` words it.

    Raises:
        MetricsFormatError: a format newer than :data:`reidlib.stages.common.METRICS_FORMAT`, or not an integer.
    """
    fmt = metrics.get("format", 0)
    if isinstance(fmt, bool) or not isinstance(fmt, int) or not 0 <= fmt <= METRICS_FORMAT:
        where = f"the metrics record of {run_id}" if run_id else "a metrics record"
        raise MetricsFormatError(
            f"{where} is a format {fmt!r} record; this reidlib reads formats 0-{METRICS_FORMAT}. Use the reidlib "
            f"that wrote it, or regenerate it with this one: {regenerate_command(metrics, stage, run_id)}")
    return fmt


def stage_of(run_id: str) -> str:
    """The stage of run id ``"<stage>/<name>"``."""
    return run_id.split("/", 1)[0]


def read_record(source: str | Path | Mapping[str, Any], stage: str | None = None, *,
                run_id: str | None = None) -> RunRecord:
    """The typed record of a ``metrics.json`` file (read by :func:`reidlib.stages.common.read_metrics`: work paths
    made absolute, formats checked) or of its dict form.

    ``stage``: the stage that wrote it (default: the record's ``"stage"``, else the stage of ``run_id``).

    Raises:
        FileNotFoundError: no such file (the message names the stage to run).
        MetricsFormatError: a format newer than this reidlib reads (the message names the regenerate command).
        ValueError: no record type for the stage.
    """
    stage = stage or (stage_of(run_id) if run_id else None)
    metrics = source if isinstance(source, Mapping) else read_metrics(source)
    return RunRecord.from_dict(metrics, stage, run_id=run_id)


def read_run_info(metrics_path: str | Path) -> RunInfo:
    """The ``run.json`` beside a ``metrics.json`` (empty where there is none)."""
    info = Path(metrics_path).with_name("run.json")
    return RunInfo.from_dict(json.loads(info.read_text()) if info.is_file() else {})


def load_run(path: str | Path, run_id: str) -> RunRecord:
    """:func:`read_record` of run ``run_id``'s ``metrics.json`` at ``path`` with its ``run.json`` attached."""
    return replace(read_record(path, run_id=run_id), run_info=read_run_info(path))


def as_runs(runs: Mapping[str, RunRecord | Mapping[str, Any]]) -> dict[str, RunRecord]:
    """``{run id: record}`` with every dict (a ``metrics.json`` in its dict form, ``run_info`` attached or not)
    read as its stage's record; records pass through."""
    return {run: m if isinstance(m, RunRecord) else read_record(m, run_id=run) for run, m in runs.items()}
