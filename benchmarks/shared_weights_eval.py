"""The shared OSNet x0.25 re-ID weights evaluated on the four shared real benchmarks, with and without flip.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/shared_weights_eval.py

Reads ``<shared>/weights/osnet_x0_25_{market1501,msmt17}.pth`` and ``<shared>/data/{viper,prid2011,cuhk01,
cuhk03-np-detected}`` (``<shared>`` = ``$REIDLIB_SHARED`` or ``../shared``), evaluates every pair zero-shot on the
test split (query vs gallery, Market-1501 protocol, euclidean distance on L2-normalised features, 256 x 128 test
transform), and writes ``results/shared-weights/table.md`` and ``table.json``. Chance levels come from the same
protocol on random distances, and every result is asserted to be far above them.

Flip: the mirror pass runs once per image; "flip" is the mean of the plain and mirrored embeddings, which is what
``extract_features(flip=True)`` computes.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reidlib.data import build_dataset, build_transforms, make_test_loader  # noqa: E402
from reidlib.engine.records import write_json  # noqa: E402
from reidlib.evaluation import evaluate, evaluate_features, extract_features  # noqa: E402
from reidlib.io import write_atomic  # noqa: E402
from reidlib.models import build_model, read_state_dict  # noqa: E402
from reidlib.plots import to_markdown  # noqa: E402
from reidlib.runtime import resolve_device, resolve_precision  # noqa: E402

DATASETS = ("viper", "prid2011", "cuhk01", "cuhk03-np-detected")
WEIGHTS = ("market1501", "msmt17")
RANKS = (1, 5, 10, 20)


class Mirrored(torch.nn.Module):
    """The wrapped model applied to horizontally mirrored input."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.flip(dims=[3]))


def shared_root() -> Path:
    return Path(os.environ.get("REIDLIB_SHARED", ROOT.parent / "shared")).resolve()


def load_osnet(weights: Path) -> torch.nn.Module:
    """OSNet x0.25 with the torchreid checkpoint's own classifier size, every key loaded."""
    num_classes = int(read_state_dict(weights)["classifier.weight"].shape[0])
    model = build_model("osnet_x0_25", num_classes=num_classes, pretrained=weights)
    if not model.pretrained_report.exact:
        raise RuntimeError(f"{weights} did not load cleanly: {model.pretrained_report.summary()}")
    return model.eval()


def chance(q, g, protocol: str, seeds: int = 10) -> dict:
    """Mean R1 and mAP of random distance matrices under the same protocol (the chance level)."""
    rng = np.random.default_rng(0)
    res = [evaluate(rng.random((len(q.pids), len(g.pids)), dtype=np.float32), q.pids, g.pids, q.camids, g.camids,
                    protocol=protocol) for _ in range(seeds)]
    return {"R1": float(np.mean([r["cmc"][0] for r in res])), "mAP": float(np.mean([r["mAP"] for r in res]))}


def row(res: dict) -> dict:
    return {**{f"R{k}": 100 * float(res["cmc"][k - 1]) for k in RANKS}, "mAP": 100 * res["mAP"],
            "mINP": 100 * res["mINP"]}


def evaluate_pair(model, ds, batch_size: int, precision: str, num_workers: int) -> dict:
    tf = build_transforms(256, 128, is_train=False)
    feats = {}
    t0 = time.time()
    for split in ("query", "gallery"):
        loader = make_test_loader(getattr(ds, split), tf, batch_size=batch_size, num_workers=num_workers)
        plain = extract_features(model, loader, flip=False, precision=precision, progress=False)
        mirror = extract_features(Mirrored(model), loader, flip=False, precision=precision, progress=False)
        feats[split] = (plain, mirror)
    seconds = time.time() - t0
    (qp, qm), (gp, gm) = feats["query"], feats["gallery"]
    out = {"num_query": len(qp), "num_gallery": len(gp), "extract_s": round(seconds, 1)}
    for name, qf, gf in (("no flip", qp.feats, gp.feats),
                         ("flip", (qp.feats + qm.feats) / 2, (gp.feats + gm.feats) / 2)):
        res = evaluate_features(qf, gf, qp.pids, gp.pids, qp.camids, gp.camids, metric="euclidean", normalize=True,
                                protocol=ds.protocol)
        out[name] = row(res)
        out[name]["num_valid_queries"] = res["num_valid_queries"]
    out["chance"] = {k: 100 * v for k, v in chance(qp, gp, ds.protocol).items()}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    ap.add_argument("--weights", nargs="+", default=list(WEIGHTS), choices=WEIGHTS)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--precision", default="auto",
                    help="extract_features precision (auto: bf16 on a CPU with native bf16, else fp32; AMP on CUDA)")
    ap.add_argument("--num-workers", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "results" / "shared-weights"))
    args = ap.parse_args(argv)
    shared = shared_root()
    if not (shared / "data").is_dir() or not (shared / "weights").is_dir():
        sys.exit(f"shared data/weights not found under {shared}: put shared/ beside the repo or set REIDLIB_SHARED")

    results, t_start = {}, time.time()
    for w in args.weights:
        model = load_osnet(shared / "weights" / f"osnet_x0_25_{w}.pth")
        for name in args.datasets:
            print(f"== {w} -> {name}", flush=True)
            res = evaluate_pair(model, build_dataset("folder", shared / "data" / name), args.batch_size,
                                args.precision, args.num_workers)
            results[f"{w}/{name}"] = res
            print(json.dumps(res), flush=True)
            for setting in ("no flip", "flip"):  # far above chance, or the weights / pipeline are broken
                got, ch = res[setting], res["chance"]
                assert got["R1"] > 10 * ch["R1"] and got["mAP"] > 3 * ch["mAP"], (w, name, setting, got, ch)

    rows = []
    for key, res in results.items():
        w, name = key.split("/")
        for setting in ("no flip", "flip"):
            rows.append({"weights": f"OSNet x0.25 {w}", "dataset": name, "flip": setting == "flip",
                         **{k: round(v, 1) for k, v in res[setting].items() if k != "num_valid_queries"},
                         "chance R1": round(res["chance"]["R1"], 2), "chance mAP": round(res["chance"]["mAP"], 2),
                         "queries": res[setting]["num_valid_queries"], "gallery": res["num_gallery"]})
    command = "HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/shared_weights_eval.py" + "".join(
        f" --{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in vars(args).items() if v != ap.get_default(k))
    device = resolve_device(None)
    meta = {"command": command, "precision": resolve_precision(args.precision, device), "device": str(device),
            "torch": torch.__version__, "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "seconds": round(time.time() - t_start, 1)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = "\n".join([
        "# Shared OSNet x0.25 re-ID weights on the shared real benchmarks (zero-shot)", "",
        f"Command: `{command}` ({meta['seconds']:.0f} s on {meta['device']} with {meta['cores']} cores, "
        f"precision {meta['precision']} (`--precision {args.precision}`), torch {meta['torch']}).", "",
        "Test split of each `../shared/data` folder: query vs gallery, Market-1501 protocol (same id + same camera "
        "ignored), euclidean distance on L2-normalised 512-d features, 256 x 128 test transform, non-interpolated "
        "mAP. Weights: torchreid model-zoo state dicts (`../shared/weights`), trained on Market-1501 or MSMT17, "
        "never on these datasets. Values in %. Chance = the same protocol on random distances (mean of 10).", "",
        to_markdown(rows), ""])
    write_json(out / "table.json", {"meta": meta, "results": results})
    write_atomic(out / "table.md", text)  # never leave half a table
    print(text)


if __name__ == "__main__":
    main()
