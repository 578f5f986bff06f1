"""reidlib against its peer torchreid (0.2.5 on PyPI = deep-person-reid 1.4.0) on this machine, in one run.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/peer_speed.py            # the full comparison (~15-25 min on 2 cores)
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/peer_speed.py --quick    # a few hundred images, to try it out

Three measurements, each side in its own subprocess with the same thread count (``--threads``, default 2):

* **train**: the peer's recipe (OSNet x0.25 from the MSMT17 re-ID weights, 256x128, P x K 16 x 4, amsgrad 1.5e-3,
  label-smoothed CE + triplet, random flip only), one full epoch of the CUHK03-NP train split. Peer: torchreid's
  ``ImageTripletEngine`` in fp32 with 2 loader workers (its documented way of running). Ours: ``fit`` with its
  defaults (cached data path) in fp32 and in ``precision="auto"`` (bf16 autocast where the CPU has native bf16),
  and for reference the PIL data path. The headline ratio is ``auto`` (what our defaults pick here) over the peer.
* **extract**: decode + resize + forward over the VIPeR and CUHK01 test images (query and gallery), no flip.
  Peer: ``FeatureExtractor`` called on 128 paths at a time; ours: ``make_test_loader`` + ``extract_features``
  (``precision="auto"`` and fp32). The first batch of each is a warm-up and is not timed. The peer's and our fp32
  embeddings of the same image are compared (mean cosine) to show it is the same network doing the same work.
* **eval**: torchreid's ``evaluate_rank`` (its python version; the Cython one needs a compiler step the PyPI sdist
  does not run) against ``reidlib.evaluation.evaluate`` on the same float64 distance matrices: CUHK03-NP test size
  (its real query/gallery ids and cameras) and a Market-1501-size synthetic one (3,368 x 15,913). CMC and mAP must
  agree to 1e-6 (asserted). Ratio = peer seconds / our seconds (best of a few repeats).

The peer env is ``.peer-venv`` (git-ignored, made once; ``peer_env.py`` says how): torchreid with the project venv's
own torch, numpy, scipy and PIL. reidlib never imports torchreid and the peer process cannot import reidlib.
``--rebuild-peer`` makes it afresh.

Writes ``results/benchmarks/peer_speed.md`` and ``.json`` (``--out``), each through a temporary file.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from peer_env import (  # noqa: E402
    DATA,
    PEER_EPOCHS,
    PEER_WORKER,
    WEIGHTS,
    ensure_peer_env,
    hardware,
    peer_fit_kwargs,
    peer_spec,
)
from peer_env import run_side as _run_side  # noqa: E402


# ---- our side (runs in a subprocess of the project venv) ----------------------------------------------------
def _ours_train(spec: dict, precision: str, data_path: str) -> dict:
    from reidlib.engine import fit

    items = [tuple(it) for it in json.loads(Path(spec["train_items"]).read_text())]
    t0 = time.perf_counter()
    res = fit("osnet_x0_25", items, out_dir=Path(spec["work"]) / f"train-{precision}-{data_path}", epochs=1,
              **peer_fit_kwargs(spec), precision=precision, data_path=data_path, num_workers=0, select_on="last",
              evaluate_test=False, progress=False, resume=False, device="cpu",
              model_kwargs={"pretrained": spec["weights"]})
    wall = time.perf_counter() - t0
    row, run = res.history[0], res.meta["runs"][-1]
    return {"images": row["images"], "seconds": row["train_seconds"], "img_per_s": row["images_per_s"],
            "call_seconds": wall, "precision": run["precision"], "data_path": run["data_path"],
            "malloc": run["malloc"], "image_cache": run.get("image_cache")}


def _ours_extract(spec: dict, precision: str) -> dict:
    import numpy as np

    from reidlib.data import build_transforms, make_test_loader
    from reidlib.evaluation import extract_features
    from reidlib.models import build_model

    paths = json.loads(Path(spec["extract_paths"]).read_text())
    model = build_model("osnet_x0_25", num_classes=1, pretrained=spec["weights"])
    tf = build_transforms(spec["height"], spec["width"], is_train=False)
    bs = spec["extract_batch"]
    extract_features(model, make_test_loader([(p, 0, 0) for p in paths[:bs]], tf, batch_size=bs), flip=False,
                     device="cpu", precision=precision, progress=False)  # warm-up, as the peer's
    t0 = time.perf_counter()
    fs = extract_features(model, make_test_loader([(p, 0, 0) for p in paths], tf, batch_size=bs), flip=False,
                          device="cpu", precision=precision, progress=False)
    seconds = time.perf_counter() - t0
    np.save(Path(spec["work"]) / f"ours-features-{precision}.npy", fs.feats.numpy())
    return {"images": len(paths), "seconds": seconds, "img_per_s": len(paths) / seconds,
            "precision": fs.meta["precision"]}


def _ours_eval(spec: dict) -> dict:
    import numpy as np

    from reidlib.evaluation import evaluate

    out = {}
    for name, case in spec["eval_cases"].items():
        z = np.load(case["file"])
        args = (z["distmat"], z["q_pids"], z["g_pids"], z["q_camids"], z["g_camids"])
        times = []
        for _ in range(case["repeats"]):
            t0 = time.perf_counter()
            res = evaluate(*args, max_rank=case["max_rank"], protocol="market")
            times.append(time.perf_counter() - t0)
        out[name] = {"seconds": min(times), "all_seconds": times,
                     "cmc": np.asarray(res["cmc"], dtype=float).ravel().tolist(), "mAP": float(res["mAP"])}
    return out


def child(task: str, spec_file: str, out_file: str) -> None:
    import torch

    spec = json.loads(Path(spec_file).read_text())
    torch.set_num_threads(spec["threads"])
    kind, *opts = task.split(":")
    if kind == "train":
        result = _ours_train(spec, *opts)
    elif kind == "extract":
        result = _ours_extract(spec, *opts)
    else:
        result = _ours_eval(spec)
    result["torch_threads"] = torch.get_num_threads()
    Path(out_file).write_text(json.dumps(result))


# ---- inputs ---------------------------------------------------------------------------------------------------
def _eval_case(path: Path, q_pids, g_pids, q_cams, g_cams, seed: int) -> None:
    """A float64 distance matrix where true matches tend to be closer (no ties), stored with its ids in ``path``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    q_pids, g_pids = np.asarray(q_pids, dtype=np.int64), np.asarray(g_pids, dtype=np.int64)
    dist = rng.random((len(q_pids), len(g_pids)))
    same = q_pids[:, None] == g_pids[None, :]
    dist[same] -= 0.6 * rng.random(int(same.sum()))
    np.savez(path, distmat=dist, q_pids=q_pids, g_pids=g_pids, q_camids=np.asarray(q_cams, dtype=np.int64),
             g_camids=np.asarray(g_cams, dtype=np.int64))


