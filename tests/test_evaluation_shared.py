"""The shared OSNet x0.25 re-ID weights rank real pedestrians far above chance (VIPeR subset, the whole pipeline).

Full table for all four shared datasets: ``benchmarks/shared_weights_eval.py`` -> ``results/shared-weights/``.
"""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.shared]


def test_shared_osnet_weights_beat_chance_on_viper(shared_dir):
    from reidlib.data import build_dataset, build_transforms, make_test_loader
    from reidlib.evaluation import evaluate, evaluate_features, extract_features
    from reidlib.models import build_model

    weights = shared_dir / "weights" / "osnet_x0_25_market1501.pth"
    viper = shared_dir / "data" / "viper"
    if not weights.is_file() or not viper.is_dir():
        pytest.skip(f"needs {weights} and {viper}")
    ds = build_dataset("folder", viper)
    keep = set(sorted({pid for _, pid, _ in ds.query})[:50])  # 50 identities: 100 images, a few seconds
    query = [it for it in ds.query if it[1] in keep]
    gallery = [it for it in ds.gallery if it[1] in keep]
    model = build_model("osnet_x0_25", num_classes=751, pretrained=weights)
    assert model.pretrained_report.exact, model.pretrained_report.summary()
    tf = build_transforms(256, 128, is_train=False)
    qf, gf = (extract_features(model, make_test_loader(items, tf, batch_size=50), flip=False, progress=False)
              for items in (query, gallery))
    res = evaluate_features(qf.feats, gf.feats, qf.pids, gf.pids, qf.camids, gf.camids, protocol=ds.protocol)
    rng = np.random.default_rng(0)
    chance = evaluate(rng.random((len(query), len(gallery)), dtype=np.float32), qf.pids, gf.pids, qf.camids,
                      gf.camids)
    assert res["num_valid_queries"] == 50
    assert res["cmc"][0] > 10 * (1 / 50)  # chance rank-1: one true match among 50 gallery images
    assert res["mAP"] > 3 * chance["mAP"]
