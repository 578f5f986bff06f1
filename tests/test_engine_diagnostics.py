"""Collapse diagnostics, the metric-loss ramp and the soft-margin triplet, checked against hand-computed values.

Four 2-d features of identities [0, 0, 1, 1]: x0 = (0, 0), x1 = (1, 0), x2 = (0, 2), x3 = (3, 2). Batch-hard
distances per anchor: d_ap = [1, 1, 3, 3] (the only positive), d_an = [2, sqrt 5, 2, sqrt 8] (nearest negative).
"""
from __future__ import annotations

import math

import pytest
import torch

from reidlib.engine import TrainConfig, fit
from reidlib.engine.criterion import build_criterion
from reidlib.engine.health import BatchDiagnostics, metric_weight_factor
from reidlib.losses import ReIDLoss

FEAT = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [3.0, 2.0]])
IDS = torch.tensor([0, 0, 1, 1])
D_AP = [1.0, 1.0, 3.0, 3.0]
D_AN = [2.0, math.sqrt(5.0), 2.0, math.sqrt(8.0)]


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


class _TwoD(torch.nn.Module):
    feat_dim = 2


def test_batch_diagnostics_by_hand():
    diag = BatchDiagnostics("euclidean", torch.device("cpu"))
    diag.update(FEAT, IDS)
    diag.update(torch.tensor([[0.0, 0.0], [0.0, 1.0], [4.0, 0.0]]), torch.tensor([0, 0, 1]))  # anchor 2: no positive
    out = diag.result()
    norms = [0.0, 1.0, 2.0, math.sqrt(13.0), 0.0, 1.0, 4.0]
    assert out["feat_norm"] == pytest.approx(sum(norms) / 7, rel=1e-6)
    # second batch: anchors 0 and 1 (d_ap 1; d_an 4 and sqrt 17); anchor 2 has no positive and is skipped
    assert out["dist_ap"] == pytest.approx((sum(D_AP) + 2.0) / 6, rel=1e-6)
    assert out["dist_an"] == pytest.approx((sum(D_AN) + 4.0 + math.sqrt(17.0)) / 6, rel=1e-6)
    empty = BatchDiagnostics("euclidean", torch.device("cpu")).result()
    assert all(math.isnan(v) for v in empty.values())


def test_soft_margin_triplet_and_hinge_by_hand():
    gaps = [a - n for a, n in zip(D_AP, D_AN)]
    soft = sum(_softplus(g) for g in gaps) / 4
    hinge = sum(max(0.0, g + 0.3) for g in gaps) / 4  # (0 + 0 + 1.3 + 0.4716) / 4
    for margin, want in ((None, soft), (0.3, hinge)):
        cfg = TrainConfig(triplet_margin=margin, center_weight=0.0, label_smooth=0.0)
        crit, center_opt = build_criterion(cfg, 2, _TwoD(), torch.device("cpu"))
        assert center_opt is None
        assert crit.triplet.soft_margin is (margin is None)
        assert crit.triplet(FEAT, IDS).item() == pytest.approx(want, rel=1e-6)
    assert soft == pytest.approx(0.66605, abs=1e-5) and hinge == pytest.approx(0.44289, abs=1e-5)
    with pytest.raises(ValueError, match="triplet_margin must be >= 0, or None"):
        TrainConfig(triplet_margin=-0.1)
    with pytest.raises(ValueError, match="soft_margin: false"):
        build_criterion(TrainConfig(triplet_margin=None, loss_kwargs={"soft_margin": False}), 2, _TwoD(),
                        torch.device("cpu"))


def test_metric_weight_factor_rule():
    assert [metric_weight_factor(e, 0) for e in range(3)] == [1.0, 1.0, 1.0]
    assert [metric_weight_factor(e, 2) for e in range(6)] == [0.0, 0.0, 0.5, 1.0, 1.0, 1.0]
    assert [metric_weight_factor(e, 3) for e in range(7)] == pytest.approx([0, 0, 0, 1 / 3, 2 / 3, 1, 1])


