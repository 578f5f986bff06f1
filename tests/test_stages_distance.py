"""The distance-study stage: ranking and verification tables on stored features (no training)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from reidlib.evaluation import FeatureSet
from reidlib.stages import distance


def _run(tmp_path, noise: float, name: str = "m") -> str:
    """A fake training run: 12 identities x 2 cameras x 2 images, features = identity centre + noise."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(12, 16))
    sets = {}
    for split, cams in (("query", (0,)), ("gallery", (1, 1))):
        pids = np.repeat(np.arange(1, 13), len(cams))
        camids = np.tile(np.array(cams), 12)
        feats = centres[pids - 1] + noise * rng.normal(size=(len(pids), 16))
        fs = FeatureSet(torch.tensor(feats, dtype=torch.float32), pids.astype(np.int64), camids.astype(np.int64),
                        [f"{split}_{i}.jpg" for i in range(len(pids))])
        sets[split] = str(fs.save(tmp_path / name / f"test_{split}.npz"))
    path = tmp_path / name / "metrics.json"
    path.write_text(json.dumps({"dataset_key": "d", "model_run": name, "model_label": name.upper(),
                                "dataset_label": "D", "features": {"test": {**sets, "protocol": "market"}}}))
    return str(path)


def test_roc_on_grid_is_the_best_tar_at_or_below_each_far():
    far = np.array([0.0, 0.0, 0.1, 0.5, 1.0])
    tar = np.array([0.0, 0.4, 0.6, 0.9, 1.0])
    assert distance.roc_on_grid(far, tar, np.array([0.0, 0.05, 0.1, 0.4, 1.0])) == [0.4, 0.4, 0.6, 0.6, 1.0]


def test_verification_separates_clean_features_and_compares_the_pair_head(tmp_path):
    clean, noisy = _run(tmp_path, 0.05, "clean"), _run(tmp_path, 3.0, "noisy")
    table, head, roc = distance.verification_study([clean, noisy], metrics=["cosine", "euclidean"],
                                                   pair_head_steps=30)
    auc = table.set_index(["model", "method"])["AUC"]
    assert auc[("CLEAN", "cosine")] == pytest.approx(100.0)
    assert auc[("NOISY", "cosine")] < 90.0
    # L2-normalised features: euclidean and cosine order every pair the same way
    assert auc[("NOISY", "euclidean")] == pytest.approx(auc[("NOISY", "cosine")])
    genuine = table["genuine"].iloc[0]
    assert genuine == 12 * 2  # each identity: 1 query (cam 0) x 2 gallery (cam 1) cross-camera pairs
    assert set(head["method"]) == {"cosine threshold", "learned pair head"}
    assert set(roc) == {"d-clean", "d-noisy"} and len(roc["d-clean"]["tar"]["cosine"]) == len(distance.ROC_GRID)
    best = distance.best_distances(
        distance.distance_study([clean], metrics=["cosine", "cityblock"], normalize=[True], rerank=False)[0], table)
    assert best.loc[("CLEAN", "D"), "highest verification AUC (%, no interval)"].startswith(("cosine", "euclidean"))
    assert best.loc[("CLEAN", "D"), "best for ranking (paired 95% CI, points)"].endswith("mAP; interval n/a)")


def test_verification_can_be_switched_off(tmp_path):
    table, head, roc = distance.verification_study([_run(tmp_path, 0.1)], metrics=["cosine"], enabled=False)
    assert table.empty and head.empty and roc == {}


def test_distance_rows_carry_intervals_and_paired_differences(tmp_path):
    noisy = _run(tmp_path, 1.5, "noisy")
    table, curves = distance.distance_study([noisy], metrics=["euclidean", "cosine", "cityblock"], normalize=[True],
                                            rerank=True)
    row = table.set_index("metric").loc["cosine"]
    lo, hi = row["ci95"]["mAP"]
    assert lo <= row["mAP"] <= hi and row["ci95"]["R1"][0] <= row["R1"] <= row["ci95"]["R1"][1]
    assert len(row["per_query"]["ap"].split()) == 12 and "pid" not in row["per_query"]
    paired = distance.paired_distance_table(table, curves, reference="euclidean (L2)").set_index(
        ["comparison", "setting"])
    # on L2-normalised features cosine ranks exactly as euclidean: a paired difference of zero, interval [0, 0]
    same = paired.loc[("vs reference", "cosine (L2)")]
    assert (same["mAP diff"], same["mAP ci95"], same["R1 ci95"]) == (pytest.approx(0.0), [0.0, 0.0], [0.0, 0.0])
    assert ("vs reference", "sqeuclidean (L2) +RK") in paired.index
    lead = paired.xs("lead", level="comparison")
    assert len(lead) == 1 and lead["mAP diff"].iloc[0] >= 0
    verdicts = distance.distance_verdicts(paired.reset_index())
    assert "re-ranking gain over euclidean (L2)" in verdicts.columns


def test_the_distance_table_puts_raw_and_normalised_features_side_by_side(tmp_path):
    noisy = _run(tmp_path, 1.5, "noisy")
    table, _ = distance.distance_study([noisy], metrics=["euclidean", "cosine"], normalize=[True, False], rerank=True)
    pivot = distance.pivot_distance_table(table)
    assert list(pivot.columns) == ["R1, as trained", "mAP, as trained", "R1, L2-normalised", "mAP, L2-normalised"]
    # the study's order of distances, one row each; re-ranking has no as-trained value
    assert [d for _, _, d in pivot.index] == ["euclidean", "cosine", "sqeuclidean +RK"]
    raw = table[(table["metric"] == "euclidean") & ~table["normalized"]].iloc[0]
    lo, hi = raw["ci95"]["mAP"]
    assert pivot.loc[("NOISY", "D", "euclidean"), "mAP, as trained"] == f"{raw['mAP']:.1f} [{lo:.1f}, {hi:.1f}]"
    assert pivot.loc[("NOISY", "D", "sqeuclidean +RK"), "R1, as trained"] == "–"
    assert pivot.loc[("NOISY", "D", "sqeuclidean +RK"), "R1, L2-normalised"] != "–"


