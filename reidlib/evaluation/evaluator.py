"""From query / gallery features to CMC, mAP and mINP, chunked over queries so memory stays bounded.

LaST's test split (10,176 x 125,353, 512-d) would need a 5 GB float32 distance matrix and a 10 GB argsort; here
each chunk of queries is turned into distances, ranked and reduced to a few numbers per query before the next
chunk is computed (see ``benchmarks/eval_speed.py`` for the measured peak memory).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from reidlib.evaluation.bootstrap import DEFAULT_N_BOOT, check_ci
from reidlib.evaluation.distances import GalleryDistance, as_feature_pair, check_metric
from reidlib.evaluation.rank import (
    AP_FORMS,
    PROTOCOLS,
    RankAccumulator,
    as_ids,
    check_choice,
    default_chunk_size,
    evaluate,
)
from reidlib.evaluation.rerank import query_expansion, re_ranking

RERANK_METHODS = ("k-reciprocal", "aqe")


def _rerank_spec(rerank: Any) -> tuple[str | None, dict]:
    """Normalise ``rerank``: None/False, True or "k-reciprocal", "aqe", or {"method": ..., **kwargs}."""
    if rerank is None or rerank is False:
        return None, {}
    if rerank is True:
        return "k-reciprocal", {}
    if isinstance(rerank, str):
        check_choice("rerank method", rerank, RERANK_METHODS)
        return rerank, {}
    if isinstance(rerank, dict):
        kwargs = dict(rerank)
        method = kwargs.pop("method", "k-reciprocal")
        check_choice("rerank method", method, RERANK_METHODS)
        return method, kwargs
    raise TypeError(f"rerank must be None, True, one of {RERANK_METHODS} or a dict with 'method', got {rerank!r}")


def evaluate_features(qf: np.ndarray | torch.Tensor, gf: np.ndarray | torch.Tensor, q_pids, g_pids, q_camids,
                      g_camids, metric: str = "euclidean", normalize: bool = True, p: float = 3, max_rank: int = 50,
                      protocol: str = "market", ap: str = "mean", chunk_size: int | None = None, rerank: Any = None,
                      device: str | torch.device | None = None, return_all_ap: bool = False,
                      ci: float | None = None, n_boot: int = DEFAULT_N_BOOT, seed: int = 0,
                      return_per_query: bool = False) -> dict:
    """Rank the gallery for every query and return CMC / mAP / mINP, one query chunk at a time.

    Args:
        qf, gf: query (Q, D) and gallery (G, D) features (numpy or torch).
        q_pids, g_pids, q_camids, g_camids: identity and camera ids (lengths Q, G, Q, G).
        metric, p, normalize: see :func:`reidlib.evaluation.distance` (``normalize=True``: L2-normalise first).
        max_rank, protocol, ap: see :func:`reidlib.evaluation.evaluate`.
        chunk_size: queries per chunk (default: about 4M distances per chunk, e.g. 263 queries at Market size).
        rerank: ``None``; ``"k-reciprocal"`` or ``True`` (:func:`re_ranking` with the same metric and
            normalisation, k1=20, k2=6, lambda=0.3; it needs the (Q, G) matrix, so Market-size, not LaST-size);
            ``"aqe"`` (:func:`query_expansion`, k=5, alpha=3); or a dict ``{"method": ..., **kwargs}``.
        device: compute device for distances and ranking (default: CUDA when available).
        return_all_ap: also return ``all_AP`` per query (NaN where skipped).
        ci, n_boot, seed, return_per_query: an identity-bootstrap interval for rank-1 and mAP, and the per-query
            values a paired comparison needs; see :func:`reidlib.evaluation.evaluate`.

    Returns:
        :func:`evaluate`'s dict (fractions in [0, 1]) plus the settings that produced it: ``metric``,
        ``normalize``, ``p`` (None unless minkowski), ``protocol``, ``ap``, ``rerank``, ``num_query``, ``num_gallery``.
        With ``ci``: ``"ci": {"rank1": [lo, hi], "mAP": [lo, hi]}`` (fractions).
    """
    check_metric(metric, p)
    check_choice("protocol", protocol, PROTOCOLS)
    check_choice("ap", ap, AP_FORMS)
    method, rr_kwargs = _rerank_spec(rerank)
    q, g = as_feature_pair(qf, gf)
    n_q, n_g = q.shape[0], g.shape[0]
    qp, qc = as_ids(q_pids, "q_pids", n_q), as_ids(q_camids, "q_camids", n_q)
    gp, gc = as_ids(g_pids, "g_pids", n_g), as_ids(g_camids, "g_camids", n_g)
    if int(max_rank) < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    if ci is not None:
        check_ci(ci, n_boot)
    extra = {"ci": ci, "n_boot": n_boot, "seed": seed, "return_per_query": return_per_query}

    if method == "k-reciprocal":
        distmat = re_ranking(q, g, metric=metric, p=p, normalize=normalize, device=device, **rr_kwargs)
        result = evaluate(distmat, qp, gp, qc, gc, max_rank=max_rank, protocol=protocol, ap=ap,
                          return_all_ap=return_all_ap, chunk_size=chunk_size, **extra)
    else:
        if method == "aqe":
            q = query_expansion(q, g, **rr_kwargs)
        dist = GalleryDistance(g, metric=metric, p=p, normalize=normalize, device=device)
        acc = RankAccumulator(gp, gc, protocol, ap)
        step = int(chunk_size) if chunk_size else default_chunk_size(n_g)
        if step < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        acc.consume((dist(q[s:s + step]), qp[s:s + step], qc[s:s + step]) for s in range(0, n_q, step))
        result = acc.result(int(max_rank), return_all_ap, **extra)
    result.update(metric=metric, normalize=bool(normalize), p=float(p) if metric == "minkowski" else None,
                  protocol=protocol, ap=ap, rerank=method, num_query=n_q, num_gallery=n_g)
    return result
