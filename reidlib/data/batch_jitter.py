"""torchvision's ``ColorJitter`` on a whole batch: the same per-image draws and operations, in a few dozen kernels.

``ColorJitter`` draws, per image, ``randperm(4)`` (the order of brightness, contrast, saturation, hue) and one
``uniform(lo, hi)`` factor per enabled operation, in that order, from torch's global RNG; then it applies the
operations one image at a time. :func:`sample_jitter` makes the same draws, in the same order, from a private CPU
generator seeded with ``seed`` (so ``torch.manual_seed(seed)`` + a per-image ``ColorJitter`` loop gets the same
factors, and no global or CUDA generator is touched). :func:`color_jitter_batch` applies them: for each of the 4
positions of the order and each operation, the images that do that operation there form one group, transformed
together with per-image factors. The arithmetic is torchvision's (``_blend``: ``(f * a + (1 - f) * b).clamp(0, 1)``
in float32 with ``1 - f`` rounded from float64; hue through torchvision's RGB <-> HSV conversion), so the result
equals the per-image loop's (the tests compare them).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.transforms import ColorJitter
from torchvision.transforms import functional as TF
from torchvision.transforms._functional_tensor import _hsv2rgb, _rgb2hsv

BRIGHTNESS, CONTRAST, SATURATION, HUE = range(4)


@dataclass
class JitterDraws:
    """Per-image colour-jitter decisions for a batch of ``n`` images (CPU tensors).

    ``order``: (n, 4) int64, row ``i`` = the operation ids (0 brightness, 1 contrast, 2 saturation, 3 hue) in the
    order image ``i`` applies them; ``factor``: (n, 4) float32, column = operation id, NaN where it is off.
    """

    order: torch.Tensor
    factor: torch.Tensor


def sample_jitter(n: int, jitter: ColorJitter, seed: int) -> JitterDraws:
    """The draws ``jitter`` makes for ``n`` images, one image after the other, from a generator seeded with ``seed``.

    Equal to what ``ColorJitter.get_params`` returns image by image after ``torch.manual_seed(seed)``.
    """
    gen = torch.Generator().manual_seed(seed)
    ranges = (jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue)
    order = torch.empty(n, 4, dtype=torch.int64)
    factor = torch.full((n, 4), float("nan"), dtype=torch.float32)
    one = torch.empty(1)
    for i in range(n):
        order[i] = torch.randperm(4, generator=gen)
        for op, bounds in enumerate(ranges):
            if bounds is not None:
                factor[i, op] = one.uniform_(bounds[0], bounds[1], generator=gen)[0]
    return JitterDraws(order, factor)


def _groups(draws: JitterDraws) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int, int]]]:
    """All (position, operation) groups as one index vector, per-image weights, and ``(op, start, stop)`` slices.

    Weights (n, 4, 2) float32: ``(f, 1 - f)`` for the blends (``1 - f`` computed in float64, as torchvision's
    python float), ``(f, 0)`` for hue.
    """
    f64 = draws.factor.double()
    weights = torch.stack([draws.factor, (1.0 - f64).float()], dim=2)
    index, slices, start = [], [], 0
    on = ~torch.isnan(draws.factor)
    for pos in range(4):
        for op in range(4):
            members = torch.nonzero((draws.order[:, pos] == op) & on[:, op]).flatten()
            if len(members):
                index.append(members)
                slices.append((op, start, start + len(members)))
                start += len(members)
    flat = torch.cat(index) if index else torch.zeros(0, dtype=torch.int64)
    return flat, weights, slices


def _blend(a: torch.Tensor, b: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``(w[:, 0] * a + w[:, 1] * b).clamp(0, 1)`` per image (torchvision's ``_blend`` for float images)."""
    return (w[:, 0].view(-1, 1, 1, 1) * a + w[:, 1].view(-1, 1, 1, 1) * b).clamp(0, 1)


def _apply(op: int, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Operation ``op`` on float images ``x`` (m, 3, H, W) in [0, 1] with per-image weights ``w`` (m, 2)."""
    if op == BRIGHTNESS:  # torchvision blends with zeros: adding (1 - f) * 0 changes no value
        return (w[:, 0].view(-1, 1, 1, 1) * x).clamp(0, 1)
    if op == CONTRAST:
        return _blend(x, torch.mean(TF.rgb_to_grayscale(x), dim=(-3, -2, -1), keepdim=True), w)
    if op == SATURATION:
        return _blend(x, TF.rgb_to_grayscale(x), w)
    h, s, v = _rgb2hsv(x).unbind(dim=-3)
    h = (h + w[:, 0].view(-1, 1, 1)) % 1.0
    return _hsv2rgb(torch.stack((h, s, v), dim=-3))


def color_jitter_batch(x: torch.Tensor, draws: JitterDraws) -> torch.Tensor:
    """Jitter float images ``x`` (B, 3, H, W) in [0, 1] with ``draws`` (CPU); a new channels_last tensor on ``x``'s
    device. Off the CPU the group indices and weights go to the device in two non-blocking copies."""
    flat, weights, slices = _groups(draws)
    if x.device.type != "cpu":
        if x.device.type == "cuda":
            flat, weights = flat.pin_memory(), weights.pin_memory()
        flat, weights = flat.to(x.device, non_blocking=True), weights.to(x.device, non_blocking=True)
    out = x.to(torch.float32, copy=True).contiguous(memory_format=torch.channels_last)
    for op, start, stop in slices:
        idx = flat[start:stop]
        out.index_copy_(0, idx, _apply(op, out.index_select(0, idx), weights.index_select(0, idx)[:, op]))
    return out
