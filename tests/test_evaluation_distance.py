"""Distances against scipy's cdist, and evaluate_features against evaluate(distance(...))."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from reidlib.evaluation import METRICS, GalleryDistance, distance, evaluate, evaluate_features


@pytest.fixture(scope="module")
def feats():
    rng = np.random.default_rng(0)
    # 70 x 1100 crosses the CPU tile borders of cityblock / minkowski (64 query rows, 1024 gallery columns)
    return rng.standard_normal((70, 24)).astype(np.float32), rng.standard_normal((1100, 24)).astype(np.float32) + 0.3


def _l2(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("normalize", [False, True])
def test_each_metric_matches_scipy(feats, metric, normalize):
    q, g = feats
    qs, gs = (_l2(q), _l2(g)) if normalize else (q, g)
    kwargs = {"p": 3} if metric == "minkowski" else {}
    want = cdist(qs.astype(np.float64), gs.astype(np.float64), metric=metric, **kwargs)
    got = distance(q, g, metric=metric, normalize=normalize, p=3)
    assert got.dtype == torch.float32 and got.shape == (70, 1100)
    np.testing.assert_allclose(got.numpy(), want, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("p", [1, 1.5, 2, 4, 7])
def test_minkowski_orders_match_scipy(feats, p):
    q, g = feats
    want = cdist(q[:9].astype(np.float64), g.astype(np.float64), metric="minkowski", p=p)
    np.testing.assert_allclose(distance(q[:9], g, metric="minkowski", p=p).numpy(), want, rtol=2e-5, atol=2e-5)


def test_torch_and_numpy_inputs_agree(feats):
    q, g = feats
    a = distance(q, g, metric="cosine")
    b = distance(torch.from_numpy(q), torch.from_numpy(g).double(), metric="cosine")
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-6)


def test_gallery_distance_chunks_equal_the_full_matrix(feats, monkeypatch):
    monkeypatch.setattr("reidlib.evaluation.distances._TILE_COLS", 256)  # several gallery tiles per query block
    q, g = feats
    for metric in ("euclidean", "correlation", "cityblock", "minkowski"):
        gd = GalleryDistance(g, metric=metric, p=3)
        full = distance(q, g, metric=metric, p=3).numpy()
        np.testing.assert_allclose(torch.cat([gd(q[:33]), gd(q[33:])]).numpy(), full, rtol=1e-6, atol=1e-6)
        want = cdist(q.astype(np.float64), g.astype(np.float64), metric=metric,
                     **({"p": 3} if metric == "minkowski" else {}))
        np.testing.assert_allclose(full, want, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("kwargs, err, match", [
    ({"metric": "hamming"}, ValueError, "unknown metric 'hamming'"),
    ({"metric": "minkowski", "p": 0}, ValueError, "p > 0"),
    ({"metric": "minkowski", "p": float("inf")}, ValueError, "finite"),
])
def test_bad_metric_raises(feats, kwargs, err, match):
    q, g = feats
    with pytest.raises(err, match=match):
        distance(q, g, **kwargs)


def test_shape_mismatch_raises(feats):
    q, g = feats
    with pytest.raises(ValueError, match="feature dimensions differ: query 23 vs gallery 24"):
        distance(q[:, :23], g)
    with pytest.raises(ValueError, match="2-D"):
        distance(q[0], g)


def _id_structure(n_q, n_g, seed=1):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 12, n_q), rng.integers(0, 14, n_g), rng.integers(0, 3, n_q), rng.integers(0, 3, n_g)


@pytest.mark.parametrize("metric", METRICS)
def test_evaluate_features_equals_evaluate_of_distance(feats, metric):
    q, g = feats
    qp, gp, qc, gc = _id_structure(len(q), len(g))
    want = evaluate(distance(q, g, metric=metric, normalize=True), qp, gp, qc, gc, max_rank=10)
    for chunk in (None, 16):
        got = evaluate_features(q, g, qp, gp, qc, gc, metric=metric, normalize=True, max_rank=10, chunk_size=chunk)
        np.testing.assert_array_equal(got["cmc"], want["cmc"])
        assert got["mAP"] == pytest.approx(want["mAP"], abs=1e-12)
        assert got["mINP"] == pytest.approx(want["mINP"], abs=1e-12)
        assert got["metric"] == metric and got["normalize"] is True and got["rerank"] is None
        assert got["p"] == (3.0 if metric == "minkowski" else None)


def test_normalized_euclidean_and_cosine_rank_identically(feats):
    q, g = feats
    ids = _id_structure(len(q), len(g))
    a = evaluate_features(q, g, *ids, metric="euclidean", normalize=True)
    b = evaluate_features(q, g, *ids, metric="cosine", normalize=True)
    np.testing.assert_array_equal(a["cmc"], b["cmc"])
    assert a["mAP"] == pytest.approx(b["mAP"], abs=1e-6)


def test_evaluate_features_rejects_bad_input(feats):
    q, g = feats
    ids = _id_structure(len(q), len(g))
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate_features(q, g, *ids, metric="chebyshev")
    with pytest.raises(ValueError, match="unknown rerank method"):
        evaluate_features(q, g, *ids, rerank="gnn")
    with pytest.raises(ValueError, match="q_pids must be 1-D with 70"):
        evaluate_features(q, g, ids[0][:5], *ids[1:])
    with pytest.raises(ValueError, match="feature dimensions differ"):
        evaluate_features(q[:, :5], g, *ids)
