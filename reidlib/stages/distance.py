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
from .ids import TRAIN_STAGE, run_id
from .verdict import NEAR_CHANCE_POINTS, is_near_chance


def setting_label(metric: str, normalized: bool, rerank: str | None = None) -> str:
    """A distance setting as the tables name it, e.g. ``"cosine (L2)"`` or ``"sqeuclidean (L2) +RK"``."""
    return metric + (" (L2)" if normalized else "") + (" +RK" if rerank and rerank != "none" else "")


def distance_study(train_metrics: Iterable[str], metrics: list[str], normalize: list[bool], p: float = 3,
                   rerank: bool = True, evaluation: dict | None = None) -> tuple[pd.DataFrame, dict]:
    """Evaluate every trained model's stored test features under each metric and normalisation.

    With ``rerank``, one more row per model: k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3) over squared
    euclidean distances of L2-normalised features, BoT's setting, whatever the profile's evaluation metric.

    Each row carries ``ci95`` (percent, identity bootstrap), ``per_query`` (``first_hit`` and ``ap`` strings,
    see :mod:`reidlib.stages.uncertainty`) and ``chance_R1`` (%, the training run's record of its test split; None
    where the record predates it); the queries' identities, the same for every row of a run (and those of
    the run's test record), are in each curve's ``per_query["pid"]``.

    Returns:
        (table with one row per run x metric x normalisation, curves {run: {metric: evaluate-result}} of the
        L2-normalised settings without re-ranking)
    """
    from reidlib.evaluation import EvalSettings, FeatureSet, evaluate_features

    from .uncertainty import eval_kwargs, record_extras

    evaluation = evaluation or {}
    max_rank = evaluation.get("max_rank", EvalSettings.max_rank)
    rows, curves = [], {}
    for path in train_metrics:
        m = read_metrics(path)
        feats = m.get("features", {}).get("test")
        if not feats:
            continue
        hint = run_id(TRAIN_STAGE, f"{m['dataset_key']}-{m['model_run']}")
        qf = FeatureSet.load(require_file(feats["query"], hint))
        gf = FeatureSet.load(require_file(feats["gallery"], hint))
        run = f"{m['dataset_key']}-{m['model_run']}"
        chance = ((m.get("evaluations") or {}).get("test") or {}).get("chance_R1")
        curves[run] = {}
        settings = [(metric, norm, None) for metric in metrics for norm in normalize]
        if rerank:  # BoT's setting: k-reciprocal re-ranking over squared euclidean on L2-normalised features
            settings.append(("sqeuclidean", True, "k-reciprocal"))
        for metric, norm, rr in settings:
            t0 = time.time()
            res = evaluate_features(qf.feats, gf.feats, qf.pids, gf.pids, qf.camids, gf.camids, metric=metric,
                                    normalize=norm, p=p, max_rank=max_rank,
                                    protocol=feats.get("protocol", "market"), rerank=bool(rr) or None,
                                    **eval_kwargs())
            rows.append({"run": run, "model": m["model_label"], "dataset": m["dataset_label"], "metric": metric,
                         "normalized": norm, "rerank": rr or "none", **summarize(res),
                         "seconds": round(time.time() - t0, 2), "p": str(p) if metric == "minkowski" else "-",
                         "chance_R1": chance, **record_extras(res, with_pid=False)})
            if norm and not rr:
                curves[run][metric] = res
    return pd.DataFrame(rows), curves


def reference_setting(evaluation: dict | None) -> str:
    """The setting of the profile's test evaluation (what every test record reports), e.g. ``"euclidean (L2)"``."""
    from reidlib.evaluation import EvalSettings

    evaluation = evaluation or {}
    return setting_label(evaluation.get("metric", EvalSettings.metric),
                         bool(evaluation.get("normalize", EvalSettings.normalize)))


def _with_pids(row: dict, pids) -> dict:
    return {**row, "per_query": {**(row.get("per_query") or {}), "pid": pids}} if row.get("per_query") else row


