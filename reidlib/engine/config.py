"""The training recipe (:class:`TrainConfig`, one field per ``fit`` keyword) and what a run returns.

Defaults are the paper's recipe (BoT "softmax_triplet_with_center"): P x K = 16 x 4, label-smoothed CE +
batch-hard triplet (margin 0.3) + 0.0005 * center loss with centres trained by their own SGD (lr 0.5),
lr 3.5e-4 with a linear warm-up from 0.01x over 10 epochs then x0.1 at epochs 40 and 70, 120 epochs,
weight decay 5e-4, Adam (BoT and the paper's text; the paper's *code* ran SGD momentum 0.95: pass
``optimizer="sgd"``). Augmentation: flip 0.5, pad 10 + random crop, random erasing 0.5; the paper's code
also applied ColorJitter(0.1, 0.1, 0.1, 0.1) (``color_jitter=0.1``), BoT and the paper's text do not.

Options for training from scratch (off by default, so the defaults are the paper's recipe): ``triplet_margin=None``
is the soft-margin triplet, ``softplus(d_ap - d_an)`` per anchor (Hermans et al. 2017), instead of
``max(0, d_ap - d_an + margin)``; ``metric_warmup_epochs=W`` ramps the metric losses in: for 0-based epoch ``e`` the
triplet and center weights are multiplied by ``metric_weight_factor(e, W)`` = 0 for ``e < W``, then
``min(1, (e - W + 1) / W)`` (W epochs of cross-entropy alone, then a linear ramp to full weight over W epochs).

Progressive resizing (off by default): ``low_res_epochs=N, low_res_size=(h, w)`` trains the first N epochs on
each batch downscaled from ``height x width`` to ``h x w`` (bilinear, antialiased, after augmentation), the rest at
full size; selection and test always evaluate at ``height x width``. A low-resolution step costs roughly the
pixel ratio ``h*w / (height*width)`` of a full one (plus the per-batch costs that do not scale with pixels).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reidlib.evaluation.embed_rank import EvalSettings

from .optim import OPTIMIZERS, SCHEDULERS

SELECT_ON = ("val", "test", "last")
SELECT_LABELS = {
    "val": "best epoch on a validation split held out from the training identities",
    "test": "best epoch on the TEST set (the paper code's selection; optimistic, not a clean estimate)",
    "last": "last epoch (no model selection)",
}
# fields that may change between a run and its resumption without breaking exactness of the recipe
RESUME_FREE = frozenset({"resume", "progress", "max_minutes", "stop_after", "num_workers",
                         "evaluate_test", "device", "cache_dir"})
DATA_PATHS = ("cached", "pil")
# what a checkpoint written before a field existed ran with (compared on resume instead of the new default)
LEGACY_VALUES: dict[str, Any] = {"data_path": "pil", "cache_dir": None, "metric_warmup_epochs": 0,
                                 "eval_normalize": True, "eval_max_rank": 50, "eval_rerank": None,
                                 "low_res_epochs": 0, "low_res_size": []}
# the fields that carry the selection's EvalSettings, by EvalSettings attribute
EVAL_FIELDS = {"metric": "metric", "normalize": "eval_normalize", "flip": "eval_flip", "batch_size": "test_batch_size",
               "max_rank": "eval_max_rank", "rerank": "eval_rerank"}


@dataclass
class TrainConfig:
    """Every knob of :func:`reidlib.engine.fit`; field names equal the keyword names.

    Units: learning rates per step; epochs counted from 0 inside schedules (see :mod:`reidlib.engine.optim`);
    image ``height`` x ``width`` in pixels; ``max_minutes`` of wall clock for this call.
    ``frozen_layers``: names of the model's modules (``"conv1"``, ``"conv2"``, ``"backbone.layer1"``) whose parameters
    never train in this run; their BatchNorm layers still update running statistics in train mode. On a CPU,
    freezing the high-resolution stem of a pretrained network roughly halves the cost of a step (no backward through
    the largest feature maps); ``benchmarks/README.md`` has the measurement.
    ``ddp_find_unused_parameters=None`` probes the model once (a 4-image train-mode pass, states restored).

    Model selection (and ``evaluate_test``) evaluates under :attr:`evaluation`, the
    :class:`reidlib.evaluation.EvalSettings` made of ``metric``, ``eval_normalize``, ``eval_flip``,
    ``test_batch_size``, ``eval_max_rank`` and ``eval_rerank`` (:data:`EVAL_FIELDS`); ``from_kwargs`` and ``fit``
    also take ``evaluation=`` (an ``EvalSettings`` or a profile's ``evaluation:`` mapping) for those fields.

    ``data_path``: ``"cached"`` (default) decodes every training image once, resized to ``height x width``, into an
    :class:`reidlib.data.ImageCache` (in memory, or a memory-mapped file under ``cache_dir`` reused by later runs
    on the same files) and augments each P x K batch as one tensor (:class:`reidlib.data.BatchAugment`: the same
    augmentations and distributions as the PIL transforms, drawn from a per-epoch generator seeded by
    ``(seed, epoch, rank)``, so the augmentation stream differs from the PIL path's for the same seed).
    ``"pil"``: the torchvision ``DataLoader`` path, each image decoded and augmented as a PIL image every epoch
    (``num_workers`` processes apply to it only). A custom ``train_transform`` passed to ``fit`` always uses it, and
    so does a cached run whose in-memory cache would take more than half the available memory (with a warning;
    give ``cache_dir`` to keep the cached path). The path a run took is recorded in ``meta["runs"][i]["data_path"]``.
    """

    epochs: int = 120
    # optimisation
    optimizer: str = "adam"
    lr: float = 3.5e-4
    weight_decay: float = 5e-4
    momentum: float = 0.95
    scheduler: str = "warmup_multistep"
    warmup_epochs: int = 10
    warmup_factor: float = 0.01
    milestones: tuple[int, ...] = (40, 70)
    gamma: float = 0.1
    min_lr_factor: float = 0.0
    # losses
    label_smooth: float = 0.1
    triplet_margin: float | None = 0.3  # None: soft margin, softplus(d_ap - d_an)
    center_weight: float = 5e-4
    center_lr: float = 0.5
    train_centers: bool = True
    loss_kwargs: dict = field(default_factory=dict)
    metric_warmup_epochs: int = 0  # triplet/center weight 0 for this many epochs, then linear to full over as many
    # data
    batch_size: int = 64
    num_instances: int = 4
    height: int = 256
    width: int = 128
    flip_p: float = 0.5
    pad: int = 10
    color_jitter: float | None = None
    erasing_p: float = 0.5
    low_res_epochs: int = 0  # the first this many epochs train on batches downscaled to low_res_size
    low_res_size: tuple[int, ...] = ()  # (height, width) in pixels, at most (height, width)
    num_workers: int = 0
    test_batch_size: int = 128
    data_path: str = "cached"
    cache_dir: str | None = None
    # model selection and evaluation
    num_val_ids: int | None = None
    select_on: str | None = None
    eval_every: int = 1
    eval_flip: bool = True
    metric: str = "euclidean"
    eval_normalize: bool = True
    eval_max_rank: int = 50
    eval_rerank: dict | None = None  # None, or {"method": "k-reciprocal" | "aqe", **kwargs}
    evaluate_test: bool = True
    # runtime
    device: str | None = None
    precision: str = "auto"
    channels_last: bool | None = None
    seed: int = 0
    deterministic: bool = False
    resume: bool = True
    progress: bool = True
    max_minutes: float | None = None
    stop_after: int | None = None
    head_only_epochs: int = 0
    frozen_layers: tuple[str, ...] = ()
    ddp_find_unused_parameters: bool | None = None
    model_kwargs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.device is not None:
            self.device = str(self.device)
        self.milestones = tuple(int(m) for m in self.milestones)
        if isinstance(self.frozen_layers, str):
            raise ValueError(f"frozen_layers must be a list of module names, got the string {self.frozen_layers!r}")
        self.frozen_layers = tuple(str(n) for n in self.frozen_layers)
        if self.optimizer.lower() not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {OPTIMIZERS}")
        self.optimizer = self.optimizer.lower()
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {self.scheduler!r}; choose one of {SCHEDULERS}")
        if self.data_path not in DATA_PATHS:
            raise ValueError(f"data_path must be one of {DATA_PATHS}, got {self.data_path!r}")
        if self.cache_dir is not None:
            self.cache_dir = str(self.cache_dir)
        if self.select_on is not None and self.select_on not in SELECT_ON:
            raise ValueError(f"select_on must be one of {SELECT_ON} (or None), got {self.select_on!r}")
        for name in ("epochs", "batch_size", "num_instances", "height", "width", "eval_every", "test_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_epochs", "head_only_epochs", "num_workers", "metric_warmup_epochs", "low_res_epochs"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        if self.triplet_margin is not None and not (math.isfinite(self.triplet_margin) and self.triplet_margin >= 0):
            raise ValueError(f"triplet_margin must be >= 0, or None for the soft margin, got {self.triplet_margin!r}")
        if self.batch_size % self.num_instances:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be a multiple of num_instances ({self.num_instances})")
        self.low_res_size = tuple(int(v) for v in self.low_res_size)
        if self.low_res_epochs:
            h, w = self.low_res_size if len(self.low_res_size) == 2 else (0, 0)
            if not (1 <= h <= self.height and 1 <= w <= self.width):
                raise ValueError(f"low_res_epochs={self.low_res_epochs} needs low_res_size [height, width] of at "
                                 f"least 1 and at most the input size {self.height}x{self.width} pixels, got "
                                 f"{list(self.low_res_size)}; e.g. low_res_size: [{self.height * 3 // 4}, "
                                 f"{self.width * 3 // 4}]")
        if self.stop_after is not None and self.stop_after < 1:
            raise ValueError(f"stop_after must be >= 1 epoch, got {self.stop_after}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError(f"max_minutes must be > 0, got {self.max_minutes}")
        self.eval_rerank = self.evaluation.rerank  # checks every evaluation field; rerank in its one form

    def train_size(self, epoch: int) -> tuple[int, int]:
        """(height, width) in pixels of the batches of 0-based ``epoch``: ``low_res_size`` for the first
        ``low_res_epochs`` epochs, else (``height``, ``width``)."""
        if epoch < self.low_res_epochs:
            return int(self.low_res_size[0]), int(self.low_res_size[1])
        return self.height, self.width

    @property
    def evaluation(self) -> EvalSettings:
        """The :class:`reidlib.evaluation.EvalSettings` that model selection and the test evaluation run under."""
        return EvalSettings(**{attr: getattr(self, name) for attr, name in EVAL_FIELDS.items()})

    @staticmethod
    def evaluation_fields(settings: Any) -> dict[str, Any]:
        """The TrainConfig keywords that carry ``settings`` (an ``EvalSettings`` or a mapping of its fields); its
        bootstrap options (``ci``, ``n_boot``, ``boot_seed``, ``per_query``) are not used by selection."""
        settings = EvalSettings.from_mapping(settings)
        return {name: getattr(settings, attr) for attr, name in EVAL_FIELDS.items()}

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> "TrainConfig":
        """Build from keywords, naming every unknown one in the error.

        ``evaluation=`` (an ``EvalSettings`` or a mapping of its fields) sets the :data:`EVAL_FIELDS`; giving one
        of them as well with another value is an error.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - names - {"evaluation"})
        if unknown:
            raise TypeError(f"unknown training option(s) {unknown}; valid: {sorted(names | {'evaluation'})}")
        if "evaluation" in kwargs:
            fields = cls.evaluation_fields(kwargs.pop("evaluation"))
            clash = {k: (kwargs[k], v) for k, v in fields.items() if k in kwargs and kwargs[k] != v}
            if clash:
                raise ValueError(f"evaluation= and the option(s) {sorted(clash)} disagree (given, evaluation): "
                                 f"{clash}; set them in one place")
            kwargs.update(fields)
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain-builtin dict (tuples become lists) for JSON and checkpoints."""
        out = dataclasses.asdict(self)
        out["milestones"] = list(self.milestones)
        out["low_res_size"] = list(self.low_res_size)
        return out


@dataclass
class TrainResult:
    """What :func:`reidlib.engine.fit` returns (also written to ``out_dir/result.json`` by rank 0).

    ``history`` holds one dict per completed epoch (``epoch`` counts from 1). ``best_epoch`` is 1-based.
    ``test_metrics`` are from the selected checkpoint, evaluated once at the end (``None`` if not run).
    """

    out_dir: Path
    history: list[dict]
    epochs_completed: int
    epochs_planned: int
    optimizer: str
    selected_on: str
    selection: str
    best_epoch: int | None
    best_metrics: dict | None
    checkpoint: Path
    last_checkpoint: Path
    best_checkpoint: Path | None
    test_metrics: dict | None
    stopped_early: str | None
    config: dict
    meta: dict = field(default_factory=dict)
    model: Any = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Everything but the model, paths as strings (what ``result.json`` holds)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "model"}
        for key in ("out_dir", "checkpoint", "last_checkpoint", "best_checkpoint"):
            out[key] = None if out[key] is None else str(out[key])
        return out

    def summary(self) -> dict[str, Any]:
        """A flat dict for tables: optimizer, selection, epochs, best epoch, selection and test metrics, time."""
        out: dict[str, Any] = {
            "optimizer": self.optimizer, "selected_on": self.selected_on, "selection": self.selection,
            "epochs_planned": self.epochs_planned, "epochs_completed": self.epochs_completed,
            "best_epoch": self.best_epoch, "stopped_early": self.stopped_early, "checkpoint": str(self.checkpoint),
            "train_seconds": sum(r.get("epoch_seconds", 0.0) for r in self.history),
        }
        for key, value in (self.best_metrics or {}).items():
            if key != "epoch":
                out[f"select_{key}" if key != "score" else "select_score"] = value
        for key, value in (self.test_metrics or {}).items():
            if key != "cmc":
                out[f"test_{key}"] = value
        return out
