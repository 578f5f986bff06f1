"""The report's tables, each a DataFrame built from the run records (:mod:`.records`, read by :mod:`.report_runs`)
and the profile's published references (resolved entries of ``params/_references.yaml``, see
:mod:`reidlib.pipeline.references`).

Accuracies are percentages (0-100), differences percentage points; this study's numbers carry their 95 %
intervals (:mod:`.uncertainty`), published ones are printed as published.
"""
from __future__ import annotations

import pandas as pd

from .distance import best_distances, pivot_distance_table, pivot_verification_table
from .ids import DISTANCE_STAGE, FINETUNE_STAGE, TRAIN_STAGE, in_stage
from .records import Runs
from .report_runs import dataset_labels, distance_run, minutes_text, or_dash, run_setting
from .uncertainty import fmt_diff, fmt_pair

SETTING_COLUMNS = ("init", "epochs", "input", "hardware")
DIFFERS = "what differs from the paper"


def differences(setting: dict, data: str, paper_setting: dict, main_data: str) -> str:
    """One short line naming which of data, init, epochs, input and hardware differ from the paper's setting
    (``paper_setting``, trained on ``main_data``; the row's own columns give the values), then the loss terms and
    frozen layers where they differ, plus the minutes of training when known."""
    differ = ["data"] if data != main_data else []
    differ += [key for key in SETTING_COLUMNS if str(setting.get(key)) != str(paper_setting[key])]
    line = ("differs in " + ", ".join(differ)) if differ else "same setting"
    if setting.get("losses") and setting["losses"] != paper_setting["losses"]:
        line += f"; losses: {setting['losses']}"
    if setting.get("frozen"):
        line += f"; frozen: {setting['frozen']}"
    if setting.get("train_min"):
        line += f"; {minutes_text(setting)} of training"
    return line


def paper_rows(paper: dict) -> list[dict]:
    """The rows of a published table entry (``reproduces``): one per model and dataset, as published."""
    short = paper.get("short", "paper, Table I")
    return [{"source": short, "model": model["label"], "data": data,
             **{k: paper["setting"][k] for k in SETTING_COLUMNS},
             "R1 / mAP (%) [95% CI]": fmt_pair(r1, m_ap), DIFFERS: "the reference"}
            for model in paper["models"].values() for data, (r1, m_ap) in model["results"].items()]


def comparison_table(runs: Runs, references: list[dict] | None = None, paper: dict | None = None) -> pd.DataFrame:
    """The paper's table (``paper``, a resolved table entry), this study's test rows and published reference rows
    (``references``, resolved row entries) side by side.

    Column ``R1 / mAP (%) [95% CI]``: this study's rows with their intervals (``n/a`` for records made before
    intervals were added); the paper's and the references' rows as published (no interval). Each row says where
    it comes from (this study's run id in ``run``) and, with a ``paper``, what differs from the paper's setting
    (a reference's own ``differs`` note appended).
    """
    rows = paper_rows(paper) if paper else []
    labels = dataset_labels(runs)
    for run, m in sorted(runs.items()):
        ev = m.result_eval if in_stage(run, TRAIN_STAGE, FINETUNE_STAGE) else None
        if ev is None:
            continue
        st, data = run_setting(m), ev.label
        if in_stage(run, FINETUNE_STAGE):
            source = labels.get(m.source_key, m.source_key)
            data, st = f"{data} (fine-tuned from {source})", {**st, "init": f"fine-tuned from {source}"}
        rows.append({"source": "this study", "model": m.model_label, "data": data,
                     **{k: st[k] for k in SETTING_COLUMNS}, "R1 / mAP (%) [95% CI]": ev.fmt_record(),
                     **({DIFFERS: differences(st, data, paper["setting"], paper["main_data"])} if paper else {}),
                     "run": f"`{run}`"})
    return pd.DataFrame(rows + reference_rows(references, paper))


def reference_rows(references: list[dict] | None, paper: dict | None = None) -> list[dict]:
    """Published reference rows (resolved row entries) as printed, each with what differs from ``paper``'s setting
    (when given) and its own ``differs`` note appended."""
    rows = []
    for ref in references or []:
        row = {"source": ref.get("source", ""), "model": ref.get("model", ""), "data": ref.get("data", ""),
               **{k: ref.get(k, "") for k in SETTING_COLUMNS}, "R1 / mAP (%) [95% CI]": fmt_pair(ref["R1"], ref["mAP"])}
        if paper:
            row[DIFFERS] = (differences({k: ref.get(k) for k in SETTING_COLUMNS}, ref.get("data", ""),
                                        paper["setting"], paper["main_data"])
                            + (f"; {ref['differs']}" if ref.get("differs") else ""))
        rows.append(row)
    return rows


def head_to_head(runs: Runs, references: list[dict] | None) -> pd.DataFrame:
    """This study's runs against the references that name one of them with ``compare_with: <run id>``.

    The difference columns are this run minus the reference (percentage points); a positive value means ours is
    higher. A reference whose run is missing gets a row saying so.
    """
    rows = []
    for ref in references or []:
        run = ref.get("compare_with")
        if not run:
            continue
        m = runs.get(run)
        ev = None if m is None else m.result_eval
        if ev is None:
            rows.append({"this study": f"`{run}`", "R1 / mAP": "not run", "reference": ref.get("source", "")})
            continue
        st = run_setting(m)
        rows.append({"this study": f"`{run}`", "R1 / mAP": ev.fmt_record(),
                     "training": f"{st['epochs']} epochs, {minutes_text(st)}, {st['hardware']}",
                     "reference": ref.get("source", ""), "reference R1 / mAP": fmt_pair(ref["R1"], ref["mAP"]),
                     "reference training": f"{ref.get('epochs', '-')} epochs, {ref.get('hardware', '-')}",
                     "difference R1 / mAP": f"{ev.R1 - ref['R1']:+.1f} / {ev.mAP - ref['mAP']:+.1f}"})
    return pd.DataFrame(rows)


