"""The data layer: dataset readers behind one registry, transforms, P x K samplers, loaders, a synthetic default.

>>> ds = build_dataset("folder", "../shared/data/cuhk03-np-detected")   # doctest: +SKIP
>>> ds.summary()                                                          # doctest: +SKIP

Registered names (``list_datasets()``): ``market1501``, ``dukemtmcreid``, ``last``, ``cuhk03np``, ``folder``,
``synthetic``. Items are ``(image_path, pid, camid)`` with 0-based camids. Layout problems raise
:class:`DatasetLayoutError` (a ``FileNotFoundError``); unreadable images raise :class:`ImageReadError`
(an ``OSError``) naming the file.
"""
from __future__ import annotations

from . import cuhk03np, dukemtmc, folder, last, market1501  # noqa: F401  (register the readers)
from .base import DatasetLayoutError, ImageReadError, Item, ReIDDataset, relabel
from .batch_transforms import BatchAugment
from .cache import ImageCache
from .images import ImageDataset, read_image, verify_images
from .loaders import CachedTrainLoader, make_cached_train_loader, make_test_loader, make_train_loader
from .registry import build_dataset, list_datasets, register_dataset
from .sampler import DistributedRandomIdentitySampler, RandomIdentitySampler
from .split import make_val_split
from .synthetic import generate_synthetic
from .transforms import IMAGENET_MEAN, IMAGENET_STD, RandomErasing, build_transforms

__all__ = [
    "BatchAugment", "CachedTrainLoader", "DatasetLayoutError", "DistributedRandomIdentitySampler", "ImageCache",
    "IMAGENET_MEAN", "IMAGENET_STD", "ImageDataset",
    "ImageReadError", "Item", "RandomErasing", "RandomIdentitySampler", "ReIDDataset", "build_dataset",
    "build_transforms", "generate_synthetic", "list_datasets", "make_cached_train_loader", "make_test_loader",
    "make_train_loader",
    "make_val_split", "read_image", "register_dataset", "relabel", "verify_images",
]
