"""The cached training data path: the uint8 image cache (hit / miss, equal to PIL's resize) and the batch
augmentations against hand-computed expectations and against the PIL transforms given the same decisions."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import functional as TF

from reidlib.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BatchAugment,
    ImageCache,
    ImageReadError,
    build_transforms,
    make_cached_train_loader,
    read_image,
)
from reidlib.data import cache as cache_mod
from reidlib.data.batch_transforms import (
    erase_batch,
    flip_batch,
    flip_pad_crop_batch,
    normalize_batch,
    pad_crop_batch,
    sample_erasing_boxes,
)
from reidlib.data.loaders import augment_seed


def _images(folder, n: int = 6, size=(23, 41)) -> list[str]:
    """n small random RGB PNGs (width x height = size) in folder."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = folder / f"{i // 2:04d}_c{i % 2 + 1}_{i}.png"
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    return paths


# ---- batch augmentations: hand-computed expectations ------------------------------------------------------
def test_flip_of_a_known_tensor():
    x = torch.arange(2 * 1 * 2 * 3, dtype=torch.uint8).view(2, 1, 2, 3)  # [[0,1,2],[3,4,5]] and [[6,7,8],[9,10,11]]
    out = flip_batch(x, torch.tensor([True, False]))
    assert out[0, 0].tolist() == [[2, 1, 0], [5, 4, 3]]
    assert out[1, 0].tolist() == [[6, 7, 8], [9, 10, 11]]


def test_pad_crop_offsets():
    x = torch.arange(1, 17, dtype=torch.uint8).view(1, 1, 4, 4)  # rows 1-4, 5-8, 9-12, 13-16
    def crop(top: int, left: int) -> list:
        return pad_crop_batch(x, 1, torch.tensor([top]), torch.tensor([left]))[0, 0].tolist()

    assert crop(1, 1) == x[0, 0].tolist()  # offset (pad, pad): the image itself
    assert crop(0, 0) == [[0, 0, 0, 0], [0, 1, 2, 3], [0, 5, 6, 7], [0, 9, 10, 11]]  # shifted down-right
    assert crop(2, 2) == [[6, 7, 8, 0], [10, 11, 12, 0], [14, 15, 16, 0], [0, 0, 0, 0]]  # shifted up-left
    assert crop(0, 2) == [[0, 0, 0, 0], [2, 3, 4, 0], [6, 7, 8, 0], [10, 11, 12, 0]]
    assert pad_crop_batch(x, 0, torch.tensor([0]), torch.tensor([0])) is x


def test_one_pass_flip_and_crop_equals_the_two_steps():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (16, 3, 12, 7), dtype=torch.uint8, generator=g)
    flip = torch.rand(16, generator=g) < 0.5
    tops, lefts = torch.randint(0, 7, (2, 16), generator=g)
    want = pad_crop_batch(flip_batch(x, flip), 3, tops, lefts)
    got = flip_pad_crop_batch(x.contiguous(memory_format=torch.channels_last), flip, 3, tops, lefts)
    assert torch.equal(got, want) and got.is_contiguous(memory_format=torch.channels_last)


def test_normalisation_values():
    x = torch.tensor([[0, 255], [200, 30]], dtype=torch.uint8).view(1, 1, 2, 2).repeat(1, 3, 1, 1)
    out = normalize_batch(x, IMAGENET_MEAN, IMAGENET_STD)
    for c in range(3):
        m, s = IMAGENET_MEAN[c], IMAGENET_STD[c]
        want = torch.tensor([[-m / s, (1 - m) / s], [(200 / 255 - m) / s, (30 / 255 - m) / s]])
        assert torch.allclose(out[0, c], want, atol=1e-6)
    assert out.dtype == torch.float32 and x.dtype == torch.uint8  # input untouched


