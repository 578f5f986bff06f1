"""The torchreid side of ``benchmarks/peer_speed.py`` and ``benchmarks/time_to_accuracy.py``; runs only in the peer
env ``.peer-venv`` (never imports reidlib).

    .peer-venv/bin/python benchmarks/peer_speed_torchreid.py {train,extract,eval,curve} SPEC.json OUT.json

``SPEC.json`` (written by peer_speed.py, gpu_throughput.py or time_to_accuracy.py) names the inputs: the training
items, the images to embed, the distance matrices. Each task writes its timings (seconds, images/s) and outputs to
``OUT.json``. torchreid is used through its public API as its documentation shows: ``ImageDataManager`` +
``ImageTripletEngine``, ``FeatureExtractor``, ``metrics.evaluate_rank``, ``save_checkpoint`` /
``resume_from_checkpoint``.

Optional spec fields (absent: what peer_speed.py has always measured): ``device`` (``"cpu"`` or ``"cuda"``; on CUDA
the model is moved there, torchreid's ``use_gpu`` is on and ``cudnn.benchmark`` is set, as torchreid's own
``scripts/main.py`` does), ``train_epochs`` (epochs run back to back; the timing reported is the last one's, the
others are warm-up, all listed in ``epoch_seconds``), ``weights`` (null: random init).

``curve`` (time_to_accuracy.py) trains ``spec["epochs"]`` epochs, saving torchreid's checkpoint
``model.pth.tar-<epoch>`` (model, optimizer, scheduler; ``-0`` = the initial weights) and appending a row to
``records.json`` (training seconds of the epoch, load average) in ``spec["curve_dir"]`` after each; started again it
continues after the last recorded epoch from that epoch's checkpoint (``resume_from_checkpoint``). torchreid keeps no
sampler or augmentation RNG state, so a resumed run reseeds with ``seed + epoch`` and is not bit-identical to an
uninterrupted one.
"""
from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message="Cython evaluation")

import numpy as np  # noqa: E402
import torch  # noqa: E402


def _build(spec: dict) -> tuple:
    """``(data manager, model, optimizer, scheduler, engine, use_gpu)`` of the peer's recipe on the spec's items."""
    import torchreid
    from torchreid.reid.data import ImageDataManager, ImageDataset, register_image_dataset
    from torchreid.reid.utils import load_pretrained_weights

    items = [tuple(it) for it in json.loads(Path(spec["train_items"]).read_text())]

    class Items(ImageDataset):
        """The benchmark's training items as a torchreid dataset (query/gallery: a token pair, never used)."""

        def __init__(self, root: str = "", **kwargs) -> None:
            super().__init__(items, items[:2], items[2:4], **kwargs)

    register_image_dataset("peer_speed_items", Items)
    device = spec.get("device", "cpu")
    use_gpu = device.startswith("cuda")
    dm = ImageDataManager(root="", sources="peer_speed_items", height=spec["height"], width=spec["width"],
                          transforms=["random_flip"], batch_size_train=spec["batch_size"], batch_size_test=128,
                          workers=spec["workers"], num_instances=spec["num_instances"],
                          train_sampler="RandomIdentitySampler", use_gpu=use_gpu)
    model = torchreid.reid.models.build_model("osnet_x0_25", num_classes=dm.num_train_pids, loss="triplet",
                                              pretrained=False, use_gpu=use_gpu)
    if spec.get("weights"):
        load_pretrained_weights(model, spec["weights"])
    if use_gpu:
        torch.backends.cudnn.benchmark = True
        model = model.cuda()
    optimizer = torchreid.reid.optim.build_optimizer(model, optim="amsgrad", lr=spec["lr"])
    scheduler = torchreid.reid.optim.build_lr_scheduler(optimizer, lr_scheduler="cosine", max_epoch=spec["epochs"])
    engine = torchreid.reid.engine.ImageTripletEngine(dm, model, optimizer, margin=0.3, weight_t=1, weight_x=1,
                                                      scheduler=scheduler, use_gpu=use_gpu, label_smooth=True)
    return dm, model, optimizer, scheduler, engine, use_gpu


def _train(spec: dict) -> dict:
    """One epoch of torchreid's triplet engine on ``spec["train_items"]`` (fp32, ``spec["workers"]`` workers)."""
    dm, _model, _optimizer, _scheduler, engine, use_gpu = _build(spec)
    device = spec.get("device", "cpu")
    epochs = int(spec.get("train_epochs", 1))
    images = len(dm.train_loader) * spec["batch_size"]
    epoch_seconds = []
    for epoch in range(epochs):
        engine.epoch, engine.max_epoch = epoch, epochs
        t0 = time.perf_counter()
        engine.train(print_freq=10**9)
        if use_gpu:
            torch.cuda.synchronize()
        epoch_seconds.append(time.perf_counter() - t0)
    seconds = epoch_seconds[-1]
    out = {"images": images, "seconds": seconds, "img_per_s": images / seconds, "precision": "fp32",
           "workers": spec["workers"], "batches": len(dm.train_loader)}
    if epochs > 1 or use_gpu:
        out.update(device=device, epoch_seconds=epoch_seconds)
    return out


