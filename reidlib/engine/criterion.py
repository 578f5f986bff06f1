"""Build the loss stack of a run and its centre optimizer from a :class:`TrainConfig`."""
from __future__ import annotations

import torch
import torch.nn as nn

from reidlib.losses import ReIDLoss, make_center_optimizer, make_loss

from .config import TrainConfig


def build_criterion(cfg: TrainConfig, num_classes: int, model: nn.Module,
                    device: torch.device) -> tuple[ReIDLoss, torch.optim.Optimizer | None]:
    """LS-CE + triplet + center loss for ``num_classes`` identities on ``model.feat_dim``-d features.

    Returns ``(criterion, center_optimizer)``; the optimizer is SGD(``cfg.center_lr``) over the centres, or
    ``None`` when there is no center loss or ``cfg.train_centers`` is False (the paper code's frozen centres).
    """
    feat_dim = getattr(model, "feat_dim", None)
    soft = cfg.triplet_margin is None  # the soft-margin triplet, softplus(d_ap - d_an)
    if soft and cfg.loss_kwargs.get("soft_margin") is False:
        raise ValueError("triplet_margin None means the soft margin, but loss_kwargs sets soft_margin: false")
    options = {"margin": 0.0 if soft else cfg.triplet_margin, **({"soft_margin": True} if soft else {}),
               **cfg.loss_kwargs}
    criterion = make_loss(num_classes=num_classes, feat_dim=feat_dim, label_smooth=cfg.label_smooth,
                          center_weight=cfg.center_weight, train_centers=cfg.train_centers, **options).to(device)
    center_opt = make_center_optimizer(criterion, lr=cfg.center_lr) if cfg.train_centers else None
    return criterion, center_opt


def center_step_prepare(criterion: ReIDLoss) -> None:
    """Scale the centres' (unscaled) gradient by 1 / center_weight before their optimizer steps (BoT)."""
    criterion.rescale_center_grad()
