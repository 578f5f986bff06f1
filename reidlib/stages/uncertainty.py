"""Intervals in the stages' evaluation records, paired differences between records, and how both are printed.

An evaluation record (``metrics.json``) made by the stages holds, beside its percentages:
``"ci95": {"R1": [lo, hi], "mAP": [lo, hi]}`` (percent, a 95 % percentile bootstrap over query identities, see
:mod:`reidlib.evaluation.bootstrap`) and ``"per_query": {"pid": [...], "first_hit": [...], "ap": [...]}``: per
valid query, its identity, the 1-based rank of its first true match and its AP (fraction, 4 decimals). Those three
lists are all a later paired comparison needs, so records can be compared after the features are gone.
Records written before intervals existed have neither; they print ``n/a``.
"""
from __future__ import annotations

import numpy as np

from reidlib.evaluation.bootstrap import paired_difference

CI_LEVEL = 0.95
N_BOOT = 1000
BOOT_SEED = 0
AP_DECIMALS = 4
NA = "n/a"


def record_extras(result: dict) -> dict:
    """``ci95`` (percent) and ``per_query`` of an evaluate result computed with ``ci`` and ``return_per_query``."""
    pq = result["per_query"]
    return {"ci95": {"R1": [100.0 * v for v in result["ci"]["rank1"]],
                     "mAP": [100.0 * v for v in result["ci"]["mAP"]]},
            "per_query": {"pid": np.asarray(pq["pid"]).astype(int).tolist(),
                          "first_hit": np.asarray(pq["first_hit"]).astype(int).tolist(),
                          "ap": np.round(np.asarray(pq["ap"], dtype=float), AP_DECIMALS).tolist()}}


def eval_kwargs() -> dict:
    """Keywords for :func:`reidlib.evaluation.evaluate_features` that produce what :func:`record_extras` reads."""
    return {"ci": CI_LEVEL, "n_boot": N_BOOT, "seed": BOOT_SEED, "return_per_query": True}


def per_query_values(ev: dict, stat: str) -> np.ndarray | None:
    """Per-query values (fractions) of ``stat`` ("R1", "R5", ... or "mAP") from a record, None if it has none."""
    pq = ev.get("per_query") if isinstance(ev, dict) else None
    if not pq:
        return None
    if stat == "mAP":
        return np.asarray(pq["ap"], dtype=float)
    if stat.startswith("R") and stat[1:].isdigit():
        return (np.asarray(pq["first_hit"]) <= int(stat[1:])).astype(float)
    raise ValueError(f"stat must be 'mAP' or 'R<k>' (e.g. 'R1'), got {stat!r}")


def paired(a: dict, b: dict, stat: str = "mAP") -> dict | None:
    """Record ``a`` minus record ``b`` on ``stat`` in points, with a paired 95 % identity-bootstrap interval.

    Returns ``{"difference", "ci95": [lo, hi], "excludes_zero"}`` (percentage points), or None where either record
    lacks per-query data or the two were not made on the same queries (different identity lists).
    """
    va, vb = per_query_values(a, stat), per_query_values(b, stat)
    if va is None or vb is None or a["per_query"]["pid"] != b["per_query"]["pid"]:
        return None
    res = paired_difference(va, vb, np.asarray(a["per_query"]["pid"]), ci=CI_LEVEL, n_boot=N_BOOT, seed=BOOT_SEED)
    diff = float(a[stat]) - float(b[stat]) if stat in a and stat in b else 100.0 * res["difference"]
    return {"difference": diff, "ci95": [100.0 * v for v in res["ci"]], "excludes_zero": res["excludes_zero"]}


def fmt_interval(ci: list | None) -> str:
    """``[lo, hi]`` at one decimal, or ``n/a``."""
    return f"[{ci[0]:.1f}, {ci[1]:.1f}]" if ci else NA


def fmt_value(ev: dict, stat: str) -> str:
    """A record's ``stat`` with its interval: ``"50.1 [47.3, 52.9]"``, or ``"50.1 [n/a]"`` for older records."""
    ci = (ev.get("ci95") or {}).get(stat)
    return f"{float(ev[stat]):.1f} " + (fmt_interval(ci) if ci else f"[{NA}]")


def fmt_diff(res: dict | None, stat: str = "") -> str:
    """A paired difference as ``"+2.6 [+0.9, +4.3]"`` (``n/a`` when it could not be computed)."""
    if res is None:
        return NA
    lo, hi = res["ci95"]
    return f"{res['difference']:+.1f} [{lo:+.1f}, {hi:+.1f}]" + (f" {stat}" if stat else "")


def has_intervals(ev: dict) -> bool:
    """True when the record carries ``ci95`` (made after intervals were added)."""
    return bool(isinstance(ev, dict) and ev.get("ci95"))
