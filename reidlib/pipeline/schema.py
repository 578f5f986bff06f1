"""The profile schema: every key of every block checked, typed and range-checked before anything runs.

Blocks and what they may hold:

=====================  ==================================================================================
top level              :data:`TOP_KEYS` (``description``, ``datasets``, ``train_on``, ``models``, ``training``,
                       ``evaluation`` required)
``datasets.<key>``     ``name`` (a registered dataset), ``root``, ``label``, ``kwargs`` (the reader's own
                       keyword arguments, checked against its signature)
``models[i]``          :data:`MODEL_KEYS`; ``kwargs`` checked against the model class's signature
``training``           :class:`reidlib.engine.TrainConfig`'s fields (derived from the dataclass, so a new
                       field is accepted the day it is added), minus the ones the pipeline sets itself
                       (:data:`SET_BY_PIPELINE`), plus ``transforms`` (the augmentation fields as a block)
``models[i].train``    the same keys as ``training`` (merged over it)
``finetune``           ``pairs``, ``models`` and the ``training`` keys
``evaluation``         :data:`EVALUATION_KEYS`
``distance_study``     :data:`DISTANCE_KEYS`
``report``             :data:`REPORT_KEYS`
=====================  ==================================================================================

Types follow the dataclass annotations. YAML 1.1 reads ``1e-3`` (no dot) as a *string*: a string that is a
plain number is accepted for a float field and converted; any other string (``fast``, ``"16"`` for an integer,
``ture`` for a boolean) is an error naming the key, the value and what it should be. Unknown keys are errors
that list the known ones and suggest the closest.
"""
from __future__ import annotations

import dataclasses
import difflib
import inspect
import re
import types
import typing
from typing import Any

__all__ = ["ProfileError", "check_profile", "training_keys", "with_defaults", "TOP_KEYS", "MODEL_KEYS",
           "MIN_INPUT_SIZE"]


class ProfileError(ValueError):
    """A profile file is missing or malformed; the message says which key and how to fix it."""


REQUIRED_KEYS = ("description", "datasets", "train_on", "models", "training", "evaluation")
TOP_KEYS = frozenset(REQUIRED_KEYS) | {
    "seed", "device", "precision", "image_size", "data_root", "work_dir", "zero_shot", "finetune",
    "distance_study", "report", "real_data", "num_workers",
}
DATASET_KEYS = frozenset({"name", "root", "label", "kwargs"})
MODEL_KEYS = frozenset({"name", "run", "label", "kwargs", "pretrained", "train_on", "image_size", "train"})
EVALUATION_KEYS = frozenset({"flip", "metric", "normalize", "max_rank", "rerank", "batch_size"})
DISTANCE_KEYS = frozenset({"metrics", "normalize", "minkowski_p", "rerank", "verification", "max_impostors"})
REPORT_KEYS = frozenset({"reproduces", "references", "notes", "ranking", "variants"})
TRANSFORM_KEYS = ("flip_p", "pad", "color_jitter", "erasing_p")
# TrainConfig fields the pipeline fills from the profile's top level or its own needs (never in a training block)
SET_BY_PIPELINE = frozenset({"height", "width", "device", "precision", "seed", "num_workers", "evaluate_test",
                             "progress", "resume", "model_kwargs"})
EXTRA_TRAINING_KEYS = ("transforms",)

# value ranges: (low, low_inclusive) for numbers; probabilities in [0, 1]
_POSITIVE = {"lr", "center_lr", "gamma", "batch_size", "num_instances", "eval_every", "test_batch_size",
             "max_minutes", "stop_after", "max_rank", "minkowski_p", "max_impostors"}
_PROBABILITY = {"flip_p", "erasing_p", "label_smooth", "warmup_factor", "min_lr_factor", "color_jitter"}

# what the stages use when a profile leaves a key out (shown by ``python -m reidlib.pipeline show``)
EVALUATION_DEFAULTS = {"flip": True, "metric": "euclidean", "normalize": True, "max_rank": 50, "rerank": False,
                       "batch_size": 128}
DISTANCE_DEFAULTS = {"metrics": ["euclidean", "cosine", "correlation", "cityblock", "minkowski"],
                     "normalize": [True, False], "minkowski_p": 3, "rerank": True, "verification": True,
                     "max_impostors": 1_000_000}
