"""The report stage (``40_report``): the study's tables and figures gathered from every run's ``metrics.json``.

Kept apart from :mod:`reidlib.study` so that editing how results are *presented* never makes a training run
stale: the pipeline's input hash of the stages before the report leaves this module out.
All accuracies are percentages (0-100).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from reidlib.plots import save_figure
from reidlib.study import _as_eval, pivot_distance_table, read_metrics, write_metrics

# Table I of the paper (rank-1 / mAP, %); LaST is zero-shot from Market on LaST's val split (reproduction_notes §0.5).
PAPER_TABLE_I = {
    "BoT ResNet50 (baseline)": {"Market-1501": (89.4, 75.5), "DukeMTMC-reID": (80.4, 66.1), "LaST": (35.0, 6.9)},
    "OSNet x0.25": {"Market-1501": (77.3, 56.3), "DukeMTMC-reID": (69.9, 50.8), "LaST": (23.0, 4.3)},
    "MobileNetV3 siamese (custom)": {"Market-1501": (77.0, 56.3), "DukeMTMC-reID": (51.4, 31.8), "LaST": (25.0, 5.2)},
}
PAPER_MODEL_OF = {"bot_resnet50": "BoT ResNet50 (baseline)", "osnet_x0_25": "OSNet x0.25",
                  "mnv3_siamese": "MobileNetV3 siamese (custom)"}


def load_runs(metrics_files: dict[str, str]) -> dict[str, dict]:
    """Every run's metrics.json that exists, keyed by run id (``stage/name``)."""
    runs = {}
    for run_id, path in metrics_files.items():
        if Path(path).is_file():
            runs[run_id] = read_metrics(path)
    return runs


def _fmt(r1: float, m_ap: float) -> str:
    return f"{r1:.1f} / {m_ap:.1f}"


def table_one(runs: dict) -> pd.DataFrame:
    """Rank-1 / mAP per model (rows) and evaluated dataset (columns), as the paper's Table I."""
    rows: dict[str, dict] = {}
    for run_id, m in runs.items():
        if not run_id.startswith("10_train/"):
            continue
        label = m["model_label"]
        row = rows.setdefault(label, {})
        for key, ev in m["evaluations"].items():
            col = f"{ev['label']}" + (" (zero-shot from " + m["dataset_label"] + ")" if ev["role"] != "test" else "")
            row[col] = _fmt(ev["R1"], ev["mAP"])
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.name = "model"
    return df.reindex(sorted(df.columns), axis=1).fillna("–") if not df.empty else df


def paper_table() -> pd.DataFrame:
    df = pd.DataFrame({m: {d: _fmt(*v) for d, v in per.items()} for m, per in PAPER_TABLE_I.items()}).T
    df.index.name = "model (paper, Table I)"
    return df


def finetune_table(runs: dict) -> pd.DataFrame:
    rows = []
    for run_id, m in runs.items():
        if run_id.startswith("20_finetune/"):
            zero, tuned = m["evaluations"]["zero-shot"], m["evaluations"]["fine-tuned"]
            rows.append({"model": m["model_label"], "source → target": f"{m['source_key']} → {m['dataset_key']}",
                         "zero-shot R1 / mAP": _fmt(zero["R1"], zero["mAP"]),
                         "fine-tuned R1 / mAP": _fmt(tuned["R1"], tuned["mAP"]),
                         "epochs": m["train"].get("epochs_completed")})
    return pd.DataFrame(rows)


def distance_table(runs: dict) -> pd.DataFrame:
    for run_id, m in runs.items():
        if run_id.startswith("30_distance_study/"):
            return pivot_distance_table(pd.DataFrame(m["rows"]))
    return pd.DataFrame()


def complexity_table(runs: dict) -> pd.DataFrame:
    """Parameters and multiply-adds at 256x128 per model, and the throughput its training run measured
    (at that run's input size and on its hardware, see "What every number rests on")."""
    rows = {}
    for run_id, m in runs.items():
        if not run_id.startswith("10_train/") or m["model_label"] in rows:
            continue
        c = m.get("complexity", {})
        test = next(iter(m["evaluations"].values()))
        rows[m["model_label"]] = {
            "params (train, M)": c.get("params_trainable", float("nan")) / 1e6,
            "params (inference, M)": c.get("params_inference", float("nan")) / 1e6,
            "GMACs @256x128": c.get("gmacs", float("nan")),
            "input": "x".join(str(v) for v in m["train"].get("image_size", [])),
            "train img/s": m["train"].get("images_per_s") or float("nan"),
            "inference img/s (flip = 2 passes)": test.get("extract_images_per_s", float("nan")),
        }
    return pd.DataFrame.from_dict(rows, orient="index").round(2)


def report_figures(runs: dict, fig_dir: Path) -> list[Path]:
    """CMC per evaluated dataset with every model on it (Figs 9-13), and the training curves of every run."""
    from reidlib.plots import plot_cmc

    fig_dir = Path(fig_dir)
    by_dataset: dict[str, dict] = {}
    for run_id, m in runs.items():
        if run_id.startswith("10_train/"):
            for ev in m["evaluations"].values():
                tag = f"{ev['label']}" + ("" if ev["role"] == "test" else f" (zero-shot from {m['dataset_label']})")
                by_dataset.setdefault(tag, {})[m["model_label"]] = _as_eval(ev)
        elif run_id.startswith("20_finetune/"):
            ev = m["evaluations"]["fine-tuned"]
            tag = f"{ev['label']} (fine-tuned from {m['source_key']})"
            by_dataset.setdefault(tag, {})[m["model_label"]] = _as_eval(ev)
    written = []
    for tag, curves in sorted(by_dataset.items()):
        fig = plot_cmc(curves, title=f"CMC: models trained for {tag}")
        written.append(save_figure(fig, fig_dir / f"cmc_{_slug(tag)}.png"))
    loss_runs = {rid: m for rid, m in runs.items() if m.get("history")}
    if loss_runs:
        written.append(save_figure(plot_loss_curves(loss_runs), fig_dir / "loss_curves.png"))
    return written


