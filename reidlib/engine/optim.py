"""Optimizers and per-epoch learning-rate schedules.

Schedule convention (the paper code's, see ``../shared/paper/reproduction_notes.md`` §1): the scheduler is
stepped **once per epoch, after the epoch**. With 0-based epoch index ``e`` (``e = 0`` is the first epoch),
the learning rate used for every iteration of epoch ``e`` is ``base_lr * lr_factor(e)`` where

* warm-up (``e < warmup_epochs``): ``warmup_factor + (1 - warmup_factor) * e / warmup_epochs``
  (epoch 0 runs at ``0.01 * base_lr``, epoch 9 at ``0.901 * base_lr`` for the defaults);
* ``"warmup_multistep"``: times ``gamma ** (number of milestones <= e)``, so with milestones (40, 70) the
  41st epoch (``e = 40``) is the first at ``0.1 * base_lr`` and the 71st (``e = 70``) the first at ``0.01``;
* ``"cosine"``: after warm-up, ``min_factor + (1 - min_factor) * (1 + cos(pi * t)) / 2`` with
  ``t = (e - warmup_epochs) / (epochs - warmup_epochs)``.

BoT steps its scheduler when an epoch starts, i.e. one epoch earlier than this convention.
"""
from __future__ import annotations

import bisect
import math
from typing import Iterable, Sequence

import torch
from torch.optim.lr_scheduler import LRScheduler

OPTIMIZERS = ("adam", "sgd", "adamw", "amsgrad")
SCHEDULERS = ("warmup_multistep", "cosine")


def build_optimizer(
    params: Iterable[torch.nn.Parameter] | Iterable[dict],
    name: str = "adam",
    lr: float = 3.5e-4,
    weight_decay: float = 5e-4,
    momentum: float = 0.95,
    nesterov: bool = False,
    betas: tuple[float, float] = (0.9, 0.999),
) -> torch.optim.Optimizer:
    """Build the model optimizer.

    ``"adam"`` is BoT's and the paper text's choice; ``"sgd"`` (momentum 0.95, no nesterov) is what the
    paper's code actually ran. ``"adamw"`` uses decoupled weight decay; ``"amsgrad"`` is Adam with AMSGrad.
    Weight decay applies to every parameter (biases and BN included), as in BoT and the paper code.
    """
    name = name.lower()
    params = list(params)
    if not params:
        raise ValueError("build_optimizer got no parameters to optimize")
    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay)
    if name == "amsgrad":
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay, amsgrad=True)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")


def lr_factor(
    epoch: int,
    *,
    scheduler: str = "warmup_multistep",
    epochs: int = 120,
    warmup_epochs: int = 10,
    warmup_factor: float = 0.01,
    milestones: Sequence[int] = (40, 70),
    gamma: float = 0.1,
    min_factor: float = 0.0,
) -> float:
    """Multiplier of the base lr for 0-based epoch ``epoch`` (see the module docstring)."""
    if scheduler not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {scheduler!r}; choose one of {SCHEDULERS}")
    warm = 1.0
    if epoch < warmup_epochs:
        warm = warmup_factor + (1.0 - warmup_factor) * epoch / warmup_epochs
    if scheduler == "warmup_multistep":
        return warm * gamma ** bisect.bisect_right(sorted(milestones), epoch)
    if epoch < warmup_epochs:
        return warm
    span = max(1, epochs - warmup_epochs)
    t = min(1.0, (epoch - warmup_epochs) / span)
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * t))


class EpochLRScheduler(LRScheduler):
    """Closed-form per-epoch scheduler: group lr = ``initial_lr * lr_factor(last_epoch)``.

    ``last_epoch`` is the 0-based index of the epoch about to run; call :meth:`step` after each epoch.
    Its ``state_dict`` holds only numbers, so checkpoints stay loadable with ``weights_only=True``.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        scheduler: str = "warmup_multistep",
        epochs: int = 120,
        warmup_epochs: int = 10,
        warmup_factor: float = 0.01,
        milestones: Sequence[int] = (40, 70),
        gamma: float = 0.1,
        min_factor: float = 0.0,
    ) -> None:
        if scheduler not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {scheduler!r}; choose one of {SCHEDULERS}")
        if warmup_epochs < 0 or epochs < 1:
            raise ValueError(f"need epochs >= 1 and warmup_epochs >= 0, got {epochs}, {warmup_epochs}")
        if not 0 < warmup_factor <= 1:
            raise ValueError(f"warmup_factor must be in (0, 1], got {warmup_factor}")
        self.kind = scheduler
        self.epochs = int(epochs)
        self.warmup_epochs = int(warmup_epochs)
        self.warmup_factor = float(warmup_factor)
        self.milestones = [int(m) for m in sorted(milestones)]
        self.gamma = float(gamma)
        self.min_factor = float(min_factor)
        super().__init__(optimizer)

    def factor(self, epoch: int) -> float:
        """lr multiplier for 0-based ``epoch``."""
        return lr_factor(
            epoch,
            scheduler=self.kind,
            epochs=self.epochs,
            warmup_epochs=self.warmup_epochs,
            warmup_factor=self.warmup_factor,
            milestones=self.milestones,
            gamma=self.gamma,
            min_factor=self.min_factor,
        )

    def get_lr(self) -> list[float]:
        f = self.factor(self.last_epoch)
        return [group["initial_lr"] * f for group in self.optimizer.param_groups]



def build_scheduler(optimizer: torch.optim.Optimizer, name: str = "warmup_multistep", **kw) -> EpochLRScheduler:
    """Build the per-epoch scheduler ``name`` (``"warmup_multistep"`` or ``"cosine"``); ``kw`` as :func:`lr_factor`."""
    return EpochLRScheduler(optimizer, scheduler=name, **kw)
