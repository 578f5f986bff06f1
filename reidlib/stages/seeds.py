"""Runs repeated per seed and variants of a study, gathered for the report (all accuracies in %).

The plan hands the report ``run_groups``: one group per (variant, model, dataset) with its runs, one per seed
(``seeds``), and their ``metrics.json`` files; the first seed's run is the one the rest of the report shows.
This module reads them and writes:

- the seeds table: per group with more than one seed, the first seed's rank-1 / mAP with its 95 % bootstrap
  interval (which people were sampled) beside the mean ± sd across seeds (sample sd: what a rerun with another
  seed moves);
- the variants table: per group, what the variant changes and its numbers, with its paired difference to the
  profile's own run on the same queries where both were evaluated on the same identities;
- for a profile with ``test_split: false``, the whole report (:func:`write_held_out_report`): the held-out
  numbers at the selected and at the last evaluated epoch, and their curves per epoch;
- for "At a glance" (:func:`measured_noise`): how far seeds (sd over seeds) and a profile variant named in
  ``report.variants`` (its paired difference, such as fp32 against bf16 autocast) move a run's test numbers.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from .common import write_metrics
from .ids import FINETUNE_STAGE, REPORT_STAGE, TRAIN_STAGE
from .records import Epoch, EvalRecord, TrainRecord, read_record, read_run_info
from .report_runs import precision_of
from .uncertainty import fmt_diff

BASE = "(profile)"  # how the profile's own runs are named in the variants table
PRECISION = "training precision"  # the variants table's column, shown only where its rows differ in it
LONG_CHANGE = 160  # characters: a variant's changed value longer than this (as JSON) is named, not printed


def load_groups(run_groups: list[dict] | None) -> list[dict]:
    """``run_groups`` with ``records``: each seed's record (:class:`~.records.TrainRecord` or
    :class:`~.records.FinetuneRecord`, its ``run.json`` attached), or None where that run has not run yet. A group
    that already holds its ``records`` (loaded before) is passed on as it is, so the report reads each file
    once."""
    out = []
    for group in run_groups or []:
        if "records" in group:
            out.append(group)
            continue
        ids = group.get("runs") or [None] * len(group["metrics"])
        records = [replace(read_record(p, group["stage"], run_id=rid), run_info=read_run_info(p))
                   if Path(p).is_file() else None for rid, p in zip(ids, group["metrics"])]
        out.append({**group, "records": records})
    return out


def variant_runs(groups: list[dict]) -> dict[str, TrainRecord]:
    """Run id -> record of each variant group's first seed that has run (as :func:`load_groups` read them): the
    side rows a report sets beside the profile's own runs (its learning check and ``report.variants`` pairs)."""
    return {g["runs"][0]: g["records"][0] for g in groups
            if g["variant"] is not None and g.get("runs") and g["records"][0] is not None}


def group_runs(groups: list[dict]) -> dict[str, TrainRecord]:
    """Run id -> record of every run of every group that has run (each seed, each variant): what the report's
    provenance lists beside the profile's own runs."""
    return {rid: m for g in groups for rid, m in zip(g.get("runs") or [], g["records"]) if m is not None}


def _key(group: dict) -> tuple:
    return group["stage"], group["model_run"], group["dataset_key"], group.get("source_key")


def compared(groups: list[dict]) -> list[dict]:
    """The groups that some variant repeats: every variant group, and each of the profile's own groups whose
    (stage, model, data) a variant also trains (a profile run no variant repeats compares with nothing)."""
    repeated = {_key(g) for g in groups if g["variant"] is not None}
    return [g for g in groups if g["variant"] is not None or _key(g) in repeated]


def evaluation_of(m: TrainRecord | None, test_split: bool = True) -> EvalRecord | None:
    """The record a group compares: test (fine-tuned for a fine-tune run), or held-out with ``test_split`` off."""
    if m is None:
        return None
    return m.result_eval if test_split else m.evaluation("held-out")


