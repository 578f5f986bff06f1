"""Transforms: output shapes, the test path is deterministic, random erasing fills with the mean values."""
from __future__ import annotations

import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from reidlib.data import IMAGENET_MEAN, IMAGENET_STD, RandomErasing, build_transforms

IMG = Image.new("RGB", (50, 110), (200, 30, 90))


@pytest.mark.parametrize("is_train", [True, False])
def test_output_shape_and_dtype(is_train):
    out = build_transforms(256, 128, is_train=is_train, color_jitter=0.1)(IMG)
    assert out.shape == (3, 256, 128) and out.dtype == torch.float32


def test_test_transform_is_resize_and_normalise_only():
    tf = build_transforms(64, 32, is_train=False)
    assert [type(t) for t in tf.transforms] == [T.Resize, T.ToTensor, T.Normalize]
    expected = (torch.tensor([200, 30, 90]) / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(tf(IMG)[:, 10, 10], expected, atol=1e-5)


def test_train_pipeline_order_and_switches():
    tf = build_transforms(color_jitter=(0.1, 0.2, 0.3, 0.05))
    assert [type(t) for t in tf.transforms] == [T.Resize, T.RandomHorizontalFlip, T.Pad, T.RandomCrop, T.ColorJitter,
                                                T.ToTensor, T.Normalize, RandomErasing]
    bare = build_transforms(flip_p=0, pad=0, erasing_p=0)
    assert [type(t) for t in bare.transforms] == [T.Resize, T.ToTensor, T.Normalize]
    with pytest.raises(ValueError, match="color_jitter"):
        build_transforms(color_jitter=(0.1, 0.2))


def test_random_erasing_fills_a_rectangle_with_the_mean_values():
    torch.manual_seed(0)
    erase = RandomErasing(p=1.0)
    for _ in range(20):
        img = torch.full((3, 256, 128), 7.0)
        out = erase(img)
        erased = (out != 7.0).all(dim=0)
        rows, cols = erased.any(dim=1).nonzero().squeeze(1), erased.any(dim=0).nonzero().squeeze(1)
        h, w = len(rows), len(cols)
        assert 0 < h < 256 and 0 < w < 128 and erased.sum() == h * w  # one axis-aligned rectangle
        assert 0.02 * 256 * 128 * 0.8 <= h * w <= 0.4 * 256 * 128 * 1.2
        for c in range(3):
            assert torch.all(out[c][erased] == torch.tensor(IMAGENET_MEAN[c]))


def test_random_erasing_probability_and_determinism():
    erase = RandomErasing(p=0.5)
    torch.manual_seed(1)
    first = [bool((erase(torch.zeros(3, 64, 32)) != 0).any()) for _ in range(400)]
    torch.manual_seed(1)
    again = [bool((erase(torch.zeros(3, 64, 32)) != 0).any()) for _ in range(400)]
    assert first == again and 0.4 < sum(first) / 400 < 0.6
    assert not (RandomErasing(p=0.0)(torch.zeros(3, 8, 8)) != 0).any()
    with pytest.raises(ValueError):
        RandomErasing(p=1.5)
