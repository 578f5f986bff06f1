"""Learning curves of training runs: one panel per loss term, train accuracy, the selection split's rank-1 and the
collapse diagnostics (mean feature norm, mean batch-hard anchor-positive and anchor-negative distances).

Each loss term gets its own panel (runs with different loss mixes are never summed onto one axis), a panel is drawn
only where some run recorded that quantity, accuracies are in percent, and one legend under the grid names the runs.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from reidlib.figure_style import grid, handle, legend_rows, legend_under, style_for

LOSS_TITLES = {"loss_id": "ID loss (label-smoothed CE)", "loss_triplet": "triplet loss (batch-hard)",
               "loss_center": "center loss (unweighted)"}
SELECTION_MARKERS = {"val_rank1": ("o", "held-out identities"), "test_rank1": ("x", "TEST split")}
LOG_SPAN = 50.0  # a panel whose positive values span more than this factor gets a log y axis
MARGIN_STYLE = {"color": "grey", "linestyle": ":", "linewidth": 1.2}
DIAGNOSTIC_TITLES = {"feat_norm": "mean feature norm (triplet input)",
                     "dist_ap": "hardest-positive distance (mean)",
                     "dist_an": "hardest-negative distance (mean)"}


def _panels(frames: Mapping[str, pd.DataFrame]) -> list[str]:
    """The quantities some run recorded: loss terms (known ones first), train accuracy, selection rank-1."""
    def recorded(col: str, positive: bool = False) -> bool:
        for df in frames.values():
            if col in df:
                values = pd.to_numeric(df[col], errors="coerce").dropna()
                if len(values) and (not positive or (values > 0).any()):
                    return True
        return False

    extra = sorted({c for df in frames.values() for c in df.columns if c.startswith("loss_")} - set(LOSS_TITLES))
    panels = [c for c in [*LOSS_TITLES, *extra] if recorded(c, positive=True)]
    panels += ["train_acc"] if recorded("train_acc") else []
    panels += ["rank1"] if any(recorded(c) for c in SELECTION_MARKERS) else []
    panels += [c for c in DIAGNOSTIC_TITLES if recorded(c)]
    return panels


def _title(panel: str, frames: Mapping[str, pd.DataFrame], metrics: Mapping[str, str]) -> str:
    if panel == "train_acc":
        return "train accuracy (%)"
    if panel == "rank1":
        splits = [col for col in SELECTION_MARKERS if any(col in df and df[col].notna().any()
                                                          for df in frames.values())]
        if splits == ["val_rank1"]:
            return "held-out rank-1 (%)"
        if splits == ["test_rank1"]:
            return "TEST-split rank-1 (%)"
        return "rank-1 (%) of the selection split"
    if panel in ("dist_ap", "dist_an"):
        used = {metrics.get(label, "euclidean") for label in frames}
        metric = used.pop() if len(used) == 1 else "each run's triplet metric"
        return DIAGNOSTIC_TITLES[panel].replace("(mean)", f"(mean, {metric})")
    if panel in DIAGNOSTIC_TITLES:
        return DIAGNOSTIC_TITLES[panel]
    return LOSS_TITLES.get(panel, panel.removeprefix("loss_").replace("_", " ") + " loss")


def _draw(ax: Axes, panel: str, df: pd.DataFrame, style: dict[str, Any]) -> None:
    marker = "." if len(df) <= 15 else None  # dense markers would hide a dashed line
    if panel == "rank1":
        for col, (mark, _) in SELECTION_MARKERS.items():
            if col in df and df[col].notna().any():
                sub = df[df[col].notna()]
                ax.plot(sub["epoch"], 100.0 * sub[col].astype(float), **{**style, "marker": mark, "markersize": 4})
    elif panel == "train_acc":
        if "train_acc" in df and df["train_acc"].notna().any():
            ax.plot(df["epoch"], 100.0 * df["train_acc"].astype(float), marker=marker, **style)
    elif panel in DIAGNOSTIC_TITLES:
        if panel in df and df[panel].notna().any():
            ax.plot(df["epoch"], df[panel].astype(float), marker=marker, **style)
    elif panel in df and (pd.to_numeric(df[panel], errors="coerce") > 0).any():
        ax.plot(df["epoch"], df[panel].astype(float), marker=marker, **style)


def _fit_y(ax: Axes, panel: str, margins: Sequence[float]) -> str:
    """Log axis for wide-ranging losses; the triplet axis cut at 5 margins; diagnostics from 0. Returns a note for
    the title."""
    values = np.concatenate([np.asarray(ln.get_ydata(), dtype=float) for ln in ax.lines if ln.get_label() != "_m"]
                            or [np.zeros(0)])
    positive = values[np.isfinite(values) & (values > 0)]
    if panel in DIAGNOSTIC_TITLES:
        ax.set_ylim(bottom=0.0)  # norms and distances: a fall towards 0 is the collapse to see
        return ""
    if panel == "loss_triplet" and margins:
        top = 5.0 * max(margins)
        if len(positive) and positive.max() > top:
            ax.set_ylim(0.0, top)  # the first epochs would flatten the part that matters: near the margin
            return f"; axis cut at {top:g}"
    elif panel.startswith("loss_") and len(positive) and positive.max() / positive.min() > LOG_SPAN:
        ax.set_yscale("log")
        return ", log scale"
    return ""


def plot_histories(histories: Mapping[str, Sequence[Mapping[str, Any]]],
                   styles: Mapping[str, Mapping[str, Any]] | None = None,
                   margins: Mapping[str, float | None] | None = None, title: str | None = None,
                   metrics: Mapping[str, str] | None = None) -> Figure:
    """Learning curves of one or more runs, small multiples per quantity with one legend under the grid.

    Args:
        histories: run label -> its per-epoch history (``epoch``, ``loss_*``, ``train_acc`` and ``val_rank1`` /
            ``test_rank1`` as fractions, as ``fit`` records them); runs without epochs are left out.
        styles: label -> ``Axes.plot`` keywords (:func:`reidlib.figure_style.model_style`), the same in every panel.
        margins: label -> the run's triplet margin, drawn dotted grey in the triplet panel.
        title: the figure's title.
        metrics: label -> the distance its triplet compares (``"euclidean"``, the default, or ``"cosine"``), named in
            the distance panels' titles.

    Rank-1 points are circles on held-out identities and crosses on the TEST split (paper-code selection).
    A figure of runs that never trained says so in words instead of drawing empty axes.
    """
    frames = {label: pd.DataFrame(list(h)) for label, h in histories.items() if h}
    panels = _panels(frames)
    if not panels:
        fig = Figure(figsize=(6.0, 1.0))
        fig.text(0.5, 0.5, "No training: the weights were evaluated as loaded.", ha="center", va="center")
        return fig
    styles = styles or {}
    looks = {label: {"linewidth": 1.5, **style_for(styles, label, i)} for i, label in enumerate(frames)}
    margin_of = {label: float(m) for label, m in (margins or {}).items() if m and label in frames}
    handles = [handle(label, looks[label]) for label in frames]
    if "loss_triplet" in panels:
        handles += [handle(f"triplet margin {m:g}", MARGIN_STYLE) for m in sorted(set(margin_of.values()))]
    if "rank1" in panels:
        used = [c for c in SELECTION_MARKERS if any(c in df and df[c].notna().any() for df in frames.values())]
        if len(used) > 1:
            handles += [handle(SELECTION_MARKERS[c][1], {"color": "grey", "linestyle": ""}, SELECTION_MARKERS[c][0])
                        for c in used]
    fig, axes = grid(len(panels), extra_height=legend_rows(handles, 2))
    for ax, panel in zip(axes, panels):
        for label, df in frames.items():
            _draw(ax, panel, df, looks[label])
        if panel == "loss_triplet":
            for m in sorted(set(margin_of.values())):
                ax.axhline(m, label="_m", **MARGIN_STYLE)
        note = _fit_y(ax, panel, list(margin_of.values()))
        ax.set_title(_title(panel, frames, metrics or {}) + note, fontsize=10)
        ax.set_xlabel("epoch", fontsize=9)
        ax.tick_params(labelsize=9)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    legend_under(fig, handles)
    return fig