def mean_sd(values: list[float]) -> str:
    """``"41.2 ± 1.3"`` (sample sd, ddof 1) of at least two values; ``"-"`` with fewer."""
    vals = [float(v) for v in values if v is not None]
    if len(vals) < 2:
        return "-"
    return f"{np.mean(vals):.1f} ± {np.std(vals, ddof=1):.1f}"


def _label(group: dict, first: TrainRecord | None) -> str:
    """The model's label: its record's, else the plan's (a run that has not run yet), else its run name."""
    if first is not None and first.model_label is not None:
        return first.model_label
    return group.get("model_label") or group["model_run"]


def _data(group: dict, first: TrainRecord | None) -> str:
    """The dataset's label, found as :func:`_label` finds the model's; a fine-tune names its source too."""
    if first is not None and first.dataset_label is not None:
        data = first.dataset_label
    else:
        data = group.get("dataset_label") or group["dataset_key"]
    if group["stage"] == FINETUNE_STAGE:
        data += f" (fine-tuned from {group.get('source_label') or group.get('source_key')})"
    return data


def seed_table(groups: list[dict], test_split: bool = True) -> pd.DataFrame:
    """One row per group run with more than one seed: the first seed's rank-1 / mAP [95 % CI] and the mean ± sd
    of rank-1 and mAP over the seeds that have run (``runs``: how many of the planned seeds)."""
    rows = []
    for g in groups:
        if len(g["seeds"]) < 2:
            continue
        evs = [evaluation_of(m, test_split) for m in g["records"]]
        done = [ev for ev in evs if ev is not None]
        first = g["records"][0]
        rows.append({"model": _label(g, first), "data": _data(g, first), "variant": g["variant"] or BASE,
                     f"R1 / mAP [95% CI], seed {g['seeds'][0]}": evs[0].fmt_record() if evs[0] else "not run",
                     "R1 mean ± sd": mean_sd([ev.R1 for ev in done]),
                     "mAP mean ± sd": mean_sd([ev.mAP for ev in done]),
                     "seeds": ", ".join(str(s) for s in g["seeds"]), "runs": f"{len(done)} of {len(evs)}"})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class SeedSpread:
    """One run repeated over seeds: the sample sd (ddof 1) of its test rank-1 and mAP over the seeds that ran,
    in percentage points."""

    run: str  # the first seed's run id, the one the rest of the report shows
    label: str  # the model's label (and the variant's name for a variant's run)
    data: str  # the test split's label
    seeds: tuple[int, ...]  # the seeds whose runs have results
    planned: int  # how many seeds the profile planned
    R1_sd: float
    mAP_sd: float


@dataclass(frozen=True)
class VariantShift:
    """A ``report.variants`` pair whose variant is a variant of the profile (run id ``<fixed>@<name>``): variant
    minus fixed on the same test queries, percentage points; ``R1`` and ``mAP`` are paired results
    (``{"difference", "ci95", "excludes_zero"}``, None without per-query data on the same queries)."""

    fixed: str  # run ids
    variant: str
    name: str  # the variant's name (``variants:`` key)
    change: str  # the pair's ``change`` text ("" where the profile gives none)
    label: str  # the fixed run's model label
    data: str  # the test split's label
    R1_point: float  # variant minus fixed
    mAP_point: float
    R1: dict | None
    mAP: dict | None

    def reach(self, stat: str = "mAP") -> float:
        """How far the change may move ``stat``: the larger end (in absolute value) of its paired 95 % interval,
        or the point difference where there is no interval (points)."""
        paired, point = (self.mAP, self.mAP_point) if stat == "mAP" else (self.R1, self.R1_point)
        return abs(point) if paired is None else max(abs(v) for v in paired["ci95"])


@dataclass(frozen=True)
class Noise:
    """What "At a glance" sets beside a lead: the seed spreads and the profile-variant shifts of the study."""

    spreads: tuple[SeedSpread, ...] = ()
    shifts: tuple[VariantShift, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.spreads or self.shifts)

    def spread_of(self, run: str) -> SeedSpread | None:
        """The seed spread of ``run`` (its first seed's run id), None where it ran with one seed."""
        return next((s for s in self.spreads if s.run == run), None)

    def shifts_of(self, run: str) -> list[VariantShift]:
        """The variant shifts whose fixed run is ``run``."""
        return [v for v in self.shifts if v.fixed == run]