def prepare(args: argparse.Namespace, work: Path) -> dict:
    """Write the inputs both sides read: training items, images to embed, distance matrices; return the spec."""
    import numpy as np

    from reidlib.data import build_dataset, relabel

    cuhk = build_dataset("folder", DATA / "cuhk03-np-detected")
    train = cuhk.train
    if args.quick:
        keep = sorted({pid for _, pid, _ in train})[:40]
        train = relabel([it for it in train if it[1] in keep])
    (work / "train_items.json").write_text(json.dumps([list(it) for it in train]))
    paths = [p for name in ("viper", "cuhk01") for split in ("query", "gallery")
             for p, _, _ in getattr(build_dataset("folder", DATA / name), split)]
    if args.quick:
        paths = paths[:: max(1, len(paths) // 300)][:300]
    (work / "extract_paths.json").write_text(json.dumps(paths))
    cases = {}
    q, g = cuhk.query, cuhk.gallery
    _eval_case(work / "eval-cuhk03.npz", [i[1] for i in q], [i[1] for i in g], [i[2] for i in q], [i[2] for i in g], 0)
    cases["cuhk03"] = {"file": str(work / "eval-cuhk03.npz"), "repeats": 3, "max_rank": 50,
                       "label": f"CUHK03-NP test ({len(q)} x {len(g)}, real ids and cameras)"}
    nq, ng, ids = (800, 4000, 200) if args.quick else (3368, 15913, 751)
    rng = np.random.default_rng(1)
    q_pids = rng.integers(0, ids, nq)
    n_match = min(ng, ids * 13)  # ~13 gallery images per query identity, the rest distractor identities
    g_pids = np.concatenate([np.arange(n_match) % ids, ids + rng.integers(0, ids, ng - n_match)])
    _eval_case(work / "eval-market.npz", q_pids, g_pids, rng.integers(0, 6, nq), rng.integers(0, 6, ng), 2)
    cases["market"] = {"file": str(work / "eval-market.npz"), "repeats": 1 if not args.quick else 2, "max_rank": 50,
                       "label": f"Market-1501 size, synthetic ({nq} x {ng}, {ids} ids, 6 cameras)"}
    spec = {"train_items": str(work / "train_items.json"), "extract_paths": str(work / "extract_paths.json"),
            "eval_cases": cases, "weights": str(WEIGHTS), **peer_spec(), "epochs": PEER_EPOCHS, "workers": 2,
            "threads": args.threads,
            "extract_batch": 128, "work": str(work), "peer_features": str(work / "peer-features.npy"),
            "train_images": len(train), "train_ids": len({pid for _, pid, _ in train}), "extract_images": len(paths)}
    (work / "spec.json").write_text(json.dumps(spec, indent=1))
    return spec


def run_side(python: Path, script: Path, task: str, work: Path, threads: int, label: str) -> dict:
    """One measurement in its own process (:func:`peer_env.run_side`); our side is this file with ``--child``."""
    return _run_side(python, script, task, work, threads, label, child_flag=script == Path(__file__))


# ---- report ---------------------------------------------------------------------------------------------------
def _markdown(report: dict) -> str:
    hw, tr, ex, ev = report["hardware"], report["train"], report["extract"], report["eval"]
    la = report["load_average"]
    bf16 = ("native bf16" + (", AMX" if hw["amx"] else "")) if hw["native_bf16"] else "no native bf16"
    lines = ["# reidlib vs torchreid (peer) speed on one machine", "",
             f"Command: `{report['command']}`", "",
             f"{hw['cpu']}, {hw['cores']} cores ({bf16}), "
             f"{hw['threads']} torch threads on both sides; torch {report['versions']['torch']}, torchreid "
             f"{report['versions']['torchreid']} (deep-person-reid 1.4.0) sharing the project's torch. Load average "
             f"(1, 5, 15 min) at the start {', '.join(f'{v:.2f}' for v in la['start'])}, at the end "
             f"{', '.join(f'{v:.2f}' for v in la['end'])} (the machine is shared; other jobs ran alongside)."
             + (" **Quick mode: a few hundred images; not a measurement to quote.**" if report["quick"] else ""), "",
             f"## Training: one epoch, the peer's recipe ({tr['images']} images of {tr['train_ids']} CUHK03-NP "
             "ids)", "",
             "OSNet x0.25 from the MSMT17 weights, 256x128, P x K 16 x 4, amsgrad 1.5e-3, LS-CE + triplet, flip only. "
             f"Each side ran {report['rounds']} epoch(s) in alternating order (each in a fresh process); img/s is the "
             "median, the PIL-path reference ran once.", "",
             "| side | precision | data path | img/s (median) | epoch s | ratio to peer "
             "| img/s per round (load average before) |",
             "|---|---|---|---|---|---|---|"]
    for r in tr["rows"]:
        per = ", ".join(f"{g['img_per_s']:.1f} ({g['load_before']:.1f})" for g in r.get("rounds", [r]))
        lines.append(f"| {r['side']} | {r['precision']} | {r['data']} | {r['img_per_s']:.1f} | {r['seconds']:.1f} | "
                     f"{r['ratio']:.2f} | {per} |")
    cache = tr.get("ours_image_cache") or {}
    lines += ["", f"Headline (our defaults on this CPU: {tr['ours_precision']}): **×{tr['ratio']:.2f}**; fp32 against "
              f"fp32: **×{tr['ratio_fp32']:.2f}**. Our image cache ({cache.get('images', '?')} images, "
              f"{cache.get('mib', '?')} MiB) took {cache.get('seconds', float('nan')):.1f} s to build before the "
              "epoch (once per run, or once ever with `cache_dir`), not in the img/s. Our fp32 process keeps freed "
              f"memory (glibc mallopt, `reidlib/engine/memory.py`: {tr.get('ours_fp32_malloc')}).", "",
              f"## Feature extraction: {ex['images']} VIPeR + CUHK01 test images, decode + resize + forward, "
              "no flip", "",
              "| side | precision | img/s | seconds | ratio to peer |", "|---|---|---|---|---|"]
    for r in ex["rows"]:
        lines.append(f"| {r['side']} | {r['precision']} | {r['img_per_s']:.1f} | {r['seconds']:.2f} | "
                     f"{r['ratio']:.2f} |")
    lines += ["", f"Headline ×{ex['ratio']:.2f}. Same network, same images: mean cosine between the peer's and our "
              f"fp32 embeddings {ex['cosine_fp32']:.6f} (ours in {ex['ours_precision']}: {ex['cosine_auto']:.4f}).", "",
              "## Evaluation: CMC + mAP from the same distance matrix", "",
              "| matrix | peer `evaluate_rank` s | ours `evaluate` s | ratio | rank-1 | mAP "
              "| max abs diff (CMC, mAP) |",
              "|---|---|---|---|---|---|---|"]
    for name, c in ev["cases"].items():
        lines.append(f"| {c['label']} | {c['peer_seconds']:.3f} | {c['ours_seconds']:.3f} | {c['ratio']:.1f} | "
                     f"{c['rank1']:.4f} | {c['mAP']:.4f} | {c['max_cmc_diff']:.1e}, {c['mAP_diff']:.1e} |")
    lines += ["", f"Headline (the smaller of the two): ×{ev['ratio']:.1f}, identical numbers (asserted to 1e-6).", "",
              "## Speed targets", ""]
    for t in report["targets"]:
        lines.append(f"- {t['what']}: ×{t['got']:.2f} against ≥ ×{t['need']:g}: **{'met' if t['met'] else 'not met'}**")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few hundred images: try the script out")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2, help="training rounds per side (alternating order; median)")
    ap.add_argument("--rebuild-peer", action="store_true", help="make .peer-venv afresh")
    ap.add_argument("--out", default=None, help="report folder (default results/benchmarks; --quick: work/peer_speed)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args, rest = ap.parse_known_args(argv)
    if args.child:
        child(*rest)
        return 0
    import numpy as np
    from benchlib import write_atomic

    from reidlib.engine.records import write_json

    for need in (DATA / "cuhk03-np-detected", DATA / "viper", DATA / "cuhk01", WEIGHTS):
        if not need.exists():
            raise SystemExit(f"missing {need}: this benchmark needs ../shared/data and ../shared/weights")
    load_start = os.getloadavg()
    peer_python = ensure_peer_env(args.rebuild_peer)
    work = ROOT / "work" / "peer_speed" / ("quick" if args.quick else "full")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    spec = prepare(args, work)
    me, ours, peer = Path(__file__), Path(sys.executable), peer_python
    t = args.threads
    r: dict = {}
    # training epochs are long and the machine is shared: alternate the sides over --rounds rounds, take the median
    train_runs = {"peer_train": (peer, PEER_WORKER, "train", "peer train fp32"),
                  "ours_train_fp32": (ours, me, "train:fp32:cached", "ours train fp32"),
                  "ours_train_auto": (ours, me, "train:auto:cached", "ours train auto")}
    rounds: dict[str, list[dict]] = {k: [] for k in train_runs}
    for i in range(args.rounds):
        for key in (list(train_runs) if i % 2 == 0 else list(reversed(train_runs))):
            py, script, task, label = train_runs[key]
            rounds[key].append(run_side(py, script, task, work, t, f"{label} (round {i + 1})"))
        if i == 0:
            r["ours_train_pil"] = run_side(ours, me, "train:auto:pil", work, t, "ours train auto (PIL)")
    for key, got in rounds.items():
        r[key] = {**got[0], "img_per_s": statistics.median(g["img_per_s"] for g in got),
                  "seconds": statistics.median(g["seconds"] for g in got),
                  "rounds": [{k: g.get(k) for k in ("img_per_s", "seconds", "load_before", "load_after")} for g in got]}
    r["peer_extract"] = run_side(peer, PEER_WORKER, "extract", work, t, "peer extract")
    r["ours_extract_auto"] = run_side(ours, me, "extract:auto", work, t, "ours extract auto")
    r["ours_extract_fp32"] = run_side(ours, me, "extract:fp32", work, t, "ours extract fp32")
    r["peer_eval"] = run_side(peer, PEER_WORKER, "eval", work, t, "peer eval")
    r["ours_eval"] = run_side(ours, me, "eval", work, t, "ours eval")

    peer_ips = r["peer_train"]["img_per_s"]
    train_rows = [{"side": "torchreid", "precision": "fp32", "data": "DataLoader, 2 workers", **r["peer_train"]}]
    for key, data in (("ours_train_fp32", "cached"), ("ours_train_auto", "cached"),
                      ("ours_train_pil", "PIL, 0 workers")):
        train_rows.append({"side": "reidlib", "data": data, **r[key]})
    for row in train_rows:
        row["ratio"] = row["img_per_s"] / peer_ips
    train = {"ours_img_per_s": r["ours_train_auto"]["img_per_s"], "peer_img_per_s": peer_ips,
             "ratio": r["ours_train_auto"]["img_per_s"] / peer_ips, "ours_precision": r["ours_train_auto"]["precision"],
             "ours_fp32_img_per_s": r["ours_train_fp32"]["img_per_s"],
             "ratio_fp32": r["ours_train_fp32"]["img_per_s"] / peer_ips,
             "ours_pil_img_per_s": r["ours_train_pil"]["img_per_s"],
             "ratio_pil": r["ours_train_pil"]["img_per_s"] / peer_ips,
             "ours_fp32_malloc": r["ours_train_fp32"]["malloc"],
             "ours_image_cache": r["ours_train_auto"].get("image_cache"),
             "images": r["ours_train_auto"]["images"], "peer_images": r["peer_train"]["images"],
             "train_ids": spec["train_ids"], "rows": train_rows}

    peer_f = np.load(spec["peer_features"])

    def cosine(a, b) -> float:
        a = a / np.linalg.norm(a, axis=1, keepdims=True)
        b = b / np.linalg.norm(b, axis=1, keepdims=True)
        return float((a * b).sum(1).mean())

    ex_rows = [{"side": "torchreid", **r["peer_extract"]}]
    ex_rows += [{"side": "reidlib", **r[k]} for k in ("ours_extract_auto", "ours_extract_fp32")]
    for row in ex_rows:
        row["ratio"] = row["img_per_s"] / r["peer_extract"]["img_per_s"]
    extract = {"ours_img_per_s": r["ours_extract_auto"]["img_per_s"], "peer_img_per_s": r["peer_extract"]["img_per_s"],
               "ratio": r["ours_extract_auto"]["img_per_s"] / r["peer_extract"]["img_per_s"],
               "ours_precision": r["ours_extract_auto"]["precision"],
               "ours_fp32_img_per_s": r["ours_extract_fp32"]["img_per_s"],
               "ratio_fp32": r["ours_extract_fp32"]["img_per_s"] / r["peer_extract"]["img_per_s"],
               "cosine_fp32": cosine(peer_f, np.load(work / "ours-features-fp32.npy")),
               "cosine_auto": cosine(peer_f, np.load(work / "ours-features-auto.npy")),
               "images": spec["extract_images"], "rows": ex_rows}

    cases = {}
    for name, case in spec["eval_cases"].items():
        p, o = r["peer_eval"][name], r["ours_eval"][name]
        cmc_diff = float(np.max(np.abs(np.asarray(p["cmc"]) - np.asarray(o["cmc"]))))
        map_diff = abs(p["mAP"] - o["mAP"])
        if cmc_diff > 1e-6 or map_diff > 1e-6:
            raise SystemExit(f"evaluation differs on {name}: CMC by {cmc_diff}, mAP by {map_diff}")
        cases[name] = {"label": case["label"], "peer_seconds": p["seconds"], "ours_seconds": o["seconds"],
                       "ratio": p["seconds"] / o["seconds"], "rank1": o["cmc"][0], "mAP": o["mAP"],
                       "max_cmc_diff": cmc_diff, "mAP_diff": map_diff, "peer_all_seconds": p["all_seconds"],
                       "ours_all_seconds": o["all_seconds"]}
    evaluation = {"ratio": min(c["ratio"] for c in cases.values()), "identical": True, "cases": cases}

    native = hardware(t)["native_bf16"]
    targets = [{"what": f"training, {'native bf16' if native else 'fp32'} (our default precision here)",
                "got": train["ratio"], "need": 3.0 if native else 2.0},
               {"what": "training, fp32 against fp32", "got": train["ratio_fp32"], "need": 2.0},
               {"what": "feature extraction", "got": extract["ratio"], "need": 3.0},
               {"what": "evaluation (same numbers)", "got": evaluation["ratio"], "need": 1.0}]
    for tg in targets:
        tg["met"] = tg["got"] >= tg["need"] if tg["need"] > 1 else tg["got"] > 1
    report = {"command": "HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/peer_speed.py"
              + (" --quick" if args.quick else "") + (f" --threads {t}" if t != 2 else "")
              + (f" --rounds {args.rounds}" if args.rounds != 2 else ""),
              "rounds": args.rounds, "quick": args.quick, "hardware": hardware(t),
              "versions": r["peer_extract"]["versions"],
              "load_average": {"start": list(load_start), "end": list(os.getloadavg())},
              "train": train, "extract": extract, "eval": evaluation, "targets": targets, "raw": r}
    out = Path(args.out) if args.out else (work if args.quick else ROOT / "results" / "benchmarks")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "peer_speed.json", report)
    write_atomic(out / "peer_speed.md", _markdown(report))
    print(f"train ×{train['ratio']:.2f} ({train['ours_precision']}), fp32 ×{train['ratio_fp32']:.2f}; "
          f"extract ×{extract['ratio']:.2f}; eval ×{evaluation['ratio']:.1f}; report in {out / 'peer_speed.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
