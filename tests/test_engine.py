"""The trainer end to end on a tiny synthetic dataset: records, exact resume, budgets, selection, CLI, fine-tuning.

Everything runs on CPU in fp32 at 64 x 32 with OSNet x0.25 (32-d features) and P x K = 4 x 4.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
from pathlib import Path

import pytest
import torch

from reidlib.data import ImageReadError, build_dataset
from reidlib.engine import finetune, fit, load_checkpoint, prepare_finetune, unwrap
from reidlib.engine.launch import main as cli_main
from reidlib.runtime import resolve_precision

FAST = dict(batch_size=16, num_instances=4, height=64, width=32, device="cpu", precision="fp32",
            channels_last=False, progress=False, warmup_epochs=1, milestones=(2,), test_batch_size=64,
            model_kwargs={"feature_dim": 32})
SYNTH = dict(num_cams=2, images_per_id_per_cam=2, height=64, width=32)
TIMING = {"images_per_s", "train_seconds", "epoch_seconds"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models on a shared 2-core machine


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return build_dataset("synthetic", tmp_path_factory.mktemp("data") / "a", num_ids=24, domain=0, seed=0, **SYNTH)


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    return build_dataset("synthetic", tmp_path_factory.mktemp("data") / "b", num_ids=20, domain=1, seed=1, **SYNTH)


@pytest.fixture(scope="module")
def source_run(source, tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("runs") / "source"
    return fit("osnet_x0_25", source, out_dir=out, epochs=2, num_val_ids=3, **FAST)


def _tree_digest(folder: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ---- one run: files, records, selection --------------------------------------------------------------
def test_fit_writes_checkpoints_and_records(source_run):
    res, out = source_run, source_run.out_dir
    assert {"last.pt", "best.pt", "metrics.csv", "history.json", "result.json", "test_metrics.json"} <= {
        p.name for p in out.iterdir()}
    assert not list(out.glob(".*tmp*"))
    assert res.optimizer == "adam" and res.selected_on == "val" and "validation" in res.selection
    assert res.epochs_completed == 2 and res.best_epoch in (1, 2) and res.stopped_early is None
    assert res.checkpoint == out / "best.pt"
    h = res.history
    assert [r["epoch"] for r in h] == [1, 2]
    assert h[0]["lr"] == pytest.approx(3.5e-6) and h[1]["lr"] == pytest.approx(3.5e-4)  # warm-up of 1 epoch
    for key in ("loss", "loss_id", "loss_triplet", "loss_center", "train_acc", "images_per_s", "epoch_seconds",
                "val_rank1", "val_mAP"):
        assert all(math.isfinite(r[key]) for r in h), key
    with (out / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 and {"epoch", "lr", "loss_triplet", "val_rank1", "images_per_s"} <= set(rows[0])
    assert json.loads((out / "history.json").read_text())[1]["epoch"] == 2
    saved = json.loads((out / "result.json").read_text())
    assert saved["optimizer"] == "adam" and saved["test_metrics"]["num_valid_queries"] > 0
    assert 0.0 <= res.test_metrics["rank1"] <= 1.0 and 0.0 <= res.test_metrics["mAP"] <= 1.0
    assert res.summary()["test_mAP"] == res.test_metrics["mAP"]

    last = load_checkpoint(out / "last.pt")
    assert {"model", "optimizer", "scheduler", "criterion", "center_optimizer", "scaler", "rng", "sampler_epoch",
            "loader_generator", "epoch", "history", "config", "model_spec"} <= set(last)
    assert last["epoch"] == 2 and last["sampler_epoch"] == 2 and last["config"]["optimizer"] == "adam"
    assert last["criterion"]["center.centers"].shape == (last["num_classes"], 32)
    assert last["model_spec"]["name"] == "osnet_x0_25"
    assert load_checkpoint(out / "best.pt")["epoch"] == res.best_epoch


def _strip(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING} for row in history]


@pytest.mark.parametrize("data_path", ["cached", "pil"])
def test_resume_is_bit_exact(source, tmp_path, data_path):
    kw = dict(epochs=3, num_val_ids=3, deterministic=True, seed=3, optimizer="sgd", data_path=data_path, **FAST)
    full = fit("osnet_x0_25", source, out_dir=tmp_path / "full", **kw)
    part = fit("osnet_x0_25", source, out_dir=tmp_path / "part", stop_after=1, **kw)
    assert part.epochs_completed == 1 and part.stopped_early.startswith("stop_after") and part.test_metrics is None
    resumed = fit("osnet_x0_25", source, out_dir=tmp_path / "part", **kw)  # a fresh process would do the same
    assert resumed.epochs_completed == 3 and resumed.meta["runs"][-1]["start_epoch"] == 1
    a, b = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(tmp_path / "part" / "last.pt")
    for part_name in ("model", "criterion"):
        for key, tensor in a[part_name].items():
            assert torch.equal(tensor, b[part_name][key]), f"{part_name}.{key} differs after resume"
    for idx, state in a["optimizer"]["state"].items():
        assert torch.equal(state["momentum_buffer"], b["optimizer"]["state"][idx]["momentum_buffer"])
    assert _strip(full.history) == _strip(resumed.history)
    assert full.test_metrics == resumed.test_metrics and full.best_epoch == resumed.best_epoch
    assert full.meta["runs"][0]["data_path"] == data_path


def test_cached_path_is_the_default_and_reuses_its_cache_dir(source, tmp_path):
    kw = dict(epochs=1, select_on="last", evaluate_test=False, cache_dir=str(tmp_path / "cache"), **FAST)
    first = fit("osnet_x0_25", source, out_dir=tmp_path / "a", **kw)
    run = first.meta["runs"][0]
    assert run["data_path"] == "cached" and run["image_cache"]["hit"] is False
    assert run["image_cache"]["file"].startswith(str(tmp_path / "cache")) and run["malloc"] in ("mallopt", "env", "off",
                                                                                                "unavailable")
    second = fit("osnet_x0_25", source, out_dir=tmp_path / "b", **kw)
    assert second.meta["runs"][0]["image_cache"]["hit"] is True
    # the cache is not part of the recipe: a resumed run may find it elsewhere
    third = fit("osnet_x0_25", source, out_dir=tmp_path / "a", **{**kw, "epochs": 1, "cache_dir": None})
    assert third.epochs_completed == 1


def test_a_cache_too_large_for_memory_falls_back_to_the_pil_path(source, tmp_path, monkeypatch):
    from reidlib.data import cache as cache_mod

    monkeypatch.setattr(cache_mod, "_available_memory", lambda: 1000)
    with pytest.warns(UserWarning, match="PIL data path"):
        res = fit("osnet_x0_25", source, out_dir=tmp_path / "run", epochs=1, select_on="last", evaluate_test=False,
                  **FAST)
    assert res.meta["runs"][0]["data_path"] == "pil" and "cache_dir" in res.meta["runs"][0]["cached_path_refused"]


def test_a_corrupt_gallery_image_fails_before_any_epoch(tmp_path):
    ds = build_dataset("synthetic", tmp_path / "data", num_ids=12, domain=0, seed=2, **SYNTH)
    bad = ds.gallery[len(ds.gallery) // 2][0]
    Path(bad).write_bytes(b"\x89PNG truncated")
    with pytest.raises(ImageReadError, match=Path(bad).name):
        fit("osnet_x0_25", ds, out_dir=tmp_path / "run", epochs=1, **FAST)
    assert not (tmp_path / "run" / "last.pt").exists() and not (tmp_path / "run" / "metrics.csv").exists()


def test_resume_refuses_another_recipe(source_run, source):
    with pytest.raises(ValueError, match="another recipe.*lr"):
        fit("osnet_x0_25", source, out_dir=source_run.out_dir, epochs=2, num_val_ids=3, **{**FAST, "lr": 1e-3})


def test_max_minutes_stops_at_an_epoch_boundary_and_test_set_selection_is_labelled(source, tmp_path):
    res = fit("osnet_x0_25", source, out_dir=tmp_path / "budget", epochs=4, max_minutes=1e-4, select_on="test",
              optimizer="sgd", **FAST)
    assert res.epochs_completed == 1 and "max_minutes" in res.stopped_early
    assert res.optimizer == "sgd" and res.selected_on == "test" and "TEST set" in res.selection
    assert "test_rank1" in res.history[0] and "val_rank1" not in res.history[0]
    assert json.loads((tmp_path / "budget" / "result.json").read_text())["stopped_early"] == res.stopped_early
    assert res.test_metrics is not None  # the selected checkpoint is still evaluated once


def test_bad_options_fail_before_training(source, tmp_path):
    with pytest.raises(ValueError, match="data_path"):
        fit("osnet_x0_25", source, out_dir=tmp_path / "dp", epochs=1, data_path="gpu", **FAST)
    with pytest.raises(ValueError, match="select_on='val' needs"):
        fit("osnet_x0_25", source, out_dir=tmp_path / "x", select_on="val", **FAST)
    with pytest.raises(ValueError, match="select_on='test' needs a dataset"):
        fit("osnet_x0_25", source.train, out_dir=tmp_path / "x", select_on="test", **FAST)
    with pytest.raises(ValueError, match="unknown optimizer"):
        fit("osnet_x0_25", source, out_dir=tmp_path / "x", optimizer="rmsprop", **FAST)
    with pytest.raises(ValueError, match="no module 'stem'.*top-level modules are \\['conv1'"):
        fit("osnet_x0_25", source, out_dir=tmp_path / "x", frozen_layers=["stem"], **FAST)
    with pytest.raises(TypeError, match="unknown training option"):
        fit("osnet_x0_25", source, out_dir=tmp_path / "x", num_epochs=3, **FAST)
    assert not (tmp_path / "x").exists()


def test_cli_trains_and_prints_a_summary(source, tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["--dataset", "synthetic", "--root", str(source.root), "--model", "osnet_x0_25", "--out", str(out),
            "--epochs", "1", "--batch-size", "16", "--height", "64", "--width", "32", "--device", "cpu",
            "--no-progress", "--warmup-epochs", "0",  # default precision/layout: the CPU fast path (auto + CL)
            "--optimizer", "sgd", "--model-kwargs", '{"feature_dim": 32}', "--no-evaluate-test"]
    assert cli_main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["optimizer"] == "sgd" and summary["epochs_completed"] == 1
    state = load_checkpoint(out / "last.pt")
    expected = resolve_precision("auto", torch.device("cpu"))  # bf16 where the CPU has it natively, else fp32
    assert state["config"]["optimizer"] == "sgd" and state["meta"]["runs"][0]["precision"] == expected
    assert state["meta"]["runs"][0]["channels_last"] is True


# ---- fine-tuning -------------------------------------------------------------------------------------
def test_frozen_layers_never_train_not_even_after_a_head_only_phase(source, tmp_path):
    from reidlib.models import build_model

    torch.manual_seed(0)
    model = build_model("osnet_x0_25", source.num_train_pids - 3, feature_dim=32)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    res = fit(model, source, out_dir=tmp_path / "frozen", epochs=2, num_val_ids=3, head_only_epochs=1,
              frozen_layers=["conv1", "conv2"], **FAST)
    assert [r["head_only"] for r in res.history] == [True, False]
    end = load_checkpoint(tmp_path / "frozen" / "last.pt")["model"]
    frozen = [k for k in start if k.startswith(("conv1.", "conv2.")) and k.endswith((".weight", ".bias"))]
    assert frozen and all(torch.equal(end[k], start[k]) for k in frozen)
    # their BatchNorm layers still follow the new data in the full phase; the layers above them train
    assert not torch.equal(end["conv1.bn.running_mean"], start["conv1.bn.running_mean"])
    assert not torch.equal(end["conv3.0.conv1.conv.weight"], start["conv3.0.conv1.conv.weight"])
    assert list(load_checkpoint(tmp_path / "frozen" / "last.pt")["config"]["frozen_layers"]) == ["conv1", "conv2"]


def test_finetune_refuses_the_source_folder(source_run, target):
    for bad in (source_run.out_dir, source_run.out_dir / "ft"):
        with pytest.raises(ValueError, match="must differ from"):
            finetune(source_run.checkpoint, target, out_dir=bad, **FAST)


def test_prepare_finetune_replaces_the_real_classifier(source_run, target):
    src_classes = load_checkpoint(source_run.checkpoint)["num_classes"]
    model = prepare_finetune(source_run.checkpoint, target, num_val_ids=3)
    n_target = target.num_train_pids - 3
    assert n_target != src_classes
    assert unwrap(model) is model and model.classifier.out_features == n_target
    model.train()
    logits, feat = model(torch.randn(4, 3, 64, 32))
    assert logits.shape == (4, n_target) and feat.shape == (4, 32)
    logits.logsumexp(1).mean().backward()
    assert model.classifier.weight.grad is not None and model.classifier.weight.grad.abs().sum() > 0


def test_finetune_head_only_then_full(source_run, target, tmp_path):
    before = _tree_digest(source_run.out_dir)
    src = load_checkpoint(source_run.checkpoint)["model"]
    fresh = prepare_finetune(source_run.checkpoint, target, num_val_ids=3).state_dict()
    head = set(prepare_finetune(source_run.checkpoint, target, num_val_ids=3).head_parameter_names())
    head_keys = {k for k in fresh if any(k.startswith(h.rsplit(".", 1)[0] + ".") for h in head)}
    kw = dict(epochs=2, head_only_epochs=1, num_val_ids=3, **FAST)
    out = tmp_path / "ft"

    first = finetune(source_run.checkpoint, target, out_dir=out, stop_after=1, **kw)
    assert first.history[0]["head_only"] is True
    state = load_checkpoint(out / "last.pt")
    n_target = target.num_train_pids - 3
    assert state["model"]["classifier.weight"].shape == (n_target, 32)
    assert state["criterion"]["center.centers"].shape == (n_target, 32)  # a fresh center loss for the target
    assert not torch.equal(state["model"]["classifier.weight"], fresh["classifier.weight"])  # the head trained
    backbone = [k for k in src if k not in head_keys and not k.startswith("classifier.")]
    assert backbone and all(torch.equal(state["model"][k], src[k]) for k in backbone)  # frozen, BN stats too

    second = finetune(source_run.checkpoint, target, out_dir=out, **kw)  # resumes into the full phase
    assert [r["head_only"] for r in second.history] == [True, False]
    final = load_checkpoint(out / "last.pt")["model"]
    assert any(not torch.equal(final[k], src[k]) for k in backbone if final[k].is_floating_point())
    assert second.meta["finetune"]["source_checkpoint"] == str(source_run.checkpoint.resolve())
    assert second.test_metrics is not None and second.out_dir == out
    assert _tree_digest(source_run.out_dir) == before  # the source run is untouched


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_fit_on_cuda(source, tmp_path, precision):
    """The CUDA path (AMP under ``auto``): finite losses, checkpoints that load on CPU, a test evaluation."""
    kwargs = dict(FAST, device="cuda", precision=precision, channels_last=True)
    res = fit("osnet_x0_25", source, out_dir=tmp_path / "gpu", epochs=2, num_val_ids=3, **kwargs)
    assert res.epochs_completed == 2
    assert all(math.isfinite(row["loss"]) for row in res.history)
    assert res.test_metrics is not None and 0.0 <= res.test_metrics["mAP"] <= 1.0
    state = load_checkpoint(res.checkpoint)
    assert state["epoch"] >= 1
    assert next(iter(state["model"].values())).device.type == "cpu"


def test_low_res_epochs_train_on_downscaled_batches_and_evaluate_at_full_size(source, tmp_path):
    from reidlib.models import build_model

    model = build_model("osnet_x0_25", 21, feature_dim=32)
    seen: list[tuple[bool, tuple[int, int]]] = []
    model.register_forward_pre_hook(lambda m, args: seen.append((m.training, tuple(args[0].shape[-2:]))))
    res = fit(model, source, out_dir=tmp_path / "run", epochs=2, num_val_ids=3, low_res_epochs=1,
              low_res_size=(32, 16), **FAST)
    assert [row["input_size"] for row in res.history] == [[32, 16], [64, 32]]
    trained = [size for training, size in seen if training]
    steps = len(trained) // 2
    assert trained == [(32, 16)] * steps + [(64, 32)] * steps  # the first epoch low, the second full
    assert {size for training, size in seen if not training} == {(64, 32)}  # selection and test at full size
    assert res.config["low_res_size"] == [32, 16]


def test_low_res_size_is_checked_against_the_input_size():
    from reidlib.engine import TrainConfig

    cfg = TrainConfig(height=256, width=128, low_res_epochs=3, low_res_size=[192, 96])
    assert [cfg.train_size(e) for e in (0, 2, 3)] == [(192, 96), (192, 96), (256, 128)]
    assert TrainConfig().train_size(0) == (256, 128)  # off by default
    with pytest.raises(ValueError, match=r"low_res_epochs=2 needs low_res_size \[height, width\].*256x128.*got \[\]"):
        TrainConfig(low_res_epochs=2)
    with pytest.raises(ValueError, match=r"at most the input size 256x128 pixels, got \[300, 96\]"):
        TrainConfig(low_res_epochs=2, low_res_size=[300, 96])
    with pytest.raises(ValueError, match="low_res_epochs must be >= 0"):
        TrainConfig(low_res_epochs=-1, low_res_size=[192, 96])
