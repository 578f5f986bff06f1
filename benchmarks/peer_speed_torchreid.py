"""The torchreid side of ``benchmarks/peer_speed.py``; runs only in the peer env ``.peer-venv`` (never imports reidlib).

    .peer-venv/bin/python benchmarks/peer_speed_torchreid.py {train,extract,eval} SPEC.json OUT.json

``SPEC.json`` (written by peer_speed.py or gpu_throughput.py) names the inputs: the training items, the images to
embed, the distance matrices. Each task writes its timings (seconds, images/s) and outputs to ``OUT.json``. torchreid
is used through its public API as its documentation shows: ``ImageDataManager`` + ``ImageTripletEngine``,
``FeatureExtractor``, ``metrics.evaluate_rank``.

Optional spec fields (absent: what peer_speed.py has always measured): ``device`` (``"cpu"`` or ``"cuda"``; on CUDA
the model is moved there, torchreid's ``use_gpu`` is on and ``cudnn.benchmark`` is set, as torchreid's own
``scripts/main.py`` does), ``train_epochs`` (epochs run back to back; the timing reported is the last one's, the
others are warm-up, all listed in ``epoch_seconds``), ``weights`` (null: random init).
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


def _train(spec: dict) -> dict:
    """One epoch of torchreid's triplet engine on ``spec["train_items"]`` (fp32, ``spec["workers"]`` workers)."""
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


def main(argv: list[str]) -> int:
    task, spec_file, out_file = argv
    spec = json.loads(Path(spec_file).read_text())
    torch.set_num_threads(spec["threads"])
    result = {"train": _train, "extract": _extract, "eval": _eval}[task](spec)
    import torchreid

    result["versions"] = {"torchreid": torchreid.__version__, "torch": torch.__version__, "numpy": np.__version__}
    result["torch_threads"] = torch.get_num_threads()
    Path(out_file).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
