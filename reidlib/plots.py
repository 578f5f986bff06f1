"""Figures and tables of the study: CMC curves, ranked-list grids, atomic figure saving, markdown tables.

Figures are built on :class:`matplotlib.figure.Figure` directly (no pyplot state), so they are never left open,
work in scripts without a display, and still render when a notebook cell returns them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from reidlib.figure_style import grid, handle, legend_beside, legend_rows, legend_under, style_for, wrap_title

CORRECT_COLOUR = (0, 170, 0)
WRONG_COLOUR = (220, 0, 0)
QUERY_COLOUR = (90, 90, 90)


def plot_cmc(results: Mapping[str, Mapping[str, Any]], max_rank: int = 50, title: str | None = None,
             ax: Axes | None = None, styles: Mapping[str, Mapping[str, Any]] | None = None) -> Figure:
    """CMC curves of several models on one axes (the paper's Figs 9-13, with the legend its code never drew).

    Args:
        results: label -> an :func:`reidlib.evaluation.evaluate` result (``cmc`` as fractions; ``mAP`` optional).
        max_rank: ranks shown (1..max_rank, clipped to each curve's length).
        title: axes title; default "Cumulative Match Characteristic (CMC)".
        ax: draw into these axes instead of a new figure.
        styles: label -> ``Axes.plot`` keywords (``color``, ``linestyle``, ``marker``), e.g.
            :func:`reidlib.figure_style.model_style`; labels without one take the palette in order.

    Returns:
        The figure. Legend entries read ``"<label> (R1 89.4%, mAP 75.5%)"`` and sit off the data: under the axes
        (a figure legend) when the figure is made here, right of ``ax`` otherwise; the y axis is in percent.
    """
    if not results:
        raise ValueError("plot_cmc needs at least one result")
    own = ax is None
    fig = Figure(figsize=(6.4, 4.0 + 0.22 * len(results)), layout="constrained") if own else ax.figure
    ax = fig.add_subplot() if own else ax
    top = 0.0
    for i, (label, res) in enumerate(results.items()):
        cmc = _cmc_percent(label, res, max_rank)
        text = f"{label} (R1 {cmc[0]:.1f}%" + (f", mAP {100.0 * float(res['mAP']):.1f}%)" if "mAP" in res else ")")
        style = {"marker": "o", "markersize": 3, "markevery": (i % 5, 5), **style_for(styles, label, i)}
        ax.plot(np.arange(1, len(cmc) + 1), cmc, linewidth=1.5, label=text, **style)
        top = max(top, float(cmc.max()))
    _cmc_axes(ax, max(len(ln.get_xdata()) for ln in ax.lines), top)
    ax.set_title(title or "Cumulative Match Characteristic (CMC)")
    if own:
        legend_under(fig, ax.get_lines(), ncol=1)
    else:
        legend_beside(ax)
    return fig


def plot_cmc_grid(panels: Mapping[str, Mapping[str, Mapping[str, Any]]], max_rank: int = 50,
                  styles: Mapping[str, Mapping[str, Any]] | None = None, title: str | None = None,
                  panel_colours: Mapping[str, str] | None = None) -> Figure:
    """Small multiples of CMC curves: one panel per entry of ``panels`` (its title -> {label: evaluate result}),
    one legend under the grid for every label.

    ``styles``: label -> ``Axes.plot`` keywords, the same in every panel. ``panel_colours``: panel title -> one
    colour for all its curves (then the legend shows the labels' line styles in black).
    """
    if not panels or not any(panels.values()):
        raise ValueError("plot_cmc_grid needs at least one panel with a curve: {title: {label: result}}")
    panels = {t: curves for t, curves in panels.items() if curves}
    labels = list(dict.fromkeys(label for curves in panels.values() for label in curves))
    look = {label: style_for(styles, label, i) for i, label in enumerate(labels)}
    handles = [handle(label, {**look[label], **({"color": "black"} if panel_colours else {})}) for label in labels]
    fig, axes = grid(len(panels), extra_height=legend_rows(handles, 3))
    for ax, (panel, curves) in zip(axes, panels.items()):
        top = 0.0
        for label, res in curves.items():
            cmc = _cmc_percent(label, res, max_rank)
            colour = {"color": panel_colours[panel]} if panel_colours and panel in panel_colours else {}
            ax.plot(np.arange(1, len(cmc) + 1), cmc, linewidth=1.5, **{**look[label], **colour})
            top = max(top, float(cmc.max()))
        _cmc_axes(ax, max(len(ln.get_xdata()) for ln in ax.lines), top, fontsize=9)
        ax.set_title(wrap_title(panel), fontsize=10)
    _outer_labels(axes, "rank", "identification accuracy (%)")
    if title:
        fig.suptitle(title)
    legend_under(fig, handles)
    return fig


def plot_roc_grid(panels: Mapping[str, Mapping[str, tuple[Any, Any]]],
                  styles: Mapping[str, Mapping[str, Any]] | None = None, title: str | None = None) -> Figure:
    """ROC curves as small multiples: one panel per entry of ``panels`` (title -> {label: (far, tar)} as
    fractions), a log FAR axis starting at the smallest positive FAR, TAR in percent, one legend under the grid."""
    if not panels or not any(panels.values()):
        raise ValueError("plot_roc_grid needs at least one panel with a curve: {title: {label: (far, tar)}}")
    panels = {t: curves for t, curves in panels.items() if curves}
    labels = list(dict.fromkeys(label for curves in panels.values() for label in curves))
    look = {label: style_for(styles, label, i) for i, label in enumerate(labels)}
    handles = [handle(label, look[label]) for label in labels]
    fig, axes = grid(len(panels), extra_height=legend_rows(handles, 3))
    for ax, (panel, curves) in zip(axes, panels.items()):
        smallest = 1.0
        for label, (far, tar) in curves.items():
            far, tar = np.asarray(far, dtype=np.float64), np.asarray(tar, dtype=np.float64)
            if far.shape != tar.shape or far.ndim != 1:
                raise ValueError(f"curve {label!r} of panel {panel!r}: far and tar must be 1-D arrays of one "
                                 f"length, got {far.shape} and {tar.shape}")
            pos = far > 0
            smallest = min(smallest, float(far[pos].min())) if pos.any() else smallest
            ax.step(far[pos], 100.0 * tar[pos], where="post", linewidth=1.5, **look[label])
        ax.set_xscale("log")
        ax.set_xlim(smallest, 1.0)
        ax.set_ylim(0.0, 101.0)
        ax.grid(True, which="major", alpha=0.35)
        ax.tick_params(labelsize=9)
        ax.set_title(wrap_title(panel), fontsize=10)
    _outer_labels(axes, "false accept rate", "true accept rate (%)")
    if title:
        fig.suptitle(title)
    legend_under(fig, handles)
    return fig


def _cmc_percent(label: str, res: Mapping[str, Any], max_rank: int) -> np.ndarray:
    if "cmc" not in res:
        raise KeyError(f"result {label!r} has no 'cmc' entry (expected an evaluate() result)")
    return 100.0 * np.asarray(res["cmc"], dtype=float).ravel()[:max_rank]


def _cmc_axes(ax: Axes, last_rank: int, top: float, fontsize: float | None = None) -> None:
    """Ranks 1..``last_rank`` (the longest curve drawn), accuracy 0 to the next ten above ``top`` (%)."""
    ax.set_xlim(1, max(last_rank, 2))
    ax.set_ylim(0.0, min(100.0, 10.0 * np.ceil(top / 10.0 + 0.05)) + 0.5)
    ax.grid(True, alpha=0.35)
    if fontsize is None:
        ax.set_xlabel("Rank")
        ax.set_ylabel("Identification accuracy (%)")
    else:
        ax.tick_params(labelsize=fontsize)


def _outer_labels(axes: Sequence[Axes], xlabel: str, ylabel: str) -> None:
    """Axis labels on the left column and on the lowest panel of each column only."""
    cols = axes[0].get_subplotspec().get_gridspec().ncols
    for i, ax in enumerate(axes):
        if i % cols == 0:
            ax.set_ylabel(ylabel, fontsize=9)
        if i + cols >= len(axes):
            ax.set_xlabel(xlabel, fontsize=9)


def _bordered(path: str | Path, colour: tuple[int, int, int], width: int, height: int, border: int) -> np.ndarray:
    from PIL import ImageOps

    from reidlib.data.images import read_image

    img = read_image(path).resize((width, height))
    return np.asarray(ImageOps.expand(img, border=border, fill=colour))


def plot_ranked_list(query_path: str | Path, gallery_paths: Sequence[str | Path], correct: Sequence[bool],
                     out_path: str | Path | None = None, distances: Sequence[float] | None = None,
                     width: int = 64, height: int = 128, border: int = 4, title: str | None = None) -> Figure:
    """One query and its ranked gallery images in a row, green border = same identity, red = different.

    Args:
        query_path: the query image; ``gallery_paths``: its top-k gallery images, best first.
        correct: one bool per gallery image.
        out_path: also save the figure there (see :func:`save_figure`).
        distances: optional, printed under each gallery image.
        width, height, border: size of each tile in pixels.
    """
    if len(gallery_paths) != len(correct) or (distances is not None and len(distances) != len(correct)):
        raise ValueError("gallery_paths, correct (and distances) must have the same length")
    n = len(gallery_paths) + 1
    fig = Figure(figsize=(1.0 * n + 0.3, 2.6))
    axes = fig.subplots(1, n, squeeze=False)[0]
    tiles = [(query_path, QUERY_COLOUR, "query")]
    for r, (p, ok) in enumerate(zip(gallery_paths, correct)):
        label = f"{r + 1}" + (f"\n{distances[r]:.3f}" if distances is not None else "")
        tiles.append((p, CORRECT_COLOUR if ok else WRONG_COLOUR, label))
    for ax, (p, colour, label) in zip(axes, tiles):
        ax.imshow(_bordered(p, colour, width, height, border))
        ax.set_title(label, fontsize=7)
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=8)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.8 if title else 0.86, wspace=0.08)
    if out_path is not None:
        save_figure(fig, out_path)
    return fig


def _as_items(items: Any) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(paths, pids, camids) from a FeatureSet-like object or a sequence of (path, pid, camid)."""
    if hasattr(items, "paths") and hasattr(items, "pids"):
        return list(items.paths), np.asarray(items.pids), np.asarray(items.camids)
    paths, pids, camids = zip(*items) if len(items) else ((), (), ())
    return [str(p) for p in paths], np.asarray(pids, dtype=np.int64), np.asarray(camids, dtype=np.int64)


def ranked_lists_for(distmat: Any, query_items: Any, gallery_items: Any, topk: int = 10, num_queries: int = 10,
                     out_dir: str | Path = "ranked_lists", query_indices: Sequence[int] | None = None,
                     protocol: str = "market") -> list[Path]:
    """Write one ranked-list grid per query (torchreid's ``visrank``, as images instead of copied files).

    Args:
        distmat: (Q, G) distances (numpy / torch), or a dict holding one under ``"distmat"``.
        query_items, gallery_items: :class:`~reidlib.evaluation.FeatureSet` or sequences of ``(path, pid, camid)``.
        topk: gallery images per row.
        num_queries: how many queries, evenly spaced over the query list (ignored with ``query_indices``).
        out_dir: folder for ``<index>_<query file stem>.png``. Real pedestrians' crops belong outside the repo.
        protocol: ``"market"`` hides same-identity same-camera gallery images (they are not ranked in evaluation).

    Returns:
        The written paths.
    """
    from reidlib.evaluation.rank import PROTOCOLS, as_numpy_rows, check_choice, stable_topk

    check_choice("protocol", protocol, PROTOCOLS)
    d = as_numpy_rows(distmat["distmat"] if isinstance(distmat, Mapping) else distmat)
    q_paths, q_pids, q_cams = _as_items(query_items)
    g_paths, g_pids, g_cams = _as_items(gallery_items)
    if d.shape != (len(q_paths), len(g_paths)):
        raise ValueError(f"distmat shape {tuple(d.shape)} does not match {len(q_paths)} queries x "
                         f"{len(g_paths)} gallery items")
    if query_indices is None:
        n = min(int(num_queries), len(q_paths))
        query_indices = np.unique(np.linspace(0, len(q_paths) - 1, n).round().astype(int)) if n else []
    out_dir = Path(out_dir)
    written = []
    for qi in query_indices:
        row = d[qi].astype(np.float64)
        if protocol == "market":
            row[(g_pids == q_pids[qi]) & (g_cams == q_cams[qi])] = np.inf
        top = [j for j in stable_topk(row[None], topk)[0] if np.isfinite(row[j])]
        stem = Path(q_paths[qi]).stem
        written.append(out_dir / f"{qi:05d}_{stem}.png")
        plot_ranked_list(q_paths[qi], [g_paths[j] for j in top], [bool(g_pids[j] == q_pids[qi]) for j in top],
                         out_path=written[-1], distances=[float(row[j]) for j in top],
                         title=f"query {stem} (id {q_pids[qi]})")
    return written


def save_figure(fig: Figure, path: str | Path, dpi: int = 150, **kwargs: Any) -> Path:
    """Save ``fig`` atomically (temporary file in the target folder, then rename) and close it.

    Closing keeps the figure out of a notebook's inline output: a figure made of real pedestrians' crops that is
    saved outside the repository must not reappear inside an executed notebook under ``results/``.
    The format comes from the suffix (png, pdf, svg, ...); parent folders are created. Returns the path.
    """
    from reidlib.io import atomic_path

    path = Path(path)
    try:
        with atomic_path(path, suffix=path.suffix) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or "png", **kwargs)
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return path


def _cell(value: Any, floatfmt: str) -> str:
    if isinstance(value, (float, np.floating)):
        text = "" if np.isnan(value) else format(float(value), floatfmt)
    elif value is None:
        text = ""
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(table: Any, floatfmt: str = ".1f", index: bool = False) -> str:
    """A GitHub-flavoured markdown table (no ``tabulate`` needed).

    Args:
        table: a pandas DataFrame, or a list of dicts (one per row; keys are the columns).
        floatfmt: format of float cells (NaN and None become empty cells).
        index: also write a DataFrame's index as the first column(s).

    Numeric columns are right-aligned; ``|`` inside cells is escaped.
    """
    import pandas as pd

    df = pd.DataFrame(table) if not isinstance(table, pd.DataFrame) else table
    if index:
        df = df.reset_index()
    header = [str(c) for c in df.columns]
    cols = [df.iloc[:, i] for i in range(df.shape[1])]
    align = ["---:" if pd.api.types.is_numeric_dtype(c) and not pd.api.types.is_bool_dtype(c) else "---" for c in cols]
    rows = [[_cell(v, floatfmt) for v in row] for row in df.itertuples(index=False, name=None)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
