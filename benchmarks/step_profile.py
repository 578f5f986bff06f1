"""Where does a CPU training step of OSNet x0.25 at 256x128 spend its time?

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/step_profile.py [--steps 6] [--threads 2]

The step is the trainer's (as in ``benchmarks/compile_step.py``): a channels_last batch of 64 (P x K 16 x 4),
forward under autocast, LS-CE + triplet + center loss in fp32, backward, amsgrad step. For each precision the CPU
runs (bf16 autocast where it has native bf16, and fp32), in its own process:

1. phase times over ``--steps`` steps after 2 warm-up steps (wall clock, no profiler): forward, loss, backward,
   optimizer; their sum is the step;
2. one more ``--steps`` steps under ``torch.profiler``: self CPU time per operator, grouped into convolution
   forward / backward, batch norm forward / backward, other elementwise and pooling kernels, optimizer, and the rest.

It answers what a faster data path can still win (nothing inside the step) and which kernels bound the trainer's
speed. Writes results/benchmarks/step_profile.md (+ .json) through temporary files.
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

# operator name fragments -> group (first match wins; names are aten::... as the profiler reports them)
GROUPS = (
    ("convolution backward", ("convolution_backward",)),
    ("convolution forward", ("mkldnn_convolution", "_convolution", "conv2d", "convolution")),
    ("batch norm backward", ("batch_norm_backward",)),
    ("batch norm forward", ("batch_norm",)),
    ("optimizer", ("_foreach", "addcmul", "addcdiv", "maximum", "sqrt", "lerp")),
    ("activations, pooling, adds", ("relu", "sigmoid", "pool", "add", "mul", "threshold", "hardswish", "where")),
    ("copies and casts", ("copy_", "to", "clone", "contiguous", "empty", "zero", "fill")),
)


def group_of(name: str) -> str:
    """The GROUPS label of an operator name (``"other"`` when none matches)."""
    short = name.split("::")[-1]
    for label, fragments in GROUPS:
        if any(f in short for f in fragments):
            return label
    return "other"


def child(precision: str, steps: int, threads: int) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from reidlib.losses import make_loss
    from reidlib.models import build_model
    from reidlib.runtime import autocast

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dev = torch.device("cpu")
    num_classes, batch = 700, 64
    model = build_model("osnet_x0_25", num_classes).to(memory_format=torch.channels_last).train()
    criterion = make_loss(num_classes=num_classes, feat_dim=model.feat_dim, center_weight=5e-4)
    opt = torch.optim.Adam(model.parameters(), lr=1.5e-3, amsgrad=True)
    x = torch.randn(batch, 3, 256, 128).contiguous(memory_format=torch.channels_last)
    y = torch.arange(16).repeat_interleave(4)

    def step() -> dict:
        t = [time.perf_counter()]
        with autocast(dev, precision):
            logits, feat = model(x)
        t.append(time.perf_counter())
        total, _ = criterion(logits.float(), feat.float(), y)
        t.append(time.perf_counter())
        opt.zero_grad(set_to_none=True)
        total.backward()
        t.append(time.perf_counter())
        opt.step()
        t.append(time.perf_counter())
        return {k: t[i + 1] - t[i] for i, k in enumerate(("forward", "loss", "backward", "optimizer"))}

    for _ in range(2):
        step()
    rows = [step() for _ in range(steps)]
    phases = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    groups: dict[str, float] = {}
    ops = []
    for ev in prof.key_averages():
        self_us = float(ev.self_cpu_time_total)
        if self_us <= 0:
            continue
        groups[group_of(ev.key)] = groups.get(group_of(ev.key), 0.0) + self_us
        ops.append((ev.key, self_us))
    total_us = sum(groups.values())
    ops.sort(key=lambda o: -o[1])
    return {"precision": precision, "phases_s": phases, "step_s": sum(phases.values()),
            "img_per_s": batch / sum(phases.values()),
            "groups": {k: v / total_us for k, v in sorted(groups.items(), key=lambda kv: -kv[1])},
            "top_ops": [{"op": k, "share": v / total_us} for k, v in ops[:12]], "load_after": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(ROOT / "results" / "benchmarks"))
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.steps, args.threads)))
        return 0
    from benchlib import command_line, write_results

    from reidlib.runtime import cpu_has_native_bf16, cpu_name

    env = {**os.environ, **{k: str(args.threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}}
    load0 = os.getloadavg()
    precisions = ["bf16", "fp32"] if cpu_has_native_bf16() else ["fp32"]
    rows = []
    for precision in precisions:
        cmd = [sys.executable, __file__, "--child", precision, "--steps", str(args.steps), "--threads",
               str(args.threads)]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print({k: rows[-1][k] for k in ("precision", "step_s", "img_per_s")}, flush=True)
    meta = {"cpu": cpu_name(), "native_bf16": cpu_has_native_bf16(), "threads": args.threads, "steps": args.steps,
            "load_average_start": load0, "load_average_end": os.getloadavg(),
            "command": command_line(__file__, argv)}
    lines = ["# Where a CPU training step of osnet_x0_25 at 256x128 spends its time", "",
             f"Command: `{meta['command'].strip()}`", "",
             f"{meta['cpu']}{' (native bf16)' if meta['native_bf16'] else ''}, {args.threads} threads, batch 64, "
             "channels_last, LS-CE + triplet + center loss, amsgrad. Load average (1, 5, 15 min) at the start "
             f"{', '.join(f'{v:.2f}' for v in load0)}, at the end "
             f"{', '.join(f'{v:.2f}' for v in meta['load_average_end'])}.", "",
             "## Phases (median of the timed steps, no profiler)", "",
             "| precision | forward s | loss s | backward s | optimizer s | step s | img/s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        p = r["phases_s"]
        lines.append(f"| {r['precision']} | {p['forward']:.3f} | {p['loss']:.4f} | {p['backward']:.3f} | "
                     f"{p['optimizer']:.4f} | {r['step_s']:.3f} | {r['img_per_s']:.1f} |")
    lines += ["", "## Operator groups (share of the profiled self CPU time)", "",
              "| group | " + " | ".join(r["precision"] for r in rows) + " |",
              "|---|" + "---|" * len(rows)]
    for label in dict.fromkeys(k for r in rows for k in r["groups"]):
        lines.append(f"| {label} | " + " | ".join(f"{100 * r['groups'].get(label, 0.0):.1f}%" for r in rows) + " |")
    for r in rows:
        lines += ["", f"## Top operators, {r['precision']}", "", "| operator | share |", "|---|---|"]
        lines += [f"| `{o['op']}` | {100 * o['share']:.1f}% |" for o in r["top_ops"]]
    write_results(args.out, "step_profile", {"meta": meta, "rows": rows}, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
