"""Weights loading: ``pretrained="imagenet"`` for every model and bad weight inputs.

No test here touches the network: ``torch.hub.download_url_to_file`` is replaced for every test, and the
ImageNet "weights" are FAKE files (freshly built, randomly initialised torchvision / reidlib models saved under
the upstream file names) planted in a temporary ``TORCH_HOME``. The ResNet50 file is written once per module.
"""
from __future__ import annotations

import logging
import os
import pickle
import random
import urllib.error
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torchvision

from reidlib.models import (
    CheckpointReadError,
    ImageNetWeightsNotFound,
    build_model,
    count_parameters,
    downloads_allowed,
    list_models,
    load_pretrained,
)
from reidlib.models.osnet import OSNet

RESNET_FILE = "resnet50-0676ba61.pth"  # torchvision ResNet50_Weights.IMAGENET1K_V1
MNV3_FILE = "mobilenet_v3_large-8738ca79.pth"  # torchvision MobileNet_V3_Large_Weights.IMAGENET1K_V1
OSNET_FILE = "osnet_x0_25_imagenet.pth"  # torchreid's ImageNet OSNet x0.25
# per model: the file, the folder under TORCH_HOME where it belongs, the report's target, a tensor to compare
IMAGENET = {
    "bot_resnet50": (RESNET_FILE, "hub/checkpoints", "backbone", "conv1.weight"),
    "mnv3_siamese": (MNV3_FILE, "hub/checkpoints", "backbone", "features.0.0.weight"),
    "osnet_x0_25": (OSNET_FILE, "checkpoints", "", "conv1.conv.weight"),
}
PAPER_COUNTS = {"bot_resnet50": 25_050_927, "osnet_x0_25": 1_017_543, "mnv3_siamese": 6_206_663}


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Downloads fail the test; offline by default; ``torch.hub.get_dir()`` follows ``TORCH_HOME``."""

    def refuse(url, dst, hash_prefix=None, progress=True):
        raise AssertionError(f"a test tried to download {url}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    monkeypatch.setenv("REIDLIB_OFFLINE", "1")


@pytest.fixture(scope="module")
def fake_store(tmp_path_factory) -> dict[str, dict[str, torch.Tensor]]:
    """Fake ImageNet files (random init, upstream names) in a module folder; returns their state dicts."""
    store = tmp_path_factory.mktemp("fake_imagenet")
    torch.manual_seed(123)
    states = {
        RESNET_FILE: torchvision.models.resnet50(weights=None).state_dict(),
        MNV3_FILE: torchvision.models.mobilenet_v3_large(weights=None).state_dict(),
        # torchreid's ImageNet OSNet: 512-d fc and a 1000-class classifier, torchreid's key names
        OSNET_FILE: OSNet(1000).state_dict(),
    }
    for name, state in states.items():
        torch.save(state, store / name)
    states["_dir"] = store  # type: ignore[assignment]
    return states


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    """An empty ``TORCH_HOME`` for one test."""
    home = tmp_path / "torch_home"
    home.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def plant(home: Path, store: Path, file_name: str, folder: str) -> Path:
    """Link the fake ``file_name`` into ``home/folder`` (no 100 MB copy) and return the link."""
    dst = home / folder / file_name
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(store / file_name, dst)
    return dst


# ---- pretrained="imagenet" ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, paper",
    [("bot_resnet50", True), ("mnv3_siamese", False), ("mnv3_siamese", True),
     ("osnet_x0_25", False), ("osnet_x0_25", True)],
)
def test_imagenet_weights_land_in_the_model(fake_store, torch_home, caplog, name, paper):
    file_name, folder, target, probe = IMAGENET[name]
    path = plant(torch_home, fake_store["_dir"], file_name, folder)
    with caplog.at_level(logging.INFO, logger="reidlib.models.weights"):
        model = build_model(name, 751, pretrained="imagenet", paper_code=paper)
    rep = model.pretrained_report
    assert rep.path == str(path) and rep.target == target and rep.origin
    module = model.backbone if target else model
    assert torch.equal(module.state_dict()[probe], fake_store[file_name][probe])
    assert str(path) in caplog.text and (f"model.{target}" if target else "-> model:") in caplog.text
    assert (f"model.{target}" if target else "-> model:") in rep.summary()
    # every non-head tensor loaded; only ImageNet heads (and, in paper mode, OSNet's 1000-d fc) differ
    assert not rep.missing
    if name == "bot_resnet50":
        assert sorted(rep.unexpected) == ["fc.bias", "fc.weight"] and not rep.mismatched
        assert rep.origin == "torchvision ResNet50_Weights.IMAGENET1K_V1"
    elif name == "mnv3_siamese":
        assert rep.exact if paper else {k.split(".")[0] for k in rep.unexpected} == {"classifier"}
    else:
        assert {m.split(".")[0] for m in rep.mismatched} == ({"classifier", "fc"} if paper else {"classifier"})
        assert model.classifier.out_features == 751
    if paper:  # loading weights leaves the paper's parameter counts alone
        assert count_parameters(model) == PAPER_COUNTS[name]


def test_imagenet_via_load_pretrained_and_osnet_from_the_hub_folder(fake_store, torch_home):
    """``load_pretrained(model, "imagenet")`` works too; OSNet's file is also found in the hub folder."""
    path = plant(torch_home, fake_store["_dir"], OSNET_FILE, "hub/checkpoints")
    rep = load_pretrained(build_model("osnet_x0_25", 10), "imagenet")
    assert rep.path == str(path) and rep.target == ""
    # an explicit path to the file works as any local checkpoint
    explicit = build_model("osnet_x0_25", 10, pretrained=fake_store["_dir"] / OSNET_FILE)
    assert torch.equal(explicit.conv1.conv.weight, fake_store[OSNET_FILE]["conv1.conv.weight"])


