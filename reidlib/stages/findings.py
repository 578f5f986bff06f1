"""What the report claims: which model is best and by how much, and whether a published ranking holds.

Every claim rests on paired 95 % identity-bootstrap intervals (:mod:`reidlib.stages.uncertainty`): a model is
named best only where the interval of its lead over the runner-up excludes zero, and a run that failed the
"did it learn?" check (:mod:`reidlib.stages.report_learning`) is left out of every ranking claim. The published
ranking comes from the table the profile reproduces (``report.reproduces``, an entry of
``params/_references.yaml``). All numbers are percentages or percentage points.
"""
from __future__ import annotations

from itertools import combinations

from .ids import TRAIN_STAGE, in_stage
from .records import EvalRecord, Runs, TrainRecord
from .report_runs import or_dash, precision_of, run_setting
from .uncertainty import fmt_interval

PAPER_TIE_POINTS = 1.0  # two published mAPs closer than this count as "close" in the published ranking


def _on_test(m: TrainRecord) -> EvalRecord:
    return m.require_eval("test")


def _published_map(paper: dict, m: TrainRecord) -> float | None:
    """The published mAP (%) on the paper's main dataset of the model a run builds, None if the paper lacks it."""
    entry = paper["models"].get(m.model_name or "") if paper else None
    return None if entry is None else float(entry["results"][paper["main_data"]][1])


def published_ranking(paper: dict) -> str:
    """The paper's ranking of its models in words: by mAP on its main dataset, best first; models whose mAPs
    differ by less than 1 point are named together as close."""
    data = paper["main_data"]
    order = sorted(paper["models"].values(), key=lambda e: -float(e["results"][data][1]))
    tiers: list[list[dict]] = []
    for entry in order:
        if tiers and float(tiers[-1][-1]["results"][data][1]) - float(entry["results"][data][1]) < PAPER_TIE_POINTS:
            tiers[-1].append(entry)
        else:
            tiers.append([entry])
    words = [" and ".join(f"{e['label']} {float(e['results'][data][1]):.1f}" for e in tier)
             + (" (close)" if len(tier) > 1 else "") for tier in tiers]
    return f"The paper's ranking on {data} by mAP (%): " + ", ahead of ".join(words) + "."


def _setting_line(runs: Runs, ids: list[str]) -> str:
    """data, init, epochs, input, hardware, precision and seeds of the runs ``ids``, each value once."""
    def values(get) -> str:
        seen = list(dict.fromkeys(str(get(runs[r])) for r in ids))
        return seen[0] if len(seen) == 1 else " / ".join(seen)

    return (f"{values(lambda m: _on_test(m).label)} test split, init {values(lambda m: run_setting(m)['init'])}, "
            f"{values(lambda m: run_setting(m)['epochs'])} epochs, input "
            f"{values(lambda m: run_setting(m)['input'])}, {values(lambda m: run_setting(m)['hardware'])}, "
            f"precision {values(precision_of)}, seed {values(lambda m: or_dash(m.train.seed))} (one training "
            "run per model)")


def _name(m: TrainRecord) -> str:
    return m.model_label


def leader(runs: Runs, ids: list[str]) -> dict:
    """The run with the highest test mAP among ``ids`` and its paired lead over the runner-up.

    Returns ``{"best", "runner_up", "lead"}`` (run ids; ``lead`` from :func:`reidlib.stages.uncertainty.paired`
    on mAP, None without per-query data or with one run).
    """
    order = sorted(ids, key=lambda r: -float(_on_test(runs[r]).mAP))
    if not order:
        return {"best": None, "runner_up": None, "lead": None}
    second = order[1] if len(order) > 1 else None
    lead = _on_test(runs[order[0]]).paired(_on_test(runs[second]), "mAP") if second else None
    return {"best": order[0], "runner_up": second, "lead": lead}


