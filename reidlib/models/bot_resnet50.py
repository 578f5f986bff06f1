"""ResNet50 with BoT's BNNeck (Luo et al., "Bag of Tricks and a Strong Baseline for Deep Person ReID", 2019).

Default (``paper_code=False``) is BoT-faithful: last stride 1 (a 16×8 map at 256×128), global average
pooling to 2048-d, BatchNorm1d neck with a frozen bias, classifier without bias initialised N(0, 0.001²);
triplet/center losses on the pre-BN feature, retrieval on the post-BN feature (``neck_feat="after"``).

``paper_code=True`` is the paper code's ``baseline`` (reproduction_notes §2): last stride 2, neck bias
trainable, classifier with bias and PyTorch's default init, triplet/center on the *post*-BN feature.
With 751 classes it has exactly 25,050,927 trainable parameters.

The backbone is torchvision's ``resnet50(weights=None)`` with ``fc`` replaced by ``Identity``; torchvision
and timm ResNet50 checkpoints share its key names and load into ``model.backbone``.
``pretrained="imagenet"`` loads torchvision's ``ResNet50_Weights.IMAGENET1K_V1`` (``resnet50-0676ba61.pth`` in
``$TORCH_HOME/hub/checkpoints/``) into ``model.backbone``; its 1000-class ``fc`` is not used.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torchvision

from .base import NeckFeat, ReIDModel, bot_init_classifier, check_choice, make_bn_neck
from .registry import register_model
from .weights import ImageNetWeights


class BoTResNet50(ReIDModel):
    """ResNet50 + optional BNNeck. Input (B, 3, H, W); feat_dim = embed_dim = 2048."""

    def __init__(
        self,
        num_classes: int,
        last_stride: int | None = None,
        neck: bool = True,
        neck_feat: NeckFeat = "after",
        paper_code: bool = False,
        zero_init_residual: bool = False,
        metric_feat: NeckFeat | None = None,
    ) -> None:
        super().__init__(num_classes, feat_dim=2048, paper_code=paper_code)
        if last_stride is None:
            last_stride = 2 if paper_code else 1
        if last_stride not in (1, 2):
            raise ValueError(f"last_stride must be 1 or 2, got {last_stride}")
        if paper_code and not neck:
            raise ValueError("paper_code=True reproduces the paper's baseline, which has a BN neck (neck=True)")
        self.last_stride = last_stride
        self.neck = neck
        self.neck_feat = check_choice("neck_feat", neck_feat, ("before", "after")) if neck else "before"

        # zero_init_residual: the last BN of every bottleneck starts at gamma = 0, so each residual block starts
        # as the identity (Goyal et al. 2017); it only matters from random init (loaded weights overwrite it).
        backbone = torchvision.models.resnet50(weights=None, zero_init_residual=zero_init_residual)
        backbone.fc = nn.Identity()
        if last_stride == 1:
            backbone.layer4[0].conv2.stride = (1, 1)
            backbone.layer4[0].downsample[0].stride = (1, 1)
        self.backbone = backbone
        self.gap = nn.AdaptiveAvgPool2d(1)

        if neck:
            self.bottleneck = make_bn_neck(2048, freeze_bias=not paper_code)
        # the paper code feeds triplet/center the post-BN vector; BoT the pre-BN one.
        self.metric_feat = self.choose_metric_feat(metric_feat, "after" if paper_code else "before")
        self.classifier = self.make_classifier(num_classes)

    def make_classifier(self, num_classes: int) -> nn.Linear:
        """Paper code: ``Linear(2048, C)`` with bias, default init. Otherwise BoT: no bias with a neck
        (BoT keeps a bias when ``neck=False``), weight ~ N(0, 0.001²)."""
        if self.paper_code:
            return nn.Linear(self.feat_dim, num_classes)
        return bot_init_classifier(nn.Linear(self.feat_dim, num_classes, bias=not self.neck))

    def imagenet_weights(self) -> ImageNetWeights:
        """torchvision's ``ResNet50_Weights.IMAGENET1K_V1`` for ``model.backbone`` (its ``fc`` is dropped)."""
        return ImageNetWeights.torchvision("bot_resnet50", torchvision.models.ResNet50_Weights.IMAGENET1K_V1)

    def global_feature(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 2048): ResNet50 stem + layer1..4, global average pooling."""
        b = self.backbone
        x = b.maxpool(b.relu(b.bn1(b.conv1(x))))
        x = b.layer4(b.layer3(b.layer2(b.layer1(x))))
        return self.gap(x).flatten(1)


@register_model("bot_resnet50", "ResNet50 + BNNeck (BoT); paper_code: the paper's baseline (stride 2, post-BN triplet)")
def bot_resnet50(num_classes: int, paper_code: bool = False, **kwargs) -> BoTResNet50:
    """ResNet50 + BNNeck. kwargs: ``last_stride`` (1; 2 in paper mode), ``neck`` (True), ``neck_feat`` ("after"),
    ``zero_init_residual`` (False; True starts every residual block as the identity, for training from scratch),
    ``metric_feat`` (the vector the triplet/center losses see: "before" the neck; "after" in paper mode)."""
    return BoTResNet50(num_classes, paper_code=paper_code, **kwargs)
