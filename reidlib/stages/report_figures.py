"""The report stage's figures: CMC and ROC small multiples, learning curves per training set, ranked lists.

Every figure draws a model in the same colour (:func:`reidlib.figure_style.model_style`), keeps legends off the
data and carries a human caption in its PNG metadata (``Title``), which :func:`figure_caption` reads back for the
report. All accuracies are percentages (0-100).
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from reidlib.plots import save_figure

from .distance import plot_roc_by_dataset
from .ids import FINETUNE_STAGE, TRAIN_STAGE, in_stage
from .records import FinetuneRecord, Runs, TrainRecord
from .report_runs import distance_run

_KIND_ORDER = {"test": 0, "zero-shot": 1, "fine-tuned": 2}


def _style_of(run_id: str, m: TrainRecord) -> dict:
    """The line style of a run's model: by its model run name, else its model name, else its run id."""
    from reidlib.figure_style import model_style

    return model_style(m.model_run or m.model_name or run_id)


def _dataset_labels(runs: Runs) -> dict[str, str]:
    """Dataset key -> its label, from the runs that trained or fine-tuned on it."""
    return {m.dataset_key: m.dataset_label for m in runs.values()
            if isinstance(m, TrainRecord) and m.has("dataset_key") and m.has("dataset_label")}


def _source_label(m: FinetuneRecord, labels: dict[str, str]) -> str:
    """The label of a fine-tune's source set (its profile key where no run records one)."""
    key = m.source_key or ""
    return labels.get(key, key)


def cmc_panels(runs: Runs) -> tuple[dict[str, dict], dict[str, dict]]:
    """(panel title -> {model label: evaluation}, model label -> line style) for the report's CMC grid.

    One panel per evaluated split: each training set's test split, then the zero-shot evaluations, then the
    fine-tuned ones; titles read e.g. "CUHK03-NP" or "VIPeR" over "zero-shot from CUHK01" (two lines).
    """
    labels = _dataset_labels(runs)
    keyed: dict[tuple, dict] = {}
    styles: dict[str, dict] = {}
    for run_id, m in sorted(runs.items()):
        if in_stage(run_id, TRAIN_STAGE):
            evs = [(ev, "test" if ev.role == "test" else "zero-shot") for ev in m.evaluations.values()]
            source = m.dataset_label
        elif in_stage(run_id, FINETUNE_STAGE) and m.evaluation("fine-tuned") is not None:
            evs = [(m.evaluation("fine-tuned"), "fine-tuned")]
            source = _source_label(m, labels)
        else:
            continue
        for ev, kind in evs:
            title = ev.label if kind == "test" else f"{ev.label}\n{kind} from {source}"
            keyed.setdefault((_KIND_ORDER[kind], title), {})[m.model_label] = ev.as_eval()
            styles[m.model_label] = _style_of(run_id, m)
    return {title: curves for (_, title), curves in sorted(keyed.items())}, styles


def learning_curve_groups(runs: Runs) -> dict[str, dict[str, TrainRecord]]:
    """Runs that trained, grouped into one learning-curve figure per training set: caption -> {run id: record}.

    Training runs group by dataset ("Training on CUHK03-NP"), fine-tuning runs by source and target ("Fine-tuning
    on CUHK01 from CUHK03-NP"), so within a figure each model appears once and keeps its colour.
    """
    labels = _dataset_labels(runs)
    groups: dict[tuple, dict] = {}
    for run_id, m in sorted(runs.items()):
        if not in_stage(run_id, TRAIN_STAGE, FINETUNE_STAGE) or not m.history:
            continue
        if in_stage(run_id, TRAIN_STAGE):
            key = (0, f"Training on {m.dataset_label}")
        else:
            key = (1, f"Fine-tuning on {m.dataset_label} from {_source_label(m, labels)}")
        groups.setdefault(key, {})[run_id] = m
    return {caption: group for (_, caption), group in sorted(groups.items())}