def _pq_row(metric: str, aps: list[float], r1: float = 50.0) -> dict:
    """A distance-table row; ``r1`` (%) is set apart from the APs, far above chance unless a test says otherwise."""
    return {"run": "d-m", "model": "M", "dataset": "D", "metric": metric, "normalized": True, "rerank": "none",
            "R1": r1, "mAP": 100.0 * float(np.mean(aps)),
            "per_query": {"first_hit": " ".join("1" if a == 1.0 else "3" for a in aps),
                          "ap": " ".join(str(a) for a in aps)}}


def test_a_best_distance_is_named_only_when_its_lead_excludes_zero():
    import pandas as pd

    pids = np.repeat(np.arange(20), 2)
    curves = {"d-m": {"euclidean": {"per_query": {"pid": pids}}}}
    base = [0.5] * 40
    clear = [0.75] * 40  # every query better: the lead's interval is [25, 25] points
    table = pd.DataFrame([_pq_row("euclidean", base), _pq_row("cosine", clear)])
    best = distance.best_distances(table, pd.DataFrame(), distance.paired_distance_table(table, curves))
    assert best.iloc[0, 0] == "cosine (L2) (+25.0 [+25.0, +25.0] mAP over euclidean (L2))"
    mixed = [0.5 + (0.25 if i % 4 == 0 else -0.05) for i in range(40)]  # higher mean, spread over identities
    table = pd.DataFrame([_pq_row("euclidean", base), _pq_row("cosine", mixed)])
    best = distance.best_distances(table, pd.DataFrame(), distance.paired_distance_table(table, curves))
    assert best.iloc[0, 0].startswith("within noise (highest: cosine (L2), +2.5 [")


def test_no_distance_is_named_best_on_a_model_near_chance():
    import pandas as pd

    pids = np.repeat(np.arange(20), 2)
    curves = {"d-m": {"euclidean": {"per_query": {"pid": pids}}}}
    base = [0.5] * 40
    clear = [0.75] * 40  # a lead beyond noise, [25, 25] points
    # every setting's rank-1 is 0 %: within 2 points of a 0.5 % chance level
    table = pd.DataFrame([{**_pq_row("euclidean", base, r1=0.0), "chance_R1": 0.5},
                          {**_pq_row("cosine", clear, r1=0.0), "chance_R1": 0.5}])
    paired = distance.paired_distance_table(table, curves)
    assert paired["near_chance"].all()
    best = distance.best_distances(table, pd.DataFrame(), paired)
    assert best.iloc[0, 0].startswith("none named: the model is near chance (highest: cosine (L2), +25.0")
    text = distance.distance_summary(paired)
    assert "leads the runner-up" not in text
    assert "No distance is named best for the models whose rank-1 is within 2 points of chance (M on D)" in text
    # the same lead on a model 3 points above chance is named; a record without chance_R1 is judged against 0 %
    table["R1"], table["chance_R1"] = 3.5, 0.5
    paired = distance.paired_distance_table(table, curves)
    assert not paired["near_chance"].any()
    assert distance.best_distances(table, pd.DataFrame(), paired).iloc[0, 0].startswith("cosine (L2) (+25.0")
    assert "beyond noise on 1 of 1 models: cosine (L2) on M (D)" in distance.distance_summary(paired)
    old = distance.paired_distance_table(table.drop(columns="chance_R1"), curves)
    assert distance.best_distances(table, pd.DataFrame(), old).iloc[0, 0].startswith("cosine (L2) (+25.0")
    table["R1"] = 1.0  # 1 % rank-1 with no chance level recorded: within 2 points of 0 %, as learning_verdict says
    old = distance.paired_distance_table(table.drop(columns="chance_R1"), curves)
    assert old["near_chance"].all()


def test_settings_that_rank_alike_tie_and_the_lead_is_over_the_best_that_differs():
    import pandas as pd

    pids = np.repeat(np.arange(20), 2)
    curves = {"d-m": {"euclidean": {"per_query": {"pid": pids}}}}
    base = [0.75] * 40
    worse = [0.5] * 40
    table = pd.DataFrame([_pq_row("euclidean", base), _pq_row("cosine", base), _pq_row("cityblock", worse)])
    lead = distance.paired_distance_table(table, curves).set_index("comparison").loc["lead"]
    assert (lead["setting"], list(lead["ties"]), lead["versus"]) == ("euclidean (L2)", ["cosine (L2)"],
                                                                     "cityblock (L2)")
    assert lead["mAP ci95"] == [pytest.approx(25.0), pytest.approx(25.0)]
    best = distance.best_distances(table, pd.DataFrame(), distance.paired_distance_table(table, curves))
    assert best.iloc[0, 0] == "euclidean (L2) (= cosine (L2)) (+25.0 [+25.0, +25.0] mAP over cityblock (L2))"
    # every setting ranks alike: nothing to lead over, only the comparison with the reference setting
    alike = pd.DataFrame([_pq_row("euclidean", base), _pq_row("cosine", base)])
    assert list(distance.paired_distance_table(alike, curves)["comparison"]) == ["vs reference"]
