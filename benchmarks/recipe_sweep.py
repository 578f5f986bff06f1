"""Compare training recipes side by side: one ``reidlib.engine.fit`` run per variant, several at once.

A sweep file (YAML) names the data, the model and a base recipe, then variants that override it::

    description: ...
    data: {name: folder, root: "{shared}/data/cuhk03-np-detected", train_only: true}
    model: osnet_x0_25
    pretrained: "{shared}/weights/osnet_x0_25_msmt17.pth"
    base: {epochs: 30, lr: 3.5e-4, height: 128, width: 64, num_val_ids: 150, ...}   # fit() keywords
    variants:
      adam-3.5e-4: {}
      amsgrad-1.5e-3-cosine: {optimizer: amsgrad, lr: 1.5e-3, scheduler: cosine}

``train_only: true`` reads only ``bounding_box_train/`` and judges every variant on identities held out of it
(``num_val_ids``), so choosing a recipe never looks at the test split; otherwise the test split is also
evaluated once per variant (with the selected epoch) and reported beside the validation numbers.
A variant may override ``model`` and ``pretrained`` too. Placeholders: ``{shared}`` (``$REIDLIB_SHARED`` or
``../shared``), ``{repo}``.

Writes ``<out>/sweep.md`` and ``<out>/sweep.json`` (atomically), runs under ``<work>/<variant>/``::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/recipe_sweep.py benchmarks/sweeps/cuhk03-osnet-msmt17.yaml \
        --out results/sweeps/cuhk03-osnet-msmt17 --jobs 4 --threads 1
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _training_items(data: dict) -> Any:
    """The dataset (or, with ``train_only``, just its relabelled training items)."""
    from reidlib.data import build_dataset
    from reidlib.data.base import relabel
    from reidlib.data.folder import read_market_split

    spec = dict(data)
    if spec.pop("train_only", False):
        return relabel(read_market_split(Path(spec["root"]) / "bounding_box_train"))
    return build_dataset(spec.pop("name"), spec.pop("root"), **(spec.pop("kwargs", None) or {}))


def run_variant(name: str, spec: dict, work: str, threads: int, device: str) -> dict:
    """Train one variant in this process and return its summary row (fractions turned into %)."""
    import torch

    from reidlib.engine import fit

    torch.set_num_threads(threads)
    data = _training_items(spec["data"])
    recipe = dict(spec["base"], **{k: v for k, v in spec["override"].items() if k not in ("model", "pretrained")})
    model_kwargs = dict(recipe.pop("model_kwargs", {}) or {})
    if spec.get("pretrained"):
        model_kwargs["pretrained"] = spec["pretrained"]
    recipe.update(device=device, progress=False, evaluate_test=not isinstance(data, list), resume=False)
    start = time.time()
    res = fit(spec["model"], data, out_dir=Path(work) / name, model_kwargs=model_kwargs, **recipe)
    hist = res.history
    best = res.best_metrics or {}
    row = {
        "variant": name, "model": spec["model"], "pretrained": spec.get("pretrained"), "override": spec["override"],
        "epochs": res.epochs_completed, "best_epoch": res.best_epoch,
        "val_R1": 100 * best.get("rank1", float("nan")), "val_mAP": 100 * best.get("mAP", float("nan")),
        "last_val_R1": 100 * next((h["val_rank1"] for h in reversed(hist) if "val_rank1" in h), float("nan")),
        "train_acc_last": 100 * hist[-1]["train_acc"] if hist else float("nan"),
        "loss_id_last": hist[-1]["loss_id"] if hist else float("nan"),
        "images_per_s": sum(h["images_per_s"] for h in hist) / max(len(hist), 1),
        "images_seen": sum(h["images"] for h in hist), "wall_s": time.time() - start,
        "val_curve": [(h["epoch"], 100 * h["val_rank1"], 100 * h["val_mAP"]) for h in hist if "val_rank1" in h],
    }
    if res.test_metrics:
        row.update(test_R1=100 * res.test_metrics["rank1"], test_mAP=100 * res.test_metrics["mAP"])
    return row


def collect_variant(name: str, spec: dict, run_dir: Path) -> dict | None:
    """A summary row rebuilt from a run folder's ``metrics.csv`` (and ``result.json`` if the run finished).

    Lets a sweep that was stopped (e.g. by a time limit) still report every variant as far as it got;
    ``complete`` says whether all planned epochs ran.
    """
    import csv

    path = run_dir / "metrics.csv"
    if not path.is_file():
        return None
    hist = [{k: (float(v) if v not in ("", "True", "False") else v) for k, v in r.items()}
            for r in csv.DictReader(path.open())]
    if not hist:
        return None
    planned = int(dict(spec["base"], **spec["override"]).get("epochs", len(hist)))
    evals = [h for h in hist if h.get("val_rank1") not in (None, "")]
    best = max(evals, key=lambda h: h["select_score"]) if evals else {}
    row = {
        "variant": name, "model": spec["model"], "pretrained": spec.get("pretrained"), "override": spec["override"],
        "epochs": len(hist), "planned": planned, "complete": len(hist) >= planned,
        "best_epoch": int(best["epoch"]) if best else None,
        "val_R1": 100 * best["val_rank1"] if best else float("nan"),
        "val_mAP": 100 * best["val_mAP"] if best else float("nan"),
        "last_val_R1": 100 * evals[-1]["val_rank1"] if evals else float("nan"),
        "train_acc_last": 100 * hist[-1]["train_acc"], "loss_id_last": hist[-1]["loss_id"],
        "images_per_s": sum(h["images_per_s"] for h in hist) / len(hist),
        "images_seen": int(sum(h["images"] for h in hist)),
        "val_curve": [(int(h["epoch"]), 100 * h["val_rank1"], 100 * h["val_mAP"]) for h in evals],
    }
    result = run_dir / "result.json"
    if result.is_file():
        test = json.loads(result.read_text()).get("test_metrics")
        if test:
            row.update(test_R1=100 * test["rank1"], test_mAP=100 * test["mAP"])
    return row


def write_curves(work: Path, names: list[str], out: Path) -> None:
    """Every variant's per-epoch ``metrics.csv`` in one ``curves.csv`` (a ``variant`` column first)."""
    import csv

    rows, fields = [], ["variant"]
    for name in names:
        path = work / name / "metrics.csv"
        if path.is_file():
            for r in csv.DictReader(path.open()):
                rows.append({"variant": name, **r})
                fields += [k for k in r if k not in fields]
    from reidlib.io import atomic_path

    with atomic_path(out / "curves.csv") as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def load_sweep(path: Path) -> dict:
    """Read a sweep file, expand placeholders and check its keys (clear errors name what is missing)."""
    import yaml

    sweep = yaml.safe_load(path.read_text())
    missing = [k for k in ("data", "model", "base", "variants") if k not in (sweep or {})]
    if missing:
        raise ValueError(f"{path}: sweep file lacks {missing}; see the docstring of benchmarks/recipe_sweep.py")
    from reidlib.paths import shared_dir
    from reidlib.pipeline.profile import expand as _expand

    return _expand(sweep, {"shared": str(shared_dir()), "repo": str(REPO)})


