"""The synthetic dataset: determinism, bookkeeping, parameter checks, and that it is neither trivial nor noise."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reidlib.data import build_dataset, generate_synthetic
from reidlib.data.synthetic import synthetic_params


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes(tiny_market, tiny_params, tmp_path):
    again = generate_synthetic(tmp_path / "again", layout="market", **tiny_params)
    assert _digest(again) == _digest(tiny_market)
    other = generate_synthetic(tmp_path / "other", layout="market", seed=1, **tiny_params)
    assert _digest(other) != _digest(tiny_market)


def test_domains_differ_in_look(tiny_params, tmp_path):
    means = []
    for domain in (0, 1):
        root = generate_synthetic(tmp_path / f"d{domain}", domain=domain,
                                  **{**tiny_params, "num_ids": 10, "num_test_ids": 2})
        train = build_dataset("synthetic", root).train
        means.append(np.mean([np.asarray(Image.open(p), np.float32).mean() for p, _, _ in train]))
    assert means[1] < means[0] - 10  # domain 1 cameras are darker (0..255 scale)


def test_meta_and_readme_record_the_parameters(tiny_market, tiny_params):
    meta = json.loads((tiny_market / "meta.json").read_text())
    assert meta["params"] == synthetic_params(layout="market", **tiny_params)
    assert meta["counts"]["test"]["gallery"]["ids"] == 9
    readme = (tiny_market / "README.txt").read_text()
    assert "NOT a benchmark" in readme and '"num_ids": 16' in readme
    assert not list(tiny_market.parent.glob(".*tmp*")), "no temporary folder may be left behind"


def test_build_dataset_generates_then_reads_and_checks_parameters(tiny_params, tmp_path):
    root = tmp_path / "syn"
    ds = build_dataset("synthetic", root, **tiny_params)
    assert (root / "meta.json").is_file() and ds.name == "synthetic" and ds.num_train_pids == 8
    assert build_dataset("synthetic", root).train == ds.train  # parameters are read back from meta.json
    with pytest.raises(ValueError, match="num_ids: on disk 16, requested 20.*delete the folder"):
        build_dataset("synthetic", root, **{**tiny_params, "num_ids": 20})
    with pytest.raises(ValueError, match="(?s)other parameters.*overwrite=True"):
        generate_synthetic(root, **{**tiny_params, "seed": 3})
    with pytest.raises(ValueError, match="split= only applies to the LaST layout"):
        build_dataset("synthetic", root, split="test")
    (root / "bounding_box_train" / next(iter(sorted(p.name for p in (root / "bounding_box_train").iterdir())))).unlink()
    with pytest.warns(UserWarning, match="train images: expected"):
        build_dataset("synthetic", root)


def test_refuses_to_write_into_a_foreign_folder(tiny_params, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a generated synthetic dataset"):
        generate_synthetic(tmp_path, **tiny_params)


@pytest.mark.parametrize("bad, match", [
    (dict(layout="cuhk"), "layout"), (dict(num_cams=10), "num_cams"), (dict(domain=2), "domain"),
    (dict(num_test_ids=16), "num_test_ids"), (dict(height=16), "image size"),
])
def test_invalid_parameters(tiny_params, bad, match):
    with pytest.raises(ValueError, match=match):
        synthetic_params(**{**tiny_params, **bad})


# --- difficulty ---------------------------------------------------------------------------------------------

def _rank1(qf: np.ndarray, gf: np.ndarray, query, gallery) -> float:
    """Market-protocol rank-1 with squared euclidean distance (a test helper, not the project's evaluator)."""
    dist = (qf ** 2).sum(1)[:, None] + (gf ** 2).sum(1)[None] - 2 * qf @ gf.T
    g_pid, g_cam = np.array([p for _, p, _ in gallery]), np.array([c for _, _, c in gallery])
    hits = []
    for row, (_, pid, cam) in zip(dist, query):
        keep = ~((g_pid == pid) & (g_cam == cam))
        hits.append(g_pid[keep][np.argmin(row[keep])] == pid)
    return float(np.mean(hits))


def _pixels(items, size=(32, 64)) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p).convert("RGB").resize(size), np.float32) / 255 for p, _, _ in items])


def _colour_histograms(x: np.ndarray) -> np.ndarray:
    """Grey-world-normalised 4x4x4 colour histograms of three horizontal bands of the image centre."""
    x = x[:, 8:60, 8:24]
    x = x / (x.reshape(len(x), -1, 3).mean(1)[:, None, None, :] + 1e-6) * 0.5
    feats = []
    for rows in np.array_split(np.arange(x.shape[1]), 3):
        b = np.clip((x[:, rows] * 4).astype(int), 0, 3)
        code = (b[..., 0] * 16 + b[..., 1] * 4 + b[..., 2]).reshape(len(x), -1)
        h = np.stack([np.bincount(c, minlength=64) for c in code]).astype(np.float32)
        feats.append(np.sqrt(h / h.sum(1, keepdims=True)))
    return np.concatenate(feats, 1)


@pytest.fixture(scope="module")
def difficulty_set(synthetic_factory):
    """Default-like cameras and identities, 60 test ids (a smaller gallery than the default: a stricter bound)."""
    root = synthetic_factory("difficulty", num_ids=70, num_test_ids=60, num_cams=4, images_per_id_per_cam=4,
                             height=128, width=64, num_distractors=60, num_junk=0)
    ds = build_dataset("synthetic", root)
    return ds, _pixels(ds.query), _pixels(ds.gallery)


def test_raw_pixels_and_a_random_init_cnn_score_low(difficulty_set):
    ds, q, g = difficulty_set
    assert _rank1(q.reshape(len(q), -1), g.reshape(len(g), -1), ds.query, ds.gallery) < 0.3
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 32, 3, 2, 1), torch.nn.ReLU(), torch.nn.Conv2d(32, 64, 3, 2, 1), torch.nn.ReLU(),
        torch.nn.Conv2d(64, 128, 3, 2, 1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
    ).eval()

    def embed(x):
        return torch.nn.functional.normalize(net(torch.from_numpy(x).permute(0, 3, 1, 2) - 0.45), dim=1).numpy()

    with torch.no_grad():
        assert _rank1(embed(q), embed(g), ds.query, ds.gallery) < 0.3


def test_identity_signal_is_there_to_learn(difficulty_set):
    """Hand-made colour features beat raw pixels by a wide margin: appearance, not camera, carries identity."""
    ds, q, g = difficulty_set
    raw = _rank1(q.reshape(len(q), -1), g.reshape(len(g), -1), ds.query, ds.gallery)
    hist = _rank1(_colour_histograms(q), _colour_histograms(g), ds.query, ds.gallery)
    assert hist > raw + 0.25 and hist > 0.4


def test_overwrite_replaces_a_generated_dataset_but_never_a_users_files(tiny_params, tmp_path):
    root = generate_synthetic(tmp_path / "syn", **tiny_params)
    (root / "NOTES.md").write_text("my notes")
    with pytest.raises(FileExistsError, match="NOTES.md.*move them elsewhere"):
        generate_synthetic(root, overwrite=True, **{**tiny_params, "seed": 3})
    assert (root / "NOTES.md").read_text() == "my notes"
    (root / "NOTES.md").unlink()
    generate_synthetic(root, overwrite=True, **{**tiny_params, "seed": 3})
    assert json.loads((root / "meta.json").read_text())["params"]["seed"] == 3
