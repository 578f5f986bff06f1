"""Intervals in the stages' evaluation records, paired differences between records, and how both are printed.

An evaluation record (``metrics.json``) made by the stages holds, beside its percentages:
``"ci95": {"R1": [lo, hi], "mAP": [lo, hi]}`` (percent, a 95 % percentile bootstrap over query identities, see
:mod:`reidlib.evaluation.bootstrap`) and ``"per_query": {"pid": "...", "first_hit": "...", "ap": "..."}``: per
valid query, in query order, its identity, the 1-based rank of its first true match and its AP (fraction, 4
decimals), each a space-separated string (:func:`decode_per_query`). That is all a later paired comparison needs,
so records can be compared after the features are gone.
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


def _ap_text(x: float) -> str:
    return f"{x:.{AP_DECIMALS}f}".rstrip("0").rstrip(".") or "0"


def encode_per_query(pq: dict, with_pid: bool = True) -> dict[str, str]:
    """Per-query arrays (``pid``, ``first_hit``, ``ap``) as space-separated strings: one JSON line each, so an
    indented ``metrics.json`` stays small (AP rounded to 4 decimals)."""
    out = {"pid": " ".join(str(int(v)) for v in np.asarray(pq["pid"]))} if with_pid else {}
    out["first_hit"] = " ".join(str(int(v)) for v in np.asarray(pq["first_hit"]))
    out["ap"] = " ".join(_ap_text(float(v)) for v in np.asarray(pq["ap"], dtype=float))
    return out


def decode_per_query(block: dict) -> dict[str, np.ndarray]:
    """The arrays of :func:`encode_per_query` back (``pid``, ``first_hit`` int64; ``ap`` float64); lists pass too."""
    def arr(v, dtype):
        return np.array(v.split() if isinstance(v, str) else v, dtype=np.float64).astype(dtype)

    out = {"first_hit": arr(block["first_hit"], np.int64), "ap": arr(block["ap"], np.float64)}
    if "pid" in block:
        out["pid"] = arr(block["pid"], np.int64)
    return out


def interval_block(result: dict) -> dict:
    """``{"R1": [lo, hi], "mAP": [lo, hi]}`` in percent from an evaluate result computed with ``ci``."""
    return {"R1": [100.0 * v for v in result["ci"]["rank1"]], "mAP": [100.0 * v for v in result["ci"]["mAP"]]}


def record_extras(result: dict, with_pid: bool = True) -> dict:
    """``ci95`` (percent) and encoded ``per_query`` of an evaluate result computed with :func:`eval_kwargs`."""
    return {"ci95": interval_block(result), "per_query": encode_per_query(result["per_query"], with_pid)}


def eval_kwargs() -> dict:
    """Keywords for :func:`reidlib.evaluation.evaluate_features` that produce what :func:`record_extras` reads."""
    return {"ci": CI_LEVEL, "n_boot": N_BOOT, "seed": BOOT_SEED, "return_per_query": True}


def per_query_values(ev: dict, stat: str) -> tuple[np.ndarray, np.ndarray | None] | None:
    """(per-query values of ``stat`` as fractions, pids or None) from a record; None if it has no per-query data.

    ``stat``: ``"mAP"`` (AP per query) or ``"R<k>"`` (1.0 where the first true match is within the top k).
    """
    block = ev.get("per_query") if isinstance(ev, dict) else None
    if not block:
        return None
    pq = decode_per_query(block)
    if stat == "mAP":
        return pq["ap"], pq.get("pid")
    if stat.startswith("R") and stat[1:].isdigit():
        return (pq["first_hit"] <= int(stat[1:])).astype(float), pq.get("pid")
    raise ValueError(f"stat must be 'mAP' or 'R<k>' (e.g. 'R1'), got {stat!r}")


def paired(a: dict, b: dict, stat: str = "mAP", pids=None) -> dict | None:
    """Record ``a`` minus record ``b`` on ``stat`` in points, with a paired 95 % identity-bootstrap interval.

    ``pids``: the queries' identities where the records do not carry them (distance-study rows).
    Returns ``{"difference", "ci95": [lo, hi], "excludes_zero"}`` (percentage points), or None where either record
    lacks per-query data or the two were not made on the same queries (different identity lists).
    """
    got_a, got_b = per_query_values(a, stat), per_query_values(b, stat)
    if got_a is None or got_b is None:
        return None
    (va, pa), (vb, pb) = got_a, got_b
    ids = pa if pa is not None else pb if pb is not None else (None if pids is None else np.asarray(pids))
    if ids is None or len(va) != len(ids) or len(vb) != len(ids):
        return None
    if any(p is not None and not np.array_equal(p, ids) for p in (pa, pb)):
        return None
    res = paired_difference(va, vb, ids, ci=CI_LEVEL, n_boot=N_BOOT, seed=BOOT_SEED)
    diff = float(a[stat]) - float(b[stat]) if stat in a and stat in b else 100.0 * res["difference"]
    return {"difference": diff, "ci95": [100.0 * v for v in res["ci"]], "excludes_zero": res["excludes_zero"]}


def fmt_interval(ci: list | None) -> str:
    """``[lo, hi]`` at one decimal, or ``n/a``."""
    return f"[{ci[0]:.1f}, {ci[1]:.1f}]" if ci else NA


def fmt_value(ev: dict, stat: str) -> str:
    """A record's ``stat`` with its interval: ``"50.1 [47.3, 52.9]"``, or ``"50.1 [n/a]"`` for older records."""
    ci = (ev.get("ci95") or {}).get(stat)
    return f"{float(ev[stat]):.1f} " + (fmt_interval(ci) if ci else f"[{NA}]")


def fmt_pair(r1: float, m_ap: float) -> str:
    """Published rank-1 / mAP (%) without an interval: ``"43.0 / 41.0"``."""
    return f"{r1:.1f} / {m_ap:.1f}"


def fmt_record(ev: dict) -> str:
    """A record's rank-1 / mAP with their intervals: ``"50.1 [47.3, 52.9] / 47.1 [44.0, 50.2]"`` (``[n/a]`` for
    records made before intervals)."""
    return f"{fmt_value(ev, 'R1')} / {fmt_value(ev, 'mAP')}"


def fmt_signed(value: float) -> str:
    """A difference at one decimal with its sign (``"+2.6"``, ``"-0.4"``); one that rounds to zero is ``"+0.0"``."""
    text = f"{value:+.1f}"
    return "+0.0" if text == "-0.0" else text


def fmt_signed_interval(value: float, ci: list | None) -> str:
    """A difference with its interval, every bound signed: ``"+2.6 [+0.9, +4.3]"`` (``[n/a]`` without one)."""
    return f"{fmt_signed(value)} " + (f"[{fmt_signed(ci[0])}, {fmt_signed(ci[1])}]" if ci else f"[{NA}]")


def fmt_diff(res: dict | None, stat: str = "") -> str:
    """A paired difference as ``"+2.6 [+0.9, +4.3]"`` (``n/a`` when it could not be computed)."""
    if res is None:
        return NA
    return fmt_signed_interval(res["difference"], res["ci95"]) + (f" {stat}" if stat else "")


def has_intervals(ev: dict) -> bool:
    """True when the record carries ``ci95`` (made after intervals were added)."""
    return bool(isinstance(ev, dict) and ev.get("ci95"))
