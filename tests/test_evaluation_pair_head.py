"""reidlib.evaluation.pair_head: learns on separable synthetic embeddings, seeded, and is compared with cosine."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from reidlib.evaluation.pair_head import PairHead, compare_with_cosine, train_pair_head


def synthetic_embeddings(num_ids: int, per_id: int, seed: int, signal_dims: int = 8, nuisance_dims: int = 56):
    """Identity lives in the first ``signal_dims`` dimensions; the rest is loud per-image noise.

    Cosine similarity over all dimensions is dominated by the noise; a head that learns to look at the signal
    dimensions separates the identities. Returns feats (N, D) float32, pids (N,), camids (N,).
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_ids, signal_dims))
    pids = np.repeat(np.arange(num_ids), per_id)
    signal = centres[pids] + 0.15 * rng.normal(size=(pids.size, signal_dims))
    noise = 1.0 * rng.normal(size=(pids.size, nuisance_dims))
    camids = np.tile(np.arange(per_id), num_ids) % 3
    return np.hstack([signal, noise]).astype(np.float32), pids, camids


def test_learns_separable_features_and_beats_cosine():
    train_f, train_p, _ = synthetic_embeddings(60, 6, seed=0)
    test_f, test_p, test_c = synthetic_embeddings(30, 6, seed=1)  # other identities (other centres)
    head = train_pair_head(train_f, train_p, steps=300, seed=0)
    losses = head.history.losses
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:20])
    res = compare_with_cosine(head, test_f, test_p, test_c, max_impostors=None)
    assert res["pair_head"]["num_genuine"] == res["cosine"]["num_genuine"] > 0
    assert res["num_pairs"] == res["cosine"]["num_genuine"] + res["cosine"]["num_impostor"]
    assert res["pair_head"]["auc"] > 0.97
    assert res["pair_head"]["auc"] > res["cosine"]["auc"] + 0.05
    assert res["pair_head"]["eer"] < res["cosine"]["eer"]


def test_deterministic_under_seed_and_leaves_global_rng_alone():
    f, p, _ = synthetic_embeddings(20, 4, seed=2)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    h1 = train_pair_head(f, p, steps=30, seed=7)
    after = torch.rand(1)
    assert torch.equal(before, after)  # training forked torch's RNG
    h2 = train_pair_head(f, p, steps=30, seed=7)
    h3 = train_pair_head(f, p, steps=30, seed=8)
    for (k, v1), v2 in zip(h1.state_dict().items(), h2.state_dict().values()):
        assert torch.equal(v1, v2), k
    assert h1.history.losses == h2.history.losses
    assert not torch.equal(h1.mlp[0].weight, h3.mlp[0].weight)


def test_head_is_symmetric_and_checks_shapes():
    head = PairHead(16, hidden=8)
    a, b = torch.randn(5, 16), torch.randn(5, 16)
    torch.testing.assert_close(head(a, b), head(b, a))
    assert head(a, b).shape == (5,)
    with pytest.raises(ValueError, match=r"\(B, 16\)"):
        head(torch.randn(5, 8), torch.randn(5, 8))
    with pytest.raises(ValueError, match="at least 2 identities"):
        train_pair_head(np.zeros((4, 16), np.float32), [0, 0, 0, 0])
