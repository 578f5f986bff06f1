"""Decode every training image once into a uint8 array, in memory or as a memory-mapped ``.npy`` file.

The cached path of the trainer (``fit(..., data_path="cached")``) reads its batches from here instead of opening,
decoding and resizing each image again every epoch. Each entry is exactly what the PIL pipeline has after its first
step, ``Resize((height, width))`` on the RGB image :func:`reidlib.data.images.read_image` decodes (every PIL mode,
16-bit included, converted by :func:`reidlib.data.images.to_rgb`; PIL bilinear resize, as torchvision does on PIL
images), so the augmentations that follow see the same pixels.

Layout: ``images`` is ``(N, height, width, 3)`` uint8 (HWC, PIL's own order). :meth:`ImageCache.batch` returns
``(B, 3, height, width)`` uint8 as a permuted view of a ``(B, height, width, 3)`` copy, i.e. already in the
channels_last memory format the CPU fast path uses.

On disk (``cache_dir`` given): ``<cache_dir>/images-<key>.npy`` with ``key`` = sha256 of a format version, the size
and every image's path, byte size and modification time, so any change of the file list, the files or the size
makes a new cache (a *miss*) and an unchanged one is reused by every later run (a *hit*; nothing is decoded). The
file is written to a temporary name and renamed into place, so a killed build leaves no half-written cache.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from .images import read_image

# 2: images decoded by reidlib.data.images.to_rgb (16-bit gray scaled to 8 bits instead of clipped)
CACHE_VERSION = 2
# in-memory caches may take at most this share of the memory the kernel reports available
MAX_MEMORY_FRACTION = 0.5


def cache_key(paths: Sequence[str | Path], height: int, width: int) -> str:
    """Hex sha256 naming the cache of ``paths`` at ``height`` x ``width`` (paths, byte sizes and mtimes count)."""
    h = hashlib.sha256(f"reidlib-image-cache v{CACHE_VERSION} {int(height)}x{int(width)}\n".encode())
    for p in paths:
        st = os.stat(p)
        h.update(f"{p}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def decode_resized(path: str | Path, height: int, width: int) -> np.ndarray:
    """``path`` decoded to RGB and resized to ``(height, width, 3)`` uint8 with PIL bilinear (``T.Resize`` on PIL).

    Raises:
        ImageReadError: the file is missing or not a readable image.
    """
    img = read_image(path)
    if img.size != (width, height):
        img = img.resize((width, height), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def _available_memory() -> int | None:
    """``MemAvailable`` from ``/proc/meminfo`` in bytes (None where it cannot be read)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class ImageCache:
    """The decoded, resized images of an ordered list of paths.

    Attributes:
        images: ``(N, height, width, 3)`` uint8 array (a read-only ``np.memmap`` when stored on disk).
        paths: the N paths, in order.
        key: the cache key (see :func:`cache_key`).
        file: the ``.npy`` file, or None for an in-memory cache.
        hit: True when an existing file was reused (nothing decoded).
        seconds: wall-clock seconds the build (or the lookup) took.
    """

    def __init__(self, images: np.ndarray, paths: Sequence[str], key: str, file: Path | None = None,
                 hit: bool = False, seconds: float = 0.0) -> None:
        if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8 or len(images) != len(paths):
            raise ValueError(f"an image cache needs (N, H, W, 3) uint8 images for N paths, got {images.shape} "
                             f"{images.dtype} for {len(paths)} paths")
        self.images, self.paths, self.key, self.file = images, [str(p) for p in paths], key, file
        self.hit, self.seconds = hit, seconds

    @property
    def height(self) -> int:
        return int(self.images.shape[1])

    @property
    def width(self) -> int:
        return int(self.images.shape[2])

    @property
    def nbytes(self) -> int:
        return int(self.images.nbytes)

    def __len__(self) -> int:
        return len(self.paths)

    def batch(self, indices: Sequence[int] | np.ndarray) -> torch.Tensor:
        """``(B, 3, H, W)`` uint8 tensor of the images at ``indices`` (channels_last strides, a fresh copy)."""
        idx = np.asarray(indices, dtype=np.int64)
        hwc = torch.from_numpy(np.ascontiguousarray(self.images[idx]))
        return hwc.permute(0, 3, 1, 2)

    def info(self) -> dict:
        """Provenance for run records: file (or "memory"), hit, seconds, size in MiB, image count and size."""
        return {"file": str(self.file) if self.file else "memory", "hit": self.hit, "seconds": round(self.seconds, 3),
                "mib": round(self.nbytes / 2**20, 1), "images": len(self), "size": [self.height, self.width]}

    @classmethod
    def build(cls, paths: Sequence[str | Path], height: int, width: int, cache_dir: str | Path | None = None,
              threads: int | None = None) -> "ImageCache":
        """Decode ``paths`` once (or reuse ``cache_dir``'s file for exactly these files and size).

        Args:
            paths: image files, in the order indices will refer to.
            height, width: output size in pixels (the training input size).
            cache_dir: folder for the memory-mapped ``.npy`` cache; None keeps the array in memory, which is
                refused when it would take more than half of the available memory (pass a ``cache_dir``).
            threads: decoding threads (PIL releases the GIL while decoding); default ``min(4, cpu count)``.

        Raises:
            ImageReadError: an image cannot be read (the message names it).
            MemoryError: an in-memory cache would not fit (the message says what to do).
        """
        t0 = time.perf_counter()
        paths = [str(p) for p in paths]
        if not paths:
            raise ValueError("no images to cache")
        key = cache_key(paths, height, width)
        shape = (len(paths), int(height), int(width), 3)
        nbytes = int(np.prod(shape))
        file = None
        if cache_dir is not None:
            file = Path(cache_dir) / f"images-{key[:32]}.npy"
            if file.is_file():
                images = np.load(file, mmap_mode="r")
                if images.shape == shape and images.dtype == np.uint8:
                    return cls(images, paths, key, file, hit=True, seconds=time.perf_counter() - t0)
            file.parent.mkdir(parents=True, exist_ok=True)
            tmp = file.with_name(f".{file.name}.tmp{os.getpid()}")
            images = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        else:
            avail = _available_memory()
            if avail is not None and nbytes > MAX_MEMORY_FRACTION * avail:
                raise MemoryError(
                    f"an in-memory image cache of {len(paths)} images at {height}x{width} needs "
                    f"{nbytes / 2**30:.1f} GiB, more than half of the {avail / 2**30:.1f} GiB available; pass "
                    "cache_dir= (a memory-mapped file) or use data_path='pil'")
            images = np.empty(shape, dtype=np.uint8)
        try:
            workers = threads or min(4, os.cpu_count() or 1)

            def fill(i: int) -> None:
                images[i] = decode_resized(paths[i], height, width)

            with ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(fill, range(len(paths))))
            if file is not None:
                images.flush()
                del images
                os.replace(tmp, file)
                file.with_suffix(".json").write_text(json.dumps(
                    {"key": key, "version": CACHE_VERSION, "images": len(paths), "height": height, "width": width,
                     "first": paths[0], "last": paths[-1]}, indent=1))
                images = np.load(file, mmap_mode="r")
        finally:
            if file is not None and tmp.exists():
                tmp.unlink()
        return cls(images, paths, key, file, hit=False, seconds=time.perf_counter() - t0)
