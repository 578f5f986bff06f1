"""The few names every layer shares: what an item is, the evaluation protocols, and one way to refuse a bad choice."""
from __future__ import annotations

from typing import Sequence, TypeVar

Item = tuple[str, int, int]
"""``(image_path, pid, camid)``: the image file, the person id, the 0-based camera id."""

PROTOCOLS = ("market", "last")
"""``"market"``: gallery images of the query's identity *and* camera are ignored; ``"last"``: no camera filter."""

T = TypeVar("T")


def check_choice(name: str, value: T, choices: Sequence[T]) -> T:
    """Return ``value`` if it is one of ``choices``, else raise a ``ValueError`` naming the option and the valid
    values."""
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {tuple(choices)}")
    return value
