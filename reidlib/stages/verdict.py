"""Did a trained model learn? The thresholds that keep a run out of every ranking claim.

Rank-1 values are percentages (0-100); the feature spread is a distance between unit vectors (0 to 1 for
typical sets, 0 = collapse).
"""
from __future__ import annotations

import math

NEAR_CHANCE_POINTS = 2.0  # a test rank-1 less than this many points above chance counts as near chance
MIN_SPREAD = 0.1  # feature spread below this: every image mapped to nearly the same feature (collapse)


def is_near_chance(r1: float, chance: float | None) -> bool:
    """True where test rank-1 ``r1`` (%) is less than :data:`NEAR_CHANCE_POINTS` above ``chance`` (%; 0 where
    unknown)."""
    level = 0.0 if chance is None or (isinstance(chance, float) and math.isnan(chance)) else float(chance)
    return float(r1) - level < NEAR_CHANCE_POINTS


def learning_verdict(r1: float, chance: float | None, spread: float | None) -> str:
    """``"learned"``, ``"near chance"`` (:func:`is_near_chance`) or ``"collapsed"`` (feature spread below
    :data:`MIN_SPREAD`)."""
    if spread is not None and spread < MIN_SPREAD:
        return "collapsed"
    if is_near_chance(r1, chance):
        return "near chance"
    return "learned"
