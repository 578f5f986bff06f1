"""The small helpers the benchmark scripts share (benchlib): how a report names its command, how results are written,
the timed training step; and how the step profile groups operators."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def benchmarks_on_path():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        yield
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


def test_command_line_and_results_written_together(tmp_path, benchmarks_on_path):
    from benchlib import command_line, write_results

    assert command_line("/any/where/step_profile.py", ["--steps", "3"]) == \
        "HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/step_profile.py --steps 3"
    write_results(tmp_path / "out", "thing", {"meta": {"x": float("nan")}, "rows": [1]}, ["# T", "", "body"])
    assert json.loads((tmp_path / "out" / "thing.json").read_text()) == {"meta": {"x": None}, "rows": [1]}
    assert (tmp_path / "out" / "thing.md").read_text() == "# T\n\nbody\n"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["thing.json", "thing.md"]  # no temp files left


def test_the_train_step_updates_only_trainable_parameters_and_best_seconds_skips_the_warm_up(benchmarks_on_path):
    import torch
    from benchlib import best_seconds, train_step

    class Tiny(torch.nn.Module):  # (logits, feature) like the re-ID models, on 256x128 input
        feat_dim = 4

        def __init__(self):
            super().__init__()
            self.stem = torch.nn.Conv2d(3, 4, 3)
            self.fc = torch.nn.Linear(4, 5)

        def forward(self, x):
            feat = self.stem(x).mean(dim=(2, 3))
            return self.fc(feat), feat

    torch.manual_seed(0)
    model = Tiny()
    model.stem.requires_grad_(False)
    stem, fc = model.stem.weight.clone(), model.fc.weight.clone()
    step = train_step(model, model, batch=8, precision="fp32", num_classes=5, center_weight=0.0, channels_last=False)
    calls = []
    best_seconds(lambda: (calls.append(1), step()), iters=2)
    assert len(calls) == 3  # one warm-up, two timed
    assert torch.equal(model.stem.weight, stem) and not torch.equal(model.fc.weight, fc)


@pytest.mark.parametrize("op, group", [
    ("aten::convolution_backward", "convolution backward"),
    ("aten::mkldnn_convolution", "convolution forward"),
    ("aten::native_batch_norm_backward", "batch norm backward"),
    ("aten::native_batch_norm", "batch norm forward"),
    ("aten::threshold_backward", "activations, pooling, adds"),
    ("aten::_foreach_addcdiv_", "optimizer"),
    ("aten::copy_", "copies and casts"),
    ("aten::nll_loss_forward", "other"),
])
def test_step_profile_groups_operators(op, group, benchmarks_on_path):
    from step_profile import group_of

    assert group_of(op) == group


def test_cpu_ddp_times_both_layouts_and_writes_its_report(tmp_path, benchmarks_on_path):
    """One step per round, one process with 2 threads and two gloo ranks: both rates measured, files written."""
    from cpu_ddp import main

    main(["--steps", "1", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "cpu_ddp.json").read_text())
    assert report["single_2_threads"]["world"] == 1 and report["ddp_2x1_thread"]["world"] == 2
    assert report["single_2_threads"]["img_per_s"] > 0 and report["ddp_2x1_thread"]["img_per_s"] > 0
    assert report["ratio"] == pytest.approx(report["ddp_2x1_thread"]["img_per_s"]
                                            / report["single_2_threads"]["img_per_s"])
    assert "2 DDP ranks" in (tmp_path / "cpu_ddp.md").read_text()