def table_one(runs: Runs) -> pd.DataFrame:
    """Rank-1 / mAP (%) with 95 % intervals per model (rows) and evaluated dataset (columns), as the paper's
    Table I."""
    rows: dict[str, dict] = {}
    for run, m in runs.items():
        if not in_stage(run, TRAIN_STAGE):
            continue
        row = rows.setdefault(m.model_label, {})
        for ev in m.evaluations.values():
            col = f"{ev.label}" + (" (zero-shot from " + m.dataset_label + ")" if ev.role != "test" else "")
            row[col] = ev.fmt_record()
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.name = "model"
    return df.reindex(sorted(df.columns), axis=1).fillna("–") if not df.empty else df


def finetune_table(runs: Runs) -> pd.DataFrame:
    """Zero-shot and fine-tuned rank-1 / mAP (%) [95 % CI] on the target's test split, and the fine-tuning gain in
    mAP points with its paired interval (same queries)."""
    rows, labels = [], dataset_labels(runs)
    for run, m in runs.items():
        if in_stage(run, FINETUNE_STAGE):
            zero, tuned = m.require_eval("zero-shot"), m.require_eval("fine-tuned")
            pair = f"{labels.get(m.source_key, m.source_key)} → {m.dataset_label or m.dataset_key}"
            rows.append({"model": m.model_label, "source → target": pair,
                         "zero-shot R1 / mAP": zero.fmt_record(), "fine-tuned R1 / mAP": tuned.fmt_record(),
                         "mAP gain (paired 95% CI)": fmt_diff(tuned.paired(zero, "mAP")),
                         "epochs": m.train.epochs_completed})
    return pd.DataFrame(rows)


def distance_table(runs: Runs) -> pd.DataFrame:
    """Rank-1 / mAP per model x dataset x distance from the distance study (empty where it did not run)."""
    for run, m in runs.items():
        if in_stage(run, DISTANCE_STAGE):
            return pivot_distance_table(m.rows_frame())
    return pd.DataFrame()


def verification_tables(runs: Runs) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(AUC / EER / TAR per distance, learned pair head vs cosine threshold, best distance for ranking and for
    verification) from the distance study's metrics.json; empty frames when it did not run verification."""
    m = distance_run(runs)
    ver, head = m.verification_frame(), m.pair_head_frame()
    if ver.empty:
        return ver, head, pd.DataFrame()
    head_view = head.set_index(["model", "dataset", "method"])[["AUC", "EER", "TAR@FAR=1e-2", "TAR@FAR=1e-3",
                                                                 "held-out pairs"]] if not head.empty else head
    paired_rows = m.paired_frame() if m.paired else None
    return pivot_verification_table(ver), head_view, best_distances(m.rows_frame(), ver, paired_rows)


def complexity_table(runs: Runs) -> pd.DataFrame:
    """Parameters and multiply-adds at 256x128 per model, and the throughput its training run measured
    (at that run's input size and on its hardware, see "What every number rests on")."""
    rows = {}
    for run, m in runs.items():
        if not in_stage(run, TRAIN_STAGE) or m.model_label in rows:
            continue
        c, first = m.complexity, next(iter(m.evaluations.values()))
        rows[m.model_label] = {
            "params (train, M)": _or_nan(c.params_trainable) / 1e6,
            "params (inference, M)": _or_nan(c.params_inference) / 1e6,
            "GMACs @256x128": _or_nan(c.gmacs),
            "input": "x".join(str(v) for v in m.train.image_size or ()),
            "train img/s": m.train.images_per_s or float("nan"),
            "inference img/s (flip = 2 passes)": _or_nan(first.extract_images_per_s),
        }
    return pd.DataFrame.from_dict(rows, orient="index").round(2)


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value


def variant_table(runs: Runs, variants: list[dict]) -> pd.DataFrame:
    """What each fix is worth: a fixed run beside its paper-code variant (``variants``: ``{fixed, variant,
    change}`` with run ids; a run of a profile variant, ``<run>@<variant>``, is named with its variant), rank-1 /
    mAP (%) on the test split, how each was selected, and fixed minus variant in points, also with its paired 95 %
    interval (same queries). A variant selected on the test split is optimistic, so its difference understates
    the fix."""
    rows = []
    for v in variants:
        fixed, var = runs.get(v["fixed"]), runs.get(v["variant"])
        if fixed is None or var is None:
            continue
        f_ev, v_ev = fixed.require_eval("test"), var.require_eval("test")
        rows.append({"change (variant = paper code)": v.get("change", ""), "fixed": fixed.model_label,
                     "fixed R1 / mAP": f_ev.fmt_record(), "fixed selected on": or_dash(fixed.train.select_on),
                     "variant": var.model_label + (f" (variant {v['variant'].split('@', 1)[1]})"
                                                   if "@" in v["variant"] else ""),
                     "variant R1 / mAP": v_ev.fmt_record(),
                     "variant selected on": or_dash(var.train.select_on),
                     "R1 gain (points)": round(float(f_ev.R1) - float(v_ev.R1), 1),
                     "mAP gain (points)": round(float(f_ev.mAP) - float(v_ev.mAP), 1),
                     "R1 gain, paired 95% CI": fmt_diff(f_ev.paired(v_ev, "R1")),
                     "mAP gain, paired 95% CI": fmt_diff(f_ev.paired(v_ev, "mAP"))})
    return pd.DataFrame(rows)
