"""One small name -> object registry, used for models (:mod:`reidlib.models.registry`) and datasets
(:mod:`reidlib.data.registry`): a decorator to register, ``names()`` to list, ``get(name)`` with an error that
lists the valid names on a typo."""
from __future__ import annotations

from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Objects of one kind (``kind``: "model", "dataset") under unique names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` under ``name``; a name taken by another entry is an error."""
        if name in self._entries and self._entries[name] is not entry:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""
        return lambda entry: self.add(name, entry)

    def names(self) -> list[str]:
        """Sorted registered names."""
        return sorted(self._entries)

    def get(self, name: str) -> T:
        """The entry of ``name``; an unknown name raises ``ValueError`` listing the valid ones."""
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(f"unknown {self.kind} {name!r}; valid names: {', '.join(self.names())}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries
