"""Training and feature-extraction images/s of every reidlib model at 256x128 on one device, and the peer torchreid's.

    HF_HUB_OFFLINE=1 python3 benchmarks/gpu_throughput.py                       # on a GPU machine: ours + peer
    HF_HUB_OFFLINE=1 python3 benchmarks/gpu_throughput.py --compile             # also torch.compile'd models (CUDA)
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/gpu_throughput.py --quick --device cpu --no-peer --out /tmp/gt

Per model of ``reidlib.models.list_models()`` (random init; speed does not depend on the weights):

* **train**: ``fit`` with its defaults (the paper's recipe: flip, pad 10 + crop, random erasing 0.5, LS-CE + triplet
  + center loss, Adam; ``precision="auto"`` = bf16/fp16 AMP on CUDA, channels_last, the cached uint8 data path with
  its cache file under ``--work``) for 2 epochs over the training split (or ``--batches`` P x K batches of it); the
  reported images/s is the second epoch's (the first one pays for cuDNN autotuning and, with ``--compile``, the
  compilation; it is listed too). OSNet x0.25 is also run with the peer's recipe (flip only, LS-CE + triplet,
  amsgrad 1.5e-3, cosine), the row compared with the peer.
* **extract**: ``extract_features`` (no flip, batch 256) over the query + gallery images (a whole number of batches),
  once through ``make_test_loader`` (PIL decode + resize, ``--workers`` loader processes) and once from batches
  already decoded in memory (the model's own speed); one warm-up batch first, not timed.

The peer (``--no-peer`` to skip): torchreid 0.2.5's ``ImageTripletEngine`` (fp32; it has no AMP) for 2 epochs of the
same training items with its ``RandomIdentitySampler`` and ``--workers`` loader workers, the second epoch timed, and
its ``FeatureExtractor`` on the same images, 256 paths per call, through ``benchmarks/peer_speed_torchreid.py`` with
``device`` in its spec. Its python: ``--peer-python`` (or ``$REIDLIB_PEER_PYTHON``), else the ``.peer-venv`` of
``benchmarks/peer_speed.py`` (made on first use; needs PyPI). A peer failure is recorded in the report, not fatal.

Data: CUHK03-NP (``../shared/data/cuhk03-np-detected``, or ``$REIDLIB_SHARED/data/...``) when present, else a
synthetic dataset generated under ``--work`` (``--synthetic`` forces it). ``--quick``: tiny sizes (128x64, P x K
4 x 4, 2 batches, a tiny synthetic set unless CUHK03-NP is there), for trying the script on a CPU (well under
2 minutes). On CUDA ``torch.backends.cudnn.benchmark`` is set. Writes ``gpu_throughput.md`` and ``.json`` atomically
to ``--out`` (default ``results/benchmarks`` on CUDA, ``work/gpu_throughput`` otherwise, so CPU numbers never pass
for GPU ones) after every measurement, so a run cut short (a time limit) keeps what it measured: ``"complete":
false`` in the JSON and a "partial" line in the markdown until the last one is in.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
import peer_env  # noqa: E402  (a sibling script, found through the path line above)

SHARED = Path(os.environ.get("REIDLIB_SHARED", ROOT.parent / "shared"))
CUHK03 = SHARED / "data" / "cuhk03-np-detected"
PEER_WORKER = ROOT / "benchmarks" / "peer_speed_torchreid.py"
# the peer's recipe (benchmarks/peer_env.py) as fit keywords, less the batch and input sizes this script sets itself
PEER_RECIPE = {k: v for k, v in peer_env.PEER_RECIPE.items()
               if k not in ("batch_size", "num_instances", "height", "width")}


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mib(device) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def _reset_peak(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


# ---- data -------------------------------------------------------------------------------------------------------
def load_data(args: argparse.Namespace, work: Path):
    """The dataset to measure on and its description: CUHK03-NP when present (and not --synthetic), else synthetic."""
    from reidlib.data import build_dataset, generate_synthetic

    if not args.synthetic and CUHK03.is_dir():
        subset = CUHK03 / "SUBSET.txt"  # written by gpu_session.sh --prepare when only part of it travelled
        note = " (a subset: " + "; ".join(subset.read_text().splitlines()[1:]) + ")" if subset.is_file() else ""
        return build_dataset("folder", CUHK03), f"CUHK03-NP detected ({CUHK03}){note}"
    params = (dict(num_ids=16, num_test_ids=6, num_cams=2, images_per_id_per_cam=4, num_distractors=4, num_junk=2)
              if args.quick else {})
    root = generate_synthetic(work / ("synthetic-quick" if args.quick else "synthetic"), **params)
    return build_dataset("synthetic", root), f"synthetic, generated ({root}; CUHK03-NP not used)"


def train_subset(items: list, batches: int | None, batch_size: int) -> list:
    """Whole identities, in id order, until about ``batches`` P x K batches' worth of images (None: all items)."""
    from reidlib.data import relabel

    if batches is None:
        return list(items)
    by_pid: dict[int, list] = {}
    for it in items:
        by_pid.setdefault(it[1], []).append(it)
    keep: list = []
    for pid in sorted(by_pid):
        if len(keep) >= batches * batch_size:
            break
        keep += by_pid[pid]
    return relabel(keep)


