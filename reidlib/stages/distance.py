"""Stage ``30_distance_study``: the five inference distances (and re-ranking) on every model's stored features.

Nothing is re-extracted: the test features stored by ``10_train`` are ranked under each metric, with and without
L2 normalisation (recorded in every row).
"""
from __future__ import annotations

import time
from collections.abc import Iterable

import numpy as np
import pandas as pd

from .common import read_metrics, require_file, summarize


def distance_study(train_metrics: Iterable[str], metrics: list[str], normalize: list[bool], p: float = 3,
                   rerank: bool = True, evaluation: dict | None = None) -> tuple[pd.DataFrame, dict]:
    """Evaluate every trained model's stored test features under each metric and normalisation.

    With ``rerank``, one more row per model: k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3) over squared
    euclidean distances of L2-normalised features, BoT's setting, whatever the profile's evaluation metric.

    Returns:
        (table with one row per run x metric x normalisation, curves {run: {metric: evaluate-result}})
    """
    from reidlib.evaluation import FeatureSet, evaluate_features

    evaluation = evaluation or {}
    rows, curves = [], {}
    for path in train_metrics:
        m = read_metrics(path)
        feats = m.get("features", {}).get("test")
        if not feats:
            continue
        hint = f"10_train/{m['dataset_key']}-{m['model_run']}"
        qf = FeatureSet.load(require_file(feats["query"], hint))
        gf = FeatureSet.load(require_file(feats["gallery"], hint))
        run = f"{m['dataset_key']}-{m['model_run']}"
        curves[run] = {}
        settings = [(metric, norm, None) for metric in metrics for norm in normalize]
        if rerank:  # BoT's setting: k-reciprocal re-ranking over squared euclidean on L2-normalised features
            settings.append(("sqeuclidean", True, "k-reciprocal"))
        for metric, norm, rr in settings:
            t0 = time.time()
            res = evaluate_features(qf.feats, gf.feats, qf.pids, gf.pids, qf.camids, gf.camids, metric=metric,
                                    normalize=norm, p=p, max_rank=evaluation.get("max_rank", 50),
                                    protocol=feats.get("protocol", "market"), rerank=bool(rr) or None)
            rows.append({"run": run, "model": m["model_label"], "dataset": m["dataset_label"], "metric": metric,
                         "normalized": norm, "rerank": rr or "none", **summarize(res),
                         "seconds": round(time.time() - t0, 2), "p": str(p) if metric == "minkowski" else "-"})
            if norm and not rr:
                curves[run][metric] = res
    return pd.DataFrame(rows), curves


def pivot_distance_table(table: pd.DataFrame) -> pd.DataFrame:
    """Rank-1 / mAP per model x dataset (rows) and metric (columns)."""
    if table.empty:
        return table
    t = table.copy()
    t["setting"] = t["metric"] + np.where(t["normalized"], " (L2)", "") + np.where(t["rerank"] != "none", " +RK", "")
    t["R1/mAP"] = t["R1"].map("{:.1f}".format) + " / " + t["mAP"].map("{:.1f}".format)
    return t.pivot_table(index=["model", "dataset"], columns="setting", values="R1/mAP", aggfunc="first")


METRIC_STYLES = {  # one line style and marker per distance, the same in every panel
    "euclidean": {"linestyle": "-", "marker": "o"},
    "cosine": {"linestyle": "--", "marker": "s"},
    "correlation": {"linestyle": ":", "marker": "^"},
    "cityblock": {"linestyle": "-.", "marker": "D"},
    "minkowski": {"linestyle": (0, (5, 1)), "marker": "v"},
}


def plot_distance_cmc(curves: dict, table: pd.DataFrame | None = None):
    """One figure for the whole study: a CMC panel per trained model, drawn in the model's colour, a curve per
    metric (line style and marker), one legend under the grid.

    ``curves``: ``{run: {metric: evaluate result}}`` from :func:`distance_study`; ``table`` (its rows) names each
    panel with the model and dataset labels (else the run id).
    """
    from reidlib.figure_style import model_style
    from reidlib.plots import plot_cmc_grid

    rows = [] if table is None or table.empty else table[["run", "model", "dataset"]].to_dict("records")
    names = {r["run"]: (r["model"], r["dataset"]) for r in rows}
    datasets = {names[run][1] for run in curves if run in names}
    one_dataset = len(datasets) == 1 and all(run in names for run in curves)
    panels, colours = {}, {}
    for run, per_metric in curves.items():
        model, data = names.get(run, (run, ""))
        panel = model if one_dataset or not data else f"{model}\non {data}"
        panels[panel], colours[panel] = per_metric, model_style(run)["color"]
    metrics = list(dict.fromkeys(metric for per in curves.values() for metric in per))
    styles = {metric: {"markevery": (2 * i, 10), "markersize": 3.5, **METRIC_STYLES.get(metric, {})}
              for i, metric in enumerate(metrics)}
    title = "CMC by distance, L2-normalised features" + (f", {datasets.pop()}" if one_dataset else "")
    return plot_cmc_grid(panels, styles=styles, title=title, panel_colours=colours)