def _pair_status(paper_gap: float, diff: dict | None, leads_lo: float | None) -> str:
    """For one pair (a, b) with paper mAP a - b = ``paper_gap``: "agrees", "reversed" or "within noise" where the
    paper has a ahead, "agrees" or "not close" where the paper has them close; "no interval" without data."""
    if diff is None:
        return "no interval"
    lo, hi = diff["ci95"]
    if abs(paper_gap) < PAPER_TIE_POINTS:  # the paper has them close
        if lo <= 0 <= hi or (leads_lo is not None and max(abs(lo), abs(hi)) < leads_lo):
            return "agrees"
        return "not close"
    sign = 1 if paper_gap > 0 else -1
    if (lo > 0 and sign > 0) or (hi < 0 and sign < 0):
        return "agrees"
    if (lo > 0 and sign < 0) or (hi < 0 and sign > 0):
        return "reversed"
    return "within noise"


def ranking_paragraph(runs: Runs, run_ids: list[str], failed: dict[str, str] | None = None,
                      paper: dict | None = None) -> str:
    """Does the ranking of ``paper`` (a resolved table entry: its models' mAP on its main dataset) hold for the
    runs ``run_ids``?

    Works for any set of runs: runs in ``failed`` (run id -> reason, from
    :func:`reidlib.stages.report_learning.failed_runs`) are listed but left out of the judgement; for every pair of
    the others whose models are in the paper, the paired mAP difference is compared with the paper's order (ahead
    when the paper's mAPs differ by 1 point or more, "close" otherwise; close pairs agree where their interval
    includes zero or lies within the leader's smallest lead). "It holds here" needs every pair to agree, "does not
    hold" any pair in the reverse order beyond noise, else "only in part". Records without per-query data get no
    verdict; without a ``paper`` there is no ranking to judge.
    """
    failed = failed or {}
    present = [rid for rid in run_ids if rid in runs]
    missing = [rid for rid in run_ids if rid not in runs]
    if not present:
        return "No run of the ranking has results yet (" + ", ".join(f"`{r}`" for r in run_ids) + ")."
    rows = sorted(present, key=lambda r: -float(_on_test(runs[r]).mAP))
    data = _on_test(runs[rows[0]]).label
    listed = "; ".join(
        f"{_name(runs[r])} {_on_test(runs[r]).fmt_value('R1')} / {_on_test(runs[r]).fmt_value('mAP')} "
        f"({runs[r].train.epochs_completed} epochs, "
        f"{float(runs[r].train.train_seconds or 0.0) / 60:.0f} min, {run_setting(runs[r])['input']})"
        for r in rows)
    head = f"On {data}, rank-1 / mAP (%) [95 % CI] on the test split, best mAP first: {listed}."
    if not paper:
        return head + " The profile names no published table (report.reproduces), so there is no ranking to judge."
    head += " " + published_ranking(paper)
    if missing:
        return head + " The ranking cannot be judged yet: no results for " + ", ".join(f"`{r}`" for r in missing) + "."
    left_out = [r for r in rows if r in failed]
    note = "".join(f" {_name(runs[r])} is left out of the judgement: {failed[r]}." for r in left_out)
    judged = [r for r in rows if r not in failed and _published_map(paper, runs[r]) is not None]
    if len(judged) < 2:
        return head + note + " Fewer than two runs of the paper's models remain, so its ranking cannot be judged."
    pairs = []
    for a, b in combinations(judged, 2):
        gap = _published_map(paper, runs[a]) - _published_map(paper, runs[b])
        if gap < 0 or (abs(gap) < PAPER_TIE_POINTS and float(_on_test(runs[a]).mAP) < float(_on_test(runs[b]).mAP)):
            a, b, gap = b, a, -gap  # a is the paper's leader of the pair (or, when close, ours)
        pairs.append((a, b, gap, _on_test(runs[a]).paired(_on_test(runs[b]), "mAP")))
    if any(d is None for *_, d in pairs):
        return (head + note + " These records carry no per-query results, so no interval and no ranking verdict: "
                "the differences above are point estimates only.")
    leads = [d["ci95"][0] for _, _, gap, d in pairs if abs(gap) >= PAPER_TIE_POINTS]
    leads_lo = min(leads) if leads else None
    details, status = [], []
    for a, b, gap, d in pairs:
        st = _pair_status(gap, d, leads_lo)
        status.append(st)
        relation = "close" if abs(gap) < PAPER_TIE_POINTS else f"{_name(runs[a])} ahead"
        details.append(f"{_name(runs[a])} minus {_name(runs[b])} {d['difference']:+.1f} {fmt_interval(d['ci95'])} "
                       f"mAP points (paper: {relation}; {st})")
    verdict = ("It holds here" if all(s == "agrees" for s in status) else
               "It does not hold here" if "reversed" in status else "It holds only in part")
    return head + note + f" {verdict}, by paired 95 % intervals: " + "; ".join(details) + "."


