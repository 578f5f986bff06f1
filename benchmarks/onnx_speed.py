"""ONNX Runtime vs PyTorch eager on the CPU: OSNet x0.25 (MSMT17 weights) images/s, and int8 dynamic quantisation.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/onnx_speed.py [--threads 2] [--batch 32] [--rounds 7]

Exports the model at 256x128 with ``reidlib.export.export_onnx`` and times one forward pass of a ``--batch``
image batch (random normalised input; no flip) for each backend:

- PyTorch eager, fp32 (the exported graph's reference);
- PyTorch eager, bf16 autocast + channels_last (reidlib's own CPU inference path), only where the CPU has native bf16;
- onnxruntime fp32 (CPU execution provider, all graph optimisations);
- onnxruntime int8: ``onnxruntime.quantization.quantize_dynamic`` (QInt8 weights, activations quantised at run
  time; after ``quant_pre_process``), per-tensor and per-channel weight scales.
- PyTorch eager fp32 on 1 thread (speed only), when ``--threads`` is not 1.

Backends are timed in interleaved rounds (one batch each per round, after a warm-up) and the median per backend is
reported, so a change of load on this shared machine hits all of them alike; ratios are to PyTorch fp32. Accuracy:
each backend embeds VIPeR's query and gallery images at 256x128 (no flip) and is scored with
``evaluate_features(metric="cosine")``, Market protocol. An int8 model is kept (reported as usable, its file left
in ``--work``) only when its rank-1 is within 0.5 points of the onnxruntime fp32 rank-1; its speed is compared
with onnxruntime fp32 beside the verdict. Writes results/benchmarks/onnx_speed.md (+ .json), each through a
temporary file.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import numpy as np  # noqa: E402
import torch  # noqa: E402
from benchlib import command_line, write_results  # noqa: E402

from reidlib.data import build_dataset, build_transforms, read_image  # noqa: E402
from reidlib.evaluation import evaluate_features  # noqa: E402
from reidlib.export import INPUT_NAME, export_onnx, onnx_session  # noqa: E402
from reidlib.inference import load_embedding_model  # noqa: E402
from reidlib.runtime import autocast, cpu_has_native_bf16, cpu_name  # noqa: E402

H, W = 256, 128
MAX_RANK1_DROP = 0.5  # points of rank-1 (in %) an int8 model may lose against fp32 and still be kept
TORCH_FP32, TORCH_FP32_1T, ORT_FP32 = "pytorch eager fp32", "pytorch eager fp32, 1 thread", "onnxruntime fp32"
INT8_PER_TENSOR, INT8_PER_CHANNEL = "onnxruntime int8 (dynamic, per-tensor)", "onnxruntime int8 (dynamic, per-channel)"


def shared_root() -> Path:
    return Path(os.environ.get("REIDLIB_SHARED", ROOT.parent / "shared")).resolve()


def torch_runner(model: torch.nn.Module, bf16: bool, threads: int | None = None):
    dev = torch.device("cpu")
    net = model
    if bf16:
        net = model.to(memory_format=torch.channels_last)

    def run(x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(x)
        if bf16:
            t = t.contiguous(memory_format=torch.channels_last)
        before = torch.get_num_threads()
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            with torch.inference_mode(), autocast(dev, "bf16" if bf16 else "fp32"):
                return net(t).float().numpy()
        finally:
            torch.set_num_threads(before)

    return run


def ort_runner(path: Path, threads: int):
    session = onnx_session(path, threads=threads)

    def run(x: np.ndarray) -> np.ndarray:
        return session.run(None, {INPUT_NAME: x})[0]

    return run


def embed(run, images: list[np.ndarray], batch: int) -> np.ndarray:
    out = [run(np.stack(images[i:i + batch])) for i in range(0, len(images), batch)]
    return np.concatenate(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="torch and onnxruntime intra-op threads")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=7, help="timed rounds (one batch per backend each)")
    ap.add_argument("--weights", default=str(shared_root() / "weights" / "osnet_x0_25_msmt17.pth"))
    ap.add_argument("--data", default=str(shared_root() / "data" / "viper"))
    ap.add_argument("--work", default=str(ROOT / "work" / "onnx_speed"))
    ap.add_argument("--out", default=str(ROOT / "results" / "benchmarks"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from onnxruntime import __version__ as ort_version
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model, ident = load_embedding_model("osnet_x0_25", weights=args.weights)
    fp32_path = export_onnx(model, work / "osnet_x0_25_msmt17_256x128.onnx", H, W, metadata=ident.as_dict(H, W))
    pre_path = work / "osnet_pre.onnx"
    quant_pre_process(str(fp32_path), str(pre_path), skip_symbolic_shape=True)
    int8_paths = {}
    for per_channel in (False, True):
        label = INT8_PER_CHANNEL if per_channel else INT8_PER_TENSOR
        int8_paths[label] = work / f"osnet_x0_25_msmt17_256x128.int8{'-per-channel' if per_channel else ''}.onnx"
        quantize_dynamic(str(pre_path), str(int8_paths[label]), weight_type=QuantType.QInt8, per_channel=per_channel)
    pre_path.unlink(missing_ok=True)

    backends = {TORCH_FP32: torch_runner(model, bf16=False)}
    if args.threads != 1:  # speed only (same numerics): torch's OpenMP suffers most from other jobs on the cores
        backends[TORCH_FP32_1T] = torch_runner(model, bf16=False, threads=1)
    if cpu_has_native_bf16():
        import copy

        backends["pytorch eager bf16 + channels_last"] = torch_runner(copy.deepcopy(model), bf16=True)
    backends[ORT_FP32] = ort_runner(fp32_path, args.threads)
    for label, path in int8_paths.items():
        backends[label] = ort_runner(path, args.threads)

    x = torch.randn(args.batch, 3, H, W, generator=torch.Generator().manual_seed(0)).numpy()
    for run in backends.values():  # warm-up (oneDNN primitives, ORT arenas)
        run(x)
    times: dict[str, list[float]] = {name: [] for name in backends}
    for r in range(args.rounds):
        for name, run in backends.items():
            t0 = time.perf_counter()
            run(x)
            times[name].append(time.perf_counter() - t0)
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{n} {args.batch / times[n][-1]:.1f}" for n in backends),
              flush=True)

    ds = build_dataset("folder", args.data)
    tf = build_transforms(H, W, is_train=False)
    q_imgs = [tf(read_image(p)).numpy() for p, _, _ in ds.query]
    g_imgs = [tf(read_image(p)).numpy() for p, _, _ in ds.gallery]
    q_pids, q_cams = np.array([i[1] for i in ds.query]), np.array([i[2] for i in ds.query])
    g_pids, g_cams = np.array([i[1] for i in ds.gallery]), np.array([i[2] for i in ds.gallery])
    rows = []
    ref_feats = None
    for name, run in backends.items():
        med = statistics.median(times[name])
        if name == TORCH_FP32_1T:  # the fp32 model again: its accuracy is the row above's
            rows.append({"backend": name, "img_per_s": args.batch / med, "median_batch_s": med,
                         "all_batch_s": times[name], "rank1": None, "mAP": None})
            continue
        qf, gf = embed(run, q_imgs, args.batch), embed(run, g_imgs, args.batch)
        if ref_feats is None:
            ref_feats = np.concatenate([qf, gf])
        feats = np.concatenate([qf, gf]).astype(np.float64)
        cos = (feats * ref_feats).sum(1) / (np.linalg.norm(feats, axis=1) * np.linalg.norm(ref_feats, axis=1))
        res = evaluate_features(qf, gf, q_pids, g_pids, q_cams, g_cams, metric="cosine", protocol="market")
        rows.append({"backend": name, "img_per_s": args.batch / med, "median_batch_s": med,
                     "all_batch_s": times[name], "rank1": 100 * float(res["cmc"][0]), "mAP": 100 * res["mAP"],
                     "min_cosine_to_pytorch_fp32": float(cos.min()), "mean_cosine_to_pytorch_fp32": float(cos.mean())})
        print(f"{name}: {rows[-1]['img_per_s']:.1f} img/s, VIPeR rank-1 {rows[-1]['rank1']:.1f}, mAP "
              f"{rows[-1]['mAP']:.1f}, min cosine to fp32 {rows[-1]['min_cosine_to_pytorch_fp32']:.5f}", flush=True)
    base = rows[0]["img_per_s"]
    for r in rows:
        r["ratio_to_pytorch_fp32"] = r["img_per_s"] / base
    by_name = {r["backend"]: r for r in rows}
    ort32 = by_name[ORT_FP32]
    verdicts = {}
    for label, path in int8_paths.items():
        row = by_name[label]
        drop = ort32["rank1"] - row["rank1"]
        row["rank1_drop"], row["kept"] = drop, drop <= MAX_RANK1_DROP
        speed = (f"; speed x{row['img_per_s'] / ort32['img_per_s']:.2f} of onnxruntime fp32"
                 + (" (slower: no reason to deploy it on this CPU)" if row["img_per_s"] < ort32["img_per_s"] else ""))
        if row["kept"]:
            verdicts[label] = (f"kept: rank-1 {row['rank1']:.1f} vs {ort32['rank1']:.1f} fp32 ({-drop:+.1f} points, "
                               f"within {MAX_RANK1_DROP}){speed}")
        else:
            path.unlink(missing_ok=True)
            verdicts[label] = (f"rejected: rank-1 {row['rank1']:.1f} vs {ort32['rank1']:.1f} fp32 ({-drop:+.1f} "
                               f"points, more than {MAX_RANK1_DROP} lost); its file is deleted{speed}")
    sizes = {"fp32_onnx_bytes": fp32_path.stat().st_size,
             "int8_onnx_bytes": {label: path.stat().st_size if path.exists() else None
                                 for label, path in int8_paths.items()}}
    meta = {"model": "osnet_x0_25", "weights": Path(args.weights).name, "weights_sha256": ident.weights_sha256,
            "input": f"{H}x{W}", "batch": args.batch, "rounds": args.rounds, "threads": args.threads,
            "cpu": cpu_name(), "cores": os.cpu_count(), "native_bf16": cpu_has_native_bf16(),
            "torch": torch.__version__, "onnxruntime": ort_version, "python": platform.python_version(),
            "load_avg": os.getloadavg(), "int8_verdicts": verdicts, **sizes,
            "command": command_line(__file__, argv)}
    lines = ["# ONNX Runtime vs PyTorch eager: OSNet x0.25 (MSMT17 weights) inference on CPU", "",
             f"Command: `{meta['command'].strip()}`", "",
             f"{meta['cpu']}, {meta['cores']} cores (shared with other jobs), {args.threads} threads for both "
             f"runtimes, batch {args.batch} at {H}x{W}, median of {args.rounds} interleaved rounds; torch "
             f"{meta['torch']}, onnxruntime {ort_version}; load average (1, 5, 15 min) at the end "
             f"{', '.join(f'{v:.2f}' for v in meta['load_avg'])}. "
             f"ONNX file: fp32 {sizes['fp32_onnx_bytes'] / 2**20:.2f} MiB.", "",
             "Accuracy: VIPeR test split (316 queries, 316 gallery), 256x128, no flip, cosine, Market protocol; "
             "cosine = agreement of each backend's embeddings with PyTorch fp32's (min / mean over 632 images).", "",
             "| backend | img/s | ratio to PyTorch fp32 | VIPeR rank-1 % | mAP % | min / mean cosine to PyTorch fp32 |",
             "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        acc = (f"{r['rank1']:.1f} | {r['mAP']:.1f} | {r['min_cosine_to_pytorch_fp32']:.5f} / "
               f"{r['mean_cosine_to_pytorch_fp32']:.5f}" if r["rank1"] is not None else "(as fp32) | | ")
        lines.append(f"| {r['backend']} | {r['img_per_s']:.1f} | {r['ratio_to_pytorch_fp32']:.2f} | {acc} |")
    lines += [""] + [f"- {label}: {text}." for label, text in verdicts.items()]
    write_results(args.out, "onnx_speed", {"meta": meta, "rows": rows}, lines)
    print("ratios to PyTorch eager fp32: "
          + ", ".join(f"{r['backend']} x{r['ratio_to_pytorch_fp32']:.2f}" for r in rows))
    for label, text in verdicts.items():
        print(f"{label}: {text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