# ----------------------------------------------------------------------------------------------------------------
# verification: the siamese view (same person or not?) on the same stored features
# ----------------------------------------------------------------------------------------------------------------
VERIFICATION_IGNORE = (-1, 0)  # junk images and Market-style distractors (pid 0: many people under one label)
ROC_GRID = np.logspace(-6, 0, 121)  # FAR values at which ROC curves are stored (fractions)


def _test_split(m: dict):
    """The stored test features of a training run as one split: query and gallery stacked."""
    from reidlib.evaluation import FeatureSet

    feats = m["features"]["test"]
    hint = f"10_train/{m['dataset_key']}-{m['model_run']}"
    qf = FeatureSet.load(require_file(feats["query"], hint))
    gf = FeatureSet.load(require_file(feats["gallery"], hint))
    return (np.concatenate([qf.feats, gf.feats]), np.concatenate([qf.pids, gf.pids]),
            np.concatenate([qf.camids, gf.camids]))


def roc_on_grid(far: np.ndarray, tar: np.ndarray, grid: np.ndarray = ROC_GRID) -> list[float]:
    """TAR at each FAR of ``grid``: the largest TAR of any ROC vertex with FAR <= that value (a step curve)."""
    idx = np.searchsorted(np.asarray(far), grid, side="right") - 1
    return [float(np.asarray(tar)[i]) if i >= 0 else 0.0 for i in idx]


def _verification_row(m: dict, method: str, res: dict) -> dict:
    return {"run": f"{m['dataset_key']}-{m['model_run']}", "model": m["model_label"], "dataset": m["dataset_label"],
            "method": method, "AUC": 100 * res["auc"], "EER": 100 * res["eer"],
            "TAR@FAR=1e-3": 100 * res["tar@far=0.001"], "TAR@FAR=1e-2": 100 * res["tar@far=0.01"],
            "TAR@FAR=1e-1": 100 * res["tar@far=0.1"]}