# the smallest input (height, width in pixels) each model family runs at, found by trying sizes on the CPU (train
# and eval mode): below it a pooling stage has no pixel left ("Output size is too small"). Models not listed run
# at any size. tests/test_pipeline_specs.py checks this table against the real models.
MIN_INPUT_SIZE: dict[str, tuple[int, int]] = {"osnet_x0_25": (13, 13)}

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


class _Checker:
    """Collects every problem of one profile, so the user fixes them all in one go."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.errors: list[str] = []

    def fail(self, where: str, message: str) -> None:
        line = f"{where}: {message}"
        if line not in self.errors:  # a shared block's problem is reported once, not once per model
            self.errors.append(line)

    def keys(self, where: str, block: Any, known: frozenset[str] | set[str], required: tuple[str, ...] = ()) -> bool:
        if not isinstance(block, dict):
            self.fail(where, f"must be a mapping of keys, got {type(block).__name__} {block!r}")
            return False
        for key in sorted(map(str, set(block) - set(known))):
            close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            self.fail(where, f"unknown key {key!r}{hint} (known: {', '.join(sorted(known))})")
        for key in required:
            if key not in block:
                self.fail(where, f"lacks the required key {key!r} (see params/default.yaml for a complete profile)")
        return True

    def raise_if_any(self) -> None:
        if self.errors:
            lines = "\n  - ".join(self.errors)
            raise ProfileError(f"{self.source} has {len(self.errors)} problem(s):\n  - {lines}")


# ----------------------------------------------------------------------------------------------------------------
# values
# ----------------------------------------------------------------------------------------------------------------
def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str, ck: _Checker) -> Any:
    """``value`` converted to annotation ``tp`` where the YAML is ambiguous, else recorded as an error."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _coerce(value, inner[0], where, ck)
        for a in inner:  # e.g. bool | str: the first type the value already is
            if isinstance(value, a):
                return value
        ck.fail(where, f"must be one of {[_type_name(a) for a in inner]}, got {value!r}")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        ck.fail(where, f"must be true or false, got {value!r}" + (" (a typo?)" if isinstance(value, str) else ""))
        return value
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        what = f"the string {value!r} (remove the quotes)" if isinstance(value, str) and _NUMBER.match(value) \
            else repr(value)
        ck.fail(where, f"must be an integer, got {what}")
        return value
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _NUMBER.match(value.strip()):
            return float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
        ck.fail(where, f"must be a number, got {value!r}")
        return value
    if tp is str:
        if isinstance(value, str):
            return value
        ck.fail(where, f"must be a string, got {value!r}")
        return value
    if tp is dict or origin is dict:
        if isinstance(value, dict):
            return value
        ck.fail(where, f"must be a mapping, got {value!r}")
        return value
    if origin in (tuple, list) or tp in (tuple, list):
        if not isinstance(value, (list, tuple)):
            ck.fail(where, f"must be a list, got {value!r}")
            return value
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        item = args[0] if args else Any
        return [v if item is Any else _coerce(v, item, f"{where}[{i}]", ck) for i, v in enumerate(value)]
    return value


def _check_range(key: str, value: Any, where: str, ck: _Checker) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    if key in _POSITIVE and not value > 0:
        ck.fail(where, f"must be > 0, got {value}")
    elif key in _PROBABILITY and not 0 <= value <= 1:
        ck.fail(where, f"must be between 0 and 1, got {value}")
    elif value < 0:
        ck.fail(where, f"must be >= 0, got {value}")


def _check_choice(value: Any, choices: tuple[str, ...] | list[str], where: str, ck: _Checker) -> None:
    if isinstance(value, str) and value not in choices:
        close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        ck.fail(where, f"unknown value {value!r}{hint} (choose one of {', '.join(choices)})")


# ----------------------------------------------------------------------------------------------------------------
# blocks
# ----------------------------------------------------------------------------------------------------------------
def training_keys() -> dict[str, Any]:
    """Every key a ``training`` block may hold -> its type (from :class:`TrainConfig`'s annotations)."""
    from reidlib.engine.config import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    keys = {f.name: hints[f.name] for f in dataclasses.fields(TrainConfig) if f.name not in SET_BY_PIPELINE}
    keys["transforms"] = dict
    return keys


def _choices() -> dict[str, tuple[str, ...]]:
    from reidlib.engine.config import SELECT_ON
    from reidlib.engine.optim import OPTIMIZERS, SCHEDULERS
    from reidlib.evaluation.distances import METRICS

    return {"optimizer": OPTIMIZERS, "scheduler": SCHEDULERS, "select_on": SELECT_ON, "metric": METRICS}


