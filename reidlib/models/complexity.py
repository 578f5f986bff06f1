"""Parameter and FLOP counts.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on one eval-mode forward: it counts
matrix multiplies and convolutions (2 FLOPs per multiply-add) and ignores BN, activations, pooling and
element-wise ops. ``macs`` = FLOPs / 2 is the number comparable with torchreid's ``compute_model_complexity``
(``only_conv_linear=True``) and the "GFLOPs" columns of most re-ID papers, which are multiply-adds.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of parameters (``requires_grad`` ones only by default, as the paper's code counts them)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _eval_forward(model: nn.Module, image_size: tuple[int, int]) -> None:
    """One eval-mode forward of a (1, 3, H, W) zero batch on the model's device; train/eval state restored."""
    param = next(model.parameters())
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, *image_size, device=param.device, dtype=param.dtype))
    finally:
        model.train(was_training)


def inference_parameter_count(model: nn.Module, image_size: tuple[int, int] = (256, 128)) -> int:
    """Parameters (trainable or frozen) of the modules an eval-mode forward actually runs.

    Excludes the ID classifier and dead heads (the paper's unused MobileNetV3 ImageNet classifier).
    """
    used: set[int] = set()
    hooks = [m.register_forward_hook(lambda mod, *_: used.add(id(mod))) for m in model.modules()]
    try:
        _eval_forward(model, image_size)
    finally:
        for h in hooks:
            h.remove()
    seen: set[int] = set()
    total = 0
    for m in model.modules():
        if id(m) in used:
            for p in m.parameters(recurse=False):
                if id(p) not in seen:
                    seen.add(id(p))
                    total += p.numel()
    return total


def count_flops(model: nn.Module, image_size: tuple[int, int] = (256, 128)) -> dict[str, int]:
    """FLOPs of one eval-mode forward of one (3, H, W) image: ``{"flops": ..., "macs": flops // 2}``."""
    counter = FlopCounterMode(display=False)
    with counter:
        _eval_forward(model, image_size)
    flops = int(counter.get_total_flops())
    return {"flops": flops, "macs": flops // 2}
