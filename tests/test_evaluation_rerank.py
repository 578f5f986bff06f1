"""k-reciprocal re-ranking against a dense, loop-by-loop reference of Zhong et al. (CVPR 2017), and alpha-QE."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from reidlib.evaluation import evaluate, evaluate_features, query_expansion, re_ranking


def reference_rerank(q, g, k1, k2, lam):
    """The algorithm as the paper states it, with dense float64 matrices and Python sets."""
    x = np.concatenate([q, g]).astype(np.float64)
    n, n_q = len(x), len(q)
    d = cdist(x, x, "sqeuclidean")
    d = d / d.max(axis=1, keepdims=True)
    order = np.argsort(d, axis=1, kind="stable")

    def reciprocal(i, k):
        return [j for j in order[i, : k + 1] if i in order[j, : k + 1]]

    v = np.zeros((n, n))
    for i in range(n):
        r = reciprocal(i, k1)
        members = set(r)
        for c in r:
            rc = reciprocal(c, int(round(k1 / 2)))
            if len(set(rc) & set(r)) > 2 / 3 * len(rc):
                members |= set(rc)
        idx = sorted(members)
        w = np.exp(-d[i, idx])
        v[i, idx] = w / w.sum()
    if k2 > 1:
        v = np.stack([v[order[i, :k2]].mean(axis=0) for i in range(n)])
    jac = np.empty((n_q, n - n_q))
    for i in range(n_q):
        for j in range(n - n_q):
            shared = np.minimum(v[i], v[n_q + j]).sum()
            jac[i, j] = 1 - shared / (2 - shared)
    return (1 - lam) * jac + lam * d[:n_q, n_q:]


@pytest.fixture(scope="module")
def clustered():
    """Three queries and 45 gallery items around 8 identity centres (so reciprocal sets are non-trivial)."""
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((8, 16))
    g_ids, q_ids = rng.integers(0, 8, 45), np.array([0, 3, 5, 7, 7, 1])
    g = centres[g_ids] + 0.45 * rng.standard_normal((45, 16))
    q = centres[q_ids] + 0.45 * rng.standard_normal((6, 16))
    return q.astype(np.float32), g.astype(np.float32), q_ids, g_ids


@pytest.mark.parametrize("k1, k2, lam", [(6, 3, 0.3), (5, 1, 0.5), (8, 4, 0.0)])
def test_matches_dense_reference(clustered, k1, k2, lam):
    q, g, _, _ = clustered
    got = re_ranking(q, g, k1=k1, k2=k2, lambda_value=lam, chunk_size=7)
    want = reference_rerank(q, g, k1, k2, lam)
    assert got.shape == (6, 45) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=2e-5)


def test_lambda_one_is_the_row_normalised_original_distance(clustered):
    q, g, _, _ = clustered
    d = cdist(np.concatenate([q, g]), np.concatenate([q, g]), "sqeuclidean")
    want = (d / d.max(axis=1, keepdims=True))[:6, 6:]
    np.testing.assert_allclose(re_ranking(q, g, k1=6, k2=3, lambda_value=1.0), want, atol=1e-5)


def test_reranking_helps_on_clustered_features(clustered):
    q, g, q_ids, g_ids = clustered
    cams_q, cams_g = np.zeros(6, int), np.ones(45, int)
    base = evaluate_features(q, g, q_ids, g_ids, cams_q, cams_g, metric="sqeuclidean", normalize=False)
    rr = evaluate_features(q, g, q_ids, g_ids, cams_q, cams_g, metric="sqeuclidean", normalize=False,
                           rerank={"method": "k-reciprocal", "k1": 6, "k2": 3})
    assert rr["rerank"] == "k-reciprocal"
    assert rr["mAP"] >= base["mAP"] - 1e-9
    direct = evaluate(re_ranking(q, g, k1=6, k2=3), q_ids, g_ids, cams_q, cams_g)
    assert rr["mAP"] == pytest.approx(direct["mAP"])


def test_bad_parameters_raise(clustered):
    q, g, _, _ = clustered
    with pytest.raises(ValueError, match="k1 and k2"):
        re_ranking(q, g, k1=0)
    with pytest.raises(ValueError, match="lambda_value"):
        re_ranking(q, g, lambda_value=1.5)
    with pytest.raises(ValueError, match="feature dimensions differ"):
        re_ranking(q[:, :3], g)


def test_query_expansion_by_hand():
    q = torch.tensor([[1.0, 0.0]])
    g = torch.tensor([[0.0, 2.0], [3.0, 3.0], [1.0, 0.1]])
    gn = torch.nn.functional.normalize(g, dim=1)
    sims = gn @ q[0]
    top = [2, 1]  # the two most similar gallery items
    want = q[0] + sum(sims[j] ** 3 * gn[j] for j in top)
    got = query_expansion(q, g, k=2, alpha=3.0)
    np.testing.assert_allclose(got[0].numpy(), (want / want.norm()).numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(query_expansion(q * 5, g, k=0).numpy(), q.numpy())
    assert torch.allclose(query_expansion(np.ones((4, 2)), g, k=10).norm(dim=1), torch.ones(4))
    with pytest.raises(ValueError, match="alpha"):
        query_expansion(q, g, alpha=-1)