@pytest.mark.parametrize("name", list_models())
def test_imagenet_offline_and_absent_names_the_file(torch_home, name):
    file_name, folder, _, _ = IMAGENET[name]
    with pytest.raises(ImageNetWeightsNotFound) as info:
        build_model(name, 10, pretrained="imagenet")
    text = str(info.value)
    assert str(torch_home / folder / file_name) in text and "pretrained=<path" in text
    if name == "osnet_x0_25":  # torchreid's model zoo; never downloaded
        assert "MODEL_ZOO" in text and "never downloaded" in text
        assert str(torch_home / "hub/checkpoints" / file_name) in text  # the second place looked in
    else:  # torchvision's URL, and why nothing was downloaded
        assert f"https://download.pytorch.org/models/{file_name}" in text and "REIDLIB_OFFLINE=1" in text


def test_hf_hub_offline_counts_as_offline_unless_reidlib_offline_0(torch_home, monkeypatch):
    monkeypatch.delenv("REIDLIB_OFFLINE")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ImageNetWeightsNotFound, match="HF_HUB_OFFLINE=1"):
        build_model("mnv3_siamese", 10, pretrained="imagenet")
    cases = [({}, True), ({"HF_HUB_OFFLINE": "1"}, False), ({"REIDLIB_OFFLINE": "1"}, False),
             ({"HF_HUB_OFFLINE": "1", "REIDLIB_OFFLINE": "0"}, True), ({"REIDLIB_OFFLINE": "true"}, False)]
    for env, allowed in cases:
        for var in ("HF_HUB_OFFLINE", "REIDLIB_OFFLINE"):
            monkeypatch.delenv(var, raising=False)
        for var, value in env.items():
            monkeypatch.setenv(var, value)
        assert downloads_allowed()[0] is allowed, env
    monkeypatch.setenv("REIDLIB_OFFLINE", "maybe")
    with pytest.raises(ValueError, match="REIDLIB_OFFLINE"):
        downloads_allowed()


def test_online_absent_downloads_to_torchvisions_cache(fake_store, torch_home, monkeypatch):
    """Online, an absent torchvision file is fetched by torch.hub into hub/checkpoints (faked here)."""
    monkeypatch.setenv("REIDLIB_OFFLINE", "0")
    calls = []

    def fake_download(url, dst, hash_prefix=None, progress=True):
        calls.append((url, dst, hash_prefix))
        Path(dst).write_bytes((fake_store["_dir"] / MNV3_FILE).read_bytes())

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    model = build_model("mnv3_siamese", 10, pretrained="imagenet")
    dst = torch_home / "hub" / "checkpoints" / MNV3_FILE
    assert calls == [(f"https://download.pytorch.org/models/{MNV3_FILE}", str(dst), "8738ca79")]
    assert model.pretrained_report.path == str(dst)
    assert torch.equal(model.backbone.features[0][0].weight, fake_store[MNV3_FILE]["features.0.0.weight"])


