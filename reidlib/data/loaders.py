"""DataLoaders for training (P x K batches) and testing (fixed order), with deterministic worker seeding.

A batch is ``(imgs, pids, camids, paths)``: a float tensor ``(B, 3, H, W)``, two int64 tensors ``(B,)`` and a
list of ``B`` path strings.
"""
from __future__ import annotations

import random
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from .base import Item
from .images import ImageDataset
from .sampler import DistributedRandomIdentitySampler, RandomIdentitySampler


def seed_worker(worker_id: int) -> None:
    """Seed numpy and python ``random`` in a worker from torch's per-worker seed (itself from the loader's generator)."""
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


def make_test_loader(items: Sequence[Item], transform: Callable, batch_size: int = 128, num_workers: int = 0) -> DataLoader:
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
