"""Did each model learn? The chance level of a split, the spread of its features, and the verdict
(:mod:`reidlib.stages.verdict`) that keeps a run out of every ranking claim ("near chance" or "collapsed").

Rank-1 values are percentages (0-100); the feature spread is a distance between unit vectors (0 to 1 for
typical sets, 0 = collapse).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .ids import TRAIN_STAGE, in_stage
from .records import Runs, TrainRecord
from .uncertainty import fmt_interval
from .verdict import MIN_SPREAD, NEAR_CHANCE_POINTS, learning_verdict

__all__ = ["MIN_SPREAD", "NEAR_CHANCE_POINTS", "chance_levels", "failed_runs", "feature_spread",
           "learned_view", "learning_check", "learning_verdict"]


def chance_levels(runs: Runs) -> dict[str, float]:
    """Random-ranking rank-1 (%) per evaluated dataset label: the records' ``chance_R1`` where they hold it, else
    computed from the test features the training runs stored (:func:`reidlib.evaluation.chance_rank1`)."""
    from reidlib.evaluation import FeatureSet, chance_rank1

    out: dict[str, float] = {}
    for run, m in runs.items():
        if not in_stage(run, TRAIN_STAGE):
            continue
        for key, ev in m.evaluations.items():
            if ev.chance_R1 is not None:
                out.setdefault(ev.label, float(ev.chance_R1))
                continue
            feats = m.stored_features(key)
            if ev.label in out or feats is None or not feats.exist():
                continue
            q, g = FeatureSet.load(feats.query), FeatureSet.load(feats.gallery)
            out[ev.label] = 100.0 * chance_rank1(q.pids, g.pids, q.camids, g.camids, feats.protocol or "market")
    return out


def feature_spread(features: np.ndarray) -> float:
    """Mean distance of L2-normalised embeddings ``features`` (N, D) to their mean (0 to 1 for typical sets).

    0 means collapse, every image mapped to the same direction; a working embedding spreads identities apart.
    """
    f = np.asarray(features, dtype=np.float64)
    f = f / np.clip(np.linalg.norm(f, axis=1, keepdims=True), 1e-12, None)
    return float(np.linalg.norm(f - f.mean(axis=0), axis=1).mean())


def learning_check(runs: Runs, chance: dict[str, float]) -> pd.DataFrame:
    """Did each trained run learn? One row per ``10_train`` run that trained at least one epoch.

    Columns: test rank-1 (%) against the chance level of the same split (and their ratio), the last epoch's train
    accuracy (%), the ID loss of the first and last epoch, the last triplet loss next to its margin (a triplet loss
    stuck at the margin with identical features is the collapse), the last epoch's mean hardest-negative over mean
    hardest-positive distance in its training batches (above 1 even the hardest pairs are apart; below 1 they
    overlap, as early in any training and throughout a collapse; ``None`` where the run did not record them) and
    :func:`feature_spread` of the test gallery features (``None`` where the stored features are no longer on disk
    or the chance level is unknown), then the test rank-1's 95 % interval and a ``verdict``
    (:func:`learning_verdict`).
    """
    rows = []
    for run, m in sorted(runs.items()):
        if not in_stage(run, TRAIN_STAGE) or not m.history or m.test_eval is None:
            continue
        hist, ev, spread = m.history, m.test_eval, _gallery_spread(m)
        level = chance.get(ev.label)
        rows.append({"run": f"`{run}`", "model": m.model_label, "test R1": round(ev.R1, 2),
                     "chance R1": round(level, 2) if level else None,
                     "R1 / chance": round(ev.R1 / level, 1) if level else None,
                     "train acc, last epoch": round(100 * hist[-1].train_acc, 1),
                     "ID loss, first -> last epoch": f"{hist[0].loss_id:.2f} -> {hist[-1].loss_id:.2f}",
                     "triplet loss, last epoch (margin)": _triplet_cell(m),
                     "hardest neg / pos distance, last epoch": _separation(m),
                     "feature spread": spread,
                     "test R1 95% CI": fmt_interval(ev.interval("R1")),
                     "verdict": learning_verdict(float(ev.R1), level, spread)})
    table = pd.DataFrame(rows).astype(object)
    return table.where(table.notna(), None)  # missing stays None (metrics.json refuses NaN)


def _gallery_spread(m: TrainRecord) -> float | None:
    """:func:`feature_spread` of the run's stored test gallery (3 decimals), None where it is no longer on disk."""
    from reidlib.evaluation import FeatureSet

    feats = m.stored_features("test")
    if feats is None or not feats.gallery or not Path(feats.gallery).is_file():
        return None
    return round(feature_spread(FeatureSet.load(feats.gallery).feats.numpy()), 3)


def _separation(m: TrainRecord) -> float | None:
    """The last epoch's mean hardest-negative over mean hardest-positive batch distance (2 decimals), or None."""
    last = m.history[-1]
    if last.dist_ap is None or last.dist_an is None or not last.dist_ap > 0:
        return None
    return round(float(last.dist_an) / float(last.dist_ap), 2)


def _triplet_cell(m: TrainRecord) -> str:
    """The last epoch's triplet loss next to the recipe's margin (``-`` where the recipe lacks it)."""
    last, recipe = m.history[-1], m.train.recipe
    if not last.has("loss_triplet"):
        return "not trained"
    margin = recipe.triplet_margin if recipe is not None and recipe.triplet_margin is not None else "-"
    return f"{last.loss_triplet:.3f} ({margin})"


def failed_runs(learned: pd.DataFrame) -> dict[str, str]:
    """Run id -> reason, for the rows of a learning-check table whose verdict is not "learned"."""
    if learned is None or learned.empty or "verdict" not in learned.columns:
        return {}
    out = {}
    for row in learned.to_dict("records"):
        if row["verdict"] != "learned":
            chance = row.get("chance R1")
            where = f"chance {chance:.2f} %" if chance is not None else "chance unknown, taken as 0"
            reason = ("its test features have collapsed (spread {:.2f})".format(row["feature spread"])
                      if row["verdict"] == "collapsed" else
                      f"its test rank-1 ({row['test R1']:.1f} %) is within {NEAR_CHANCE_POINTS:g} points of "
                      f"chance ({where})")
            out[str(row["run"]).strip("`")] = reason
    return out


def learned_view(learned: pd.DataFrame) -> pd.DataFrame:
    """The learning-check table as printed: rank-1 and its ratio to chance at one decimal, chance at two."""
    view = learned.copy()
    for col, fmt in (("test R1", "{:.1f}"), ("chance R1", "{:.2f}"), ("R1 / chance", "{:.1f}"),
                     ("train acc, last epoch", "{:.1f}"), ("hardest neg / pos distance, last epoch", "{:.2f}"),
                     ("feature spread", "{:.2f}")):
        if col in view:
            view[col] = [fmt.format(v) if v is not None else "" for v in view[col]]
    return view
