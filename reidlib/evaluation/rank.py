"""CMC, mAP and mINP from a query x gallery distance matrix, exactly as a stable per-row argsort defines them.

No argsort is computed. Only the ranks of each query's same-identity gallery items are needed: per chunk of
queries the rows are sorted by value (numpy's SIMD sort, several times cheaper than ``np.argsort``), each
candidate's rank is the number of smaller values (``searchsorted``), and where a candidate's value is tied with
other items, the tied items at lower gallery indices are added, which is exactly a stable sort's order. Chunks
rank on a small thread pool (numpy releases the GIL); everything per chunk is numpy, because thousands of small
OpenMP regions stall when the 2-core CPU is shared. Memory stays at a few copies of one chunk.

Conventions (torchreid / BoT / the paper code, see ``../shared/paper/reproduction_notes.md`` §3):
- ``protocol="market"``: gallery items with the query's pid *and* camid are junk (removed from the ranking);
  ``protocol="last"``: no camera filter, every gallery item with the query's pid is a positive.
- Queries without a positive are skipped; ``num_valid_queries`` counts the rest.
- ``ap="mean"``: non-interpolated AP, mean of precision at each hit (torchreid, BoT, paper code);
  ``ap="trapezoid"``: the official Market-1501 MATLAB ``compute_AP.m`` (mean of the precisions before and at each hit).
- mINP: mean over queries of (number of positives) / (1-based rank of the last positive) (Ye et al., TPAMI 2021).
- All results are fractions in [0, 1]; reports multiply by 100.
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterable, Sequence

import numpy as np
import torch

from reidlib.core import PROTOCOLS, check_choice  # noqa: F401  (re-exported)
from reidlib.evaluation.bootstrap import DEFAULT_N_BOOT, bootstrap_ci, check_ci

AP_FORMS = ("mean", "trapezoid")
_PAD, _POS, _JUNK = 0, 1, 2


def default_chunk_size(num_gallery: int, budget_elems: int = 1 << 22) -> int:
    """Query rows per chunk so that one (rows, G) tile holds about ``budget_elems`` values (16 MiB as float32)."""
    return max(1, min(4096, budget_elems // max(1, num_gallery)))


def as_ids(x: Sequence[int] | np.ndarray | torch.Tensor, name: str, length: int) -> np.ndarray:
    """pids / camids as a 1-D int64 array of the given length (clear error otherwise)."""
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if a.ndim != 1 or a.shape[0] != length:
        raise ValueError(f"{name} must be 1-D with {length} entries (one per distance-matrix row/column), "
                         f"got shape {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        if not np.all(np.mod(a, 1) == 0):
            raise ValueError(f"{name} must hold integer ids, got dtype {a.dtype}")
    return a.astype(np.int64, copy=False)


def stable_topk(d: np.ndarray | torch.Tensor, k: int) -> np.ndarray:
    """Column indices (b, k) of the k smallest entries of each row of ``d`` (b, G), in a stable sort's order.

    Equal values keep their column order, as ``np.argsort(kind="stable")[:, :k]`` would, at the cost of a
    ``np.partition`` (SIMD) and two comparisons per element. NaN counts as larger than everything.
    """
    x = as_numpy_rows(d)
    k = min(int(k), x.shape[1])
    if k == x.shape[1] or k == 0:
        return np.argsort(x, axis=1, kind="stable")[:, :k]
    kth = np.partition(x, k - 1, axis=1)[:, k - 1 : k]  # the k-th smallest value per row
    keep = x < kth
    tied = x == kth
    need = k - keep.sum(axis=1)
    crowded = np.flatnonzero(tied.sum(axis=1) > need)  # more items equal to the k-th value than slots left
    tied[crowded] = False
    for r in crowded:
        tied[r, np.flatnonzero(x[r] == kth[r, 0])[: need[r]]] = True
    keep |= tied
    if np.isnan(kth).any():  # fewer than k non-NaN values: fill with the NaN columns in order
        for r in np.flatnonzero(np.isnan(kth[:, 0])):
            keep[r, np.flatnonzero(np.isnan(x[r]))[: k - keep[r].sum()]] = True
    cols = np.nonzero(keep)[1].reshape(x.shape[0], k)  # ascending columns within each row
    order = np.argsort(np.take_along_axis(x, cols, axis=1), axis=1, kind="stable")
    return np.take_along_axis(cols, order, axis=1)


def as_numpy_rows(d: np.ndarray | torch.Tensor) -> np.ndarray:
    """A chunk of distance rows as a float32/float64 numpy array on the CPU (float16/bfloat16 widen exactly)."""
    if isinstance(d, torch.Tensor):
        d = d.detach()
        if d.dtype not in (torch.float32, torch.float64):
            d = d.float() if d.is_floating_point() else d.double()
        return d.cpu().numpy()
    d = np.asarray(d)
    return d if d.dtype in (np.float32, np.float64) else d.astype(np.float64 if d.dtype.itemsize > 4 else np.float32)


def _candidate_ranks(d: np.ndarray, cand: np.ndarray, kind: np.ndarray) -> np.ndarray:
    """0-based position of each candidate gallery item in a stable ascending sort of its row.

    d: (b, G) distances; cand: (b, P) gallery indices; kind: (b, P) with ``_PAD`` entries ignored.
    Sorting the values (no indices) is several times cheaper than an argsort; a candidate's position is the number
    of smaller values, plus, only where its value is tied, the number of equal values at lower gallery indices.
    """
    srt = np.sort(d, axis=1)  # NaN sorts last
    if np.isnan(srt[:, -1]).any():
        raise ValueError("the distance matrix contains NaN; check the features (zero vectors, inf, overflow)")
    cand_d = np.take_along_axis(d, cand, axis=1)
    below, upto = np.empty(cand.shape, np.int64), np.empty(cand.shape, np.int64)
    for r in range(d.shape[0]):
        below[r] = np.searchsorted(srt[r], cand_d[r], side="left")
        upto[r] = np.searchsorted(srt[r], cand_d[r], side="right")
    for r, k in zip(*np.nonzero((upto - below > 1) & (kind != _PAD))):  # value shared with other items: rare
        below[r, k] += np.count_nonzero(d[r, : cand[r, k]] == cand_d[r, k])
    return below


class GalleryIndex:
    """Gallery pids grouped by identity, so each query's same-identity items are found without a gallery scan."""

    def __init__(self, g_pids: np.ndarray, g_camids: np.ndarray, protocol: str = "market") -> None:
        check_choice("protocol", protocol, PROTOCOLS)
        self.order = np.argsort(g_pids, kind="stable")
        self.sorted_pids = g_pids[self.order]
        self.g_camids = g_camids
        self.protocol = protocol

    def candidates(self, q_pids: np.ndarray, q_camids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Same-pid gallery indices per query, padded: ``cand`` (b, P) int64 and ``kind`` (b, P) int8 (pad/pos/junk)."""
        start = np.searchsorted(self.sorted_pids, q_pids, side="left")
        count = np.searchsorted(self.sorted_pids, q_pids, side="right") - start
        slots = np.arange(max(int(count.max(initial=0)), 1))
        real = slots[None, :] < count[:, None]
        cand = self.order[np.where(real, start[:, None] + slots, 0)]
        kind = np.where(real, _POS, _PAD).astype(np.int8)
        if self.protocol == "market":
            kind[real & (self.g_camids[cand] == q_camids[:, None])] = _JUNK
        return cand.astype(np.int64), kind


def chance_rank1(q_pids, g_pids, q_camids, g_camids, protocol: str = "market") -> float:
    """Expected rank-1 (fraction) of a random ranking: mean over queries with a true match of
    (true matches) / (ranked gallery items), with same-pid same-camera items removed under ``"market"``."""
    check_choice("protocol", protocol, PROTOCOLS)
    qp, gp = as_ids(q_pids, "q_pids", len(q_pids)), as_ids(g_pids, "g_pids", len(g_pids))
    qc, gc = as_ids(q_camids, "q_camids", len(qp)), as_ids(g_camids, "g_camids", len(gp))
    _, kind = GalleryIndex(gp, gc, protocol).candidates(qp, qc)
    n_pos, n_junk = (kind == _POS).sum(axis=1), (kind == _JUNK).sum(axis=1)
    valid = n_pos > 0
    return float(np.mean(n_pos[valid] / (len(gp) - n_junk[valid]))) if valid.any() else float("nan")


def chunk_stats(d: np.ndarray, cand: np.ndarray, kind: np.ndarray, ap: str) -> dict[str, np.ndarray]:
    """Per-query first-hit rank, AP and INP for one chunk of distance rows.

    Args:
        d: (b, G) float32 or float64 distances.
        cand, kind: from :meth:`GalleryIndex.candidates`.
        ap: ``"mean"`` or ``"trapezoid"``.

    Returns:
        arrays of length b: ``first`` (0-based rank of the first positive among non-junk items),
        ``ap``, ``inp`` and ``valid`` (the query has at least one positive).
    """
    ranks = np.where(kind == _PAD, d.shape[1] + 1, _candidate_ranks(d, cand, kind))
    order = np.argsort(ranks, axis=1, kind="stable")
    ranks, kind = np.take_along_axis(ranks, order, axis=1), np.take_along_axis(kind, order, axis=1)
    is_pos, is_junk = kind == _POS, kind == _JUNK
    valid_rank = (ranks - (np.cumsum(is_junk, axis=1) - is_junk)).astype(np.float64)  # rank among non-junk items
    hit = np.cumsum(is_pos, axis=1).astype(np.float64)  # 1-based index of each positive
    n_pos = is_pos.sum(axis=1)
    prec = hit / (valid_rank + 1)
    if ap == "mean":
        terms = prec
    else:  # trapezoid: average of the precision just before the hit (1.0 at rank 0) and at the hit
        terms = (np.where(valid_rank > 0, (hit - 1) / np.maximum(valid_rank, 1), 1.0) + prec) / 2
    last = np.where(is_pos, valid_rank, -1.0).max(axis=1)
    return {"first": np.where(is_pos, valid_rank, np.inf).min(axis=1),
            "ap": np.where(is_pos, terms, 0.0).sum(axis=1) / np.maximum(n_pos, 1),
            "inp": n_pos / np.maximum(last + 1, 1), "valid": n_pos > 0}


class RankAccumulator:
    """Collects :func:`chunk_stats` over query chunks and reduces them to CMC / mAP / mINP."""

    def __init__(self, g_pids: np.ndarray, g_camids: np.ndarray, protocol: str = "market", ap: str = "mean") -> None:
        check_choice("ap", ap, AP_FORMS)
        self.index = GalleryIndex(g_pids, g_camids, protocol)
        self.ap = ap
        self.parts: list[dict[str, np.ndarray]] = []

    def stats(self, d: np.ndarray | torch.Tensor, q_pids: np.ndarray, q_camids: np.ndarray) -> dict[str, np.ndarray]:
        """:func:`chunk_stats` of one chunk: ``d`` (b, G) distances of queries ``q_pids`` / ``q_camids`` (length b)."""
        cand, kind = self.index.candidates(q_pids, q_camids)
        return {**chunk_stats(as_numpy_rows(d), cand, kind, self.ap), "pid": np.asarray(q_pids)}

    def consume(self, chunks: Iterable[tuple[np.ndarray | torch.Tensor, np.ndarray, np.ndarray]]) -> None:
        """Rank ``(d, q_pids, q_camids)`` chunks on ``torch.get_num_threads()`` threads, keeping their order.

        numpy's sort releases the GIL, so chunks rank in parallel; while they do, the caller's generator may compute
        the next distance chunk. At most threads + 1 chunks are held at a time.
        """
        workers = max(1, torch.get_num_threads())
        with ThreadPoolExecutor(max_workers=workers) as pool:
            pending: deque[Future] = deque()
            for d, q_pids, q_camids in chunks:
                pending.append(pool.submit(self.stats, d, q_pids, q_camids))
                if len(pending) > workers:
                    self.parts.append(pending.popleft().result())
            while pending:
                self.parts.append(pending.popleft().result())

    def result(self, max_rank: int, return_all_ap: bool = False, ci: float | None = None,
               n_boot: int = DEFAULT_N_BOOT, seed: int = 0, return_per_query: bool = False) -> dict:
        """``{"cmc", "mAP", "mINP", "num_valid_queries"}`` (+ ``all_AP``, NaN for skipped queries; + ``ci`` and
        ``per_query``, see :func:`evaluate`)."""
        parts = {k: np.concatenate([p[k] for p in self.parts]) for k in ("first", "ap", "inp", "valid", "pid")}
        valid = parts["valid"]
        n_valid = int(valid.sum())
        if n_valid == 0:
            raise ValueError("no query has a positive in the gallery (after removing same-camera matches); "
                             "check pids/camids and the protocol ('market' or 'last')")
        first = np.minimum(parts["first"][valid], max_rank).astype(np.int64)
        cmc = np.cumsum(np.bincount(first, minlength=max_rank + 1)[:max_rank]) / n_valid
        out = {"cmc": cmc.astype(np.float64), "mAP": float(parts["ap"][valid].mean()),
               "mINP": float(parts["inp"][valid].mean()), "num_valid_queries": n_valid}
        if return_all_ap:
            out["all_AP"] = np.where(valid, parts["ap"], np.nan)
        pids, first_hit, ap = parts["pid"][valid], parts["first"][valid].astype(np.int64) + 1, parts["ap"][valid]
        if ci is not None:
            out["ci"] = bootstrap_ci({"rank1": first_hit == 1, "mAP": ap}, pids, ci=ci, n_boot=n_boot, seed=seed)
        if return_per_query:
            out["per_query"] = {"pid": pids, "first_hit": first_hit, "ap": ap}
        return out


def evaluate(distmat: np.ndarray | torch.Tensor, q_pids, g_pids, q_camids, g_camids, max_rank: int = 50,
             protocol: str = "market", ap: str = "mean", return_all_ap: bool = False,
             chunk_size: int | None = None, ci: float | None = None, n_boot: int = DEFAULT_N_BOOT, seed: int = 0,
             return_per_query: bool = False) -> dict:
    """CMC, mAP and mINP of a (Q, G) distance matrix (smaller = more similar).

    Args:
        distmat: (Q, G) numpy array or torch tensor (CPU or CUDA; ranked on the CPU chunk by chunk), float32 or
            float64 (lower precisions widen exactly). NaN raises.
        q_pids, q_camids: length-Q identity and camera ids of the queries; g_pids, g_camids: length G.
        max_rank: length of the returned CMC curve (ranks 1..max_rank; entries past the gallery size stay at 1.0).
        protocol: ``"market"`` (same pid + same camid gallery items ignored) or ``"last"`` (no camera filter).
        ap: ``"mean"`` (non-interpolated, torchreid/BoT) or ``"trapezoid"`` (official Market-1501 MATLAB).
        return_all_ap: also return ``all_AP`` (length Q, NaN for queries without a valid match).
        chunk_size: query rows ranked at a time (default: about 4M distances per chunk).
        ci: confidence level (e.g. 0.95) of a percentile bootstrap interval for rank-1 and mAP that resamples
            query identities (:mod:`reidlib.evaluation.bootstrap`); ``None`` (default) computes none.
        n_boot, seed: bootstrap replicates and the seed of their identity draws (used only with ``ci``).
        return_per_query: also return ``per_query``: ``{"pid", "first_hit", "ap"}``, arrays over the valid
            queries in query order: identity, 1-based rank of the first true match, AP (fraction); what a later
            paired comparison (:func:`reidlib.evaluation.bootstrap.paired_difference`) needs.

    Returns:
        ``{"cmc": float64 array (max_rank,), "mAP": float, "mINP": float, "num_valid_queries": int}``, all
        fractions in [0, 1], plus ``"ci": {"rank1": [lo, hi], "mAP": [lo, hi]}`` (fractions) with ``ci``.
        Ties are broken by gallery index (a stable sort), so results are deterministic.
    """
    check_choice("protocol", protocol, PROTOCOLS)
    check_choice("ap", ap, AP_FORMS)
    d = distmat.detach() if isinstance(distmat, torch.Tensor) else np.asarray(distmat)
    if d.ndim != 2 or d.shape[0] == 0 or d.shape[1] == 0:
        raise ValueError(f"distmat must be a non-empty 2-D (Q, G) matrix, got shape {tuple(d.shape)}")
    if int(max_rank) < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    if ci is not None:
        check_ci(ci, n_boot)
    n_q, n_g = d.shape
    qp, qc = as_ids(q_pids, "q_pids", n_q), as_ids(q_camids, "q_camids", n_q)
    acc = RankAccumulator(as_ids(g_pids, "g_pids", n_g), as_ids(g_camids, "g_camids", n_g), protocol, ap)
    step = int(chunk_size) if chunk_size else default_chunk_size(n_g)
    if step < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    acc.consume((d[s:s + step], qp[s:s + step], qc[s:s + step]) for s in range(0, n_q, step))
    return acc.result(int(max_rank), return_all_ap, ci=ci, n_boot=n_boot, seed=seed,
                      return_per_query=return_per_query)
