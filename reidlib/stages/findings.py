"""What the report claims: which model is best and by how much, and whether a published ranking holds.

Every claim rests on paired 95 % identity-bootstrap intervals (:mod:`reidlib.stages.uncertainty`): a model is
named best only where the interval of its lead over the runner-up excludes zero, and a run that failed the
"did it learn?" check (:mod:`reidlib.stages.report_learning`) is left out of every ranking claim. The published
ranking comes from the table the profile reproduces (``report.reproduces``, an entry of
``params/_references.yaml``). Where the profile repeats runs over seeds or names a profile variant of a run in
``report.variants`` (such as fp32 against bf16 autocast), "At a glance" sets the named leads beside those measured
spreads (:class:`reidlib.stages.seeds.Noise`). All numbers are percentages or percentage points.
"""
from __future__ import annotations

import math
from itertools import combinations
from typing import NamedTuple

from .ids import TRAIN_STAGE, in_stage
from .records import EvalRecord, Runs, TrainRecord
from .report_runs import or_dash, precision_of, run_setting
from .seeds import Noise, SeedSpread, VariantShift
from .uncertainty import fmt_diff, fmt_signed_interval

PAPER_TIE_POINTS = 1.0  # two published mAPs closer than this count as "close" in the published ranking
SEED_SDS = 2.0  # a lead beyond this many seed sds is larger than seed noise (the text says "twice")
LISTED_SPREADS = 3  # more repeated runs than this are summarised by their range of sds
CAVEAT = "The intervals cover which query identities were sampled"
UNMEASURED = ", not seed-to-seed or CPU-kind (bf16 against fp32) variation"


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


def _repeats(ids: list[str], noise: Noise) -> str:
    """How many training runs the models of ``ids`` rest on: one each, or which were repeated with other seeds."""
    repeated = [s for s in (noise.spread_of(r) for r in ids) if s is not None]
    if not repeated:
        return "one training run per model"
    also = _and([f"{s.label} also with seed{'s' if len(s.seeds) > 2 else ''} {', '.join(map(str, s.seeds[1:]))}"
                 for s in repeated])
    return also + ", see \"Seeds\"" + ("" if len(repeated) == len(ids) else "; one training run for each other model")


