"""Pairwise distances between query and gallery embeddings, equal to ``scipy.spatial.distance.cdist``.

Every metric is computed in float32 torch. Euclidean, squared euclidean, cosine and correlation use one GEMM
(``|q|^2 + |g|^2 - 2 q.g`` or a dot product of centred / unit vectors). Cityblock and Minkowski have no GEMM
form: on CPU they run a loop over feature dimensions on cache-sized tiles spread over a thread pool (numpy ufuncs,
integer powers by multiplication), far faster than ``torch.cdist(p=3)`` and scipy at Market-1501 size
(``benchmarks/eval_speed.py``);
on CUDA they use ``torch.cdist``.

:class:`GalleryDistance` prepares the gallery once (norms, centring) and is called per query chunk; this is what
:func:`reidlib.evaluation.evaluate_features` uses to keep memory bounded. :func:`distance` is the one-shot form.
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from reidlib.runtime import resolve_device

METRICS = ("euclidean", "sqeuclidean", "cosine", "correlation", "cityblock", "minkowski")

# One (query rows x gallery columns) tile of the CPU per-dimension loop: its three float32 buffers (accumulator,
# difference, power; 768 KB) stay inside a 1 MiB L2 cache.
_TILE_ROWS = 16
_TILE_COLS = 4096
_EPS = 1e-12


def as_float_tensor(x: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    """Return ``x`` (numpy or torch, shape (N, D)) as a float32 torch tensor, sharing memory where possible."""
    t = torch.from_numpy(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
    if t.dim() != 2:
        raise ValueError(f"{name} must be a 2-D (N, D) feature matrix, got shape {tuple(t.shape)}")
    if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64, torch.uint8)):
        raise TypeError(f"{name} must hold real numbers, got dtype {t.dtype}")
    return t.detach().float()


def as_feature_pair(qf: np.ndarray | torch.Tensor, gf: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Query (Q, D) and gallery (G, D) features as float32 tensors; both non-empty with the same D (else ValueError)."""
    q, g = as_float_tensor(qf, "qf"), as_float_tensor(gf, "gf")
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"feature dimensions differ: query {q.shape[1]} vs gallery {g.shape[1]}")
    if q.shape[0] == 0 or g.shape[0] == 0:
        raise ValueError(f"need at least one query and one gallery feature, got {q.shape[0]} and {g.shape[0]}")
    return q, g


