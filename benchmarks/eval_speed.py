"""Evaluation speed and memory at Market-1501 and LaST size, printed as ratios against its targets.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/eval_speed.py                 # every part, writes the report
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/eval_speed.py --parts market  # one part

Parts (each runs in its own subprocess, so its peak RSS is its own):
- ``market``: a synthetic 3,368 x 15,913 distance matrix with Market's pid/camid structure (750 query ids, 751
  gallery ids, 2,798 pid-0 distractors, 6 cameras, same-camera look-alikes). Times ``evaluate`` against a lean
  per-query numpy reference (one ``np.argsort`` per row, numpy masks, no Python loop over gallery items) and
  against one full ``np.argsort`` of the matrix, and checks that all three agree exactly.
- ``distances``: every metric at Market size, and scipy's ``cdist`` on 100 queries scaled to the full query set.
- ``rerank``: k-reciprocal re-ranking at Market size (time, peak RSS).
- ``last``: ``evaluate_features`` on LaST's test size (10,176 x 125,353, 512-d), peak RSS of the whole process.

Timings are the best of ``--repeats`` runs; the machine is shared, so the load average is recorded with them.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reidlib.engine.records import write_json  # noqa: E402
from reidlib.io import write_atomic  # noqa: E402

PARTS = ("market", "distances", "rerank", "last")


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is in KiB on Linux


def _best(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def market_like(seed: int = 0, dim: int = 512):
    """Features and ids shaped like Market-1501's query/gallery split (unit-norm, identity + camera + noise)."""
    import torch

    rng = np.random.default_rng(seed)
    n_q, n_g, n_distract, n_ids, n_cams = 3368, 15913, 2798, 751, 6
    g_pids = np.concatenate([rng.integers(1, n_ids + 1, n_g - n_distract), np.zeros(n_distract, np.int64)])
    g_cams = rng.integers(0, n_cams, n_g)
    q_pids = rng.integers(1, n_ids, n_q)
    q_cams = rng.integers(0, n_cams, n_q)
    ident = rng.standard_normal((n_ids + 1, dim)).astype(np.float32)
    cam = 0.8 * rng.standard_normal((n_cams, dim)).astype(np.float32)

    def feats(pids, cams):
        x = ident[pids] + cam[cams] + 1.6 * rng.standard_normal((len(pids), dim)).astype(np.float32)
        x[pids == 0] = 1.8 * rng.standard_normal((int((pids == 0).sum()), dim)).astype(np.float32)
        return torch.nn.functional.normalize(torch.from_numpy(x), dim=1)

    return feats(q_pids, q_cams), feats(g_pids, g_cams), q_pids, g_pids, q_cams, g_cams


def lean_reference(distmat: np.ndarray, q_pids, g_pids, q_cams, g_cams, max_rank: int = 50,
                   kind: str | None = None) -> dict:
    """The per-query numpy evaluation peers use: argsort each row, mask junk, cumulate matches.

    ``kind=None`` is numpy's default (fastest, unstable) sort; ``"stable"`` gives the order ``evaluate`` defines.
    """
    cmc_sum, aps, inps = np.zeros(max_rank), [], []
    for i in range(distmat.shape[0]):
        order = np.argsort(distmat[i], kind=kind)
        same = g_pids[order] == q_pids[i]
        matches = same[~(same & (g_cams[order] == q_cams[i]))]
        hits = np.flatnonzero(matches)
        if hits.size == 0:
            continue
        cmc_sum[min(hits[0], max_rank):] += 1
        aps.append(np.mean(np.arange(1, hits.size + 1) / (hits + 1)))
        inps.append(hits.size / (hits[-1] + 1))
    n = len(aps)
    return {"cmc": cmc_sum / n, "mAP": float(np.mean(aps)), "mINP": float(np.mean(inps)), "num_valid_queries": n}


def part_market(repeats: int) -> dict:
    from reidlib.evaluation import distance, evaluate, evaluate_features

    qf, gf, qp, gp, qc, gc = market_like()
    dist = distance(qf, gf, metric="euclidean").numpy()
    t_sort, _ = _best(lambda: np.argsort(dist, axis=1), repeats)
    t_ref, fast_ref = _best(lambda: lean_reference(dist, qp, gp, qc, gc), repeats)
    ref = lean_reference(dist, qp, gp, qc, gc, kind="stable")
    t_ours, ours = _best(lambda: evaluate(dist, qp, gp, qc, gc), repeats)
    t_feat, feat = _best(lambda: evaluate_features(qf, gf, qp, gp, qc, gc, metric="euclidean", normalize=False),
                         repeats)
    same = (np.array_equal(ours["cmc"], ref["cmc"]) and abs(ours["mAP"] - ref["mAP"]) < 1e-12
            and abs(ours["mINP"] - ref["mINP"]) < 1e-12 and ours["num_valid_queries"] == ref["num_valid_queries"]
            and np.array_equal(feat["cmc"], ref["cmc"]) and abs(feat["mAP"] - ref["mAP"]) < 1e-9)
    return {"full_argsort_s": t_sort, "lean_reference_s": t_ref, "evaluate_s": t_ours, "evaluate_features_s": t_feat,
            "speedup_vs_reference": t_ref / t_ours, "cost_vs_full_argsort": t_ours / t_sort,
            "identical_to_reference": bool(same),
            "default_sort_reference_mAP_diff": abs(fast_ref["mAP"] - ref["mAP"]),
            "rank1": float(ours["cmc"][0]), "mAP": ours["mAP"],
            "mINP": ours["mINP"], "num_valid_queries": ours["num_valid_queries"]}


