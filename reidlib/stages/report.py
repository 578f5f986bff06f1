"""The report stage (``40_report``): the study's tables and figures gathered from every run's ``metrics.json``.

Only the report notebook imports this module, so editing how results are *presented* never makes a training run
stale (the pipeline hashes the code each stage imports).
All accuracies are percentages (0-100).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .common import read_metrics, show_markdown, write_metrics
from .distance import best_distances, distance_summary, pivot_distance_table, pivot_verification_table
from .findings import (
    MIN_SPREAD,
    NEAR_CHANCE_POINTS,
    at_a_glance,
    failed_runs,
    learning_verdict,
    ranking_paragraph,  # noqa: F401  (part of this module's interface)
)
from .report_figures import figure_caption as _figure_title
from .report_figures import ranked_list_examples, report_figures  # noqa: F401  (the report notebook calls them here)
from .uncertainty import fmt_diff, fmt_interval, fmt_value, has_intervals, paired

# Table I of the paper (rank-1 / mAP, %); LaST is zero-shot from Market on LaST's val split (reproduction_notes §0.5).
PAPER_TABLE_I = {
    "BoT ResNet50 (baseline)": {"Market-1501": (89.4, 75.5), "DukeMTMC-reID": (80.4, 66.1), "LaST": (35.0, 6.9)},
    "OSNet x0.25": {"Market-1501": (77.3, 56.3), "DukeMTMC-reID": (69.9, 50.8), "LaST": (23.0, 4.3)},
    "MobileNetV3 siamese (custom)": {"Market-1501": (77.0, 56.3), "DukeMTMC-reID": (51.4, 31.8), "LaST": (25.0, 5.2)},
}
PAPER_MODEL_OF = {"bot_resnet50": "BoT ResNet50 (baseline)", "osnet_x0_25": "OSNet x0.25",
                  "mnv3_siamese": "MobileNetV3 siamese (custom)"}


PAPER_SETTING = {"init": "ImageNet", "epochs": 120, "input": "256x128", "hardware": "GPU",
                 "losses": "CE + triplet + center", "frozen": ""}


def loss_terms(recipe: dict) -> str:
    """The loss terms a training recipe (``metrics.json`` ``train.recipe``) switched on, e.g. ``"CE + triplet"``."""
    kw = recipe.get("loss_kwargs") or {}
    terms = ["CE"] if float(kw.get("id_weight", 1.0)) > 0 else []
    terms += ["triplet"] if float(kw.get("triplet_weight", 1.0)) > 0 else []
    terms += ["center"] if float(recipe.get("center_weight", 5e-4) or 0) > 0 else []
    return " + ".join(terms)


def load_runs(metrics_files: dict[str, str]) -> dict[str, dict]:
    """Every run's metrics.json that exists, keyed by run id (``stage/name``).

    The pipeline's ``run.json`` beside it (hardware, wall time, commit) is attached as ``m["run_info"]``.
    """
    runs = {}
    for run_id, path in metrics_files.items():
        if Path(path).is_file():
            runs[run_id] = read_metrics(path)
            info = Path(path).with_name("run.json")
            runs[run_id]["run_info"] = json.loads(info.read_text()) if info.is_file() else {}
    return runs


def hardware_of(m: dict) -> str:
    """The machine a run used, from its run.json (e.g. "AMD EPYC (native bf16), 2 cores, 2 threads" or
    "GPU NVIDIA H100").

    "(native bf16)" / "(no native bf16)" appears where run.json recorded it: on a CPU it decides whether
    ``precision: auto`` trained in bf16 autocast or fp32, and it roughly doubles the speed of a training step.
    """
    env = (m.get("run_info") or {}).get("environment") or {}
    if not env:
        return "unknown"
    if env.get("cuda") and str(m.get("train", {}).get("device", "")).startswith("cuda"):
        return f"GPU {env['cuda']}"
    bf16 = env.get("cpu_native_bf16")
    cpu = env.get("cpu", "CPU") + ("" if bf16 is None else " (native bf16)" if bf16 else " (no native bf16)")
    return f"{cpu}, {env.get('cpu_count')} cores, {env.get('torch_threads')} threads"


def chance_rank1(q_pids: np.ndarray, q_cams: np.ndarray, g_pids: np.ndarray, g_cams: np.ndarray,
                 protocol: str = "market") -> float:
    """Expected rank-1 (%) of a random ranking: mean over queries with a positive of positives / ranked items.

    ``protocol="market"`` drops the gallery items sharing the query's pid and camera (junk), as the evaluator
    does; ``"last"`` keeps them as positives.
    """
    values = []
    for pid, cam in zip(q_pids, q_cams):
        same = g_pids == pid
        junk = same & (g_cams == cam) if protocol == "market" else np.zeros_like(same)
        positives = int((same & ~junk).sum())
        if positives:
            values.append(positives / int((~junk).sum()))
    return 100.0 * float(np.mean(values)) if values else float("nan")


def chance_levels(runs: dict) -> dict[str, float]:
    """Random-ranking rank-1 (%) per evaluated dataset label: the records' ``chance_R1`` where they hold it, else
    computed from the test features the training runs stored."""
    from reidlib.evaluation import FeatureSet

    out: dict[str, float] = {}
    for run_id, m in runs.items():
        if not run_id.startswith("10_train/"):
            continue
        for key, ev in m["evaluations"].items():
            if ev.get("chance_R1") is not None:
                out.setdefault(ev["label"], float(ev["chance_R1"]))
                continue
            feats = (m.get("features") or {}).get(key)
            if ev["label"] in out or not feats or not Path(feats["query"]).is_file():
                continue
            q, g = FeatureSet.load(feats["query"]), FeatureSet.load(feats["gallery"])
            out[ev["label"]] = chance_rank1(q.pids, q.camids, g.pids, g.camids, feats.get("protocol", "market"))
    return out


def feature_spread(features: np.ndarray) -> float:
    """Mean distance of L2-normalised embeddings ``features`` (N, D) to their mean (0 to 1 for typical sets).

    0 means collapse, every image mapped to the same direction; a working embedding spreads identities apart.
    """
    f = np.asarray(features, dtype=np.float64)
    f = f / np.clip(np.linalg.norm(f, axis=1, keepdims=True), 1e-12, None)
    return float(np.linalg.norm(f - f.mean(axis=0), axis=1).mean())


def learning_check(runs: dict, chance: dict[str, float]) -> pd.DataFrame:
    """Did each trained run learn? One row per ``10_train`` run that trained at least one epoch.

    Columns: test rank-1 (%) against the chance level of the same split (and their ratio), the last epoch's train
    accuracy (%), the ID loss of the first and last epoch, the last triplet loss next to its margin (a triplet loss
    stuck at the margin with identical features is the collapse) and :func:`feature_spread` of the test gallery
    features (``None`` where the stored features are no longer on disk or the chance level is unknown), then the
    test rank-1's 95 % interval and a ``verdict`` (:func:`reidlib.stages.findings.learning_verdict`: "learned",
    "near chance" or "collapsed").
    """
    from reidlib.evaluation import FeatureSet

    rows = []
    for run_id, m in sorted(runs.items()):
        hist, ev = m.get("history") or [], (m.get("evaluations") or {}).get("test")
        if not run_id.startswith("10_train/") or not hist or ev is None:
            continue
        level = chance.get(ev["label"])
        feats = (m.get("features") or {}).get("test") or {}
        spread = (round(feature_spread(FeatureSet.load(feats["gallery"]).feats.numpy()), 3)
                  if feats.get("gallery") and Path(feats["gallery"]).is_file() else None)
        margin = (m["train"].get("recipe") or {}).get("triplet_margin", "-")
        rows.append({"run": f"`{run_id}`", "model": m["model_label"], "test R1": round(ev["R1"], 2),
                     "chance R1": round(level, 2) if level else None,
                     "R1 / chance": round(ev["R1"] / level, 1) if level else None,
                     "train acc, last epoch": round(100 * hist[-1]["train_acc"], 1),
                     "ID loss, first -> last epoch": f"{hist[0]['loss_id']:.2f} -> {hist[-1]['loss_id']:.2f}",
                     "triplet loss, last epoch (margin)": (f"{hist[-1]['loss_triplet']:.3f} ({margin})"
                                                           if "loss_triplet" in hist[-1] else "not trained"),
                     "feature spread": spread,
                     "test R1 95% CI": fmt_interval((ev.get("ci95") or {}).get("R1")),
                     "verdict": learning_verdict(float(ev["R1"]), level, spread)})
    table = pd.DataFrame(rows).astype(object)
    return table.where(table.notna(), None)  # missing stays None (metrics.json refuses NaN)


def head_to_head(runs: dict, references: list[dict] | None) -> pd.DataFrame:
    """This study's runs against the references that name one of them with ``compare_with: <run id>``.

    The difference columns are this run minus the reference (percentage points); a positive value means ours is
    higher. A reference whose run is missing gets a row saying so.
    """
    rows = []
    for ref in references or []:
        run_id = ref.get("compare_with")
        if not run_id:
            continue
        m = runs.get(run_id)
        ev = None if m is None else (m["evaluations"].get("test") or m["evaluations"].get("fine-tuned"))
        if ev is None:
            rows.append({"this study": f"`{run_id}`", "R1 / mAP": "not run", "reference": ref.get("source", "")})
            continue
        st = _setting(m)
        rows.append({"this study": f"`{run_id}`", "R1 / mAP": _fmt_ev(ev),
                     "training": f"{st['epochs']} epochs, {st['train_min']:.1f} min, {st['hardware']}",
                     "reference": ref.get("source", ""), "reference R1 / mAP": _fmt(ref["R1"], ref["mAP"]),
                     "reference training": f"{ref.get('epochs', '-')} epochs, {ref.get('hardware', '-')}",
                     "difference R1 / mAP": f"{ev['R1'] - ref['R1']:+.1f} / {ev['mAP'] - ref['mAP']:+.1f}"})
    return pd.DataFrame(rows)


def _setting(m: dict) -> dict:
    tr = m.get("train", {})
    init = tr.get("init") or "random"
    init = {"random": "random", "imagenet": "ImageNet"}.get(str(init).lower(), Path(str(init)).stem)
    size = tr.get("image_size") or []
    epochs = tr.get("epochs_completed", tr.get("epochs"))
    minutes = float(tr.get("train_seconds", 0.0) or 0.0) / 60
    recipe = tr.get("recipe") or {}
    return {"init": init, "epochs": epochs, "input": "x".join(str(v) for v in size), "hardware": hardware_of(m),
            "train_min": minutes, "losses": loss_terms(recipe) if recipe else PAPER_SETTING["losses"],
            "frozen": ", ".join(recipe.get("frozen_layers") or [])}


def differences(setting: dict, data: str, reference: dict = PAPER_SETTING, ref_data: str = "Market-1501") -> str:
    """One short line naming which of data, init, epochs, input and hardware differ from the paper's setting
    (the row's own columns give the values), then the loss terms and frozen layers where they differ, plus the
    minutes of training when known."""
    differ = ["data"] if data != ref_data else []
    differ += [key for key in ("init", "epochs", "input", "hardware") if str(setting.get(key)) != str(reference[key])]
    line = ("differs in " + ", ".join(differ)) if differ else "same setting"
    if setting.get("losses", reference["losses"]) != reference["losses"]:
        line += f"; losses: {setting['losses']}"
    if setting.get("frozen"):
        line += f"; frozen: {setting['frozen']}"
    if setting.get("train_min"):
        line += f"; {setting['train_min']:.1f} min of training"
    return line


def comparison_table(runs: dict, references: list[dict] | None = None, paper: bool = True) -> pd.DataFrame:
    """The paper's Table I (``paper``), this study's test rows and published reference rows side by side.

    Column ``R1 / mAP (%) [95% CI]``: this study's rows with their intervals (``n/a`` for records made before
    intervals were added); the paper's and the references' rows as published (no interval).
    Each row says where it comes from (this study's run id in ``run``) and what differs from the paper's setting.
    ``references``: dicts with ``system, model, data, init, epochs, input, hardware, R1, mAP, source`` and
    optionally ``differs``, a note appended to the generated line (typed in the profile's ``report.references``;
    numbers cited from their source).
    """
    rows = []
    for model, per in (PAPER_TABLE_I if paper else {}).items():
        for data, (r1, m_ap) in per.items():
            rows.append({"source": "paper, Table I", "model": model, "data": data,
                         **{k: PAPER_SETTING[k] for k in ("init", "epochs", "input", "hardware")},
                         "R1 / mAP (%) [95% CI]": _fmt(r1, m_ap), "what differs from the paper": "the reference"})
    for run_id, m in sorted(runs.items()):
        if not run_id.startswith(("10_train/", "20_finetune/")):
            continue
        ev = m["evaluations"].get("test") or m["evaluations"].get("fine-tuned")
        if ev is None:
            continue
        st = _setting(m)
        data = ev["label"] + (f" (fine-tuned from {m['source_key']})" if run_id.startswith("20_finetune/") else "")
        rows.append({"source": "this study", "model": m["model_label"], "data": data,
                     **{k: st[k] for k in ("init", "epochs", "input", "hardware")},
                     "R1 / mAP (%) [95% CI]": _fmt_ev(ev), "what differs from the paper": differences(st, data),
                     "run": f"`{run_id}`"})
    for ref in references or []:
        rows.append({"source": ref.get("source", ""), "model": ref.get("model", ""), "data": ref.get("data", ""),
                     "init": ref.get("init", ""), "epochs": ref.get("epochs", ""), "input": ref.get("input", ""),
                     "hardware": ref.get("hardware", ""), "R1 / mAP (%) [95% CI]": _fmt(ref["R1"], ref["mAP"]),
                     "what differs from the paper": differences(
                         {k: ref.get(k) for k in ("init", "epochs", "input", "hardware")}, ref.get("data", ""))
                     + (f"; {ref['differs']}" if ref.get("differs") else "")})
    return pd.DataFrame(rows)


def _fmt(r1: float, m_ap: float) -> str:
    return f"{r1:.1f} / {m_ap:.1f}"


def _fmt_ev(ev: dict) -> str:
    """``"R1 [lo, hi] / mAP [lo, hi]"`` of a record (``n/a`` intervals for records made before intervals)."""
    return f"{fmt_value(ev, 'R1')} / {fmt_value(ev, 'mAP')}"


def table_one(runs: dict) -> pd.DataFrame:
    """Rank-1 / mAP (%) with 95 % intervals per model (rows) and evaluated dataset (columns), as the paper's
    Table I."""
    rows: dict[str, dict] = {}
    for run_id, m in runs.items():
        if not run_id.startswith("10_train/"):
            continue
        label = m["model_label"]
        row = rows.setdefault(label, {})
        for ev in m["evaluations"].values():
            col = f"{ev['label']}" + (" (zero-shot from " + m["dataset_label"] + ")" if ev["role"] != "test" else "")
            row[col] = _fmt_ev(ev)
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.name = "model"
    return df.reindex(sorted(df.columns), axis=1).fillna("–") if not df.empty else df


def paper_table() -> pd.DataFrame:
    df = pd.DataFrame({m: {d: _fmt(*v) for d, v in per.items()} for m, per in PAPER_TABLE_I.items()}).T
    df.index.name = "model (paper, Table I)"
    return df


def finetune_table(runs: dict) -> pd.DataFrame:
    """Zero-shot and fine-tuned rank-1 / mAP (%) [95 % CI] on the target's test split, and the fine-tuning gain in
    mAP points with its paired interval (same queries)."""
    rows = []
    for run_id, m in runs.items():
        if run_id.startswith("20_finetune/"):
            zero, tuned = m["evaluations"]["zero-shot"], m["evaluations"]["fine-tuned"]
            rows.append({"model": m["model_label"], "source → target": f"{m['source_key']} → {m['dataset_key']}",
                         "zero-shot R1 / mAP": _fmt_ev(zero),
                         "fine-tuned R1 / mAP": _fmt_ev(tuned),
                         "mAP gain (paired 95% CI)": fmt_diff(paired(tuned, zero, "mAP")),
                         "epochs": m["train"].get("epochs_completed")})
    return pd.DataFrame(rows)


def distance_table(runs: dict) -> pd.DataFrame:
    for run_id, m in runs.items():
        if run_id.startswith("30_distance_study/"):
            return pivot_distance_table(pd.DataFrame(m["rows"]))  # one row per model x dataset x distance
    return pd.DataFrame()


def _distance_run(runs: dict) -> dict:
    return next((m for run_id, m in runs.items() if run_id.startswith("30_distance_study/")), {})


def verification_tables(runs: dict) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(AUC / EER / TAR per distance, learned pair head vs cosine threshold, best distance for ranking and for
    verification) from the distance study's metrics.json; empty frames when it did not run verification."""
    m = _distance_run(runs)
    ver, head = pd.DataFrame(m.get("verification") or []), pd.DataFrame(m.get("pair_head") or [])
    if ver.empty:
        return ver, head, pd.DataFrame()
    head_view = head.set_index(["model", "dataset", "method"])[["AUC", "EER", "TAR@FAR=1e-2", "TAR@FAR=1e-3",
                                                                 "held-out pairs"]] if not head.empty else head
    paired_rows = pd.DataFrame(m["paired"]) if m.get("paired") else None
    return pivot_verification_table(ver), head_view, best_distances(pd.DataFrame(m.get("rows") or []), ver,
                                                                    paired_rows)


def pair_head_verdict(head: pd.DataFrame) -> str:
    """One sentence: on how many models the learned head beats the cosine threshold (AUC), and by how much."""
    if head.empty:
        return ""
    auc = head["AUC"].unstack("method")
    if not {"cosine threshold", "learned pair head"} <= set(auc.columns):
        return ""
    diff = auc["learned pair head"] - auc["cosine threshold"]
    wins = int((diff > 0).sum())
    return (f"The learned pair head beats the cosine threshold on {wins} of {len(diff)} models "
            f"(AUC difference {diff.min():+.1f} to {diff.max():+.1f} points on the held-out identities' pairs).")


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


def _test_row(m: dict) -> tuple[float, float]:
    ev = m["evaluations"]["test"]
    return float(ev["R1"]), float(ev["mAP"])


def variant_table(runs: dict, variants: list[dict]) -> pd.DataFrame:
    """What each fix is worth: a fixed run beside its paper-code variant (``variants``: ``{fixed, variant,
    change}`` with run ids), rank-1 / mAP (%) on the test split, how each was selected, and fixed minus variant
    in points, also with its paired 95 % interval (same queries). A variant selected on the test split is
    optimistic, so its difference understates the fix."""
    rows = []
    for v in variants:
        fixed, var = runs.get(v["fixed"]), runs.get(v["variant"])
        if fixed is None or var is None:
            continue
        (fr1, fmap), (vr1, vmap) = _test_row(fixed), _test_row(var)
        rows.append({"change (variant = paper code)": v.get("change", ""), "fixed": fixed["model_label"],
                     "fixed R1 / mAP": _fmt_ev(fixed["evaluations"]["test"]),
                     "fixed selected on": fixed["train"].get("select_on", "-"),
                     "variant": var["model_label"], "variant R1 / mAP": _fmt_ev(var["evaluations"]["test"]),
                     "variant selected on": var["train"].get("select_on", "-"),
                     "R1 gain (points)": round(fr1 - vr1, 1), "mAP gain (points)": round(fmap - vmap, 1),
                     "R1 gain, paired 95% CI": fmt_diff(paired(fixed["evaluations"]["test"],
                                                               var["evaluations"]["test"], "R1")),
                     "mAP gain, paired 95% CI": fmt_diff(paired(fixed["evaluations"]["test"],
                                                                var["evaluations"]["test"], "mAP"))})
    return pd.DataFrame(rows)


def interval_note(runs: dict, profile: str) -> str:
    """One line: what the intervals are, and (once) that records without them show n/a and how to regenerate."""
    note = ("[95% CI]: a percentile bootstrap over query identities (1,000 replicates; all queries of a drawn identity "
            "together); it covers which people were sampled, not seed or CPU-kind variation.")
    records = [ev for rid, m in runs.items() if rid.startswith(("10_train/", "20_finetune/"))
               for ev in (m.get("evaluations") or {}).values()]
    old = sum(not has_intervals(ev) for ev in records)
    if old:
        note += (f" {old} of the {len(records)} evaluations were recorded before intervals were added and show n/a: "
                 f"`./run_all.sh {profile}` regenerates them with the current code.")
    return note


def _learned_view(learned: pd.DataFrame) -> pd.DataFrame:
    """The learning-check table as printed: rank-1 and its ratio to chance at one decimal, chance at two."""
    view = learned.copy()
    for col, fmt in (("test R1", "{:.1f}"), ("chance R1", "{:.2f}"), ("R1 / chance", "{:.1f}"),
                     ("train acc, last epoch", "{:.1f}"), ("feature spread", "{:.2f}")):
        if col in view:
            view[col] = [fmt.format(v) if v is not None else "" for v in view[col]]
    return view


def write_report(runs: dict, out_dir: Path, *, profile: str, description: str, profile_path: str,
                 report: dict | None = None, stale_runs: list[str] | None = None,
                 figures: list[Path] | None = None) -> str:
    """Write ``report.md`` (tables + provenance) and the report's ``metrics.json``; return the markdown.

    ``report`` is the profile's ``report`` block: ``references`` (published rows for the side-by-side table,
    see :func:`comparison_table`) and ``notes`` (lines printed under "Notes"). ``stale_runs``: ids of runs whose
    inputs changed after they ran (the pipeline's list); the report warns about them at the top and marks them
    in "What every number rests on". ``figures``: image files inside ``out_dir`` linked under "Figures".
    """
    from reidlib.io import write_atomic
    from reidlib.plots import to_markdown

    report = report or {}
    out_dir = Path(out_dir)
    t1, ft, dist = table_one(runs), finetune_table(runs), distance_table(runs)
    cx, chance = complexity_table(runs), chance_levels(runs)
    comparison = comparison_table(runs)
    references = comparison_table({}, report.get("references"), paper=False)
    versus, learned = head_to_head(runs, report.get("references")), learning_check(runs, chance)
    failed = failed_runs(learned)
    stale = sorted(set(stale_runs or []) & set(runs))
    glance = at_a_glance(runs, report, failed, profile, stale)
    lines = [f"# reidlib study report: profile `{profile}`", "", "## At a glance", "", glance, "",
             description.strip(), "",
             (f"Regenerate: `./run_all.sh {profile}` (parameters: `params/{Path(profile_path).name}`; the executed "
              "notebook, parameters and `run.json` of every number sit in the stage folders beside this report)."), "",
             "## Table I: rank-1 / mAP (%) of this study", "", to_markdown(t1.reset_index()), "",
             interval_note(runs, profile), ""]
    if stale:
        warning = (f"**{len(stale)} of the {len(runs)} runs gathered here are stale**: their code, parameters or "
                   f"upstream results changed after they ran, so `./run_all.sh {profile}` would now produce other "
                   "numbers for them (it reruns exactly these): " + ", ".join(f"`{r}`" for r in stale) + ".")
        lines[lines.index("## Table I: rank-1 / mAP (%) of this study"):
              lines.index("## Table I: rank-1 / mAP (%) of this study")] = [warning, ""]
    if chance:
        levels = "; ".join(f"{k} {v:.2f}" for k, v in sorted(chance.items()))
        lines += [f"Chance level, the expected rank-1 (%) of a random ranking under the same protocol: {levels}.", ""]
    lines += ["## Side by side: the paper's Table I and this study", "",
              ("Rank-1 / mAP (%) on each row's test split (this study's rows with 95 % intervals; the paper gives "
               "none). The column \"what differs\" says what differs from the paper's setting."), "",
              to_markdown(comparison), ""]
    if not references.empty:
        lines += ["## Published reference systems", "",
                  ("Numbers cited from the named source, not rerun here (no intervals published)."), "",
                  to_markdown(references.drop(columns=["run"], errors="ignore")), ""]
    if not versus.empty:
        lines += ["## Against the references on the same split", "",
                  ("This study's row next to the reference run that names it (difference = ours minus theirs, "
                   "percentage points)."), "", to_markdown(versus), ""]
    if not learned.empty:
        lines += ["## Did each model learn?", "",
                  ("Test rank-1 against the chance level of the same split, and the signs of training: train "
                   "accuracy, ID loss, the triplet loss next to its margin (stuck at the margin = collapse) and the "
                   "spread of the test gallery features (0 = every image mapped to the same feature). Verdict: "
                   f"\"near chance\" where test rank-1 is less than {NEAR_CHANCE_POINTS:g} points above chance, "
                   f"\"collapsed\" where the spread is below {MIN_SPREAD:g}; such a run is left out of every "
                   "ranking claim."), "", to_markdown(_learned_view(learned)), ""]
    if report.get("ranking"):
        lines += ["## Does the paper's ranking hold?", "", ranking_paragraph(runs, report["ranking"], failed), ""]
    variants = variant_table(runs, report.get("variants") or [])
    if not variants.empty:
        lines += ["## What each fix of the paper's code is worth", "",
                  ("Each fixed run beside the same model and recipe with the paper code's behaviour switched back "
                   "on (test split, %; gain = fixed minus paper code, with its paired 95 % interval over the same "
                   "queries). A run selected on the test split reports an optimistic number, so its gain "
                   "understates the fix."), "", to_markdown(variants), ""]
    if not ft.empty:
        lines += ["## Fine-tuning (target test split)", "",
                  "Rank-1 / mAP (%) [95 % CI]; the gain is fine-tuned minus zero-shot on the same queries (paired).",
                  "", to_markdown(ft), ""]
    if not dist.empty:
        paired_rows = pd.DataFrame(_distance_run(runs).get("paired") or [])
        lines += ["## Distance study: rank-1 / mAP (%) [95% CI] per distance", "",
                  distance_summary(paired_rows), "", to_markdown(dist.reset_index()), ""]
    ver, head, best = verification_tables(runs)
    if not ver.empty:
        lines += ["## Verification: same person or not? AUC, EER, TAR@FAR=1e-2, TAR@FAR=1e-3 (%) per distance", "",
                  ("Pairs from each test split's query and gallery images: every cross-camera pair of one identity "
                   "is genuine, impostors are all pairs of different identities or a seeded sample of them; scores "
                   "are negated distances of L2-normalised features (ROC curves under Figures)."), "",
                  to_markdown(ver.reset_index()), ""]
    if not head.empty:
        lines += ["## A learned verification head against a cosine threshold (%)", "",
                  ("The head (|f1 - f2|, f1 * f2 -> MLP -> logit) trains with binary cross-entropy on P×K batches of "
                   "half the test identities' stored features; both are scored on the other half's pairs. "
                   + pair_head_verdict(head)), "", to_markdown(head.reset_index()), ""]
    if not best.empty:
        lines += ["## Which distance is best, for ranking and for verification", "",
                  to_markdown(best.reset_index()), ""]
    if not cx.empty:
        lines += ["## Complexity and measured throughput", "", to_markdown(cx.reset_index(names="model")), ""]
    if figures:
        lines += ["## Figures", ""]
        for path in figures:
            rel = Path(path).relative_to(out_dir).as_posix()
            lines += [f"![{_figure_title(Path(path))}]({rel})", ""]
    if report.get("notes"):
        lines += ["## Notes", ""] + [f"- {note.strip()}" for note in report["notes"]] + [""]
    lines += ["## What every number rests on", ""]
    total_train_s, hardware = 0.0, set()
    for rid, m in sorted(runs.items()):
        if not rid.startswith(("10_train/", "20_finetune/")):
            continue
        tr, st, info = m["train"], _setting(m), m.get("run_info") or {}
        total_train_s += float(tr.get("train_seconds", 0.0) or 0.0)
        hardware.add(st["hardware"])
        lines.append(f"- `{rid}`: {m['model_label']} on {m['dataset_label']}; init {st['init']}; "
                     f"epochs run {tr.get('epochs_completed')} of {tr.get('epochs')} ({st['train_min']:.1f} min of "
                     f"training, {float(info.get('wall_seconds', 0.0)) / 60:.1f} min for the whole notebook); "
                     f"optimizer {tr.get('optimizer')}; selected on {tr.get('select_on', '-')} "
                     f"(epoch {tr.get('best_epoch', '-')}); input {st['input']}; {st['hardware']}; "
                     f"commit {info.get('git_commit', 'unknown')[:12]}"
                     + (f"; **stopped early** ({tr['stopped_early']}): fewer epochs than planned ran, so this "
                        "row is not the profile's recipe" if tr.get("stopped_early") else "")
                     + ("; **stale**: its inputs changed after it ran." if rid in stale else "."))
    lines += ["", f"Total training time: {total_train_s / 60:.1f} min on "
              + ("; ".join(sorted(hardware)) or "no training") + ".", ""]
    text = "\n".join(lines) + "\n"
    write_atomic(out_dir / "report.md", text)
    write_metrics(out_dir, {"stage": "40_report", "profile": profile, "table_one": t1.reset_index().to_dict("records"),
                            "comparison": comparison.to_dict("records"), "chance_rank1": chance,
                            "head_to_head": versus.to_dict("records"), "learning_check": learned.to_dict("records"),
                            "variants": variants.to_dict("records"), "at_a_glance": glance,
                            "excluded_from_ranking": failed,
                            "stale_runs": stale,
                            "total_train_minutes": total_train_s / 60, "hardware": sorted(hardware),
                            "runs": sorted(runs)})
    return text


_IMAGE_LINE = re.compile(r"^!\[(?P<alt>[^\]]*)\]\((?P<src>[^)]+)\)\s*$")


def show_report(text: str, base_dir: str | Path) -> None:
    """Render a report's markdown inline, its linked figures embedded as images (so they show on any viewer).

    Markdown between figures is rendered as Markdown; each line ``![title](relative.png)`` becomes the image
    itself. Outside a notebook the text is printed.
    """
    from .common import in_notebook

    if not in_notebook():
        print(text)
        return
    from IPython.display import Image, display

    chunk: list[str] = []
    for line in text.splitlines():
        match = _IMAGE_LINE.match(line)
        if match and (Path(base_dir) / match["src"]).is_file():
            if chunk:
                show_markdown("\n".join(chunk))
                chunk = []
            show_markdown(f"*{match['alt']}*")
            display(Image(filename=str(Path(base_dir) / match["src"])))
        else:
            chunk.append(line)
    if chunk:
        show_markdown("\n".join(chunk))


def show_ranked_lists(paths: list[Path], inline: bool = True, per_run: int = 1) -> None:
    """Show the first ``per_run`` ranked-list images of each run inline (or, with ``inline=False``, only say where
    they were written: figures of real pedestrians stay out of the executed notebook)."""
    from .common import in_notebook

    by_run: dict[Path, list[Path]] = {}
    for path in paths:
        by_run.setdefault(Path(path).parent, []).append(Path(path))
    if not inline or not in_notebook():
        where = sorted({str(p.parent) for p in by_run}) or ["(none)"]
        print(f"{len(paths)} ranked lists written under {Path(where[0]).parent if by_run else where[0]}")
        return
    from IPython.display import Image, display

    for folder, files in sorted(by_run.items()):
        show_markdown(f"*{folder.name}*")
        for path in sorted(files)[:per_run]:
            display(Image(filename=str(path)))
