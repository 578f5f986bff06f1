"""Train/test transforms as in the paper's code (BoT's pipeline plus LaST's optional colour jitter).

Train: Resize(H, W) -> RandomHorizontalFlip(flip_p) -> Pad(pad, zero fill) -> RandomCrop(H, W)
-> [ColorJitter] -> ToTensor -> Normalize(mean, std) -> RandomErasing(erasing_p).
Test: Resize(H, W) -> ToTensor -> Normalize(mean, std).
Every random choice draws from torch's RNG, so DataLoader worker seeding covers it.

The trainer's default data path (``fit(..., data_path="cached")``) applies the same train pipeline to whole
batches of cached, already resized uint8 images: :class:`reidlib.data.batch_transforms.BatchAugment`. Same steps,
order and distributions (and the same pixels for the same random decisions); its random stream is a per-epoch
``torch.Generator`` seeded by (seed, epoch, rank), so for one seed the two paths draw different augmentations.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torchvision import transforms as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * torch.rand(()).item()


class RandomErasing(torch.nn.Module):
    """Random erasing (Zhong et al., 2017) exactly as BoT/the paper's code does it, drawing from torch's RNG.

    With probability ``p``, up to 100 attempts: draw a target area ``uniform(sl, sh) * H * W`` and an aspect
    ratio ``uniform(r1, 1/r1)`` (linear, not log-uniform), ``h = round(sqrt(area * ratio))``,
    ``w = round(sqrt(area / ratio))``; the first rectangle with ``h < H`` and ``w < W`` is placed uniformly and
    each channel ``c`` is set to ``fill[c]``. The input is an already *normalised* ``(C, H, W)`` tensor and
    ``fill`` is written as is, so with the paper's ``fill = IMAGENET_MEAN`` the patch holds the values
    (0.485, 0.456, 0.406) in normalised space (not the mean pixel). The tensor is modified in place.
    """

    def __init__(self, p: float = 0.5, sl: float = 0.02, sh: float = 0.4, r1: float = 0.3,
                 fill: Sequence[float] = IMAGENET_MEAN) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0 or not 0.0 < sl <= sh <= 1.0 or not 0.0 < r1 <= 1.0:
            raise ValueError(f"need 0<=p<=1, 0<sl<=sh<=1, 0<r1<=1; got p={p}, sl={sl}, sh={sh}, r1={r1}")
        self.p, self.sl, self.sh, self.r1 = p, sl, sh, r1
        self.fill = tuple(float(v) for v in fill)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if torch.rand(()).item() >= self.p:
            return img
        channels, height, width = img.shape
        for _ in range(100):
            area = _uniform(self.sl, self.sh) * height * width
            ratio = _uniform(self.r1, 1.0 / self.r1)
            h = int(round(math.sqrt(area * ratio)))
            w = int(round(math.sqrt(area / ratio)))
            if h < height and w < width:
                top = int(torch.randint(0, height - h + 1, ()).item())
                left = int(torch.randint(0, width - w + 1, ()).item())
                fill = torch.tensor(self.fill[:channels], dtype=img.dtype, device=img.device)
                img[:, top:top + h, left:left + w] = fill.view(-1, 1, 1)
                return img
        return img

    def extra_repr(self) -> str:
        return f"p={self.p}, sl={self.sl}, sh={self.sh}, r1={self.r1}, fill={self.fill}"


def _color_jitter(spec: float | Sequence[float]) -> T.ColorJitter:
    if isinstance(spec, (int, float)):
        return T.ColorJitter(spec, spec, spec, spec)
    if len(spec) != 4:
        raise ValueError(f"color_jitter must be a float or (brightness, contrast, saturation, hue), got {spec!r}")
    return T.ColorJitter(*spec)


def build_transforms(
    height: int = 256,
    width: int = 128,
    is_train: bool = True,
    flip_p: float = 0.5,
    pad: int = 10,
    color_jitter: float | Sequence[float] | None = None,
    erasing_p: float = 0.5,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> T.Compose:
    """PIL RGB image -> float tensor ``(3, height, width)`` normalised by ``mean``/``std``.

    Args:
        height, width: output size in pixels (paper: 256 x 128).
        is_train: add the random augmentations below; ``False`` gives resize + normalise only.
        flip_p: horizontal flip probability (0 disables it).
        pad: zero padding in pixels on each side before the random crop back to ``height x width`` (0 disables).
        color_jitter: None (BoT), a float ``v`` for ``ColorJitter(v, v, v, v)`` (paper code: 0.1), or a
            ``(brightness, contrast, saturation, hue)`` tuple.
        erasing_p: random-erasing probability (0 disables); fill values are ``mean`` as in the paper's code.
        mean, std: per-channel normalisation.
    """
    steps: list = [T.Resize((height, width))]
    if is_train:
        if flip_p > 0:
            steps.append(T.RandomHorizontalFlip(flip_p))
        if pad > 0:
            steps += [T.Pad(pad), T.RandomCrop((height, width))]
        if color_jitter:
            steps.append(_color_jitter(color_jitter))
    steps += [T.ToTensor(), T.Normalize(mean, std)]
    if is_train and erasing_p > 0:
        steps.append(RandomErasing(erasing_p, fill=mean))
    return T.Compose(steps)
