"""DataLoaders for training (P x K batches) and testing (fixed order), with deterministic worker seeding.

A batch is ``(imgs, pids, camids, paths)``: a float tensor ``(B, 3, H, W)``, two int64 tensors ``(B,)`` and a
list of ``B`` path strings.

Two training paths: :func:`make_train_loader` (a torch ``DataLoader``: each image opened, decoded, resized and
augmented as a PIL image, optionally in worker processes) and :class:`CachedTrainLoader` (images decoded once into
an :class:`~reidlib.data.cache.ImageCache`, each batch augmented as one tensor by
:class:`~reidlib.data.batch_transforms.BatchAugment`, in the main process: a batch costs milliseconds, so worker
processes would only take cores from the model).
"""
from __future__ import annotations

import random
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from .base import Item
from .batch_transforms import BatchAugment
from .cache import ImageCache
from .images import ImageDataset
from .sampler import DistributedRandomIdentitySampler, RandomIdentitySampler


def seed_worker(worker_id: int) -> None:
    """Seed numpy and python ``random`` in a worker from torch's per-worker seed (from the loader's generator)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_train_loader(
    items: Sequence[Item],
    transform: Callable,
    batch_size: int = 64,
    num_instances: int = 4,
    num_workers: int = 0,
    seed: int = 0,
    distributed: bool = False,
) -> DataLoader:
    """P x K training loader (``drop_last=True``); ``distributed`` splits batches over the ``torch.distributed`` ranks.

    The sampler is reachable as ``loader.sampler``; call ``loader.sampler.set_epoch(epoch)`` each epoch.
    Worker augmentation streams derive from ``seed`` through the loader's generator.
    """
    if distributed:
        sampler: RandomIdentitySampler = DistributedRandomIdentitySampler(items, batch_size, num_instances, seed=seed)
    else:
        sampler = RandomIdentitySampler(items, batch_size, num_instances, seed=seed)
    return DataLoader(
        ImageDataset(items, transform),
        batch_size=batch_size,
        sampler=sampler,
        drop_last=True,
        num_workers=num_workers,
        worker_init_fn=seed_worker,
        generator=torch.Generator().manual_seed(seed),
        pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0,
    )


def make_test_loader(items: Sequence[Item], transform: Callable, batch_size: int = 128,
                     num_workers: int = 0) -> DataLoader:
    """Loader over ``items`` in their given order, keeping the last partial batch."""
    return DataLoader(
        ImageDataset(items, transform),
        batch_size=batch_size,
        shuffle=False,
        drop_last=False,
        num_workers=num_workers,
        worker_init_fn=seed_worker,
        pin_memory=torch.cuda.is_available(),
    )


def augment_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The seed of the cached path's augmentation generator for ``(seed, epoch, rank)`` (a 63-bit int)."""
    return int(np.random.SeedSequence([seed, epoch, rank, 0x5EED]).generate_state(1, dtype=np.uint64)[0]) >> 1


class CachedTrainLoader:
    """P x K training batches from an :class:`ImageCache`, augmented per batch; a stand-in for the DataLoader.

    Yields ``(imgs, pids, camids, paths)`` like :func:`make_train_loader`: ``imgs`` float32 ``(B, 3, H, W)`` in the
    channels_last memory format, ``pids``/``camids`` int64 ``(B,)``, ``paths`` a list of B strings.
    Batches are the sampler's (``loader.sampler``, :class:`RandomIdentitySampler` or its distributed twin); call
    ``loader.sampler.set_epoch(epoch)`` before iterating, as with the DataLoader.

    ``device``: where batches are augmented. The default (None) is the CPU; with a CUDA device each uint8 batch is
    copied there (pinned, asynchronously) and flipped, cropped, normalised and erased on the GPU, so the host only
    gathers uint8 rows and the copy is a quarter of a float32 batch's. The augmentations are the same either way.

    Randomness: epoch ``e`` augments with a fresh ``torch.Generator`` seeded by :func:`augment_seed`
    ``(seed, e, rank)``; no global RNG is read or advanced, so an epoch's batches depend only on
    ``(seed, epoch, rank)`` and resuming at any epoch boundary reproduces them exactly.
    ``generator`` is None (there is no loader generator state to checkpoint).
    """

    generator = None

    def __init__(self, items: Sequence[Item], cache: ImageCache, augment: BatchAugment, batch_size: int = 64,
                 num_instances: int = 4, seed: int = 0, distributed: bool = False, rank: int = 0,
                 device: torch.device | str | None = None) -> None:
        if len(cache) != len(items):
            raise ValueError(f"the cache holds {len(cache)} images for {len(items)} items")
        if distributed:
            self.sampler: RandomIdentitySampler = DistributedRandomIdentitySampler(
                items, batch_size, num_instances, seed=seed)
        else:
            self.sampler = RandomIdentitySampler(items, batch_size, num_instances, seed=seed)
        self.items, self.cache, self.augment = list(items), cache, augment
        self.batch_size, self.seed, self.rank = batch_size, seed, rank
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.pids = np.asarray([pid for _, pid, _ in self.items], dtype=np.int64)
        self.camids = np.asarray([cam for _, _, cam in self.items], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]]:
        epoch = self.sampler.epoch
        gen = torch.Generator().manual_seed(augment_seed(self.seed, epoch, self.rank))
        indices = np.fromiter(iter(self.sampler), dtype=np.int64)
        for b in range(len(indices) // self.batch_size):
            idx = indices[b * self.batch_size:(b + 1) * self.batch_size]
            raw = self.cache.batch(idx)
            if self.device.type != "cpu":
                raw = raw.pin_memory() if self.device.type == "cuda" else raw
                raw = raw.to(self.device, non_blocking=True)
            imgs = self.augment(raw, gen)
            yield (imgs, torch.from_numpy(self.pids[idx]), torch.from_numpy(self.camids[idx]),
                   [self.items[i][0] for i in idx])


def make_cached_train_loader(
    items: Sequence[Item],
    height: int = 256,
    width: int = 128,
    augment: BatchAugment | None = None,
    batch_size: int = 64,
    num_instances: int = 4,
    seed: int = 0,
    distributed: bool = False,
    rank: int = 0,
    cache_dir: str | None = None,
    cache: ImageCache | None = None,
    device: torch.device | str | None = None,
) -> CachedTrainLoader:
    """:class:`CachedTrainLoader` over ``items``, decoding them into an :class:`ImageCache` of ``height x width``
    (memory-mapped under ``cache_dir`` when given and reused when it already holds these files) unless ``cache`` is
    given. ``augment`` defaults to the paper's: flip 0.5, pad 10 + crop, random erasing 0.5. ``device``: where
    batches are augmented (:class:`CachedTrainLoader`)."""
    if cache is None:
        cache = ImageCache.build([p for p, _, _ in items], height, width, cache_dir=cache_dir)
    return CachedTrainLoader(items, cache, augment or BatchAugment(), batch_size, num_instances, seed,
                             distributed, rank, device)
