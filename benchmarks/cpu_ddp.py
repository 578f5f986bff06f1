"""Two cores, two ways: one process with 2 torch threads, or two DDP ranks (gloo) with 1 thread each?

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/cpu_ddp.py [--steps 12] [--model osnet_x0_25]

The training step is the trainer's (as in ``benchmarks/step_profile.py``): channels_last, bf16 autocast where the
CPU has native bf16 (else fp32), LS-CE + batch-hard triplet + center loss, backward, amsgrad, on random
256x128 images. One process trains batch 64 (P x K 16 x 4) with 2 threads; the DDP run starts 2 ranks through
``torch.distributed.run`` with 1 thread each and batch 32 per rank (the same 64 images per step, gradients
averaged by DDP's all-reduce). Images/s over ``--steps`` steps after 3 warm-up steps, best of 2 rounds each.
Small convolutions (OSNet x0.25 has 16-128 channels) split poorly across threads, so the DDP layout may use the
two cores better; the batch-hard mining then sees 32 images per rank instead of 64.

Writes results/benchmarks/cpu_ddp.md (+ .json) through temporary files.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]


def child(args: argparse.Namespace) -> None:
    """Time the step in this process (one rank when torchrun's environment is set)."""
    import torch
    import torch.distributed as dist
    from benchlib import train_step

    from reidlib.models import build_model
    from reidlib.runtime import resolve_precision, to_memory_format

    world = int(os.environ.get("WORLD_SIZE", "1"))
    torch.set_num_threads(args.threads)
    if world > 1:
        dist.init_process_group("gloo")
    torch.manual_seed(int(os.environ.get("RANK", "0")))
    precision = resolve_precision("auto", torch.device("cpu"))
    model = to_memory_format(build_model(args.model, 767), True).train()
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    step = train_step(net, model, 64 // world, precision, 767)

    rates = []
    for _ in range(2):
        for _ in range(3):
            step()
        if world > 1:
            dist.barrier()
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        if world > 1:
            dist.barrier()
        rates.append(64 * args.steps / (time.perf_counter() - start))
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({"img_per_s": max(rates), "rounds": rates, "precision": precision, "world": world,
                          "threads": args.threads}), flush=True)
    if world > 1:
        dist.destroy_process_group()


def run(cmd: list[str]) -> dict:
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"))
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode or not lines:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}")
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--model", default="osnet_x0_25")
    ap.add_argument("--out", default=str(ROOT / "results" / "benchmarks"))
    ap.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args)
    me = [sys.executable, str(Path(__file__).resolve()), "--child", "--steps", str(args.steps), "--model", args.model]
    single = run(me + ["--threads", "2"])
    ddp = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               *me[1:], "--threads", "1"])
    from benchlib import command_line, write_results

    from reidlib.runtime import cpu_name

    ratio = ddp["img_per_s"] / single["img_per_s"]
    payload = {"command": command_line(__file__, argv), "cpu": cpu_name(), "cores": os.cpu_count(),
               "load_average": os.getloadavg(), "single_2_threads": single, "ddp_2x1_thread": ddp, "ratio": ratio}
    md = ["# One process with 2 threads against two DDP ranks with 1 thread each (CPU training step)", "",
          f"Command: `{payload['command']}`; {payload['cpu']}, {payload['cores']} cores, "
          f"{single['precision']}, {args.model} at 256x128, 64 images per step.", "",
          "| layout | img/s | ratio |", "|---|---:|---:|",
          f"| 1 process x 2 threads, batch 64 | {single['img_per_s']:.1f} | 1.00 |",
          f"| 2 DDP ranks (gloo) x 1 thread, batch 32 each | {ddp['img_per_s']:.1f} | {ratio:.2f} |", "",
          f"Load average at the end: {' '.join(f'{v:.2f}' for v in payload['load_average'])}."]
    write_results(args.out, "cpu_ddp", payload, md)
    print("\n".join(md))

if __name__ == "__main__":
    main()
