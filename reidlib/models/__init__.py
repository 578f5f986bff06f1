"""Re-ID models: a registry, a builder and complexity helpers.

>>> from reidlib.models import build_model, list_models, count_parameters
>>> model = build_model("osnet_x0_25", num_classes=751)            # random init, never touches the network
>>> # build_model("bot_resnet50", 751, pretrained="imagenet")   # torchvision's file from $TORCH_HOME/hub/checkpoints
>>> count_parameters(build_model("osnet_x0_25", 751, paper_code=True))
1017543

Every model follows the contract in :mod:`reidlib.models.base`: ``feat_dim``, ``embed_dim``, ``classifier``,
``reset_classifier(num_classes)``, ``head_parameter_names(include_neck=True)``; train mode returns
``(logits, feat)``, eval mode the embedding.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch.nn as nn

from . import bot_resnet50 as _bot_resnet50  # noqa: F401  (registers the model)
from . import mnv3_siamese as _mnv3_siamese  # noqa: F401
from . import osnet as _osnet  # noqa: F401
from .base import ReIDModel
from .complexity import count_flops, count_parameters, inference_parameter_count
from .registry import get_entry, list_models, register_model
from .weights import (
    IMAGENET,
    CheckpointReadError,
    ImageNetWeights,
    ImageNetWeightsNotFound,
    LoadReport,
    check_pretrained,
    downloads_allowed,
    load_imagenet,
    load_pretrained,
    read_state_dict,
    resolve_imagenet,
)

log = logging.getLogger(__name__)

__all__ = [
    "IMAGENET", "CheckpointReadError", "ImageNetWeights", "ImageNetWeightsNotFound", "LoadReport", "ReIDModel",
    "build_model", "check_pretrained", "count_flops", "count_parameters", "describe", "downloads_allowed",
    "inference_parameter_count", "list_models", "load_imagenet", "load_pretrained", "read_state_dict",
    "register_model", "resolve_imagenet", "show_models",
]


def build_model(
    name: str,
    num_classes: int,
    pretrained: str | Path | None = None,
    paper_code: bool = False,
    **kwargs,
) -> nn.Module:
    """Build a registered model with random weights, then optionally load a local checkpoint.

    Args:
        name: one of :func:`list_models`; an unknown name raises ``ValueError`` listing the valid ones.
        num_classes: identities of the ID head (the paper code hard-codes 751 for every dataset).
        pretrained: ``None`` (random init, no network access), ``"imagenet"`` or a local checkpoint path
            (torchreid, torchvision, timm or reidlib format). ``"imagenet"``: torchvision's IMAGENET1K_V1 file
            for ``bot_resnet50`` / ``mnv3_siamese`` (from ``$TORCH_HOME/hub/checkpoints/``, downloaded there by
            torch.hub unless offline: ``REIDLIB_OFFLINE=1``, or ``HF_HUB_OFFLINE=1`` without
            ``REIDLIB_OFFLINE=0``), torchreid's ``osnet_x0_25_imagenet.pth`` for ``osnet_x0_25`` (from
            ``$TORCH_HOME/checkpoints/``; never downloaded); an absent file raises
            :class:`ImageNetWeightsNotFound` naming the path to create and where to get it. The
            :class:`LoadReport` (file, target module, missing / unexpected / shape-mismatched keys) is logged and
            stored as ``model.pretrained_report``. A classifier for another number of classes is left at its
            fresh init; a checkpoint with more than 10% of the other tensors shape-mismatched is refused
            (``ValueError``). A missing file raises ``FileNotFoundError``, an unreadable one
            :class:`CheckpointReadError`, a value of another type ``TypeError``.
        paper_code: reproduce the paper code's architecture choices (see each family's docstring).
        **kwargs: family options, e.g. ``last_stride``, ``neck``, ``neck_feat``, ``feature_dim``, ``bnneck``,
            ``backend``.
    """
    check_pretrained(pretrained)  # a wrong type fails before the (possibly slow) build
    model = get_entry(name).factory(num_classes, paper_code=paper_code, **kwargs)
    model.pretrained_report = None
    if pretrained is not None:
        model.pretrained_report = load_pretrained(model, pretrained)
    return model


def describe(num_classes: int = 751) -> str:
    """A markdown table of the registered models: summary, feat/embed dims and trainable parameter counts."""
    rows = ["| name | summary | feat_dim | embed_dim | params (paper_code) | params (default) |",
            "|---|---|---|---|---|---|"]
    for name in list_models():
        paper, clean = (build_model(name, num_classes, paper_code=p) for p in (True, False))
        rows.append(
            f"| {name} | {get_entry(name).summary} | {clean.feat_dim} | {clean.embed_dim} | "
            f"{count_parameters(paper):,} | {count_parameters(clean):,} |"
        )
    return "\n".join(rows)


def show_models(num_classes: int = 751) -> None:
    """Print :func:`describe`'s table."""
    print(describe(num_classes))
