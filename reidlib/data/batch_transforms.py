"""The training augmentations of :mod:`reidlib.data.transforms`, applied to a whole batch of cached images at once.

Input: ``(B, 3, H, W)`` uint8 images already resized to ``H x W`` (:class:`reidlib.data.cache.ImageCache`).
Output: ``(B, 3, H, W)`` float32, normalised. Same steps, order and distributions as the PIL pipeline:

1. horizontal flip, each image independently with probability ``flip_p``;
2. zero padding by ``pad`` pixels on every side, then a crop back to ``H x W`` at an offset ``(top, left)`` drawn
   uniformly from ``{0..2*pad} x {0..2*pad}`` (``T.Pad`` + ``T.RandomCrop``; padding is black *pixels*, i.e. it
   happens before normalisation);
3. optional colour jitter: torchvision's ``ColorJitter`` on the [0, 1] tensor, per image, done batched
   (:mod:`reidlib.data.batch_jitter`; its per-image draws come from a generator seeded from ``generator``);
4. ``/255`` then ``(x - mean) / std`` (``T.ToTensor`` + ``T.Normalize``, the same float32 operations);
5. random erasing, each image independently with probability ``erasing_p``: up to 100 attempts of a target area
   ``uniform(sl, sh) * H * W`` and aspect ratio ``uniform(r1, 1/r1)``, ``h = round(sqrt(area * ratio))``,
   ``w = round(sqrt(area / ratio))``; the first attempt with ``h < H`` and ``w < W`` is placed uniformly and
   filled with ``mean`` in normalised space (:class:`reidlib.data.transforms.RandomErasing`).

Given the same random decisions the output equals the PIL pipeline's bit for bit (the tests check it). The random
*streams* differ: every draw comes from the ``torch.Generator`` passed in (vectorised over the batch), not from
torch's global RNG one image at a time, so a seed gives other (equally distributed) augmentations than the PIL path.

Two code paths, equal element for element: uint8 batches on the CPU are flipped and cropped by numpy window copies
and erased rectangle by rectangle (cheap there); any other batch (a GPU one) takes the device path, where the
decisions drawn on the CPU travel in one non-blocking copy, flip + pad + crop is one gather, erasing one masked
select, and the normalisation constants are kept on the device, so a batch costs a fixed few dozen kernels whatever
its size and the host never waits for the GPU.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torchvision import transforms as T

from .batch_jitter import color_jitter_batch, sample_jitter
from .transforms import IMAGENET_MEAN, IMAGENET_STD, _color_jitter

ERASING_ATTEMPTS = 100


def flip_batch(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror (left-right) the images of ``x`` (B, C, H, W) where the bool mask ``flip`` (B,) is True.

    ``flip`` may sit on the CPU while ``x`` is on another device (the decisions are always drawn on the CPU)."""
    return torch.where(flip.to(x.device, non_blocking=True).view(-1, 1, 1, 1), x.flip(-1), x)


def pad_crop_batch(x: torch.Tensor, pad: int, tops: torch.Tensor, lefts: torch.Tensor) -> torch.Tensor:
    """Zero-pad each image of ``x`` (B, C, H, W) by ``pad`` pixels and crop ``H x W`` at ``(tops[i], lefts[i])``.

    Offsets are in the padded image, ``0 <= top, left <= 2 * pad``; ``(pad, pad)`` returns the image unchanged.
    The result keeps ``x``'s dtype and memory format; uncovered pixels are 0.
    """
    if pad == 0:
        return x
    return _window_gather(x, torch.zeros(len(x), dtype=torch.bool, device=x.device), pad,
                          tops.to(x.device, non_blocking=True), lefts.to(x.device, non_blocking=True))


def _window_gather(x: torch.Tensor, flip: torch.Tensor, pad: int, tops: torch.Tensor, lefts: torch.Tensor
                   ) -> torch.Tensor:
    """Flip where ``flip``, zero-pad by ``pad`` and crop at ``(tops, lefts)``, all as one gather on ``x``'s device.

    ``flip``, ``tops``, ``lefts`` (B,) must be on ``x``'s device. Padding commutes with the mirror, so a flipped
    image's column ``c`` of the padded frame is column ``W + 2 * pad - 1 - c`` of the unflipped one.
    """
    n, _, height, width = x.shape
    padded = F.pad(x, (pad, pad, pad, pad)) if pad else x
    rows = tops.view(-1, 1) + torch.arange(height, device=x.device)
    cols = lefts.view(-1, 1) + torch.arange(width, device=x.device)
    cols = torch.where(flip.view(-1, 1), width + 2 * pad - 1 - cols, cols)
    batch = torch.arange(n, device=x.device).view(-1, 1, 1)
    hwc = padded[batch, :, rows.view(n, -1, 1), cols.view(n, 1, -1)]  # (B, H, W, C)
    return torch.empty_like(x).copy_(hwc.permute(0, 3, 1, 2))


