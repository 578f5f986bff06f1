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


def plot_distance_cmc(curves: dict) -> dict:
    """One CMC figure per trained model with a curve per metric."""
    from reidlib.plots import plot_cmc

    return {run: plot_cmc(per_metric, title=f"CMC by distance: {run}") for run, per_metric in curves.items()}
