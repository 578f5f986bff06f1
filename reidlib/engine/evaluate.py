"""Evaluate a model on a query/gallery pair of item lists (model selection during training, and the final test)."""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from reidlib.evaluation.embed_rank import EvalSettings, embed_and_rank

Item = tuple[str, int, int]


def evaluate_model(
    model: torch.nn.Module,
    query: Sequence[Item],
    gallery: Sequence[Item],
    settings: EvalSettings | Mapping | None = None,
    *,
    protocol: str = "market",
    height: int = 256,
    width: int = 128,
    num_workers: int = 0,
    device: torch.device | str | None = None,
    precision: str = "auto",
    channels_last: bool | None = None,
    progress: bool = False,
    transform: Callable | None = None,
) -> dict:
    """Embed and rank with :func:`reidlib.evaluation.embed_and_rank` under ``settings`` (an
    :class:`~reidlib.evaluation.EvalSettings`, a mapping of its fields, or None for the defaults); summarise.

    Returns ``{"rank1", "rank5", "rank10", "mAP", "mINP", "num_valid_queries", "cmc"}``: fractions in [0, 1],
    ``rank<k>`` only for k <= ``settings.max_rank``, ``cmc`` a list of ``max_rank`` values.
    ``transform`` (default: resize to ``height`` x ``width`` + normalise) maps a PIL image to a tensor.
    The model's train/eval mode is restored afterwards.
    """
    from reidlib.data import build_transforms

    transform = transform or build_transforms(height, width, is_train=False)
    res = embed_and_rank(model, query, gallery, settings, transform=transform, protocol=protocol, device=device,
                         precision=precision, channels_last=channels_last, num_workers=num_workers,
                         progress=progress).result
    cmc = np.asarray(res["cmc"], dtype=float).ravel()
    out = {f"rank{k}": float(cmc[k - 1]) for k in (1, 5, 10) if k <= len(cmc)}
    out.update(mAP=float(res["mAP"]), mINP=float(res["mINP"]), num_valid_queries=int(res["num_valid_queries"]),
               cmc=cmc.tolist())
    return out
