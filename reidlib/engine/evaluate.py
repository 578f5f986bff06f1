"""Evaluate a model on a query/gallery pair of item lists (used for validation and the final test)."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from reidlib.data import build_transforms, make_test_loader

Item = tuple[str, int, int]


def evaluate_model(
    model: torch.nn.Module,
    query: Sequence[Item],
    gallery: Sequence[Item],
    *,
    protocol: str = "market",
    height: int = 256,
    width: int = 128,
    batch_size: int = 128,
    num_workers: int = 0,
    flip: bool = True,
    metric: str = "euclidean",
    device: torch.device | str | None = None,
    precision: str = "auto",
    channels_last: bool | None = None,
    progress: bool = False,
    transform: Callable | None = None,
) -> dict:
    """Extract query and gallery embeddings with ``model`` (eval mode) and rank the gallery for each query.

    Returns ``{"rank1", "rank5", "rank10", "mAP", "mINP", "num_valid_queries", "cmc"}``: fractions in [0, 1]
    as :func:`reidlib.evaluation.evaluate_features` reports them, ``cmc`` a list of ``max_rank`` values.
    ``transform`` (default: resize to ``height`` x ``width`` + normalise) maps a PIL image to a tensor.
    The model's train/eval mode is restored afterwards.
    """
    from reidlib.evaluation import evaluate_features, extract_features

    transform = transform or build_transforms(height, width, is_train=False)
    feats = []
    for items in (query, gallery):
        loader = make_test_loader(list(items), transform, batch_size=batch_size, num_workers=num_workers)
        feats.append(extract_features(model, loader, flip=flip, device=device, channels_last=channels_last,
                                      precision=precision, progress=progress))
    q, g = feats
    res = evaluate_features(q.feats, g.feats, q.pids, g.pids, q.camids, g.camids, metric=metric, normalize=True,
                            protocol=protocol)
    cmc = np.asarray(res["cmc"], dtype=float).ravel()
    out = {f"rank{k}": float(cmc[k - 1]) for k in (1, 5, 10) if k <= len(cmc)}
    out.update(mAP=float(res["mAP"]), mINP=float(res["mINP"]), num_valid_queries=int(res["num_valid_queries"]),
               cmc=cmc.tolist())
    return out