def test_metric_scale_weights_triplet_and_center_by_hand():
    torch.manual_seed(0)
    crit = ReIDLoss(num_classes=2, feat_dim=2, label_smooth=0.0, margin=0.3, center_weight=0.5)
    logits = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    ce = torch.nn.functional.cross_entropy(logits, IDS).item()
    centers = crit.center.centers.detach()
    center = ((FEAT - centers[IDS]) ** 2).sum(1).mean().item()
    hinge = sum(max(0.0, a - n + 0.3) for a, n in zip(D_AP, D_AN)) / 4
    for scale in (1.0, 0.5, 0.0):
        crit.metric_scale = scale
        total, parts = crit(logits, FEAT, IDS)
        assert parts["id"] == pytest.approx(ce, rel=1e-6) and parts["triplet"] == pytest.approx(hinge, rel=1e-6)
        assert parts["center"] == pytest.approx(center, rel=1e-6)  # parts stay unweighted
        assert total.item() == pytest.approx(ce + scale * hinge + scale * 0.5 * center, rel=1e-6)


def test_center_gradient_rescale_follows_the_ramp():
    """Centres' SGD sees the unweighted center-loss gradient whenever the term is on, and nothing when it is off."""
    feat = FEAT.clone()
    for scale in (1.0, 0.25, 0.0):
        torch.manual_seed(0)
        crit = ReIDLoss(num_classes=2, feat_dim=2, label_smooth=0.0, center_weight=5e-4, triplet_weight=0.0)
        crit.metric_scale = scale
        total, _ = crit(torch.zeros(4, 2, requires_grad=True), feat, IDS)
        total.backward()
        crit.rescale_center_grad()
        c = crit.center.centers.detach()
        # d/dc_k of mean_i ||x_i - c_{y_i}||^2 = -2/B * sum_{i: y_i = k} (x_i - c_k)
        want = torch.stack([-2 / 4 * (feat[IDS == k] - c[k]).sum(0) for k in range(2)])
        torch.testing.assert_close(crit.center.centers.grad, want if scale > 0 else torch.zeros_like(want))


def test_fit_logs_diagnostics_and_ramps_the_metric_losses(tmp_path):
    from reidlib.data import build_dataset

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = build_dataset("synthetic", tmp_path / "d", num_ids=12, domain=0, seed=0, num_cams=2,
                             images_per_id_per_cam=2, height=64, width=32)
        res = fit("osnet_x0_25", data, out_dir=tmp_path / "run", epochs=2, metric_warmup_epochs=1,
                  triplet_margin=None, batch_size=16, num_instances=4, height=64, width=32, device="cpu",
                  precision="fp32", channels_last=False, progress=False, warmup_epochs=1, milestones=(2,),
                  evaluate_test=False, model_kwargs={"feature_dim": 32})
    finally:
        torch.set_num_threads(before)
    h = res.history
    assert [r["metric_weight"] for r in h] == [0.0, 1.0]
    assert h[0]["loss"] == pytest.approx(h[0]["loss_id"], rel=1e-9)  # epoch 1: cross-entropy alone
    assert h[1]["loss"] > h[1]["loss_id"]
    for r in h:
        assert r["feat_norm"] > 0 and 0 < r["dist_ap"] and 0 < r["dist_an"]
        assert r["loss_triplet"] > 0  # soft margin: never exactly 0


def test_defaults_keep_the_paper_recipe():
    cfg = TrainConfig()
    assert cfg.metric_warmup_epochs == 0 and cfg.triplet_margin == 0.3
    crit, _ = build_criterion(cfg, 4, _TwoD(), torch.device("cpu"))
    assert crit.metric_scale == 1.0 and crit.triplet.margin == 0.3 and not crit.triplet.soft_margin
