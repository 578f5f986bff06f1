"""Does keeping freed memory in the process (glibc malloc settings) speed up a CPU training step?

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/malloc_env.py [--model osnet_x0_25] [--rounds 3] [--iters 6]

glibc hands every allocation above its mmap threshold (at most 32 MiB) straight back to the kernel when it is
freed, so the activations of a 256x128 training step (tens of MiB each at batch 64) are page-faulted in again on
every step. ``MALLOC_MMAP_MAX_=0`` (never mmap) with a huge ``MALLOC_TRIM_THRESHOLD_`` (never trim the heap) keeps
them in the process. Numerics do not change, only where the memory comes from. Set them in the environment before
``./run_all.sh`` (the README's "CPU speed" says where they paid off).

Each setting runs in its own process (glibc reads the variables at start-up), in alternating order for
``--rounds`` rounds; a process times ``--iters`` training steps (forward + CE-LS + triplet + center + backward +
SGD, P x K = batch/4 x 4, channels_last) and reports the best. The table gives the median over rounds, per
precision (fp32 always; bf16 where the CPU computes it natively), and the peak resident memory.
Writes results/benchmarks/malloc_env.md (+ .json), each through a temporary file.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

KEEP_MEMORY = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 36)}
SETTINGS = {"glibc default": {}, "keep freed memory": KEEP_MEMORY}


def child(args: argparse.Namespace) -> None:
    import torch
    from benchlib import NUM_CLASSES, throughput

    from reidlib.models import build_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ips = throughput(build_model(args.model, NUM_CLASSES), args.batch, args.iters, train=True,
                     precision=args.precision, channels_last=True)
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"img_per_s": ips, "peak_rss_mib": rss_mib}))


def run_child(args: argparse.Namespace, precision: str, extra_env: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in KEEP_MEMORY}
    env.update(extra_env)
    cmd = [sys.executable, __file__, "--child", "--precision", precision, "--model", args.model,
           "--batch", str(args.batch), "--iters", str(args.iters), "--threads", str(args.threads)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="osnet_x0_25")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--iters", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(ROOT / "results" / "benchmarks"))
    args = ap.parse_args(argv)
    if args.child:
        child(args)
        return 0

    from benchlib import write_atomic

    from reidlib.engine.records import write_json
    from reidlib.runtime import cpu_has_native_bf16, cpu_name

    precisions = ["fp32"] + (["bf16"] if cpu_has_native_bf16() else [])
    samples: dict[tuple[str, str], list[dict]] = {(p, s): [] for p in precisions for s in SETTINGS}
    for r in range(args.rounds):
        order = list(SETTINGS) if r % 2 == 0 else list(reversed(SETTINGS))
        for precision in precisions:
            for name in order:
                res = run_child(args, precision, SETTINGS[name])
                samples[(precision, name)].append(res)
                print(f"round {r + 1} {precision:>4} {name:>18}: {res['img_per_s']:6.1f} img/s, "
                      f"peak RSS {res['peak_rss_mib']:.0f} MiB", flush=True)
    rows = []
    for precision in precisions:
        base = None
        for name in SETTINGS:
            got = samples[(precision, name)]
            ips = statistics.median(s["img_per_s"] for s in got)
            base = base or ips
            rows.append({"precision": precision, "setting": name, "env": SETTINGS[name], "train_img_per_s": ips,
                         "ratio": ips / base, "peak_rss_mib": max(s["peak_rss_mib"] for s in got),
                         "samples": [s["img_per_s"] for s in got]})
    meta = {"model": args.model, "input": "256x128", "batch": args.batch, "threads": args.threads,
            "rounds": args.rounds, "iters": args.iters, "cpu": cpu_name(), "cpu_native_bf16": cpu_has_native_bf16(),
            "cores": os.cpu_count(), "python": platform.python_version(), "load_avg": os.getloadavg(),
            "command": "HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/malloc_env.py " + " ".join(argv or sys.argv[1:])}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "malloc_env.json", {"meta": meta, "rows": rows})
    env_text = " ".join(f"{k}={v}" for k, v in KEEP_MEMORY.items())
    lines = [f"# glibc malloc settings and the CPU training step of {args.model} at 256x128", "",
             f"Command: `{meta['command'].strip()}`", "",
             f"{meta['cpu']}{' (native bf16)' if meta['cpu_native_bf16'] else ''}, {meta['cores']} cores, "
             f"{args.threads} threads, channels_last, batch {args.batch}; median of {args.rounds} processes per "
             f"row, each the best of {args.iters} steps; load average (1, 5, 15 min) at the end "
             f"{', '.join(f'{v:.2f}' for v in meta['load_avg'])}. \"keep freed memory\" = `{env_text}`.", "",
             "| precision | malloc | train img/s | ratio to glibc default | peak RSS (MiB) | per-process img/s |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['precision']} | {r['setting']} | {r['train_img_per_s']:.1f} | {r['ratio']:.2f} | "
              f"{r['peak_rss_mib']:.0f} | {', '.join(f'{v:.1f}' for v in r['samples'])} |" for r in rows]
    write_atomic(out / "malloc_env.md", "\n".join(lines) + "\n")
    print(json.dumps(meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