def part_distances(repeats: int) -> dict:
    from scipy.spatial.distance import cdist

    from reidlib.evaluation import METRICS, distance

    qf, gf, *_ = market_like()
    sub = 100
    q64, g64 = qf[:sub].double().numpy(), gf.double().numpy()
    out = {}
    for metric in METRICS:
        reps = repeats if metric not in ("cityblock", "minkowski") else 1
        t, d = _best(lambda: distance(qf, gf, metric=metric, p=3), reps)
        t_sc, ref = _best(lambda: cdist(q64, g64, metric=metric, **({"p": 3} if metric == "minkowski" else {})), 1)
        scipy_full = t_sc * qf.shape[0] / sub
        out[metric] = {"ours_s": t, "scipy_full_est_s": scipy_full, "speedup": scipy_full / t,
                       "max_abs_err_vs_scipy": float(np.abs(d[:sub].double().numpy() - ref).max())}
    return out


def part_rerank(repeats: int) -> dict:
    from reidlib.evaluation import evaluate, re_ranking

    qf, gf, qp, gp, qc, gc = market_like()
    t = time.perf_counter()
    dist = re_ranking(qf, gf, k1=20, k2=6, lambda_value=0.3, metric="sqeuclidean")
    took = time.perf_counter() - t
    res = evaluate(dist, qp, gp, qc, gc)
    return {"rerank_s": took, "rank1": float(res["cmc"][0]), "mAP": res["mAP"]}


def part_last(repeats: int) -> dict:
    import torch

    from reidlib.evaluation import evaluate_features

    rng = np.random.default_rng(1)
    n_q, n_g, n_ids, dim = 10176, 125353, 5806, 512
    g_pids = np.concatenate([np.arange(n_ids), rng.integers(0, n_ids, n_g - n_ids)])
    q_pids = rng.choice(np.arange(n_ids), n_q)
    gen = torch.Generator().manual_seed(1)
    ident = torch.randn(n_ids, dim, generator=gen)

    def feats(pids):
        x = torch.randn(len(pids), dim, generator=gen).mul_(2.4).add_(ident[torch.from_numpy(pids)])
        return torch.nn.functional.normalize(x, dim=1, out=x)

    qf, gf = feats(q_pids), feats(g_pids)
    q_cams, g_cams = np.arange(n_q), n_q + np.arange(n_g)  # LaST: a running index per image
    rss_before = _rss_gb()
    t = time.perf_counter()
    res = evaluate_features(qf, gf, q_pids, g_pids, q_cams, g_cams, metric="euclidean", normalize=True,
                            protocol="last")
    took = time.perf_counter() - t
    return {"evaluate_features_s": took, "peak_rss_gb": _rss_gb(), "rss_before_eval_gb": rss_before,
            "features_gb": (qf.numel() + gf.numel()) * 4 / 2**30, "full_distmat_gb": n_q * n_g * 4 / 2**30,
            "full_argsort_gb": n_q * n_g * 8 / 2**30, "rank1": float(res["cmc"][0]), "mAP": res["mAP"],
            "num_valid_queries": res["num_valid_queries"]}


def _machine() -> dict:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "numpy": np.__version__, "python": platform.python_version(), "cuda": torch.cuda.is_available()}


