"""A tiny name -> factory registry for re-ID models (one factory per model family file)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch.nn as nn

from reidlib.registry import Registry

Factory = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its factory ``(num_classes, paper_code=False, **kwargs) -> nn.Module`` and a one-line
    summary."""

    name: str
    factory: Factory
    summary: str


MODELS: Registry[ModelEntry] = Registry("model")


def register_model(name: str, summary: str = "") -> Callable[[Factory], Factory]:
    """Decorator registering ``factory`` under ``name``; registering a name twice is an error."""

    def decorate(factory: Factory) -> Factory:
        doc_line = (factory.__doc__ or "").strip().splitlines()
        MODELS.add(name, ModelEntry(name, factory, summary or (doc_line[0] if doc_line else "")))
        return factory

    return decorate


def list_models() -> list[str]:
    """Sorted names of every registered model."""
    return MODELS.names()


def get_entry(name: str) -> ModelEntry:
    """The entry for ``name``; an unknown name raises ``ValueError`` listing the valid ones."""
    return MODELS.get(name)
