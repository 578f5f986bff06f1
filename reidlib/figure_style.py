"""One look for every figure of the study: a colour per model, legends off the data, human titles.

Colours come from the Okabe-Ito palette (distinguishable with the common colour-vision deficiencies). A model keeps
its colour in every figure of a profile because the colour is a function of its run name alone: the three paper
models have fixed colours, another run of the same family (other weights, another init) gets one of the remaining
colours by a stable hash of its name, and a run ending in ``_paper_code`` gets its model's colour with a dashed line.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.lines import Line2D

OKABE_ITO = {"blue": "#0072B2", "vermillion": "#D55E00", "bluish green": "#009E73", "reddish purple": "#CC79A7",
             "orange": "#E69F00", "sky blue": "#56B4E9", "black": "#000000", "yellow": "#F0E442"}
FAMILY_COLOURS = {"bot_resnet50": OKABE_ITO["blue"], "osnet_x0_25": OKABE_ITO["vermillion"],
                  "mnv3_siamese": OKABE_ITO["bluish green"]}
# for other runs (yellow is left out: too faint on white)
VARIANT_COLOURS = (OKABE_ITO["reddish purple"], OKABE_ITO["orange"], OKABE_ITO["sky blue"], OKABE_ITO["black"])
DEFAULT_CYCLE = tuple(OKABE_ITO[k] for k in ("blue", "vermillion", "bluish green", "reddish purple", "orange",
                                             "sky blue", "black"))  # for labels that are not model runs
PAPER_CODE_SUFFIX = "_paper_code"
LEGEND_FONTSIZE = 9


def model_run_of(run_id: str) -> str:
    """The model run name inside a run id: ``"10_train/cuhk03-osnet_x0_25_msmt17"`` -> ``"osnet_x0_25_msmt17"``.

    Run ids name the dataset(s) first and the model run last, joined by ``-``, then ``@<variant>`` for a variant's
    run and ``-seed<s>`` for a repeated seed (``"10_train/cuhk03-osnet_x0_25@lr-low-seed1"`` -> ``"osnet_x0_25"``);
    a bare run name is returned as is.
    """
    name = re.sub(r"-seed\d+$", "", str(run_id).rsplit("/", 1)[-1])
    return name.split("@", 1)[0].rsplit("-", 1)[-1]


def model_style(model_run: str) -> dict[str, Any]:
    """Line colour and style of a model run (its name, or a run id, see :func:`model_run_of`).

    Returns ``{"color": hex, "linestyle": "-" or "--"}`` for ``Axes.plot``; the same name always gets the same style.
    """
    run = model_run_of(model_run)
    dashed = run.endswith(PAPER_CODE_SUFFIX)
    base = run[: -len(PAPER_CODE_SUFFIX)] if dashed else run
    colour = FAMILY_COLOURS.get(base)
    if colour is None:
        digest = int(hashlib.md5(base.encode()).hexdigest(), 16)
        colour = VARIANT_COLOURS[digest % len(VARIANT_COLOURS)]
    return {"color": colour, "linestyle": "--" if dashed else "-"}


def style_for(styles: Mapping[str, Mapping[str, Any]] | None, label: str, index: int) -> dict[str, Any]:
    """``styles[label]`` when given, else the ``index``-th colour of :data:`DEFAULT_CYCLE` (solid)."""
    if styles and label in styles:
        return dict(styles[label])
    return {"color": DEFAULT_CYCLE[index % len(DEFAULT_CYCLE)]}


def wrap_title(text: str, width: int = 42) -> str:
    """``text`` broken into lines of at most ``width`` characters (existing line breaks kept), for panel titles."""
    import textwrap

    return "\n".join(textwrap.fill(line, width) for line in str(text).splitlines() or [""])


def handle(label: str, style: Mapping[str, Any], marker: str | None = None) -> Line2D:
    """A legend entry drawn like a curve of ``style``."""
    look = {**dict(style), **({"marker": marker} if marker else {})}
    look.pop("markevery", None)
    return Line2D([], [], label=label, **look)


def grid(n_panels: int, panel_size: tuple[float, float] = (3.4, 2.7), max_cols: int = 3,
         extra_height: float = 0.0) -> tuple[Figure, list[Axes]]:
    """A figure with ``n_panels`` axes in rows of at most ``max_cols`` (constrained layout); no empty panel is left.

    ``extra_height``: inches added for a legend under the grid.
    """
    if n_panels < 1:
        raise ValueError("a grid needs at least one panel")
    cols = min(n_panels, max_cols)
    rows = -(-n_panels // cols)
    fig = Figure(figsize=(panel_size[0] * cols, panel_size[1] * rows + extra_height), layout="constrained")
    axes = list(fig.subplots(rows, cols, squeeze=False).flat)
    for ax in axes[n_panels:]:
        fig.delaxes(ax)
    return fig, axes[:n_panels]


def legend_rows(handles: Sequence[Any], ncol: int) -> float:
    """Inches a legend of ``handles`` in ``ncol`` columns needs under a grid."""
    return 0.3 + 0.22 * -(-len(handles) // max(ncol, 1))


def legend_under(fig: Figure, handles: Sequence[Any], ncol: int | None = None) -> Legend | None:
    """One legend for the whole figure, under its panels (never on the data); none for no handles."""
    if not handles:
        return None
    if ncol is None:
        longest = max(len(h.get_label()) for h in handles)
        ncol = max(1, min(len(handles), int(fig.get_figwidth() * 11 // max(longest + 4, 1))))
    return fig.legend(handles=list(handles), loc="outside lower center", ncol=ncol, fontsize=LEGEND_FONTSIZE,
                      frameon=False)


def legend_beside(ax: Axes, handles: Sequence[Any] | None = None) -> Legend:
    """The legend of one axes to the right of it, outside the data area."""
    kwargs = {"handles": list(handles)} if handles is not None else {}
    return ax.legend(**kwargs, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
                     fontsize=LEGEND_FONTSIZE, frameon=False)