def ranked_list_examples(runs: dict, out_dir: str | Path, num_queries: int = 4, topk: int = 8,
                         metric: str = "euclidean") -> list[Path]:
    """Ranked lists (query, then its top-k gallery images; green border = same identity) for each trained model.

    Uses the test features each 10_train run stored. Write these for synthetic data only: figures made of real
    pedestrians' crops belong outside the repository (the report notebook sends them to the work directory).
    """
    from reidlib.evaluation import FeatureSet, distance
    from reidlib.plots import ranked_lists_for

    written: list[Path] = []
    for run_id, m in sorted(runs.items()):
        feats = m.get("features", {}).get("test") if run_id.startswith("10_train/") else None
        if not feats or not Path(feats["query"]).is_file():
            continue
        qf, gf = FeatureSet.load(feats["query"]), FeatureSet.load(feats["gallery"])
        d = distance(qf.feats, gf.feats, metric=metric, normalize=True)
        written += ranked_lists_for(d, qf, gf, topk=topk, num_queries=num_queries,
                                    out_dir=Path(out_dir) / _slug(run_id.split("/", 1)[1]),
                                    protocol=feats.get("protocol", "market"))
    return written


def plot_loss_curves(runs: dict):
    """Total training loss per epoch for every run, one panel per dataset."""
    import matplotlib.pyplot as plt

    groups: dict[str, list] = {}
    for rid, m in runs.items():
        groups.setdefault(f"{rid.split('/')[0]} · {m['dataset_label']}", []).append(m)
    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 3.5), squeeze=False)
    for ax, (title, ms) in zip(axes[0], sorted(groups.items())):
        for m in ms:
            df = pd.DataFrame(m["history"])
            ax.plot(df["epoch"], df["loss"], marker=".", label=m["model_label"])
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_").lower()


def write_report(runs: dict, out_dir: Path, *, profile: str, description: str, profile_path: str,
                 report: dict | None = None) -> str:
    """Write ``report.md`` (tables + provenance) and the report's ``metrics.json``; return the markdown."""
    from reidlib.pipeline import environment_info
    from reidlib.plots import to_markdown

    out_dir = Path(out_dir)
    t1, ft, dist = table_one(runs), finetune_table(runs), distance_table(runs)
    cx = complexity_table(runs)
    lines = [f"# reidlib study report: profile `{profile}`", "", description.strip(), "",
             f"Regenerate: `./run_all.sh {profile}` (parameters: `{Path(profile_path).name}`).", "",
             "## Table I: rank-1 / mAP (%) of this study", "", to_markdown(t1.reset_index()), "",
             "## The paper's Table I (for comparison; Market-1501, DukeMTMC-reID, LaST val zero-shot)", "",
             to_markdown(paper_table().reset_index()), ""]
    if not ft.empty:
        lines += ["## Fine-tuning (target test split)", "", to_markdown(ft), ""]
    if not dist.empty:
        lines += ["## Distance study: rank-1 / mAP (%) per metric", "", to_markdown(dist.reset_index()), ""]
    if not cx.empty:
        lines += ["## Complexity and measured CPU throughput", "", to_markdown(cx.reset_index(names="model")), ""]
    lines += ["## What every number rests on", ""]
    total_train_s = 0.0
    for rid, m in sorted(runs.items()):
        if rid.startswith(("10_train/", "20_finetune/")):
            tr = m["train"]
            total_train_s += float(tr.get("train_seconds", 0.0) or 0.0)
            lines.append(f"- `{rid}`: {m['model_label']} on {m['dataset_label']}; init {tr.get('init')}; "
                         f"epochs run {tr.get('epochs_completed')} of {tr.get('epochs')}; optimizer {tr.get('optimizer')}; "
                         f"selected on {tr.get('select_on', '-')} (epoch {tr.get('best_epoch', '-')}); "
                         f"input {tr.get('image_size')}; device {tr.get('device')}.")
    env = environment_info()
    lines += ["", f"Total training time: {total_train_s / 60:.1f} min. Hardware: {env['cpu']} "
              f"({env['cpu_count']} cores, torch {env['torch']} with {env['torch_threads']} threads"
              f"{', GPU ' + env['cuda'] if env['cuda'] else ', no GPU'}).", ""]
    for note in (report or {}).get("notes", []):
        lines.append(f"- {note}")
    text = "\n".join(lines) + "\n"
    tmp = out_dir / ".report.md.tmp"
    tmp.write_text(text)
    tmp.replace(out_dir / "report.md")
    write_metrics(out_dir, {"stage": "40_report", "profile": profile, "table_one": t1.reset_index().to_dict("records"),
                            "total_train_minutes": total_train_s / 60, "runs": sorted(runs)})
    return text


