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
    assert best.loc[("CLEAN", "D"), "best for verification (AUC %)"].startswith(("cosine", "euclidean"))


def test_verification_can_be_switched_off(tmp_path):
    table, head, roc = distance.verification_study([_run(tmp_path, 0.1)], metrics=["cosine"], enabled=False)
    assert table.empty and head.empty and roc == {}
