"""The CUDA and multi-GPU code paths, checked on the CPU.

No GPU is needed: the ``meta`` device (tensors without data) stands in for the GPU where a tensor's device is the
point, and a patched ``torch.cuda`` (compute capability, ``is_available``, ``device_count``) or
``torch.distributed.init_process_group`` where the decision is. The test named ``..._on_cuda`` runs only with CUDA
(``benchmarks/gpu_session.sh`` selects it).
"""
from __future__ import annotations

import datetime
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from reidlib.data import BatchAugment
from reidlib.data.batch_jitter import color_jitter_batch, sample_jitter
from reidlib.data.transforms import _color_jitter
from reidlib.engine import distributed, fit, launch, load_checkpoint
from reidlib.engine import trainer as trainer_mod
from reidlib.engine.config import TrainConfig
from reidlib.losses import make_loss
from reidlib.runtime import resolve_precision, seed_everything

TINY = dict(batch_size=8, num_instances=4, height=32, width=16, precision="fp32", channels_last=False,
            progress=False, warmup_epochs=0, select_on="last", evaluate_test=False, optimizer="adam")


class _TinyReID(nn.Module):
    """The smallest module fit accepts: (logits, features) in train mode, features in eval mode."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.feat_dim = 8
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor):
        feat = self.body(x)
        return (self.classifier(feat), feat) if self.training else feat


def _model(items: list) -> _TinyReID:
    torch.manual_seed(0)
    return _TinyReID(len({pid for _, pid, _ in items}))


@pytest.fixture(scope="module")
def items(tmp_path_factory) -> list:
    from reidlib.data import build_dataset, generate_synthetic

    root = generate_synthetic(tmp_path_factory.mktemp("gpu-path") / "synth", num_ids=24, num_test_ids=4, num_cams=2,
                              images_per_id_per_cam=4, height=32, width=16, num_distractors=2, num_junk=1)
    return list(build_dataset("synthetic", root).train)


# ---- resume: the checkpoint is loaded on the CPU, whatever device the run trains on ----------------------------
@pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter")
def test_resume_on_another_device_loads_the_checkpoint_on_the_cpu(items, tmp_path):
    """A run on 'meta' (the GPU's stand-in) resumes a CPU run: its RNG states must not be mapped to the training
    device (numpy cannot read them there: with map_location=device this raised), and Adam's step counters stay on
    the CPU (on a GPU each would cost a device read per parameter per step)."""
    out = tmp_path / "run"
    fit(_model(items), items, out_dir=out, epochs=2, stop_after=1, device="cpu", **TINY)
    saved = load_checkpoint(out / "last.pt")["rng"][0]
    torch.manual_seed(12345)  # something else than the saved state
    cfg = TrainConfig.from_kwargs(epochs=2, device="meta", **TINY)
    trainer = trainer_mod._Trainer(_model(items), items, out, None, cfg)
    assert trainer.start_epoch == 1 and trainer.device.type == "meta"
    assert torch.equal(torch.get_rng_state(), saved["torch"])  # the run's RNG continues where it stopped
    assert next(trainer.raw.parameters()).device.type == "meta"
    steps = [s["step"] for s in trainer.optimizer.state.values()]
    assert steps and all(s.device.type == "cpu" for s in steps)


def test_ranks_must_agree_on_the_epoch_they_resume_from(items, tmp_path, monkeypatch):
    """Multi-node without a shared out_dir: rank 0 sees last.pt, another rank sees none. Every rank must stop with
    the reason instead of starting at different epochs and hanging in the first collective."""
    out = tmp_path / "run"
    fit(_model(items), items, out_dir=out, epochs=2, stop_after=1, device="cpu", **TINY)
    monkeypatch.setattr(distributed, "all_gather_objects", lambda obj: [obj, None])  # rank 1: no last.pt
    with pytest.raises(RuntimeError, match=r"ranks disagree.*rank 0: 1, rank 1: None.*shared"):
        fit(_model(items), items, out_dir=out, epochs=2, device="cpu", **TINY)
    monkeypatch.setattr(distributed, "all_gather_objects", lambda obj: [obj, obj])
    assert fit(_model(items), items, out_dir=out, epochs=2, device="cpu", **TINY).epochs_completed == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: resume of a run on the GPU")
def test_resume_on_cuda(items, tmp_path):
    kw = dict(TINY, device="cuda", precision="auto", channels_last=True, model_kwargs={"feature_dim": 16})
    out = tmp_path / "run"
    fit("osnet_x0_25", items, out_dir=out, epochs=2, stop_after=1, **kw)
    res = fit("osnet_x0_25", items, out_dir=out, epochs=2, **kw)
    assert [r["epoch"] for r in res.history] == [1, 2] and all(math.isfinite(r["loss"]) for r in res.history)
    assert res.meta["runs"][-1]["start_epoch"] == 1 and next(res.model.parameters()).device.type == "cuda"


# ---- precision, determinism switches --------------------------------------------------------------------------
@pytest.mark.parametrize("capability, expected", [((7, 0), "fp16"), ((7, 5), "fp16"), ((8, 0), "bf16"),
                                                  ((9, 0), "bf16")])
def test_auto_precision_follows_the_cuda_compute_capability(monkeypatch, capability, expected):
    """V100 (7.0) and T4 (7.5) have no bf16 convolutions even though torch reports bf16 'supported' (emulated)."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: capability)
    assert resolve_precision("auto", torch.device("cuda")) == expected
    assert resolve_precision("fp32", torch.device("cuda")) == "fp32"


def test_seed_everything_sets_the_determinism_switches_both_ways(monkeypatch):
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)  # restored afterwards
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", torch.backends.cudnn.deterministic)
    try:
        seed_everything(0, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
        assert not torch.backends.cudnn.benchmark
        seed_everything(0, deterministic=False)  # a later non-deterministic run in the same process
        assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic
        assert torch.backends.cudnn.benchmark  # fixed batch shapes on CUDA: let cuDNN pick its kernels
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


# ---- distributed: backend from the run's device, timeout, unused parameters --------------------------------------
@pytest.fixture
def fake_group(monkeypatch):
    """torchrun's environment on a 1-GPU machine, with init_process_group and set_device recorded, not run."""
    calls: dict = {"init": [], "set_device": []}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda **kw: calls["init"].append(kw))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: calls["set_device"].append(i))
    return calls


