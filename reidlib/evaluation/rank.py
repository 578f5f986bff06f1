"""CMC, mAP and mINP from a query x gallery distance matrix, exactly as a stable per-row argsort defines them.

No argsort is computed. Only the ranks of each query's same-identity gallery items are needed: per chunk of
queries the rows are sorted by value (numpy's SIMD sort, ~5x cheaper than ``np.argsort``; ``torch.sort`` on
CUDA), each candidate's rank is the number of smaller values (``searchsorted``), and where a candidate's value is
tied with other items, the tied items at lower gallery indices are added, which is exactly a stable sort's order.
Memory stays at a few copies of one chunk, so the gallery size is not limited by RAM.

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

from typing import Sequence

import numpy as np
import torch

PROTOCOLS = ("market", "last")
AP_FORMS = ("mean", "trapezoid")
_PAD, _POS, _JUNK = 0, 1, 2


def default_chunk_size(num_gallery: int, budget_elems: int = 1 << 22) -> int:
    """Query rows per chunk so that one (rows, G) tile holds about ``budget_elems`` values (16 MiB as float32)."""
    return max(1, min(4096, budget_elems // max(1, num_gallery)))


def check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    """Raise a ``ValueError`` naming the valid choices when ``value`` is not one of them."""
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {tuple(choices)}")


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


def _stable_keys(d: torch.Tensor) -> torch.Tensor:
    """Unique int64 keys whose order is a stable ascending sort of each row of a float32 tile (b, G).

    High 32 bits: the float's bit pattern made order-preserving (-0.0 folded into +0.0); low 32 bits: the column.
    """
    if d.dtype != torch.float32:
        raise TypeError(f"_stable_keys needs float32 distances, got {d.dtype}")
    if torch.isnan(d).any():
        raise ValueError("the distance matrix contains NaN; check the features (zero vectors, inf, overflow)")
    bits = (d + 0.0).view(torch.int32)  # + 0.0 turns -0.0 into +0.0 so that they tie, as in np.argsort
    bits = bits ^ ((bits >> 31) & 0x7FFFFFFF)  # negative floats: flip magnitude bits -> signed-int order
    cols = torch.arange(d.shape[1], device=d.device, dtype=torch.int64)
    return (bits.to(torch.int64) << 32) | cols


def stable_topk(d: torch.Tensor, k: int) -> torch.Tensor:
    """Column indices (b, k) of the k smallest entries per row, ties broken by column (a stable sort's prefix)."""
    k = min(int(k), d.shape[1])
    if d.dtype == torch.float64:
        return torch.sort(d, dim=1, stable=True).indices[:, :k]
    keys = _stable_keys(d.float())
    return (torch.topk(keys, k, dim=1, largest=False, sorted=True).values & 0xFFFFFFFF)


def _sorted_rows(d: torch.Tensor) -> torch.Tensor:
    """Each row of ``d`` sorted ascending (values only; NaN last). numpy's SIMD sort on CPU, torch.sort on CUDA."""
    if d.dtype not in (torch.float32, torch.float64):
        d = d.float()  # float16 / bfloat16 widen exactly
    if d.device.type == "cpu":
        return torch.from_numpy(np.sort(d.numpy(), axis=1))
    return torch.sort(d, dim=1).values


def _tie_counts(d: torch.Tensor, cand: torch.Tensor, cand_d: torch.Tensor, ties: torch.Tensor) -> torch.Tensor:
    """For candidates whose distance is shared with other gallery items: how many of those have a lower index."""
    extra = torch.zeros_like(cand)
    rows, slots = ties.nonzero(as_tuple=True)
    cols = torch.arange(d.shape[1], device=d.device)
    step = default_chunk_size(d.shape[1])
    for s in range(0, len(rows), step):
        r, k = rows[s:s + step], slots[s:s + step]
        same = (d[r] == cand_d[r, k][:, None]) & (cols[None, :] < cand[r, k][:, None])
        extra[r, k] = same.sum(dim=1)
    return extra


def _candidate_ranks(d: torch.Tensor, cand: torch.Tensor, kind: torch.Tensor) -> torch.Tensor:
    """0-based position of each candidate gallery item in a stable ascending sort of its row.

    d: (b, G) distances; cand: (b, P) gallery indices; kind: (b, P) with ``_PAD`` entries ignored.
    Sorting the values (no indices) is several times cheaper than an argsort; a candidate's position is the number
    of smaller values, plus, only where its value is tied, the number of equal values at lower gallery indices.
    """
    srt = _sorted_rows(d)
    if torch.isnan(srt[:, -1]).any():
        raise ValueError("the distance matrix contains NaN; check the features (zero vectors, inf, overflow)")
    d = d.to(srt.dtype)
    cand_d = d.gather(1, cand)
    below = torch.searchsorted(srt, cand_d, side="left")
    ties = (torch.searchsorted(srt, cand_d, side="right") - below > 1) & (kind != _PAD)
    if bool(ties.any()):
        below += _tie_counts(d, cand, cand_d, ties)
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


def chunk_stats(d: torch.Tensor, cand: torch.Tensor, kind: torch.Tensor, ap: str) -> dict[str, np.ndarray]:
    """Per-query first-hit rank, AP and INP for one chunk of distance rows.

    Args:
        d: (b, G) distances (float32 fast path; float64 ranked exactly by a stable sort).
        cand, kind: from :meth:`GalleryIndex.candidates`, on ``d``'s device.
        ap: ``"mean"`` or ``"trapezoid"``.

    Returns:
        numpy arrays of length b: ``first`` (0-based rank of the first positive among non-junk items),
        ``ap``, ``inp`` and ``valid`` (the query has at least one positive).
    """
    ranks = _candidate_ranks(d, cand, kind)
    ranks = torch.where(kind == _PAD, d.shape[1] + 1, ranks)
    ranks, idx = ranks.sort(dim=1)
    kind = kind.gather(1, idx)
    is_pos, is_junk = kind == _POS, kind == _JUNK
    junk_before = is_junk.cumsum(1) - is_junk.long()
    valid_rank = (ranks - junk_before).double()  # 0-based rank among non-junk gallery items
    hit = is_pos.cumsum(1).double()  # 1-based index of each positive
    n_pos = is_pos.sum(1)
    prec = hit / (valid_rank + 1)
    if ap == "mean":
        terms = prec
    else:  # trapezoid: average of the precision just before the hit (1.0 at rank 0) and at the hit
        before = torch.where(valid_rank > 0, (hit - 1) / valid_rank.clamp(min=1), torch.ones_like(hit))
        terms = (before + prec) / 2
    denom = n_pos.clamp(min=1).double()
    ap_q = torch.where(is_pos, terms, torch.zeros_like(terms)).sum(1) / denom
    first = torch.where(is_pos, valid_rank, torch.full_like(valid_rank, np.inf)).min(1).values
    last = torch.where(is_pos, valid_rank, torch.full_like(valid_rank, -1.0)).max(1).values
    inp = n_pos.double() / (last + 1).clamp(min=1)
    out = {"first": first, "ap": ap_q, "inp": inp, "valid": n_pos > 0}
    return {k: v.cpu().numpy() for k, v in out.items()}


class RankAccumulator:
    """Collects :func:`chunk_stats` over query chunks and reduces them to CMC / mAP / mINP."""

    def __init__(self, g_pids: np.ndarray, g_camids: np.ndarray, protocol: str = "market", ap: str = "mean") -> None:
        check_choice("ap", ap, AP_FORMS)
        self.index = GalleryIndex(g_pids, g_camids, protocol)
        self.ap = ap
        self.parts: list[dict[str, np.ndarray]] = []

    def add(self, d: torch.Tensor, q_pids: np.ndarray, q_camids: np.ndarray) -> None:
        """Rank one chunk: ``d`` (b, G) distances of queries with ids ``q_pids`` / ``q_camids`` (length b)."""
        cand, kind = self.index.candidates(q_pids, q_camids)
        self.parts.append(chunk_stats(d, torch.from_numpy(cand).to(d.device), torch.from_numpy(kind).to(d.device),
                                      self.ap))

    def result(self, max_rank: int, return_all_ap: bool = False) -> dict:
        """``{"cmc", "mAP", "mINP", "num_valid_queries"}`` (+ ``all_AP``, NaN for skipped queries)."""
        parts = {k: np.concatenate([p[k] for p in self.parts]) for k in ("first", "ap", "inp", "valid")}
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
        return out


def evaluate(distmat: np.ndarray | torch.Tensor, q_pids, g_pids, q_camids, g_camids, max_rank: int = 50,
             protocol: str = "market", ap: str = "mean", return_all_ap: bool = False,
             chunk_size: int | None = None) -> dict:
    """CMC, mAP and mINP of a (Q, G) distance matrix (smaller = more similar).

    Args:
        distmat: (Q, G) numpy array or torch tensor (CPU or CUDA). float32 (or lower) takes the fast path;
            float64 is ranked exactly with a stable sort (slower). NaN raises.
        q_pids, q_camids: length-Q identity and camera ids of the queries; g_pids, g_camids: length G.
        max_rank: length of the returned CMC curve (ranks 1..max_rank; entries past the gallery size stay at 1.0).
        protocol: ``"market"`` (same pid + same camid gallery items ignored) or ``"last"`` (no camera filter).
        ap: ``"mean"`` (non-interpolated, torchreid/BoT) or ``"trapezoid"`` (official Market-1501 MATLAB).
        return_all_ap: also return ``all_AP`` (length Q, NaN for queries without a valid match).
        chunk_size: query rows ranked at a time (default: about 4M distances per chunk).

    Returns:
        ``{"cmc": float64 array (max_rank,), "mAP": float, "mINP": float, "num_valid_queries": int}``, all
        fractions in [0, 1]. Ties are broken by gallery index (a stable sort), so results are deterministic.
    """
    check_choice("protocol", protocol, PROTOCOLS)
    check_choice("ap", ap, AP_FORMS)
    d = torch.from_numpy(np.asarray(distmat)) if not isinstance(distmat, torch.Tensor) else distmat.detach()
    if d.dim() != 2 or d.shape[0] == 0 or d.shape[1] == 0:
        raise ValueError(f"distmat must be a non-empty 2-D (Q, G) matrix, got shape {tuple(d.shape)}")
    if not d.is_floating_point():
        d = d.double()
    if int(max_rank) < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    n_q, n_g = d.shape
    qp, qc = as_ids(q_pids, "q_pids", n_q), as_ids(q_camids, "q_camids", n_q)
    acc = RankAccumulator(as_ids(g_pids, "g_pids", n_g), as_ids(g_camids, "g_camids", n_g), protocol, ap)
    step = int(chunk_size) if chunk_size else default_chunk_size(n_g)
    if step < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    for s in range(0, n_q, step):
        acc.add(d[s:s + step], qp[s:s + step], qc[s:s + step])
    return acc.result(int(max_rank), return_all_ap)
