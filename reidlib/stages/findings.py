"""What the report claims: which runs learned, which model is best and by how much, whether the paper's ranking holds.

Every claim rests on paired 95 % identity-bootstrap intervals (:mod:`reidlib.stages.uncertainty`): a model is
named best only where the interval of its lead over the runner-up excludes zero, and a run that failed the
"did it learn?" check is left out of every ranking claim. All numbers are percentages or percentage points.
"""
from __future__ import annotations

from itertools import combinations

import pandas as pd

from .uncertainty import fmt_interval, fmt_value, has_intervals, paired

NEAR_CHANCE_POINTS = 2.0  # a test rank-1 less than this many points above chance counts as near chance
MIN_SPREAD = 0.1  # feature spread below this: every image mapped to nearly the same feature (collapse)
PAPER_TIE_POINTS = 1.0  # two paper mAPs closer than this count as "close" in the paper's ranking


def learning_verdict(r1: float, chance: float | None, spread: float | None) -> str:
    """``"learned"``, ``"near chance"`` (test rank-1 < chance + 2 points; chance 0 where unknown) or
    ``"collapsed"`` (feature spread < 0.1)."""
    if spread is not None and spread < MIN_SPREAD:
        return "collapsed"
    if r1 - (chance or 0.0) < NEAR_CHANCE_POINTS:
        return "near chance"
    return "learned"


def failed_runs(learned: pd.DataFrame) -> dict[str, str]:
    """Run id -> reason, for the rows of a learning-check table whose verdict is not "learned"."""
    if learned is None or learned.empty or "verdict" not in learned.columns:
        return {}
    out = {}
    for row in learned.to_dict("records"):
        if row["verdict"] != "learned":
            chance = row.get("chance R1")
            where = f"chance {chance:.2f} %" if chance is not None else "chance unknown, taken as 0"
            reason = ("its test features have collapsed (spread {:.2f})".format(row["feature spread"])
                      if row["verdict"] == "collapsed" else
                      f"its test rank-1 ({row['test R1']:.1f} %) is within {NEAR_CHANCE_POINTS:g} points of "
                      f"chance ({where})")
            out[str(row["run"]).strip("`")] = reason
    return out


def _test(m: dict) -> dict:
    return m["evaluations"]["test"]


def _paper_model(m: dict) -> str | None:
    from .report import PAPER_MODEL_OF

    return PAPER_MODEL_OF.get(m.get("model_name", ""))


def _paper_map(model: str) -> float:
    """The paper's Market-1501 mAP (%) of one of its models (Table I)."""
    from .report import PAPER_TABLE_I

    return PAPER_TABLE_I[model]["Market-1501"][1]


def _setting_line(runs: dict, ids: list[str]) -> str:
    """data, init, epochs, input, hardware, precision and seeds of the runs ``ids``, each value once."""
    from .report import _setting

    def values(get) -> str:
        seen = list(dict.fromkeys(str(get(runs[r])) for r in ids))
        return seen[0] if len(seen) == 1 else " / ".join(seen)

    return (f"{values(lambda m: _test(m)['label'])} test split, init {values(lambda m: _setting(m)['init'])}, "
            f"{values(lambda m: _setting(m)['epochs'])} epochs, input {values(lambda m: _setting(m)['input'])}, "
            f"{values(lambda m: _setting(m)['hardware'])}, precision {values(_precision)}, seed "
            f"{values(lambda m: m['train'].get('seed', '-'))} (one training run per model)")


def _precision(m: dict) -> str:
    """The training precision: the recipe's, with ``auto`` resolved on a CPU whose run.json says whether it has
    native bf16 (bf16 autocast there, fp32 otherwise)."""
    chosen = str((m.get("train", {}).get("recipe") or {}).get("precision", "auto"))
    env = (m.get("run_info") or {}).get("environment") or {}
    if chosen != "auto" or str(m.get("train", {}).get("device", "")).startswith("cuda"):
        return chosen
    bf16 = env.get("cpu_native_bf16")
    return "auto" if bf16 is None else "bf16 autocast" if bf16 else "fp32"


def _name(m: dict) -> str:
    return m["model_label"]


def leader(runs: dict, ids: list[str]) -> dict:
    """The run with the highest test mAP among ``ids`` and its paired lead over the runner-up.

    Returns ``{"best", "runner_up", "lead"}`` (run ids; ``lead`` from :func:`reidlib.stages.uncertainty.paired`
    on mAP, None without per-query data or with one run).
    """
    order = sorted(ids, key=lambda r: -float(_test(runs[r])["mAP"]))
    if not order:
        return {"best": None, "runner_up": None, "lead": None}
    second = order[1] if len(order) > 1 else None
    lead = paired(_test(runs[order[0]]), _test(runs[second]), "mAP") if second else None
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