def _fmt(row: dict, key: str) -> str:
    value = row.get(key)
    return "" if value is None else f"{value:.1f}" if isinstance(value, float) else str(value)


def write_report(rows: list[dict], sweep: dict, out: Path, command: str, env: dict) -> None:
    """sweep.md (a table sorted by validation mAP) and sweep.json, each written to a temp file then renamed."""
    out.mkdir(parents=True, exist_ok=True)
    cols = ["variant", "epochs", "planned", "best_epoch", "val_R1", "val_mAP", "last_val_R1", "test_R1", "test_mAP",
            "train_acc_last", "loss_id_last", "images_per_s", "wall_s"]
    cols = [c for c in cols if any(c in r for r in rows)]
    lines = [f"# Recipe sweep: {sweep.get('title', out.name)}", "", sweep.get("description", "").strip(), "",
             f"Command: `{command}`", "",
             f"Model `{sweep['model']}`, init `{sweep.get('pretrained') or 'random'}`; base recipe: "
             f"`{json.dumps(sweep['base'])}`.", "",
             "Validation = identities held out of the training split (model selection); numbers in %.", "",
             "| " + " | ".join(cols) + " | override |", "|" + "---|" * (len(cols) + 1)]
    for r in sorted(rows, key=lambda r: -(r.get("val_mAP") or -1)):
        if "error" in r:
            lines.append(f"| {r['variant']} | failed: {r['error']} |")
            continue
        lines.append("| " + " | ".join(_fmt(r, c) for c in cols) + f" | `{json.dumps(r['override'])}` |")
    if env.get("note"):
        lines += ["", env["note"]]
    torch_version = f"; torch {env['torch']}" if env.get("torch") else ""
    lines += ["", f"Hardware: {env['hardware']}{torch_version}; {env['jobs']} variants at a time, "
              f"{env['threads']} thread(s) each, so images/s are per concurrent run."]
    from reidlib.io import write_atomic
    from reidlib.pipeline import portable

    for name, text in (("sweep.md", "\n".join(lines) + "\n"),
                       ("sweep.json", json.dumps({"sweep": sweep, "rows": rows, "env": env}, indent=1))):
        text = portable(text.replace(str(REPO) + "/", ""))
        write_atomic(out / name, text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep", type=Path)
    ap.add_argument("--out", type=Path, required=True, help="folder for sweep.md / sweep.json")
    ap.add_argument("--work", type=Path, default=None, help="run folders (checkpoints); default work/sweeps/<name>")
    ap.add_argument("--jobs", type=int, default=1, help="variants trained at once")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per variant")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--only", nargs="*", default=None, help="run just these variants")
    ap.add_argument("--collect", action="store_true",
                    help="train nothing: rebuild the report from the run folders under --work (a stopped sweep)")
    ap.add_argument("--hardware", default=None, help="with --collect: the machine the runs used (default: this one)")
    ap.add_argument("--note", default="", help="a line added under the table (e.g. where and how it ran)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="force a key in every variant (YAML value, wins over overrides), e.g. epochs=1 for a dry run")
    args = ap.parse_args(argv)

    import torch
    import yaml

    from reidlib.runtime import cpu_name, resolve_device

    sweep = load_sweep(args.sweep)
    forced = {}
    for item in args.set:
        key, _, value = item.partition("=")
        forced[key] = yaml.safe_load(value)
    sweep["base"].update(forced)
    variants = {k: dict(v or {}, **forced) for k, v in sweep["variants"].items() if not args.only or k in args.only}
    unknown = set(args.only or []) - set(sweep["variants"])
    if unknown:
        raise SystemExit(f"unknown variant(s) {sorted(unknown)}; the sweep has {sorted(sweep['variants'])}")
    device = str(resolve_device(args.device))
    work = args.work or REPO / "work" / "sweeps" / args.out.name
    specs = {name: {"data": sweep["data"], "base": sweep["base"], "override": over,
                    "model": over.get("model", sweep["model"]),
                    "pretrained": over.get("pretrained", sweep.get("pretrained"))} for name, over in variants.items()}
    hardware = (torch.cuda.get_device_name(0) if device.startswith("cuda")
                else f"{cpu_name()} ({os.cpu_count()} cores)")
    env = {"hardware": args.hardware or hardware, "device": device,
           "torch": None if args.hardware else torch.__version__, "jobs": args.jobs,
           "threads": args.threads}
    command = "HF_HUB_OFFLINE=1 .venv/bin/python " + shlex.join(
        [str(Path(sys.argv[0]).resolve().relative_to(REPO)) if Path(sys.argv[0]).exists() else sys.argv[0]]
        + [str(a) for a in (argv if argv is not None else sys.argv[1:])])
    rows: list[dict] = []
    if args.collect:
        for name, spec in specs.items():
            row = collect_variant(name, spec, Path(work) / name)
            rows.append(row or {"variant": name, "error": "no metrics.csv: never started"})
        env["note"] = args.note
        write_report(rows, sweep, args.out, command, env)
        write_curves(Path(work), list(specs), args.out)
        return 0
    # non-daemonic workers (DataLoader workers need children), a fresh interpreter per variant
    with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn"), max_tasks_per_child=1) as pool:
        pending = {pool.submit(run_variant, name, spec, str(work), args.threads, device): name
                   for name, spec in specs.items()}
        for job in as_completed(pending):
            name = pending[job]
            try:
                rows.append(job.result())
            except Exception as exc:  # one broken variant must not lose the others' rows
                rows.append({"variant": name, "error": f"{type(exc).__name__}: {exc}"})
            print(json.dumps(rows[-1])[:400], flush=True)
            write_report(rows, sweep, args.out, command, env)
    write_curves(Path(work), list(specs), args.out)
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