def verification_study(train_metrics: Iterable[str], metrics: list[str], p: float = 3,
                       max_impostors: int = 1_000_000, seed: int = 0, pair_head_steps: int = 300,
                       enabled: bool = True) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Verification (same identity or not) on every trained model's stored test images, per distance.

    Pair protocol (:func:`reidlib.evaluation.make_pairs`): the test split's query and gallery images together;
    every cross-camera pair of one identity is a genuine pair; impostor pairs are all pairs of different
    identities, or a seeded sample of ``max_impostors`` of them; junk (-1) and distractor (0) images join no
    pair. Scores are negated distances of L2-normalised features, so every metric is judged on the same pairs.

    A learned pair head (:mod:`reidlib.evaluation.pair_head`) is measured beside a plain cosine threshold: the
    test identities are split in two halves (seeded); the head trains on P x K batches of the first half's
    features and both are scored on the second half's pairs.

    Returns:
        ``(per-distance table, pair-head table, roc)``: percentages (AUC, EER, TAR at FAR 1e-3/1e-2/1e-1) and
        ``roc[run] = {"model", "dataset", "far": ROC_GRID, "tar": {metric: TAR at each FAR}}`` (fractions);
        empty when not ``enabled``.
    """
    if not enabled:
        return pd.DataFrame(), pd.DataFrame(), {}
    from reidlib.evaluation.pair_head import compare_with_cosine, train_pair_head
    from reidlib.evaluation.verification import make_pairs, pair_scores, roc_curve, verification_metrics

    rows, head_rows, roc = [], [], {}
    for path in train_metrics:
        m = read_metrics(path)
        if not (m.get("features") or {}).get("test"):
            continue
        feats, pids, camids = _test_split(m)
        run = f"{m['dataset_key']}-{m['model_run']}"
        roc[run] = {"model": m["model_label"], "dataset": m["dataset_label"], "far": ROC_GRID.tolist(), "tar": {}}
        pairs = make_pairs(pids, camids, max_impostors=max_impostors, seed=seed, ignore_pids=VERIFICATION_IGNORE)
        for metric in metrics:  # one scoring of the pairs per metric serves the table and the ROC curve
            scores = pair_scores(feats, pairs.a, pairs.b, metric=metric, normalize=True, p=p)
            res = verification_metrics(scores, pairs.label)
            rows.append({**_verification_row(m, metric, res), "pairs": pairs.num_pairs,
                         "genuine": int(pairs.label.sum())})
            far, tar, _ = roc_curve(scores, pairs.label)
            roc[run]["tar"][metric] = roc_on_grid(far, tar)
        ids = np.unique(pids[~np.isin(pids, VERIFICATION_IGNORE)])
        rng = np.random.default_rng(seed)
        train_ids = rng.permutation(ids)[: len(ids) // 2]
        fit_mask, held = np.isin(pids, train_ids), ~np.isin(pids, train_ids) & ~np.isin(pids, VERIFICATION_IGNORE)
        if len(ids) >= 4:
            head = train_pair_head(feats[fit_mask], pids[fit_mask], steps=pair_head_steps, seed=seed)
            both = compare_with_cosine(head, feats[held], pids[held], camids[held], max_impostors=max_impostors,
                                       seed=seed, ignore_pids=VERIFICATION_IGNORE)
            for method, key in (("cosine threshold", "cosine"), ("learned pair head", "pair_head")):
                head_rows.append({**_verification_row(m, method, both[key]), "held-out pairs": both["num_pairs"]})
    return pd.DataFrame(rows), pd.DataFrame(head_rows), roc


def pivot_verification_table(table: pd.DataFrame) -> pd.DataFrame:
    """AUC / EER / TAR@FAR=1e-2 / TAR@FAR=1e-3 (%) per model x dataset (rows) and distance (columns)."""
    if table.empty:
        return table
    t = table.copy()
    t["AUC / EER / TAR@1e-2 / TAR@1e-3"] = (t["AUC"].map("{:.1f}".format) + " / " + t["EER"].map("{:.1f}".format)
                                            + " / " + t["TAR@FAR=1e-2"].map("{:.1f}".format) + " / "
                                            + t["TAR@FAR=1e-3"].map("{:.1f}".format))
    return t.pivot_table(index=["model", "dataset"], columns="method", values="AUC / EER / TAR@1e-2 / TAR@1e-3",
                         aggfunc="first")


def best_distances(ranking: pd.DataFrame, verification: pd.DataFrame) -> pd.DataFrame:
    """Per model x dataset: the distance with the best mAP (ranking, normalised features, no re-ranking) and the
    one with the best AUC (verification), side by side."""
    if ranking.empty or verification.empty:
        return pd.DataFrame()
    plain = ranking[(ranking["rerank"] == "none") & ranking["normalized"]]
    rows = []
    for (model, data), grp in plain.groupby(["model", "dataset"], sort=True):
        best_rank = grp.loc[grp["mAP"].idxmax()]
        ver = verification[(verification["model"] == model) & (verification["dataset"] == data)]
        best_ver = ver.loc[ver["AUC"].idxmax()] if not ver.empty else None
        rows.append({"model": model, "dataset": data,
                     "best for ranking (mAP %)": f"{best_rank['metric']} ({best_rank['mAP']:.1f})",
                     "best for verification (AUC %)": (f"{best_ver['method']} ({best_ver['AUC']:.1f})"
                                                       if best_ver is not None else "-")})
    return pd.DataFrame(rows).set_index(["model", "dataset"])


def plot_roc_by_dataset(roc: dict, metric: str = "cosine"):
    """ROC curves under ``metric`` (L2-normalised features) as one figure: a panel per test dataset, a curve per
    model in the model's colour, one legend under the grid (log FAR axis, TAR in %). ``None`` without curves."""
    from reidlib.figure_style import model_style
    from reidlib.plots import plot_roc_grid

    by_dataset: dict[str, dict] = {}
    styles: dict[str, dict] = {}
    for run, rec in roc.items():
        if metric in rec["tar"]:
            by_dataset.setdefault(rec["dataset"], {})[rec["model"]] = (np.asarray(rec["far"]),
                                                                       np.asarray(rec["tar"][metric]))
            styles[rec["model"]] = model_style(run)
    if not by_dataset:
        return None
    return plot_roc_grid(dict(sorted(by_dataset.items())), styles=styles,
                         title=f"Verification ROC, {metric} distance on L2-normalised features")
