"""Load pretrained weights into a model: local checkpoints, or the ImageNet weights each model declares.

``pretrained`` accepts ``None`` (random init), ``"imagenet"`` or a path to a local checkpoint (torchreid,
torchvision, timm, reidlib; ``.pth``/``.pt``/``.bin``/``.safetensors``). A checkpoint is unwrapped
(``state_dict`` / ``model`` / ... wrappers, ``module.`` and ``_orig_mod.`` prefixes), then loaded into whichever
of the model itself or its ``backbone`` submodule shares more key names with it: a torchreid OSNet state dict or
a reidlib checkpoint goes to the model, an ImageNet torchvision/timm checkpoint to ``model.backbone``. Keys whose
shape differs (e.g. a classifier trained for another number of identities) are skipped and reported.

Shape rule: a checkpoint is refused (``ValueError`` naming the first mismatches) when more than
:data:`MAX_BODY_MISMATCH` (10 %) of the target's tensors *outside the head* have another shape, or when no tensor
outside the head loads at all. The head is every module named in the model's ``head_module_names`` plus any
top-level ``classifier`` / ``fc`` / ``head`` (an ImageNet classifier of a backbone); a head of another size is
normal (another number of identities or classes) and only reported.

``"imagenet"``: each model's ``imagenet_weights()`` names a file (:class:`ImageNetWeights`). torchvision files are
looked up in torchvision's cache, ``$TORCH_HOME/hub/checkpoints/<file>`` (``torch.hub.get_dir()``), and
downloaded there by ``torch.hub`` when downloads are allowed (:func:`downloads_allowed`); torchreid's OSNet file
in ``$TORCH_HOME/checkpoints/`` (where torchreid keeps it), then the hub folder, and never downloaded. A missing
file raises :class:`ImageNetWeightsNotFound` naming the exact path to create and where to get the file.
Every file is read with ``torch.load(weights_only=True)``: a pickle that would run code is refused.
"""
from __future__ import annotations

import logging
import os
import re
import urllib.error
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn

log = logging.getLogger(__name__)

_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "module")
_PREFIXES = ("module.", "_orig_mod.")

#: the value of ``pretrained`` that asks for the model's ImageNet weights
IMAGENET = "imagenet"
#: environment variable deciding whether ImageNet weights may be downloaded (see :func:`downloads_allowed`)
OFFLINE_ENV = "REIDLIB_OFFLINE"
#: largest fraction of non-head tensors that may be shape-mismatched before a checkpoint is refused
MAX_BODY_MISMATCH = 0.10
#: top-level module names treated as a head in any target (a backbone's ImageNet classifier included)
_GENERIC_HEADS = frozenset({"classifier", "fc", "head"})
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_ACCEPTS = 'None (random init), "imagenet" (the model\'s ImageNet weights) or a path to a local checkpoint file'


class CheckpointReadError(ValueError):
    """A checkpoint file exists but cannot be read as a state dict (empty, corrupt, or refused as unsafe)."""


