"""The paper's lightweight "siamese" model: one MobileNetV3-Large branch, a BN neck, dropout, an ID head.

There is no pairwise head: "siamese" means a shared embedding net trained with the triplet loss.
Embedding = global average pool of the last feature map (the 1×1 conv 160→960 + BN + Hardswish), 960-d.
Train returns (logits, pre-BN 960-d embedding, or the post-BN one with ``metric_feat="after"``); eval returns the
post-BN embedding (``neck_feat="after"``).

``paper_code=False`` (default): BoT-style neck (bias frozen), Dropout(0.5), ``Linear(960, C)`` without bias,
N(0, 0.001²) init; the backbone's ImageNet head (960→1280→1000) is removed.
``paper_code=True`` reproduces ``SiameseTwin`` (reproduction_notes §2): torchvision ``mobilenet_v3_large``
*including* its unused classifier (2,511,080 parameters, counted by the paper), BatchNorm1d with trainable
bias, Dropout(0.5), ``Linear(960, C)`` with bias and default init, and **the bug**: train-mode logits pass
through ``sigmoid`` before the label-smoothed CE, so they lie in (0, 1) and the ID loss carries almost no
signal. 751 classes give exactly 6,206,663 trainable parameters.

``pretrained="imagenet"`` loads torchvision's ``MobileNet_V3_Large_Weights.IMAGENET1K_V1``
(``mobilenet_v3_large-8738ca79.pth`` in ``$TORCH_HOME/hub/checkpoints/``) into ``model.backbone`` (the torchvision
module, so the key names match; with ``paper_code=True`` its ImageNet head too). The timm backend's key names
differ: give it a local timm checkpoint path instead.

``backend="torchvision"`` (default) or ``"timm"`` (``mobilenetv3_large_100``, whose ``conv_head`` 960→1280
is dropped so the embedding is the same 960-d pooled map); both have 2,971,952 backbone parameters.

``bn_momentum``: torchvision builds MobileNetV3 with BatchNorm momentum 0.01 (made for ImageNet's ~10^6 steps).
After a few hundred steps from scratch the running statistics are then still mostly their initial values
(0.99^110 ≈ 0.33 of the init left after 110 steps), and in eval mode every image falls to nearly the same
embedding (measured: a 30-epoch synthetic run with train accuracy 19% gave test rank-1 0.0, gallery features
with a spread of 3e-6). The default here is PyTorch's usual 0.1; ``paper_code=True`` keeps torchvision's 0.01.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torchvision

from .base import NeckFeat, ReIDModel, bot_init_classifier, check_choice, make_bn_neck
from .registry import register_model
from .weights import ImageNetWeights


def _timm_backbone() -> nn.Module:
    """timm ``mobilenetv3_large_100`` without weights and without its 1280-d head (keys stay timm's)."""
    import timm

    net = timm.create_model("mobilenetv3_large_100", pretrained=False)
    for name in ("conv_head", "norm_head", "classifier"):  # the parts of forward_head that hold parameters
        setattr(net, name, nn.Identity())
    return net


class MobileNetV3Siamese(ReIDModel):
    """MobileNetV3-Large embedding net. feat_dim = embed_dim = 960."""

    def __init__(
        self,
        num_classes: int,
        backend: str = "torchvision",
        dropout: float = 0.5,
        neck_feat: NeckFeat = "after",
        paper_code: bool = False,
        bn_momentum: float | None = None,
        metric_feat: NeckFeat | None = None,
    ) -> None:
        super().__init__(num_classes, feat_dim=960, paper_code=paper_code)
        self.backend = check_choice("backend", backend, ("torchvision", "timm"))
        if paper_code and backend != "torchvision":
            raise ValueError("paper_code=True uses torchvision's mobilenet_v3_large (backend='torchvision')")
        if backend == "torchvision":
            self.backbone = torchvision.models.mobilenet_v3_large(weights=None)
            if not paper_code:  # the paper keeps (and counts) this dead ImageNet head
                self.backbone.classifier = nn.Identity()
        else:
            self.backbone = _timm_backbone()
        momentum = bn_momentum if bn_momentum is not None else (0.01 if paper_code else 0.1)
        if not 0.0 < momentum <= 1.0:
            raise ValueError(f"bn_momentum must be in (0, 1], got {momentum}")
        for module in self.backbone.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = momentum
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.bottleneck = make_bn_neck(960, freeze_bias=not paper_code)
        self.dropout = nn.Dropout(dropout)
        self.neck_feat = check_choice("neck_feat", neck_feat, ("before", "after"))
        self.metric_feat = self.choose_metric_feat(metric_feat, "before")
        if paper_code:
            self.logit_activation = torch.sigmoid
        self.classifier = self.make_classifier(num_classes)

    def make_classifier(self, num_classes: int) -> nn.Linear:
        """Paper code: ``Linear(960, C)`` with bias, default init; otherwise no bias, N(0, 0.001²)."""
        if self.paper_code:
            return nn.Linear(self.feat_dim, num_classes)
        return bot_init_classifier(nn.Linear(self.feat_dim, num_classes, bias=False))

    def imagenet_weights(self) -> ImageNetWeights:
        """torchvision's ``MobileNet_V3_Large_Weights.IMAGENET1K_V1`` for ``model.backbone`` (torchvision backend)."""
        if self.backend != "torchvision":
            raise ValueError(
                'pretrained="imagenet" loads torchvision\'s MobileNet_V3_Large_Weights.IMAGENET1K_V1, whose key names '
                f"fit backend='torchvision' (the default), not backend={self.backend!r}; for the timm backend pass "
                "pretrained=<path to a local timm mobilenetv3_large_100 checkpoint (.pth or .safetensors)>"
            )
        return ImageNetWeights.torchvision("mnv3_siamese", torchvision.models.MobileNet_V3_Large_Weights.IMAGENET1K_V1)

    def global_feature(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 960): last 960-channel feature map, global average pooling."""
        if self.backend == "torchvision":
            fmap = self.backbone.features(x)
        else:
            fmap = self.backbone.forward_features(x)
        return self.gap(fmap).flatten(1)


@register_model("mnv3_siamese", "MobileNetV3-Large 960-d embedding + BN neck + dropout; paper_code: SiameseTwin")
def mnv3_siamese(num_classes: int, paper_code: bool = False, **kwargs) -> MobileNetV3Siamese:
    """MobileNetV3-Large embedding net. kwargs: ``backend`` ("torchvision"|"timm"), ``dropout`` (0.5), ``neck_feat``,
    ``bn_momentum`` (backbone BatchNorm momentum; 0.1, or torchvision's 0.01 with ``paper_code``),
    ``metric_feat`` ("before": the triplet/center losses on the pre-BN vector; "after": on the post-BN one)."""
    return MobileNetV3Siamese(num_classes, paper_code=paper_code, **kwargs)
