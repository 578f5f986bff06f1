"""reidlib.evaluation.evaluate against a plain-loop reference (torchreid's eval_market1501 logic, stable sort)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from reidlib.evaluation import evaluate, stable_topk


def reference(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50, protocol="market", ap="mean"):
    """One stable argsort per query, junk removed by a mask, AP as written in each source: slow and obviously right."""
    cmcs, aps, inps, all_ap = [], [], [], []
    for i in range(distmat.shape[0]):
        order = np.argsort(distmat[i], kind="stable")
        same = g_pids[order] == q_pids[i]
        junk = same & (g_camids[order] == q_camids[i]) if protocol == "market" else np.zeros_like(same)
        matches = same[~junk].astype(int)  # junk (same person, same camera) leaves the ranking
        if matches.sum() == 0:
            all_ap.append(np.nan)
            continue
        cmc = np.ones(max_rank)
        prefix = np.minimum(np.cumsum(matches), 1)[:max_rank]
        cmc[: len(prefix)] = prefix
        cmcs.append(cmc)
        n_rel = matches.sum()
        if ap == "mean":
            hits = np.flatnonzero(matches)
            value = sum((k + 1) / (r + 1) for k, r in enumerate(hits)) / n_rel
        else:  # compute_AP.m of the Market-1501 devkit, line by line
            value, old_recall, old_precision, found = 0.0, 0.0, 1.0, 0
            for n, m in enumerate(matches):
                found += m
                recall, precision = found / n_rel, found / (n + 1)
                value += (recall - old_recall) * (old_precision + precision) / 2
                old_recall, old_precision = recall, precision
                if found == n_rel:
                    break
        aps.append(value)
        all_ap.append(value)
        inps.append(n_rel / (np.flatnonzero(matches)[-1] + 1))
    return {"cmc": np.mean(cmcs, axis=0), "mAP": float(np.mean(aps)), "mINP": float(np.mean(inps)),
            "num_valid_queries": len(aps), "all_AP": np.asarray(all_ap)}


def assert_same(res, ref):
    assert res["num_valid_queries"] == ref["num_valid_queries"]
    np.testing.assert_allclose(res["cmc"], ref["cmc"], rtol=0, atol=1e-12)
    assert res["mAP"] == pytest.approx(ref["mAP"], abs=1e-12)
    assert res["mINP"] == pytest.approx(ref["mINP"], abs=1e-12)
    if "all_AP" in res:
        np.testing.assert_allclose(res["all_AP"], ref["all_AP"], atol=1e-12)


def random_case(seed, n_q=40, n_g=300, n_ids=25, n_cams=4, levels=None):
    rng = np.random.default_rng(seed)
    q_pids = rng.integers(0, n_ids, n_q)
    g_pids = rng.integers(0, n_ids + 5, n_g)  # ids >= n_ids are gallery-only distractors
    q_cams, g_cams = rng.integers(0, n_cams, n_q), rng.integers(0, n_cams, n_g)
    if levels:  # few distinct values: many exact ties
        d = rng.integers(0, levels, (n_q, n_g)).astype(np.float32)
    else:
        d = rng.standard_normal((n_q, n_g)).astype(np.float32)
    d -= 0.3 * (q_pids[:, None] == g_pids[None, :])  # positives a little closer, as in a real model
    return d, q_pids, g_pids, q_cams, g_cams


@pytest.mark.parametrize("protocol", ["market", "last"])
@pytest.mark.parametrize("ap", ["mean", "trapezoid"])
@pytest.mark.parametrize("levels", [None, 4])
def test_random_cases_match_reference(protocol, ap, levels):
    for seed in range(2):
        d, qp, gp, qc, gc = random_case(seed, levels=levels)
        ref = reference(d, qp, gp, qc, gc, max_rank=20, protocol=protocol, ap=ap)
        for chunk in (None, 1 + 6 * seed):
            res = evaluate(d, qp, gp, qc, gc, max_rank=20, protocol=protocol, ap=ap, chunk_size=chunk,
                           return_all_ap=True)
            assert_same(res, ref)


def test_float64_and_torch_inputs_agree_with_float32():
    d, qp, gp, qc, gc = random_case(5, levels=6)
    base = evaluate(d, qp, gp, qc, gc)
    assert_same(evaluate(d.astype(np.float64), qp, gp, qc, gc), base)  # exact stable-sort fallback
    assert_same(evaluate(torch.from_numpy(d), torch.from_numpy(qp), list(gp), qc, gc), base)
    assert_same(evaluate(torch.from_numpy(d).half(), qp, gp, qc, gc), evaluate(d.astype(np.float16), qp, gp, qc, gc))


def test_hand_built_market_query():
    # ranked gallery: junk (same id+cam), other id, hit, distractor, hit, id 0
    d = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]], dtype=np.float32)
    g_pids, g_cams = np.array([1, 2, 1, 3, 1, 0]), np.array([0, 0, 1, 1, 2, 0])
    res = evaluate(d, [1], g_pids, [0], g_cams, max_rank=5)
    np.testing.assert_array_equal(res["cmc"], [0, 1, 1, 1, 1])
    assert res["mAP"] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert res["mINP"] == pytest.approx(2 / 4)
    trap = evaluate(d, [1], g_pids, [0], g_cams, max_rank=5, ap="trapezoid")
    assert trap["mAP"] == pytest.approx(((0 + 1 / 2) / 2 + (1 / 3 + 2 / 4) / 2) / 2)
    last = evaluate(d, [1], g_pids, [0], g_cams, max_rank=5, protocol="last")  # the junk item becomes a hit
    np.testing.assert_array_equal(last["cmc"], [1, 1, 1, 1, 1])
    assert last["mAP"] == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    assert last["mINP"] == pytest.approx(3 / 5)


def test_ties_are_broken_by_gallery_index():
    d = np.zeros((1, 4), dtype=np.float32)  # all tied: stable order 0, 1, 2, 3
    res = evaluate(d, [7], [1, 7, 2, 7], [0], [1, 1, 1, 1], max_rank=4)
    np.testing.assert_array_equal(res["cmc"], [0, 1, 1, 1])
    assert res["mAP"] == pytest.approx((1 / 2 + 2 / 4) / 2)
    # -0.0 ties with +0.0 (as in np.argsort), negative and infinite distances order correctly
    d = np.array([[0.0, -0.0, -1.5, np.inf, -np.inf]], dtype=np.float32)
    g = np.array([5, 1, 2, 3, 4])
    for target, rank in [(4, 0), (2, 1), (5, 2), (1, 3), (3, 4)]:
        res = evaluate(d, [target], g, [0], [1] * 5, max_rank=5)
        assert int(np.argmax(res["cmc"] > 0)) == rank
    assert stable_topk(torch.tensor([[1.0, 0.5, 1.0, 0.5]]), 3).tolist() == [[1, 3, 0]]


@pytest.mark.parametrize("k", [1, 3, 7, 12])
def test_stable_topk_is_a_stable_argsort_prefix(k):
    rng = np.random.default_rng(k)
    x = rng.integers(0, 4, (30, 12)).astype(np.float32)  # heavy ties, also at the k-th value
    x[3, 5] = np.nan
    x[4] = np.nan
    want = np.argsort(x, axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(stable_topk(x, k), want)
    np.testing.assert_array_equal(stable_topk(torch.from_numpy(x).double(), k), want)


def test_queries_without_valid_match_are_skipped():
    d = np.array([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1], [0.5, 0.1, 0.2]], dtype=np.float32)
    q_pids, q_cams = [1, 2, 9], [0, 0, 0]
    g_pids, g_cams = [1, 2, 1], [0, 1, 1]  # query 0: only its same-camera image is junk, but g2 is a hit
    res = evaluate(d, q_pids, g_pids, q_cams, g_cams, max_rank=3, return_all_ap=True)
    ref = reference(d, np.array(q_pids), np.array(g_pids), np.array(q_cams), np.array(g_cams), max_rank=3)
    assert_same(res, ref)
    assert res["num_valid_queries"] == 2 and np.isnan(res["all_AP"][2])
    with pytest.raises(ValueError, match="no query has a positive"):
        evaluate(d[:1], [1], [1, 3, 4], [0], [0, 0, 0])  # the only match is same-camera junk


def test_few_gallery_items_cmc_stays_at_one():
    res = evaluate(np.array([[0.2, 0.1]], dtype=np.float32), [1], [1, 2], [0], [1, 1], max_rank=10)
    assert res["cmc"].shape == (10,)
    np.testing.assert_array_equal(res["cmc"], [0] + [1] * 9)


@pytest.mark.parametrize("kwargs, match", [
    ({"protocol": "duke"}, "unknown protocol"),
    ({"ap": "11point"}, "unknown ap"),
    ({"max_rank": 0}, "max_rank"),
    ({"chunk_size": -1}, "chunk_size"),
])
def test_bad_options_raise(kwargs, match):
    d, qp, gp, qc, gc = random_case(0, n_q=3, n_g=10)
    with pytest.raises(ValueError, match=match):
        evaluate(d, qp, gp, qc, gc, **kwargs)


def test_bad_inputs_raise():
    d, qp, gp, qc, gc = random_case(0, n_q=3, n_g=10)
    with pytest.raises(ValueError, match="g_pids must be 1-D with 10"):
        evaluate(d, qp, gp[:-1], qc, gc)
    with pytest.raises(ValueError, match="2-D"):
        evaluate(d[0], qp, gp, qc, gc)
    bad = d.copy()
    bad[1, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        evaluate(bad, qp, gp, qc, gc)
    with pytest.raises(ValueError, match="NaN"):
        evaluate(bad.astype(np.float64), qp, gp, qc, gc)