def test_failed_download_and_osnet_never_downloads(torch_home, monkeypatch):
    monkeypatch.setenv("REIDLIB_OFFLINE", "0")

    def no_route(url, dst, hash_prefix=None, progress=True):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_route)
    with pytest.raises(ImageNetWeightsNotFound) as info:
        build_model("mnv3_siamese", 10, pretrained="imagenet")
    assert "download from https://download.pytorch.org/models/" in str(info.value) and "URLError" in str(info.value)
    assert str(torch_home / "hub" / "checkpoints" / MNV3_FILE) in str(info.value)
    with pytest.raises(ImageNetWeightsNotFound, match="never downloaded"):  # no_route is not even called
        build_model("osnet_x0_25", 10, pretrained="imagenet")


def test_imagenet_for_the_timm_backend_is_refused(torch_home):
    with pytest.raises(ValueError, match="backend='torchvision'"):
        build_model("mnv3_siamese", 10, backend="timm", pretrained="imagenet")


# ---- bad weight inputs ------------------------------------------------------------------------------------------
def test_row7_mostly_mismatched_shapes_are_refused(tmp_path):
    """OSNet's key names with every shape doubled: refused, naming the first mismatches (> 10 % rule)."""
    own = build_model("osnet_x0_25", 10).state_dict()
    doubled = {k: torch.zeros([2 * d for d in v.shape], dtype=v.dtype) for k, v in own.items()}
    torch.save(doubled, tmp_path / "doubled.pth")
    with pytest.raises(ValueError, match=r"more than the 10% allowed") as info:
        build_model("osnet_x0_25", 10, pretrained=tmp_path / "doubled.pth")
    assert str(tmp_path / "doubled.pth") in str(info.value) and "conv1.conv.weight: (32, 6, 14, 14)" in str(info.value)
    # nothing outside the head loads: refused as well
    torch.save({k: v for k, v in doubled.items() if v.dim() > 0}, tmp_path / "none.pth")
    with pytest.raises(ValueError, match="no tensor of model outside its head"):
        build_model("osnet_x0_25", 10, pretrained=tmp_path / "none.pth")
    # a classifier (or OSNet's fc) of another size is fine, as is a few percent of mismatches
    few = dict(own)
    few["conv5.conv.weight"] = doubled["conv5.conv.weight"]
    torch.save(few, tmp_path / "few.pth")
    rep = build_model("osnet_x0_25", 7, pretrained=tmp_path / "few.pth").pretrained_report
    assert sorted(m.split(":")[0] for m in rep.mismatched) == [
        "classifier.bias", "classifier.weight", "conv5.conv.weight"]


def test_row8_empty_file(tmp_path):
    (tmp_path / "empty.pth").touch()
    with pytest.raises(CheckpointReadError, match="empty") as info:
        build_model("osnet_x0_25", 10, pretrained=tmp_path / "empty.pth")
    assert str(tmp_path / "empty.pth") in str(info.value)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_row8_random_bytes(tmp_path, suffix):
    path = tmp_path / f"random{suffix}"
    path.write_bytes(random.Random(0).randbytes(4096))
    with pytest.raises(CheckpointReadError, match="not a readable") as info:
        build_model("osnet_x0_25", 10, pretrained=path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("value", [True, False, 3, ["a.pth"], ""])
def test_row8_pretrained_of_another_type(value):
    with pytest.raises(TypeError, match=r'None .*"imagenet".*path to a local checkpoint'):
        build_model("osnet_x0_25", 10, pretrained=value)


class _Malicious:
    """Unpickling it would create ``marker`` (a harmless stand-in for running arbitrary code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "code_ran"
    payload = {"state_dict": {"conv1.conv.weight": torch.zeros(1)}, "extra": _Malicious(marker)}
    torch.save(payload, tmp_path / "evil.pth")
    with pytest.raises(CheckpointReadError, match="refused") as info:
        build_model("osnet_x0_25", 10, pretrained=tmp_path / "evil.pth")
    assert str(tmp_path / "evil.pth") in str(info.value)
    with open(tmp_path / "plain.pkl", "wb") as f:  # the same through plain pickle (protocol 4 opcodes)
        pickle.dump({"model": _Malicious(marker)}, f, protocol=4)
    with pytest.raises(CheckpointReadError, match="plain.pkl"):
        load_pretrained(nn.Linear(2, 2), tmp_path / "plain.pkl")
    assert not marker.exists()
