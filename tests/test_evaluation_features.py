"""Feature extraction (flip TTA, precision, mode restore), the .npz feature store, and the retrieval API."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from reidlib.evaluation import FeatureSet, extract_features
from reidlib.evaluation.retrieval import embed_images, search


class TinyNet(torch.nn.Module):
    """Left-right asymmetric on purpose (a column-weighted pooling), so flipping changes the embedding."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 6, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(6)
        self.register_buffer("col_weight", torch.linspace(0.2, 1.8, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn(self.conv(x)))
        return (y * self.col_weight).mean(dim=(2, 3))


def batches(n=10, bs=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    imgs = torch.rand(n, 3, 16, 8, generator=g)
    return [(imgs[s:s + bs], torch.arange(s, min(s + bs, n)), torch.zeros(min(bs, n - s), dtype=torch.int64),
             [f"img{i}.jpg" for i in range(s, min(s + bs, n))]) for s in range(0, n, bs)], imgs


def test_flip_is_the_average_of_image_and_mirror():
    model = TinyNet()
    loader, imgs = batches()
    model.eval()
    with torch.no_grad():
        want = (model(imgs) + model(imgs.flip(3))) / 2
        plain = model(imgs)
    model.train()
    fs = extract_features(model, loader, flip=True, device="cpu", precision="fp32", channels_last=False,
                          progress=False)
    assert model.training, "the model's train/eval mode is restored"
    np.testing.assert_allclose(fs.feats.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(want, plain, atol=1e-4), "the test model must be flip-sensitive"
    no_flip = extract_features(model, loader, flip=False, device="cpu", precision="fp32", progress=False)
    np.testing.assert_allclose(no_flip.feats.numpy(), plain.numpy(), rtol=1e-5, atol=1e-6)
    assert fs.pids.tolist() == list(range(10)) and fs.paths[3] == "img3.jpg" and fs.meta["flip"] is True


def test_bf16_channels_last_path_is_close_to_fp32():
    model = TinyNet()
    loader, _ = batches()
    ref = extract_features(model, loader, device="cpu", precision="fp32", channels_last=False, progress=False)
    fast = extract_features(model, loader, device="cpu", precision="bf16", channels_last=True, progress=False)
    assert fast.feats.dtype == torch.float32 and fast.meta["precision"] == "bf16"
    np.testing.assert_allclose(fast.feats.numpy(), ref.feats.numpy(), rtol=0.05, atol=0.02)


def test_model_output_and_batch_checks():
    loader, _ = batches(n=2)
    with pytest.raises(TypeError, match=r"\(B, D\) embedding"):
        extract_features(torch.nn.Identity(), loader, device="cpu", progress=False)
    with pytest.raises(ValueError, match=r"\(imgs, pids, camids, paths\)"):
        extract_features(TinyNet(), [torch.zeros(1, 3, 8, 4)], device="cpu", progress=False)
    with pytest.raises(ValueError, match="no batches"):
        extract_features(TinyNet(), [], device="cpu", progress=False)
    with pytest.raises(ValueError, match="precision"):
        extract_features(TinyNet(), loader, device="cpu", precision="int8", progress=False)


def test_feature_set_round_trip(tmp_path):
    fs = FeatureSet(torch.randn(5, 3), [1, 2, 3, 4, 5], [0, 0, 1, 1, 2],
                    [f"p{i}.jpg" for i in range(5)], {"flip": True})
    path = fs.save(tmp_path / "sub" / "query")
    assert path.name == "query.npz" and sorted(p.name for p in path.parent.iterdir()) == ["query.npz"]
    back = FeatureSet.load(path)
    assert torch.equal(back.feats, fs.feats) and back.paths == fs.paths and back.meta == {"flip": True}
    assert back.pids.dtype == np.int64 and back.camids.tolist() == [0, 0, 1, 1, 2]
    with pytest.raises(ValueError, match="N pids"):
        FeatureSet(torch.randn(5, 3), [1, 2], [0, 0], ["a", "b"])
    np.savez(tmp_path / "other.npz", x=np.zeros(2))
    with pytest.raises(ValueError, match="not a reidlib FeatureSet"):
        FeatureSet.load(tmp_path / "other.npz")


@pytest.fixture()
def gallery_folder(tmp_path):
    """Six flat-colour 'people' images in a nested folder; the query is a copy of one of them."""
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (20, 20, 20), (230, 230, 230)]
    (tmp_path / "g" / "sub").mkdir(parents=True)
    for i, c in enumerate(colours):
        folder = tmp_path / "g" / ("sub" if i % 2 else "")
        Image.new("RGB", (8, 16), c).save(folder / f"{i:04d}_c1_f{i}.png")
    Image.new("RGB", (8, 16), colours[2]).save(tmp_path / "query.png")
    return tmp_path


def test_search_finds_the_identical_image_first(gallery_folder):
    import torchvision.transforms as T

    tf = T.Compose([T.Resize((16, 8)), T.ToTensor()])
    model = TinyNet()
    hits = search(model, gallery_folder / "query.png", gallery_folder / "g", topk=3, transform=tf, device="cpu",
                  precision="fp32")
    assert len(hits) == 3 and hits[0][0].endswith("0002_c1_f2.png") and hits[0][1] == pytest.approx(0.0, abs=1e-3)
    assert [d for _, d in hits] == sorted(d for _, d in hits)
    gallery = embed_images(model, gallery_folder / "g", transform=tf, device="cpu", precision="fp32")
    assert len(search(model, gallery_folder / "query.png", gallery, topk=50, transform=tf, device="cpu",
                      precision="fp32")) == 6
    with pytest.raises(FileNotFoundError, match="gallery folder"):
        search(model, gallery_folder / "query.png", gallery_folder / "missing", transform=tf)
    with pytest.raises(FileNotFoundError, match="query image"):
        search(model, gallery_folder / "nope.png", gallery, transform=tf)
