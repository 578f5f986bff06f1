"""Percentile bootstrap intervals that resample query identities, and paired differences on the same queries.

Queries of one identity share a person's appearance, so they are not independent draws; each bootstrap replicate
draws as many identities as there are (with replacement) and takes every valid query of each drawn identity, as
often as the identity was drawn. A replicate's statistic is the mean of a per-query value over those queries
(e.g. hit at rank 1 -> rank-1, AP -> mAP).

The draws are reproducible from ``seed`` alone: with ``ids = np.unique(pids)`` (sorted), replicate ``b`` draws
identities ``ids[draws[b]]`` where ``draws = np.random.default_rng(seed).integers(0, len(ids), (n_boot, len(ids)))``.
Every statistic of one call, and both arms of :func:`paired_difference`, use the same draws. The computation is
vectorised: per-identity sums and counts, then one (n_boot, n_ids) weight matrix (the number of times each
identity was drawn) times those sums.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

DEFAULT_N_BOOT = 1000


def check_ci(ci: float, n_boot: int) -> None:
    """Raise a ``ValueError`` naming the bad argument unless 0 < ci < 1 and n_boot >= 1."""
    if not (isinstance(ci, (int, float)) and 0.0 < float(ci) < 1.0):
        raise ValueError(f"ci must be a confidence level between 0 and 1 (e.g. 0.95), got {ci!r}")
    if int(n_boot) != n_boot or int(n_boot) < 1:
        raise ValueError(f"n_boot must be a positive integer (e.g. 1000), got {n_boot!r}")


def identity_draws(n_ids: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """(n_boot, n_ids) int64 indices into the sorted unique identities: replicate b draws ``draws[b]``."""
    return np.random.default_rng(seed).integers(0, n_ids, size=(int(n_boot), n_ids))


def identity_weights(draws: np.ndarray, n_ids: int) -> np.ndarray:
    """(n_boot, n_ids) float64: how many times replicate b drew identity i (each row sums to n_ids)."""
    n_boot = draws.shape[0]
    flat = (draws + n_ids * np.arange(n_boot)[:, None]).ravel()
    return np.bincount(flat, minlength=n_boot * n_ids).reshape(n_boot, n_ids).astype(np.float64)


def _as_values(name: str, values, n: int) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.shape[0] != n:
        raise ValueError(f"{name} must be 1-D with one value per query ({n}), got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError(f"{name} holds NaN or inf: pass only the valid queries (those with a true match in the "
                         "gallery), e.g. drop the NaN entries of all_AP together with their pids")
    return v


def _as_pids(pids) -> np.ndarray:
    p = np.asarray(pids)
    if p.ndim != 1 or p.shape[0] == 0:
        raise ValueError(f"pids must be a non-empty 1-D array with one identity per query, got shape {p.shape}")
    return p


def bootstrap_means(values: Mapping[str, np.ndarray], pids, n_boot: int = DEFAULT_N_BOOT,
                    seed: int = 0) -> dict[str, np.ndarray]:
    """Bootstrap replicates (n_boot,) of the mean of each per-query array in ``values``, resampling identities.

    Args:
        values: name -> per-query values (Q,), e.g. ``{"rank1": hit_at_1, "mAP": ap}``; finite numbers.
        pids: (Q,) identity of each query.
        n_boot: number of replicates.
        seed: seed of the identity draws (see the module docstring); the same for every entry of ``values``.

    Returns:
        name -> float64 array (n_boot,) of replicate means, in the units of the values.
    """
    p = _as_pids(pids)
    check_ci(0.5, n_boot)
    ids, inverse = np.unique(p, return_inverse=True)
    n_ids = len(ids)
    counts = np.bincount(inverse, minlength=n_ids).astype(np.float64)
    weights = identity_weights(identity_draws(n_ids, n_boot, seed), n_ids)
    queries = weights @ counts  # (n_boot,) queries in each replicate; > 0, every identity has a query
    out = {}
    for name, vals in values.items():
        sums = np.bincount(inverse, weights=_as_values(name, vals, len(p)), minlength=n_ids)
        out[name] = (weights @ sums) / queries
    return out


def percentile_interval(replicates: np.ndarray, ci: float = 0.95) -> list[float]:
    """``[lo, hi]``: the (1 - ci) / 2 and (1 + ci) / 2 percentiles of ``replicates`` (linear interpolation)."""
    check_ci(ci, 1)
    lo, hi = np.percentile(np.asarray(replicates, dtype=np.float64), [50 * (1 - ci), 50 * (1 + ci)])
    return [float(lo), float(hi)]


def bootstrap_ci(values: Mapping[str, np.ndarray], pids, ci: float = 0.95, n_boot: int = DEFAULT_N_BOOT,
                 seed: int = 0) -> dict[str, list[float]]:
    """name -> ``[lo, hi]`` percentile interval of the mean of each per-query array, resampling identities.

    All statistics share the same draws. Units are those of the values (fractions in, fractions out).
    """
    check_ci(ci, n_boot)
    reps = bootstrap_means(values, pids, n_boot=n_boot, seed=seed)
    return {name: percentile_interval(r, ci) for name, r in reps.items()}


def paired_difference(a, b, pids, ci: float = 0.95, n_boot: int = DEFAULT_N_BOOT, seed: int = 0) -> dict:
    """Mean of ``a`` minus mean of ``b`` over the same queries, with a paired identity-bootstrap interval.

    Args:
        a, b: (Q,) per-query values of two systems on the same queries in the same order (e.g. AP of two models,
            or hit at rank 1 under two distances); finite numbers.
        pids: (Q,) identity of each query.
        ci, n_boot, seed: confidence level, replicates and seed of the identity draws.

    Returns:
        ``{"difference": mean(a) - mean(b), "ci": [lo, hi], "excludes_zero": bool, "num_queries": Q,
        "num_ids": distinct identities}``; each replicate resamples the same identities for both arms, so the
        interval is that of the per-query differences' mean. Units are those of the values.
    """
    p = _as_pids(pids)
    check_ci(ci, n_boot)
    diff = _as_values("a", a, len(p)) - _as_values("b", b, len(p))
    lo, hi = bootstrap_ci({"d": diff}, p, ci=ci, n_boot=n_boot, seed=seed)["d"]
    return {"difference": float(diff.mean()), "ci": [lo, hi], "excludes_zero": bool(lo > 0 or hi < 0),
            "num_queries": int(len(p)), "num_ids": int(len(np.unique(p)))}