class ImageNetWeightsNotFound(FileNotFoundError):
    """``pretrained="imagenet"``: the weights file is not on disk and could not (or may not) be downloaded."""


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did. ``target`` is ``""`` (the model) or ``"backbone"``; ``origin`` says what
    the file is when known (e.g. ``"torchvision ResNet50_Weights.IMAGENET1K_V1"``)."""

    path: str
    target: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)  # "key: checkpoint shape -> model shape"
    origin: str = ""

    @property
    def exact(self) -> bool:
        """True when every key matched in name and shape (what ``strict=True`` requires)."""
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self, limit: int = 8) -> str:
        """One line of counts, then up to ``limit`` names of each kind of problem."""
        where = f"model.{self.target}" if self.target else "model"
        source = f"{self.path} ({self.origin})" if self.origin else self.path
        text = (
            f"{source} -> {where}: {len(self.loaded)} tensors loaded, {len(self.missing)} missing, "
            f"{len(self.unexpected)} unexpected, {len(self.mismatched)} shape-mismatched"
        )
        problems = (("missing", self.missing), ("unexpected", self.unexpected), ("mismatched", self.mismatched))
        for label, keys in problems:
            if keys:
                more = f" ... (+{len(keys) - limit})" if len(keys) > limit else ""
                text += f"; {label}: {keys[:limit]}{more}"
        return text


# ---- the pretrained argument --------------------------------------------------------------------------------
def check_pretrained(pretrained: Any) -> None:
    """Raise ``TypeError`` unless ``pretrained`` is ``None``, ``"imagenet"``, a ``str`` or an ``os.PathLike``."""
    if isinstance(pretrained, str) and not pretrained.strip():
        raise TypeError(f"pretrained is an empty string; it accepts {_ACCEPTS}")
    if pretrained is None or isinstance(pretrained, (str, os.PathLike)):
        return
    hint = ""
    if isinstance(pretrained, bool):
        hint = ' (for ImageNet weights write pretrained="imagenet"; for none, pretrained=None)'
    raise TypeError(
        f"pretrained={pretrained!r} ({type(pretrained).__name__}) is not understood; it accepts {_ACCEPTS}{hint}"
    )


# ---- reading files ------------------------------------------------------------------------------------------
def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a flat ``{name: tensor}`` dict (wrappers and DataParallel prefixes removed).

    Raises ``FileNotFoundError`` for a missing file, :class:`CheckpointReadError` (a ``ValueError``) naming the
    file when it is empty, not a PyTorch/safetensors file, truncated, or holds Python objects that
    ``weights_only=True`` refuses, and ``ValueError`` when it holds no state dict.
    """
    check_pretrained(path)
    path = Path(path)
    if path.is_dir():
        raise FileNotFoundError(f"pretrained weights: {path} is a folder; pass the checkpoint file inside it")
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights not found: {path} (pass a local checkpoint path, pretrained=\"imagenet\" for the "
            "model's ImageNet weights, or pretrained=None for random init; local paths are never downloaded)"
        )
    size = path.stat().st_size
    if size == 0:
        raise CheckpointReadError(
            f"{path}: the file is empty (0 bytes), probably an interrupted download or copy; delete it and "
            "download or copy it again"
        )
    obj = _load_file(path, size)
    while isinstance(obj, Mapping) and not _is_tensor_dict(obj):
        inner = next((obj[k] for k in _WRAPPER_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
        if inner is None:
            raise ValueError(f"{path}: no state dict found (top-level keys: {sorted(map(str, obj))[:10]})")
        obj = inner
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: expected a state dict, got {type(obj).__name__}")
    out: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        for prefix in _PREFIXES:
            while key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def _load_file(path: Path, size: int) -> object:
    """``torch.load(weights_only=True)`` or safetensors' ``load_file``, with errors that name ``path``."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as err:  # safetensors raises its own SafetensorError (and others) for a bad header
            raise CheckpointReadError(
                f"{path}: not a readable safetensors file ({type(err).__name__}: {err}); is it truncated, or a "
                "PyTorch pickle with the wrong extension (rename it to .pth)?"
            ) from err
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        text = str(err)
        detail = _first_line(text, ("Trying to load", "Unsupported", "GLOBAL", "global")) or _first_line(text, ("",))
        if "weights_only" in text and any(w in text for w in ("GLOBAL", "global", "Unsupported class")):
            raise CheckpointReadError(
                f"{path}: refused: the file holds pickled Python objects other than tensors and plain containers, "
                "which could run code when loaded (torch.load(weights_only=True) stopped it). If you trust the file, "
                "load it yourself and re-save only its weights (torch.save(state_dict, 'clean.pth')), then pass that. "
                f"Detail: {detail}"
            ) from err
        raise CheckpointReadError(
            f"{path}: not a readable PyTorch checkpoint ({size:,} bytes; "
            f"{type(err).__name__}: {detail or 'no detail'}). "
            "torch.load reads files written by torch.save; a truncated download, an HTML error page saved under a "
            ".pth name, random data or a plain pickle give this: download or copy the file again"
        ) from err


def _first_line(text: str, needles: tuple[str, ...]) -> str:
    """The first non-empty line of ``text`` containing one of ``needles`` (``""`` when none)."""
    return next((ln.strip() for ln in text.splitlines() if ln.strip() and any(n in ln for n in needles)), "")


def _is_tensor_dict(obj: Mapping) -> bool:
    return len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


# ---- loading ------------------------------------------------------------------------------------------------
def _head_names(model: nn.Module) -> frozenset[str]:
    """Top-level module names whose tensors may differ in shape without refusing a checkpoint."""
    return _GENERIC_HEADS | frozenset(getattr(model, "head_module_names", ()))


def load_pretrained(model: nn.Module, path: str | Path, strict: bool = False) -> LoadReport:
    """Load the checkpoint at ``path`` (or the ImageNet weights for ``path="imagenet"``) into ``model`` or
    ``model.backbone``, whichever shares more key names with it.

    Tensors with a matching name and shape are copied; the rest is reported in the returned
    :class:`LoadReport` and logged. ``strict=True`` raises ``RuntimeError`` unless the match is exact. Raises
    ``ValueError`` when too few key names match, or when more than :data:`MAX_BODY_MISMATCH` of the tensors
    outside the head have another shape (or none of them loads): see the module docstring.
    """
    check_pretrained(path)
    if path is None:
        raise TypeError('load_pretrained needs weights: "imagenet" or a path to a local checkpoint file')
    if isinstance(path, str) and path == IMAGENET:
        return load_imagenet(model, strict=strict)
    return _load_file_into(model, path, strict)


def _load_file_into(model: nn.Module, path: str | Path, strict: bool, origin: str = "") -> LoadReport:
    """:func:`load_pretrained` for a file; ``origin`` labels the report (and its log line)."""
    state = read_state_dict(path)
    targets: dict[str, nn.Module] = {"": model}
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, nn.Module):
        targets["backbone"] = backbone
    owns = {name: mod.state_dict() for name, mod in targets.items()}
    overlap = {name: len(state.keys() & own.keys()) for name, own in owns.items()}
    target = max(overlap, key=lambda name: (overlap[name], name == ""))
    module, own = targets[target], owns[target]
    if overlap[target] < 0.5 * min(len(state), len(own)):
        raise ValueError(
            f"{path}: too few key names match {type(model).__name__} or its backbone (at best {overlap[target]} of "
            f"{len(state)}; checkpoint keys start with {sorted(state)[:3]}); "
            "is it a checkpoint for another architecture?"
        )
    report = LoadReport(str(path), target, origin=origin)
    usable: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key not in own:
            report.unexpected.append(key)
        elif own[key].shape != value.shape:
            report.mismatched.append(f"{key}: {tuple(value.shape)} -> {tuple(own[key].shape)}")
        else:
            usable[key] = value
    report.missing = [k for k in own if k not in usable and k not in state]
    if strict and not report.exact:
        raise RuntimeError(f"strict load failed: {report.summary()}")
    heads = _head_names(model)
    in_body = lambda key: key.split(".", 1)[0] not in heads  # noqa: E731
    body = [k for k in own if in_body(k)]
    body_mismatched = [m for m in report.mismatched if in_body(m.split(":", 1)[0])]
    body_loaded = [k for k in usable if in_body(k)]
    where = f"model.{target}" if target else "model"
    if body and (not body_loaded or len(body_mismatched) > MAX_BODY_MISMATCH * len(body)):
        problem = (
            f"no tensor of {where} outside its head ({sorted(heads)}) could be loaded"
            if not body_loaded
            else f"{len(body_mismatched)} of the {len(body)} tensors of {where} outside its head have another shape "
            f"in the checkpoint (more than the {MAX_BODY_MISMATCH:.0%} allowed)"
        )
        raise ValueError(
            f"{path}: {problem}; first mismatches: {body_mismatched[:5]}. The loaded model would be mostly random: "
            "the checkpoint is for another variant of the architecture (another width such as osnet_x1_0, or other "
            f"options such as feature_dim). Pass a checkpoint of {type(model).__name__} with the same options, or "
            "pretrained=None for random init."
        )
    module.load_state_dict(usable, strict=False)
    report.loaded = sorted(usable)
    body_issue = body_mismatched or any(in_body(k) for k in report.missing + report.unexpected)
    (log.warning if body_issue else log.info)("pretrained weights: %s", report.summary())
    return report


# ---- ImageNet weights -------------------------------------------------------------------------------------------
def torch_home() -> Path:
    """``$TORCH_HOME``, else ``$XDG_CACHE_HOME/torch``, else ``~/.cache/torch`` (torch's and torchreid's rule)."""
    default = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.join("~", ".cache")), "torch")
    return Path(os.path.expanduser(os.environ.get("TORCH_HOME", default)))


def hub_checkpoints_dir() -> Path:
    """torchvision's weight cache: ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _env_flag(name: str) -> bool | None:
    """``True``/``False`` for a set boolean-looking variable, ``None`` when unset or empty."""
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return None
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"environment variable {name}={os.environ[name]!r}: expected 1/0 (or true/false, yes/no, on/off)")


def downloads_allowed() -> tuple[bool, str]:
    """Whether ImageNet weights may be downloaded, and why not.

    Rule: ``REIDLIB_OFFLINE`` decides when it is set (``1`` offline, ``0`` downloads allowed even under
    ``HF_HUB_OFFLINE=1``); otherwise ``HF_HUB_OFFLINE=1`` (how this project runs) means offline; otherwise
    downloads are allowed. A download that fails (no network) is reported like an offline miss.
    """
    own = _env_flag(OFFLINE_ENV)
    if own is not None:
        return (not own, f"{OFFLINE_ENV}=1" if own else "")
    if _env_flag("HF_HUB_OFFLINE"):
        return False, f"HF_HUB_OFFLINE=1 (set {OFFLINE_ENV}=0 to allow this download)"
    return True, ""


@dataclass(frozen=True)
class ImageNetWeights:
    """Where a model's ImageNet weights live and how to get them (returned by ``model.imagenet_weights()``).

    Attributes:
        model: the registered model name, for messages.
        file_name: the file's name, as the upstream library caches it.
        origin: what the file is, e.g. ``"torchvision ResNet50_Weights.IMAGENET1K_V1"``.
        url: torchvision's download URL, or ``None`` where there is no download we may rely on.
        how_to_get: a sentence on obtaining the file by hand.
        torchreid_cache: look in ``$TORCH_HOME/checkpoints`` first (torchreid's cache folder).
    """

    model: str
    file_name: str
    origin: str
    url: str | None
    how_to_get: str
    torchreid_cache: bool = False

    @classmethod
    def torchvision(cls, model: str, weights: Any) -> ImageNetWeights:
        """From a torchvision ``Weights`` enum member, e.g. ``ResNet50_Weights.IMAGENET1K_V1``."""
        url = weights.url
        file_name = url.rsplit("/", 1)[-1]
        origin = f"torchvision {type(weights).__name__}.{weights.name}"
        how = (
            f"download {url} (e.g. curl -L -o {{path}} {url}), or on a machine with internet run torchvision "
            f"once ({type(weights).__name__}.{weights.name}) and copy {file_name} from its "
            "$TORCH_HOME/hub/checkpoints/"
        )
        return cls(model, file_name, origin, url, how)

    @classmethod
    def torchreid(cls, model: str, arch: str) -> ImageNetWeights:
        """torchreid's ImageNet-pretrained ``<arch>_imagenet.pth`` (e.g. ``osnet_x0_25``); never downloaded here."""
        file_name = f"{arch}_imagenet.pth"
        how = (
            f"get {file_name} from torchreid's model zoo (https://kaiyangzhou.github.io/deep-person-reid/MODEL_ZOO, "
            f"ImageNet-pretrained {arch}), or on a machine with internet run torchreid once "
            f"(torchreid.models.build_model('{arch}', num_classes=1000, pretrained=True) saves it as "
            f"$TORCH_HOME/checkpoints/{file_name}) and copy it"
        )
        return cls(model, file_name, f"torchreid {arch} ImageNet", None, how, torchreid_cache=True)

    def candidates(self) -> list[Path]:
        """Where the file is looked for, in order."""
        hub = hub_checkpoints_dir() / self.file_name
        return [torch_home() / "checkpoints" / self.file_name, hub] if self.torchreid_cache else [hub]

    def find(self) -> Path | None:
        """The first existing candidate, or ``None``."""
        return next((p for p in self.candidates() if p.is_file()), None)


def _not_found(spec: ImageNetWeights, why: str) -> ImageNetWeightsNotFound:
    paths = spec.candidates()
    also = f" (also looked in {', '.join(map(str, paths[1:]))})" if len(paths) > 1 else ""
    return ImageNetWeightsNotFound(
        f"pretrained=\"imagenet\" for {spec.model}: {spec.origin} weights not found; {why}. Place the file at "
        f"{paths[0]}{also}: {spec.how_to_get.replace('{path}', str(paths[0]))}. "
        "Or pass pretrained=<path to a local copy>."
    )


def resolve_imagenet(spec: ImageNetWeights, download: bool | None = None) -> Path:
    """The local path of ``spec``'s file, downloading a torchvision file first when allowed.

    Args:
        spec: from ``model.imagenet_weights()``.
        download: ``None`` follows :func:`downloads_allowed`; ``False`` never downloads; ``True`` tries to.

    Raises:
        ImageNetWeightsNotFound: absent and not downloadable (offline, no URL, or the download failed); the
        message names the exact file to create and how to obtain it.
    """
    found = spec.find()
    if found is not None:
        return found
    allowed, reason = downloads_allowed() if download is None else (download, "download=False")
    if spec.url is None:
        raise _not_found(spec, "there is no download we can rely on for this file, so it is never downloaded")
    if not allowed:
        raise _not_found(spec, f"downloads are off: {reason}")
    dst = spec.candidates()[0]
    dst.parent.mkdir(parents=True, exist_ok=True)
    match = re.search(r"-([a-f0-9]+)\.", spec.file_name)  # torchvision names end in -<sha256 prefix>.pth
    prefix = match.group(1) if match else None
    log.info("downloading %s (%s) to %s", spec.url, spec.origin, dst)
    try:
        torch.hub.download_url_to_file(spec.url, str(dst), hash_prefix=prefix, progress=True)
    except (urllib.error.URLError, OSError, RuntimeError) as err:  # no network / disk / hash mismatch
        raise _not_found(spec, f"the download from {spec.url} failed ({type(err).__name__}: {err})") from err
    return dst


def load_imagenet(model: nn.Module, strict: bool = False) -> LoadReport:
    """Load the ImageNet weights ``model.imagenet_weights()`` names; see :func:`resolve_imagenet`.

    The returned :class:`LoadReport` names the file, its origin and the target (``"backbone"`` for torchvision
    backbones, ``""`` for OSNet, whose torchreid file covers the whole model but its 1000-class classifier).
    """
    describe = getattr(model, "imagenet_weights", None)
    if describe is None:
        raise ValueError(f"{type(model).__name__} declares no ImageNet weights (no imagenet_weights()); "
                         "pass a local checkpoint path or pretrained=None")
    spec: ImageNetWeights = describe()
    return _load_file_into(model, resolve_imagenet(spec), strict, origin=spec.origin)
