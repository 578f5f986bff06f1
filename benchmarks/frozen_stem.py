"""How much a frozen stem speeds up a CPU training step (the cpu-real OSNet-MSMT17 row freezes conv1 + conv2).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/frozen_stem.py [--model osnet_x0_25] [--batch 64] [--iters 3]

For each set of frozen modules (``reidlib.engine.trainer.freeze_layers``: their parameters get no gradient, so
autograd skips the backward pass through them), times one training step (forward + CE-LS + triplet + center +
backward + SGD step, P x K = batch/4 x 4) at 256x128 with channels_last and ``--precision`` (auto: bf16 only
where the CPU computes it natively), best of ``--iters`` after a warm-up, and prints images/s and the ratio to
the all-trainable step. Writes results/benchmarks/frozen_stem.md (+ .json), each through a temporary file.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import torch  # noqa: E402
from benchlib import NUM_CLASSES, throughput, write_atomic  # noqa: E402

from reidlib.engine.records import write_json  # noqa: E402
from reidlib.engine.trainer import freeze_layers  # noqa: E402
from reidlib.models import build_model  # noqa: E402
from reidlib.runtime import cpu_name, resolve_precision  # noqa: E402

FROZEN_SETS = {"osnet_x0_25": [[], ["conv1"], ["conv1", "conv2"], ["conv1", "conv2", "conv3"]]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="osnet_x0_25", choices=sorted(FROZEN_SETS))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--out", default=str(ROOT / "results" / "benchmarks"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    precision = resolve_precision(args.precision, torch.device("cpu"))
    rows = []
    for frozen in FROZEN_SETS[args.model]:
        torch.manual_seed(0)
        model = build_model(args.model, NUM_CLASSES)
        n_frozen = freeze_layers(model, frozen)
        ips = throughput(model, args.batch, args.iters, train=True, precision=precision, channels_last=True)
        rows.append({"frozen": ", ".join(frozen) or "(none)", "frozen_params": n_frozen, "train_img_per_s": ips})
        print(f"{rows[-1]['frozen']:>22}: {ips:6.1f} img/s  (x{ips / rows[0]['train_img_per_s']:.2f})", flush=True)
    for r in rows:
        r["ratio"] = r["train_img_per_s"] / rows[0]["train_img_per_s"]
    meta = {"model": args.model, "input": "256x128", "batch": args.batch, "threads": args.threads,
            "precision": precision, "cpu": cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__,
            "python": platform.python_version(), "load_avg": os.getloadavg(),
            "command": "HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/frozen_stem.py " + " ".join(argv or sys.argv[1:])}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "frozen_stem.json", {"meta": meta, "rows": rows})
    lines = [f"# Frozen stem: training speed of {args.model} at 256x128 on CPU", "",
             f"Command: `{meta['command'].strip()}`", "",
             f"{meta['cpu']}, {meta['cores']} cores, {args.threads} threads, {precision}, channels_last, batch "
             f"{args.batch}; torch {meta['torch']}; load average (1, 5, 15 min) at the end "
             f"{', '.join(f'{v:.2f}' for v in meta['load_avg'])}.", "",
             "| frozen modules | frozen parameters | train img/s | ratio to all trainable |", "|---|---|---|---|"]
    lines += [f"| {r['frozen']} | {r['frozen_params']:,} | {r['train_img_per_s']:.1f} | {r['ratio']:.2f} |"
              for r in rows]
    write_atomic(out / "frozen_stem.md", "\n".join(lines) + "\n")
    print(json.dumps(meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