def _report(results: dict, machine: dict, command: str) -> str:
    lines = ["# Evaluation speed and memory", "", f"Command: `{command}`", "",
             f"Machine: {machine['cpu']}, {machine['cores']} cores ({machine['torch_threads']} torch threads), "
             f"CUDA {'yes' if machine['cuda'] else 'no'}; torch {machine['torch']}, numpy {machine['numpy']}, "
             f"Python {machine['python']}. The machine was shared with other jobs; the load average (1 min) "
             "before and after each part is given with it. Timings are the best of the repeats.", ""]
    if "market" in results:
        m = results["market"]
        lines += ["## Market-1501 size: 3,368 x 15,913 distance matrix (float32)", "",
                  "| what | seconds | ratio |", "|---|---:|---:|",
                  f"| one full `np.argsort(distmat, axis=1)` | {m['full_argsort_s']:.2f} | 1.00 |",
                  f"| lean per-query numpy reference | {m['lean_reference_s']:.2f} | "
                  f"{m['lean_reference_s'] / m['full_argsort_s']:.2f} |",
                  f"| `evaluate(distmat, ...)` | {m['evaluate_s']:.2f} | {m['cost_vs_full_argsort']:.2f} |",
                  f"| `evaluate_features(qf, gf, ...)` (distances + ranking) | {m['evaluate_features_s']:.2f} | "
                  f"{m['evaluate_features_s'] / m['full_argsort_s']:.2f} |", "",
                  f"- `evaluate` is **{m['speedup_vs_reference']:.1f}x faster** than the lean reference (target >= 3x) "
                  f"and costs **{m['cost_vs_full_argsort']:.2f}x** one full argsort (target <= 1.5x).",
                  f"- Identical results to the reference with a stable argsort: **{m['identical_to_reference']}** "
                  f"(R1 {100 * m['rank1']:.2f}%, mAP {100 * m['mAP']:.2f}%, mINP {100 * m['mINP']:.2f}%, "
                  f"{m['num_valid_queries']} valid queries). With numpy's default (unstable) argsort the reference's "
                  f"mAP differs by {m['default_sort_reference_mAP_diff']:.1e} (ties between equal float32 distances).",
                  f"- {m['_load']}", ""]
    if "distances" in results:
        d = results["distances"]
        lines += ["## Distances at Market-1501 size (3,368 x 15,913, 512-d)", "",
                  "scipy's float64 `cdist` was timed on 100 queries and scaled to 3,368.", "",
                  "| metric | ours (s) | scipy cdist, full (s, est.) | speed-up | max abs diff vs scipy |",
                  "|---|---:|---:|---:|---:|"]
        lines += [f"| {k} | {v['ours_s']:.2f} | {v['scipy_full_est_s']:.1f} | {v['speedup']:.1f}x | "
                  f"{v['max_abs_err_vs_scipy']:.1e} |" for k, v in d.items() if not k.startswith("_")]
        lines += ["", f"- {d['_load']}", ""]
    if "rerank" in results:
        r = results["rerank"]
        lines += ["## k-reciprocal re-ranking at Market-1501 size (k1=20, k2=6, lambda=0.3)", "",
                  f"- {r['rerank_s']:.1f} s, peak RSS of the process {r['_peak_rss_gb']:.2f} GB "
                  f"(the reference keeps N x N float32 distances, their argsort and a dense V: ~6 GB).",
                  f"- On the synthetic features: R1 {100 * r['rank1']:.2f}%, mAP {100 * r['mAP']:.2f}% "
                  f"(Market part without re-ranking: see above).", f"- {r['_load']}", ""]
    if "last" in results:
        la = results["last"]
        lines += ["## LaST test size: 10,176 x 125,353, 512-d, `evaluate_features` (protocol \"last\")", "",
                  f"- {la['evaluate_features_s']:.1f} s; **peak RSS of the whole process {la['peak_rss_gb']:.2f} GB** "
                  f"(target < 3 GB), of which {la['rss_before_eval_gb']:.2f} GB before the evaluation started "
                  f"(interpreter, torch, {la['features_gb']:.2f} GB of features).",
                  f"- A full float32 distance matrix would be {la['full_distmat_gb']:.1f} GB and its int64 argsort "
                  f"{la['full_argsort_gb']:.1f} GB.",
                  f"- R1 {100 * la['rank1']:.2f}%, mAP {100 * la['mAP']:.2f}% on {la['num_valid_queries']} queries "
                  "(synthetic features).", f"- {la['_load']}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "results" / "benchmarks" / "eval_speed.md"))
    ap.add_argument("--child", choices=PARTS, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:  # run one part, print its JSON on the last line
        out = globals()[f"part_{args.child}"](args.repeats)
        out["_peak_rss_gb"] = _rss_gb()
        print(json.dumps(out))
        return
    results = {}
    for part in args.parts:
        load0 = os.getloadavg()[0]
        print(f"== {part} ...", flush=True)
        proc = subprocess.run([sys.executable, __file__, "--child", part, "--repeats", str(args.repeats)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"part {part} failed:\n{proc.stderr[-4000:]}")
        results[part] = json.loads(proc.stdout.strip().splitlines()[-1])
        results[part]["_load"] = f"load average {load0:.1f} before, {os.getloadavg()[0]:.1f} after"
        print(json.dumps(results[part], indent=1), flush=True)
    command = "HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/eval_speed.py" + (
        "" if list(args.parts) == list(PARTS) else " --parts " + " ".join(args.parts))
    text = _report(results, _machine(), command)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out.with_suffix(".json"), results)
    write_atomic(out, text + "\n")  # never leave half a report
    print(text)


if __name__ == "__main__":
    main()