def flip_pad_crop_batch(x: torch.Tensor, flip: torch.Tensor, pad: int, tops: torch.Tensor, lefts: torch.Tensor
                        ) -> torch.Tensor:
    """:func:`flip_batch` then :func:`pad_crop_batch` in one pass over a uint8 CPU batch ``x`` (B, C, H, W).

    Each output image is one strided copy of its (mirrored) source window, done in numpy on the channels-last
    (B, H, W, C) layout, so the result is a (B, C, H, W) view with channels_last strides. Equal to the two-step
    version element for element.
    """
    hwc = x.permute(0, 2, 3, 1).numpy()
    out = np.zeros(hwc.shape, dtype=hwc.dtype)
    _, height, width, _ = hwc.shape
    for i, (f, top, left) in enumerate(zip(flip.tolist(), tops.tolist(), lefts.tolist())):
        src = hwc[i, :, ::-1] if f else hwc[i]
        dy, dx = top - pad, left - pad
        r0, r1 = max(0, -dy), min(height, height - dy)
        c0, c1 = max(0, -dx), min(width, width - dx)
        if r0 < r1 and c0 < c1:
            out[i, r0:r1, c0:c1] = src[r0 + dy:r1 + dy, c0 + dx:c1 + dx]
    return torch.from_numpy(out).permute(0, 3, 1, 2)