def test_backend_follows_the_device_the_run_asked_for(fake_group, monkeypatch):
    distributed.init_distributed(device="cpu")  # a CPU run on a GPU machine: nccl has no CPU tensors
    assert fake_group["init"][-1]["backend"] == "gloo" and fake_group["set_device"] == []
    distributed.init_distributed(device="cuda")
    assert fake_group["init"][-1]["backend"] == "nccl" and fake_group["set_device"] == [0]
    distributed.init_distributed(device=None)  # auto: CUDA when available
    assert fake_group["init"][-1]["backend"] == "nccl"
    distributed.init_distributed("gloo", device="cuda")  # an explicit backend wins
    assert fake_group["init"][-1]["backend"] == "gloo"
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(RuntimeError, match="LOCAL_RANK 1 but this node has 1 CUDA device"):
        distributed.init_distributed(device="cuda")


def test_collective_timeout_is_set_and_configurable(fake_group):
    distributed.init_distributed(device="cpu")
    assert fake_group["init"][-1]["timeout"] == datetime.timedelta(minutes=distributed.DEFAULT_TIMEOUT_MINUTES)
    assert distributed.DEFAULT_TIMEOUT_MINUTES > 10  # longer than nccl's default
    distributed.init_distributed(device="cpu", timeout_minutes=90)
    assert fake_group["init"][-1]["timeout"] == datetime.timedelta(minutes=90)
    with pytest.raises(ValueError, match="timeout_minutes must be > 0"):
        distributed.init_distributed(device="cpu", timeout_minutes=0)


