"""OSNet x0.25 (Zhou et al., "Omni-Scale Feature Learning for Person Re-Identification", ICCV 2019).

Our own implementation whose parameter names and shapes are torchreid's (``torchreid.models.osnet``), so
torchreid state dicts (e.g. ``../shared/weights/osnet_x0_25_market1501.pth``) load with ``strict=True``:
``conv1`` (7×7/2 conv-BN-ReLU), ``maxpool``, ``conv2``/``conv3`` (2 OSBlocks + 1×1 conv and 2×2 avg-pool
transition), ``conv4`` (2 OSBlocks), ``conv5`` (1×1), global average pooling, ``fc`` = Linear(128, D) +
BatchNorm1d + ReLU, ``classifier`` = Linear(D, num_classes) with bias. Channels [16, 64, 96, 128].

Outputs as torchreid with ``loss="triplet"``: train -> (logits, v), eval -> v, where v is the (non-negative)
``fc`` output. D = ``feature_dim`` = 512 by default, 1000 in paper mode (the paper's "1000-d feature").
``bnneck=True`` adds BoT's neck on v (an option, not torchreid's model; state dicts then load non-strictly).

``pretrained="imagenet"`` loads torchreid's ImageNet-pretrained ``osnet_x0_25_imagenet.pth`` (looked up in
``$TORCH_HOME/checkpoints/``, where torchreid keeps it, then ``$TORCH_HOME/hub/checkpoints/``; never downloaded)
into the whole model; its 1000-class classifier (and, with ``feature_dim`` other than 512, its ``fc``) stays at
the fresh init.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .base import NeckFeat, ReIDModel, bot_init_classifier, check_choice, make_bn_neck
from .registry import register_model
from .weights import ImageNetWeights


class ConvBN(nn.Module):
    """k×k conv (no bias) + BatchNorm2d (+ ReLU): torchreid's ConvLayer / Conv1x1 / Conv1x1Linear."""

    def __init__(self, cin: int, cout: int, k: int = 1, stride: int = 1, relu: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True) if relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class LightConv3x3(nn.Module):
    """Pointwise 1×1 conv (linear) then depthwise 3×3 conv, BN, ReLU; keeps the spatial size."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, groups=cout, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv2(self.conv1(x))))


class ChannelGate(nn.Module):
    """Unified aggregation gate: x * sigmoid(fc2(relu(fc1(GAP(x))))), fc1 reduces channels by 16."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.global_avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=True)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc2(self.relu(self.fc1(self.global_avgpool(x)))))


class OSBlock(nn.Module):
    """Omni-scale residual block: four streams of 1-4 LightConv3x3 (receptive fields 3, 5, 7, 9), one shared gate.

    Stream names follow torchreid: ``conv2a`` is a single LightConv3x3, ``conv2b..d`` are Sequentials.
    """

    def __init__(self, cin: int, cout: int, bottleneck_reduction: int = 4) -> None:
        super().__init__()
        mid = cout // bottleneck_reduction
        self.conv1 = ConvBN(cin, mid)
        self.conv2a = LightConv3x3(mid, mid)
        for name, depth in (("conv2b", 2), ("conv2c", 3), ("conv2d", 4)):
            setattr(self, name, nn.Sequential(*[LightConv3x3(mid, mid) for _ in range(depth)]))
        self.gate = ChannelGate(mid)
        self.conv3 = ConvBN(mid, cout, relu=False)
        self.downsample = ConvBN(cin, cout, relu=False) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.conv1(x)
        streams = (self.conv2a, self.conv2b, self.conv2c, self.conv2d)
        x2 = sum(self.gate(stream(x1)) for stream in streams)
        identity = x if self.downsample is None else self.downsample(x)
        return torch.relu(self.conv3(x2) + identity)


def _stage(cin: int, cout: int, blocks: int, reduce: bool) -> nn.Sequential:
    """``blocks`` OSBlocks, then (if ``reduce``) a 1×1 ConvBN + AvgPool2d(2) transition (torchreid's index layout)."""
    layers: list[nn.Module] = [OSBlock(cin if i == 0 else cout, cout) for i in range(blocks)]
    if reduce:
        layers.append(nn.Sequential(ConvBN(cout, cout), nn.AvgPool2d(2, stride=2)))
    return nn.Sequential(*layers)


