"""Optimizers, the per-epoch lr schedules, TrainConfig validation and checkpoint helpers (no training)."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from reidlib.engine import TrainConfig, build_optimizer, build_scheduler, lr_factor
from reidlib.engine.checkpoint import load_checkpoint, pack_rng, save_checkpoint, unpack_rng


def _lrs(optimizer: torch.optim.Optimizer, scheduler, epochs: int) -> list[float]:
    out = []
    for _ in range(epochs):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


def _params() -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(torch.zeros(3))]


def test_warmup_multistep_paper_convention():
    opt = build_optimizer(_params(), "adam", lr=3.5e-4)
    lrs = _lrs(opt, build_scheduler(opt), 120)
    assert lrs[0] == pytest.approx(3.5e-6)  # epoch 0 (the first) at 0.01 x base
    assert lrs[5] == pytest.approx(3.5e-4 * (0.01 + 0.99 * 5 / 10))
    assert lrs[10] == pytest.approx(3.5e-4) and lrs[39] == pytest.approx(3.5e-4)
    assert lrs[40] == pytest.approx(3.5e-5) and lrs[69] == pytest.approx(3.5e-5)  # 41st epoch: first at x0.1
    assert lrs[70] == pytest.approx(3.5e-6) and lrs[119] == pytest.approx(3.5e-6)


def test_cosine_with_warmup_and_no_warmup():
    assert lr_factor(0, scheduler="cosine", epochs=20, warmup_epochs=4) == pytest.approx(0.01)
    assert lr_factor(4, scheduler="cosine", epochs=20, warmup_epochs=4) == pytest.approx(1.0)
    assert lr_factor(12, scheduler="cosine", epochs=20, warmup_epochs=4) == pytest.approx(0.5)
    assert lr_factor(19, scheduler="cosine", epochs=20, warmup_epochs=4, min_factor=0.1) == pytest.approx(
        0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 15 / 16)))
    assert lr_factor(0, warmup_epochs=0, milestones=()) == 1.0


def test_optimizer_choices():
    sgd = build_optimizer(_params(), "sgd")
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.95 and not sgd.defaults["nesterov"]
    assert sgd.defaults["weight_decay"] == 5e-4
    assert isinstance(build_optimizer(_params(), "adam"), torch.optim.Adam)
    assert isinstance(build_optimizer(_params(), "adamw"), torch.optim.AdamW)
    assert build_optimizer(_params(), "amsgrad").defaults["amsgrad"] is True
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        build_optimizer(_params(), "rmsprop")


def test_scheduler_state_round_trip(tmp_path):
    opt = build_optimizer(_params(), "sgd", lr=0.1)
    sched = build_scheduler(opt, "cosine", epochs=10, warmup_epochs=2)
    _lrs(opt, sched, 3)
    save_checkpoint({"s": sched.state_dict(), "o": opt.state_dict()}, tmp_path / "s.pt")
    state = load_checkpoint(tmp_path / "s.pt")  # weights_only=True
    opt2 = build_optimizer(_params(), "sgd", lr=0.1)
    sched2 = build_scheduler(opt2, "cosine", epochs=10, warmup_epochs=2)
    opt2.load_state_dict(state["o"])
    sched2.load_state_dict(state["s"])
    assert _lrs(opt2, sched2, 7) == pytest.approx(_lrs(opt, sched, 7))


def test_rng_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    save_checkpoint({"rng": pack_rng()}, tmp_path / "r.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    unpack_rng(load_checkpoint(tmp_path / "r.pt")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    assert not list(tmp_path.glob(".*tmp*"))  # the temporary file was renamed away


def test_config_errors_are_clear():
    with pytest.raises(ValueError, match="unknown optimizer"):
        TrainConfig(optimizer="lbfgs")
    with pytest.raises(ValueError, match="scheduler"):
        TrainConfig(scheduler="step")
    with pytest.raises(ValueError, match="select_on"):
        TrainConfig(select_on="best")
    with pytest.raises(ValueError, match="multiple of num_instances"):
        TrainConfig(batch_size=30, num_instances=4)
    with pytest.raises(TypeError, match="unknown training option"):
        TrainConfig.from_kwargs(epoch=3)
    cfg = TrainConfig()
    assert (cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.epochs) == ("adam", 3.5e-4, 5e-4, 120)
    assert (cfg.milestones, cfg.warmup_epochs, cfg.warmup_factor, cfg.gamma) == ((40, 70), 10, 0.01, 0.1)
    assert (cfg.batch_size, cfg.num_instances, cfg.triplet_margin, cfg.center_weight, cfg.center_lr) == (
        64, 4, 0.3, 5e-4, 0.5)