def paired_distance_table(table: pd.DataFrame, curves: dict, reference: str = "euclidean (L2)") -> pd.DataFrame:
    """Paired differences (points, same model and queries, 95 % identity-bootstrap intervals) per run.

    Rows with ``comparison == "vs reference"``: every setting minus the profile's ``reference`` setting (re-ranking
    included). One row with ``comparison == "lead"``: the plain setting (no re-ranking) with the highest mAP minus
    the runner-up, the best plain setting that scores the queries differently; settings with the same per-query
    results as the leader (e.g. cosine and euclidean on L2-normalised features) are its ``ties``, not its
    runner-up, and where every setting ties there is no lead row. Columns: ``run, model, dataset, comparison,
    setting, versus, R1 diff, R1 ci95, mAP diff, mAP ci95, near_chance, ties`` (``near_chance``: the run's best
    plain rank-1 is within :data:`NEAR_CHANCE_POINTS` of its split's chance level, so no distance is named best on
    it; ``ties``: labels, empty for ``"vs reference"`` rows). ``table``, ``curves``: :func:`distance_study`'s
    (the curves give the queries' identities; a run without L2-normalised curves is left out).
    """
    from .uncertainty import paired

    if table.empty:
        return pd.DataFrame()
    rows = []

    def add(kind: str, row: dict, label: str, other: dict, other_label: str, near: bool,
            ties: list[str] | None = None) -> None:
        r1, m_ap = paired(row, other, "R1"), paired(row, other, "mAP")
        if r1 is not None and m_ap is not None:
            rows.append({"run": row["run"], "model": row["model"], "dataset": row["dataset"], "comparison": kind,
                         "setting": label, "versus": other_label, "R1 diff": r1["difference"], "R1 ci95": r1["ci95"],
                         "mAP diff": m_ap["difference"], "mAP ci95": m_ap["ci95"], "near_chance": near,
                         "ties": ties or []})

    for run, grp in table.groupby("run", sort=True):
        pids = (next(iter(curves.get(run, {}).values()), None) or {}).get("per_query", {}).get("pid")
        if pids is None:
            continue
        by_label = {setting_label(r["metric"], r["normalized"], r["rerank"]):
                    {**r, "per_query": {**(r.get("per_query") or {}), "pid": pids}} for r in grp.to_dict("records")}
        plain = sorted((label for label, r in by_label.items() if r["rerank"] == "none"),
                       key=lambda label: -by_label[label]["mAP"])  # highest mAP first; ties keep table order
        chance = next(iter(by_label.values())).get("chance_R1")
        near = bool(plain) and is_near_chance(max(by_label[x]["R1"] for x in plain), chance)
        if reference in by_label:
            for label, row in by_label.items():
                if label != reference:
                    add("vs reference", row, label, by_label[reference], reference, near)
        if plain:
            top = plain[0]
            ties = [label for label in plain[1:] if _same_queries(by_label[label], by_label[top])]
            others = [label for label in plain[1:] if label not in ties]
            if others:
                add("lead", by_label[top], top, by_label[others[0]], others[0], near, ties)
    return pd.DataFrame(rows)


def _same_queries(a: dict, b: dict) -> bool:
    """True where two settings give every query the same first-match rank and AP (they rank alike)."""
    pa, pb = a.get("per_query") or {}, b.get("per_query") or {}
    return bool(pa) and all(pa.get(k) == pb.get(k) for k in ("first_hit", "ap"))


def _tied(row) -> str:
    """``"euclidean (L2)"`` or, with settings that rank alike, ``"euclidean (L2) (= cosine (L2), ...)"``."""
    ties = row.get("ties")
    ties = list(ties) if isinstance(ties, (list, tuple)) else []
    return row["setting"] + (f" (= {', '.join(ties)})" if ties else "")


def _near(row) -> bool:
    """A paired row of a model near chance (rows written before the column existed: False)."""
    value = row.get("near_chance")
    return bool(value) if value is not None and value == value else False


