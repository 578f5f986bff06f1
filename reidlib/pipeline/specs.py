"""The study's typed specs: the one place each profile key, its type, range, choices and default live.

=====================  ==========================================================================================
top level              :class:`Study`
``datasets.<key>``     :class:`DatasetSpec` (``kwargs`` checked against the reader's signature)
``models[i]``          :class:`ModelSpec` (``kwargs`` checked against the model class's signature)
``training``           the recipe: :class:`reidlib.engine.TrainConfig`'s fields (its annotations are the types, so a
                       new field is accepted the day it is added) minus :data:`SET_BY_PIPELINE`, plus
                       ``transforms`` (the augmentation fields as a block); ranges in :func:`recipe_rules`
``models[i].train``    the same keys as ``training`` (merged over it)
``finetune``           :class:`FinetuneSpec` (``pairs``, ``models``) and the recipe keys
``evaluation``         :class:`EvalSpec`
``distance_study``     :class:`DistanceSpec`
``report``             :class:`ReportSpec`
=====================  ==========================================================================================

A field's annotation is its type; its :func:`~reidlib.pipeline.schema.rule` metadata holds its range, choices and
what a resolved profile keeps of it. :func:`~reidlib.pipeline.schema.build` turns a YAML mapping into a spec from
these alone (a new field is a new accepted key), and :func:`check_profile` returns the resolved profile as the plain
dict the plan and the notebooks read: the keys a profile wrote, typed, and the defaults of the blocks the plan reads
whole (top level, datasets, models); recipe, evaluation, distance-study and report blocks keep only what was written
(the stages apply the rest), and :func:`with_defaults` writes those defaults out for ``pipeline show``.
"""
from __future__ import annotations

import copy
import dataclasses
import inspect
import re
import typing
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

from .mappings import deep_merge
from .schema import Problems, ProfileError, Rule, build, check_value, coerce, resolved, rule, rules_of
from .variants import is_seed_list

__all__ = ["DatasetSpec", "DistanceSpec", "EvalSpec", "FinetuneSpec", "ModelSpec", "ProfileError", "ReportSpec",
           "Study", "build_study", "check_profile", "spec_defaults", "training_keys", "with_defaults",
           "MIN_INPUT_SIZE", "MODEL_KEYS", "recipe_rules",
           "SET_BY_PIPELINE", "TOP_KEYS", "TRANSFORM_KEYS"]

# the smallest input (height, width in pixels) each model family runs at, found by trying sizes on the CPU (train
# and eval mode): below it a pooling stage has no pixel left ("Output size is too small"). Models not listed run
# at any size. tests/test_pipeline_specs.py checks this table against the real models.
MIN_INPUT_SIZE: dict[str, tuple[int, int]] = {"osnet_x0_25": (13, 13)}
DEFAULT_IMAGE_SIZE = [256, 128]


# ----------------------------------------------------------------------------------------------------------------
# choices, imported when a profile is checked (not when the pipeline is imported)
# ----------------------------------------------------------------------------------------------------------------
def _metrics() -> tuple[str, ...]:
    from reidlib.evaluation.distances import METRICS

    return METRICS


def _precisions() -> tuple[str, ...]:
    from reidlib.runtime import PRECISIONS

    return PRECISIONS


def _dataset_names() -> list[str]:
    from reidlib.data import list_datasets

    return list_datasets()


def _model_names() -> list[str]:
    from reidlib.models import list_models

    return list_models()


# ----------------------------------------------------------------------------------------------------------------
# values with their own message
# ----------------------------------------------------------------------------------------------------------------
def _device(value: Any, where: str, ck: Problems, ctx: dict) -> Any:
    value = coerce(value, str, where, ck)
    if isinstance(value, str) and not re.match(r"^(auto|cpu|cuda(:\d+)?)$", value):
        ck.fail(where, f"must be auto, cpu, cuda or cuda:N, got {value!r}")
    return value


