"""The report stage's figures: CMC and ROC small multiples, learning curves per training set, ranked lists.

Every figure draws a model in the same colour (:func:`reidlib.figure_style.model_style`), keeps legends off the
data and carries a human caption in its PNG metadata (``Title``), which :func:`figure_caption` reads back for the
report. All accuracies are percentages (0-100).
"""
from __future__ import annotations

from pathlib import Path

from reidlib.plots import save_figure

from .common import as_eval
from .distance import plot_roc_by_dataset
from .ids import FINETUNE_STAGE, TRAIN_STAGE, in_stage
from .report_runs import distance_run

_KIND_ORDER = {"test": 0, "zero-shot": 1, "fine-tuned": 2}


def _style_of(run_id: str, m: dict) -> dict:
    """The line style of a run's model: by its model run name, else its model name, else its run id."""
    from reidlib.figure_style import model_style

    return model_style(m.get("model_run") or m.get("model_name") or run_id)


def _dataset_labels(runs: dict) -> dict[str, str]:
    """Dataset key -> its label, from the runs that trained or fine-tuned on it."""
    return {m["dataset_key"]: m["dataset_label"] for m in runs.values() if "dataset_key" in m and "dataset_label" in m}


def cmc_panels(runs: dict) -> tuple[dict[str, dict], dict[str, dict]]:
    """(panel title -> {model label: evaluation}, model label -> line style) for the report's CMC grid.

    One panel per evaluated split: each training set's test split, then the zero-shot evaluations, then the
    fine-tuned ones; titles read e.g. "CUHK03-NP" or "VIPeR" over "zero-shot from CUHK01" (two lines).
    """
    labels = _dataset_labels(runs)
    keyed: dict[tuple, dict] = {}
    styles: dict[str, dict] = {}
    for run_id, m in sorted(runs.items()):
        if in_stage(run_id, TRAIN_STAGE):
            evs = [(ev, "test" if ev["role"] == "test" else "zero-shot") for ev in m["evaluations"].values()]
            source = m["dataset_label"]
        elif in_stage(run_id, FINETUNE_STAGE) and "fine-tuned" in m["evaluations"]:
            evs = [(m["evaluations"]["fine-tuned"], "fine-tuned")]
            source = labels.get(m.get("source_key", ""), m.get("source_key", ""))
        else:
            continue
        for ev, kind in evs:
            title = ev["label"] if kind == "test" else f"{ev['label']}\n{kind} from {source}"
            keyed.setdefault((_KIND_ORDER[kind], title), {})[m["model_label"]] = as_eval(ev)
            styles[m["model_label"]] = _style_of(run_id, m)
    return {title: curves for (_, title), curves in sorted(keyed.items())}, styles


def learning_curve_groups(runs: dict) -> dict[str, dict]:
    """Runs that trained, grouped into one learning-curve figure per training set: caption -> {run id: metrics}.

    Training runs group by dataset ("Training on CUHK03-NP"), fine-tuning runs by source and target ("Fine-tuning
    on CUHK01 from CUHK03-NP"), so within a figure each model appears once and keeps its colour.
    """
    labels = _dataset_labels(runs)
    groups: dict[tuple, dict] = {}
    for run_id, m in sorted(runs.items()):
        if not m.get("history"):
            continue
        if in_stage(run_id, TRAIN_STAGE):
            key = (0, f"Training on {m['dataset_label']}")
        elif in_stage(run_id, FINETUNE_STAGE):
            source = labels.get(m.get("source_key", ""), m.get("source_key", ""))
            key = (1, f"Fine-tuning on {m['dataset_label']} from {source}")
        else:
            continue
        groups.setdefault(key, {})[run_id] = m
    return {caption: group for (_, caption), group in sorted(groups.items())}


def report_figures(runs: dict, fig_dir: Path) -> list[Path]:
    """Write the report's figures into ``fig_dir`` and return their paths: the CMC grid (a panel per evaluated
    split, every model on it: the paper's Figs 9-13), the verification ROC grid (a panel per dataset) and one
    learning-curve figure per training set. Each PNG carries its caption (see :func:`figure_caption`)."""
    from reidlib.plots import plot_cmc_grid

    fig_dir = Path(fig_dir)
    written = []
    panels, styles = cmc_panels(runs)
    if panels:
        caption = "CMC curves: every model on each evaluated split"
        fig = plot_cmc_grid(panels, styles=styles, title=caption)
        written.append(save_figure(fig, fig_dir / "cmc.png", metadata={"Title": caption}))
    roc = plot_roc_by_dataset(distance_run(runs).get("roc") or {})
    if roc is not None:
        caption = "Verification ROC: every model on each test split (cosine distance)"
        written.append(save_figure(roc, fig_dir / "roc.png", metadata={"Title": caption}))
    for caption, group in learning_curve_groups(runs).items():
        fig = plot_learning_curves(group, title=caption)
        name = "learning_curves_" + _slug(caption.replace("Training on ", "").replace("Fine-tuning on ", "ft_"))
        written.append(save_figure(fig, fig_dir / f"{name}.png", metadata={"Title": f"Learning curves: {caption}"}))
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
        feats = m.get("features", {}).get("test") if in_stage(run_id, TRAIN_STAGE) else None
        if not feats or not Path(feats["query"]).is_file():
            continue
        qf, gf = FeatureSet.load(feats["query"]), FeatureSet.load(feats["gallery"])
        d = distance(qf.feats, gf.feats, metric=metric, normalize=True)
        written += ranked_lists_for(d, qf, gf, topk=topk, num_queries=num_queries,
                                    out_dir=Path(out_dir) / _slug(run_id.split("/", 1)[1]),
                                    protocol=feats.get("protocol", "market"))
    return written


def plot_learning_curves(runs: dict, title: str | None = None):
    """Learning curves of training runs (run id -> metrics.json): a panel per loss term, train accuracy and the
    selection split's rank-1 (%), one colour per model, one legend under the grid
    (:func:`reidlib.learning_curves.plot_histories`). Labels add the dataset where the runs trained on several."""
    from reidlib.learning_curves import plot_histories

    several = len({m["dataset_label"] for m in runs.values()}) > 1
    histories, styles, margins = {}, {}, {}
    for run_id, m in sorted(runs.items()):
        label = f"{m['model_label']} on {m['dataset_label']}" if several else m["model_label"]
        histories[label] = m.get("history") or []
        styles[label] = _style_of(run_id, m)
        margins[label] = (m.get("train", {}).get("recipe") or {}).get("triplet_margin")
    return plot_histories(histories, styles=styles, margins=margins, title=title)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_").lower()


def figure_caption(path: Path) -> str:
    """The caption of a report figure: the ``Title`` its PNG carries, else its file name in words."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            title = (getattr(img, "text", None) or {}).get("Title")
    except OSError:
        title = None
    return title or Path(path).stem.replace("_", " ").strip().capitalize()