def distance_verdicts(paired_rows: pd.DataFrame) -> pd.DataFrame:
    """Per model x dataset: the best plain distance, named only where its paired lead over the runner-up excludes
    zero ("within noise" otherwise) and the model is not near chance, and the re-ranking gain over the reference
    setting (points, 95 % CI)."""
    from .uncertainty import fmt_signed_interval

    if paired_rows is None or paired_rows.empty:
        return pd.DataFrame()
    out = []
    for (model, data), grp in paired_rows.groupby(["model", "dataset"], sort=True):
        row = {"model": model, "dataset": data}
        lead = grp[grp["comparison"] == "lead"]
        if not lead.empty:
            top = lead.iloc[0]
            margin = f"{fmt_signed_interval(top['mAP diff'], top['mAP ci95'])} mAP over {top['versus']}"
            name = _tied(top)
            row["best distance for ranking"] = (
                f"none named: the model is near chance (highest: {name}, {margin})" if _near(top)
                else f"{name} ({margin})" if top["mAP ci95"][0] > 0
                else f"within noise (highest: {name}, {margin})")
        rk = grp[(grp["comparison"] == "vs reference") & grp["setting"].str.endswith("+RK")]
        if not rk.empty:
            g = rk.iloc[0]
            row["re-ranking gain over " + g["versus"]] = (f"R1 {fmt_signed_interval(g['R1 diff'], g['R1 ci95'])}, "
                                                         f"mAP {fmt_signed_interval(g['mAP diff'], g['mAP ci95'])}")
        out.append(row)
    return pd.DataFrame(out).set_index(["model", "dataset"])


FEATURE_COLUMNS = {False: "as trained", True: "L2-normalised"}


def pivot_distance_table(table: pd.DataFrame) -> pd.DataFrame:
    """Rank-1 and mAP (%) with their 95 % intervals, one row per model x dataset x distance.

    Columns ``"R1, as trained"``, ``"mAP, as trained"``, ``"R1, L2-normalised"``, ``"mAP, L2-normalised"``: the
    same distance on the features as the network gives them and after L2 normalisation, side by side. The
    re-ranking row (L2-normalised only) is the distance ``"sqeuclidean +RK"`` with ``"–"`` where it has no value.
    Distances keep the study's order; rows made before intervals existed show ``n/a`` for the interval.
    """
    from .uncertainty import fmt_value

    if table.empty:
        return table
    columns = [f"{stat}, {FEATURE_COLUMNS[norm]}" for norm in (False, True) for stat in ("R1", "mAP")]
    cells: dict[tuple, dict] = {}
    for r in table.to_dict("records"):
        ev = {k: r[k] for k in ("R1", "mAP")}
        if isinstance(r.get("ci95"), dict):
            ev["ci95"] = r["ci95"]
        row = cells.setdefault((r["model"], r["dataset"], setting_label(r["metric"], False, r.get("rerank"))), {})
        for stat in ("R1", "mAP"):
            row[f"{stat}, {FEATURE_COLUMNS[bool(r['normalized'])]}"] = fmt_value(ev, stat)
    frame = pd.DataFrame([{"model": m, "dataset": d, "distance": dist, **{c: row.get(c, "–") for c in columns}}
                          for (m, d, dist), row in cells.items()])
    return frame.sort_values(["model", "dataset"], kind="stable").set_index(["model", "dataset", "distance"])


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
    hint = run_id(TRAIN_STAGE, f"{m['dataset_key']}-{m['model_run']}")
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
    """AUC, EER, TAR@FAR=1e-2 and TAR@FAR=1e-3 (%), one column each, per model x dataset x distance (rows)."""
    if table.empty:
        return table
    cols = ["AUC", "EER", "TAR@FAR=1e-2", "TAR@FAR=1e-3"]
    t = table.rename(columns={"method": "distance"}).set_index(["model", "dataset", "distance"])[cols]
    return t.sort_index().round(1)


