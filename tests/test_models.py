"""Models: registry, the paper's exact parameter counts, shapes in train/eval, options, weights loading.

Every per-model test is parametrized over ``list_models()`` (as timm's tests are), so a newly registered model
is tested at once; ``test_every_model_has_expectations`` then asks for its expected numbers below.
ImageNet and bad-file weights loading: ``tests/test_models_weights.py``.

Runtime note: ResNet50 passes are the expensive part, so images are batch 2 (1 for eval checks), and the
models are built once per module.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from reidlib.models import (
    build_model,
    count_flops,
    count_parameters,
    describe,
    inference_parameter_count,
    list_models,
    load_pretrained,
    register_model,
)
from reidlib.runtime import autocast, to_memory_format

MODELS = tuple(list_models())  # every registered model
PAPER_MODELS = ("bot_resnet50", "mnv3_siamese", "osnet_x0_25")  # the paper's three
FEAT_DIM = {"bot_resnet50": 2048, "mnv3_siamese": 960, "osnet_x0_25": 512}
# trainable / inference-time parameter counts with 751 classes, keyed by (name, paper_code)
PARAM_COUNTS = {
    # the paper's numbers (reproduction_notes §2): paper_code=True, 751 classes
    ("bot_resnet50", True): (25_050_927, 23_512_128),
    ("osnet_x0_25", True): (1_017_543, 265_792),
    ("mnv3_siamese", True): (6_206_663, 2_973_872),
    # defaults: BoT neck (frozen bias, no classifier bias), 512-d OSNet, no dead MobileNet head
    ("bot_resnet50", False): (25_048_128, 23_512_128),
    ("osnet_x0_25", False): (587_127, 201_864),
    ("mnv3_siamese", False): (3_693_872, 2_973_872),
}
# paper_code=True with Duke's 702 training ids
DUKE_COUNTS = {"bot_resnet50": 24_950_526, "osnet_x0_25": 968_494, "mnv3_siamese": 6_159_574}


@pytest.fixture(scope="module")
def models() -> dict[tuple[str, bool], nn.Module]:
    """Every registered model, default and paper mode, 751 classes."""
    torch.manual_seed(0)
    return {(name, paper): build_model(name, 751, paper_code=paper) for name in MODELS for paper in (False, True)}


# ---- registry ------------------------------------------------------------------------------------------
def test_registry():
    assert set(PAPER_MODELS) <= set(list_models())
    with pytest.raises(ValueError, match="osnet_x0_25"):
        build_model("osnet_x1_0", 10)
    with pytest.raises(ValueError, match="already registered"):
        register_model("osnet_x0_25")(lambda num_classes, paper_code=False: nn.Linear(1, 1))
    with pytest.raises(ValueError, match="neck_feat"):
        build_model("bot_resnet50", 10, neck_feat="middle")


@pytest.mark.parametrize("name", MODELS)
def test_every_model_has_expectations(name):
    """A registered model needs its expected feature size and parameter counts in the tables above."""
    checks = (("FEAT_DIM", name in FEAT_DIM), ("DUKE_COUNTS", name in DUKE_COUNTS),
              ("PARAM_COUNTS", all((name, p) in PARAM_COUNTS for p in (False, True))))
    missing = [table for table, ok in checks if not ok]
    assert not missing, f"add {name!r} to {missing} in tests/test_models.py"


# ---- parameter counts ----------------------------------------------------------------------------------
@pytest.mark.parametrize("paper", [True, False])
@pytest.mark.parametrize("name", MODELS)
def test_parameter_counts(models, name, paper):
    if (name, paper) not in PARAM_COUNTS:
        pytest.fail(f"no expected parameter counts for {(name, paper)}: add them to PARAM_COUNTS")
    trainable, inference = PARAM_COUNTS[(name, paper)]
    model = models[(name, paper)]
    assert count_parameters(model) == trainable
    # inference-time count: every parameter an eval forward uses (frozen BN bias included, classifier and
    # the unused MobileNetV3 ImageNet head excluded)
    assert inference_parameter_count(model, image_size=(64, 32)) == inference
    head = sum(p.numel() for p in model.classifier.parameters())
    dead = (sum(p.numel() for p in model.backbone.classifier.parameters())
            if (name, paper) == ("mnv3_siamese", True) else 0)
    assert count_parameters(model, trainable_only=False) == inference + head + dead


@pytest.mark.parametrize("name", MODELS)
def test_paper_counts_with_duke_ids(name):
    """With Duke's real 702 training ids instead of the hard-coded 751 (reproduction_notes §2)."""
    if name not in DUKE_COUNTS:
        pytest.fail(f"no expected 702-class parameter count for {name}: add it to DUKE_COUNTS")
    assert count_parameters(build_model(name, 702, paper_code=True)) == DUKE_COUNTS[name]