def ranking_paragraph(runs: dict, run_ids: list[str], failed: dict[str, str] | None = None) -> str:
    """Does the paper's ranking of its models (Table I, Market-1501 mAP) hold for the runs ``run_ids``?

    Works for any set of runs: runs in ``failed`` (run id -> reason, from :func:`failed_runs`) are listed but
    left out of the judgement; for every pair of the others whose models are in the paper, the paired mAP
    difference is compared with the paper's order (ahead when the paper's mAPs differ by 1 point or more, "close"
    otherwise; close pairs agree where their interval includes zero or lies within the leader's smallest lead).
    "It holds here" needs every pair to agree, "does not hold" any pair in the reverse order beyond noise, else
    "only in part".
    Records without per-query data get no verdict.
    """
    failed = failed or {}
    present = [rid for rid in run_ids if rid in runs]
    missing = [rid for rid in run_ids if rid not in runs]
    if not present:
        return "No run of the ranking has results yet (" + ", ".join(f"`{r}`" for r in run_ids) + ")."
    from .report import _setting

    rows = sorted(present, key=lambda r: -float(_test(runs[r])["mAP"]))
    data = _test(runs[rows[0]])["label"]
    listed = "; ".join(
        f"{_name(runs[r])} {fmt_value(_test(runs[r]), 'R1')} / {fmt_value(_test(runs[r]), 'mAP')} "
        f"({runs[r]['train'].get('epochs_completed')} epochs, "
        f"{float(runs[r]['train'].get('train_seconds', 0.0) or 0.0) / 60:.0f} min, {_setting(runs[r])['input']})"
        for r in rows)
    head = (f"On {data}, rank-1 / mAP (%) [95 % CI] on the test split, best mAP first: {listed}. The paper's ranking "
            f"on Market-1501 puts BoT ResNet50 ahead ({_paper_map('BoT ResNet50 (baseline)')} mAP) and OSNet "
            f"x0.25 and the MobileNetV3 model close behind ({_paper_map('OSNet x0.25')} and "
            f"{_paper_map('MobileNetV3 siamese (custom)')}).")
    if missing:
        return head + " The ranking cannot be judged yet: no results for " + ", ".join(f"`{r}`" for r in missing) + "."
    left_out = [r for r in rows if r in failed]
    note = "".join(f" {_name(runs[r])} is left out of the judgement: {failed[r]}." for r in left_out)
    judged = [r for r in rows if r not in failed and _paper_model(runs[r])]
    if len(judged) < 2:
        return head + note + " Fewer than two runs of the paper's models remain, so its ranking cannot be judged."
    pairs = []
    for a, b in combinations(judged, 2):
        gap = _paper_map(_paper_model(runs[a])) - _paper_map(_paper_model(runs[b]))
        if gap < 0 or (abs(gap) < PAPER_TIE_POINTS and float(_test(runs[a])["mAP"]) < float(_test(runs[b])["mAP"])):
            a, b, gap = b, a, -gap  # a is the paper's leader of the pair (or, when close, ours)
        pairs.append((a, b, gap, paired(_test(runs[a]), _test(runs[b]), "mAP")))
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


def _candidates(runs: dict, report: dict) -> list[list[str]]:
    """Groups of run ids compared with each other: the profile's ranking, else the 10_train runs per test set."""
    if report.get("ranking"):
        return [[r for r in report["ranking"] if r in runs]]
    groups: dict[str, list[str]] = {}
    for rid, m in sorted(runs.items()):
        if rid.startswith("10_train/") and (m.get("evaluations") or {}).get("test"):
            groups.setdefault(_test(m)["label"], []).append(rid)
    return [g for g in sorted(groups.values(), key=len, reverse=True) if len(g) >= 2][:2]


def at_a_glance(runs: dict, report: dict | None, failed: dict[str, str], profile: str,
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
        data = _test(runs[group[0]])["label"]
        any_old |= not all(has_intervals(_test(runs[r])) for r in group)
        win = leader(runs, keep)
        best = win["best"]
        if best is None:
            sentences.append(f"On {data} no model passed the \"did it learn?\" check, so none is named best.")
            continue
        ev = _test(runs[best])
        numbers = f"rank-1 {fmt_value(ev, 'R1')} and mAP {fmt_value(ev, 'mAP')} %"
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
