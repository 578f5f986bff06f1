"""The report stage's figures: CMC per evaluated dataset, ROC per dataset, loss and learning curves, ranked lists.

Split from :mod:`reidlib.stages.report` (tables and text); the report notebook imports both.
All accuracies are percentages (0-100).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from reidlib.plots import save_figure

from .common import as_eval
from .distance import plot_roc_by_dataset


def _distance_run(runs: dict) -> dict:
    return next((m for run_id, m in runs.items() if run_id.startswith("30_distance_study/")), {})


def report_figures(runs: dict, fig_dir: Path) -> list[Path]:
    """CMC per evaluated dataset with every model on it (Figs 9-13), and the training curves of every run."""
    from reidlib.plots import plot_cmc

    fig_dir = Path(fig_dir)
    by_dataset: dict[str, dict] = {}
    for run_id, m in runs.items():
        if run_id.startswith("10_train/"):
            for ev in m["evaluations"].values():
                tag = f"{ev['label']}" + ("" if ev["role"] == "test" else f" (zero-shot from {m['dataset_label']})")
                by_dataset.setdefault(tag, {})[m["model_label"]] = as_eval(ev)
        elif run_id.startswith("20_finetune/"):
            ev = m["evaluations"]["fine-tuned"]
            tag = f"{ev['label']} (fine-tuned from {m['source_key']})"
            by_dataset.setdefault(tag, {})[m["model_label"]] = as_eval(ev)
    written = []
    for tag, curves in sorted(by_dataset.items()):
        fig = plot_cmc(curves, title=f"CMC: models trained for {tag}")
        written.append(save_figure(fig, fig_dir / f"cmc_{_slug(tag)}.png"))
    for data, fig in plot_roc_by_dataset(_distance_run(runs).get("roc") or {}).items():
        written.append(save_figure(fig, fig_dir / f"roc_{_slug(data)}.png"))
    loss_runs = {rid: m for rid, m in runs.items() if m.get("history")}
    if loss_runs:
        written.append(save_figure(plot_loss_curves(loss_runs), fig_dir / "loss_curves.png"))
    trained = {rid: m for rid, m in loss_runs.items() if rid.startswith("10_train/")}
    if trained:
        written.append(save_figure(plot_learning_curves(trained), fig_dir / "learning_curves.png"))
    return written


def ranked_list_examples(runs: dict, out_dir: str | Path, num_queries: int = 4, topk: int = 8,
                         metric: str = "euclidean") -> list[Path]:
    """Ranked lists (query, then its top-k gallery images; green border = same identity) for each trained model.

    Uses the test features each 10_train run stored. Write these for synthetic data only: figures made of real
    pedestrians' crops belong outside the repository (the report notebook sends them to the work directory).
    """
    from reidlib.evaluation import FeatureSet, distance
    from reidlib.plots import ranked_lists_for

    written: list[Path] = []
    for run_id, m in sorted(runs.items()):
        feats = m.get("features", {}).get("test") if run_id.startswith("10_train/") else None
        if not feats or not Path(feats["query"]).is_file():
            continue
        qf, gf = FeatureSet.load(feats["query"]), FeatureSet.load(feats["gallery"])
        d = distance(qf.feats, gf.feats, metric=metric, normalize=True)
        written += ranked_lists_for(d, qf, gf, topk=topk, num_queries=num_queries,
                                    out_dir=Path(out_dir) / _slug(run_id.split("/", 1)[1]),
                                    protocol=feats.get("protocol", "market"))
    return written


def plot_loss_curves(runs: dict):
    """Total training loss per epoch for every run, one panel per dataset."""
    import matplotlib.pyplot as plt

    groups: dict[str, list] = {}
    for rid, m in runs.items():
        groups.setdefault(f"{rid.split('/')[0]} · {m['dataset_label']}", []).append(m)
    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 3.5), squeeze=False)
    for ax, (title, ms) in zip(axes[0], sorted(groups.items())):
        for m in ms:
            df = pd.DataFrame(m["history"])
            ax.plot(df["epoch"], df["loss"], marker=".", label=m["model_label"])
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_learning_curves(runs: dict):
    """Per epoch, one line per training run: ID loss, triplet loss (dashed grey: its margin), train accuracy (%) and
    the rank-1 (%) of whatever split selected the model (held-out ids; dashed: the test split, for paper-code runs).

    A 2x2 grid with one colour per run in every panel and a single legend under the grid, so long run labels never
    cover the curves."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    several_datasets = len({m["dataset_label"] for m in runs.values()}) > 1
    fig, axes_grid = plt.subplots(2, 2)
    axes = list(axes_grid.flat)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    margins: set = set()
    handles: list = []
    for i, (rid, m) in enumerate(sorted(runs.items())):
        df = pd.DataFrame(m["history"])
        label = f"{m['model_label']} on {m['dataset_label']}" if several_datasets else m["model_label"]
        colour = colours[i % len(colours)]
        if "loss_id" in df:
            axes[0].plot(df["epoch"], df["loss_id"], marker=".", color=colour, label=label)
        if "loss_triplet" in df and (df["loss_triplet"] > 0).any():
            axes[1].plot(df["epoch"], df["loss_triplet"], marker=".", color=colour, label=label)
            margins.add((m["train"].get("recipe") or {}).get("triplet_margin"))
        if "train_acc" in df:
            axes[2].plot(df["epoch"], 100.0 * df["train_acc"], marker=".", color=colour, label=label)
        for col in ("val_rank1", "test_rank1"):
            if col in df and df[col].notna().any():
                sub = df[df[col].notna()]
                test = col == "test_rank1"
                axes[3].plot(sub["epoch"], 100.0 * sub[col], marker="o", markersize=3, color=colour,
                             linestyle="--" if test else "-",
                             label=f"{label} ({'TEST split' if test else 'held-out ids'})")
        handles.append(Line2D([], [], color=colour, marker=".", label=label))
    margin_values = sorted(x for x in margins if x)
    for margin in margin_values:
        axes[1].axhline(margin, color="grey", linestyle="--", linewidth=1, label=f"margin {margin}")
        handles.append(Line2D([], [], color="grey", linestyle="--", label=f"triplet margin {margin}"))
    triplet_title = "triplet loss (batch-hard)"
    top = 5 * margin_values[-1] if margin_values else 0.0
    if top and any(max(ln.get_ydata()) > top for ln in axes[1].lines):
        axes[1].set_ylim(0, top)  # the first epochs' values would flatten the part that matters: near the margin
        triplet_title += f"; axis cut at {top:g}"
    titles = ("ID loss (label-smoothed CE)", triplet_title, "train accuracy (%)",
              "rank-1 (%) of the selection split (dashed: the TEST split)")
    for ax, title in zip(axes, titles):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if not ax.lines:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes)
    fig.set_size_inches(11, 6.0 + 0.2 * len(handles))  # one legend row per run and per margin
    legend_height = 0.01 + 0.03 * len(handles)
    fig.legend(handles=handles, loc="lower center", ncol=1, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, legend_height, 1, 1))
    return fig


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_").lower()


def figure_caption(path: Path) -> str:
    """The caption of a report figure, from its file name."""
    stem = path.stem
    if stem.startswith("cmc_"):
        return f"CMC curves: {stem[4:].replace('-', ' ')}"
    return stem.replace("_", " ")