def normalize_batch(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``x`` (B, C, H, W) -> float32 ``(x - mean) / std`` per channel, a new tensor.

    uint8 input is first divided by 255 (``T.ToTensor``); float input is taken as already in [0, 1]. ``mean`` and
    ``std`` may be float32 tensors already on ``x``'s device (no copy then).
    """
    m = torch.as_tensor(mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    x = x.to(torch.float32).div_(255) if x.dtype == torch.uint8 else x.to(torch.float32, copy=True)
    return x.sub_(m).div_(s)


def sample_erasing_boxes(n: int, height: int, width: int, p: float, sl: float = 0.02, sh: float = 0.4,
                         r1: float = 0.3, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw random-erasing rectangles for ``n`` images of ``height x width`` pixels.

    Returns an int64 tensor ``(n, 4)`` of ``(top, left, h, w)`` in pixels; ``h = w = 0`` where an image is not
    erased (probability ``1 - p``, or no valid attempt among the 100).
    """
    boxes = torch.zeros(n, 4, dtype=torch.int64)
    apply = torch.rand(n, generator=generator, dtype=torch.float64) < p
    u = torch.rand(n, ERASING_ATTEMPTS, 2, generator=generator, dtype=torch.float64)
    area = (sl + (sh - sl) * u[..., 0]) * height * width
    ratio = r1 + (1.0 / r1 - r1) * u[..., 1]
    hs = torch.round(torch.sqrt(area * ratio)).to(torch.int64)  # round half to even, as python's round
    ws = torch.round(torch.sqrt(area / ratio)).to(torch.int64)
    valid = (hs < height) & (ws < width)
    first = valid.to(torch.int8).argmax(dim=1)
    ok = apply & valid.any(dim=1)
    h = hs.gather(1, first[:, None]).squeeze(1)
    w = ws.gather(1, first[:, None]).squeeze(1)
    pos = torch.rand(n, 2, generator=generator, dtype=torch.float64)
    top = torch.floor(pos[:, 0] * (height - h + 1)).to(torch.int64)
    left = torch.floor(pos[:, 1] * (width - w + 1)).to(torch.int64)
    boxes[ok] = torch.stack([top, left, h, w], dim=1)[ok]
    return boxes


def erase_batch(x: torch.Tensor, boxes: torch.Tensor, fill: Sequence[float]) -> torch.Tensor:
    """Set ``x[i, c, top:top+h, left:left+w] = fill[c]`` for each box ``(top, left, h, w)`` of ``boxes`` (B, 4).

    ``x`` (B, C, H, W) is modified in place and returned; boxes with ``h == 0`` are skipped. On the CPU each box is
    one slice assignment; elsewhere the boxes become one mask (``boxes`` and ``fill`` may already be on the device).
    """
    values = torch.as_tensor(fill[:x.shape[1]], dtype=x.dtype, device=x.device)
    if x.device.type == "cpu":
        for i, (top, left, h, w) in enumerate(boxes.tolist()):
            if h > 0 and w > 0:
                x[i, :, top:top + h, left:left + w] = values.view(-1, 1, 1)
        return x
    top, left, h, w = boxes.to(x.device, non_blocking=True).unbind(1)
    rows = torch.arange(x.shape[2], device=x.device).view(1, -1)
    cols = torch.arange(x.shape[3], device=x.device).view(1, -1)
    in_rows = (rows >= top.view(-1, 1)) & (rows < (top + h).view(-1, 1))
    in_cols = (cols >= left.view(-1, 1)) & (cols < (left + w).view(-1, 1))
    inside = in_rows.view(len(x), 1, -1, 1) & in_cols.view(len(x), 1, 1, -1)
    return x.copy_(torch.where(inside, values.view(1, -1, 1, 1), x))


@dataclass
class BatchAugment:
    """The train transform of :func:`reidlib.data.build_transforms` for uint8 batches (see the module docstring).

    Args:
        flip_p, pad, color_jitter, erasing_p, mean, std: as in :func:`reidlib.data.build_transforms`
            (erasing fills with ``mean``, as the paper's code does).
        sl, sh, r1: random-erasing area range (fraction of the image) and aspect-ratio bound.
    """

    flip_p: float = 0.5
    pad: int = 10
    color_jitter: float | Sequence[float] | None = None
    erasing_p: float = 0.5
    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD
    sl: float = 0.02
    sh: float = 0.4
    r1: float = 0.3

    def __post_init__(self) -> None:
        if not 0.0 <= self.flip_p <= 1.0 or not 0.0 <= self.erasing_p <= 1.0 or self.pad < 0:
            raise ValueError(f"need 0 <= flip_p, erasing_p <= 1 and pad >= 0; got flip_p={self.flip_p}, "
                             f"erasing_p={self.erasing_p}, pad={self.pad}")
        self._jitter: T.ColorJitter | None = _color_jitter(self.color_jitter) if self.color_jitter else None
        self._constants: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def _on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) as float32 tensors on ``device``, made once per device."""
        if device not in self._constants:
            self._constants[device] = (torch.tensor(self.mean, dtype=torch.float32, device=device),
                                       torch.tensor(self.std, dtype=torch.float32, device=device))
        return self._constants[device]

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """uint8 ``(B, 3, H, W)`` -> augmented, normalised float32 ``(B, 3, H, W)`` (memory format kept).

        ``x`` may live on any device (the cached loader moves batches to the GPU before augmenting them); the
        random decisions are always drawn on the CPU from ``generator``, so a seed gives the same augmentations
        wherever they are applied. No global or CUDA generator is drawn from or reseeded."""
        n, _, height, width = x.shape
        flip = torch.rand(n, generator=generator) < self.flip_p if self.flip_p > 0 else torch.zeros(n, dtype=torch.bool)
        if self.pad > 0:
            offsets = torch.randint(0, 2 * self.pad + 1, (n, 2), generator=generator)
        else:
            offsets = torch.zeros(n, 2, dtype=torch.int64)
        jitter = None
        if self._jitter is not None:
            jitter = sample_jitter(n, self._jitter, int(torch.randint(0, 2**62, (), generator=generator)))
        boxes = torch.zeros(n, 4, dtype=torch.int64)
        if self.erasing_p > 0:
            boxes = sample_erasing_boxes(n, height, width, self.erasing_p, self.sl, self.sh, self.r1, generator)
        if x.dtype == torch.uint8 and x.device.type == "cpu":
            x = flip_pad_crop_batch(x, flip, self.pad, offsets[:, 0], offsets[:, 1])
            mean, std = self.mean, self.std
        else:  # every decision to the device in one copy, then a fixed number of kernels
            decisions = torch.cat([flip.to(torch.int64).view(-1, 1), offsets, boxes], dim=1)
            if x.device.type == "cuda":
                decisions = decisions.pin_memory()
            decisions = decisions.to(x.device, non_blocking=True)
            x = _window_gather(x, decisions[:, 0].bool(), self.pad, decisions[:, 1], decisions[:, 2])
            boxes = decisions[:, 3:]
            mean, std = self._on(x.device)
        if jitter is not None:
            x = color_jitter_batch(x.to(torch.float32).div(255), jitter)
        out = normalize_batch(x, mean, std)
        if self.erasing_p > 0:
            erase_batch(out, boxes, mean)
        return out

