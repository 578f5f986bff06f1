"""A learned verification head on stored embeddings, and its comparison with a plain cosine threshold.

>>> from reidlib.evaluation.pair_head import train_pair_head, compare_with_cosine          # doctest: +SKIP
>>> head = train_pair_head(train.feats, train.pids, steps=300, seed=0)                     # seconds on a CPU
>>> res = compare_with_cosine(head, test.feats, test.pids, test.camids)                     # doctest: +SKIP
>>> res["cosine"]["auc"], res["pair_head"]["auc"]                                          # doctest: +SKIP

The head sees a pair of embeddings ``(f1, f2)`` (each L2-normalised first by default) through the symmetric
features ``|f1 - f2|`` and ``f1 * f2`` (so ``head(f1, f2) == head(f2, f1)``), concatenated (2D) and fed to an
MLP ``Linear(2D, hidden) -> ReLU -> Linear(hidden, 1)`` that returns one logit, "higher = same person".

Training needs no images: batches of stored features are drawn P x K (P identities, K images each, as the
re-ID trainer samples them), every pair inside the batch is labelled (same pid = 1), and the binary
cross-entropy is weighted so genuine and impostor pairs count equally (a 16 x 4 batch holds 96 genuine and
1,920 impostor pairs). Everything is seeded; training runs on the CPU.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from reidlib.evaluation.distances import as_float_tensor
from reidlib.evaluation.rank import as_ids
from reidlib.evaluation.verification import DEFAULT_FAR, PAIR_CHUNK, make_pairs, pair_scores, verification_metrics


class PairHead(nn.Module):
    """``(f1, f2)`` embeddings, each (B, D) -> (B,) same-identity logits.

    Args:
        embed_dim: D, the embedding size (512 for OSNet x0.25, 2048 for BoT ResNet50, 960 for mnv3_siamese).
        hidden: width of the MLP's hidden layer.
        normalize: L2-normalise each embedding before forming the pair features.
        dropout: dropout on the hidden layer while training.
    """

    def __init__(self, embed_dim: int, hidden: int = 256, normalize: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        if int(embed_dim) < 1 or int(hidden) < 1:
            raise ValueError(f"embed_dim and hidden must be >= 1, got {embed_dim} and {hidden}")
        self.embed_dim, self.hidden, self.normalize = int(embed_dim), int(hidden), bool(normalize)
        self.mlp = nn.Sequential(nn.Linear(2 * self.embed_dim, self.hidden), nn.ReLU(inplace=True),
                                 nn.Dropout(dropout), nn.Linear(self.hidden, 1))

    def forward(self, f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
        if f1.shape != f2.shape or f1.dim() != 2 or f1.shape[1] != self.embed_dim:
            raise ValueError(f"PairHead expects two (B, {self.embed_dim}) embedding batches, got "
                             f"{tuple(f1.shape)} and {tuple(f2.shape)}")
        if self.normalize:
            f1, f2 = F.normalize(f1, dim=1), F.normalize(f2, dim=1)
        return self.mlp(torch.cat([(f1 - f2).abs(), f1 * f2], dim=1)).squeeze(1)

    @torch.no_grad()
    def score_pairs(self, feats: np.ndarray | torch.Tensor, a: np.ndarray | Sequence[int],
                    b: np.ndarray | Sequence[int], chunk_size: int = PAIR_CHUNK) -> np.ndarray:
        """Logits (n,) float64 of the index pairs ``(feats[a[k]], feats[b[k]])``; feats is (N, D)."""
        was_training = self.training
        self.eval()
        f = as_float_tensor(feats, "feats")
        ia, ib = torch.as_tensor(np.asarray(a, np.int64)), torch.as_tensor(np.asarray(b, np.int64))
        out = np.empty(ia.numel(), dtype=np.float64)
        try:
            for s in range(0, ia.numel(), chunk_size):
                out[s:s + chunk_size] = self(f[ia[s:s + chunk_size]], f[ib[s:s + chunk_size]]).double().numpy()
        finally:
            self.train(was_training)
        return out


@dataclass
class PairHeadHistory:
    """What :func:`train_pair_head` did: settings and the balanced BCE loss of every step."""

    settings: dict
    losses: list[float] = field(default_factory=list)


def _pk_batch(rng: np.random.Generator, by_pid: list[np.ndarray], p: int, k: int) -> np.ndarray:
    ids = rng.choice(len(by_pid), size=p, replace=False)
    rows = [rng.choice(by_pid[i], size=k, replace=by_pid[i].size < k) for i in ids]
    return np.concatenate(rows)


def train_pair_head(feats: np.ndarray | torch.Tensor, pids: Sequence[int] | np.ndarray, p: int = 16, k: int = 4,
                    steps: int = 300, lr: float = 1e-3, weight_decay: float = 1e-4, hidden: int = 256,
                    normalize: bool = True, dropout: float = 0.0, seed: int = 0, threads: int | None = 1) -> PairHead:
    """Train a :class:`PairHead` with BCE on pairs mined from P x K batches of stored features.

    Args:
        feats: (N, D) training embeddings (e.g. a :class:`~reidlib.evaluation.FeatureSet`'s ``feats``); never
            the identities you evaluate on.
        pids: (N,) identity of every row; identities with a single image still serve as impostors.
        p, k: identities per batch and images per identity (sampled with replacement when an identity has
            fewer than k images); a batch scores all p*k*(p*k-1)/2 pairs inside it.
        steps: optimiser steps (Adam, ``lr``, ``weight_decay``).
        hidden, normalize, dropout: see :class:`PairHead`.
        seed: seeds the batch sampler (numpy) and the head's init (torch, without touching the global RNG).
        threads: torch intra-op threads while training (restored afterwards); 1 by default, because a model this
            small runs ~15 ms a step on one thread and several times slower on two contended cores. None: leave as is.

    Returns:
        The trained head in eval mode, with ``head.history`` (:class:`PairHeadHistory`: settings and per-step loss).
        The same arguments give the same weights (on one machine and thread count).
    """
    f = as_float_tensor(feats, "feats")
    y = as_ids(pids, "pids", f.shape[0])
    uniq, inverse = np.unique(y, return_inverse=True)
    if uniq.size < 2:
        raise ValueError(f"need at least 2 identities to mine impostor pairs, got {uniq.size}")
    p = min(int(p), uniq.size)
    if p < 2 or int(k) < 1 or int(steps) < 1:
        raise ValueError(f"need p >= 2 identities per batch, k >= 1 and steps >= 1; got p={p}, k={k}, steps={steps}")
    by_pid = [np.flatnonzero(inverse == i) for i in range(uniq.size)]
    rng = np.random.default_rng(seed)
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(max(1, int(threads)))
    try:
        head = _train(f, y, by_pid, rng, p, int(k), int(steps), lr, weight_decay, int(hidden), bool(normalize),
                      dropout, int(seed))
    finally:
        torch.set_num_threads(old_threads)
    return head


def _train(f: torch.Tensor, y: np.ndarray, by_pid: list[np.ndarray], rng: np.random.Generator, p: int, k: int,
           steps: int, lr: float, weight_decay: float, hidden: int, normalize: bool, dropout: float,
           seed: int) -> PairHead:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = PairHead(f.shape[1], hidden=hidden, normalize=normalize, dropout=dropout)
        opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
        n = p * k
        r, c = np.triu_indices(n, k=1)
        history = PairHeadHistory(settings=dict(p=p, k=k, steps=steps, lr=lr, weight_decay=weight_decay,
                                                hidden=hidden, normalize=normalize, dropout=dropout, seed=seed,
                                                embed_dim=int(f.shape[1])))
        head.train()
        for _ in range(steps):
            rows = _pk_batch(rng, by_pid, p, k)
            same = torch.from_numpy((y[rows][r] == y[rows][c]).astype(np.float32))
            keep = torch.from_numpy(rows[r] != rows[c])  # a row drawn twice (replacement) is no pair
            x = f[torch.from_numpy(rows)]
            logits = head(x[torch.from_numpy(r)], x[torch.from_numpy(c)])
            n_pos = (same * keep).sum().clamp_min(1)
            n_neg = ((1 - same) * keep).sum().clamp_min(1)
            weight = keep * torch.where(same > 0, 0.5 / n_pos, 0.5 / n_neg)  # each class carries half the loss
            loss = (F.binary_cross_entropy_with_logits(logits, same, reduction="none") * weight).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            history.losses.append(float(loss.detach()))
    head.eval()
    head.history = history
    return head


def compare_with_cosine(head: PairHead, feats: np.ndarray | torch.Tensor, pids: Sequence[int] | np.ndarray,
                        camids: Sequence[int] | np.ndarray, max_impostors: int | None = 1_000_000, seed: int = 0,
                        ignore_pids: Sequence[int] = (-1,), far: Sequence[float] = DEFAULT_FAR) -> dict:
    """Score the same held-out pairs with the head and with cosine similarity.

    Args:
        head: a trained :class:`PairHead`.
        feats: (N, D) embeddings of held-out identities (not seen by :func:`train_pair_head`).
        pids, camids: (N,) identity and camera ids; pairs come from :func:`reidlib.evaluation.make_pairs`
            (every cross-camera genuine pair, all or ``max_impostors`` seeded impostor pairs).
        max_impostors, seed, ignore_pids: passed to ``make_pairs``.
        far: FAR targets of :func:`reidlib.evaluation.verification_metrics`.

    Returns:
        ``{"cosine": metrics, "pair_head": metrics, "num_pairs": int}``: two
        :func:`~reidlib.evaluation.verification_metrics` dicts over identical pairs (cosine thresholds are in
        cosine-similarity-minus-one units, the head's in logits).
    """
    pairs = make_pairs(pids, camids, max_impostors=max_impostors, seed=seed, ignore_pids=ignore_pids)
    cos = pair_scores(feats, pairs.a, pairs.b, metric="cosine", normalize=True)
    learned = head.score_pairs(feats, pairs.a, pairs.b)
    return {"cosine": verification_metrics(cos, pairs.label, far=far),
            "pair_head": verification_metrics(learned, pairs.label, far=far), "num_pairs": pairs.num_pairs}