def _candidates(runs: Runs, report: dict) -> list[list[str]]:
    """Groups of run ids compared with each other: the profile's ranking, else the 10_train runs per test set."""
    if report.get("ranking"):
        return [[r for r in report["ranking"] if r in runs]]
    groups: dict[str, list[str]] = {}
    for rid, m in sorted(runs.items()):
        if in_stage(rid, TRAIN_STAGE) and m.test_eval is not None:
            groups.setdefault(m.test_eval.label, []).append(rid)
    return [g for g in sorted(groups.values(), key=len, reverse=True) if len(g) >= 2][:2]


def at_a_glance(runs: Runs, report: dict | None, failed: dict[str, str], profile: str,
                stale: list[str] | None = None) -> str:
    """3-5 sentences: the best model per compared group and its paired lead (or "within noise"), what the
    comparison rests on, which runs are left out and why, and what the intervals do not cover."""
    report = report or {}
    groups = [g for g in _candidates(runs, report) if g]
    if not groups:
        return "No two trained models share a test split yet, so there is no comparison to report."
    sentences, basis, any_old = [], [], False
    for group in groups:
        keep = [r for r in group if r not in failed]
        data = _on_test(runs[group[0]]).label
        any_old |= not all(_on_test(runs[r]).has_intervals for r in group)
        win = leader(runs, keep)
        best = win["best"]
        if best is None:
            sentences.append(f"On {data} no model passed the \"did it learn?\" check, so none is named best.")
            continue
        ev = _on_test(runs[best])
        numbers = f"rank-1 {ev.fmt_value('R1')} and mAP {ev.fmt_value('mAP')} %"
        lead, second = win["lead"], win["runner_up"]
        if second is None:
            sentences.append(f"On {data} only {_name(runs[best])} passed the \"did it learn?\" check ({numbers}).")
        elif lead is None:
            sentences.append(f"On {data} the highest test mAP is {_name(runs[best])}'s ({numbers}); these records "
                             "carry no per-query results, so its lead has no interval and no model is named best.")
        elif lead["ci95"][0] > 0:
            sentences.append(f"On {data} the best model is **{_name(runs[best])}** ({numbers}): its mAP lead over "
                             f"{_name(runs[second])} is {lead['difference']:+.1f} {fmt_interval(lead['ci95'])} "
                             "points (paired 95 % interval), beyond noise.")
        else:
            sentences.append(f"On {data} {_name(runs[best])} has the highest mAP ({numbers}), but its lead over "
                             f"{_name(runs[second])}, {lead['difference']:+.1f} {fmt_interval(lead['ci95'])} points, "
                             "is within noise: no model is named best.")
        basis.append(_setting_line(runs, keep or group))
    sentences.append("The comparison rests on " + "; and on ".join(basis) + ".")
    out = [r for g in groups for r in g if r in failed]
    if out:
        sentences.append("Left out of every ranking claim: " + "; ".join(
            f"{_name(runs[r])} (`{r}`), {failed[r]}" for r in out) + ".")
    caveat = ("The intervals cover which query identities were sampled, not seed-to-seed or CPU-kind (bf16 "
              "against fp32) variation")
    if any_old:
        caveat += "; records made before intervals were added show n/a (see under Table I)"
    stale_here = sorted(set(stale or []) & {r for g in groups for r in g})
    if stale_here:
        caveat += f"; {len(stale_here)} of these runs are stale (see the warning below)"
    sentences.append(caveat + ".")
    return " ".join(sentences)
