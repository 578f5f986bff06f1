"""Which images a synthetic dataset holds (the plan) and where each goes on disk in the real naming formats.

Market: ``bounding_box_train|query|bounding_box_test/0002_c1s1_000451_01.jpg`` with junk ``-1_c...`` and
distractors ``0000_c...`` in the gallery. Duke: same folders, ``0001_c2_f0046182.jpg``; as in the real
DukeMTMC-reID, its distractors are extra identities that appear only in the gallery (no -1, no 0000).
LaST: ``train/<pid>/``, ``{val,test}/query/``, ``{val,test}/gallery/<pid>/``, names ``000123_0000451_000.jpg``
(pid, frame, clothes id); the test identities are split half/half into val and test; no junk or distractors.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LAYOUTS = ("market", "duke", "last")
MARKET_DIRS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}


@dataclass(frozen=True)
class Shot:
    """One image to render: who (``identity`` key, None = background only), which camera (0-based), where."""

    index: int            # unique per dataset: seeds the image's random stream and numbers its frame
    pid: int              # as written in the file name (-1 junk, 0 distractor in Market)
    cam: int
    split: str            # train | query | gallery
    group: str            # "" for Market/Duke; "val" or "test" for LaST query/gallery
    identity: int | None  # key of the identity style to draw
    misaligned: bool = False


def plan_shots(rng: np.random.Generator, layout: str, num_ids: int, num_test_ids: int, num_cams: int,
               images_per_id_per_cam: int, num_distractors: int, num_junk: int) -> list[Shot]:
    """Decide every image: each id is seen by 2..num_cams random cameras, ``images_per_id_per_cam`` images each.

    For a test id, one image per camera is a query and the rest are gallery images.
    """
    pids = np.arange(1, num_ids + 1)
    test_ids = rng.choice(pids, size=num_test_ids, replace=False)
    test = set(test_ids.tolist())
    val = set(test_ids[: num_test_ids // 2].tolist()) if layout == "last" else set()
    rows: list[tuple] = []
    for pid in pids.tolist():
        cams = np.sort(rng.choice(num_cams, size=int(rng.integers(2, num_cams + 1)), replace=False)).tolist()
        group = ("val" if pid in val else "test") if layout == "last" and pid in test else ""
        for cam in cams:
            query_slot = int(rng.integers(images_per_id_per_cam)) if pid in test else -1
            for k in range(images_per_id_per_cam):
                split = "train" if pid not in test else ("query" if k == query_slot else "gallery")
                rows.append((pid, cam, split, group, pid, False))
    if layout == "market":
        for _ in range(num_junk):  # bad detections of test people: pid -1
            rows.append((-1, int(rng.integers(num_cams)), "gallery", "", int(rng.choice(test_ids)), True))
        for j in range(num_distractors):  # pid 0000: background or a misframed stranger
            stranger = num_ids + 1 + j if rng.random() < 0.5 else None
            rows.append((0, int(rng.integers(num_cams)), "gallery", "", stranger, True))
    elif layout == "duke":
        pid, left = num_ids + 1, num_distractors
        while left > 0:  # gallery-only identities, a few images in one camera each
            cam, n = int(rng.integers(num_cams)), min(left, int(rng.integers(2, 5)))
            rows += [(pid, cam, "gallery", "", pid, False)] * n
            pid, left = pid + 1, left - n
    return [Shot(i, *row) for i, row in enumerate(rows)]


def relative_path(layout: str, shot: Shot) -> str:
    """The file's path inside the dataset folder, in the layout's real naming format."""
    if layout == "market":
        pid = "-1" if shot.pid == -1 else f"{shot.pid:04d}"
        return f"{MARKET_DIRS[shot.split]}/{pid}_c{shot.cam + 1}s1_{shot.index:06d}_01.jpg"
    if layout == "duke":
        return f"{MARKET_DIRS[shot.split]}/{shot.pid:04d}_c{shot.cam + 1}_f{shot.index:07d}.jpg"
    name = f"{shot.pid:06d}_{shot.index:07d}_000.jpg"
    if shot.split == "train":
        return f"train/{shot.pid:06d}/{name}"
    if shot.split == "query":
        return f"{shot.group}/query/{name}"
    return f"{shot.group}/gallery/{shot.pid:06d}/{name}"
