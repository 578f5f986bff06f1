"""The dataset registry: one name per reader, ``build_dataset(name, root, **kwargs)`` to call it."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from reidlib.registry import Registry

from .base import ReIDDataset

Reader = Callable[..., ReIDDataset]
READERS: Registry[Reader] = Registry("dataset")


def register_dataset(name: str) -> Callable[[Reader], Reader]:
    """Decorator registering ``reader(root, **kwargs) -> ReIDDataset`` under ``name``."""
    return READERS.register(name)


def list_datasets() -> list[str]:
    """Names accepted by :func:`build_dataset`, sorted."""
    return READERS.names()


def get_reader(name: str) -> Reader:
    """The reader function registered as ``name`` (``ValueError`` listing the valid names otherwise)."""
    return READERS.get(name)


def build_dataset(name: str, root: str | Path, **kwargs) -> ReIDDataset:
    """Read dataset ``name`` from ``root``; ``kwargs`` go to the reader (e.g. ``split="test"`` for LaST).

    Raises:
        ValueError: ``name`` is not registered (the message lists the valid names).
        DatasetLayoutError: the folder is missing or not in the layout the reader expects.
    """
    return get_reader(name)(root, **kwargs)
