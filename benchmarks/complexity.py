"""Model complexity table: parameters (paper count / default / inference), FLOPs and CPU throughput at 256×128.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/complexity.py [--batch 8] [--iters 3] [--threads 1] [--no-train]

Writes results/complexity/complexity.{md,json} (each via a temporary file renamed into place).
Throughput: random input, channels_last + bf16 autocast (``reidlib.runtime``) where the CPU computes bf16
natively (avx512_bf16 / AMX), fp32 otherwise (``--precision auto``; emulated bf16 is ~10× *slower* than fp32
on an AVX2-only CPU, measured), best of ``--iters`` timed iterations after one
warm-up (the minimum is the least contention-affected estimate on a shared machine); inference = eval +
inference_mode, embedding output; train step =
forward + ReIDLoss (CE-LS + triplet + center, fp32) + backward + SGD step, P×K = batch/4 × 4.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from benchlib import NUM_CLASSES, ROOT, SIZE, git_commit, throughput, write_atomic  # noqa: E402

from reidlib.models import build_model, count_flops, count_parameters, inference_parameter_count, list_models  # noqa: E402
from reidlib.runtime import cpu_flags, cpu_has_native_bf16, cpu_name  # noqa: E402

OUT = ROOT / "results" / "complexity"


def measure(name: str, paper_code: bool, args: argparse.Namespace) -> dict:
    model = build_model(name, NUM_CLASSES, paper_code=paper_code)
    flops = count_flops(model, SIZE)
    row = {
        "model": name,
        "paper_code": paper_code,
        "params_trainable": count_parameters(model),
        "params_inference": inference_parameter_count(model, SIZE),
        "feat_dim": model.feat_dim,
        "flops": flops["flops"],
        "macs": flops["macs"],
    }
    channels_last = not args.no_channels_last
    row["infer_img_s"] = round(throughput(model, args.batch, args.iters, False, args.precision, channels_last), 1)
    if not args.no_train:
        row["train_img_s"] = round(throughput(model, args.batch, args.iters, True, args.precision, channels_last), 1)
    print(row, flush=True)
    return row


def to_markdown(rows: list[dict], meta: dict) -> str:
    by = {(r["model"], r["paper_code"]): r for r in rows}
    lines = [
        "# Model complexity at 256×128 (num_classes = 751)",
        "",
        f"Command: `{meta['command']}`  ",
        f"Machine: {meta['cpu']}, {meta['threads']} torch threads, torch {meta['torch']}; "
        f"commit {meta['commit']}; {meta['date']}.  ",
        f"Load average before the run: {meta['loadavg']} (the 2 cores are shared with other engineers: throughput is a "
        "lower bound, noisy by ±20 % or more).",
        "",
        "- **params paper / default**: trainable parameters (`count_parameters`) with `paper_code=True` (the paper's "
        "numbers: dead MobileNetV3 head, 1000-d OSNet fc, biases) / with the default, cleaned-up model.",
        "- **params inference**: every parameter an eval forward of the default model uses "
        "(classifier and dead heads excluded, frozen BN bias included). "
        "Paper mode computes differently only for bot_resnet50 (last stride 2: an 8×4 "
        "final map instead of 16×8) and osnet_x0_25 (1000-d fc).",
        "- **MACs**: multiply-adds of conv/linear layers for one image (FLOPs / 2; torchreid and most re-ID papers "
        "call these \"FLOPs\"), counted by `torch.utils.flop_counter.FlopCounterMode`; BN, activations and pooling "
        "are not counted.",
        f"- **img/s**: CPU, {'bf16 autocast' if meta['precision'] == 'bf16' else 'fp32'}, "
        f"channels_last={meta['channels_last']}, "
        f"batch {meta['batch']}, {meta['threads']} thread(s), best of {meta['iters']} iterations after 1 warm-up; "
        "train = forward + CE-LS/triplet/center + backward + SGD step. "
        "1 thread by default: on a shared 2-core machine, "
        "2 OpenMP threads competing with other jobs spend their time in barrier waits (a one-off check while writing "
        "this benchmark: OSNet x0.25 inference ran 2-3× slower with 2 threads than with 1).",
        *(
            []
            if meta["native_bf16"] or meta["precision"] == "bf16"
            else [
                "",
                "This CPU has no native bf16 (no avx512_bf16/AMX), so throughput is measured in fp32 + channels_last. "
                "bf16 autocast is emulated here: osnet_x0_25 inference with CL+bf16 ran at "
                f"{meta.get('osnet_bf16_infer_img_s')} "
                "img/s in this run, against the fp32 number in the table. `../shared/paper/cpu_facts.md` measured an "
                "AMX Xeon, where CL+bf16 is the fastest setting.",
            ]
        ),
        "",
        "| model | params paper | params default | params inference default (paper) | GMACs default (paper) | "
        "GFLOPs default (paper) | infer img/s default (paper) | train img/s default (paper) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in sorted({r["model"] for r in rows}):
        d, p = by[(name, False)], by[(name, True)]
        train = f"{d['train_img_s']} ({p['train_img_s']})" if "train_img_s" in d else "–"
        lines.append(
            f"| {name} | {p['params_trainable']:,} | {d['params_trainable']:,} | "
            f"{d['params_inference']:,} ({p['params_inference']:,}) | {d['macs'] / 1e9:.3f} ({p['macs'] / 1e9:.3f}) | "
            f"{d['flops'] / 1e9:.3f} ({p['flops'] / 1e9:.3f}) | {d['infer_img_s']} ({p['infer_img_s']}) | {train} |"
        )
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1 suits a shared 2-core machine)")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                        help="auto: bf16 where the CPU has native bf16, else fp32")
    parser.add_argument("--no-channels-last", action="store_true")
    parser.add_argument("--no-train", action="store_true", help="skip the training-step throughput")
    parser.add_argument("--models", nargs="*", default=list_models())
    args = parser.parse_args(argv)
    if args.batch < 4 or args.batch % 4:
        parser.error("--batch must be a multiple of 4 (P×K with K = 4)")
    if args.precision == "auto":
        args.precision = "bf16" if cpu_has_native_bf16() else "fp32"
    torch.set_num_threads(args.threads)
    simd = sorted(cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "amx_bf16"})
    meta = {
        "command": " ".join(["HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/complexity.py",
                             *(sys.argv[1:] if argv is None else argv)]),
        "cpu": f"{cpu_name()} ({', '.join(simd) or 'no AVX2'})",
        "native_bf16": cpu_has_native_bf16(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "commit": git_commit(),
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "batch": args.batch,
        "iters": args.iters,
        "precision": args.precision,
        "channels_last": not args.no_channels_last,
        "image_size": list(SIZE),
        "num_classes": NUM_CLASSES,
    }
    rows = [measure(name, paper, args) for name in args.models for paper in (False, True)]
    if args.precision == "fp32" and not meta["native_bf16"]:  # document what bf16 would cost here
        osnet = build_model("osnet_x0_25", NUM_CLASSES)
        meta["osnet_bf16_infer_img_s"] = round(
            throughput(osnet, args.batch, 1, False, "bf16", not args.no_channels_last), 1)
    OUT.mkdir(parents=True, exist_ok=True)
    write_atomic(OUT / "complexity.json", json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    write_atomic(OUT / "complexity.md", to_markdown(rows, meta))
    print((OUT / "complexity.md").read_text())


if __name__ == "__main__":
    main()
