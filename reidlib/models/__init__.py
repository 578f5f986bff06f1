"""Re-ID models: a registry, a builder and complexity helpers.

>>> from reidlib.models import build_model, list_models, count_parameters
>>> model = build_model("osnet_x0_25", num_classes=751)            # random init, never touches the network
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
from .weights import LoadReport, load_pretrained, read_state_dict

log = logging.getLogger(__name__)

__all__ = [
    "LoadReport", "ReIDModel", "build_model", "count_flops", "count_parameters", "describe",
    "inference_parameter_count", "list_models", "load_pretrained", "read_state_dict", "register_model", "show_models",
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
        pretrained: ``None`` (random init, no network access) or a local checkpoint path: torchreid,
            torchvision, timm or reidlib format. The :class:`LoadReport` (missing / unexpected /
            shape-mismatched keys) is logged and stored as ``model.pretrained_report``. A classifier for
            another number of classes is left at its fresh init. A missing file raises ``FileNotFoundError``.
        paper_code: reproduce the paper code's architecture choices (see each family's docstring).
        **kwargs: family options, e.g. ``last_stride``, ``neck``, ``neck_feat``, ``feature_dim``, ``bnneck``, ``backend``.
    """
    model = get_entry(name).factory(num_classes, paper_code=paper_code, **kwargs)
    model.pretrained_report = None
    if pretrained is not None:
        model.pretrained_report = load_pretrained(model, pretrained)
    return model


def describe(num_classes: int = 751) -> str:
    """A markdown table of the registered models: summary, feat/embed dims and trainable parameter counts."""
    rows = ["| name | summary | feat_dim | embed_dim | params (paper_code) | params (default) |", "|---|---|---|---|---|---|"]
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