def test_command_line_passes_device_and_timeout_to_the_group(monkeypatch):
    seen = {}

    def record(backend=None, device=None, timeout_minutes=None):
        seen.update(backend=backend, device=device, timeout_minutes=timeout_minutes)
        raise SystemExit(0)

    monkeypatch.setattr(distributed, "init_distributed", record)
    with pytest.raises(SystemExit):
        launch.main(["--dataset", "synthetic", "--root", "x", "--model", "osnet_x0_25", "--out", "y",
                     "--device", "cpu", "--dist-timeout", "45"])
    assert seen == {"backend": None, "device": "cpu", "timeout_minutes": 45.0}


@pytest.mark.parametrize("id_weight, classifier_used", [(1.0, True), (0.0, False)])
def test_unused_parameter_probe_follows_the_training_loss(id_weight, classifier_used):
    """With id_weight 0 the classifier gets no gradient in training; a probe that summed every output counted it
    as used, and DDP then failed with 'Expected to have finished reduction in the prior iteration'."""
    model = _TinyReID(5)
    crit = make_loss(num_classes=5, feat_dim=model.feat_dim, id_weight=id_weight)
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    unused = trainer_mod._unused_parameters(model, crit, 5, 16, 8, torch.device("cpu"))
    classifier = {n for n, _ in model.named_parameters() if n.startswith("classifier.")}
    assert classifier and (classifier.isdisjoint(unused) if classifier_used else classifier <= set(unused))
    assert all(p.grad is None for p in [*model.parameters(), *crit.parameters()])  # no trace left
    assert all(torch.equal(v, buffers[k]) for k, v in model.state_dict().items())


# ---- compiled models ----------------------------------------------------------------------------------------------
def test_fit_trains_a_compiled_model_compiled(items, tmp_path):
    graphs = []

    def counting_backend(gm, example_inputs):  # a torch.compile backend that records each graph it is given
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    model = _model(items)
    res = fit(torch.compile(model, backend=counting_backend), items, out_dir=tmp_path / "run", epochs=1,
              device="cpu", **TINY)
    assert graphs, "fit trained the module under the torch.compile wrapper, not the compiled one"
    assert res.model is model and res.epochs_completed == 1


def test_compile_around_ddp_is_refused():
    model = _TinyReID(3)
    wrapper = nn.Module()
    wrapper._orig_mod = nn.DataParallel(model)  # what torch.compile(DataParallel(model)) looks like to fit
    with pytest.raises(ValueError, match="pass torch.compile\\(model\\) of the bare model"):
        trainer_mod._compiled_around(wrapper, model)


