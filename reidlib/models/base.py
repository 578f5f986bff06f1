"""What every reidlib model shares: the BNNeck head, the train/eval output contract, BoT's init, head surgery.

Output contract (all models):
- ``model.train()``: ``forward(x)`` with ``x`` of shape (B, 3, H, W), B >= 2, returns
  ``(logits, feat)``: logits (B, num_classes) for the ID loss, feat (B, feat_dim) for the triplet/center losses.
- ``model.eval()``: ``forward(x)`` returns the retrieval embedding (B, embed_dim); any B >= 1.

A batch of one in train mode is rejected with a ``ValueError``: every model has a BatchNorm1d on the global
feature (the BNNeck, or OSNet's ``fc``), whose batch statistics are undefined for one sample. Use eval mode
(running statistics; gradients still flow) or a batch of at least two.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn

from reidlib.core import check_choice  # noqa: F401  (re-exported for the model families)

NeckFeat = Literal["before", "after"]


def bot_init_classifier(linear: nn.Linear) -> nn.Linear:
    """BoT's ``weights_init_classifier``: weight ~ N(0, 0.001²), bias (if any) = 0. Returns ``linear``."""
    nn.init.normal_(linear.weight, std=0.001)
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)
    return linear


def make_bn_neck(dim: int, freeze_bias: bool = True) -> nn.BatchNorm1d:
    """A BNNeck: BatchNorm1d(dim) with weight 1, bias 0; BoT freezes the bias (``requires_grad=False``)."""
    bn = nn.BatchNorm1d(dim)
    nn.init.ones_(bn.weight)
    nn.init.zeros_(bn.bias)
    bn.bias.requires_grad_(not freeze_bias)
    return bn


class ReIDModel(nn.Module):
    """Base class: subclasses build a backbone, implement :meth:`global_feature`, and set the head attributes.

    Head attributes set by subclasses:
    - ``bottleneck``: the BNNeck (``nn.BatchNorm1d``) or ``None`` for no neck.
    - ``dropout``: applied between the neck and the classifier in training, or ``None``.
    - ``classifier``: ``nn.Linear(feat_dim, num_classes)``, the ID head.
    - ``metric_feat``: ``"before"``/``"after"`` the neck: which vector train mode returns as ``feat``.
    - ``neck_feat``: ``"before"``/``"after"`` the neck: which vector eval mode returns.
    - ``logit_activation``: ``None``, or ``torch.sigmoid`` for the paper code's mnv3 bug.
    """

    #: submodules that are new (or dataset-specific) when fine-tuning; see :meth:`head_parameter_names`.
    head_module_names: tuple[str, ...] = ("bottleneck", "classifier")

    def __init__(self, num_classes: int, feat_dim: int, paper_code: bool = False) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.feat_dim = feat_dim
        self.embed_dim = feat_dim
        self.paper_code = paper_code
        self.bottleneck: nn.Module | None = None
        self.dropout: nn.Module | None = None
        self.metric_feat: NeckFeat = "before"
        self.neck_feat: NeckFeat = "after"
        self.logit_activation = None

    # -- to implement ------------------------------------------------------------------------------
    def global_feature(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone + global pooling: (B, 3, H, W) -> (B, feat_dim)."""
        raise NotImplementedError

    def make_classifier(self, num_classes: int) -> nn.Linear:
        """A freshly initialised ID head ``Linear(feat_dim, num_classes)`` in this family's style."""
        raise NotImplementedError

    # -- shared behaviour ----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Train: ``(logits (B, num_classes), feat (B, feat_dim))``; eval: embedding (B, embed_dim)."""
        if x.dim() != 4 or x.size(1) != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(x.shape)}")
        if self.training and x.size(0) < 2:
            raise ValueError(
                "a batch of 1 in train mode: the BatchNorm1d on the global feature needs >= 2 samples; "
                "use a batch of at least 2, or model.eval() (running statistics, gradients still flow)"
            )
        pooled = self.global_feature(x)
        necked = pooled if self.bottleneck is None else self.bottleneck(pooled)
        if not self.training:
            return necked if self.neck_feat == "after" else pooled
        logits = self.classifier(necked if self.dropout is None else self.dropout(necked))
        if self.logit_activation is not None:
            logits = self.logit_activation(logits)
        return logits, (necked if self.metric_feat == "after" else pooled)

    def reset_classifier(self, num_classes: int) -> nn.Linear:
        """Replace the ID head by a new ``Linear(feat_dim, num_classes)`` (family init, same device/dtype).

        Operates on this module itself (not on a DataParallel wrapper), so build the optimizer afterwards.
        Returns the new head.
        """
        old = self.classifier
        new = self.make_classifier(num_classes).to(device=old.weight.device, dtype=old.weight.dtype)
        self.classifier = new
        self.num_classes = num_classes
        return new

    def head_parameter_names(self, include_neck: bool = True) -> list[str]:
        """Names (as in ``named_parameters()``) of the classifier and, by default, the BNNeck parameters.

        A trainer can train only these for the first fine-tuning epochs (torchreid's ``open_layers``).
        Frozen parameters (BoT's neck bias) are included; filter on ``requires_grad`` if needed.
        """
        wanted = [n for n in self.head_module_names if include_neck or n == "classifier"]
        prefixes = tuple(f"{n}." for n in wanted if getattr(self, n, None) is not None)
        return [name for name, _ in self.named_parameters() if name.startswith(prefixes)]

    def choose_metric_feat(self, metric_feat: NeckFeat | None, default: NeckFeat) -> NeckFeat:
        """Which vector the triplet/center losses see: ``metric_feat``, or the family's ``default`` when None.

        ``"after"`` needs a BNNeck (``self.bottleneck`` set first). Post-BN vectors are centred per dimension, so a
        cosine triplet on them is not dominated by the common offset that non-negative pooled features share.
        """
        chosen = check_choice("metric_feat", default if metric_feat is None else metric_feat, ("before", "after"))
        if chosen == "after" and self.bottleneck is None:
            raise ValueError("metric_feat='after' needs a BNNeck to be after; build the model with its neck "
                             "(bot_resnet50: neck=True, osnet_x0_25: bnneck=True) or use metric_feat='before'")
        return chosen

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, feat_dim={self.feat_dim}, embed_dim={self.embed_dim}, "
            f"paper_code={self.paper_code}, metric_feat={self.metric_feat!r}, neck_feat={self.neck_feat!r}"
        )
