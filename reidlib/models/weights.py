"""Load local checkpoints (torchreid, torchvision, timm, reidlib; .pth/.pt/.bin/.safetensors) into a model.

Nothing here touches the network. A checkpoint is unwrapped (``state_dict`` / ``model`` / ... wrappers,
``module.`` and ``_orig_mod.`` prefixes), then loaded into whichever of the model itself or its
``backbone`` submodule shares more key names with it: a torchreid OSNet state dict or a reidlib checkpoint
goes to the model, an ImageNet torchvision/timm checkpoint to ``model.backbone``. Keys whose shape
differs (e.g. a classifier trained for another number of identities) are skipped and reported.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import torch
import torch.nn as nn

log = logging.getLogger(__name__)

_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "module")
_PREFIXES = ("module.", "_orig_mod.")


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did. ``target`` is ``""`` (the model) or ``"backbone"``."""

    path: str
    target: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)  # "key: checkpoint shape -> model shape"

    @property
    def exact(self) -> bool:
        """True when every key matched in name and shape (what ``strict=True`` requires)."""
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self, limit: int = 8) -> str:
        """One line of counts, then up to ``limit`` names of each kind of problem."""
        where = f"model.{self.target}" if self.target else "model"
        text = (
            f"{self.path} -> {where}: {len(self.loaded)} tensors loaded, {len(self.missing)} missing, "
            f"{len(self.unexpected)} unexpected, {len(self.mismatched)} shape-mismatched"
        )
        for label, keys in (("missing", self.missing), ("unexpected", self.unexpected), ("mismatched", self.mismatched)):
            if keys:
                more = f" ... (+{len(keys) - limit})" if len(keys) > limit else ""
                text += f"; {label}: {keys[:limit]}{more}"
        return text


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a flat ``{name: tensor}`` dict (wrappers and DataParallel prefixes removed)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights not found: {path} (pass a local checkpoint path, or pretrained=None for random init; "
            "this project never downloads weights)"
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        obj: object = load_file(str(path), device="cpu")
    else:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    while isinstance(obj, Mapping) and not _is_tensor_dict(obj):
        inner = next((obj[k] for k in _WRAPPER_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
        if inner is None:
            raise ValueError(f"{path}: no state dict found (top-level keys: {sorted(obj)[:10]})")
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


def _is_tensor_dict(obj: Mapping) -> bool:
    return len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def load_pretrained(model: nn.Module, path: str | Path, strict: bool = False) -> LoadReport:
    """Load the checkpoint at ``path`` into ``model`` (or ``model.backbone``, whichever matches better).

    Tensors with a matching name and shape are copied; the rest is reported in the returned
    :class:`LoadReport` and logged. ``strict=True`` raises ``RuntimeError`` unless the match is exact.
    """
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
    report = LoadReport(str(path), target)
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
    module.load_state_dict(usable, strict=False)
    report.loaded = sorted(usable)
    (log.info if report.exact else log.warning)("pretrained weights: %s", report.summary())
    return report