# ---- the training loop does not wait for the device --------------------------------------------------------------
def test_training_loop_reads_losses_back_every_few_steps(items, tmp_path, monkeypatch):
    """Each .item() / float() / .tolist() / bool() of a CUDA tensor waits for the GPU. Count those calls made by
    the training loop and the losses during a fit (epoch means are still exact: every step is summed on the
    device in float64)."""
    reads = []
    watched = (str(Path(trainer_mod.__file__)), str(Path(sys.modules["reidlib.losses"].__file__)))
    for name in ("item", "tolist", "__float__", "__bool__", "__int__"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            if sys._getframe(1).f_code.co_filename in watched:
                reads.append(sys._getframe(1).f_code.co_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    res = fit(_model(items), items, out_dir=tmp_path / "run", epochs=2, device="cpu", **TINY)
    steps = res.history[0]["images"] // TINY["batch_size"]
    every = getattr(trainer_mod, "READ_EVERY", 10)
    assert steps > every  # the test needs epochs longer than the read interval
    per_epoch = math.ceil(steps / every) + 1  # every READ_EVERY steps, the last, the epoch total
    assert len(reads) <= 2 * per_epoch, reads


def test_prefetch_hands_out_each_batch_with_the_next_one_already_fetched():
    pulled = []

    def batches():
        for i in range(4):
            pulled.append(i)
            yield torch.full((2, 3, 4, 4), float(i)), torch.tensor([i, i]), torch.zeros(2), [f"p{i}"] * 2

    seen = []
    for img, pid, _cam, paths in trainer_mod.prefetch(batches(), torch.device("meta")):
        seen.append((len(pulled), img.device.type, pid.device.type, paths[0]))
    assert seen == [(2, "meta", "meta", "p0"), (3, "meta", "meta", "p1"), (4, "meta", "meta", "p2"),
                    (4, "meta", "meta", "p3")]
    cpu = list(batches())
    assert all(a is b for a, b in zip(trainer_mod.prefetch(cpu, torch.device("cpu")), cpu))  # CPU: untouched


class _OpLog(TorchDispatchMode):
    """Every aten op: (name, devices of its tensor inputs, devices of its outputs, its non_blocking argument)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[tuple] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        ins = {t.device.type for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        outs = {t.device.type for t in tree_leaves(out) if isinstance(t, torch.Tensor)}
        self.ops.append((str(func), ins, outs, kwargs.get("non_blocking", False)))
        return out


@pytest.mark.parametrize("color_jitter", [None, 0.1])
def test_augmenting_a_device_batch_costs_a_fixed_number_of_kernels(color_jitter):
    """On the device (meta here) a batch costs the same ops whatever its size (per-image crop/erase/jitter loops
    launched ~B kernels each), and host-to-device copies are few and non-blocking (a blocking one makes the host
    wait for the GPU to finish the previous step)."""
    augment = BatchAugment(flip_p=0.5, pad=3, erasing_p=0.5, color_jitter=color_jitter)
    counts = []
    for n in (64, 128):
        x = torch.zeros(n, 3, 32, 16, dtype=torch.uint8, device="meta")
        augment(x, torch.Generator().manual_seed(0))  # the first batch makes the device constants
        with _OpLog() as log:
            out = augment(x, torch.Generator().manual_seed(0))
        assert out.device.type == "meta" and out.shape == (n, 3, 32, 16)
        device_ops = [op for op in log.ops if "meta" in op[2]]
        copies = [op for op in log.ops if op[1] == {"cpu"} and op[2] == {"meta"}]
        assert len(copies) <= 3 and all(op[3] for op in copies), copies
        counts.append(len(device_ops))
    assert counts[0] == counts[1]


# ---- colour jitter: batched, same numbers, no global or CUDA reseeding ----------------------------------------
@pytest.mark.parametrize("spec", [0.1, (0.3, 0.4, 0.5, 0.2), (0.2, 0, 0.3, 0)])
def test_batched_jitter_equals_torchvision_image_by_image(spec):
    """The draws and the arithmetic of torchvision's ColorJitter run image by image after torch.manual_seed(seed)
    (what the cached path did before): equal bit for bit, so CPU training numbers do not change."""
    jitter = _color_jitter(spec)
    x = torch.randint(0, 256, (12, 3, 24, 12), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    x = x.contiguous(memory_format=torch.channels_last).float().div(255)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(777)
        want = torch.stack([jitter(img) for img in x])
    got = color_jitter_batch(x, sample_jitter(len(x), jitter, 777))
    assert torch.equal(got, want)
    assert got.is_contiguous(memory_format=torch.channels_last)


def test_jitter_reseeds_no_global_or_cuda_generator(monkeypatch):
    reseeded = []
    monkeypatch.setattr(torch, "manual_seed", lambda seed: reseeded.append(("torch", seed)))
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: reseeded.append(("cuda", seed)))
    monkeypatch.setattr(torch.cuda, "manual_seed", lambda seed: reseeded.append(("cuda", seed)))
    state = torch.get_rng_state()
    x = torch.randint(0, 256, (6, 3, 16, 8), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    BatchAugment(color_jitter=0.1)(x, torch.Generator().manual_seed(3))
    assert reseeded == [] and torch.equal(torch.get_rng_state(), state)
