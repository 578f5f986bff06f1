"""Pair verification: "are these two crops the same person?" scored as ROC AUC, EER and TAR at fixed FAR.

>>> from reidlib.evaluation.verification import make_pairs, pair_scores, verification_metrics   # doctest: +SKIP
>>> pairs = make_pairs(pids, camids, max_impostors=1_000_000, seed=0)                           # doctest: +SKIP
>>> scores = pair_scores(feats, pairs.a, pairs.b, metric="cosine")                              # doctest: +SKIP
>>> verification_metrics(scores, pairs.label)["tar@far=0.01"]                                   # doctest: +SKIP

Conventions (all rates are fractions in [0, 1]):

- A *score* is "higher = more alike"; from a distance it is the negated distance. A *label* is 1 for a genuine
  pair (same identity), 0 for an impostor pair.
- The empirical ROC has one vertex per distinct score value ``t`` (plus the origin at ``t = +inf``): a pair is
  accepted when ``score >= t``. TAR (true accept rate) = accepted genuine / genuine pairs, FAR (false accept
  rate) = accepted impostors / impostor pairs, FRR = 1 - TAR.
- ``auc`` is the Mann-Whitney statistic P(score of a genuine pair > score of an impostor pair), a tie counting
  one half. It equals the trapezoidal area under the empirical ROC, which is how it is computed (exactly, from
  integer counts).
- ``tar@far=x``: the largest TAR over the ROC vertices whose FAR <= x (a vertex's FAR counts as <= x when its
  number of accepted impostors is <= floor(x * impostors), so no float rounding decides it); ``threshold@far=x``
  is that vertex's threshold (``inf`` when no pair can be accepted at that FAR).
- ``eer``: the point of the piecewise-linear empirical ROC where FAR = FRR, found between the two consecutive
  vertices where FRR - FAR changes sign (linear interpolation; exact when a vertex has FAR = FRR).
  ``threshold@eer`` is the threshold of whichever of those two vertices has the smaller |FAR - FRR|, the lower
  (accepting) one on a tie, so it is always a finite score.

Everything is vectorised numpy around one stable sort of the scores, so millions of pairs take about a second.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple, Sequence

import numpy as np
import torch

from reidlib.evaluation.distances import as_float_tensor, check_metric
from reidlib.evaluation.rank import as_ids

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

DEFAULT_FAR = (1e-3, 1e-2, 1e-1)
_EPS = 1e-12
# Pairs scored per chunk by pair_scores: 2 x 65,536 gathered rows of a 512-d float32 embedding = 256 MiB at most
# for the widest reidlib embedding (2048-d), 64 MiB for OSNet.
PAIR_CHUNK = 1 << 16


def _far_key(x: float) -> str:
    return f"{x:g}"


def _as_scores_labels(scores: np.ndarray | torch.Tensor | Sequence[float],
                      labels: np.ndarray | torch.Tensor | Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    s = scores.detach().cpu().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores)
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if s.ndim != 1 or y.ndim != 1 or s.shape != y.shape:
        raise ValueError(f"scores and labels must be 1-D arrays of the same length (one entry per pair), got shapes "
                         f"{s.shape} and {y.shape}")
    if not np.issubdtype(s.dtype, np.number) or np.issubdtype(s.dtype, np.complexfloating):
        raise TypeError(f"scores must be real numbers, got dtype {s.dtype}")
    s = s.astype(np.float64, copy=False)
    if np.isnan(s).any():
        raise ValueError(f"scores hold {int(np.isnan(s).sum())} NaN value(s); drop those pairs or fix the features")
    if y.dtype != np.bool_:
        if not np.isin(y, (0, 1)).all():
            raise ValueError("labels must be 0 (impostor: different identities) or 1 (genuine: same identity); "
                             f"got values {np.unique(y)[:10].tolist()}")
        y = y.astype(np.bool_)
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        raise ValueError(f"need both genuine (label 1) and impostor (label 0) pairs, got {n_pos} genuine and "
                         f"{y.size - n_pos} impostor; build pairs with make_pairs(pids, camids)")
    return s, y


def _roc_counts(s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer ROC: (tp, fp, thresholds), one entry per distinct score (descending) plus the origin at +inf."""
    order = np.argsort(s, kind="stable")[::-1]  # the one O(n log n) step
    s_sorted = s[order]
    y_sorted = y[order]
    # Last position of every run of equal scores (descending order): where the next score differs, and the end.
    last = np.flatnonzero(np.diff(s_sorted) != 0)
    last = np.append(last, s_sorted.size - 1)
    tp = np.cumsum(y_sorted, dtype=np.int64)[last]
    fp = (last + 1).astype(np.int64) - tp
    zero = np.zeros(1, dtype=np.int64)
    return np.concatenate([zero, tp]), np.concatenate([zero, fp]), np.concatenate([[np.inf], s_sorted[last]])