# ---- our side -----------------------------------------------------------------------------------------------------
def measure_train(name: str, items: list, args: argparse.Namespace, device, work: Path, recipe: str,
                  compiled: bool) -> dict:
    """Two epochs of ``fit``; images/s of the second one (the first is listed as warm-up)."""
    from reidlib.engine import fit
    from reidlib.models import build_model

    num_classes = len({pid for _, pid, _ in items})
    model = build_model(name, num_classes)
    if compiled:
        model.compile()  # in place: fit sees the same module, state dict keys unchanged
    extra = PEER_RECIPE if recipe == "peer" else {}
    _reset_peak(device)
    t0 = time.perf_counter()
    res = fit(model, items, out_dir=work / "runs" / f"{name}-{recipe}{'-compiled' if compiled else ''}", epochs=2,
              batch_size=args.batch_size, num_instances=args.num_instances, height=args.height, width=args.width,
              precision=args.precision, device=str(device), select_on="last", evaluate_test=False, progress=False,
              resume=False, num_workers=args.workers, data_path="cached", cache_dir=str(work / "image-cache"),
              **extra)
    wall = time.perf_counter() - t0
    first, second = res.history[0], res.history[-1]
    run = res.meta["runs"][-1]
    return {"model": name, "recipe": recipe, "compiled": compiled, "precision": run["precision"],
            "channels_last": run["channels_last"], "data_path": run["data_path"], "images": second["images"],
            "seconds": second["train_seconds"], "img_per_s": second["images_per_s"],
            "first_epoch_img_per_s": first["images_per_s"], "first_epoch_seconds": first["train_seconds"],
            "call_seconds": wall, "peak_mib": _peak_mib(device), "model_obj": res.model}


def measure_extract(name: str, model, items: list, args: argparse.Namespace, device, source: str,
                    compiled: bool) -> dict:
    """``extract_features`` without flip over ``items`` (whole batches), after one untimed warm-up batch."""
    import torch

    from reidlib.data import build_transforms, make_test_loader
    from reidlib.evaluation import extract_features

    tf = build_transforms(args.height, args.width, is_train=False)
    bs = args.extract_batch
    warm = make_test_loader(items[:bs], tf, batch_size=bs)
    if source == "loader":
        loader = make_test_loader(items, tf, batch_size=bs, num_workers=args.workers)
    else:  # decoded once, in memory: what the model itself sustains
        loader = [(imgs, pid, cam, path) for imgs, pid, cam, path in make_test_loader(
            items, tf, batch_size=bs, num_workers=args.workers)]
        if device.type == "cuda":
            loader = [(imgs.pin_memory(), pid, cam, path) for imgs, pid, cam, path in loader]
    kw = dict(flip=False, device=device, precision=args.precision, channels_last=True, progress=False)
    extract_features(model, warm, **kw)
    _reset_peak(device)
    _sync(device)
    t0 = time.perf_counter()
    fs = extract_features(model, loader, **kw)
    _sync(device)
    seconds = time.perf_counter() - t0
    assert fs.feats.shape[0] == len(items) and torch.isfinite(fs.feats).all()
    return {"model": name, "source": source, "compiled": compiled, "precision": fs.meta.get("precision"),
            "batch": bs, "workers": args.workers if source == "loader" else None, "images": len(items),
            "seconds": seconds, "img_per_s": len(items) / seconds, "peak_mib": _peak_mib(device)}