def test_describe_table():
    table = describe()
    assert "25,050,927" in table and "1,017,543" in table and "6,206,663" in table


def test_flops_osnet_matches_torchreid_scale(models):
    """torchreid's model zoo lists OSNet x0.25 at ~82.5 M multiply-adds (0.08 "GFLOPs") for 256×128."""
    macs = count_flops(models[("osnet_x0_25", False)], (256, 128))["macs"]
    assert 80e6 < macs < 85e6


# ---- forward / backward ----------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(256, 128), (128, 64)])
@pytest.mark.parametrize("name", MODELS)
def test_train_and_eval_shapes_and_backward(models, name, size):
    model = models[(name, False)]
    dim = FEAT_DIM[name]
    assert model.feat_dim == dim and model.embed_dim == dim and isinstance(model.classifier, nn.Linear)
    x = torch.randn(2, 3, *size)
    model.train()
    model.zero_grad()
    logits, feat = model(x)
    assert logits.shape == (2, 751) and feat.shape == (2, dim)
    (logits.logsumexp(1).mean() + feat.pow(2).mean()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    model.eval()
    with torch.no_grad():
        emb = model(x[:1])
    assert emb.shape == (1, dim) and torch.isfinite(emb).all()


@pytest.mark.parametrize("name", MODELS)
def test_batch_of_one(models, name):
    """Train mode rejects B = 1 (BatchNorm1d needs 2 samples) with a clear error; eval mode backprops fine."""
    model = models[(name, False)]
    x = torch.randn(1, 3, 128, 64)
    model.train()
    with pytest.raises(ValueError, match="batch of 1 in train mode"):
        model(x)
    model.eval()
    model.zero_grad()
    emb = model(x)
    emb.sum().backward()
    assert emb.shape == (1, FEAT_DIM[name])
    assert next(p for p in model.parameters() if p.requires_grad).grad is not None
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.randn(3, 128, 64))


@pytest.mark.parametrize("name", MODELS)
def test_paper_mode_forward(models, name):
    model = models[(name, True)].train()
    logits, feat = model(torch.randn(2, 3, 128, 64))
    assert logits.shape == (2, 751) and feat.shape == (2, model.feat_dim)
    if name == "mnv3_siamese":  # the paper code's sigmoid-before-softmax bug
        assert ((logits > 0) & (logits < 1)).all()
    if name == "bot_resnet50":  # paper: triplet on the post-BN feature, trainable BN bias, stride 2
        assert model.metric_feat == "after" and model.bottleneck.bias.requires_grad and model.last_stride == 2
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 128, 64)).shape == (1, model.embed_dim)


def test_bot_neck_options(models):
    bot = models[("bot_resnet50", False)]
    assert not bot.bottleneck.bias.requires_grad and bot.classifier.bias is None and bot.metric_feat == "before"
    assert bot.backbone.layer4[0].conv2.stride == (1, 1)
    x = torch.randn(1, 3, 64, 32)
    bot.eval()
    with torch.no_grad():
        pooled = bot.global_feature(x)
        assert torch.allclose(bot(x), bot.bottleneck(pooled))  # retrieval on the post-BN feature
        bot.neck_feat = "before"
        assert torch.allclose(bot(x), pooled)
        bot.neck_feat = "after"
    no_neck = build_model("bot_resnet50", 5, neck=False, last_stride=2)
    assert no_neck.bottleneck is None and no_neck.classifier.bias is not None
    no_neck.train()
    logits, feat = no_neck(torch.randn(2, 3, 64, 32))
    assert logits.shape == (2, 5) and feat.shape == (2, 2048)
    with pytest.raises(ValueError):
        build_model("bot_resnet50", 5, paper_code=True, neck=False)


