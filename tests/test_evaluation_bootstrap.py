"""Identity-level bootstrap intervals and paired differences, against a plain-loop reference with the same draws."""
from __future__ import annotations

import numpy as np
import pytest

from reidlib.evaluation import bootstrap_ci, chance_rank1, evaluate, evaluate_features, paired_difference
from reidlib.evaluation.bootstrap import bootstrap_means, identity_weights


def _reference_means(values: np.ndarray, pids: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """The bootstrap written out: draw identities, pool all their queries (once per draw), take the mean."""
    ids = np.unique(pids)
    draws = np.random.default_rng(seed).integers(0, len(ids), size=(n_boot, len(ids)))
    out = []
    for row in draws:
        pooled = np.concatenate([values[pids == ids[j]] for j in row])
        out.append(pooled.mean())
    return np.array(out)


def _toy(seed: int = 0, n_q: int = 60):
    rng = np.random.default_rng(seed)
    pids = rng.integers(100, 120, n_q)  # about 3 queries per identity, uneven
    return pids, (rng.random(n_q) < 0.4).astype(float), rng.random(n_q)


def test_vectorised_bootstrap_matches_the_loop_reference_with_the_same_draws():
    pids, hits, ap = _toy()
    reps = bootstrap_means({"rank1": hits, "mAP": ap}, pids, n_boot=200, seed=7)
    np.testing.assert_allclose(reps["rank1"], _reference_means(hits, pids, 200, 7), rtol=0, atol=1e-12)
    np.testing.assert_allclose(reps["mAP"], _reference_means(ap, pids, 200, 7), rtol=0, atol=1e-12)
    ci = bootstrap_ci({"mAP": ap}, pids, ci=0.9, n_boot=200, seed=7)["mAP"]
    assert ci == pytest.approx(list(np.percentile(_reference_means(ap, pids, 200, 7), [5, 95])))


def test_identity_weights_count_each_draw():
    draws = np.array([[0, 0, 2], [1, 2, 1]])
    np.testing.assert_array_equal(identity_weights(draws, 3), [[2, 0, 1], [0, 2, 1]])


def test_all_hits_give_a_degenerate_interval_and_zero_differences_give_zero():
    pids = np.array([1, 1, 2, 3, 3, 3])
    assert bootstrap_ci({"rank1": np.ones(6)}, pids)["rank1"] == [1.0, 1.0]
    ap = np.array([0.2, 0.4, 0.9, 0.1, 0.3, 0.5])
    res = paired_difference(ap, ap.copy(), pids)
    assert res["difference"] == 0.0 and res["ci"] == [0.0, 0.0] and not res["excludes_zero"]
    assert (res["num_queries"], res["num_ids"]) == (6, 3)


def test_paired_difference_resamples_the_same_identities_for_both_arms():
    pids, _, ap = _toy(1)
    shifted = ap + 0.05  # every query 5 points better: any paired replicate differs by exactly 0.05
    res = paired_difference(shifted, ap, pids, n_boot=300)
    assert res["difference"] == pytest.approx(0.05)
    assert res["ci"] == pytest.approx([0.05, 0.05])
    assert res["excludes_zero"]
    ref = _reference_means(shifted - ap, pids, 300, 0)
    noisy = ap + np.random.default_rng(2).normal(0, 0.1, len(ap))
    assert paired_difference(noisy, ap, pids, n_boot=300)["ci"] == pytest.approx(
        list(np.percentile(_reference_means(noisy - ap, pids, 300, 0), [2.5, 97.5])))
    assert ref.std() < 1e-12


def test_bad_input_is_named():
    pids = np.array([1, 2])
    with pytest.raises(ValueError, match="ci must be a confidence level"):
        bootstrap_ci({"x": [1.0, 0.0]}, pids, ci=95)
    with pytest.raises(ValueError, match="n_boot must be a positive integer"):
        bootstrap_ci({"x": [1.0, 0.0]}, pids, n_boot=0)
    with pytest.raises(ValueError, match="one value per query"):
        paired_difference([1.0], [1.0, 2.0], pids)
    with pytest.raises(ValueError, match="NaN or inf: pass only the valid queries"):
        paired_difference([np.nan, 1.0], [1.0, 2.0], pids)
    with pytest.raises(ValueError, match="ci must be a confidence level"):
        evaluate(np.zeros((2, 2)), pids, pids, [0, 0], [1, 1], ci=1.5)


def test_evaluate_interval_resamples_query_identities():
    rng = np.random.default_rng(3)
    q_pids, g_pids = np.repeat(np.arange(15), 3), np.repeat(np.arange(15), 4)
    q_cams, g_cams = np.zeros(45, int), np.ones(60, int)
    q_pids[-3:] = 99  # an identity with no true match: skipped, as in mAP
    d = rng.random((45, 60))
    d[np.arange(45) < 20, np.arange(45)[:20] // 3 * 4] = -1.0  # the first queries find a match at rank 1
    res = evaluate(d, q_pids, g_pids, q_cams, g_cams, ci=0.95, n_boot=400, seed=5, return_all_ap=True,
                   return_per_query=True)
    pq = res["per_query"]
    valid = ~np.isnan(res["all_AP"])
    np.testing.assert_array_equal(pq["pid"], q_pids[valid])
    np.testing.assert_allclose(pq["ap"], res["all_AP"][valid])
    assert np.mean(pq["first_hit"] == 1) == pytest.approx(res["cmc"][0])
    assert np.mean(pq["first_hit"] <= 5) == pytest.approx(res["cmc"][4])
    hits = (pq["first_hit"] == 1).astype(float)
    ref_r1 = np.percentile(_reference_means(hits, pq["pid"], 400, 5), [2.5, 97.5])
    ref_map = np.percentile(_reference_means(pq["ap"], pq["pid"], 400, 5), [2.5, 97.5])
    assert res["ci"]["rank1"] == pytest.approx(list(ref_r1))
    assert res["ci"]["mAP"] == pytest.approx(list(ref_map))
    assert res["ci"]["rank1"][0] < res["cmc"][0] < res["ci"]["rank1"][1]
    assert "ci" not in evaluate(d, q_pids, g_pids, q_cams, g_cams)  # off by default


def test_evaluate_features_passes_the_interval_through():
    rng = np.random.default_rng(4)
    pids = np.repeat(np.arange(10), 2)
    qf, gf = rng.normal(size=(20, 8)), rng.normal(size=(20, 8))
    res = evaluate_features(qf, gf, pids, pids, np.zeros(20, int), np.ones(20, int), ci=0.95, n_boot=100,
                            return_per_query=True, device="cpu")
    direct = evaluate(np.linalg.norm((qf / np.linalg.norm(qf, axis=1, keepdims=True))[:, None]
                                     - (gf / np.linalg.norm(gf, axis=1, keepdims=True))[None], axis=2),
                      pids, pids, np.zeros(20, int), np.ones(20, int), ci=0.95, n_boot=100)
    assert res["ci"]["mAP"] == pytest.approx(direct["ci"]["mAP"], abs=1e-6)
    assert len(res["per_query"]["ap"]) == 20


def test_chance_rank1_counts_true_matches_over_ranked_items():
    # query 1 (cam 0): gallery item 0 is junk (same camera), 1 true match of 3 ranked; query 2: 1 of 4
    q_pids, q_cams = np.array([1, 2]), np.array([0, 0])
    g_pids, g_cams = np.array([1, 1, 2, 3]), np.array([0, 1, 1, 1])
    assert chance_rank1(q_pids, g_pids, q_cams, g_cams) == pytest.approx((1 / 3 + 1 / 4) / 2)
    assert chance_rank1(q_pids, g_pids, q_cams, g_cams, "last") == pytest.approx((2 / 4 + 1 / 4) / 2)
