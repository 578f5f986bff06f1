"""Losses against values computed by hand on tiny tensors, and the BoT centre-update step order."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from reidlib.losses import (
    CenterLoss,
    CrossEntropyLabelSmooth,
    ReIDLoss,
    TripletLoss,
    make_center_optimizer,
    make_loss,
    pairwise_distance,
)


# ---- label smoothing --------------------------------------------------------------------------------
def test_label_smoothing_by_hand():
    # K = 4, eps = 0.1: q = 0.925 on the target, 0.025 elsewhere. logits (2, 0, 0, 0), target 0:
    # log p0 = 2 - L, log pk = -L with L = log(e^2 + 3); loss = -(0.925 (2 - L) - 0.075 L) = L - 1.85.
    logits = torch.tensor([[2.0, 0.0, 0.0, 0.0]])
    expected = math.log(math.e**2 + 3) - 1.85
    assert CrossEntropyLabelSmooth(4, 0.1)(logits, torch.tensor([0])).item() == pytest.approx(expected, abs=1e-6)


def test_label_smoothing_one_hot_and_uniform():
    logits = torch.randn(5, 7)
    targets = torch.tensor([0, 3, 6, 2, 2])
    # eps = 0 is the plain (one-hot) cross-entropy
    assert CrossEntropyLabelSmooth(7, 0.0)(logits, targets).item() == pytest.approx(
        F.cross_entropy(logits, targets).item(), abs=1e-6)
    # equal logits: the prediction is uniform, the loss is log K whatever eps
    assert CrossEntropyLabelSmooth(7, 0.1)(torch.zeros(3, 7), targets[:3]).item() == pytest.approx(
        math.log(7), abs=1e-6)
    # a near one-hot prediction: loss -> eps·(K-1)/K · (large margin), so smoothing penalises over-confidence
    confident = torch.tensor([[30.0, 0.0, 0.0]])
    assert CrossEntropyLabelSmooth(3, 0.0)(confident, torch.tensor([0])).item() < 1e-6
    assert CrossEntropyLabelSmooth(3, 0.1)(confident, torch.tensor([0])).item() == pytest.approx(
        0.1 * 2 / 3 * 30, rel=1e-4)


def test_label_smoothing_checks():
    with pytest.raises(ValueError):
        CrossEntropyLabelSmooth(4, 1.0)
    with pytest.raises(ValueError, match=r"\(B, 4\)"):
        CrossEntropyLabelSmooth(4)(torch.zeros(2, 5), torch.tensor([0, 1]))


# ---- triplet ----------------------------------------------------------------------------------------
# Four points on a line: 0, 1, 3, 7 with ids 0, 0, 1, 1. Distances: d01=1 d02=3 d03=7 d12=2 d13=6 d23=4.
# Hardest positive / negative per anchor: (1, 3), (1, 2), (4, 2), (4, 6).
LINE = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
IDS = torch.tensor([0, 0, 1, 1])


def test_triplet_hard_mining_by_hand():
    d_ap, d_an, valid = TripletLoss().hardest(LINE, IDS)
    assert torch.allclose(d_ap, torch.tensor([1.0, 1.0, 4.0, 4.0]), atol=1e-5)
    assert torch.allclose(d_an, torch.tensor([3.0, 2.0, 2.0, 6.0]), atol=1e-5)
    assert valid.all()
    # margin 0.3: only anchor 2 violates: 4 - 2 + 0.3 = 2.3; mean over 4 anchors
    assert TripletLoss(0.3)(LINE, IDS).item() == pytest.approx(2.3 / 4, abs=1e-5)
    # soft margin: mean softplus(d_ap - d_an) over gaps -2, -1, 2, -2
    soft = (2 * math.log1p(math.exp(-2)) + math.log1p(math.exp(-1)) + math.log1p(math.exp(2))) / 4
    assert TripletLoss(soft_margin=True)(LINE, IDS).item() == pytest.approx(soft, abs=1e-5)


def test_triplet_cosine_by_hand():
    # unit vectors at 0°, 90°, 45°, 180°; cosine distance 1 - cos
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-2.0, 0.0]])
    ids = torch.tensor([0, 0, 1, 1])
    d = pairwise_distance(x, "cosine")
    assert d[0, 1].item() == pytest.approx(1.0, abs=1e-6)
    assert d[0, 2].item() == pytest.approx(1 - math.sqrt(0.5), abs=1e-6)
    assert d[0, 3].item() == pytest.approx(2.0, abs=1e-6)
    # anchor 0: ap = 1, an = min(0.293, 2) -> 1 - 0.293 + 0.3 > 0
    d_ap, d_an, _ = TripletLoss(metric="cosine").hardest(x, ids)
    assert d_ap[0].item() == pytest.approx(1.0, abs=1e-6)
    assert d_an[0].item() == pytest.approx(1 - math.sqrt(0.5), abs=1e-6)


def test_triplet_stable_and_degenerate():
    # identical features: distances clamp to 1e-6, the gradient is finite (no sqrt(0) NaN)
    x = torch.ones(4, 8, requires_grad=True)
    loss = TripletLoss(0.3)(x, IDS)
    loss.backward()
    assert loss.item() == pytest.approx(0.3, abs=1e-4) and torch.isfinite(x.grad).all()
    # no anchor with both a positive and a negative: loss 0, still differentiable
    y = torch.randn(3, 4, requires_grad=True)
    zero = TripletLoss()(y, torch.tensor([0, 1, 2]))
    zero.backward()
    assert zero.item() == 0.0
    # bf16 input is computed in fp32
    assert TripletLoss()(LINE.bfloat16(), IDS).dtype == torch.float32
    with pytest.raises(ValueError):
        TripletLoss(metric="manhattan")


# ---- center loss -------------------------------------------------------------------------------------
def test_center_loss_by_hand():
    crit = CenterLoss(num_classes=3, feat_dim=2)
    with torch.no_grad():
        crit.centers.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]))
    feat = torch.tensor([[3.0, 4.0], [1.0, 2.0]])
    # ||(3,4)-(0,0)||² = 25, ||(1,2)-(1,1)||² = 1 -> mean 13
    assert crit(feat, torch.tensor([0, 1])).item() == pytest.approx(13.0)
    with pytest.raises(ValueError):
        crit(torch.zeros(2, 3), torch.tensor([0, 1]))


def test_centres_move_toward_features_bot_step():
    """One BoT step: grad of w·mean||x-c||² is -2w(x-c)/B; rescaled by 1/w and SGD lr 0.5, c += (x-c)/B."""
    crit = make_loss(num_classes=2, feat_dim=2, id_weight=0, triplet_weight=0, center_weight=0.0005)
    with torch.no_grad():
        crit.center.centers.copy_(torch.tensor([[0.0, 0.0], [4.0, 4.0]]))
    feat = torch.tensor([[2.0, 2.0], [0.0, 0.0]])
    targets = torch.tensor([0, 1])
    opt = make_center_optimizer(crit, lr=0.5)
    opt.zero_grad()
    total, parts = crit(feat, feat, targets)
    assert parts["center"] == pytest.approx((8 + 32) / 2) and total.item() == pytest.approx(0.0005 * 20)
    total.backward()
    crit.rescale_center_grad()
    opt.step()
    # B = 2: each centre moves half-way to its feature
    assert torch.allclose(crit.center.centers.detach(), torch.tensor([[1.0, 1.0], [2.0, 2.0]]), atol=1e-6)


def test_frozen_centres_reproduce_paper_code():
    crit = make_loss(num_classes=3, feat_dim=4, train_centers=False)
    before = crit.center.centers.detach().clone()
    assert make_center_optimizer(crit) is None
    logits = torch.randn(4, 3, requires_grad=True)
    feat = torch.randn(4, 4, requires_grad=True)
    total, _ = crit(logits, feat, torch.tensor([0, 0, 1, 1]))
    total.backward()
    crit.rescale_center_grad()  # a no-op without gradients
    assert crit.center.centers.grad is None and torch.equal(crit.center.centers, before)


# ---- combined loss -----------------------------------------------------------------------------------
def test_make_loss_total_is_weighted_sum_of_parts():
    torch.manual_seed(0)
    logits, feat = torch.randn(4, 5), torch.randn(4, 6)
    targets = torch.tensor([0, 0, 3, 3])
    crit = make_loss({"num_classes": 5, "feat_dim": 6, "center_weight": 0.5})
    total, parts = crit(logits, feat, targets)
    assert set(parts) == {"id", "triplet", "center", "total"}
    assert parts["id"] == pytest.approx(CrossEntropyLabelSmooth(5)(logits, targets).item(), abs=1e-6)
    assert parts["triplet"] == pytest.approx(TripletLoss()(feat, targets).item(), abs=1e-6)
    expected = parts["id"] + parts["triplet"] + 0.5 * parts["center"]
    assert total.item() == pytest.approx(expected, rel=1e-6) and parts["total"] == pytest.approx(expected, rel=1e-6)


def test_make_loss_config_forms_and_errors():
    cfg = SimpleNamespace(num_classes=4, feat_dim=8, margin=0.5, center_weight=0.0, unrelated="ignored")
    crit = make_loss(cfg)
    assert isinstance(crit, ReIDLoss) and crit.center is None and crit.triplet.margin == 0.5
    assert make_center_optimizer(crit) is None
    assert make_loss({"num_classes": 4}, feat_dim=8, soft_margin=True).triplet.soft_margin  # kwargs merge
    with pytest.raises(ValueError, match="unknown loss options"):
        make_loss(num_classes=4, feat_dim=8, margn=0.3)
    with pytest.raises(ValueError, match="feat_dim"):
        make_loss(num_classes=4)
    with pytest.raises(ValueError, match="num_classes"):
        make_loss(feat_dim=4)


def test_training_step_order_updates_model_and_centres():
    """zero both optimizers -> backward total -> rescale centre grads -> step both: everything moves."""
    torch.manual_seed(0)
    model = nn.Linear(6, 4)
    head = nn.Linear(4, 3)
    crit = make_loss(num_classes=3, feat_dim=4)
    opt = torch.optim.SGD(list(model.parameters()) + list(head.parameters()), lr=0.1)
    opt_c = make_center_optimizer(crit)
    x, y = torch.randn(6, 6), torch.tensor([0, 0, 1, 1, 2, 2])
    w0, c0 = model.weight.detach().clone(), crit.center.centers.detach().clone()
    opt.zero_grad()
    opt_c.zero_grad()
    feat = model(x)
    total, _ = crit(head(feat), feat, y)
    total.backward()
    crit.rescale_center_grad()
    opt.step()
    opt_c.step()
    assert not torch.equal(model.weight, w0) and not torch.equal(crit.center.centers, c0)
    # centres never join the model's optimizer: they are not the model's parameters
    assert all(p is not crit.center.centers for p in model.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_losses_on_cuda():
    crit = make_loss(num_classes=3, feat_dim=4).cuda()
    total, _ = crit(torch.randn(4, 3, device="cuda"), torch.randn(4, 4, device="cuda"),
                    torch.tensor([0, 0, 1, 1], device="cuda"))
    assert total.device.type == "cuda"