def _image_size(value: Any, where: str, ck: Problems, ctx: dict) -> list[int]:
    if not (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        ck.fail(where, f"must be [height, width] in pixels, got {value!r}")
        return list(DEFAULT_IMAGE_SIZE)
    return [int(v) for v in value]


def _dataset_keys(value: Any, where: str, ck: Problems, ctx: dict) -> list:
    value = value or []
    if not isinstance(value, list):
        ck.fail(where, f"must be a list of dataset keys, got {value!r}")
        return []
    return list(value)


def _label(value: Any, where: str, ck: Problems, ctx: dict) -> Any:
    value = coerce(value, str, where, ck)
    if isinstance(value, str) and value.count("(") != value.count(")"):
        ck.fail(where, f"{value!r} looks cut (a label holding a comma must be quoted)")
    return value


def _model_seeds(value: Any, where: str, ck: Problems, ctx: dict) -> Any:
    if value is not None and not is_seed_list(value):
        ck.fail(where, f"must be a list of distinct integers >= 0, the profile's seed first, e.g. [0, 1, 2], got "
                       f"{value!r}")
        return None
    return value


def _pretrained(value: Any, where: str, ck: Problems, ctx: dict) -> Any:
    if value is not None and not isinstance(value, str):
        ck.fail(where, f"must be null (random init), 'imagenet' or a checkpoint path, got {value!r}")
    return value


def _mapping(what: str) -> Any:
    def parse(value: Any, where: str, ck: Problems, ctx: dict) -> Any:
        if not isinstance(value, dict):
            ck.fail(where, f"must be a mapping of {what}, got {value!r}")
        return value
    return parse


def _rerank(value: Any, where: str, ck: Problems, ctx: dict) -> Any:
    from reidlib.evaluation.evaluator import RERANK_METHODS

    if (isinstance(value, str) and value not in RERANK_METHODS) or \
            not isinstance(value, (bool, dict, str, type(None))):
        ck.fail(where, f"must be false, true, one of {', '.join(RERANK_METHODS)} or a mapping "
                       f"{{method: ..., k1: ...}}, got {value!r}")
    return value


def _recipe_block(value: Any, where: str, ck: Problems, ctx: dict) -> dict:
    return check_recipe(value, where, ck)


def _own_recipe(value: Any, where: str, ck: Problems, ctx: dict) -> dict:
    return check_recipe(value or {}, where, ck)


def _fixed_message(check: Any, message: str) -> Any:
    def parse(value: Any, where: str, ck: Problems, ctx: dict) -> Any:
        if not check(value):
            ck.fail(where, message)
        return value
    return parse


def _checked_elsewhere(value: Any, where: str, ck: Problems, ctx: dict) -> Any:
    return value  # the keys a later step checks with its own messages (see the field's doc)


def _run_pairs(value: Any, where: str, ck: Problems, ctx: dict) -> Any:
    for i, v in enumerate(value or []):
        if not (isinstance(v, dict) and isinstance(v.get("fixed"), str) and isinstance(v.get("variant"), str)):
            ck.fail(f"{where}[{i}]", "must be a mapping {fixed: run id, variant: run id, change: text}, and "
                                     "noise: true where the change should not matter (its difference measures noise)")
            continue
        ck.unknown_keys(f"{where}[{i}]", v, {"fixed", "variant", "change", "noise"})
        if not isinstance(v.get("noise", False), bool):
            ck.fail(f"{where}[{i}].noise", f"must be true or false, got {v['noise']!r}")
    return value


# ----------------------------------------------------------------------------------------------------------------
# the specs
# ----------------------------------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class DatasetSpec:
    """One ``datasets.<key>`` entry; ``root`` is relative to the profile's ``data_root`` unless absolute."""

    name: str = rule(choices=_dataset_names, doc="a registered dataset reader")
    root: str = rule(default_from="$key", doc="the dataset's folder (default: its key)")
    label: str = rule(default_from="$key", doc="how tables and figures name it (default: its key)")
    kwargs: dict = rule(factory=dict, none_is_default=True, parse=_mapping("the reader's keyword arguments"),
                        doc="the reader's own keyword arguments")

    def check(self, where: str, ck: Problems, given: tuple[str, ...]) -> None:
        from reidlib.data.registry import get_reader

        if self.name not in _dataset_names() or not isinstance(self.kwargs, dict):
            return
        accepted = _signature_keys(get_reader(self.name))
        if accepted is None and self.name == "synthetic":  # its **kwargs are the generator's parameters
            from reidlib.data.synthetic import synthetic_params

            reader = set(inspect.signature(get_reader(self.name)).parameters) - {"kwargs"}
            accepted = (_signature_keys(synthetic_params) or set()) | reader
        if accepted is not None:
            ck.unknown_keys(f"{where}.kwargs", self.kwargs, accepted - {"root"})


@dataclass(kw_only=True)
class ModelSpec:
    """One ``models[i]`` entry: a registered model, its run name, and what differs from the study for it."""

    name: str = rule(choices=_model_names, doc="a registered model")
    run: str = rule(default_from="name", doc="the run name, unique in the profile (default: name)")
    label: str = rule(default_from="run", parse=_label, doc="how tables and figures name it (default: run)")
    kwargs: dict = rule(factory=dict, parse=_mapping("the model's options"), doc="the model's options")
    pretrained: str | None = rule(None, parse=_pretrained, doc="null (random init), 'imagenet' or a weights file")
    train_on: list[str] = rule(inherit="train_on", doc="dataset keys it trains on (default: the study's)")
    image_size: list[int] = rule(inherit="image_size", parse=_image_size,
                                 doc="[height, width] in pixels (default: the study's)")
    train: dict = rule(factory=dict, parse=_own_recipe, doc="recipe keys for this model only")
    seeds: list[int] | None = rule(None, given_only=True, parse=_model_seeds,
                                   doc="train once per seed, the profile's seed first (default: the study's seeds)")

    def check(self, where: str, ck: Problems, given: tuple[str, ...]) -> None:
        if self.name not in _model_names():
            return
        if isinstance(self.kwargs, dict):
            accepted = _model_kwarg_keys(self.name)
            if accepted is not None:
                ck.unknown_keys(f"{where}.kwargs", self.kwargs, accepted)
        low = MIN_INPUT_SIZE.get(self.name)
        size = self.image_size
        if low and (size[0] < low[0] or size[1] < low[1]):
            place = f"{where}.image_size" if "image_size" in given else f"image_size (used by {where}, {self.name})"
            ck.fail(place, f"{size[0]}x{size[1]} is smaller than {self.name} can take: its pooling stages need at "
                           f"least {low[0]}x{low[1]} pixels (height x width); give an image_size of at least "
                           f"{list(low)}")


def _eval_default(name: str) -> Any:
    """The default of evaluation setting ``name``: :class:`reidlib.evaluation.EvalSettings`'s, which the trainer's
    selection and the stages' test evaluation apply (read when needed: it imports torch)."""
    def default() -> Any:
        from reidlib.evaluation.embed_rank import EvalSettings

        return next(f.default for f in dataclasses.fields(EvalSettings) if f.name == name)
    return default


@dataclass(kw_only=True)
class EvalSpec:
    """The test protocol of every run (``evaluation``), mapped onto :class:`reidlib.evaluation.EvalSettings`; the
    defaults are that class's (what the stages apply to a key the profile leaves out)."""

    given_only: ClassVar[bool] = True

    flip: bool = rule(factory=_eval_default("flip"), doc="average each image's features with its mirror image's")
    metric: str = rule(factory=_eval_default("metric"), choices=_metrics, doc="the query-gallery distance")
    normalize: bool = rule(factory=_eval_default("normalize"), doc="L2-normalise features before the distance")
    max_rank: int = rule(factory=_eval_default("max_rank"), min=0, min_inclusive=False, doc="the CMC's length")
    rerank: bool | str | dict | None = rule(factory=_eval_default("rerank"), parse=_rerank,
                                            doc="off (false or null), true, a method name or {method: ..., k1: ...}")
    batch_size: int = rule(factory=_eval_default("batch_size"), min=0, min_inclusive=False,
                           doc="images per feature-extraction batch")


@dataclass(kw_only=True)
class DistanceSpec:
    """The distance study (``distance_study``): every metric x normalisation on the trained models' features."""

    given_only: ClassVar[bool] = True

    metrics: list[str] = rule(factory=lambda: ["euclidean", "cosine", "correlation", "cityblock", "minkowski"],
                              choices=_metrics)
    normalize: list[bool] = rule(factory=lambda: [True, False])
    minkowski_p: float = rule(3, min=0, min_inclusive=False)
    rerank: bool = rule(True, doc="one more row per model: k-reciprocal re-ranking")
    verification: bool = rule(True, doc="the verification (ROC) view of each setting")
    max_impostors: int = rule(1_000_000, min=0, min_inclusive=False, doc="impostor pairs sampled per model")


@dataclass(kw_only=True)
class ReportSpec:
    """What the report shows besides the runs (``report``)."""

    given_only: ClassVar[bool] = True

    reproduces: str | dict | None = rule(None, parse=_checked_elsewhere,
                                         doc="the published table the study redoes (checked by .references)")
    references: list = rule(factory=list, parse=_fixed_message(
        lambda v: isinstance(v, list), "must be a list of keys of params/_references.yaml"))
    notes: list = rule(factory=list, parse=_fixed_message(lambda v: isinstance(v, list), "must be a list of strings"))
    ranking: list[str] = rule(factory=list, parse=_fixed_message(
        lambda v: isinstance(v, list) and all(isinstance(r, str) for r in v),
        "must be a list of run ids (e.g. 10_train/cuhk03-bot_resnet50), one per model"))
    variants: list[dict] = rule(factory=list, parse=_run_pairs, doc="pairs of runs differing in one change")


@dataclass(kw_only=True)
class FinetuneSpec:
    """``finetune``: which trained models to fine-tune on which ``[source, target]`` pairs; its other keys are
    recipe keys merged over each model's training recipe (:attr:`recipe`)."""

    pairs: list = rule(factory=list, doc="[source, target] dataset keys")
    models: list = rule(factory=list, none_is_default=True, doc="model runs to fine-tune")
    recipe: dict = dataclasses.field(default_factory=dict, metadata={"block": False})

    def resolved(self) -> dict:
        return {**self.recipe, "pairs": self.pairs, "models": self.models}


def _finetune(value: Any, where: str, ck: Problems, ctx: dict) -> FinetuneSpec | None:
    if value is None:
        return None
    own = {k for k, r in rules_of(FinetuneSpec).items() if r.block}
    if not ck.unknown_keys(where, value, set(training_keys()) | own):
        return None
    spec = build(FinetuneSpec, {k: v for k, v in value.items() if k in own}, where, ck)
    spec.recipe = check_recipe({k: v for k, v in value.items() if k not in own}, where, ck)
    return spec


@dataclass(kw_only=True)
class Study:
    """A whole profile: what runs (datasets, models, recipe) and how it is evaluated and reported."""

    description: str = rule(doc="what the profile is for")
    seed: int = rule(0)
    device: str = rule("auto", parse=_device, doc="auto, cpu, cuda or cuda:N")
    precision: str = rule("auto", choices=_precisions)
    image_size: list[int] = rule(factory=lambda: list(DEFAULT_IMAGE_SIZE), parse=_image_size,
                                 doc="[height, width] in pixels for every model without its own")
    real_data: bool = rule(False, doc="true keeps figures of real people's crops out of results/")
    num_workers: int = rule(0)
    data_root: str | None = rule(None, given_only=True, doc="where datasets live, relative to the repository")
    work_dir: str | None = rule(None, given_only=True, doc="checkpoints and features (default: work/<name>)")
    datasets: dict[str, DatasetSpec] = rule(parse=lambda v, where, ck, ctx: _datasets(v, where, ck, ctx))
    train_on: list[str] = rule(parse=_dataset_keys, doc="dataset keys every model trains on")
    zero_shot: list[str] = rule(factory=list, parse=_dataset_keys, doc="dataset keys evaluated without training")
    training: dict = rule(parse=_recipe_block, doc="the recipe every model trains with")
    models: list[ModelSpec] = rule(parse=lambda v, where, ck, ctx: _models(v, where, ck, ctx))
    finetune: FinetuneSpec | None = rule(None, given_only=True, parse=_finetune)
    evaluation: EvalSpec = rule()
    distance_study: DistanceSpec | None = rule(None, given_only=True)
    report: ReportSpec | None = rule(None, given_only=True)
    variants: dict[str, dict] | None = rule(None, given_only=True, parse=_checked_elsewhere,
                                            doc="variant name -> overrides of this profile (checked by .variants)")
    seeds: list[int] | None = rule(None, given_only=True, parse=_checked_elsewhere,
                                   doc="each training run repeated with these seeds (checked by .variants)")
    test_split: bool = rule(True, given_only=True, parse=_checked_elsewhere,
                            doc="false: recipes compared on held-out ids only (checked by .variants)")

    def check(self, where: str, ck: Problems, given: tuple[str, ...]) -> None:
        """The rules between blocks: names that must exist, unique runs, whole recipes, positive pairs."""
        datasets = self.datasets if isinstance(self.datasets, dict) else {}
        selection = _selection_fields(self.evaluation, ck)
        _check_selection(self.training, "training", selection, ck)
        for role in ("train_on", "zero_shot"):
            for key in getattr(self, role):
                if key not in datasets:
                    ck.fail(role, f"names dataset {key!r}, which is not under 'datasets' ({sorted(datasets)})")
        runs_seen: set[str] = set()
        recipes: dict[str, tuple[dict, str]] = {}  # model run -> (merged recipe, where its num_instances comes from)
        for i, model in enumerate(self.models):
            if model is None or model.name not in _model_names():
                continue
            if model.run in runs_seen:
                ck.fail(f"models[{i}].run", f"two models share run name {model.run!r}; give each a unique 'run'")
            runs_seen.add(model.run)
            for key in model.train_on if isinstance(model.train_on, list) else []:
                if key not in datasets:
                    ck.fail(f"models[{i}].train_on", f"names unknown dataset {key!r} ({sorted(datasets)})")
            _check_selection(model.train, f"models[{i}].train", selection, ck)
            merged = deep_merge(self.training, model.train)  # the recipe load_profile resolves
            if not any(e.startswith(("training", f"models[{i}]")) for e in ck.errors):  # else named once already
                _try_train_config(merged, f"models[{i}] (training merged with its train block)", ck,
                                  self.image_size)
            own_k = "num_instances" in model.train
            recipes[model.run] = (merged, f"models[{i}].train.num_instances" if own_k else "training.num_instances")
            _check_positive_pairs(*recipes[model.run], ck)
        ft = self.finetune
        if ft is None:
            return
        for pair in ft.pairs if isinstance(ft.pairs, list) else [ft.pairs]:
            if not (isinstance(pair, list) and len(pair) == 2 and all(k in datasets for k in pair)):
                ck.fail("finetune.pairs", f"entries must be [source, target] dataset keys, got {pair!r}")
        _check_selection(ft.recipe, "finetune", selection, ck)
        ft_models = ft.models if isinstance(ft.models, list) else []
        for run in ft_models:
            if run not in runs_seen:
                ck.fail("finetune.models", f"names {run!r}, not a model run ({sorted(runs_seen)})")
        for run in ft_models:
            if run in recipes:
                merged, where_k = recipes[run]
                losses = {**(merged.get("loss_kwargs") or {}), **(ft.recipe.get("loss_kwargs") or {})}
                _check_positive_pairs({**merged, **ft.recipe, "loss_kwargs": losses},
                                      "finetune.num_instances" if "num_instances" in ft.recipe else where_k, ck)


def _selection_fields(evaluation: EvalSpec | None, ck: Problems) -> dict[str, tuple[str, Any]]:
    """``{TrainConfig field: (evaluation key, value)}``: what model selection runs under, from the evaluation block
    ({} when that block has problems of its own)."""
    from reidlib.engine.config import EVAL_FIELDS, TrainConfig

    if evaluation is None or any(e.startswith("evaluation") for e in ck.errors):
        return {}
    written = {k: getattr(evaluation, k) for k in evaluation.given_keys}
    try:
        fields = TrainConfig.evaluation_fields(written)
    except (TypeError, ValueError) as exc:
        ck.fail("evaluation", str(exc))
        return {}
    return {name: (attr, fields[name]) for attr, name in EVAL_FIELDS.items()}


def _check_selection(recipe: dict, where: str, selection: dict[str, tuple[str, Any]], ck: Problems) -> None:
    """Model selection runs under the test's settings: a recipe key carrying one of them must agree with it."""
    for key, value in recipe.items():
        if key in selection and value != selection[key][1]:
            attr, decided = selection[key]
            ck.fail(f"{where}.{key}", f"is {value!r}, but model selection runs under the evaluation block's settings "
                                      f"(evaluation.{attr} gives {decided!r}); remove it here and set evaluation."
                                      f"{attr} if you want another value")


def _datasets(value: Any, where: str, ck: Problems, ctx: dict) -> dict[str, DatasetSpec]:
    if not isinstance(value, dict) or not value:
        ck.fail(where, "must map a short key to {name, root, label, kwargs}")
        return {}
    built = {str(k): build(DatasetSpec, spec, f"{where}.{k}", ck, ctx, key=str(k)) for k, spec in value.items()}
    return {k: v for k, v in built.items() if v is not None}


def _models(value: Any, where: str, ck: Problems, ctx: dict) -> list[ModelSpec]:
    if not isinstance(value, list) or not value:
        ck.fail(where, "must be a list of {name, run, label, ...} entries")
        return []
    return [build(ModelSpec, spec, f"{where}[{i}]", ck, ctx) for i, spec in enumerate(value)]


# ----------------------------------------------------------------------------------------------------------------
# the recipe: TrainConfig's fields
# ----------------------------------------------------------------------------------------------------------------
# TrainConfig fields the pipeline fills from the profile's top level or its own needs (never in a training block)
SET_BY_PIPELINE = frozenset({"height", "width", "device", "precision", "seed", "num_workers", "evaluate_test",
                             "progress", "resume", "model_kwargs"})
TRANSFORM_KEYS = ("flip_p", "pad", "color_jitter", "erasing_p")


def recipe_rules() -> dict[str, dict]:
    """Ranges and choices of the recipe fields beyond their types (any other number must be >= 0)."""
    from reidlib.engine.config import DATA_PATHS, SELECT_ON
    from reidlib.engine.optim import OPTIMIZERS, SCHEDULERS

    positive = {"min": 0, "min_inclusive": False}
    probability = {"min": 0, "max": 1}
    return {
        **{k: positive for k in ("lr", "center_lr", "gamma", "batch_size", "num_instances", "eval_every",
                                 "test_batch_size", "max_minutes", "stop_after")},
        **{k: probability for k in ("flip_p", "erasing_p", "label_smooth", "warmup_factor", "min_lr_factor",
                                    "color_jitter")},
        "optimizer": {"choices": OPTIMIZERS, "lower": True}, "scheduler": {"choices": SCHEDULERS},
        "select_on": {"choices": SELECT_ON}, "metric": {"choices": _metrics()}, "data_path": {"choices": DATA_PATHS},
    }


def training_keys() -> dict[str, Any]:
    """Every key a ``training`` block may hold -> its type (from :class:`TrainConfig`'s annotations)."""
    return {**{k: r.type for k, r in _recipe_field_rules().items()}, "transforms": dict}


@lru_cache(maxsize=None)
def _recipe_field_rules() -> dict[str, Rule]:
    from reidlib.engine.config import TrainConfig

    extra = recipe_rules()
    return {k: dataclasses.replace(r, **extra.get(k, {}))
            for k, r in rules_of(TrainConfig).items() if k not in SET_BY_PIPELINE}


def check_recipe(block: Any, where: str, ck: Problems) -> dict:
    """A recipe block (``training``, ``models[i].train``, ``finetune``'s recipe keys) checked against
    :class:`TrainConfig`'s fields: the keys it holds, typed; defaults are left to ``TrainConfig``."""
    fields = _recipe_field_rules()
    if not ck.unknown_keys(where, block, set(fields) | {"transforms"}):
        return {}
    out: dict[str, Any] = {}
    for key, value in block.items():
        if key == "transforms":
            out[key] = _check_transforms(value, f"{where}.transforms", fields, ck)
        elif key in fields:
            out[key] = check_value(value, fields[key], f"{where}.{key}", ck, {})
    return out


def _check_transforms(block: Any, where: str, fields: dict[str, Rule], ck: Problems) -> dict:
    if block is None or not ck.unknown_keys(where, block, set(TRANSFORM_KEYS)):
        return {}
    return {k: check_value(v, fields[k], f"{where}.{k}", ck, {}) for k, v in block.items() if k in TRANSFORM_KEYS}


def _try_train_config(train: dict, where: str, ck: Problems, image_size: Any = None) -> None:
    """Build a :class:`TrainConfig` from a merged recipe at the profile's ``image_size``, so cross-field rules
    (batch_size a multiple of num_instances, low_res_size within the input size, ...) fail now rather than inside a
    notebook. ``epochs: 0`` (evaluate only) is checked as 1."""
    from reidlib.engine.config import TrainConfig

    kwargs = {k: v for k, v in train.items() if k != "transforms"}
    kwargs.update(train.get("transforms") or {})
    if isinstance(image_size, (list, tuple)) and len(image_size) == 2:
        kwargs["height"], kwargs["width"] = (int(v) for v in image_size)
    kwargs["epochs"] = max(int(kwargs.get("epochs", 1) or 1), 1)
    try:
        TrainConfig.from_kwargs(**kwargs)
    except (TypeError, ValueError) as exc:
        ck.fail(where, str(exc))


def _check_positive_pairs(recipe: dict, where: str, ck: Problems) -> None:
    """Batch-hard triplet needs two images of an identity in a batch: refuse ``num_instances < 2`` with it on."""
    k = recipe.get("num_instances", 4)
    loss_kwargs = recipe.get("loss_kwargs") if isinstance(recipe.get("loss_kwargs"), dict) else {}
    weight = loss_kwargs.get("triplet_weight", 1.0)
    if isinstance(k, int) and k < 2 and isinstance(weight, (int, float)) and weight > 0:
        ck.fail(where, f"is {k}: with one image per identity in a batch the triplet loss finds no positive pair, so "
                       "it is 0 and teaches nothing; set num_instances to 2 or more (4 is usual), or turn the "
                       "triplet off with loss_kwargs: {triplet_weight: 0.0}")


# ----------------------------------------------------------------------------------------------------------------
# signatures of readers and models
# ----------------------------------------------------------------------------------------------------------------
def _signature_keys(func: Any) -> set[str] | None:
    """Keyword names ``func`` accepts (None when it takes ``**kwargs`` and nothing more can be said)."""
    params = inspect.signature(func).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _model_kwarg_keys(name: str) -> set[str] | None:
    from reidlib.models.registry import get_entry

    factory = get_entry(name).factory
    keys = _signature_keys(factory)
    if keys is not None:
        return keys - {"num_classes"}
    cls = typing.get_type_hints(factory).get("return")
    if inspect.isclass(cls):
        inner = _signature_keys(cls.__init__)
        if inner is not None:
            return inner - {"self", "num_classes", "paper_code"} | {"paper_code"}
    return None


# ----------------------------------------------------------------------------------------------------------------
# profiles
# ----------------------------------------------------------------------------------------------------------------
def _keys(cls: type) -> frozenset[str]:
    return frozenset(k for k, r in rules_of(cls).items() if r.block)


TOP_KEYS = _keys(Study)
MODEL_KEYS = _keys(ModelSpec)


def spec_defaults(cls: type) -> dict[str, Any]:
    """``{key: default}`` of a spec class, in field order (fresh copies of mutable defaults)."""
    return {k: r.default_value() for k, r in rules_of(cls).items() if r.block and not r.required}


def build_study(raw: Any, source: str = "profile") -> Study:
    """A profile as read from YAML, checked and built into a :class:`Study`.

    Raises:
        ProfileError: listing every problem found (key, value, what it should be), not just the first.
    """
    if not isinstance(raw, dict):
        raise ProfileError(f"{source} must hold a mapping of keys, got {type(raw).__name__}")
    ck = Problems(source)
    ck.unknown_keys("profile", raw, TOP_KEYS, required=tuple(k for k, r in rules_of(Study).items() if r.required))
    ck.raise_if_any()
    study = build(Study, raw, "", ck)
    ck.raise_if_any()
    return study


def check_profile(raw: Any, source: str = "profile") -> dict:
    """Check a profile as read from YAML and return it as the plain dict the plan reads (:func:`build_study`,
    then :func:`~reidlib.pipeline.schema.resolved`): types coerced, the defaults of the top level, datasets and
    models filled in.

    Raises:
        ProfileError: listing every problem found (key, value, what it should be), not just the first.
    """
    return resolved(build_study(raw, source))


def with_defaults(cfg: dict) -> dict:
    """A loaded profile with every default the stages apply written out (what ``pipeline show`` prints).

    Each model's ``train`` block (and ``training``) gains :class:`TrainConfig`'s defaults for the keys it leaves
    out, ``transforms`` included; ``evaluation`` and ``distance_study`` gain :class:`EvalSpec`'s and
    :class:`DistanceSpec`'s. ``cache_dir`` stays out: the pipeline sets it to the profile's work folder.
    """
    fields = _recipe_field_rules()
    defaults = {k: r.default_value() for k, r in fields.items()}
    defaults = {k: list(v) if isinstance(v, tuple) else v for k, v in defaults.items()}
    recipe = {k: v for k, v in defaults.items() if k not in TRANSFORM_KEYS + ("cache_dir",)}
    transforms = {k: defaults[k] for k in TRANSFORM_KEYS}

    def fill(block: dict) -> dict:
        return {**recipe, **block, "transforms": {**transforms, **(block.get("transforms") or {})}}

    out = copy.deepcopy(cfg)
    out["training"] = fill(out["training"])
    for model in out["models"]:
        model["train"] = fill(model["train"])
    out["evaluation"] = {**spec_defaults(EvalSpec), **out["evaluation"]}
    if out.get("distance_study") is not None:
        out["distance_study"] = {**spec_defaults(DistanceSpec), **out["distance_study"]}
    return out