def roc_curve(scores: np.ndarray | torch.Tensor | Sequence[float],
              labels: np.ndarray | torch.Tensor | Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The empirical ROC of pair scores.

    Args:
        scores: (n,) pair scores, higher = more alike (e.g. cosine similarity, or a negated distance).
        labels: (n,) 1 = genuine (same identity), 0 = impostor; both must occur.

    Returns:
        ``(far, tar, thresholds)``, three float64 arrays of length (distinct scores + 1): vertex ``k`` accepts
        every pair with ``score >= thresholds[k]``. ``thresholds`` is strictly decreasing from ``+inf`` (the
        origin, FAR = TAR = 0) to the smallest score (FAR = TAR = 1); ``far`` and ``tar`` are non-decreasing.
    """
    s, y = _as_scores_labels(scores, labels)
    tp, fp, thr = _roc_counts(s, y)
    return fp / fp[-1], tp / tp[-1], thr


def _auc_from_counts(tp: np.ndarray, fp: np.ndarray) -> float:
    """Trapezoidal area under the integer ROC = Mann-Whitney U / (P N), ties counting one half."""
    n_pos, n_neg = int(tp[-1]), int(fp[-1])
    d_fp, d_tp = np.diff(fp), np.diff(tp)
    if 2 * n_pos * n_neg < 2**62:  # exact in int64: sum d_fp (2 tp_prev + d_tp) <= 2 P N
        twice_u = int(np.sum(d_fp * (2 * tp[:-1] + d_tp)))
        return twice_u / (2 * n_pos * n_neg)
    return float(np.sum(d_fp.astype(np.float64) * (2.0 * tp[:-1] + d_tp)) / (2.0 * n_pos * n_neg))


def _eer_from_counts(tp: np.ndarray, fp: np.ndarray, thr: np.ndarray) -> tuple[float, float]:
    far = fp / fp[-1]
    frr = 1.0 - tp / tp[-1]
    gap = frr - far  # strictly decreasing from 1 (origin) to -1 (accept everything)
    i = int(np.argmax(gap <= 0))  # first vertex at or past the crossing; i >= 1 since gap[0] = 1
    if gap[i] == 0:
        return float(far[i]), float(thr[i])
    alpha = gap[i - 1] / (gap[i - 1] - gap[i])
    eer = far[i - 1] + alpha * (far[i] - far[i - 1])
    k = i - 1 if abs(gap[i - 1]) < abs(gap[i]) else i
    return float(eer), float(thr[k])


def verification_metrics(scores: np.ndarray | torch.Tensor | Sequence[float],
                         labels: np.ndarray | torch.Tensor | Sequence[int],
                         far: Sequence[float] = DEFAULT_FAR) -> dict:
    """AUC, EER and TAR at fixed FARs of scored pairs (definitions in this module's docstring).

    Args:
        scores: (n,) pair scores, higher = more alike; NaN raises.
        labels: (n,) 1 = genuine (same identity), 0 = impostor (bool or 0/1 ints); both must occur.
        far: target false accept rates in (0, 1].

    Returns:
        ``{"auc", "eer", "threshold@eer", "tar@far=X" and "threshold@far=X" for each X in far (X formatted with
        ``:g``, e.g. ``tar@far=0.001``), "num_genuine", "num_impostor"}``; rates are fractions in [0, 1],
        thresholds are in score units.
    """
    s, y = _as_scores_labels(scores, labels)
    tp, fp, thr = _roc_counts(s, y)
    eer, eer_thr = _eer_from_counts(tp, fp, thr)
    out: dict = {"auc": _auc_from_counts(tp, fp), "eer": eer, "threshold@eer": eer_thr}
    n_neg = int(fp[-1])
    for x in far:
        x = float(x)
        if not 0 < x <= 1:
            raise ValueError(f"every target FAR must lie in (0, 1], got {x}")
        max_fp = math.floor(x * n_neg + 1e-9)
        k = int(np.searchsorted(fp, max_fp, side="right")) - 1  # last vertex with fp <= max_fp (fp non-decreasing)
        out[f"tar@far={_far_key(x)}"] = float(tp[k] / tp[-1])
        out[f"threshold@far={_far_key(x)}"] = float(thr[k])
    out["num_genuine"], out["num_impostor"] = int(tp[-1]), n_neg
    return out


class PairSet(NamedTuple):
    """Index pairs into one split: ``a``, ``b`` (n,) int64 with ``a < b``, ``label`` (n,) int8 (1 = genuine).

    Sorted by ``(a, b)``; unpacks as ``a, b, label = pairs`` (``len(pairs)`` is 3, the fields; the number of
    pairs is ``pairs.num_pairs``).
    """

    a: np.ndarray
    b: np.ndarray
    label: np.ndarray

    @property
    def num_pairs(self) -> int:
        return int(self.a.shape[0])

    @property
    def num_genuine(self) -> int:
        return int(self.label.sum())

    @property
    def num_impostor(self) -> int:
        return int(self.label.shape[0] - self.label.sum())


def _genuine_pairs(pids: np.ndarray, camids: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (i < j) with equal pid and different camid among ``keep`` (indices), vectorised by group size."""
    idx = keep[np.argsort(pids[keep], kind="stable")]  # grouped by pid, each group in index order
    grouped = pids[idx]
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
    sizes = np.diff(np.r_[starts, idx.size])
    a_parts, b_parts = [], []
    for size in np.unique(sizes[sizes >= 2]):
        r, c = np.triu_indices(int(size), k=1)
        base = starts[sizes == size][:, None]
        a_parts.append(idx[(base + r[None, :]).ravel()])
        b_parts.append(idx[(base + c[None, :]).ravel()])
    if not a_parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    a, b = np.concatenate(a_parts), np.concatenate(b_parts)
    cross = camids[a] != camids[b]
    a, b = a[cross], b[cross]
    return np.minimum(a, b), np.maximum(a, b)


def _all_impostors(pids: np.ndarray, keep: np.ndarray, rows_per_block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    a_parts, b_parts = [], []
    kp = pids[keep]
    for s in range(0, keep.size, rows_per_block):
        rows = np.arange(s, min(s + rows_per_block, keep.size))
        mask = (kp[rows, None] != kp[None, :]) & (np.arange(keep.size)[None, :] > rows[:, None])
        r, c = np.nonzero(mask)
        a_parts.append(keep[rows[r]])
        b_parts.append(keep[c])
    return np.concatenate(a_parts), np.concatenate(b_parts)


def _sample_impostors(pids: np.ndarray, keep: np.ndarray, m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """m distinct impostor pairs drawn uniformly (without replacement) from all of them, by seeded rejection."""
    rng = np.random.default_rng(seed)
    n = keep.size
    found = np.zeros(0, np.int64)
    while found.size < m:
        draw = max(2 * (m - found.size), 1024)
        i, j = rng.integers(0, n, draw), rng.integers(0, n, draw)
        ok = (i != j) & (pids[keep[i]] != pids[keep[j]])
        lo, hi = np.minimum(i[ok], j[ok]), np.maximum(i[ok], j[ok])
        code = np.concatenate([found, lo.astype(np.int64) * n + hi])
        _, first = np.unique(code, return_index=True)
        found = code[np.sort(first)]  # distinct codes, in the order they were drawn
    found = found[:m]
    return keep[found // n], keep[found % n]


def make_pairs(pids: Sequence[int] | np.ndarray, camids: Sequence[int] | np.ndarray, max_impostors: int | None = None,
               seed: int = 0, ignore_pids: Sequence[int] = (-1,)) -> PairSet:
    """The verification pairs of one split (e.g. a dataset's query + gallery, or its test images).

    Protocol:
        - genuine pairs: *every* pair of images of the same identity taken by *different* cameras (same-camera
          pairs of one person are near-duplicates in re-ID data, as the Market protocol's junk rule says);
        - impostor pairs: pairs of images of different identities, from any cameras; all of them when
          ``max_impostors`` is None or at least their number, otherwise ``max_impostors`` distinct pairs drawn
          uniformly without replacement with ``numpy.random.default_rng(seed)`` (same seed, same pairs);
        - images whose pid is in ``ignore_pids`` (junk, -1 by default) join no pair. Market-style distractors
          (pid 0) are distinct people sharing one label: add 0 to ``ignore_pids``, or they form false genuine pairs.

    Counts: a split of n images with c_p images of identity p, c_pk of them from camera k, has
    sum_p [C(c_p, 2) - sum_k C(c_pk, 2)] genuine and C(n, 2) - sum_p C(c_p, 2) impostor pairs.

    Args:
        pids, camids: (n,) integer identity and camera ids of the split's images.
        max_impostors: cap on impostor pairs (None: all; they number ~n^2/2, so cap large splits).
        seed: seed of the impostor sample.
        ignore_pids: identities left out of every pair.

    Returns:
        :class:`PairSet` ``(a, b, label)`` indexing the input order, ``a < b``, sorted by ``(a, b)``.
    """
    p = as_ids(pids, "pids", len(pids))
    c = as_ids(camids, "camids", p.shape[0])
    if max_impostors is not None and int(max_impostors) < 0:
        raise ValueError(f"max_impostors must be >= 0 or None, got {max_impostors}")
    keep = np.flatnonzero(~np.isin(p, np.asarray(list(ignore_pids), dtype=np.int64)))
    ga, gb = _genuine_pairs(p, c, keep)
    _, counts = np.unique(p[keep], return_counts=True)
    n = keep.size
    total_imp = n * (n - 1) // 2 - int(np.sum(counts * (counts - 1) // 2))
    if max_impostors is None or int(max_impostors) >= total_imp:
        ia, ib = _all_impostors(p, keep) if total_imp else (np.zeros(0, np.int64), np.zeros(0, np.int64))
    elif 2 * int(max_impostors) > total_imp:  # a large share: enumerate all, then choose without replacement
        ia, ib = _all_impostors(p, keep)
        pick = np.sort(np.random.default_rng(seed).choice(total_imp, size=int(max_impostors), replace=False))
        ia, ib = ia[pick], ib[pick]
    else:
        ia, ib = _sample_impostors(p, keep, int(max_impostors), seed)
    a = np.concatenate([ga, ia]).astype(np.int64)
    b = np.concatenate([gb, ib]).astype(np.int64)
    label = np.concatenate([np.ones(ga.size, np.int8), np.zeros(ia.size, np.int8)])
    order = np.lexsort((b, a))
    return PairSet(a[order], b[order], label[order])


def _prepare(x: torch.Tensor, metric: str, normalize: bool) -> torch.Tensor:
    if normalize:
        x = torch.nn.functional.normalize(x, dim=1, eps=_EPS)
    if metric == "correlation":
        x = x - x.mean(dim=1, keepdim=True)
    if metric in ("cosine", "correlation"):
        x = x / x.norm(dim=1, keepdim=True).clamp_min(_EPS)
    return x


def pair_distances(feats: np.ndarray | torch.Tensor, a: np.ndarray | Sequence[int], b: np.ndarray | Sequence[int],
                   metric: str = "cosine", normalize: bool = True, p: float = 3,
                   chunk_size: int = PAIR_CHUNK) -> np.ndarray:
    """Distance between ``feats[a[k]]`` and ``feats[b[k]]`` for every k, in float64 numpy, shape (n,).

    ``metric``, ``normalize`` and ``p`` mean what they mean for :func:`reidlib.evaluation.distance` (the result
    equals the diagonal of ``distance(feats[a], feats[b], ...)``, i.e. scipy's ``cdist``). Pairs are processed
    ``chunk_size`` at a time (memory: 2 x chunk_size x D float32 values).
    """
    check_metric(metric, p)
    f = as_float_tensor(feats, "feats")
    ia = torch.as_tensor(np.asarray(a, dtype=np.int64))
    ib = torch.as_tensor(np.asarray(b, dtype=np.int64))
    if ia.dim() != 1 or ia.shape != ib.shape:
        raise ValueError(f"a and b must be 1-D index arrays of one length, got shapes {tuple(ia.shape)}, "
                         f"{tuple(ib.shape)}")
    n = f.shape[0]
    if ia.numel() and (int(min(ia.min(), ib.min())) < 0 or int(max(ia.max(), ib.max())) >= n):
        raise IndexError(f"pair indices must lie in [0, {n}) (rows of feats)")
    out = np.empty(ia.numel(), dtype=np.float64)
    step = max(1, int(chunk_size))
    for s in range(0, ia.numel(), step):
        x = _prepare(f[ia[s:s + step]], metric, normalize)
        y = _prepare(f[ib[s:s + step]], metric, normalize)
        if metric in ("cosine", "correlation"):
            d = 1.0 - (x * y).sum(dim=1)
        elif metric in ("euclidean", "sqeuclidean"):
            d = ((x - y) ** 2).sum(dim=1)
            d = d.sqrt() if metric == "euclidean" else d
        else:
            order = 1.0 if metric == "cityblock" else float(p)
            d = torch.linalg.vector_norm(x - y, ord=order, dim=1)
        out[s:s + step] = d.double().numpy()
    return out


def pair_scores(feats: np.ndarray | torch.Tensor, a: np.ndarray | Sequence[int], b: np.ndarray | Sequence[int],
                metric: str = "cosine", normalize: bool = True, p: float = 3,
                chunk_size: int = PAIR_CHUNK) -> np.ndarray:
    """Verification scores (n,) of index pairs into ``feats`` (N, D): the negated :func:`pair_distances`.

    With ``metric="cosine"`` the score is cosine similarity minus one (same order as cosine similarity).
    """
    return -pair_distances(feats, a, b, metric=metric, normalize=normalize, p=p, chunk_size=chunk_size)


def evaluate_verification(feats: np.ndarray | torch.Tensor, pids: Sequence[int] | np.ndarray,
                          camids: Sequence[int] | np.ndarray, metric: str = "cosine", normalize: bool = True,
                          p: float = 3, max_impostors: int | None = 1_000_000, seed: int = 0,
                          ignore_pids: Sequence[int] = (-1,), far: Sequence[float] = DEFAULT_FAR) -> dict:
    """:func:`make_pairs` + :func:`pair_scores` + :func:`verification_metrics` over one split's features (N, D).

    Returns the metrics dict plus the settings that produced it (``metric``, ``normalize``, ``p``,
    ``max_impostors``, ``seed``).
    """
    pairs = make_pairs(pids, camids, max_impostors=max_impostors, seed=seed, ignore_pids=ignore_pids)
    scores = pair_scores(feats, pairs.a, pairs.b, metric=metric, normalize=normalize, p=p)
    out = verification_metrics(scores, pairs.label, far=far)
    out.update(metric=metric, normalize=bool(normalize), p=float(p) if metric == "minkowski" else None,
               max_impostors=max_impostors, seed=seed)
    return out


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str = "ROC") -> "Figure":
    """ROC curves on a log-scale FAR axis; returns the matplotlib figure (neither saved nor closed).

    Args:
        curves: ``{label: (far, tar)}`` as returned by :func:`roc_curve` (fractions in [0, 1]).
        title: the axes title.

    FAR = 0 cannot be drawn on a log axis: the axis starts at the smallest positive FAR of any curve.
    """
    import matplotlib.pyplot as plt

    if not curves:
        raise ValueError("plot_roc needs at least one curve: {label: (far, tar)}")
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    smallest = 1.0
    for label, (far, tar) in curves.items():
        far, tar = np.asarray(far, dtype=np.float64), np.asarray(tar, dtype=np.float64)
        if far.shape != tar.shape or far.ndim != 1:
            raise ValueError(f"curve {label!r}: far and tar must be 1-D arrays of one length, got {far.shape}, "
                             f"{tar.shape}")
        pos = far > 0
        if pos.any():
            smallest = min(smallest, float(far[pos].min()))
        ax.step(far[pos], tar[pos], where="post", label=str(label))
    ax.set_xscale("log")
    ax.set_xlim(smallest, 1.0)
    ax.set_ylim(0.0, 1.01)
    ax.set_xlabel("false accept rate (FAR)")
    ax.set_ylabel("true accept rate (TAR)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig
