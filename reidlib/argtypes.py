"""``argparse`` types that range-check numbers, so a command line refuses ``--batch-size -1`` before any work.

>>> parser.add_argument("--batch-size", type=int_range(1, 65536), default=64)                # doctest: +SKIP

A value outside the range (or not an integer) makes the parser exit with status 2 and one line such as
``argument --batch-size: must be an integer from 1 to 65536, got -1``.
"""
from __future__ import annotations

import argparse
from typing import Callable

# input sizes the networks accept: below 16 px a stride-32 backbone has no spatial extent left
MIN_SIDE, MAX_SIDE = 16, 4096


def int_range(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse ``type=`` that parses an integer in ``[low, high]`` (``high=None``: no upper bound)."""
    span = f"from {low} to {high}" if high is not None else f">= {low}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer {span}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be an integer {span}, got {value}")
        return value

    parse.__name__ = f"integer {span}"  # argparse names the type in some messages
    return parse


def image_side(text: str) -> int:
    """An image height or width in pixels, ``MIN_SIDE`` to ``MAX_SIDE``."""
    return int_range(MIN_SIDE, MAX_SIDE)(text)
