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

CORRECT_COLOUR = (0, 170, 0)
WRONG_COLOUR = (220, 0, 0)
QUERY_COLOUR = (90, 90, 90)


def plot_cmc(results: Mapping[str, Mapping[str, Any]], max_rank: int = 50, title: str | None = None,
             ax: Axes | None = None) -> Figure:
    """CMC curves of several models on one figure (the paper's Figs 9-13, with the legend its code never drew).

    Args:
        results: label -> an :func:`reidlib.evaluation.evaluate` result (``cmc`` as fractions; ``mAP`` optional).
        max_rank: ranks shown (1..max_rank, clipped to each curve's length).
        title: axes title; default "Cumulative Match Characteristic (CMC)".
        ax: draw into these axes instead of a new figure.

    Returns:
        The figure. Labels read ``"<label> (R1 89.4%, mAP 75.5%)"``; the y axis is in percent.
    """
    if not results:
        raise ValueError("plot_cmc needs at least one result")
    fig = ax.figure if ax is not None else Figure(figsize=(6.4, 4.8))
    ax = ax if ax is not None else fig.add_subplot()
    for label, res in results.items():
        if "cmc" not in res:
            raise KeyError(f"result {label!r} has no 'cmc' entry (expected an evaluate() result)")
        cmc = 100.0 * np.asarray(res["cmc"], dtype=float).ravel()[:max_rank]
        text = f"{label} (R1 {cmc[0]:.1f}%" + (f", mAP {100.0 * float(res['mAP']):.1f}%)" if "mAP" in res else ")")
        ax.plot(np.arange(1, len(cmc) + 1), cmc, marker="o", markersize=2.5, linewidth=1.4, label=text)
    ax.set_xlabel("Rank")
    ax.set_ylabel("Identification accuracy (%)")
    ax.set_title(title or "Cumulative Match Characteristic (CMC)")
    ax.set_xlim(1, max_rank)
    ax.set_ylim(top=100.5)
    ax.grid(True, alpha=0.35)
    ax.legend(loc="lower right", fontsize="small")
    return fig


def _bordered(path: str | Path, colour: tuple[int, int, int], width: int, height: int, border: int) -> np.ndarray:
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        img = img.convert("RGB").resize((width, height))
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