# ---- the peer -------------------------------------------------------------------------------------------------
def run_peer(args: argparse.Namespace, device, train_items: list, extract_items: list, work: Path,
             threads: int) -> dict:
    """torchreid's training and extraction in the peer's own process; ``{"error": ...}`` when that fails."""
    import json

    from peer_env import ensure_peer_env, run_side

    try:
        python = args.peer_python or os.environ.get("REIDLIB_PEER_PYTHON")
        python = Path(python) if python else ensure_peer_env()
        if python.name == str(python):  # a bare name such as python3: look it up on PATH
            python = Path(shutil.which(str(python)) or python)
        pwork = work / "peer"
        pwork.mkdir(parents=True, exist_ok=True)
        (pwork / "train_items.json").write_text(json.dumps([list(it) for it in train_items]))
        (pwork / "extract_paths.json").write_text(json.dumps([p for p, _, _ in extract_items]))
        # torchreid's FeatureExtractor without a weights file downloads ImageNet weights: hand it a random init
        # (reidlib's OSNet uses torchreid's module names; the 1-class head is dropped by its loader)
        import torch

        from reidlib.models import build_model

        weights = pwork / "osnet_x0_25_random_init.pth"
        torch.save(build_model("osnet_x0_25", 1).state_dict(), weights)
        spec = {"train_items": str(pwork / "train_items.json"), "extract_paths": str(pwork / "extract_paths.json"),
                "weights": str(weights), "height": args.height, "width": args.width, "batch_size": args.batch_size,
                "num_instances": args.num_instances, "lr": PEER_RECIPE["lr"], "epochs": 2, "train_epochs": 2,
                "workers": args.workers, "threads": threads, "extract_batch": args.extract_batch,
                "device": device.type, "work": str(pwork), "peer_features": str(pwork / "peer-features.npy"),
                "eval_cases": {}}
        (pwork / "spec.json").write_text(json.dumps(spec, indent=1))
        train = run_side(python, PEER_WORKER, "train", pwork, threads, "peer train fp32")
        extract = run_side(python, PEER_WORKER, "extract", pwork, threads, "peer extract fp32")
        return {"python": str(python), "train": train, "extract": extract, "versions": extract.get("versions")}
    except (SystemExit, Exception) as err:  # the peer is a comparison, not the point: keep our numbers
        msg = str(err).strip() or type(err).__name__
        print(f"peer failed: {msg[-2000:]}", flush=True)
        return {"error": msg[-4000:]}


