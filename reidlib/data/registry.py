"""The dataset registry: one name per reader, ``build_dataset(name, root, **kwargs)`` to call it."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from .base import ReIDDataset

Reader = Callable[..., ReIDDataset]
_READERS: dict[str, Reader] = {}


def register_dataset(name: str) -> Callable[[Reader], Reader]:
    """Decorator registering ``reader(root, **kwargs) -> ReIDDataset`` under ``name``."""

    def decorate(reader: Reader) -> Reader:
        if name in _READERS and _READERS[name] is not reader:
            raise ValueError(f"dataset name {name!r} is already registered by {_READERS[name]!r}")
        _READERS[name] = reader
        return reader

    return decorate


def list_datasets() -> list[str]:
    """Names accepted by :func:`build_dataset`, sorted."""
    return sorted(_READERS)


def build_dataset(name: str, root: str | Path, **kwargs) -> ReIDDataset:
    """Read dataset ``name`` from ``root``; ``kwargs`` go to the reader (e.g. ``split="test"`` for LaST).

    Raises:
        ValueError: ``name`` is not registered (the message lists the valid names).
        DatasetLayoutError: the folder is missing or not in the layout the reader expects.
    """
    reader = _READERS.get(name)
    if reader is None:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(list_datasets())}")
    return reader(root, **kwargs)
