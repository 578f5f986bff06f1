"""Image loading that never hides a bad file, and the torch Dataset over items."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from .base import ImageReadError, Item

# the largest value of a 16-bit sample: 65535 maps to 255, v to round(v * 255 / 65535) (exact for v = 257 k)
MAX_16BIT = 65535


def to_rgb(img: Image.Image) -> Image.Image:
    """A decoded PIL image of any mode as 8-bit RGB, each mode scaled to the full 0..255 range.

    - ``RGB``: a copy. ``L`` (8-bit gray), ``1`` (bilevel: 0 -> 0, 1 -> 255), ``P`` (palette), ``CMYK`` and
      ``YCbCr``: PIL's own conversion (gray is copied into R, G and B; CMYK uses PIL's formula, no ICC profile).
    - ``RGBA``, ``LA``, ``PA``, ``P`` with transparency: the alpha channel is dropped; colours are kept as stored,
      not composited onto a background (what PIL's ``convert("RGB")`` does).
    - ``I;16``, ``I;16L``, ``I;16B``, ``I;16N`` (16-bit gray: a 16-bit grayscale PNG opens as one of these) and
      ``I`` (32-bit integer; older Pillow versions open 16-bit grayscale PNGs as ``I``): read as 16-bit samples,
      values clipped to 0..65535, then ``round(v * 255 / 65535)``, so 65535 is white and an 8-bit image stored as
      16-bit (``v * 257``) decodes to exactly its 8-bit values. (PIL's own conversion clips at 255 instead, which
      turns almost every pixel of a 16-bit image white.) 16-bit colour PNGs already open as 8-bit ``RGB``/``RGBA``.
    - ``F`` (32-bit float): when every finite value lies in [0, 1] the image is taken as 0..1 and multiplied by 255;
      otherwise it is read as 0..255 (PIL's reading); rounded, clipped to 0..255, NaN as 0.
    """
    mode = img.mode
    if mode == "I" or mode.startswith("I;16"):
        values = np.clip(np.asarray(img).astype(np.int64), 0, MAX_16BIT)
        gray = ((values * 255 + MAX_16BIT // 2) // MAX_16BIT).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if mode == "F":
        values = np.asarray(img, dtype=np.float64)
        finite = values[np.isfinite(values)]
        scale = 255.0 if finite.size and finite.min() >= 0.0 and finite.max() <= 1.0 else 1.0
        values = np.nan_to_num(values * scale, nan=0.0, posinf=255.0, neginf=0.0)
        return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode == "PA":
        img = img.convert("RGBA")
    return img.convert("RGB")


def read_image(path: str | Path) -> Image.Image:
    """Open and fully decode ``path`` as an 8-bit RGB PIL image (every mode converted by :func:`to_rgb`).

    Raises:
        ImageReadError: the file is missing, truncated, or not an image; the message names the path.
    """
    try:
        with Image.open(path) as img:
            img.load()
            return to_rgb(img)
    except (OSError, ValueError, SyntaxError) as err:  # PIL signals corrupt data with all three
        raise ImageReadError(
            f"cannot read image {path}: {err}. Replace the file with a valid image, or remove it from the dataset "
            "folder."
        ) from err


def _check(path: str | Path) -> str | None:
    try:
        read_image(path)
    except ImageReadError as err:
        return f"{path} ({err.__cause__})"
    return None


def verify_images(items: Iterable[Item | str | Path], raise_on_error: bool = True, threads: int | None = None
                  ) -> list[str]:
    """Decode every image and report all unreadable ones at once.

    Args:
        items: dataset items ``(path, pid, camid)`` or bare paths.
        raise_on_error: raise :class:`ImageReadError` listing every bad path (default) instead of returning them.
        threads: decoding threads (PIL releases the GIL while decoding); default ``min(4, cpu count)``.

    Returns:
        The bad paths in input order, each with its reason (empty when every image decodes).
    """
    paths = [item[0] if isinstance(item, tuple) else item for item in items]
    with ThreadPoolExecutor(max_workers=threads or min(4, os.cpu_count() or 1)) as pool:
        bad = [msg for msg in pool.map(_check, paths) if msg is not None]
    if bad and raise_on_error:
        raise ImageReadError(
            f"{len(bad)} unreadable image(s); replace or remove them:\n  " + "\n  ".join(bad)
        )
    return bad


class ImageDataset(Dataset):
    """``dataset[i] -> (img, pid, camid, path)`` over a list of items.

    ``img`` is ``transform(PIL RGB image)``, typically a float tensor of shape ``(3, H, W)``; with
    ``transform=None`` the PIL image itself is returned. Unreadable files raise :class:`ImageReadError`.
    """

    def __init__(self, items: Sequence[Item], transform: Callable | None = None) -> None:
        self.items = list(items)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        path, pid, camid = self.items[index]
        img = read_image(path)
        if self.transform is not None:
            img = self.transform(img)
        return img, pid, camid, path
