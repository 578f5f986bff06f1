"""benchmarks/gpu_throughput.py in its quick CPU mode on a tiny synthetic dataset: it runs and its report has its keys;
a run cut short keeps the measurements it made; benchmarks/gpu_session.sh selects every CUDA test.

The GPU numbers themselves need a GPU (benchmarks/gpu_session.sh); this only keeps the scripts from rotting.
"""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _import_gpu_throughput():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import gpu_throughput
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return gpu_throughput


@pytest.mark.slow
def test_quick_cpu_report(tmp_path):
    gpu_throughput = _import_gpu_throughput()
    out = tmp_path / "out"
    argv = ["--quick", "--device", "cpu", "--no-peer", "--synthetic", "--compile", "--models", "osnet_x0_25",
            "--work", str(tmp_path / "work"), "--out", str(out)]
    assert gpu_throughput.main(argv) == 0
    rep = json.loads((out / "gpu_throughput.json").read_text())
    assert {"command", "quick", "device", "versions", "compile", "config", "data", "models", "train", "extract",
            "peer", "ratios"} <= set(rep)
    assert rep["quick"] is True and rep["device"]["type"] == "cpu" and rep["peer"] is None and rep["ratios"] == {}
    assert rep["complete"] is True
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


def test_a_run_cut_short_keeps_its_measurements(tmp_path, monkeypatch):
    """The report is rewritten after every measurement: a time limit hitting the extraction keeps the training
    numbers (it used to be written once, at the very end)."""
    gpu_throughput = _import_gpu_throughput()

    def fake_train(name, items, args, device, work, recipe, compiled):
        return {"model": name, "recipe": recipe, "compiled": compiled, "precision": "fp32", "channels_last": True,
                "data_path": "cached", "images": 32, "seconds": 2.0, "img_per_s": 16.0, "first_epoch_img_per_s": 8.0,
                "first_epoch_seconds": 4.0, "call_seconds": 6.0, "peak_mib": None, "model_obj": None}

    def time_is_up(*args, **kwargs):
        raise KeyboardInterrupt  # what a timeout's signal does in the middle of a measurement

    monkeypatch.setattr(gpu_throughput, "measure_train", fake_train)
    monkeypatch.setattr(gpu_throughput, "measure_extract", time_is_up)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        gpu_throughput.main(["--quick", "--device", "cpu", "--no-peer", "--synthetic", "--models", "osnet_x0_25",
                             "--work", str(tmp_path / "work"), "--out", str(out)])
    rep = json.loads((out / "gpu_throughput.json").read_text())
    assert rep["complete"] is False
    assert [(r["recipe"], r["img_per_s"]) for r in rep["train"]] == [("paper", 16.0), ("peer", 16.0)]
    md = (out / "gpu_throughput.md").read_text()
    assert "**Partial**" in md and "| osnet_x0_25 | peer | no | fp32 | cached | 32 | 16.0 | 8.0 | - |" in md


def _session_selection() -> tuple[list[str], str]:
    script = (REPO / "benchmarks" / "gpu_session.sh").read_text()
    files = re.search(r"^GPU_TESTS=\((.*?)\)", script, re.S | re.M)
    expr = re.search(r'^GPU_K="([^"]+)"', script, re.M)
    assert files and expr, "gpu_session.sh must define GPU_TESTS=(...) and GPU_K=\"...\""
    assert '-k "$GPU_K" "${GPU_TESTS[@]}"' in script  # and use them
    return files.group(1).split(), expr.group(1)


def test_gpu_session_selects_every_cuda_test():
    """Every test skipped without CUDA (a skipif on torch.cuda.is_available) is run by the session, and only those."""
    files, expr = _session_selection()
    want = set()
    for path in sorted((REPO / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_") and any(
                    "cuda.is_available" in ast.unparse(d) for d in node.decorator_list):
                want.add(f"tests/{path.name}::{node.name}")
    assert len(want) >= 5  # losses, fit, GPU augmentation, resume, DDP on CUDA
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           "-k", expr, *files], cwd=REPO, capture_output=True, text=True, timeout=300)
    got = {line.split("[")[0] for line in proc.stdout.splitlines() if "::" in line}
    assert got == want, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_gpu_session_installs_nothing_online():
    script = (REPO / "benchmarks" / "gpu_session.sh").read_text()
    run = script[script.index("export HF_HUB_OFFLINE"):]  # the device part (--prepare runs here)
    assert "PIP_NO_INDEX=1" in run
    installs = [ln for ln in run.splitlines() if "pip install" in ln]
    assert installs and all("--no-index" in ln for ln in installs)
    venvs = [ln for ln in run.splitlines() if "-m venv" in ln]
    assert venvs and all("--without-pip" in ln for ln in venvs)  # no ensurepip needed, nothing to bootstrap