def test_bot_zero_init_residual_makes_every_block_start_as_its_shortcut():
    torch.manual_seed(0)
    bot = build_model("bot_resnet50", 5, zero_init_residual=True).eval()
    blocks = [blk for layer in ("layer1", "layer2", "layer3", "layer4") for blk in getattr(bot.backbone, layer)]
    assert len(blocks) == 16 and all(torch.count_nonzero(blk.bn3.weight) == 0 for blk in blocks)
    # a block whose shortcut is the identity returns relu(x) of its input: check on layer1's second block
    x = torch.randn(2, 256, 16, 8)
    with torch.no_grad():
        assert torch.equal(bot.backbone.layer1[1](x), torch.relu(x))
    default = build_model("bot_resnet50", 5)
    assert torch.count_nonzero(default.backbone.layer1[1].bn3.weight) > 0


def test_osnet_bnneck_and_feature_dim():
    model = build_model("osnet_x0_25", 7, bnneck=True, feature_dim=256)
    assert model.feat_dim == 256 and model.classifier.bias is None and not model.bottleneck.bias.requires_grad
    model.train()
    logits, feat = model(torch.randn(2, 3, 128, 64))
    assert logits.shape == (2, 7) and feat.shape == (2, 256)
    assert model.head_parameter_names(include_neck=False) == ["classifier.weight"]
    assert {"fc.0.weight", "bottleneck.weight", "classifier.weight"} <= set(model.head_parameter_names())


def test_mnv3_timm_backend():
    model = build_model("mnv3_siamese", 751, backend="timm")
    assert count_parameters(model) == 3_693_872  # same backbone size as torchvision's
    model.train()
    logits, feat = model(torch.randn(2, 3, 128, 64))
    assert logits.shape == (2, 751) and feat.shape == (2, 960)
    with pytest.raises(ValueError):
        build_model("mnv3_siamese", 751, backend="timm", paper_code=True)


def _eval_to_train_spread(model: nn.Module, steps: int = 150) -> float:
    """Spread across a batch of the eval-mode embedding over the train-mode one, after ``steps`` train passes."""
    torch.manual_seed(0)
    x = torch.rand(8, 3, 64, 32)
    model.train()
    with torch.no_grad():
        for _ in range(steps):  # only the BatchNorm running statistics change
            model(x)
        train_feat = model.global_feature(x)
        model.eval()
        eval_feat = model.global_feature(x)
    return (eval_feat.std(0).mean() / train_feat.std(0).mean()).item()


def test_mnv3_running_stats_catch_up_within_a_short_run():
    # torchvision's BatchNorm momentum 0.01 leaves the running statistics near their init after 150 steps, and
    # every image then maps to ~the same eval embedding (the collapse seen in a 110-step synthetic run)
    torch.manual_seed(0)
    assert _eval_to_train_spread(build_model("mnv3_siamese", num_classes=5)) > 0.5
    torch.manual_seed(0)
    assert _eval_to_train_spread(build_model("mnv3_siamese", num_classes=5, bn_momentum=0.01)) < 1e-3
    with pytest.raises(ValueError, match="bn_momentum"):
        build_model("mnv3_siamese", num_classes=5, bn_momentum=0.0)


