"""Training health: divergence checks, collapse diagnostics and the metric-loss ramp of :func:`reidlib.engine.fit`.

Divergence (:func:`check_divergence`, after every epoch, before it is evaluated or saved) stops the run with
:class:`TrainingDiverged` when

- any loss term of the epoch (its mean over the epoch's images) is NaN or infinite;
- the label-smoothed cross-entropy exceeds ``ID_LOSS_BOUND x ln(K)`` (K training identities). A model at chance
  scores ``ln K``; a mean over an epoch above ten times that needs logits wrong by a margin of ~10 ln K on average,
  which only an exploded network produces (the committed runs peak at 1.2 ln K, in their first epoch);
- the total loss exceeds ``RELATIVE_BOUND`` x the first epoch's total (the committed runs never exceed 1.04 x).

Nothing of the failing epoch is saved: ``last.pt`` keeps the last healthy epoch and no test metrics are written.

Collapse diagnostics (:class:`BatchDiagnostics`, from the features the triplet loss sees in every training batch,
no extra forward pass; in the history rows): ``feat_norm`` = mean L2 norm of the features; ``dist_ap`` / ``dist_an``
= mean over anchors of the batch-hard distances (hardest positive, hardest negative in the same P x K batch,
the triplet loss's metric; anchors without both are skipped). A collapsed embedding shows ``dist_an - dist_ap``
near 0 (the hinge triplet loss then sits at its margin) or a feature norm near 0.
"""
from __future__ import annotations

import math

import torch

from .distributed import all_reduce_sum

ID_LOSS_BOUND = 10.0
RELATIVE_BOUND = 1e3
LOSS_KEYS = ("loss", "loss_id", "loss_triplet", "loss_center")
# learning rates quoted in the divergence message (BoT / torchreid recipes)
TYPICAL_LR = {"adam": "3.5e-4", "amsgrad": "1.5e-3", "adamw": "3.5e-4", "sgd": "0.01-0.065"}


class TrainingDiverged(RuntimeError):
    """The losses of an epoch are not finite or exploded past a bound; the message names the epoch and the fix."""


def metric_weight_factor(epoch: int, warmup_epochs: int) -> float:
    """Multiplier of the triplet and center weights in 0-based ``epoch``: 1.0 when ``warmup_epochs`` is 0, else 0
    for ``epoch < W`` and ``min(1, (epoch - W + 1) / W)`` after (W = ``warmup_epochs``)."""
    if warmup_epochs <= 0:
        return 1.0
    if epoch < warmup_epochs:
        return 0.0
    return min(1.0, (epoch - warmup_epochs + 1) / warmup_epochs)


def check_divergence(row: dict, first: dict | None, num_classes: int, recipe: dict) -> None:
    """Raise :class:`TrainingDiverged` when the epoch ``row`` (a history row) diverged.

    Args:
        row: this epoch's history row (``epoch`` 1-based, ``loss`` and ``loss_*`` means per image).
        first: the run's first history row (None when ``row`` is the first).
        num_classes: K, the training identities (bound of the cross-entropy).
        recipe: ``lr``, ``optimizer``, ``warmup_epochs`` (and ``scheduler``) of the run, quoted in the message.
    """
    terms = {k: row[k] for k in LOSS_KEYS if k in row}
    reason = None
    bad = [k for k, v in terms.items() if not math.isfinite(v)]
    id_bound = ID_LOSS_BOUND * math.log(max(num_classes, 2))
    if bad:
        reason = f"{', '.join(bad)} {'is' if len(bad) == 1 else 'are'} not finite"
    elif terms.get("loss_id", 0.0) > id_bound:
        reason = (f"the cross-entropy {terms['loss_id']:.4g} exceeds {ID_LOSS_BOUND:g} x ln({num_classes}) = "
                  f"{id_bound:.3g} (a model at chance scores {math.log(max(num_classes, 2)):.3g})")
    elif first is not None and math.isfinite(first.get("loss", math.nan)) and first["loss"] > 0 \
            and terms.get("loss", 0.0) > RELATIVE_BOUND * first["loss"]:
        reason = (f"the loss {terms['loss']:.4g} exceeds {RELATIVE_BOUND:g} x the first epoch's "
                  f"({first['loss']:.4g})")
    if reason is None:
        return
    shown = ", ".join(f"{k} {v:.4g}" for k, v in terms.items())
    lr, warm, optimizer = recipe.get("lr"), recipe.get("warmup_epochs"), recipe.get("optimizer")
    warm_text = "no warm-up (warmup_epochs 0)" if not warm else f"warmup_epochs {warm}"
    usual = TYPICAL_LR.get(str(optimizer), "")
    saved = (f"last.pt holds epoch {row['epoch'] - 1}" if row["epoch"] > 1 else "no checkpoint was written")
    raise TrainingDiverged(
        f"training diverged in epoch {row['epoch']}: {reason} ({shown}). The likely cause is a learning rate too "
        f"high for this model and optimizer (lr {lr:g}, {optimizer}, {warm_text}). Lower lr by 10x or more"
        f"{f' ({optimizer} usually trains re-ID models at {usual})' if usual else ''} and warm up (e.g. warmup_epochs "
        f"10), or ramp the metric losses in (metric_warmup_epochs); then train this run again from scratch (the "
        f"pipeline does once the recipe changed). Nothing of epoch {row['epoch']} was saved or evaluated; {saved}.")


class BatchDiagnostics:
    """Per-epoch means of the feature norm and the batch-hard anchor-positive / anchor-negative distances.

    ``update(feat, targets)`` per training batch (``feat`` (B, D), the features the triplet loss sees; detached,
    accumulated on their device with no host sync); ``result()`` at the end of the epoch sums over DDP ranks and
    returns ``{"feat_norm", "dist_ap", "dist_an"}`` (distances NaN when no anchor had a positive and a negative).
    """

    def __init__(self, metric: str, device: torch.device) -> None:
        from reidlib.losses import TripletLoss

        self._hardest = TripletLoss(metric=metric).hardest
        self._sums = torch.zeros(4, dtype=torch.float64, device=device)  # [norms, d_ap, d_an, anchors]
        self._images = 0

    @torch.no_grad()
    def update(self, feat: torch.Tensor, targets: torch.Tensor) -> None:
        feat = feat.detach().float()
        d_ap, d_an, valid = self._hardest(feat, targets)
        # anchors without a positive (or negative) have -inf (inf): zero them before masking (inf * 0 is NaN)
        d_ap, d_an = (torch.where(valid, d, torch.zeros_like(d)).double() for d in (d_ap, d_an))
        self._sums += torch.stack([feat.norm(dim=1).sum().double(), d_ap.sum(), d_an.sum(), valid.sum().double()])
        self._images += len(feat)

    def result(self) -> dict[str, float]:
        local = torch.cat([self._sums, self._sums.new_tensor([float(self._images)])])
        norm, ap, an, anchors, images = all_reduce_sum(local).tolist()
        return {"feat_norm": norm / images if images else math.nan,
                "dist_ap": ap / anchors if anchors else math.nan,
                "dist_an": an / anchors if anchors else math.nan}