def _extract(spec: dict) -> dict:
    """Embed ``spec["extract_paths"]`` with torchreid's FeatureExtractor, ``spec["extract_batch"]`` paths a call."""
    from torchreid.reid.utils import FeatureExtractor

    paths = json.loads(Path(spec["extract_paths"]).read_text())
    device = spec.get("device", "cpu")
    if device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    extractor = FeatureExtractor(model_name="osnet_x0_25", model_path=spec.get("weights") or "",
                                 image_size=(spec["height"], spec["width"]), device=device, verbose=False)
    bs = spec["extract_batch"]
    extractor(paths[:bs])  # first call builds oneDNN primitives / cuDNN plans; not timed (ours gets the same)
    t0 = time.perf_counter()
    feats = [extractor(paths[i:i + bs]) for i in range(0, len(paths), bs)]
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    np.save(spec["peer_features"], torch.cat(feats).float().numpy())
    return {"images": len(paths), "seconds": seconds, "img_per_s": len(paths) / seconds, "precision": "fp32"}


def _eval(spec: dict) -> dict:
    """torchreid's ``evaluate_rank`` (python version) on each stored distance matrix, best of ``repeats``."""
    from torchreid.reid.metrics import evaluate_rank

    out = {}
    for name, case in spec["eval_cases"].items():
        z = np.load(case["file"])
        args = (z["distmat"], z["q_pids"], z["g_pids"], z["q_camids"], z["g_camids"])
        times = []
        for _ in range(case["repeats"]):
            t0 = time.perf_counter()
            cmc, mAP = evaluate_rank(*args, max_rank=case["max_rank"], use_metric_cuhk03=False, use_cython=False)
            times.append(time.perf_counter() - t0)
        out[name] = {"seconds": min(times), "all_seconds": times, "cmc": np.asarray(cmc, dtype=float).tolist(),
                     "mAP": float(mAP)}
    return out


def _curve(spec: dict) -> dict:
    """The peer's epochs one after another with a checkpoint and a record after each (see the module docstring)."""
    import contextlib
    import io
    import os

    from time_to_accuracy import read_records, resume_point, write_records
    from torchreid.reid.utils import resume_from_checkpoint, save_checkpoint, set_random_seed

    out = Path(spec["curve_dir"])
    out.mkdir(parents=True, exist_ok=True)
    records = read_records(out)
    saved = sorted(int(p.name.rsplit("-", 1)[1]) for p in out.glob("model.pth.tar-*"))
    last, stale = resume_point([r["epoch"] for r in records], saved)
    for epoch in stale:  # saved, but its record was never written: trained again
        (out / f"model.pth.tar-{epoch}").unlink()
    set_random_seed(spec["seed"])
    quiet = contextlib.redirect_stdout(io.StringIO())  # torchreid's dataset tables and a line per checkpoint
    with quiet:
        dm, model, optimizer, scheduler, engine, _ = _build(spec)
    if last is None:
        with quiet:
            save_checkpoint({"state_dict": model.state_dict(), "epoch": 0, "optimizer": optimizer.state_dict(),
                             "scheduler": scheduler.state_dict()}, str(out))
        records = [{"epoch": 0, "train_seconds": 0.0, "setup_seconds": 0.0, "images": 0,
                    "checkpoint": "model.pth.tar-0", "load": list(os.getloadavg()), "time": time.time()}]
        write_records(out, records)
        last = 0
    else:
        with quiet:
            resume_from_checkpoint(str(out / f"model.pth.tar-{last}"), model, optimizer, scheduler)
        set_random_seed(spec["seed"] + last)
    epochs = int(spec["epochs"])
    images = len(dm.train_loader) * spec["batch_size"]
    for epoch in range(last, epochs):
        engine.epoch, engine.max_epoch = epoch, epochs
        t0 = time.perf_counter()
        engine.train(print_freq=10**9)
        seconds = time.perf_counter() - t0
        with quiet:
            save_checkpoint({"state_dict": model.state_dict(), "epoch": epoch + 1, "optimizer": optimizer.state_dict(),
                             "scheduler": scheduler.state_dict()}, str(out))
        records.append({"epoch": epoch + 1, "train_seconds": seconds, "setup_seconds": 0.0, "images": images,
                        "checkpoint": f"model.pth.tar-{epoch + 1}", "load": list(os.getloadavg()),
                        "time": time.time()})
        write_records(out, records)
        print(f"peer epoch {epoch + 1}/{epochs}: {seconds:.1f} s, {images / seconds:.1f} img/s", flush=True)
    return {"epochs": len(records) - 1, "precision": "fp32", "workers": spec["workers"], "images": images}


def main(argv: list[str]) -> int:
    task, spec_file, out_file = argv
    spec = json.loads(Path(spec_file).read_text())
    torch.set_num_threads(spec["threads"])
    result = {"train": _train, "extract": _extract, "eval": _eval, "curve": _curve}[task](spec)
    import torchreid

    result["versions"] = {"torchreid": torchreid.__version__, "torch": torch.__version__, "numpy": np.__version__}
    result["torch_threads"] = torch.get_num_threads()
    Path(out_file).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
