"""Progress display that suits where the code runs.

A live bar helps at a terminal or in JupyterLab; in a notebook executed by papermill every redraw of a bar
becomes one more stored output fragment (a 20-epoch run left 2,000 of them). So:

* ``REIDLIB_PROGRESS=lines`` (what the pipeline sets for the notebooks it executes): no bars at all; the trainer
  prints one line per epoch instead, which is all a reader of the executed notebook needs.
* ``REIDLIB_PROGRESS=off``: neither bars nor epoch lines.
* unset or ``bar``: a tqdm bar; in a notebook kernel the text bar is used (the widget bar needs ipywidgets and
  otherwise warns "IProgress not found").
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

MODES = ("bar", "lines", "off")


def mode() -> str:
    """The progress mode from ``REIDLIB_PROGRESS`` (default ``"bar"``); an unknown value is an error."""
    value = os.environ.get("REIDLIB_PROGRESS", "bar").strip().lower() or "bar"
    if value not in MODES:
        raise ValueError(f"REIDLIB_PROGRESS={value!r} is not one of {MODES}; unset it for live bars")
    return value


def bars_enabled() -> bool:
    """True when live progress bars should be drawn."""
    return mode() == "bar"


def lines_enabled() -> bool:
    """True when one summary line per unit of work (an epoch) should be printed."""
    return mode() in ("bar", "lines")


def _in_kernel() -> bool:
    return "ipykernel" in sys.modules


def progress_bar(iterable: Iterable[T], desc: str = "", total: int | None = None, enabled: bool = True,
                 **kwargs) -> Iterable[T] | Iterator[T]:
    """``iterable`` wrapped in a tqdm bar when bars are enabled (and ``enabled``), else returned as it is."""
    if not (enabled and bars_enabled()):
        return iterable
    from tqdm import tqdm

    # the plain text bar everywhere: tqdm.auto's widget bar needs ipywidgets, which the project does not pin
    kwargs.setdefault("leave", False)
    kwargs.setdefault("dynamic_ncols", True)
    if _in_kernel():
        kwargs.setdefault("file", sys.stdout)
    return tqdm(iterable, desc=desc, total=total, **kwargs)


def write_line(text: str) -> None:
    """Print one progress line (an epoch summary) without breaking a live bar."""
    if not lines_enabled():
        return
    if bars_enabled():
        from tqdm import tqdm

        tqdm.write(text)
    else:
        print(text, flush=True)