def report_figures(runs: Runs, fig_dir: Path, own_recipe_only: bool = False) -> list[Path]:
    """Write the report's figures into ``fig_dir`` and return their paths: the CMC grid (a panel per evaluated
    split, every model on it: the paper's Figs 9-13), the verification ROC grid (a panel per dataset) and one
    learning-curve figure per training set. Each PNG carries its caption (see :func:`figure_caption`).
    ``own_recipe_only``: ``runs`` are the profile's own runs of a profile with variants, and the learning-curve
    captions say so."""
    from reidlib.plots import plot_cmc_grid

    fig_dir = Path(fig_dir)
    written = []
    panels, styles = cmc_panels(runs)
    if panels:
        caption = "CMC curves: every model on each evaluated split"
        fig = plot_cmc_grid(panels, styles=styles, title=caption)
        written.append(save_figure(fig, fig_dir / "cmc.png", metadata={"Title": caption}))
    roc = plot_roc_by_dataset(distance_run(runs).roc_dict())
    if roc is not None:
        caption = "Verification ROC: every model on each test split (cosine distance)"
        written.append(save_figure(roc, fig_dir / "roc.png", metadata={"Title": caption}))
    for caption, group in learning_curve_groups(runs).items():
        fig = plot_learning_curves(group, title=caption)
        name = "learning_curves_" + _slug(caption.replace("Training on ", "").replace("Fine-tuning on ", "ft_"))
        whose = " (the profile's own recipe)" if own_recipe_only else ""
        written.append(save_figure(fig, fig_dir / f"{name}.png",
                                   metadata={"Title": f"Learning curves: {caption}{whose}"}))
    return written


def ranked_list_examples(runs: Runs, out_dir: str | Path, num_queries: int = 4, topk: int = 8,
                         metric: str = "euclidean") -> list[Path]:
    """Ranked lists (query, then its top-k gallery images; green border = same identity) for each trained model.

    Uses the test features each 10_train run stored. Write these for synthetic data only: figures made of real
    pedestrians' crops belong outside the repository (the report notebook sends them to the work directory).
    """
    from reidlib.evaluation import FeatureSet, distance
    from reidlib.plots import ranked_lists_for

    written: list[Path] = []
    for run_id, m in sorted(runs.items()):
        feats = m.stored_features("test") if in_stage(run_id, TRAIN_STAGE) else None
        if feats is None or not feats.exist():
            continue
        qf, gf = FeatureSet.load(feats.query), FeatureSet.load(feats.gallery)
        d = distance(qf.feats, gf.feats, metric=metric, normalize=True)
        written += ranked_lists_for(d, qf, gf, topk=topk, num_queries=num_queries,
                                    out_dir=Path(out_dir) / _slug(run_id.split("/", 1)[1]),
                                    protocol=feats.protocol or "market")
    return written


def plot_learning_curves(runs: Mapping[str, TrainRecord], title: str | None = None):
    """Learning curves of training runs (run id -> record): a panel per loss term, train accuracy and the
    selection split's rank-1 (%), one colour per model, one legend under the grid
    (:func:`reidlib.learning_curves.plot_histories`). Labels add the dataset where the runs trained on several."""
    from reidlib.learning_curves import plot_histories

    several = len({m.dataset_label for m in runs.values()}) > 1
    histories, styles, margins, metrics = {}, {}, {}, {}
    for run_id, m in sorted(runs.items()):
        label = f"{m.model_label} on {m.dataset_label}" if several else m.model_label
        histories[label] = m.history_dicts()
        styles[label] = _style_of(run_id, m)
        recipe = m.train.recipe
        loss = dict(recipe.loss_kwargs or {}) if recipe is not None else {}
        margins[label] = None if recipe is None or loss.get("soft_margin") else recipe.triplet_margin
        metrics[label] = str(loss.get("metric", "euclidean"))
    return plot_histories(histories, styles=styles, margins=margins, title=title, metrics=metrics)


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