def test_erasing_boxes_area_aspect_and_probability():
    height, width, sl, sh, r1 = 256, 128, 0.02, 0.4, 0.3
    boxes = sample_erasing_boxes(4000, height, width, 1.0, sl, sh, r1, torch.Generator().manual_seed(0))
    top, left, h, w = boxes.T
    assert bool((h > 0).all()) and bool((h < height).all()) and bool((w < width).all())
    assert bool((top >= 0).all()) and bool((top + h <= height).all()) and bool((left + w <= width).all())
    # h = round(sqrt(A r)), w = round(sqrt(A / r)) with A in [sl, sh] * H * W: each side off by at most 0.5
    def slack(a: float) -> float:
        return 0.5 * math.sqrt(a) * (math.sqrt(r1) + 1 / math.sqrt(r1)) + 0.25

    a_min, a_max = sl * height * width, sh * height * width
    area = (h * w).double()
    assert float(area.min()) >= a_min - slack(a_min) and float(area.max()) <= a_max + slack(a_max)
    assert float(area.mean()) == pytest.approx(a_min / 2 + a_max / 2, rel=0.15)  # rejected tall boxes skew it
    ratio = h.double() / w.double()
    assert float(ratio.min()) >= r1 * 0.8 and float(ratio.max()) <= 1 / r1 * 1.25
    # placements cover the whole range of tops
    assert int(top.min()) == 0 and int((top + h).max()) == height
    half = sample_erasing_boxes(4000, height, width, 0.5, generator=torch.Generator().manual_seed(1))
    assert 0.45 < float((half[:, 2] > 0).double().mean()) < 0.55
    assert not sample_erasing_boxes(50, height, width, 0.0).any()


def test_erase_fills_exactly_the_box_with_the_mean_values():
    x = torch.full((2, 3, 8, 6), 7.0)
    erase_batch(x, torch.tensor([[1, 2, 3, 2], [0, 0, 0, 0]]), IMAGENET_MEAN)
    for c in range(3):
        assert torch.all(x[0, c, 1:4, 2:4] == torch.tensor(IMAGENET_MEAN[c]))
    mask = torch.ones(8, 6, dtype=torch.bool)
    mask[1:4, 2:4] = False
    assert torch.all(x[0][:, mask] == 7.0) and torch.all(x[1] == 7.0)


def test_batch_equals_the_pil_pipeline_given_the_same_decisions(tmp_path):
    """Flip, pad 10 + crop and normalise on cached pixels give the PIL transforms' tensors bit for bit."""
    paths = _images(tmp_path, 4)
    cache = ImageCache.build(paths, 64, 32)
    flip, pad = torch.tensor([True, False, True, False]), 10
    tops, lefts = torch.tensor([0, 20, 10, 3]), torch.tensor([20, 0, 10, 17])
    got = normalize_batch(flip_pad_crop_batch(cache.batch(range(4)), flip, pad, tops, lefts),
                          IMAGENET_MEAN, IMAGENET_STD)
    test_tf = build_transforms(64, 32, is_train=False)  # resize + ToTensor + Normalize
    for i, p in enumerate(paths):
        img = build_transforms(64, 32, is_train=False).transforms[0](read_image(p))  # T.Resize
        if flip[i]:
            img = TF.hflip(img)
        img = TF.crop(TF.pad(img, pad), int(tops[i]), int(lefts[i]), 64, 32)
        want = test_tf.transforms[2](test_tf.transforms[1](img))
        assert torch.equal(got[i], want), i