def _setting_line(runs: Runs, ids: list[str], noise: Noise | None = None) -> str:
    """data, init, epochs, input, hardware, precision and seeds of the runs ``ids``, each value once."""
    def values(get) -> str:
        seen = list(dict.fromkeys(str(get(runs[r])) for r in ids))
        return seen[0] if len(seen) == 1 else " / ".join(seen)

    return (f"{values(lambda m: _on_test(m).label)} test split, init {values(lambda m: run_setting(m)['init'])}, "
            f"{values(lambda m: run_setting(m)['epochs'])} epochs, input "
            f"{values(lambda m: run_setting(m)['input'])}, {values(lambda m: run_setting(m)['hardware'])}, "
            f"precision {values(precision_of)}, seed {values(lambda m: or_dash(m.train.seed))} "
            f"({_repeats(ids, noise or Noise())})")


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
        details.append(f"{_name(runs[a])} minus {_name(runs[b])} {fmt_signed_interval(d['difference'], d['ci95'])} "
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


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _spread_words(spreads: tuple[SeedSpread, ...]) -> str:
    """The sd over seeds of test rank-1 / mAP (points) per repeated run, or their range across many runs."""
    def n(s: SeedSpread) -> str:
        return f"n = {len(s.seeds)}" + (f" of {s.planned} planned" if len(s.seeds) < s.planned else "")

    if len(spreads) <= LISTED_SPREADS:
        return "the sd over seeds of test rank-1 / mAP is " + "; ".join(
            f"{s.R1_sd:.1f} / {s.mAP_sd:.1f} points for {s.label} on {s.data}, {n(s)}" for s in spreads)
    widest = max(spreads, key=lambda s: s.mAP_sd)
    r1, m_ap = [s.R1_sd for s in spreads], [s.mAP_sd for s in spreads]
    lo, hi = min(len(s.seeds) for s in spreads), max(len(s.seeds) for s in spreads)
    return (f"the sd over seeds of test rank-1 / mAP is {min(r1):.1f}-{max(r1):.1f} / {min(m_ap):.1f}-"
            f"{max(m_ap):.1f} points across {len(spreads)} repeated runs (n = {lo if lo == hi else f'{lo}-{hi}'}; "
            f"widest in mAP: {widest.label} on {widest.data})")


def _diff_words(paired: dict | None, point: float) -> str:
    return fmt_diff(paired) if paired is not None else f"{point:+.1f} (no paired interval)"


def _shift_words(v: VariantShift) -> str:
    """What a profile variant moves: variant minus fixed, rank-1 and mAP with paired intervals (points)."""
    return (f"{v.change or f'the {v.name} variant'} moves {v.label} on {v.data} by "
            f"{_diff_words(v.R1, v.R1_point)} rank-1 and {_diff_words(v.mAP, v.mAP_point)} mAP points")


class Lead(NamedTuple):
    """A mAP lead (points) of run ``runs[0]``'s model ``name`` over ``over`` (another model or a reference)."""

    name: str
    over: str
    value: float
    runs: tuple[str, ...]  # the run ids it rests on: the leader's, and the other model's where it is a run


def _checks(noise: Noise, lead: Lead) -> tuple[tuple[bool, str], ...]:
    """(larger?, what) for the noise measured on the runs of ``lead``: twice their seed sd of mAP (the sds of both
    runs combined, root of the summed squares) and each profile variant's whole paired mAP interval (the lead is
    larger where it exceeds the interval's far end); empty where none of its runs was measured. Compared at the
    printed precision (points, one decimal), so a tie as printed is not larger."""
    def beyond(bound: float) -> bool:
        return round(abs(lead.value), 1) > round(bound, 1)

    sds = [s.mAP_sd for s in (noise.spread_of(r) for r in lead.runs) if s is not None]
    checks = []
    if sds:
        sd = math.sqrt(sum(x * x for x in sds))
        both = ", both runs' sds combined" if len(sds) > 1 else ""
        checks.append((beyond(SEED_SDS * sd), f"{SEED_SDS * sd:.1f} points (twice the seed sd of mAP{both})"))
    for v in (v for r in lead.runs for v in noise.shifts_of(r)):
        checks.append((beyond(v.reach("mAP")), f"the {v.name} difference ({_diff_words(v.mAP, v.mAP_point)})"))
    return tuple(checks)


def _verdict(leads: list[Lead], checks: tuple[tuple[bool, str], ...]) -> str:
    """One clause for ``leads`` that share the same ``checks``: larger than the noise, or within it."""
    noun, to = ("lead", "over") if all(lead.value > 0 for lead in leads) else ("difference", "against")
    items, last = [], None
    for lead in leads:
        items.append(("" if lead.name == last else f"of {lead.name} ") + f"{to} {lead.over}, {lead.value:+.1f} points")
        last = lead.name
    listed = items[0] if len(items) == 1 else ", ".join(items[:-1]) + ", and " + items[-1]
    head = f"The mAP {noun}{'s' if len(leads) > 1 else ''} {listed}, " + ("are " if len(leads) > 1 else "is ")
    larger, smaller = [w for ok, w in checks if ok], [w for ok, w in checks if not ok]
    if not smaller:
        return head + "larger than " + _and(larger)
    return (head + (f"larger than {_and(larger)} but not than " if larger else "not larger than ") + _and(smaller)
            + ": treat " + ("them" if len(leads) > 1 else "it") + " as within noise")


def _reference_name(ref: dict) -> str:
    """A published reference row in a few words: ``"the reference OSNet x0.25 of torchreid 0.2.5 (mAP 41.0)"``."""
    source = str(ref.get("source", "")).split(" (")[0].split(",")[0].strip()
    return f"the reference {ref.get('model', 'model')} of {source} (mAP {float(ref['mAP']):.1f})"


def _reference_leads(runs: Runs, report: dict, noise: Noise) -> list[Lead]:
    """The mAP lead of each measured run over the references that name it (``compare_with``; ours minus theirs)."""
    out = []
    for ref in report.get("references") or []:
        rid = ref.get("compare_with")
        m = runs.get(rid) if rid else None
        if m is None or m.result_eval is None or not (noise.spread_of(rid) or noise.shifts_of(rid)):
            continue
        out.append(Lead(_name(m), _reference_name(ref), float(m.result_eval.mAP) - float(ref["mAP"]), (rid,)))
    return out


def noise_sentences(noise: Noise, leads: list[Lead]) -> str:
    """One or two sentences: how far seeds and profile variants moved the test numbers (sd over seeds with n;
    variant minus fixed with paired 95 % intervals), then whether each of ``leads`` is larger than the noise
    measured on its runs (:func:`_checks`; leads judged against the same numbers share a clause). Points, one
    decimal."""
    parts = ([_spread_words(noise.spreads)] if noise.spreads else []) + [_shift_words(v) for v in noise.shifts]
    text = "Measured beyond them: " + "; ".join(parts)
    if noise.shifts:
        text += " (paired 95 % intervals)"
    if not noise.shifts:
        text += "; CPU kind (bf16 against fp32) was not varied"
    elif not noise.spreads:
        text += "; seeds were not varied"
    shared: dict[tuple, list[Lead]] = {}
    for lead in leads:
        checks = _checks(noise, lead)
        if checks:
            shared.setdefault(checks, []).append(lead)
    verdicts = [_verdict(group, checks) for checks, group in shared.items()]
    if verdicts:
        text += ". " + "; ".join([verdicts[0]] + [v[0].lower() + v[1:] for v in verdicts[1:]])
    return text + "."


def fix_costs(runs: Runs, pairs: list[dict], verdicts: dict[str, str]) -> str:
    """One sentence for "At a glance": what each change of the paper's code (``report.variants`` pairs not marked
    ``noise``) costs in test mAP, fixed minus paper code with its paired 95 % interval, grouped by the change (its
    words before a colon); "within noise" where the interval holds zero, and the verdict of a paper-code run that
    failed the "did it learn?" check (``verdicts``: run id -> verdict). Empty where no pair has both results."""
    costs: dict[str, list[str]] = {}
    for pair in pairs:
        fixed, variant = runs.get(pair["fixed"]), runs.get(pair["variant"])
        if pair.get("noise") or fixed is None or variant is None:
            continue
        f_ev, v_ev = fixed.result_eval, variant.result_eval
        diff = f_ev.paired(v_ev, "mAP") if f_ev is not None and v_ev is not None else None
        if diff is None:
            continue
        verdict = verdicts.get(pair["variant"], "learned")
        notes = [f"with it {verdict}"] if verdict != "learned" else []
        notes += ["within noise"] if diff["ci95"][0] <= 0 <= diff["ci95"][1] else []
        change = str(pair.get("change") or pair["variant"]).split(":")[0].strip()
        costs.setdefault(change, []).append(
            f"{fmt_diff(diff)} for {_name(fixed)}" + (f" ({', '.join(notes)})" if notes else ""))
    if not costs:
        return ""
    return ("Beside the ranking, what each change of the paper's code costs in test mAP (fixed minus paper code, "
            "points, paired 95 % interval): " + "; ".join(f"{change} {', '.join(items)}"
                                                         for change, items in costs.items()) + ".")


def at_a_glance(runs: Runs, report: dict | None, failed: dict[str, str], profile: str,
                stale: list[str] | None = None, noise: Noise | None = None) -> str:
    """3-7 sentences: the best model per compared group and its paired lead (or "within noise"), what the
    comparison rests on, which runs are left out and why, and what the intervals do not cover. With ``noise``
    (seed spreads or profile-variant shifts, :func:`reidlib.stages.seeds.measured_noise`) the last part gives
    those measured numbers and says whether each named lead, and each measured run's lead over a reference that
    names it, is larger than them (:func:`noise_sentences`); without, it says the intervals do not cover seeds or
    CPU kind."""
    report, noise = report or {}, noise or Noise()
    leads: list[Lead] = []
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
                             f"{_name(runs[second])} is {fmt_signed_interval(lead['difference'], lead['ci95'])} "
                             "points (paired 95 % interval), beyond noise.")
            leads.append(Lead(_name(runs[best]), _name(runs[second]), lead["difference"], (best, second)))
        else:
            sentences.append(f"On {data} {_name(runs[best])} has the highest mAP ({numbers}), but its lead over "
                             f"{_name(runs[second])}, {fmt_signed_interval(lead['difference'], lead['ci95'])} points, "
                             "is within noise: no model is named best.")
        basis.append(_setting_line(runs, keep or group, noise))
    sentences.append("The comparison rests on " + "; and on ".join(basis) + ".")
    out = [r for g in groups for r in g if r in failed]
    if out:
        sentences.append("Left out of every ranking claim: " + "; ".join(
            f"{_name(runs[r])} (`{r}`), {failed[r]}" for r in out) + ".")
    caveat = CAVEAT + ("" if noise else UNMEASURED)
    if any_old:
        caveat += "; records made before intervals were added show n/a (see under Table I)"
    stale_here = sorted(set(stale or []) & {r for g in groups for r in g})
    if stale_here:
        caveat += f"; {len(stale_here)} of these runs are stale (see the warning below)"
    sentences.append(caveat + ".")
    if noise:
        sentences.append(noise_sentences(noise, leads + _reference_leads(runs, report, noise)))
    return " ".join(sentences)
