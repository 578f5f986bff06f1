"""Image loading that never hides a bad file, and the torch Dataset over items."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Sequence

from PIL import Image
from torch.utils.data import Dataset

from .base import ImageReadError, Item


def read_image(path: str | Path) -> Image.Image:
    """Open and fully decode ``path`` as an RGB PIL image.

    Raises:
        ImageReadError: the file is missing, truncated, or not an image; the message names the path.
    """
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
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
