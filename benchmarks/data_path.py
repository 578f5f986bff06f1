"""What the training data path costs per P x K batch, without a model: PIL DataLoader vs the cached batch path.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/data_path.py [--batches 30] [--threads 2]

CUHK03-NP train images at 256x128, batch 64 (16 x 4), two augmentation recipes: the peer's (flip only) and the
paper's (flip, pad 10 + crop, random erasing 0.5). The PIL path is ``make_train_loader`` with 0 and 2 worker
processes; the cached path is ``make_cached_train_loader`` (its one-off cache build is reported apart). Each row
times ``--batches`` batches after 2 warm-up batches, in the same process, with ``--threads`` torch threads.
A training step of OSNet x0.25 at this size takes ~0.6 s (bf16) to ~1.2 s (fp32) on a 2-core CPU
(``peer_speed.md``), so a batch's cost here is that share of an epoch when it is not overlapped (0 workers).
Writes results/benchmarks/data_path.md (+ .json) through temporary files.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
DATA = Path(os.environ.get("REIDLIB_SHARED", ROOT.parent / "shared")) / "data" / "cuhk03-np-detected"


def _time(loader, batches: int) -> float:
    """Milliseconds per batch over ``batches`` batches after 2 warm-up ones."""
    loader.sampler.set_epoch(0)
    it = iter(loader)
    for _ in range(2):
        next(it)
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    return (time.perf_counter() - t0) / batches * 1e3


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "results" / "benchmarks"))
    args = ap.parse_args(argv)
    import torch
    from benchlib import command_line, write_results

    from reidlib.data import (
        BatchAugment,
        ImageCache,
        build_dataset,
        build_transforms,
        make_cached_train_loader,
        make_train_loader,
    )
    from reidlib.runtime import cpu_name

    torch.set_num_threads(args.threads)
    items = build_dataset("folder", DATA).train
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    cache = ImageCache.build([p for p, _, _ in items], 256, 128)
    cache_s = time.perf_counter() - t0
    recipes = {"flip only (peer)": dict(flip_p=0.5, pad=0, erasing_p=0.0),
               "flip, pad 10, erasing 0.5 (paper)": dict(flip_p=0.5, pad=10, erasing_p=0.5)}
    rows = []
    for name, aug in recipes.items():
        tf = build_transforms(256, 128, is_train=True, **aug)
        for workers in (0, 2):
            loader = make_train_loader(items, tf, batch_size=64, num_instances=4, num_workers=workers, seed=0)
            ms = _time(loader, args.batches)
            rows.append({"recipe": name, "path": f"PIL, {workers} workers", "ms_per_batch": ms})
            del loader
        loader = make_cached_train_loader(items, augment=BatchAugment(**aug), cache=cache, seed=0)
        rows.append({"recipe": name, "path": "cached", "ms_per_batch": _time(loader, args.batches)})
        print(rows[-3:], flush=True)
    meta = {"cpu": cpu_name(), "threads": args.threads, "batches": args.batches, "images": len(items),
            "cache_seconds": cache_s, "cache_mib": cache.nbytes / 2**20, "load_average_start": load0,
            "load_average_end": os.getloadavg(),
            "command": command_line(__file__, argv)}
    lines = ["# Training data path: cost of one 64-image batch at 256x128 (no model)", "",
             f"Command: `{meta['command'].strip()}`", "",
             f"{meta['cpu']}, {args.threads} torch threads, CUHK03-NP train ({len(items)} images); "
             f"{args.batches} batches per row after 2 warm-up ones. The cached path's one-off decode took "
             f"{cache_s:.1f} s ({meta['cache_mib']:.0f} MiB). With workers the batch is made in other processes, "
             "which on a 2-core machine take their time from the model instead. Load average (1, 5, 15 min) at the "
             f"start {', '.join(f'{v:.2f}' for v in load0)}, at the end "
             f"{', '.join(f'{v:.2f}' for v in meta['load_average_end'])}.", "",
             "| augmentations | data path | ms per batch |", "|---|---|---|"]
    lines += [f"| {r['recipe']} | {r['path']} | {r['ms_per_batch']:.1f} |" for r in rows]
    write_results(args.out, "data_path", {"meta": meta, "rows": rows}, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
