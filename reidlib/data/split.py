"""A validation split carved from the training identities, for model selection without touching the test set."""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np

from .base import Item, relabel


def make_val_split(train_items: Sequence[Item], num_val_ids: int,
                   seed: int = 0) -> tuple[list[Item], list[Item], list[Item]]:
    """Hold out ``num_val_ids`` training identities as a small query/gallery set.

    Only identities seen by at least two cameras qualify. For each held-out identity one image (from a randomly
    chosen camera) becomes the query and all its other images go to the gallery, so under the market protocol
    the query keeps at least one valid match (an image from another camera).

    Returns:
        ``(train, val_query, val_gallery)``: the remaining training items with pids relabelled ``0..N-1``
        (sorted by their input pid), and the held-out items with their input pids.

    Raises:
        ValueError: fewer than ``num_val_ids`` identities are seen by two or more cameras.
    """
    by_pid: dict[int, list[Item]] = defaultdict(list)
    for item in train_items:
        by_pid[item[1]].append(item)
    eligible = sorted(pid for pid, items in by_pid.items() if len({cam for _, _, cam in items}) >= 2)
    if not 0 < num_val_ids <= len(eligible):
        raise ValueError(
            f"num_val_ids must be between 1 and {len(eligible)} (identities seen by >= 2 cameras), got {num_val_ids}"
        )
    if num_val_ids == len(by_pid):
        raise ValueError("holding out every training identity would leave nothing to train on")
    rng = np.random.default_rng(seed)
    held_out = set(rng.choice(eligible, size=num_val_ids, replace=False).tolist())
    query, gallery = [], []
    for pid in sorted(held_out):
        items = by_pid[pid]
        cams = sorted({cam for _, _, cam in items})
        cam = cams[rng.integers(len(cams))]
        candidates = [i for i, item in enumerate(items) if item[2] == cam]
        q = candidates[rng.integers(len(candidates))]
        query.append(items[q])
        gallery += items[:q] + items[q + 1:]
    train = relabel(item for item in train_items if item[1] not in held_out)
    return train, query, gallery