def test_reset_classifier_and_head_names(models):
    model = build_model("mnv3_siamese", 751)
    old = model.classifier
    new = model.reset_classifier(10)
    assert model.classifier is new and new is not old and new.out_features == 10 and model.num_classes == 10
    assert new.bias is None and new.weight.std().item() < 0.01  # BoT init: N(0, 0.001²)
    assert model.head_parameter_names() == ["bottleneck.weight", "bottleneck.bias", "classifier.weight"]
    # an optimizer built afterwards sees the new head
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    assert any(p is new.weight for g in opt.param_groups for p in g["params"])
    model.train()
    assert model(torch.randn(2, 3, 64, 32))[0].shape == (2, 10)
    paper = models[("bot_resnet50", True)]
    head = build_model("osnet_x0_25", 751, paper_code=True).reset_classifier(702)
    assert head.bias is not None and head.in_features == 1000
    assert paper.classifier.bias is not None


def test_channels_last_bf16_autocast():
    model = build_model("osnet_x0_25", 751)
    model = to_memory_format(model, True).eval()
    x = to_memory_format(torch.randn(2, 3, 128, 64), True)
    with torch.no_grad(), autocast(torch.device("cpu"), "bf16"):
        emb = model(x)
    assert emb.shape == (2, 512) and torch.isfinite(emb.float()).all()


# ---- pretrained weights --------------------------------------------------------------------------------
def test_pretrained_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="pretrained=None"):
        build_model("osnet_x0_25", 10, pretrained=tmp_path / "nope.pth")


def test_pretrained_wrapped_prefixed_round_trip(tmp_path):
    src = build_model("osnet_x0_25", 10)
    ckpt = {"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}, "epoch": 3}
    torch.save(ckpt, tmp_path / "ckpt.pth")
    dst = build_model("osnet_x0_25", 10, pretrained=tmp_path / "ckpt.pth")
    assert dst.pretrained_report.exact and dst.pretrained_report.target == ""
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values()))
    resized = build_model("osnet_x0_25", 4, pretrained=tmp_path / "ckpt.pth")  # other number of ids
    mismatched = sorted(m.split(":")[0] for m in resized.pretrained_report.mismatched)
    assert mismatched == ["classifier.bias", "classifier.weight"]
    assert resized.classifier.out_features == 4
    with pytest.raises(RuntimeError, match="strict load failed"):
        load_pretrained(build_model("osnet_x0_25", 4), tmp_path / "ckpt.pth", strict=True)
    with pytest.raises(ValueError, match="too few key names match"):
        load_pretrained(build_model("mnv3_siamese", 4), tmp_path / "ckpt.pth")


def test_pretrained_torchvision_and_timm_backbones(tmp_path):
    import timm
    import torchvision

    tv = torchvision.models.mobilenet_v3_large(weights=None)
    torch.save(tv.state_dict(), tmp_path / "tv.pth")
    model = build_model("mnv3_siamese", 10, pretrained=tmp_path / "tv.pth")
    rep = model.pretrained_report
    assert rep.target == "backbone" and not rep.missing and not rep.mismatched
    assert sorted(rep.unexpected) == [
        "classifier.0.bias", "classifier.0.weight", "classifier.3.bias", "classifier.3.weight"]
    assert torch.equal(model.backbone.features[0][0].weight, tv.features[0][0].weight)
    paper = build_model("mnv3_siamese", 751, paper_code=True, pretrained=tmp_path / "tv.pth")
    assert paper.pretrained_report.exact  # the paper keeps the whole torchvision model

    net = timm.create_model("mobilenetv3_large_100", pretrained=False)
    from safetensors.torch import save_file

    save_file(net.state_dict(), str(tmp_path / "timm.safetensors"))
    model = build_model("mnv3_siamese", 10, backend="timm", pretrained=tmp_path / "timm.safetensors")
    rep = model.pretrained_report
    assert rep.target == "backbone" and not rep.missing and not rep.mismatched
    assert {k.split(".")[0] for k in rep.unexpected} == {"conv_head", "classifier"}


# ---- the shared torchreid OSNet weights -------------------------------------------------------------------
@pytest.fixture
def weights(shared_dir: Path) -> Path:
    """``<shared>/weights`` with the torchreid OSNet x0.25 state dicts; skipped with the reason when absent."""
    folder = shared_dir / "weights"
    if not (folder / "osnet_x0_25_market1501.pth").is_file():
        pytest.skip(f"shared OSNet weights not found under {folder}")
    return folder