def check_metric(metric: str, p: float) -> None:
    """Raise ``ValueError`` for an unknown metric or a Minkowski order outside (0, inf)."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {METRICS}")
    if metric == "minkowski" and not (0 < float(p) < math.inf):
        raise ValueError(f"minkowski needs a finite order p > 0, got p={p!r}")


def _sq_norms(x: torch.Tensor) -> torch.Tensor:
    return (x * x).sum(dim=1)


class GalleryDistance:
    """Distances from query chunks to one gallery, with the gallery-side work done once.

    Args:
        gf: gallery features, (G, D), numpy or torch.
        metric: one of :data:`METRICS`.
        p: Minkowski order (only read for ``metric="minkowski"``).
        normalize: L2-normalise query and gallery rows before the metric (recorded with every result).
        device: where to compute (default: CUDA when available, else CPU).

    Calling the object with query features (B, D) returns the (B, G) float32 distance tile on ``device``.
    """

    def __init__(self, gf: np.ndarray | torch.Tensor, metric: str = "euclidean", p: float = 3,
                 normalize: bool = False, device: str | torch.device | None = None) -> None:
        check_metric(metric, p)
        self.metric, self.p, self.normalize = metric, float(p), bool(normalize)
        self.device = resolve_device(device)
        g = as_float_tensor(gf, "gf").to(self.device)
        self.dim = g.shape[1]
        g = self._transform(g)
        self._g_sq = _sq_norms(g) if metric in ("euclidean", "sqeuclidean") else None
        # The CPU per-dimension loop reads one gallery coordinate for many gallery items at a time: store (D, G).
        self._g = g.t().contiguous() if self._blocked else g

    @property
    def _blocked(self) -> bool:
        return self.metric in ("cityblock", "minkowski") and self.device.type == "cpu"

    def _transform(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            x = torch.nn.functional.normalize(x, dim=1, eps=_EPS)
        if self.metric == "correlation":
            x = x - x.mean(dim=1, keepdim=True)
        if self.metric in ("cosine", "correlation"):
            x = x / x.norm(dim=1, keepdim=True).clamp_min(_EPS)
        return x

    def __call__(self, qf: np.ndarray | torch.Tensor) -> torch.Tensor:
        q = as_float_tensor(qf, "qf").to(self.device)
        if q.shape[1] != self.dim:
            raise ValueError(f"feature dimensions differ: query {q.shape[1]} vs gallery {self.dim}")
        q = self._transform(q)
        if self.metric in ("euclidean", "sqeuclidean"):
            d = (_sq_norms(q)[:, None] + self._g_sq[None, :]).addmm_(q, self._g.t(), alpha=-2.0).clamp_(min=0)
            return d.sqrt_() if self.metric == "euclidean" else d
        if self.metric in ("cosine", "correlation"):
            return torch.addmm(torch.ones(1, device=q.device), q, self._g.t(), alpha=-1.0)
        order = 1.0 if self.metric == "cityblock" else self.p
        if not self._blocked:
            return torch.cdist(q, self._g, p=order)
        return _minkowski_blocked(q, self._g, order)


def _power_sum_tile(q_blk: np.ndarray, g_t_blk: np.ndarray, order: float) -> np.ndarray:
    """sum_d |q[i, d] - g[j, d]|^order for one tile: q_blk (b, D), g_t_blk (D, n) float32 -> (b, n)."""
    acc = np.zeros((q_blk.shape[0], g_t_blk.shape[1]), dtype=np.float32)
    diff, power = np.empty_like(acc), np.empty_like(acc)
    k = int(order)
    integer = order == k and 2 <= k <= 4
    with np.errstate(divide="ignore"):  # log(0) = -inf -> exp(-inf) = 0 for fractional orders
        for d in range(q_blk.shape[1]):
            np.subtract(q_blk[:, d:d + 1], g_t_blk[d], out=diff)
            np.abs(diff, out=diff)
            if order == 1:
                np.add(acc, diff, out=acc)
                continue
            if integer:  # |x|^k by k-1 multiplications: exact and far cheaper than pow
                np.multiply(diff, diff, out=power)
                for _ in range(k - 2):
                    np.multiply(power, diff, out=power)
            else:  # |x|^p = exp(p log|x|): two SIMD ufuncs instead of a scalar powf
                np.log(diff, out=power)
                np.multiply(power, order, out=power)
                np.exp(power, out=power)
            np.add(acc, power, out=acc)
    return acc


def _minkowski_blocked(q: torch.Tensor, g_t: torch.Tensor, order: float) -> torch.Tensor:
    """Minkowski distance (order 1 = cityblock) on CPU by tiles; q (B, D), g_t (D, G) -> (B, G).

    numpy ufuncs on L2-sized tiles (a few microseconds of overhead per op, no OpenMP regions, which stall when the
    CPU is shared), spread over ``torch.get_num_threads()`` threads (ufuncs release the GIL).
    """
    qn, gn = q.contiguous().numpy(), g_t.numpy()
    n_q, n_g = qn.shape[0], gn.shape[1]
    out = np.empty((n_q, n_g), dtype=np.float32)

    def run(tile: tuple[int, int]) -> None:
        i, j = tile
        out[i:i + _TILE_ROWS, j:j + _TILE_COLS] = _power_sum_tile(qn[i:i + _TILE_ROWS], gn[:, j:j + _TILE_COLS], order)

    tiles = [(i, j) for i in range(0, n_q, _TILE_ROWS) for j in range(0, n_g, _TILE_COLS)]
    with ThreadPoolExecutor(max_workers=max(1, torch.get_num_threads())) as pool:
        list(pool.map(run, tiles))
    if order != 1:
        np.power(out, 1.0 / order, out=out)
    return torch.from_numpy(out)


def distance(qf: np.ndarray | torch.Tensor, gf: np.ndarray | torch.Tensor, metric: str = "euclidean", p: float = 3,
             normalize: bool = False, device: str | torch.device | None = None) -> torch.Tensor:
    """Distance matrix between query features (Q, D) and gallery features (G, D).

    Args:
        qf, gf: numpy arrays or torch tensors of shape (Q, D) and (G, D); cast to float32.
        metric: ``euclidean``, ``sqeuclidean``, ``cosine`` (1 - cos), ``correlation`` (1 - Pearson r),
            ``cityblock`` (L1) or ``minkowski`` (order ``p``), each as ``scipy.spatial.distance.cdist`` defines it.
        p: Minkowski order, finite and > 0 (3 by default; p=2 equals euclidean).
        normalize: L2-normalise every row first (then euclidean^2 = 2 - 2 cos, so euclidean, sqeuclidean and
            cosine rank identically).
        device: compute device (default: CUDA when available, else CPU).

    Returns:
        (Q, G) float32 CPU tensor. GEMM forms agree with scipy's float64 result to float32 rounding
        (euclidean of near-identical rows can carry an absolute error of ~1e-3 from cancellation).
    """
    return GalleryDistance(gf, metric=metric, p=p, normalize=normalize, device=device)(qf).cpu()