def seed_spreads(groups: list[dict]) -> list[SeedSpread]:
    """The :class:`SeedSpread` of every training group (:func:`load_groups`) with at least two seeds' test results."""
    out = []
    for g in groups:
        if g["stage"] != TRAIN_STAGE or len(g["seeds"]) < 2:
            continue
        done = [(s, m.result_eval) for s, m in zip(g["seeds"], g["records"]) if m is not None and m.result_eval]
        if len(done) < 2:
            continue
        first = next(m for m in g["records"] if m is not None)
        r1, m_ap = ([float(getattr(ev, stat)) for _, ev in done] for stat in ("R1", "mAP"))
        label = _label(g, first) + (f", {g['variant']} variant" if g["variant"] else "")
        out.append(SeedSpread(run=g["runs"][0], label=label, data=done[0][1].label or _data(g, first),
                              seeds=tuple(s for s, _ in done), planned=len(g["seeds"]),
                              R1_sd=float(np.std(r1, ddof=1)), mAP_sd=float(np.std(m_ap, ddof=1))))
    return out


def variant_shifts(groups: list[dict], pairs: list[dict] | None) -> list[VariantShift]:
    """The :class:`VariantShift` of every ``report.variants`` pair marked ``noise: true`` (``{fixed, variant,
    change, noise}``, run ids: a change that should not matter, such as fp32 against bf16 autocast) whose variant
    run belongs to one of the profile's variants and both runs have test results. Other pairs (a paper-code fix,
    a different loss) are a recipe's worth, not variation, and are left to the report's tables."""
    records = {rid: m for g in groups for rid, m in zip(g.get("runs") or [], g["records"])}
    of_variants = {rid: g["variant"] for g in groups if g["variant"] is not None for rid in g.get("runs") or []}
    out = []
    for pair in pairs or []:
        fixed, variant = records.get(pair["fixed"]), records.get(pair["variant"])
        if not pair.get("noise") or pair["variant"] not in of_variants or fixed is None or variant is None:
            continue
        f_ev, v_ev = fixed.result_eval, variant.result_eval
        if f_ev is None or v_ev is None:
            continue
        out.append(VariantShift(fixed=pair["fixed"], variant=pair["variant"], name=of_variants[pair["variant"]],
                                change=str(pair.get("change") or ""), label=fixed.model_label or pair["fixed"],
                                data=f_ev.label or "", R1_point=float(v_ev.R1) - float(f_ev.R1),
                                mAP_point=float(v_ev.mAP) - float(f_ev.mAP), R1=v_ev.paired(f_ev, "R1"),
                                mAP=v_ev.paired(f_ev, "mAP")))
    return out


def measured_noise(run_groups: list[dict] | None, pairs: list[dict] | None) -> Noise:
    """The study's :class:`Noise` from the plan's ``run_groups`` and ``report.variants`` (empty without groups)."""
    groups = load_groups(run_groups)
    return Noise(spreads=tuple(seed_spreads(groups)), shifts=tuple(variant_shifts(groups, pairs)))


def _short_value(value) -> str:
    """A changed value as JSON, or, past :data:`LONG_CHANGE` characters, named only: a list of model entries by
    their labels (such as a variant that repeats one model of the profile with its whole entry)."""
    text = json.dumps(value, default=str)
    if len(text) <= LONG_CHANGE:
        return text
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        names = [str(v.get("label") or v.get("run") or v.get("name") or "?") for v in value]
        return "[" + ", ".join(names) + "] (in full in the profile)"
    return text[:LONG_CHANGE] + "... (in full in the profile)"