@pytest.mark.shared
@pytest.mark.parametrize("fname, classes", [("osnet_x0_25_market1501.pth", 751), ("osnet_x0_25_msmt17.pth", 1041)])
def test_shared_osnet_weights_load_strictly(weights, fname, classes):
    state = torch.load(weights / fname, map_location="cpu", weights_only=True)
    model = build_model("osnet_x0_25", classes)
    model.load_state_dict(state, strict=True)  # every torchreid key and shape
    assert load_pretrained(build_model("osnet_x0_25", classes), weights / fname, strict=True).exact


def _load_images(paths: list[Path]) -> torch.Tensor:
    from PIL import Image

    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    out = []
    for p in paths:
        img = Image.open(p).convert("RGB").resize((128, 256), Image.BILINEAR)
        out.append((torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 255 - mean) / std)
    return torch.stack(out)


@pytest.mark.shared
def test_shared_osnet_feature_is_torchreids_and_ranks_real_pedestrians(weights, shared_dir):
    """Eval output = the 512-d post-ReLU ``fc`` vector, deterministic; it matches people across cameras."""
    data = shared_dir / "data" / "cuhk01"
    if not (data / "query").is_dir():
        pytest.skip(f"CUHK01 not found under {data}")
    model = build_model("osnet_x0_25", 751, pretrained=weights / "osnet_x0_25_market1501.pth").eval()
    # 40 ids, one camera-A query and one camera-B gallery image each (chance rank-1 = 2.5 %)
    query = sorted((data / "query").glob("*.png"))[:80:2]
    gallery = sorted((data / "bounding_box_test").glob("*.png"))[:80:2]
    with torch.no_grad():
        fq, fg = model(_load_images(query)), model(_load_images(gallery))
        again = model(_load_images(query[:2]))
    assert fq.shape == (40, 512) and (fq >= 0).all() and (fq == 0).any()  # ReLU output
    assert torch.allclose(again, fq[:2], atol=1e-5)
    with torch.no_grad():
        pooled = model.global_avgpool(model.featuremaps(_load_images(query[:2]))).flatten(1)
        assert torch.allclose(model.fc(pooled), again, atol=1e-5)
    sims = nn.functional.normalize(fq) @ nn.functional.normalize(fg).T
    pids = lambda ps: [p.name[:4] for p in ps]  # noqa: E731
    assert pids(query) == pids(gallery)
    rank1 = (sims.argmax(1) == torch.arange(40)).float().mean().item()
    assert rank1 >= 0.3, f"rank-1 {rank1:.2f} on 40 CUHK01 ids: the features do not look like torchreid's"


@pytest.mark.parametrize("name,kwargs", [("mnv3_siamese", {}), ("osnet_x0_25", {"bnneck": True})])
def test_metric_feat_after_hands_the_losses_the_post_bn_vector(name, kwargs):
    torch.manual_seed(0)
    model = build_model(name, 5, metric_feat="after", **kwargs).train()
    assert model.metric_feat == "after"
    x = torch.randn(4, 3, 64, 32)
    _, feat = model(x)
    # with the neck's batch statistics (train mode) the vector is centred per dimension: each column sums to 0
    assert torch.allclose(feat.mean(0), torch.zeros(model.feat_dim), atol=1e-5)
    torch.manual_seed(0)
    default = build_model(name, 5, **kwargs).train()
    _, pooled = default(x)
    assert default.metric_feat == "before" and pooled.mean(0).abs().max() > 1e-3


def test_metric_feat_after_without_a_neck_is_refused():
    with pytest.raises(ValueError, match="needs a BNNeck"):
        build_model("osnet_x0_25", 5, metric_feat="after")
    with pytest.raises(ValueError, match="needs a BNNeck"):
        build_model("bot_resnet50", 5, neck=False, metric_feat="after")
    with pytest.raises(ValueError, match="metric_feat"):
        build_model("mnv3_siamese", 5, metric_feat="middle")
