"""benchmarks/gpu_throughput.py in its quick CPU mode on a tiny synthetic dataset: it runs and its report has its keys.

The GPU numbers themselves need a GPU (benchmarks/gpu_session.sh); this only keeps the script from rotting.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_cpu_report(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import gpu_throughput
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    out = tmp_path / "out"
    argv = ["--quick", "--device", "cpu", "--no-peer", "--synthetic", "--compile", "--models", "osnet_x0_25",
            "--work", str(tmp_path / "work"), "--out", str(out)]
    assert gpu_throughput.main(argv) == 0
    rep = json.loads((out / "gpu_throughput.json").read_text())
    assert {"command", "quick", "device", "versions", "compile", "config", "data", "models", "train", "extract",
            "peer", "ratios"} <= set(rep)
    assert rep["quick"] is True and rep["device"]["type"] == "cpu" and rep["peer"] is None and rep["ratios"] == {}
    assert rep["compile"].startswith("skipped")  # --compile is CUDA only, and the report says so
    assert {"torch", "torchvision", "python"} <= set(rep["versions"])
    assert rep["config"]["height"] == 128 and rep["config"]["data_path"] == "cached"
    assert [(r["model"], r["recipe"]) for r in rep["train"]] == [("osnet_x0_25", "paper"), ("osnet_x0_25", "peer")]
    for r in rep["train"]:
        assert r["img_per_s"] > 0 and r["images"] > 0 and r["data_path"] == "cached" and r["channels_last"]
        assert r["compiled"] is False and r["peak_mib"] is None
    assert {r["source"] for r in rep["extract"]} == {"loader", "memory"}
    assert all(r["img_per_s"] > 0 and r["images"] == 32 for r in rep["extract"])
    md = (out / "gpu_throughput.md").read_text()
    assert "Not GPU numbers" in md and "skipped" in md and "osnet_x0_25" in md
    assert not list(out.glob(".*tmp"))  # atomic writes leave no temporary files