def _check_training(block: Any, where: str, ck: _Checker, allowed: dict[str, Any] | None = None) -> dict:
    allowed = allowed or training_keys()
    if not ck.keys(where, block, set(allowed)):
        return {}
    choices = _choices()
    out = {}
    for key, value in block.items():
        if key not in allowed:
            continue
        if key == "transforms":
            out[key] = _check_transforms(value, f"{where}.transforms", allowed, ck)
            continue
        value = _coerce(value, allowed[key], f"{where}.{key}", ck)
        if key == "optimizer" and isinstance(value, str):
            value = value.lower()
        if key in choices:
            _check_choice(value, choices[key], f"{where}.{key}", ck)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                _check_range(key, v, f"{where}.{key}[{i}]", ck)
        else:
            _check_range(key, value, f"{where}.{key}", ck)
        out[key] = value
    return out


def _check_transforms(block: Any, where: str, allowed: dict[str, Any], ck: _Checker) -> dict:
    if block is None:
        return {}
    if not ck.keys(where, block, set(TRANSFORM_KEYS)):
        return {}
    out = {}
    for key, value in block.items():
        if key in TRANSFORM_KEYS:
            out[key] = _coerce(value, allowed.get(key, float), f"{where}.{key}", ck)
            _check_range(key, out[key], f"{where}.{key}", ck)
    return out


def _check_evaluation(block: Any, where: str, ck: _Checker) -> dict:
    from reidlib.evaluation.distances import METRICS
    from reidlib.evaluation.evaluator import RERANK_METHODS

    if not ck.keys(where, block, EVALUATION_KEYS):
        return {}
    types_ = {"flip": bool, "normalize": bool, "metric": str, "max_rank": int, "batch_size": int}
    out = dict(block)
    for key, tp in types_.items():
        if key in block:
            out[key] = _coerce(block[key], tp, f"{where}.{key}", ck)
            _check_range(key, out[key], f"{where}.{key}", ck)
    if "metric" in out:
        _check_choice(out["metric"], METRICS, f"{where}.metric", ck)
    rerank = block.get("rerank")
    if (isinstance(rerank, str) and rerank not in RERANK_METHODS) or \
            not isinstance(rerank, (bool, dict, str, type(None))):
        ck.fail(f"{where}.rerank", f"must be false, true, one of {', '.join(RERANK_METHODS)} or a mapping "
                                   f"{{method: ..., k1: ...}}, got {rerank!r}")
    return out


def _check_distance_study(block: Any, where: str, ck: _Checker) -> dict:
    from reidlib.evaluation.distances import METRICS

    if block is None:
        return {}
    if not ck.keys(where, block, DISTANCE_KEYS):
        return {}
    out = dict(block)
    if "metrics" in block:
        out["metrics"] = _coerce(block["metrics"], list[str], f"{where}.metrics", ck)
        for i, m in enumerate(out["metrics"] if isinstance(out["metrics"], list) else []):
            _check_choice(m, METRICS, f"{where}.metrics[{i}]", ck)
    if "normalize" in block:
        out["normalize"] = _coerce(block["normalize"], list[bool], f"{where}.normalize", ck)
    if "minkowski_p" in block:
        out["minkowski_p"] = _coerce(block["minkowski_p"], float, f"{where}.minkowski_p", ck)
        _check_range("minkowski_p", out["minkowski_p"], f"{where}.minkowski_p", ck)
    for key in ("rerank", "verification"):
        if key in block:
            out[key] = _coerce(block[key], bool, f"{where}.{key}", ck)
    if "max_impostors" in block:
        out["max_impostors"] = _coerce(block["max_impostors"], int, f"{where}.max_impostors", ck)
        _check_range("max_impostors", out["max_impostors"], f"{where}.max_impostors", ck)
    return out


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


def _check_dataset(key: str, spec: Any, ck: _Checker) -> dict:
    from reidlib.data import list_datasets
    from reidlib.data.registry import get_reader

    where = f"datasets.{key}"
    if not ck.keys(where, spec, DATASET_KEYS, required=("name",)):
        return {}
    spec = dict(spec)
    name = spec.get("name")
    if name not in list_datasets():
        _check_choice(str(name), list_datasets(), f"{where}.name", ck)
        return spec
    spec.setdefault("root", key)
    spec.setdefault("label", key)
    kwargs = spec.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        ck.fail(f"{where}.kwargs", f"must be a mapping of the reader's keyword arguments, got {kwargs!r}")
        kwargs = {}
    accepted = _signature_keys(get_reader(name))
    if accepted is None and name == "synthetic":  # its **kwargs are the generator's parameters
        from reidlib.data.synthetic import synthetic_params

        reader = set(inspect.signature(get_reader(name)).parameters) - {"kwargs"}
        accepted = (_signature_keys(synthetic_params) or set()) | reader
    if accepted is not None:
        ck.keys(f"{where}.kwargs", kwargs, accepted - {"root"})
    spec["kwargs"] = kwargs
    for field_ in ("root", "label"):
        spec[field_] = _coerce(spec[field_], str, f"{where}.{field_}", ck)
    return spec


