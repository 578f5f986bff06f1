"""reidlib.evaluation.verification against plain references: O(n^2) Mann-Whitney AUC, a loop over thresholds."""
from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest
import torch

from reidlib.evaluation import (
    distance,
    evaluate_verification,
    make_pairs,
    pair_distances,
    pair_scores,
    plot_roc,
    roc_curve,
    verification_metrics,
)


def auc_reference(scores, labels):
    """P(genuine > impostor) + P(tie) / 2 over every genuine x impostor combination."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    total = 0.0
    for s in pos:
        for t in neg:
            total += 1.0 if s > t else 0.5 if s == t else 0.0
    return total / (len(pos) * len(neg))


def roc_reference(scores, labels):
    """One (far, tar, threshold) per candidate threshold, counted by a loop over pairs."""
    rows = []
    for t in [math.inf] + sorted(set(scores.tolist()), reverse=True):
        tp = sum(1 for s, y in zip(scores, labels) if s >= t and y == 1)
        fp = sum(1 for s, y in zip(scores, labels) if s >= t and y == 0)
        rows.append((fp, tp, t))
    return rows


def tar_at_far_reference(scores, labels, target):
    rows = roc_reference(scores, labels)
    n_pos, n_neg = int((labels == 1).sum()), int((labels == 0).sum())
    return max(tp / n_pos for fp, tp, _ in rows if fp <= math.floor(target * n_neg + 1e-9))


def eer_reference(scores, labels):
    """Walk the thresholds from strict to lax; interpolate FAR where FRR - FAR first reaches <= 0."""
    rows = roc_reference(scores, labels)
    n_pos, n_neg = int((labels == 1).sum()), int((labels == 0).sum())
    prev = None
    for fp, tp, _ in rows:
        far, frr = fp / n_neg, 1 - tp / n_pos
        if frr - far <= 0:
            if frr == far or prev is None:
                return far
            pfar, pfrr = prev
            alpha = (pfrr - pfar) / ((pfrr - pfar) - (frr - far))
            return pfar + alpha * (far - pfar)
        prev = (far, frr)
    raise AssertionError("unreachable")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_references_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = 300
    labels = (rng.random(n) < 0.3).astype(int)
    scores = np.round(rng.normal(size=n) + 1.2 * labels, 1)  # rounding makes many ties, across classes too
    m = verification_metrics(scores, labels, far=(0.01, 0.05, 0.1, 0.5))
    assert m["auc"] == pytest.approx(auc_reference(scores, labels), abs=1e-12)
    assert m["eer"] == pytest.approx(eer_reference(scores, labels), abs=1e-12)
    for x in (0.01, 0.05, 0.1, 0.5):
        assert m[f"tar@far={x:g}"] == pytest.approx(tar_at_far_reference(scores, labels, x), abs=1e-12)
    assert m["num_genuine"] == labels.sum() and m["num_impostor"] == n - labels.sum()
    far, tar, thr = roc_curve(scores, labels)
    ref = roc_reference(scores, labels)
    n_pos, n_neg = labels.sum(), n - labels.sum()
    np.testing.assert_allclose(far, [fp / n_neg for fp, _, _ in ref])
    np.testing.assert_allclose(tar, [tp / n_pos for _, tp, _ in ref])
    np.testing.assert_array_equal(thr, [t for _, _, t in ref])


def test_default_keys_and_threshold_semantics():
    rng = np.random.default_rng(5)
    labels = rng.random(2000) < 0.2
    scores = rng.normal(size=2000) + 2 * labels
    m = verification_metrics(scores, labels)
    for key in ("auc", "eer", "threshold@eer", "tar@far=0.001", "tar@far=0.01", "tar@far=0.1"):
        assert key in m and np.isfinite(m[key])
    # The reported threshold reproduces the reported TAR and respects the FAR target.
    t = m["threshold@far=0.1"]
    assert np.mean(scores[labels] >= t) == pytest.approx(m["tar@far=0.1"])
    assert np.mean(scores[~labels] >= t) <= 0.1
    # Near the EER threshold FAR and FRR are close.
    te = m["threshold@eer"]
    far, frr = np.mean(scores[~labels] >= te), np.mean(scores[labels] < te)
    assert abs(far - m["eer"]) < 0.01 and abs(frr - m["eer"]) < 0.01


def test_perfect_and_chance_and_inverted():
    labels = np.array([1, 1, 1, 0, 0, 0, 0])
    perfect = verification_metrics(np.array([0.9, 0.8, 0.7, 0.1, 0.2, 0.3, 0.0]), labels)
    assert perfect["auc"] == 1.0 and perfect["eer"] == 0.0 and perfect["tar@far=0.001"] == 1.0
    assert perfect["threshold@eer"] == 0.7
    tied = verification_metrics(np.zeros(7), labels)
    assert tied["auc"] == 0.5 and tied["eer"] == 0.5 and tied["tar@far=0.1"] == 0.0
    inverted = verification_metrics(-np.array([0.9, 0.8, 0.7, 0.1, 0.2, 0.3, 0.0]), labels)
    assert inverted["auc"] == 0.0 and inverted["eer"] == 1.0
    rng = np.random.default_rng(0)
    big = verification_metrics(rng.random(200_000), rng.random(200_000) < 0.5)
    assert abs(big["auc"] - 0.5) < 0.01 and abs(big["eer"] - 0.5) < 0.01 and big["tar@far=0.1"] < 0.12


def test_input_errors():
    with pytest.raises(ValueError, match="both genuine"):
        verification_metrics([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="NaN"):
        verification_metrics([np.nan, 0.2], [1, 0])
    with pytest.raises(ValueError, match="labels must be 0"):
        verification_metrics([0.1, 0.2], [2, 0])
    with pytest.raises(ValueError, match="same length"):
        verification_metrics([0.1, 0.2, 0.3], [1, 0])
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        verification_metrics([0.1, 0.2], [1, 0], far=(0.0,))


def test_millions_of_pairs_fast():
    import time

    rng = np.random.default_rng(1)
    labels = rng.random(3_000_000) < 0.01
    scores = rng.normal(size=labels.size).astype(np.float32) + 2.5 * labels
    t0 = time.perf_counter()
    m = verification_metrics(scores, labels)
    assert time.perf_counter() - t0 < 10  # one sort of 3M floats: ~0.5 s on a 2-core CPU
    assert 0.95 < m["auc"] < 0.99


def test_pair_protocol_counts_on_hand_made_split():
    # idx:     0  1  2  3  4  5  6  7
    pids = [7, 7, 7, 8, 8, 9, -1, 7]
    cams = [0, 1, 1, 0, 0, 2, 1, 0]
    pairs = make_pairs(pids, cams)
    genuine = {(int(a), int(b)) for a, b, y in zip(*pairs) if y == 1}
    # pid 7 at (0,c0) (1,c1) (2,c1) (7,c0): cross-camera pairs 0-1 0-2 1-7 2-7; pid 8 same camera only; junk ignored
    assert genuine == {(0, 1), (0, 2), (1, 7), (2, 7)}
    kept = [i for i in range(8) if pids[i] != -1]
    impostors = {(a, b) for a, b in combinations(kept, 2) if pids[a] != pids[b]}
    assert {(int(a), int(b)) for a, b, y in zip(*pairs) if y == 0} == impostors
    assert len(impostors) == math.comb(7, 2) - (math.comb(4, 2) + math.comb(2, 2)) == 14
    assert pairs.num_genuine == 4 and pairs.num_impostor == 14 and pairs.num_pairs == 18
    assert np.all(pairs.a < pairs.b)
    order = np.lexsort((pairs.b, pairs.a))
    np.testing.assert_array_equal(order, np.arange(pairs.num_pairs))
    # Sampled impostors: seeded, distinct, all impostors, genuine pairs untouched.
    for m in (5, 10):  # 5: rejection sampling; 10 (> half of 14): choice over the enumeration
        s1, s2 = make_pairs(pids, cams, max_impostors=m, seed=3), make_pairs(pids, cams, max_impostors=m, seed=3)
        for x, y in zip(s1, s2):
            np.testing.assert_array_equal(x, y)
        imp = {(int(a), int(b)) for a, b, y in zip(*s1) if y == 0}
        assert len(imp) == m and imp <= impostors and s1.num_genuine == 4
    assert make_pairs(pids, cams, max_impostors=100).num_impostor == 14
    assert make_pairs(pids, cams, ignore_pids=(-1, 9)).num_impostor == math.comb(6, 2) - 6 - 1


def test_sampled_impostors_large_split_are_uniform_enough():
    rng = np.random.default_rng(0)
    pids = rng.integers(0, 300, 3000)
    cams = rng.integers(0, 6, 3000)
    pairs = make_pairs(pids, cams, max_impostors=200_000, seed=1)
    imp = pairs.label == 0
    assert imp.sum() == 200_000
    assert np.all(pids[pairs.a[imp]] != pids[pairs.b[imp]])
    code = pairs.a[imp] * 3000 + pairs.b[imp]
    assert np.unique(code).size == 200_000
    # Every image appears in about 2 * 200k / 3000 = 133 impostor pairs.
    counts = np.bincount(np.concatenate([pairs.a[imp], pairs.b[imp]]), minlength=3000)
    assert 80 < counts.mean() < 200 and counts.min() > 60


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine", "correlation", "cityblock", "minkowski"])
@pytest.mark.parametrize("normalize", [False, True])
def test_pair_distances_match_distance_matrix(metric, normalize):
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(30, 16)).astype(np.float32)
    pairs = make_pairs(rng.integers(0, 5, 30), rng.integers(0, 3, 30))
    d = pair_distances(feats, pairs.a, pairs.b, metric=metric, normalize=normalize, chunk_size=7)
    full = distance(feats, feats, metric=metric, normalize=normalize).numpy()
    np.testing.assert_allclose(d, full[pairs.a, pairs.b], rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(pair_scores(feats, pairs.a, pairs.b, metric=metric, normalize=normalize), -d)


def test_evaluate_verification_and_plot(tmp_path):
    rng = np.random.default_rng(0)
    pids = np.repeat(np.arange(20), 4)
    cams = np.tile(np.arange(4), 20)
    centres = rng.normal(size=(20, 32))
    feats = torch.tensor(centres[pids] + 0.3 * rng.normal(size=(80, 32)), dtype=torch.float32)
    res = evaluate_verification(feats, pids, cams, metric="cosine", max_impostors=None)
    assert res["auc"] > 0.99 and res["num_genuine"] == 20 * 6 and res["metric"] == "cosine"
    pairs = make_pairs(pids, cams)
    far, tar, _ = roc_curve(pair_scores(feats, pairs.a, pairs.b), pairs.label)
    fig = plot_roc({"cosine": (far, tar)}, title="synthetic")
    assert fig.axes[0].get_xscale() == "log" and fig.axes[0].get_title() == "synthetic"
    import matplotlib.pyplot as plt

    plt.close(fig)
