"""Evaluation: distances, exact CMC / mAP / mINP at LaST scale, re-ranking, feature extraction, retrieval,
pair verification (ROC AUC, EER, TAR@FAR), identity-bootstrap intervals and paired differences.

>>> from reidlib.evaluation import distance, evaluate, evaluate_features, extract_features   # doctest: +SKIP
>>> res = evaluate_features(qf, gf, q_pids, g_pids, q_camids, g_camids, metric="cosine")   # doctest: +SKIP
>>> res["cmc"][0], res["mAP"]          # fractions in [0, 1]                                # doctest: +SKIP
>>> evaluate_features(qf, gf, q_pids, g_pids, q_camids, g_camids, ci=0.95)["ci"]["mAP"]      # doctest: +SKIP
"""
from reidlib.evaluation.bootstrap import bootstrap_ci, paired_difference
from reidlib.evaluation.distances import METRICS, GalleryDistance, distance
from reidlib.evaluation.embed_rank import EvalSettings, Ranked, embed_and_rank, embed_items
from reidlib.evaluation.evaluator import RERANK_METHODS, evaluate_features
from reidlib.evaluation.features import FeatureSet, extract_features
from reidlib.evaluation.pair_head import PairHead, compare_with_cosine, train_pair_head
from reidlib.evaluation.rank import AP_FORMS, PROTOCOLS, chance_rank1, evaluate, stable_topk
from reidlib.evaluation.rerank import query_expansion, re_ranking
from reidlib.evaluation.verification import (
    PairSet,
    evaluate_verification,
    make_pairs,
    pair_distances,
    pair_scores,
    plot_roc,
    roc_curve,
    verification_metrics,
)

__all__ = [
    "AP_FORMS",
    "EvalSettings",
    "METRICS",
    "PROTOCOLS",
    "RERANK_METHODS",
    "FeatureSet",
    "PairHead",
    "PairSet",
    "Ranked",
    "GalleryDistance",
    "bootstrap_ci",
    "chance_rank1",
    "compare_with_cosine",
    "distance",
    "embed_and_rank",
    "embed_items",
    "evaluate",
    "evaluate_features",
    "evaluate_verification",
    "extract_features",
    "make_pairs",
    "pair_distances",
    "paired_difference",
    "pair_scores",
    "plot_roc",
    "query_expansion",
    "re_ranking",
    "roc_curve",
    "stable_topk",
    "train_pair_head",
    "verification_metrics",
]
