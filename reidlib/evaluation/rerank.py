"""k-reciprocal re-ranking (Zhong et al., CVPR 2017) and alpha query expansion, without an N x N matrix in memory.

Re-ranking works on the N = Q + G probe-and-gallery set. The reference implementation (BoT, LaST, the paper's dead
code) keeps the full N x N distance matrix, its full argsort and a dense N x N float16 ``V``: ~6 GB at Market-1501
size and far more for MSMT17. Here:

- the N x N distances are computed twice in row chunks and never stored: pass 1 keeps each row's maximum and its
  ``max(k1 + 1, k2)`` nearest neighbours (a stable top-k), pass 2 reads the distances at the few indices each row
  needs and the query x gallery block;
- ``V`` and its k2 query expansion are scipy CSR matrices (a few hundred non-zeros per row);
- the Jaccard distance sum_c min(V[i, c], V[j, c]) is accumulated sparsely, query chunk by query chunk.

Peak memory at Market-1501 size is about twice the (Q, G) float32 output. Numbers are float32/float64 throughout
(the reference rounds ``V`` to float16), so distances agree with it to ~1e-3, not bit for bit.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from reidlib.evaluation.distances import GalleryDistance, as_feature_pair
from reidlib.evaluation.rank import default_chunk_size, stable_topk

_TRIPLES_PER_CHUNK = 1 << 22  # (query, column, gallery) terms of the Jaccard sum handled at a time


def _reciprocal_mask(neigh: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """``mask[r, t]``: row ``rows[r]`` is among the k+1 nearest neighbours of its neighbour ``neigh[rows[r], t]``."""
    fwd = neigh[rows, : k + 1]
    back = neigh[fwd, : k + 1]  # (b, k+1, k+1)
    return (back == rows[:, None, None]).any(axis=2)


def _expansion_sets(neigh: np.ndarray, k1: int, rows: np.ndarray) -> np.ndarray:
    """R*(i) for each i in ``rows``: k-reciprocal set R(i, k1) plus every R(c, round(k1/2)), c in R(i, k1),
    that shares more than 2/3 of its members with R(i, k1). Returned padded with -1, (b, M), sorted, unique."""
    kh = int(round(k1 / 2))  # round half to even, as np.around in the reference
    r1 = np.where(_reciprocal_mask(neigh, rows, k1), neigh[rows, : k1 + 1], -1)  # (b, k1+1)
    cands = np.where(r1 >= 0, r1, rows[:, None])  # padded slots point at the row itself; masked out below
    half = np.where(_reciprocal_mask(neigh, cands.ravel(), kh), neigh[cands.ravel(), : kh + 1], -1)
    half = half.reshape(len(rows), k1 + 1, kh + 1)  # R(c, kh) for each candidate c
    in_r1 = ((half[..., None] == r1[:, None, None, :]) & (half[..., None] >= 0)).any(axis=3)
    size = (half >= 0).sum(axis=2)
    accept = (r1 >= 0) & (3 * in_r1.sum(axis=2) > 2 * size)
    extra = np.where(accept[..., None], half, -1).reshape(len(rows), -1)
    members = np.sort(np.concatenate([r1, extra], axis=1), axis=1)
    dup = np.zeros_like(members, dtype=bool)
    dup[:, 1:] = members[:, 1:] == members[:, :-1]
    return np.sort(np.where(dup, -1, members), axis=1)


def re_ranking(qf: np.ndarray | torch.Tensor, gf: np.ndarray | torch.Tensor, k1: int = 20, k2: int = 6,
               lambda_value: float = 0.3, metric: str = "sqeuclidean", p: float = 3, normalize: bool = False,
               device: str | torch.device | None = None, chunk_size: int | None = None) -> np.ndarray:
    """k-reciprocal re-ranked (Q, G) distance matrix (Zhong et al., CVPR 2017; BoT's k1=20, k2=6, lambda=0.3).

    Args:
        qf, gf: query (Q, D) and gallery (G, D) features.
        k1: neighbourhood of the k-reciprocal sets; the expansion uses round(k1 / 2).
        k2: neighbours averaged in the local query expansion of ``V`` (1 disables it).
        lambda_value: weight of the original distance in ``(1 - lambda) * jaccard + lambda * original``.
        metric, p, normalize: the original distance, as :func:`reidlib.evaluation.distance` (BoT and the reference
            use squared euclidean on L2-normalised features: ``metric="sqeuclidean", normalize=True``).
        device: where the N x N distance chunks are computed (default: CUDA when available).
        chunk_size: rows of the N x N matrix computed at a time.

    Returns:
        (Q, G) float32 numpy array. Each row of the original distance is divided by its maximum over all N
        items (the reference's column-max normalisation of a symmetric matrix), so the original term is in [0, 1].
    """
    if int(k1) < 1 or int(k2) < 1:
        raise ValueError(f"k1 and k2 must be >= 1, got k1={k1}, k2={k2}")
    if not 0.0 <= float(lambda_value) <= 1.0:
        raise ValueError(f"lambda_value must be in [0, 1], got {lambda_value}")
    q, g = as_feature_pair(qf, gf)
    n_q, n_g = q.shape[0], g.shape[0]
    feats = torch.cat([q, g])
    n = feats.shape[0]
    k1, k2 = min(int(k1), n - 1), min(int(k2), n)
    dist = GalleryDistance(feats, metric=metric, p=p, normalize=normalize, device=device)
    step = int(chunk_size) if chunk_size else default_chunk_size(n)

    # pass 1: nearest neighbours (stable order) and each row's maximum
    neigh = np.empty((n, max(k1 + 1, k2)), dtype=np.int64)
    row_max = np.empty(n, dtype=np.float64)
    for s in range(0, n, step):
        d = dist(feats[s:s + step]).cpu().numpy()
        row_max[s:s + step] = d.max(axis=1)
        neigh[s:s + step] = stable_topk(d, neigh.shape[1])
    row_max[row_max <= 0] = 1.0

    # k-reciprocal expansion sets, then pass 2: their weights exp(-d / rowmax), normalised per row; the q x g block
    indptr, indices, values = [0], [], []
    original = np.empty((n_q, n_g), dtype=np.float32)
    for s in range(0, n, step):
        members = _expansion_sets(neigh, k1, np.arange(s, min(s + step, n)))
        d = dist(feats[s:s + step]).cpu().numpy()
        scale = row_max[s:s + step, None]
        if s < n_q:
            original[s:s + step] = d[: n_q - s, n_q:] / scale[: n_q - s]
        ok = members >= 0
        w = np.where(ok, np.exp(-np.take_along_axis(d, np.where(ok, members, 0), axis=1) / scale), 0.0)
        total = w.sum(axis=1, keepdims=True)
        w = np.divide(w, total, out=np.zeros_like(w), where=total > 0)
        indices.append(members[ok])
        values.append(w[ok])
        indptr.extend((indptr[-1] + np.cumsum(ok.sum(axis=1))).tolist())
    v = sp.csr_matrix((np.concatenate(values), np.concatenate(indices), np.asarray(indptr)), shape=(n, n))

    if k2 > 1:  # local query expansion: V_i <- mean of V over i's k2 nearest neighbours
        rows = np.repeat(np.arange(n), k2)
        avg = sp.csr_matrix((np.full(n * k2, 1.0 / k2), (rows, neigh[:, :k2].ravel())), shape=(n, n))
        v = (avg @ v).tocsr()
    final = _jaccard_query_gallery(v, n_q)
    final *= 1.0 - float(lambda_value)
    original *= float(lambda_value)
    final += original
    return final


def _jaccard_query_gallery(v: sp.csr_matrix, n_q: int) -> np.ndarray:
    """1 - sum_c min(V_i,c, V_j,c) / (2 - sum_c min(...)) for query rows i < n_q and gallery rows j >= n_q."""
    n = v.shape[0]
    n_g = n - n_q
    vq = v[:n_q].tocsr()
    vg = v[n_q:].tocsc()
    col_len = np.diff(vg.indptr)
    row_of_nnz = np.repeat(np.arange(n_q), np.diff(vq.indptr))
    terms_per_row = np.bincount(row_of_nnz, weights=col_len[vq.indices], minlength=n_q)
    max_rows = default_chunk_size(n_g)
    out = np.empty((n_q, n_g), dtype=np.float32)
    start = 0
    while start < n_q:
        budget = np.cumsum(terms_per_row[start:start + max_rows])
        stop = start + max(1, int(np.searchsorted(budget, _TRIPLES_PER_CHUNK, side="right")))
        sub = vq[start:stop].tocoo()
        lens = col_len[sub.col]
        pick = np.repeat(np.arange(sub.nnz), lens)
        first = np.repeat(vg.indptr[sub.col], lens)
        offset = np.arange(len(pick)) - np.repeat(np.cumsum(lens) - lens, lens)
        where = first + offset
        shared = np.minimum(sub.data[pick], vg.data[where])
        flat = sub.row[pick].astype(np.int64) * n_g + vg.indices[where]
        total = np.bincount(flat, weights=shared, minlength=(stop - start) * n_g).reshape(stop - start, n_g)
        out[start:stop] = 1.0 - total / (2.0 - total)
        start = stop
    return out


def query_expansion(qf: np.ndarray | torch.Tensor, gf: np.ndarray | torch.Tensor, k: int = 5, alpha: float = 3.0,
                    chunk_size: int | None = None) -> torch.Tensor:
    """Alpha query expansion (Radenovic et al., TPAMI 2019): q' = normalise(q + sum_j max(cos(q, g_j), 0)^alpha g_j).

    The sum runs over the k gallery items most cosine-similar to q (ties by gallery index); features are
    L2-normalised first, the query keeps weight 1 (its own similarity ** alpha). The gallery is not changed.

    Returns:
        (Q, D) float32 tensor of unit-norm expanded queries (k=0: the normalised queries).
    """
    if int(k) < 0 or float(alpha) < 0:
        raise ValueError(f"k and alpha must be >= 0, got k={k}, alpha={alpha}")
    q, g = (torch.nn.functional.normalize(x, dim=1) for x in as_feature_pair(qf, gf))
    k = min(int(k), g.shape[0])
    if k == 0:
        return q.clone()
    out = torch.empty_like(q)
    step = int(chunk_size) if chunk_size else default_chunk_size(g.shape[0])
    for s in range(0, q.shape[0], step):
        qc = q[s:s + step]
        sim = qc @ g.t()
        idx = torch.from_numpy(stable_topk(1.0 - sim, k))
        w = sim.gather(1, idx).clamp_min(0).pow(float(alpha))
        out[s:s + step] = qc + (w[..., None] * g[idx]).sum(dim=1)
    return torch.nn.functional.normalize(out, dim=1)