def _check_image_size(value: Any, where: str, ck: _Checker) -> list[int]:
    if not (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        ck.fail(where, f"must be [height, width] in pixels, got {value!r}")
        return [256, 128]
    return [int(v) for v in value]


def _check_min_size(name: str, size: list[int], where: str, ck: _Checker) -> None:
    low = MIN_INPUT_SIZE.get(name)
    if low and (size[0] < low[0] or size[1] < low[1]):
        ck.fail(where, f"{size[0]}x{size[1]} is smaller than {name} can take: its pooling stages need at least "
                       f"{low[0]}x{low[1]} pixels (height x width); give an image_size of at least {list(low)}")


def _check_model(i: int, spec: Any, cfg: dict, allowed: dict, ck: _Checker) -> dict:
    from reidlib.models import list_models

    where = f"models[{i}]"
    if not ck.keys(where, spec, MODEL_KEYS, required=("name",)):
        return {}
    spec = dict(spec)
    if spec.get("name") not in list_models():
        _check_choice(str(spec.get("name")), list_models(), f"{where}.name", ck)
        return spec
    spec.setdefault("run", spec["name"])
    spec.setdefault("label", spec["run"])
    spec.setdefault("kwargs", {})
    spec.setdefault("pretrained", None)
    spec.setdefault("train_on", cfg.get("train_on", []))
    for field_ in ("run", "label"):
        spec[field_] = _coerce(spec[field_], str, f"{where}.{field_}", ck)
    if spec["label"].count("(") != spec["label"].count(")"):
        ck.fail(f"{where}.label", f"{spec['label']!r} looks cut (a label holding a comma must be quoted)")
    pretrained = spec["pretrained"]
    if pretrained is not None and not isinstance(pretrained, str):
        ck.fail(f"{where}.pretrained",
                f"must be null (random init), 'imagenet' or a checkpoint path, got {pretrained!r}")
    if not isinstance(spec["kwargs"], dict):
        ck.fail(f"{where}.kwargs", f"must be a mapping of the model's options, got {spec['kwargs']!r}")
    else:
        accepted = _model_kwarg_keys(spec["name"])
        if accepted is not None:
            ck.keys(f"{where}.kwargs", spec["kwargs"], accepted)
    own = "image_size" in spec
    size = spec.get("image_size", cfg.get("image_size", [256, 128]))
    spec["image_size"] = _check_image_size(size, f"{where}.image_size", ck)
    _check_min_size(spec["name"], spec["image_size"], f"{where}.image_size" if own else
                    f"image_size (used by models[{i}], {spec['name']})", ck)
    spec["train"] = _check_training(spec.get("train") or {}, f"{where}.train", ck, allowed)
    return spec


def _try_train_config(train: dict, where: str, ck: _Checker) -> None:
    """Build a :class:`TrainConfig` from a merged recipe, so cross-field rules (batch_size a multiple of
    num_instances, ...) fail now rather than inside a notebook."""
    from reidlib.engine.config import TrainConfig

    kwargs = {k: v for k, v in train.items() if k not in EXTRA_TRAINING_KEYS}
    kwargs.update(train.get("transforms") or {})
    kwargs["epochs"] = max(int(kwargs.get("epochs", 1) or 1), 1)
    try:
        TrainConfig.from_kwargs(**kwargs)
    except (TypeError, ValueError) as exc:
        ck.fail(where, str(exc))


def _check_positive_pairs(recipe: dict, where: str, ck: _Checker) -> None:
    """Batch-hard triplet needs two images of an identity in a batch: refuse ``num_instances < 2`` with it on."""
    k = recipe.get("num_instances", 4)
    loss_kwargs = recipe.get("loss_kwargs") if isinstance(recipe.get("loss_kwargs"), dict) else {}
    weight = loss_kwargs.get("triplet_weight", 1.0)
    if isinstance(k, int) and k < 2 and isinstance(weight, (int, float)) and weight > 0:
        ck.fail(where, f"is {k}: with one image per identity in a batch the triplet loss finds no positive pair, so "
                       "it is 0 and teaches nothing; set num_instances to 2 or more (4 is usual), or turn the "
                       "triplet off with loss_kwargs: {triplet_weight: 0.0}")


def check_profile(raw: Any, source: str = "profile") -> dict:
    """Check a profile as read from YAML and return it with types coerced and defaults filled in.

    Raises:
        ProfileError: listing every problem found (key, value, what it should be), not just the first.
    """
    from reidlib.runtime import PRECISIONS

    ck = _Checker(source)
    if not isinstance(raw, dict):
        raise ProfileError(f"{source} must hold a mapping of keys, got {type(raw).__name__}")
    ck.keys("profile", raw, TOP_KEYS, required=REQUIRED_KEYS)
    ck.raise_if_any()
    cfg = dict(raw)
    cfg["description"] = _coerce(cfg["description"], str, "description", ck)
    cfg["seed"] = _coerce(cfg.get("seed", 0), int, "seed", ck)
    _check_range("seed", cfg["seed"], "seed", ck)
    cfg["device"] = _coerce(cfg.get("device", "auto"), str, "device", ck)
    if isinstance(cfg["device"], str) and not re.match(r"^(auto|cpu|cuda(:\d+)?)$", cfg["device"]):
        ck.fail("device", f"must be auto, cpu, cuda or cuda:N, got {cfg['device']!r}")
    cfg["precision"] = _coerce(cfg.get("precision", "auto"), str, "precision", ck)
    _check_choice(cfg["precision"], PRECISIONS, "precision", ck)
    cfg["image_size"] = _check_image_size(cfg.get("image_size", [256, 128]), "image_size", ck)
    cfg["real_data"] = _coerce(cfg.get("real_data", False), bool, "real_data", ck)
    cfg["num_workers"] = _coerce(cfg.get("num_workers", 0), int, "num_workers", ck)
    _check_range("num_workers", cfg["num_workers"], "num_workers", ck)
    for key in ("data_root", "work_dir"):
        if cfg.get(key) is not None:
            cfg[key] = _coerce(cfg[key], str, key, ck)

    datasets = cfg["datasets"]
    if not isinstance(datasets, dict) or not datasets:
        ck.fail("datasets", "must map a short key to {name, root, label, kwargs}")
        datasets = {}
    cfg["datasets"] = {str(k): _check_dataset(str(k), spec, ck) for k, spec in datasets.items()}
    for role in ("train_on", "zero_shot"):
        keys = cfg.get(role) or []
        if not isinstance(keys, list):
            ck.fail(role, f"must be a list of dataset keys, got {keys!r}")
            keys = []
        for key in keys:
            if key not in cfg["datasets"]:
                ck.fail(role, f"names dataset {key!r}, which is not under 'datasets' ({sorted(cfg['datasets'])})")
        cfg[role] = list(keys)

    allowed = training_keys()
    cfg["training"] = _check_training(cfg["training"], "training", ck, allowed)
    models = cfg["models"]
    if not isinstance(models, list) or not models:
        ck.fail("models", "must be a list of {name, run, label, ...} entries")
        models = []
    cfg["models"] = [_check_model(i, spec, cfg, allowed, ck) for i, spec in enumerate(models)]
    runs_seen: set[str] = set()
    recipes: dict[str, tuple[dict, str]] = {}  # model run -> (merged recipe, where its num_instances comes from)
    for i, spec in enumerate(cfg["models"]):
        if "run" not in spec:
            continue
        if spec["run"] in runs_seen:
            ck.fail(f"models[{i}].run", f"two models share run name {spec['run']!r}; give each a unique 'run'")
        runs_seen.add(spec["run"])
        for key in spec.get("train_on") or []:
            if key not in cfg["datasets"]:
                ck.fail(f"models[{i}].train_on", f"names unknown dataset {key!r} ({sorted(cfg['datasets'])})")
        merged = {**cfg["training"], **spec["train"]}
        if isinstance(cfg["training"].get("transforms"), dict) and isinstance(spec["train"].get("transforms"), dict):
            merged["transforms"] = {**cfg["training"]["transforms"], **spec["train"]["transforms"]}
        if not any(e.startswith(("training", f"models[{i}]")) for e in ck.errors):  # else named once already
            _try_train_config(merged, f"models[{i}] (training merged with its train block)", ck)
        own_k = isinstance(spec["train"], dict) and "num_instances" in spec["train"]
        recipes[spec["run"]] = (merged, f"models[{i}].train.num_instances" if own_k else "training.num_instances")
        _check_positive_pairs(*recipes[spec["run"]], ck)

    ft = cfg.get("finetune")
    if ft is not None:
        ft_allowed = {**allowed, "pairs": list, "models": list}
        if ck.keys("finetune", ft, set(ft_allowed)):
            pairs = ft.get("pairs", [])
            for pair in pairs if isinstance(pairs, list) else [pairs]:
                if not (isinstance(pair, list) and len(pair) == 2 and all(k in cfg["datasets"] for k in pair)):
                    ck.fail("finetune.pairs", f"entries must be [source, target] dataset keys, got {pair!r}")
            for run in ft.get("models", []) or []:
                if run not in runs_seen:
                    ck.fail("finetune.models", f"names {run!r}, not a model run ({sorted(runs_seen)})")
            rest = {k: v for k, v in ft.items() if k not in ("pairs", "models")}
            cfg["finetune"] = {**_check_training(rest, "finetune", ck, allowed),
                               "pairs": ft.get("pairs", []), "models": ft.get("models", []) or []}
            for run in cfg["finetune"]["models"]:
                if run in recipes:
                    merged, where = recipes[run]
                    losses = {**(merged.get("loss_kwargs") or {}), **(cfg["finetune"].get("loss_kwargs") or {})}
                    _check_positive_pairs({**merged, **cfg["finetune"], "loss_kwargs": losses},
                                          "finetune.num_instances" if "num_instances" in rest else where, ck)
    cfg["evaluation"] = _check_evaluation(cfg["evaluation"], "evaluation", ck)
    if cfg.get("distance_study") is not None:
        cfg["distance_study"] = _check_distance_study(cfg["distance_study"], "distance_study", ck)
    report = cfg.get("report")
    if report is not None and ck.keys("report", report, REPORT_KEYS):
        if not isinstance(report.get("references", []), list):
            ck.fail("report.references", "must be a list of keys of params/_references.yaml")
        if not isinstance(report.get("notes", []), list):
            ck.fail("report.notes", "must be a list of strings")
        ranking = report.get("ranking", [])
        if not (isinstance(ranking, list) and all(isinstance(r, str) for r in ranking)):
            ck.fail("report.ranking", "must be a list of run ids (e.g. 10_train/cuhk03-bot_resnet50), one per model")
        for i, v in enumerate(report.get("variants", []) or []):
            if not (isinstance(v, dict) and isinstance(v.get("fixed"), str) and isinstance(v.get("variant"), str)):
                ck.fail(f"report.variants[{i}]", "must be a mapping {fixed: run id, variant: run id, change: text}")
    ck.raise_if_any()
    return cfg


def with_defaults(cfg: dict) -> dict:
    """A loaded profile with every default the stages apply written out (what ``pipeline show`` prints).

    Each model's ``train`` block (and ``training``) gains :class:`TrainConfig`'s defaults for the keys it leaves
    out, ``transforms`` included; ``evaluation`` and ``distance_study`` gain :data:`EVALUATION_DEFAULTS` and
    :data:`DISTANCE_DEFAULTS`. ``cache_dir`` stays out: the pipeline sets it to the profile's work folder.
    """
    import copy

    from reidlib.engine.config import TrainConfig

    defaults = {f.name: copy.deepcopy(f.default) if f.default is not dataclasses.MISSING else f.default_factory()
                for f in dataclasses.fields(TrainConfig)}
    defaults = {k: list(v) if isinstance(v, tuple) else v for k, v in defaults.items()}
    recipe = {k: defaults[k] for k in training_keys() if k in defaults and k not in TRANSFORM_KEYS + ("cache_dir",)}
    transforms = {k: defaults[k] for k in TRANSFORM_KEYS}

    def fill(block: dict) -> dict:
        return {**recipe, **block, "transforms": {**transforms, **(block.get("transforms") or {})}}

    out = copy.deepcopy(cfg)
    out["training"] = fill(out["training"])
    for model in out["models"]:
        model["train"] = fill(model["train"])
    out["evaluation"] = {**EVALUATION_DEFAULTS, **out["evaluation"]}
    if out.get("distance_study") is not None:
        out["distance_study"] = {**DISTANCE_DEFAULTS, **out["distance_study"]}
    return out