def test_batch_augment_distributions_and_determinism():
    x = torch.zeros(1000, 3, 7, 5, dtype=torch.uint8)
    x[:, :, 3, 0] = 255  # one bright pixel at row 3, column 0
    bright = (1 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
    flips = BatchAugment(flip_p=0.5, pad=0, erasing_p=0.0)
    out = flips(x, torch.Generator().manual_seed(0))
    assert torch.equal(out, flips(x, torch.Generator().manual_seed(0)))
    assert out.shape == (1000, 3, 7, 5) and out.dtype == torch.float32
    flipped = out[:, 0, 3, 4] == bright  # mirrored: the pixel moved to the last column
    assert bool((flipped ^ (out[:, 0, 3, 0] == bright)).all()) and 0.45 < float(flipped.double().mean()) < 0.55
    # pad 2 + crop: the pixel moves by (2 - top, 2 - left); both offsets uniform over 0..4
    centre = torch.zeros_like(x)
    centre[:, :, 3, 2] = 255  # at the centre it stays in view for every offset
    shifted = BatchAugment(flip_p=0.0, pad=2, erasing_p=0.0)(centre, torch.Generator().manual_seed(1))
    rows = (shifted[:, 0] == bright).any(dim=2).double().argmax(dim=1)
    tops = 2 - (rows - 3)  # row 3 + 2 - top
    assert sorted(set(tops.tolist())) == [0, 1, 2, 3, 4]
    counts = torch.bincount(tops.long(), minlength=5).double() / 1000
    assert bool((counts > 0.15).all()) and bool((counts < 0.25).all())
    bare = BatchAugment(flip_p=0.0, pad=0, erasing_p=0.0)(x, torch.Generator().manual_seed(0))
    assert torch.equal(bare, normalize_batch(x, IMAGENET_MEAN, IMAGENET_STD))
    jitter = BatchAugment(color_jitter=0.1)(x[:8], torch.Generator().manual_seed(0))
    assert jitter.shape == (8, 3, 7, 5) and torch.isfinite(jitter).all()
    with pytest.raises(ValueError):
        BatchAugment(flip_p=1.5)


# ---- the cache ----------------------------------------------------------------------------------------------
def test_cache_equals_pil_resize_and_lives_in_memory(tmp_path):
    paths = _images(tmp_path)
    cache = ImageCache.build(paths, 64, 32)
    assert cache.file is None and not cache.hit and cache.images.shape == (6, 64, 32, 3)
    resize = build_transforms(64, 32, is_train=False).transforms[0]
    for i, p in enumerate(paths):
        assert np.array_equal(cache.images[i], np.asarray(resize(read_image(p))))
    batch = cache.batch([2, 0])
    assert batch.shape == (2, 3, 64, 32) and batch.dtype == torch.uint8
    assert batch.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(batch[0], torch.from_numpy(cache.images[2]).permute(2, 0, 1))


def test_cache_file_hit_and_miss(tmp_path, monkeypatch):
    (tmp_path / "img").mkdir()
    paths = _images(tmp_path / "img")
    first = ImageCache.build(paths, 32, 16, cache_dir=tmp_path / "cache")
    assert not first.hit and first.file.is_file() and first.info()["file"] == str(first.file)
    assert not list((tmp_path / "cache").glob(".*tmp*"))

    def no_decode(*args, **kwargs):
        raise AssertionError("a cache hit must not decode")

    monkeypatch.setattr(cache_mod, "decode_resized", no_decode)
    second = ImageCache.build(paths, 32, 16, cache_dir=tmp_path / "cache")
    assert second.hit and second.file == first.file and np.array_equal(second.images, first.images)
    monkeypatch.undo()
    # another size, another file list, or a changed file: a miss (a new key)
    assert not ImageCache.build(paths, 16, 8, cache_dir=tmp_path / "cache").hit
    assert not ImageCache.build(paths[:-1], 32, 16, cache_dir=tmp_path / "cache").hit
    Image.new("RGB", (23, 41), (1, 2, 3)).save(paths[0])
    os.utime(paths[0], ns=(1, 1))
    third = ImageCache.build(paths, 32, 16, cache_dir=tmp_path / "cache")
    assert not third.hit and third.file != first.file and int(third.images[0].max()) <= 3
    assert len(list((tmp_path / "cache").glob("images-*.npy"))) == 4


def test_cache_names_an_unreadable_image(tmp_path):
    paths = _images(tmp_path, 3)
    with open(paths[1], "wb") as fh:
        fh.write(b"not an image")
    with pytest.raises(ImageReadError, match=os.path.basename(paths[1])):
        ImageCache.build(paths, 32, 16, cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*.npy")) and not list((tmp_path / "cache").glob(".*"))


def test_cached_loader_batches_depend_only_on_seed_epoch_and_rank(tmp_path):
    paths = _images(tmp_path, 16)
    items = [(p, i // 4, i % 2) for i, p in enumerate(paths)]  # 4 ids x 4 images
    loader = make_cached_train_loader(items, 32, 16, batch_size=8, num_instances=4, seed=5)
    assert len(loader) == 2 and loader.generator is None
    rng_before = torch.get_rng_state()

    def epoch(e: int) -> list:
        loader.sampler.set_epoch(e)
        return list(loader)

    a, b, c = epoch(1), epoch(1), epoch(2)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the global RNG is neither read nor advanced
    imgs, pids, camids, batch_paths = a[0]
    assert imgs.shape == (8, 3, 32, 16) and imgs.dtype == torch.float32 and pids.dtype == torch.int64
    assert imgs.is_contiguous(memory_format=torch.channels_last) and len(batch_paths) == 8
    assert sorted(pids.tolist()) == sorted(pid for p, pid, _ in items if p in batch_paths)
    assert all(torch.equal(x[0], y[0]) for x, y in zip(a, b))
    assert not all(torch.equal(x[0], y[0]) for x, y in zip(a, c))
    assert augment_seed(5, 1, 0) != augment_seed(5, 1, 1) != augment_seed(5, 2, 0)


def _loader_batches(items, device) -> list:
    augment = BatchAugment(flip_p=0.5, pad=3, erasing_p=0.5)
    loader = make_cached_train_loader(items, 32, 16, augment, batch_size=8, num_instances=4, seed=3, device=device)
    loader.sampler.set_epoch(2)
    return [imgs.cpu() for imgs, _, _, _ in loader]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: augmentation on the GPU")
def test_cached_loader_augments_on_the_gpu_like_on_the_cpu(tmp_path):
    paths = _images(tmp_path, 16)
    items = [(p, i // 4, i % 2) for i, p in enumerate(paths)]
    on_cpu, on_gpu = _loader_batches(items, None), _loader_batches(items, "cuda")
    assert len(on_cpu) == len(on_gpu) == 2
    for a, b in zip(on_cpu, on_gpu):
        assert torch.allclose(a, b, atol=1e-6)


def test_the_device_path_of_batch_augment_equals_the_cpu_fast_path(tmp_path):
    """Off the CPU, BatchAugment takes its device-generic steps (flip, pad-crop, normalise, erase as tensor ops);
    a float64 'device' stand-in cannot take the uint8 fast path, so comparing the two checks those steps."""
    x = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (8, 3, 32, 16), dtype=np.uint8))
    augment = BatchAugment(flip_p=0.5, pad=3, erasing_p=0.5)
    fast = augment(x, torch.Generator().manual_seed(9))
    generic = augment(x.to(torch.float64).div(255), torch.Generator().manual_seed(9))
    assert torch.allclose(fast, generic, atol=1e-5)


def test_batch_augment_runs_off_the_cpu_with_decisions_drawn_on_the_cpu():
    """The GPU path without a GPU: on the 'meta' device every step must accept CPU-drawn decisions (a CPU flip mask
    beside a non-CPU batch raised 'not on the expected device' before flip_batch moved the mask)."""
    x = torch.zeros(8, 3, 32, 16, dtype=torch.uint8, device="meta")
    out = BatchAugment(flip_p=0.5, pad=3, erasing_p=0.5)(x, torch.Generator().manual_seed(0))
    assert out.device.type == "meta" and out.shape == (8, 3, 32, 16) and out.dtype == torch.float32


def test_cached_loader_moves_uint8_batches_to_its_device_before_augmenting(tmp_path):
    paths = _images(tmp_path, 8)
    items = [(p, i // 4, i % 2) for i, p in enumerate(paths)]
    loader = make_cached_train_loader(items, 32, 16, BatchAugment(pad=3), batch_size=8, num_instances=4,
                                      device="meta")
    loader.sampler.set_epoch(0)
    imgs, pids, _, _ = next(iter(loader))
    assert imgs.device.type == "meta" and imgs.shape == (8, 3, 32, 16) and pids.device.type == "cpu"