# ---- report -------------------------------------------------------------------------------------------------
def _versions(device) -> dict:
    import numpy as np
    import torch
    import torchvision

    out = {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
           "numpy": np.__version__, "cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None}
    try:
        import timm

        out["timm"] = timm.__version__
    except ImportError:
        out["timm"] = None
    return out


def _device_info(device) -> dict:
    import torch

    from reidlib.runtime import cpu_name

    info = {"type": device.type, "cpu": cpu_name(), "cpu_cores": os.cpu_count(), "host": platform.node(),
            "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=torch.cuda.get_device_name(device), capability=f"{props.major}.{props.minor}",
                    memory_gib=props.total_memory / 2**30, cudnn_benchmark=torch.backends.cudnn.benchmark)
    else:
        info["name"] = f"CPU: {info['cpu']}"
    return info


def _fmt(v, nd: int = 1) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def markdown(rep: dict) -> str:
    dev, cfg = rep["device"], rep["config"]
    lines = ["# Training and extraction throughput: reidlib models and torchreid (peer)", "",
             f"Command: `{rep['command']}`", ""]
    if not rep.get("complete", True):
        lines += ["**Partial**: the run stopped (or is still running) before every measurement was taken; the tables "
                  "hold the ones done so far.", ""]
    if rep["quick"] or dev["type"] != "cuda":
        lines += [f"**Not GPU numbers**: measured on {dev['name']}" + (" with `--quick` (tiny sizes)" if rep["quick"]
                  else "") + "; this run only shows the script works.", ""]
    v = rep["versions"]
    lines += [f"Device: **{dev['name']}**" + (f" (compute capability {dev['capability']}, "
                                             f"{dev['memory_gib']:.0f} GiB, cudnn.benchmark on)"
                                             if dev["type"] == "cuda" else "")
              + f"; host CPU {dev['cpu']} ({dev['cpu_cores']} cores, {dev['torch_threads']} torch threads). "
              f"torch {v['torch']}, torchvision {v['torchvision']}, timm {v['timm']}, CUDA {v['cuda']}, "
              f"cuDNN {v['cudnn']}, Python {v['python']}.", "",
              f"Data: {rep['data']['label']}; training on {rep['data']['train_images']} images of "
              f"{rep['data']['train_ids']} identities, extraction of {rep['data']['extract_images']} query + gallery "
              f"images. {cfg['height']}x{cfg['width']}, P x K {cfg['batch_size'] // cfg['num_instances']} x "
              f"{cfg['num_instances']}, precision `{cfg['precision']}`, channels_last, {cfg['workers']} loader "
              f"workers. torch.compile: {rep['compile']}.", "",
              "## Training (`fit`, second of 2 epochs; the first includes warm-up)", "",
              "| model | recipe | compiled | precision | data path | images | img/s | first epoch img/s "
              "| peak GPU MiB |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rep["train"]:
        lines.append(f"| {r['model']} | {r['recipe']} | {'yes' if r['compiled'] else 'no'} | {r['precision']} | "
                     f"{r['data_path']} | {r['images']} | {_fmt(r['img_per_s'])} | "
                     f"{_fmt(r['first_epoch_img_per_s'])} | {_fmt(r['peak_mib'], 0)} |")
    lines += ["", f"## Feature extraction (`extract_features`, no flip, batch {cfg['extract_batch']})", "",
              "| model | images from | compiled | precision | images | img/s | peak GPU MiB |",
              "|---|---|---|---|---|---|---|"]
    for r in rep["extract"]:
        src = (f"files (PIL, {r['workers']} workers)" if r["source"] == "loader" else "decoded batches in memory")
        lines.append(f"| {r['model']} | {src} | {'yes' if r['compiled'] else 'no'} | {r['precision']} | "
                     f"{r['images']} | {_fmt(r['img_per_s'])} | {_fmt(r['peak_mib'], 0)} |")
    peer = rep["peer"]
    lines += ["", "## Against the peer: torchreid, OSNet x0.25", ""]
    if peer is None:
        lines.append("Not run (`--no-peer`).")
    elif "error" in peer:
        lines += ["The peer run failed; our numbers above stand alone:", "", "```", peer["error"][-1500:], "```"]
    else:
        pv = peer.get("versions") or {}
        lines += [f"torchreid {pv.get('torchreid')} in its own process ({peer['python']}): `ImageTripletEngine` "
                  f"(fp32, {cfg['workers']} workers) and `FeatureExtractor` ({cfg['extract_batch']} paths a call).",
                  "", "| what | peer img/s | ours img/s | ours / peer |", "|---|---|---|---|"]
        for k, r in rep["ratios"].items():
            lines.append(f"| {r['what']} | {_fmt(r['peer'])} | {_fmt(r['ours'])} | ×{r['ratio']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    ap.add_argument("--quick", action="store_true", help="tiny sizes: try the script out (CPU: well under 2 min)")
    ap.add_argument("--models", nargs="+", default=None, help="default: every registered model")
    ap.add_argument("--no-peer", action="store_true", help="skip torchreid")
    ap.add_argument("--compile", action="store_true", help="also torch.compile'd models (CUDA only; else skipped)")
    ap.add_argument("--synthetic", action="store_true", help="use a generated dataset even when CUHK03-NP is there")
    ap.add_argument("--batches", type=int, default=None, help="P x K batches per epoch (default: the whole split)")
    ap.add_argument("--workers", type=int, default=None, help="loader workers (default: 8 on CUDA, 0 on a CPU)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--peer-python", default=None, help="python that imports torchreid (default: .peer-venv)")
    ap.add_argument("--work", default=str(ROOT / "work" / "gpu_throughput"))
    ap.add_argument("--out", default=None,
                    help="report folder (default: results/benchmarks on CUDA without --quick, else --work)")
    args = ap.parse_args(argv)
    import torch

    from reidlib.io import write_atomic, write_json
    from reidlib.models import list_models
    from reidlib.runtime import resolve_device, resolve_precision

    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    args.workers = args.workers if args.workers is not None else (8 if device.type == "cuda" else 0)
    args.height, args.width = (128, 64) if args.quick else (256, 128)
    args.batch_size, args.num_instances = (16, 4) if args.quick else (64, 4)
    args.extract_batch = 16 if args.quick else 256
    args.batches = args.batches or (2 if args.quick else None)
    args.precision = "auto"
    models = args.models or list_models()
    unknown = sorted(set(models) - set(list_models()))
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; known: {list_models()}")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work / "runs", ignore_errors=True)

    ds, label = load_data(args, work)
    train_items = train_subset(ds.train, args.batches, args.batch_size)
    test_items = list(ds.query) + list(ds.gallery)
    n_extract = (len(test_items) // args.extract_batch) * args.extract_batch
    if args.quick:
        n_extract = min(n_extract, 2 * args.extract_batch)
    if n_extract == 0:
        raise SystemExit(f"fewer than {args.extract_batch} query + gallery images: nothing to extract")
    step = max(1, len(test_items) // n_extract)
    extract_items = test_items[::step][:n_extract]  # spread over query and gallery, whole batches

    compile_modes = [False]
    if args.compile and device.type == "cuda":
        compile_modes.append(True)
        compile_note = "measured (`model.compile()`, inductor, default mode) beside eager"
    elif args.compile:
        compile_note = f"skipped: asked for, but the device is {device.type}, not CUDA"
    else:
        compile_note = "not measured (no `--compile`)"
    print(f"device {device}, {label}; {len(train_items)} training images, {len(extract_items)} to extract; "
          f"compile: {compile_note}", flush=True)

    command = "HF_HUB_OFFLINE=1 python benchmarks/gpu_throughput.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    train_rows, extract_rows = [], []
    report = {"command": command.strip(), "quick": args.quick, "complete": False, "device": _device_info(device),
              "versions": _versions(device), "compile": compile_note,
              "config": {"height": args.height, "width": args.width, "batch_size": args.batch_size,
                         "num_instances": args.num_instances, "precision": args.precision,
                         "precision_resolved": resolve_precision(args.precision, device), "workers": args.workers,
                         "extract_batch": args.extract_batch, "epochs": 2, "timed_epoch": 2,
                         "channels_last": True, "data_path": "cached"},
              "data": {"label": label, "train_images": len(train_items),
                       "train_ids": len({pid for _, pid, _ in train_items}), "extract_images": len(extract_items)},
              "models": models, "train": train_rows, "extract": extract_rows, "peer": None, "ratios": {}}
    out = Path(args.out) if args.out else (
        ROOT / "results" / "benchmarks" if device.type == "cuda" and not args.quick else work)
    out.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every measurement: a run cut short keeps its numbers
        write_json(out / "gpu_throughput.json", report)
        write_atomic(out / "gpu_throughput.md", markdown(report))

    save()
    for name in models:
        recipes = ["paper", "peer"] if name == "osnet_x0_25" else ["paper"]
        for compiled in compile_modes:
            for recipe in recipes:
                row = measure_train(name, train_items, args, device, work, recipe, compiled)
                model = row.pop("model_obj")
                train_rows.append(row)
                save()
                print(f"train   {name:>14} {recipe:>5}{' compiled' if compiled else ''}: "
                      f"{row['img_per_s']:.1f} img/s ({row['precision']}; first epoch "
                      f"{row['first_epoch_img_per_s']:.1f})", flush=True)
            for source in ("loader", "memory"):
                row = measure_extract(name, model, extract_items, args, device, source, compiled)
                extract_rows.append(row)
                save()
                print(f"extract {name:>14} {source:>6}{' compiled' if compiled else ''}: "
                      f"{row['img_per_s']:.1f} img/s", flush=True)
            del model
            if device.type == "cuda":
                torch.cuda.empty_cache()

    if not args.no_peer:
        peer = report["peer"] = run_peer(args, device, train_items, extract_items, work, torch.get_num_threads())
        if "error" not in peer:
            def ours(rows, **match):
                got = [r for r in rows if all(r[k] == v for k, v in match.items())]
                return got[0]["img_per_s"] if got else None

            pairs = {"train": ("training, the peer's recipe (ours AMP, peer fp32)", peer["train"]["img_per_s"],
                               ours(train_rows, model="osnet_x0_25", recipe="peer", compiled=False)),
                     "extract": ("extraction from files (ours with loader workers, peer's FeatureExtractor)",
                                 peer["extract"]["img_per_s"],
                                 ours(extract_rows, model="osnet_x0_25", source="loader", compiled=False))}
            report["ratios"] = {k: {"what": w, "peer": p, "ours": o, "ratio": o / p}
                                for k, (w, p, o) in pairs.items() if o is not None}
    report["complete"] = True
    save()
    print(f"report: {out / 'gpu_throughput.md'}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