class OSNet(ReIDModel):
    """OSNet with torchreid's module names. feat_dim = embed_dim = ``feature_dim``."""

    head_module_names = ("fc", "bottleneck", "classifier")

    def __init__(
        self,
        num_classes: int,
        channels: tuple[int, int, int, int] = (16, 64, 96, 128),
        layers: tuple[int, int, int] = (2, 2, 2),
        feature_dim: int | None = None,
        bnneck: bool = False,
        neck_feat: NeckFeat = "after",
        paper_code: bool = False,
        metric_feat: NeckFeat | None = None,
    ) -> None:
        if feature_dim is None:
            feature_dim = 1000 if paper_code else 512
        if paper_code and bnneck:
            raise ValueError("paper_code=True reproduces torchreid's OSNet, which has no BNNeck (bnneck=False)")
        super().__init__(num_classes, feat_dim=feature_dim, paper_code=paper_code)
        self.bnneck = bnneck
        self.channels, self.layers = tuple(channels), tuple(layers)
        self.conv1 = ConvBN(3, channels[0], k=7, stride=2)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.conv2 = _stage(channels[0], channels[1], layers[0], reduce=True)
        self.conv3 = _stage(channels[1], channels[2], layers[1], reduce=True)
        self.conv4 = _stage(channels[2], channels[3], layers[2], reduce=False)
        self.conv5 = ConvBN(channels[3], channels[3])
        self.global_avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(channels[3], feature_dim), nn.BatchNorm1d(feature_dim), nn.ReLU(inplace=True))
        self._init_torchreid()
        if bnneck:
            self.bottleneck = make_bn_neck(feature_dim)
            self.neck_feat = check_choice("neck_feat", neck_feat, ("before", "after"))
        else:
            self.neck_feat = "before"
        self.metric_feat = self.choose_metric_feat(metric_feat, "before")
        self.classifier = self.make_classifier(num_classes)

    def _init_torchreid(self) -> None:
        """torchreid's init: conv kaiming-normal (fan_out, relu), BN weight 1 bias 0, Linear N(0, 0.01²) bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    def make_classifier(self, num_classes: int) -> nn.Linear:
        """torchreid's head: ``Linear(D, C)`` with bias, N(0, 0.01²); with ``bnneck``: BoT's (no bias, N(0, 0.001²))."""
        if self.bnneck:
            return bot_init_classifier(nn.Linear(self.feat_dim, num_classes, bias=False))
        head = nn.Linear(self.feat_dim, num_classes)
        nn.init.normal_(head.weight, std=0.01)
        nn.init.zeros_(head.bias)
        return head

    def imagenet_weights(self) -> ImageNetWeights:
        """torchreid's ``osnet_x0_25_imagenet.pth`` (x0.25 channels and layers only)."""
        if self.channels != (16, 64, 96, 128) or self.layers != (2, 2, 2):
            raise ValueError(
                f"pretrained=\"imagenet\" has torchreid's OSNet x0.25 weights only (channels (16, 64, 96, 128), layers "
                f"(2, 2, 2)); this OSNet has channels {self.channels}, layers {self.layers}: "
                "pass a local checkpoint path"
            )
        return ImageNetWeights.torchreid("osnet_x0_25", "osnet_x0_25")

    def featuremaps(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 128, H/16, W/16) for channels (16, 64, 96, 128)."""
        x = self.maxpool(self.conv1(x))
        return self.conv5(self.conv4(self.conv3(self.conv2(x))))

    def global_feature(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> v = fc(GAP(featuremaps)) of shape (B, feature_dim), non-negative."""
        return self.fc(self.global_avgpool(self.featuremaps(x)).flatten(1))


@register_model("osnet_x0_25", "OSNet x0.25, torchreid-compatible (512-d fc; 1000-d in paper mode)")
def osnet_x0_25(num_classes: int, paper_code: bool = False, **kwargs) -> OSNet:
    """OSNet x0.25. kwargs: ``feature_dim`` (512; 1000 in paper mode), ``bnneck`` (False), ``neck_feat`` ("after"),
    ``metric_feat`` ("before"; "after" puts the triplet/center losses on the post-BN vector, needs ``bnneck``)."""
    return OSNet(num_classes, paper_code=paper_code, **kwargs)