def _changes(overrides: dict | None) -> str:
    """A variant's overrides as ``key.sub: value`` items (``-`` for the profile's own runs; long values named
    only, :func:`_short_value`)."""
    if not overrides:
        return "-"

    def flat(prefix: str, value) -> list[str]:
        if isinstance(value, dict) and value:
            return [item for k, v in value.items() for item in flat(f"{prefix}.{k}" if prefix else str(k), v)]
        return [f"{prefix}: {_short_value(value)}"]

    return "; ".join(flat("", overrides))


def _evaluated_epochs(m: TrainRecord | None) -> list[Epoch]:
    """The epochs of a run's history that evaluated the held-out identities."""
    return [h for h in (m.history if m is not None else ()) if h.val_rank1 is not None]


def _last_held_out(m: TrainRecord | None) -> tuple[int, float, float] | None:
    """(epoch, rank-1 %, mAP %) of the last epoch that evaluated the held-out identities."""
    rows = _evaluated_epochs(m)
    if not rows:
        return None
    h = rows[-1]
    return int(h.epoch), 100.0 * float(h.val_rank1), 100.0 * float(h.val_mAP)


def variant_table(groups: list[dict], overrides: dict | None, test_split: bool = True,
                  compared_only: bool = False) -> pd.DataFrame:
    """One row per (variant, model, dataset), the profile's own runs first: what the variant changes, the first
    seed's rank-1 / mAP [95 % CI] (held-out identities at the selected epoch when ``test_split`` is off, with the
    last evaluated epoch and the run's training minutes beside it), the mean ± sd over seeds where there are
    several, and rank-1 / mAP minus the profile's own run with a paired 95 % interval (``n/a`` where the two were
    not evaluated on the same queries). A ``training precision`` column (bf16 autocast, fp32, ...) is shown where the
    rows trained in more than one, since precision alone moves a run's numbers. ``compared_only``: only the groups
    some variant repeats (:func:`compared`)."""
    base = {_key(g): g for g in groups if g["variant"] is None}
    groups = compared(groups) if compared_only else groups
    rows = []
    for g in sorted(groups, key=lambda g: (g["variant"] is not None, g["variant"] or "", g["stage"])):
        first = g["records"][0]
        ev = evaluation_of(first, test_split)
        row = {"variant": g["variant"] or BASE, "changes": _changes((overrides or {}).get(g["variant"])),
               "model": _label(g, first), "data": _data(g, first),
               PRECISION: precision_of(first) if first is not None else "-"}
        what = "R1 / mAP [95% CI]" + ("" if test_split else ", held-out, selected epoch")
        row[what] = ev.fmt_record() if ev else "not run"
        if not test_split:
            best = first.train.best_epoch if first is not None else None
            last = _last_held_out(first)
            row["selected epoch"] = "-" if best is None else best
            row["R1 / mAP, last evaluated epoch"] = f"{last[1]:.1f} / {last[2]:.1f} (epoch {last[0]})" if last else "-"
            minutes = _training_minutes(first, list(first.history)) if first is not None else None
            row["training minutes"] = f"{minutes[-1]:.1f}" if minutes else "-"
        if len(g["seeds"]) > 1:
            done = [e for e in (evaluation_of(m, test_split) for m in g["records"]) if e is not None]
            row["R1 / mAP mean ± sd over seeds"] = (f"{mean_sd([e.R1 for e in done])} / "
                                                    f"{mean_sd([e.mAP for e in done])}")
        ref = base.get(_key(g))
        ref_ev = evaluation_of(ref["records"][0], test_split) if ref is not None and g["variant"] else None
        if g["variant"] is None or ref_ev is None or ev is None:
            row["R1 / mAP minus the profile's run, paired 95% CI"] = "-"
        else:
            row["R1 / mAP minus the profile's run, paired 95% CI"] = (
                f"{fmt_diff(ev.paired(ref_ev, 'R1'))} / {fmt_diff(ev.paired(ref_ev, 'mAP'))}")
        rows.append(row)
    table = pd.DataFrame(rows)
    if len({row[PRECISION] for row in rows} - {"-"}) < 2:
        table = table.drop(columns=[PRECISION], errors="ignore")
    return table


