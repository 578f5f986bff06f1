"""Does ``torch.compile`` speed up the CPU training step of OSNet x0.25 at 256x128?

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/compile_step.py [--steps 8] [--threads 2] [--precision auto]

The step is the trainer's: channels_last batch of 64 (P x K 16 x 4), forward under autocast (``precision``),
LS-CE + triplet (+ center) loss in fp32, backward, Adam step. Eager and compiled (inductor, default mode) each run in
their own process; each reports the compile/warm-up time (the first 2 steps) and the median and best of the next
``--steps`` steps. Writes results/benchmarks/compile_step.md (+ .json) through temporary files.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]


def child(mode: str, steps: int, threads: int, precision: str) -> dict:
    import torch
    from benchlib import train_step

    from reidlib.models import build_model
    from reidlib.runtime import resolve_precision

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    precision = resolve_precision(precision, torch.device("cpu"))
    num_classes, batch = 700, 64
    model = build_model("osnet_x0_25", num_classes).to(memory_format=torch.channels_last).train()
    net = torch.compile(model) if mode == "compiled" else model
    run_step = train_step(net, model, batch, precision, num_classes, center_weight=0.0)

    def step() -> float:
        t0 = time.perf_counter()
        run_step()
        return time.perf_counter() - t0

    warm = sum(step() for _ in range(2))
    times = [step() for _ in range(steps)]
    return {"mode": mode, "precision": precision, "warmup_seconds": warm, "median_step_s": statistics.median(times),
            "best_step_s": min(times), "img_per_s_median": batch / statistics.median(times),
            "img_per_s_best": batch / min(times), "load_after": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(ROOT / "results" / "benchmarks"))
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.steps, args.threads, args.precision)))
        return 0
    from benchlib import command_line, write_results

    from reidlib.runtime import cpu_has_native_bf16, cpu_name

    env = {**os.environ, **{k: str(args.threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}}
    load0 = os.getloadavg()
    rows = []
    for mode in ("eager", "compiled"):
        cmd = [sys.executable, __file__, "--child", mode, "--steps", str(args.steps), "--threads", str(args.threads),
               "--precision", args.precision]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if out.returncode:
            rows.append({"mode": mode, "error": out.stderr.strip().splitlines()[-1][:300]})
        else:
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    meta = {"cpu": cpu_name(), "native_bf16": cpu_has_native_bf16(), "threads": args.threads, "steps": args.steps,
            "load_average_start": load0, "load_average_end": os.getloadavg(),
            "command": command_line(__file__, argv)}
    lines = ["# torch.compile and the CPU training step of osnet_x0_25 at 256x128", "",
             f"Command: `{meta['command'].strip()}`", "",
             f"{meta['cpu']}{' (native bf16)' if meta['native_bf16'] else ''}, {args.threads} threads, batch 64, "
             f"channels_last; each mode in its own process: 2 warm-up steps (compilation included), then "
             f"{args.steps} timed steps. Load average (1, 5, 15 min) at the start "
             f"{', '.join(f'{v:.2f}' for v in load0)}, at the end "
             f"{', '.join(f'{v:.2f}' for v in meta['load_average_end'])}.", "",
             "| mode | precision | warm-up s | median step s | img/s (median) | img/s (best) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['mode']} | - | failed: {r['error']} | | | |")
        else:
            lines.append(f"| {r['mode']} | {r['precision']} | {r['warmup_seconds']:.1f} | {r['median_step_s']:.3f} | "
                         f"{r['img_per_s_median']:.1f} | {r['img_per_s_best']:.1f} |")
    write_results(args.out, "compile_step", {"meta": meta, "rows": rows}, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
