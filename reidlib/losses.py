"""The BoT loss stack: label-smoothed cross-entropy, batch-hard triplet, center loss, and their sum.

Every loss is an ``nn.Module`` called as ``loss(features_or_logits, targets) -> scalar tensor``; inputs may be
bf16/fp16 (autocast) and are promoted to fp32; nothing assumes a device (``criterion.to(device)`` moves the
centres). :func:`make_loss` combines them into :class:`ReIDLoss`.

Training step with a trained center loss (BoT, engine/trainer.py)::

    criterion = make_loss(num_classes=C, feat_dim=model.feat_dim).to(device)
    opt_center = make_center_optimizer(criterion)         # SGD(lr=0.5) over the centres, or None
    ...
    optimizer.zero_grad(); opt_center and opt_center.zero_grad()
    logits, feat = model(images)                           # train mode
    total, parts = criterion(logits, feat, targets)
    total.backward()
    criterion.rescale_center_grad()                        # centre grads *= 1 / center_weight
    optimizer.step(); opt_center and opt_center.step()

The rescale makes the centre update independent of ``center_weight`` (BoT: lr 0.5 on the unweighted loss).
The paper's code never builds the centre optimizer, so its centres stay at their random init:
``train_centers=False`` reproduces that (centres are a frozen buffer-like parameter).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

Metric = Literal["euclidean", "cosine"]


class CrossEntropyLabelSmooth(nn.Module):
    """Cross-entropy with label smoothing (Szegedy et al. 2016), as in BoT/torchreid.

    Target distribution q = (1 - ε)·onehot(y) + ε / K; loss = mean over the batch of -Σ_k q_k log p_k.
    ``logits``: (B, K); ``targets``: (B,) int64 in [0, K). ε = 0 gives the plain cross-entropy.
    """

    def __init__(self, num_classes: int, epsilon: float = 0.1) -> None:
        super().__init__()
        if not 0.0 <= epsilon < 1.0:
            raise ValueError(f"epsilon must be in [0, 1), got {epsilon}")
        self.num_classes = num_classes
        self.epsilon = epsilon

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if logits.dim() != 2 or logits.size(1) != self.num_classes:
            raise ValueError(f"expected logits (B, {self.num_classes}), got {tuple(logits.shape)}")
        log_probs = F.log_softmax(logits.float(), dim=1)
        q = torch.full_like(log_probs, self.epsilon / self.num_classes)
        q.scatter_(1, targets.long().unsqueeze(1), 1.0 - self.epsilon + self.epsilon / self.num_classes)
        return -(q * log_probs).sum(dim=1).mean()


def pairwise_distance(x: torch.Tensor, metric: Metric = "euclidean") -> torch.Tensor:
    """(B, D) -> (B, B) distances in fp32.

    euclidean: sqrt(clamp(‖xi‖² + ‖xj‖² - 2 xi·xj, min=1e-12)) (BoT's form; the clamp keeps sqrt's gradient finite).
    cosine: 1 - cos(xi, xj).
    """
    x = x.float()
    if metric == "cosine":
        xn = F.normalize(x, dim=1)
        return 1.0 - xn @ xn.t()
    if metric != "euclidean":
        raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")
    sq = x.pow(2).sum(dim=1, keepdim=True)
    return (sq + sq.t() - 2.0 * (x @ x.t())).clamp(min=1e-12).sqrt()


class TripletLoss(nn.Module):
    """Batch-hard triplet loss (Hermans et al. 2017), BoT's version.

    For each anchor i: d_ap = max distance to another sample of its identity (the hardest positive),
    d_an = min distance to a sample of another identity (the hardest negative);
    loss_i = max(0, d_ap - d_an + margin), or softplus(d_ap - d_an) with ``soft_margin=True``.
    The loss is the mean over anchors that have both a positive and a negative in the batch (a P×K batch
    with K >= 2 has them all); with none, it is 0 (still attached to the graph). Features are not normalised.
    Nothing is read back to the host (no data-dependent branch), so a CUDA step does not wait here.
    ``feat``: (B, D); ``targets``: (B,).
    """

    def __init__(self, margin: float = 0.3, soft_margin: bool = False, metric: Metric = "euclidean") -> None:
        super().__init__()
        if metric not in ("euclidean", "cosine"):
            raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")
        self.margin = margin
        self.soft_margin = soft_margin
        self.metric = metric

    def hardest(self, feat: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(d_ap (B,), d_an (B,), valid (B,) bool): hardest positive/negative distance for every anchor."""
        dist = pairwise_distance(feat, self.metric)
        same = targets.view(-1, 1) == targets.view(1, -1)
        eye = torch.eye(len(targets), dtype=torch.bool, device=targets.device)
        pos, neg = same & ~eye, ~same
        d_ap = dist.masked_fill(~pos, float("-inf")).max(dim=1).values
        d_an = dist.masked_fill(~neg, float("inf")).min(dim=1).values
        return d_ap, d_an, pos.any(dim=1) & neg.any(dim=1)

    def forward(self, feat: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        d_ap, d_an, valid = self.hardest(feat, targets)
        gap = d_ap - d_an  # -inf for an anchor without a positive or a negative: its term is 0, its gradient 0
        per_anchor = F.softplus(gap) if self.soft_margin else F.relu(gap + self.margin)
        some = torch.where(valid, per_anchor, 0.0).sum() / valid.sum().clamp(min=1)
        return torch.where(valid.all(), per_anchor.mean(), some)  # all valid: the plain mean, bit for bit


class CenterLoss(nn.Module):
    """Center loss (Wen et al. 2016): mean over the batch of ‖x_i - c_{y_i}‖² (squared euclidean).

    ``centers``: (num_classes, feat_dim) parameter, initialised N(0, 1) as BoT. Train them with their own
    optimizer (:func:`make_center_optimizer`); ``train_centers=False`` freezes them as the paper's code
    effectively does. ``feat``: (B, feat_dim); ``targets``: (B,).
    """

    def __init__(self, num_classes: int, feat_dim: int, train_centers: bool = True) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.feat_dim = feat_dim
        self.centers = nn.Parameter(torch.randn(num_classes, feat_dim), requires_grad=train_centers)

    def forward(self, feat: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if feat.dim() != 2 or feat.size(1) != self.feat_dim:
            raise ValueError(f"expected features (B, {self.feat_dim}), got {tuple(feat.shape)}")
        diff = feat.float() - self.centers[targets.long()]
        return diff.pow(2).sum(dim=1).clamp(min=1e-12, max=1e12).mean()


class ReIDLoss(nn.Module):
    """total = id_weight·CE_ls(logits) + s·triplet_weight·triplet(feat) + s·center_weight·center(feat).

    ``s`` = the attribute ``metric_scale`` (1.0; the trainer's ``metric_warmup_epochs`` sets it per epoch).

    ``forward(logits, feat, targets) -> (total, parts)`` with ``parts`` = python floats of the *unweighted*
    terms that are on (``"id"``, ``"triplet"``, ``"center"``) and ``"total"``; :meth:`terms` gives them as
    tensors. ``center`` is the CenterLoss module or ``None`` (``center_weight=0``).
    """

    def __init__(
        self,
        num_classes: int,
        feat_dim: int | None = None,
        label_smooth: float = 0.1,
        margin: float = 0.3,
        soft_margin: bool = False,
        metric: Metric = "euclidean",
        id_weight: float = 1.0,
        triplet_weight: float = 1.0,
        center_weight: float = 0.0005,
        train_centers: bool = True,
    ) -> None:
        super().__init__()
        self.id_weight, self.triplet_weight, self.center_weight = id_weight, triplet_weight, center_weight
        self.metric_scale = 1.0  # multiplies the triplet and center weights (a ramp-in sets it per epoch)
        self.id_loss = CrossEntropyLabelSmooth(num_classes, label_smooth) if id_weight > 0 else None
        self.triplet = TripletLoss(margin, soft_margin, metric) if triplet_weight > 0 else None
        self.center: CenterLoss | None = None
        if center_weight > 0:
            if feat_dim is None:
                raise ValueError("center loss needs feat_dim (the model's feat_dim); or set center_weight=0")
            self.center = CenterLoss(num_classes, feat_dim, train_centers)
        if self.id_loss is None and self.triplet is None and self.center is None:
            raise ValueError("every loss weight is 0: nothing to train")

    def forward(
        self, logits: torch.Tensor, feat: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        total, parts = self.terms(logits, feat, targets)
        values = torch.stack(list(parts.values())).tolist()  # one device-to-host read for all of them
        return total, dict(zip(parts, values))

    def terms(
        self, logits: torch.Tensor, feat: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """:meth:`forward` without reading values back: ``parts`` are detached 0-dim fp32 tensors on the inputs'
        device, so a CUDA training step does not wait for the GPU here (the trainer reads them every few steps)."""
        terms: dict[str, tuple[float, torch.Tensor]] = {}
        if self.id_loss is not None:
            terms["id"] = (self.id_weight, self.id_loss(logits, targets))
        if self.triplet is not None:
            terms["triplet"] = (self.triplet_weight * self.metric_scale, self.triplet(feat, targets))
        if self.center is not None:
            terms["center"] = (self.center_weight * self.metric_scale, self.center(feat, targets))
        total = sum(w * value for w, value in terms.values())
        parts = {name: value.detach().float() for name, (_, value) in terms.items()}
        parts["total"] = total.detach().float()
        return total, parts

    def rescale_center_grad(self) -> None:
        """Multiply the centres' gradient by 1/(center_weight·metric_scale) (BoT), so their SGD sees the unweighted
        loss whenever the term is on (with ``metric_scale`` 0 the gradient is 0 and the centres stay put)."""
        weight = self.center_weight * self.metric_scale
        if self.center is not None and self.center.centers.grad is not None and weight > 0:
            self.center.centers.grad.mul_(1.0 / weight)


def make_center_optimizer(criterion: ReIDLoss, lr: float = 0.5) -> torch.optim.SGD | None:
    """SGD(lr) over the centres (BoT's ``optimizer_center``), or ``None`` when there are no trainable centres."""
    center = criterion.center
    if center is None or not center.centers.requires_grad:
        return None
    return torch.optim.SGD([center.centers], lr=lr)


_OPTIONS = (
    "num_classes", "feat_dim", "label_smooth", "margin", "soft_margin", "metric",
    "id_weight", "triplet_weight", "center_weight", "train_centers",
)


def make_loss(cfg: Mapping[str, Any] | Any | None = None, **kwargs: Any) -> ReIDLoss:
    """Build :class:`ReIDLoss` from a mapping, an object with attributes, and/or keyword arguments.

    Recognised options (keywords win over ``cfg``): ``num_classes`` (required), ``feat_dim`` (required with
    center loss), ``label_smooth`` (0.1), ``margin`` (0.3), ``soft_margin`` (False), ``metric``
    ("euclidean"), ``id_weight`` (1), ``triplet_weight`` (1), ``center_weight`` (0.0005; 0 disables),
    ``train_centers`` (True; False = the paper code's frozen centres). Unknown keys raise ``ValueError``
    when ``cfg`` is a mapping or keywords; attribute objects are read only for the options above.
    """
    options: dict[str, Any] = {}
    if isinstance(cfg, Mapping):
        options.update(cfg)
    elif cfg is not None:
        options.update({k: getattr(cfg, k) for k in _OPTIONS if hasattr(cfg, k)})
    options.update(kwargs)
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise ValueError(f"unknown loss options {unknown}; valid: {', '.join(_OPTIONS)}")
    if "num_classes" not in options:
        raise ValueError("make_loss needs num_classes")
    return ReIDLoss(**options)