def _training_minutes(m: TrainRecord, rows: list[Epoch]) -> list[float] | None:
    """Cumulative training minutes (the epochs' ``train_seconds``, evaluations left out) at the end of each of
    ``rows``; None when a run did not record them."""
    total, at = 0.0, {}
    if not rows:
        return []
    for h in m.history:
        if h.train_seconds is None:
            return None
        total += float(h.train_seconds)
        at[h.epoch] = total / 60.0
    return [at[h.epoch] for h in rows]


def _group_look(group: dict, first: TrainRecord, variants: list[str | None], one_model: bool) -> tuple[str, dict]:
    """(legend name, line style) of a training group in the recipe-comparing figures: with one model the profile's
    own recipe is a thick black line and each variant gets a colour (then a dash) of its own; with several models a
    model keeps its colour across the study's figures and each recipe its line style."""
    from reidlib.figure_style import DEFAULT_CYCLE, OKABE_ITO, model_style

    dashes = ("-", "--", ":", "-.")
    if one_model:
        others = [c for c in DEFAULT_CYCLE if c != OKABE_ITO["black"]]
        k = [x for x in variants if x is not None].index(group["variant"]) if group["variant"] is not None else -1
        look = ({"color": OKABE_ITO["black"], "linestyle": "-", "linewidth": 2.0, "zorder": 3} if k < 0 else
                {"color": others[k % len(others)], "linestyle": dashes[k // len(others) % 4]})
        return group["variant"] or "the profile's recipe", look
    look = {"color": model_style(group["model_run"])["color"],
            "linestyle": dashes[variants.index(group["variant"]) % len(dashes)]}
    return f"{_label(group, first)}, {group['variant'] or 'profile recipe'}", look


def plot_separation_curves(groups: list[dict], compared_only: bool = False):
    """The collapse diagnostics of each training group's first seed against the epoch, styled as
    :func:`plot_held_out_curves`: the batch's mean hardest-negative distance over its mean hardest-positive one (a
    ratio, so a euclidean and a cosine triplet share the axis; above 1 even the hardest pairs are apart, below 1
    they overlap, as early in any training and throughout a collapse) and the mean feature norm (the triplet's
    input). None where no group recorded the distances. ``compared_only``: only the groups some variant repeats
    (:func:`compared`), so each model's lines compare recipes."""
    from matplotlib.ticker import MaxNLocator

    from reidlib.figure_style import grid, legend_rows, legend_under
    from reidlib.learning_curves import LOG_SPAN

    plotted = []
    for g in compared(groups) if compared_only else groups:
        first = g["records"][0] if g["stage"] == TRAIN_STAGE else None
        rows = [h for h in (first.history if first is not None else ())
                if h.dist_ap is not None and h.dist_an is not None and h.dist_ap > 0]
        if rows:
            plotted.append((g, first, rows))
    if not plotted:
        return None
    variants = list(dict.fromkeys(g["variant"] for g, *_ in plotted))
    one_model = len({g["model_run"] for g, *_ in plotted}) == 1
    ncol = 4 if one_model else 3
    looks = [_group_look(g, first, variants, one_model) for g, first, _ in plotted]
    fig, (ratio, norm) = grid(2, panel_size=(5.0, 3.6), max_cols=2, extra_height=legend_rows(looks, ncol))
    norms: list[float] = []
    for (name, look), (_, _, rows) in zip(looks, plotted):
        ratio.plot([h.epoch for h in rows], [h.dist_an / h.dist_ap for h in rows], label=name, **look)
        with_norm = [(h.epoch, h.feat_norm) for h in rows if h.feat_norm is not None]
        if with_norm:
            norm.plot(*zip(*with_norm), **look)
            norms += [n for _, n in with_norm]
    ratio.axhline(1.0, color="grey", linestyle=":", linewidth=1.2)
    ratio.set_title("hardest negative / hardest positive distance")
    norm.set_title("mean feature norm (the triplet's input)")
    positive = [n for n in norms if n > 0]
    if positive and max(positive) / min(positive) > LOG_SPAN:
        norm.set_yscale("log")
    else:
        norm.set_ylim(bottom=0.0)
    for ax in (ratio, norm):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    if one_model:
        fig.suptitle(_label(plotted[0][0], plotted[0][1]))
    legend_under(fig, ratio.get_legend_handles_labels()[0], ncol=ncol)
    return fig


SEPARATION_CAPTION = "Collapse diagnostics per recipe: how far the hardest negative sits beyond the hardest positive"


def separation_figure(groups: list[dict], fig_dir: Path, compared_only: bool = False) -> Path | None:
    """:func:`plot_separation_curves` saved as ``fig_dir/separation.png`` with its caption, where some group
    compares a recipe (a variant) and some run recorded the distances; else None (nothing written)."""
    from reidlib.plots import save_figure

    if not any(g["variant"] is not None for g in groups):
        return None
    fig = plot_separation_curves(groups, compared_only)
    if fig is None:
        return None
    return save_figure(fig, Path(fig_dir) / "separation.png", metadata={"Title": SEPARATION_CAPTION})


def plot_held_out_curves(groups: list[dict]):
    """Held-out rank-1 and mAP (%) of each training group's first seed, against the epoch (top row) and against
    the cumulative training minutes (bottom row, where every run recorded them: a cheaper epoch shows as a
    steeper curve); the legend under the panels. With several models a model keeps its colour across the
    study's figures and each recipe (the profile's own, then each variant in order) its line style; with one
    model the profile's own recipe is a thick black line and each variant gets a colour (then a dash) of its own.
    The value axis spans the data (rounded out to tens)."""
    import math

    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    plotted = []
    for g in groups:
        first = g["records"][0]
        rows = _evaluated_epochs(first) if g["stage"] == TRAIN_STAGE and first is not None else []
        if rows:
            plotted.append((g, first, rows, _training_minutes(first, rows)))
    variants = list(dict.fromkeys(g["variant"] for g, *_ in plotted))
    one_model = len({g["model_run"] for g, *_ in plotted}) == 1
    by_minutes = bool(plotted) and all(minutes is not None for *_, minutes in plotted)
    n_rows = 2 if by_minutes else 1
    fig, axes = plt.subplots(n_rows, 2, figsize=(10, 3.6 * n_rows + 0.4), squeeze=False)
    values_seen: list[float] = []
    for g, first, rows, minutes in plotted:
        name, look = _group_look(g, first, variants, one_model)
        look.update(marker="o", markersize=3)
        for col, values in enumerate(([h.val_rank1 for h in rows], [h.val_mAP for h in rows])):
            pct = [100.0 * x for x in values]
            values_seen += pct
            axes[0][col].plot([h.epoch for h in rows], pct, label=name, **look)
            if by_minutes:
                axes[1][col].plot(minutes, pct, **look)
    low = max(0.0, 10 * math.floor(min(values_seen, default=0.0) / 10 - 0.5))
    high = min(100.0, 10 * math.ceil(max(values_seen, default=100.0) / 10 + 0.5))
    for row, xlabel in enumerate(("epoch", "training minutes (evaluations left out)")[:n_rows]):
        for col, title in enumerate(("rank-1 (%)", "mAP (%)")):
            ax = axes[row][col]
            ax.set_title(f"Held-out identities: {title}")
            ax.set_xlabel(xlabel)
            if row == 0:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylim(low, high)
            ax.grid(alpha=0.3)
    if one_model and plotted:
        fig.suptitle(_label(plotted[0][0], plotted[0][1]))
    handles, labels = axes[0][0].get_legend_handles_labels()
    per_row = 4 if one_model else 3
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(per_row, len(handles)), frameon=False,
                   bbox_to_anchor=(0.5, -0.01))
    legend_rows = (len(handles) - 1) // per_row + 1 if handles else 0
    fig.tight_layout(rect=(0, (0.035 + 0.03 * legend_rows) * (2 / (n_rows + 1)) * 1.5, 1, 1))
    return fig


def changes_lines(groups: list[dict], overrides: dict | None) -> list[str]:
    """One markdown item per variant that has runs here: its name and the keys it changes (:func:`_changes`), so
    the tables can name a variant without repeating its changes on every row."""
    names = dict.fromkeys(g["variant"] for g in groups if g["variant"] is not None)
    return [f"- `{name}`: {_changes((overrides or {}).get(name))}" for name in names]


def variant_view(table: pd.DataFrame) -> pd.DataFrame:
    """A variants table as printed: without its ``changes`` column (:func:`changes_lines` lists them once)."""
    return table.drop(columns=["changes"], errors="ignore")


def report_lines(groups: list[dict], overrides: dict | None, test_split: bool = True) -> list[str]:
    """The report's "Variants" and "Seeds" sections as markdown lines (none where the profile has neither). In a
    test-split report the variants table holds only the runs a variant repeats and their variants
    (:func:`compared`)."""
    from reidlib.plots import to_markdown

    lines: list[str] = []
    if overrides:
        table = variant_table(groups, overrides, test_split, compared_only=test_split)
        split = "the test split" if test_split else "the identities held out of the training split"
        lines += ["## Variants", "",
                  (f"Each variant is the profile with the keys below changed, trained as its own runs and evaluated "
                   f"on {split} (%); the table sets each beside the profile's own run of the same model and data "
                   "(\"(profile)\"), the difference paired over the same queries."), "",
                  *changes_lines(groups, overrides), "", to_markdown(variant_view(table)), ""]
    seeds = seed_table(groups, test_split)
    if not seeds.empty:
        lines += ["## Seeds", "",
                  ("Each run repeated with other seeds (initialisation, batch order, augmentation and the held-out "
                   "identities change with the seed): the first seed's numbers with their 95 % interval over "
                   "which people were sampled, beside the mean ± sd across seeds, which is what a rerun with "
                   "another seed moves. The rest of the report shows the first seed's runs."), "",
                  to_markdown(seeds), ""]
    return lines


def _glance(groups: list[dict]) -> str:
    """The held-out report's opening: per model, the recipe (variant) with the highest held-out rank-1 at the
    selected epoch and its paired lead over that model's next recipe (recipes are compared within a model, never
    across models), then the caveat."""
    scored = [(evaluation_of(g["records"][0], False), g) for g in groups if g["stage"] == TRAIN_STAGE]
    scored = [(ev, g) for ev, g in scored if ev is not None]
    if not scored:
        return "No training run has finished yet."
    by_model: dict[str, list] = {}
    for ev, g in scored:
        by_model.setdefault(g["model_run"], []).append((ev, g))
    sentences = []
    for entries in by_model.values():
        entries.sort(key=lambda x: (x[0].R1, x[0].mAP), reverse=True)
        (ev, g), rest = entries[0], entries[1:]
        sentence = (f"{_label(g, g['records'][0])}: best {_recipe(g)} ({ev.fmt_record()})")
        if rest:
            ev2, g2 = rest[0]
            diff = ev.paired(ev2, "R1")
            lead = fmt_diff(diff) if diff is not None else f"{float(ev.R1) - float(ev2.R1):+.1f} (no paired interval)"
            noise = diff is None or not diff["excludes_zero"]
            sentence += f", {lead} rank-1 points over {_recipe(g2)}" + (" (within noise)" if noise else "")
            ours, theirs = precision_of(g["records"][0]), precision_of(g2["records"][0])
            if ours != theirs:
                sentence += (f"; the two trained in different precisions ({ours} against {theirs}), so the "
                             "difference mixes recipe and precision")
        else:
            sentence += ", its only recipe here"
        sentences.append(sentence + ".")
    return ("Recipes compared on identities held out of the training split, within each model; no test split was "
            "read. Held-out rank-1 / mAP at the selected epoch: " + " ".join(sentences)
            + " Held-out sets are small, so their intervals are wide; the selected epoch was chosen on the same "
            "identities, so its numbers are optimistic next to the last epoch's.")


def _recipe(group: dict) -> str:
    return f"variant {group['variant']}" if group["variant"] else "the profile's own recipe"


def write_held_out_report(groups: list[dict], overrides: dict | None, out_dir: Path, *, profile: str,
                          description: str, profile_path: str, stale_runs: list[str] | None = None,
                          figures: list[Path] | None = None) -> str:
    """``report.md`` and the report's ``metrics.json`` of a profile with ``test_split: false``: what each recipe
    reached on the held-out identities, the curves per epoch, the seeds table; return the markdown."""
    from reidlib.io import write_atomic
    from reidlib.paths import REPO_ROOT
    from reidlib.plots import to_markdown

    from .common import show_figure
    from .report_figures import figure_caption

    out_dir = Path(out_dir)
    curves = show_figure(plot_held_out_curves(groups), out_dir / "figures" / "held_out_curves.png", inline=False)
    separation = separation_figure(groups, out_dir / "figures")
    figures = ([curves] + ([separation] if separation else [])
               + [f for f in figures or [] if Path(f).name != "cmc.png"])  # its CMC panels are test-split ones
    table = variant_table(groups, overrides, test_split=False)
    all_runs = [rid for g in groups for rid in g["runs"]]
    shown_path = Path(profile_path)
    if shown_path.is_absolute() and shown_path.is_relative_to(REPO_ROOT):
        shown_path = shown_path.relative_to(REPO_ROOT)
    stale = sorted(set(stale_runs or []) & set(all_runs))
    lines = [f"# reidlib study report: profile `{profile}`", "", "## At a glance", "", _glance(groups), "",
             description.strip(), "",
             (f"Regenerate: `./run_all.sh {shown_path}` (the executed notebook, parameters and `run.json` of every "
              "number sit in the stage folders beside this report)."), ""]
    if stale:
        lines += [f"**{len(stale)} runs are stale** (their inputs changed after they ran): "
                  + ", ".join(f"`{r}`" for r in stale) + ".", ""]
    changes = changes_lines(groups, overrides)
    lines += ["## Held-out identities: rank-1 / mAP (%)", "",
              ("Every run trained on the training split minus its held-out identities, selected its checkpoint on "
               "them and was evaluated on them once more from that checkpoint ([95% CI]: a bootstrap over the "
               "held-out identities); the last evaluated epoch shows what selection added. The test split was "
               "never read." + (" The variants change these keys of the profile:" if changes else "")), "",
              *([*changes, ""] if changes else []), to_markdown(variant_view(table)), ""]
    lines += [line for line in report_lines(groups, None, test_split=False)]
    lines += ["## Figures", ""]
    for path in figures:
        lines += [f"![{figure_caption(Path(path))}]({Path(path).relative_to(out_dir).as_posix()})", ""]
    text = "\n".join(lines) + "\n"
    write_atomic(out_dir / "report.md", text)
    write_metrics(out_dir, {"stage": REPORT_STAGE, "profile": profile, "test_split": False,
                            "at_a_glance": _glance(groups), "variants": table.to_dict("records"),
                            "stale_runs": stale, "runs": sorted(all_runs)})
    return text


def add_sections(text: str, record: dict, run_groups: list[dict] | None, overrides: dict | None
                 ) -> tuple[str, dict]:
    """The report's markdown and metrics record with the "Variants" and "Seeds" sections (:func:`report_lines`)
    placed before its figures (or at its end); both unchanged for a profile without variants or seeds."""
    groups = load_groups(run_groups)
    lines = report_lines(groups, overrides)
    if not lines:
        return text, record
    block = "\n".join(lines) + "\n"
    for heading in ("## Figures\n", "## Notes\n", "## What every number rests on\n"):
        at = text.find("\n" + heading)
        if at >= 0:
            text = text[:at + 1] + block + text[at + 1:]
            break
    else:
        text = text.rstrip("\n") + "\n\n" + block
    record = {**record, "variants_of_study": (variant_table(groups, overrides, compared_only=True).to_dict("records")
                                              if overrides else []),
              "seeds": seed_table(groups).to_dict("records")}
    return text, record