def distance_summary(paired_rows: pd.DataFrame) -> str:
    """A paragraph (markdown) from :func:`paired_distance_table`: the re-ranking gain per model, then on how many
    models one plain distance leads the runner-up beyond noise (paired 95 % intervals, points)."""
    from .uncertainty import fmt_signed_interval

    if paired_rows is None or paired_rows.empty:
        return "No paired comparison of distances is available (the study has no per-query results)."
    parts = []
    rk = paired_rows[(paired_rows["comparison"] == "vs reference") & paired_rows["setting"].str.endswith("+RK")]
    if not rk.empty:
        gains = "; ".join(f"{r['model']} on {r['dataset']} {fmt_signed_interval(r['R1 diff'], r['R1 ci95'])} / "
                          f"{fmt_signed_interval(r['mAP diff'], r['mAP ci95'])}" for r in rk.to_dict("records"))
        parts.append(f"k-reciprocal re-ranking changes rank-1 / mAP against {rk['versus'].iloc[0]} by {gains} "
                     "(points, paired 95 % intervals over the same queries).")
    lead = paired_rows[paired_rows["comparison"] == "lead"]
    near = lead[[_near(r) for r in lead.to_dict("records")]]
    lead = lead.drop(near.index)
    if not lead.empty:
        clear = lead[[ci[0] > 0 for ci in lead["mAP ci95"]]]
        named = "; ".join(f"{_tied(r)} on {r['model']} ({r['dataset']}), "
                          f"{fmt_signed_interval(r['mAP diff'], r['mAP ci95'])} mAP over {r['versus']}"
                          for r in clear.to_dict("records"))
        parts.append(f"Without re-ranking, the distance with the highest mAP leads the runner-up (the best distance "
                     f"that ranks differently) beyond noise on {len(clear)} of {len(lead)} models"
                     + (f": {named}." if named else ".")
                     + ("" if len(clear) == len(lead)
                        else " On the others the distances are within noise of each other." if len(clear)
                        else " The distances are within noise of each other."))
    if not near.empty:
        models = "; ".join(f"{r['model']} on {r['dataset']}" for r in near.to_dict("records"))
        parts.append(f"No distance is named best for the models whose rank-1 is within {NEAR_CHANCE_POINTS:g} points "
                     f"of chance ({models}): their differences say nothing about the distances.")
    return " ".join(parts)


def best_distances(ranking: pd.DataFrame, verification: pd.DataFrame,
                   paired_rows: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per model x dataset: which distance ranks best, and which has the highest verification AUC.

    For ranking (no re-ranking), the distance with the highest mAP is named only where the paired 95 % interval of
    its lead over the runner-up excludes zero (``paired_rows`` from :func:`paired_distance_table`); otherwise the
    cell says "within noise". Without paired rows (studies made before intervals existed) the highest mAP is shown
    with "interval n/a". The AUC column has no interval.
    """
    if ranking.empty:
        return pd.DataFrame()
    verdicts = distance_verdicts(paired_rows) if paired_rows is not None else pd.DataFrame()
    rows = []
    for (model, data), grp in ranking[ranking["rerank"] == "none"].groupby(["model", "dataset"], sort=True):
        if (model, data) in verdicts.index and "best distance for ranking" in verdicts.columns:
            rank_cell = verdicts.loc[(model, data), "best distance for ranking"]
        else:
            top = grp.loc[grp["mAP"].idxmax()]
            rank_cell = f"{setting_label(top['metric'], top['normalized'])} ({top['mAP']:.1f} mAP; interval n/a)"
        row = {"model": model, "dataset": data, "best for ranking (paired 95% CI, points)": rank_cell}
        ver = (verification[(verification["model"] == model) & (verification["dataset"] == data)]
               if not verification.empty else verification)
        if not ver.empty:
            best_ver = ver.loc[ver["AUC"].idxmax()]
            row["highest verification AUC (%, no interval)"] = f"{best_ver['method']} ({best_ver['AUC']:.1f})"
        rows.append(row)
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
