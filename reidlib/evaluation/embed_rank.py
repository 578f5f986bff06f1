"""Embed, then rank: the one path from a model and query/gallery item lists to an evaluation result.

:class:`EvalSettings` holds how an evaluation is done (distance, normalisation, flip test-time augmentation,
batch size, CMC length, re-ranking, bootstrap interval); a profile's ``evaluation:`` block maps onto it
(:meth:`EvalSettings.from_mapping`). :func:`embed_and_rank` is what model selection during training
(:func:`reidlib.engine.fit`), the stages' test evaluations, retrieval and search run.

>>> settings = EvalSettings.from_mapping({"metric": "cosine", "flip": False})                # doctest: +SKIP
>>> ranked = embed_and_rank(model, query_items, gallery_items, settings, transform=tf)     # doctest: +SKIP
>>> ranked.result["cmc"][0], ranked.result["mAP"]       # fractions in [0, 1]                # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch

from reidlib.evaluation.bootstrap import DEFAULT_N_BOOT, check_ci
from reidlib.evaluation.distances import check_metric
from reidlib.evaluation.evaluator import _rerank_spec, evaluate_features
from reidlib.evaluation.features import FeatureSet, extract_features

Item = tuple[str, int, int]


@dataclass(frozen=True)
class EvalSettings:
    """How query/gallery embeddings are made and ranked.

    Attributes:
        metric: a :data:`reidlib.evaluation.METRICS` name (Minkowski with p = 3).
        normalize: L2-normalise the embeddings before the distance.
        flip: average each embedding with its horizontal mirror's.
        batch_size: images per forward pass (>= 1).
        max_rank: CMC length (>= 1); mAP and mINP do not depend on it.
        rerank: None (off); else ``{"method": "k-reciprocal" | "aqe", **kwargs}``. ``True``, a method name or a
            mapping are accepted and normalised to that form; ``False`` and empty values mean off.
        ci: None, or the level (0 < ci < 1) of an identity-bootstrap interval for rank-1 and mAP.
        n_boot, boot_seed: bootstrap replicates and their seed (used with ``ci``).
        per_query: also return the per-query values a paired comparison needs.
    """

    metric: str = "euclidean"
    normalize: bool = True
    flip: bool = True
    batch_size: int = 128
    max_rank: int = 50
    rerank: dict | None = None
    ci: float | None = None
    n_boot: int = DEFAULT_N_BOOT
    boot_seed: int = 0
    per_query: bool = False

    def __post_init__(self) -> None:
        check_metric(self.metric, 3)
        for name in ("normalize", "flip", "per_query"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"evaluation {name} must be true or false, got {getattr(self, name)!r}")
        for name in ("batch_size", "max_rank", "n_boot"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"evaluation {name} must be an integer >= 1, got {value!r}")
        if self.ci is not None:
            check_ci(self.ci, self.n_boot)
        object.__setattr__(self, "rerank", _canonical_rerank(self.rerank))

    @classmethod
    def from_mapping(cls, block: Any = None, **overrides: Any) -> "EvalSettings":
        """Settings from a profile's ``evaluation:`` mapping (keys as the attributes), another dataclass with
        those fields, or an :class:`EvalSettings`; missing keys keep their defaults, ``overrides`` win.

        Raises:
            ValueError: an unknown key (all of them named, with the valid ones) or a bad value.
        """
        if block is None:
            values: dict = {}
        elif isinstance(block, Mapping):
            values = dict(block)
        elif dataclasses.is_dataclass(block) and not isinstance(block, type):
            values = {f.name: getattr(block, f.name) for f in dataclasses.fields(block)}
        else:
            raise TypeError(f"evaluation settings must be a mapping or an EvalSettings, got {type(block).__name__}")
        values.update(overrides)
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ValueError(f"unknown evaluation setting(s) {unknown}; valid: {names}")
        return cls(**values)

    def rank_kwargs(self) -> dict:
        """Keywords for :func:`reidlib.evaluation.evaluate_features` (everything but embedding)."""
        return {"metric": self.metric, "normalize": self.normalize, "max_rank": self.max_rank,
                "rerank": self.rerank, "ci": self.ci, "n_boot": self.n_boot, "seed": self.boot_seed,
                "return_per_query": self.per_query}


def _canonical_rerank(rerank: Any) -> dict | None:
    if not rerank:  # None, False, "", {}: off
        return None
    method, kwargs = _rerank_spec(rerank)
    return {"method": method, **kwargs}


@dataclass
class Ranked:
    """What :func:`embed_and_rank` returns.

    ``result``: :func:`reidlib.evaluation.evaluate_features`'s dict (fractions in [0, 1]); ``query`` and
    ``gallery``: the embeddings (:class:`FeatureSet`, not normalised) when asked for, else None;
    ``extract_seconds``: wall-clock seconds spent embedding both lists; ``num_images``: images embedded.
    """

    result: dict
    query: FeatureSet | None
    gallery: FeatureSet | None
    extract_seconds: float
    num_images: int


def embed_items(model: torch.nn.Module, items: Sequence[Item], transform: Callable | None = None, *,
                flip: bool = True, batch_size: int = 128, num_workers: int = 0,
                device: str | torch.device | None = None, precision: str = "auto",
                channels_last: bool | None = None, progress: bool = False) -> FeatureSet:
    """Embed ``(path, pid, camid)`` items in their order with :func:`reidlib.evaluation.extract_features`.

    ``transform`` maps a PIL image to a (3, H, W) tensor; default ``reidlib.data.build_transforms(is_train=False)``
    (256 x 128). Images are read ``batch_size`` at a time (``num_workers`` loader processes).
    """
    from reidlib.data import build_transforms, make_test_loader

    loader = make_test_loader(list(items), transform or build_transforms(is_train=False), batch_size=batch_size,
                              num_workers=num_workers)
    return extract_features(model, loader, flip=flip, device=device, channels_last=channels_last,
                            precision=precision, progress=progress)


def embed_and_rank(model: torch.nn.Module, query: Sequence[Item], gallery: Sequence[Item],
                   settings: EvalSettings | Mapping | None = None, *, transform: Callable | None = None,
                   protocol: str = "market", device: str | torch.device | None = None, precision: str = "auto",
                   channels_last: bool | None = None, num_workers: int = 0, progress: bool = False,
                   keep_features: bool = False) -> Ranked:
    """Embed the query and gallery items with ``model`` and rank the gallery for every query under ``settings``.

    Args:
        model: maps a (B, 3, H, W) batch to (B, D) embeddings in eval mode (its train/eval mode is restored).
        query, gallery: ``(path, pid, camid)`` items.
        settings: :class:`EvalSettings` (or a mapping for :meth:`EvalSettings.from_mapping`); default settings
            when None.
        transform: PIL image -> (3, H, W) tensor, as :func:`embed_items`.
        protocol: ``"market"`` or ``"cuhk03"`` (:func:`reidlib.evaluation.evaluate`).
        device, precision, channels_last: where and how the network runs (:func:`extract_features`); distances
            and ranking run where :func:`evaluate_features` puts them by default (CUDA when available).
        num_workers, progress: loader processes; a progress bar per list.
        keep_features: return the two :class:`FeatureSet` in :class:`Ranked` (else None).
    """
    settings = settings if isinstance(settings, EvalSettings) else EvalSettings.from_mapping(settings)
    t0 = time.time()
    q, g = (embed_items(model, items, transform, flip=settings.flip, batch_size=settings.batch_size,
                        num_workers=num_workers, device=device, precision=precision, channels_last=channels_last,
                        progress=progress) for items in (query, gallery))
    seconds = time.time() - t0
    result = evaluate_features(q.feats, g.feats, q.pids, g.pids, q.camids, g.camids, protocol=protocol,
                               **settings.rank_kwargs())
    return Ranked(result, q if keep_features else None, g if keep_features else None, seconds, len(q) + len(g))
