"""Stage ``00_data``: every dataset of the profile loaded, its images checked, its splits tabulated."""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pandas as pd

from reidlib.io import write_json

SPLITS = ("train", "query", "gallery")


def dataset_records(loaded: dict) -> dict:
    """Per dataset and split: images, identities, cameras (JSON-ready)."""
    from reidlib.data.base import split_stats

    return {key: {"name": ds.name, "protocol": ds.protocol,
                  **{split: split_stats(getattr(ds, split)) for split in SPLITS}}
            for key, ds in loaded.items()}


def dataset_table(loaded: dict) -> pd.DataFrame:
    """One row per dataset and split (images / ids / cameras)."""
    rows = []
    for key, rec in dataset_records(loaded).items():
        for split in SPLITS:
            rows.append({"dataset": key, "split": split, **rec[split]})
    return pd.DataFrame(rows).set_index(["dataset", "split"])


def _stamp(path: str) -> list[int]:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


def check_images(loaded: dict, cache_dir: str | Path | None = None) -> pd.DataFrame:
    """Decode every image of every split listed; raise once, naming every unreadable file.

    Files that decoded before with the same size and modification time are not decoded again: the check is
    cached in ``cache_dir/verified.json`` (a rerun of a 30k-image profile takes a second).

    Returns:
        One row per dataset: images checked now, images known good from the cache.

    Raises:
        reidlib.data.ImageReadError: listing every bad path with its reason.
    """
    from reidlib.data import verify_images
    from reidlib.data.base import ImageReadError

    cache_file = Path(cache_dir) / "verified.json" if cache_dir else None
    cache: dict[str, list[int]] = {}
    if cache_file is not None and cache_file.is_file():
        try:
            cache = json.loads(cache_file.read_text())
        except json.JSONDecodeError:
            cache = {}
    rows, bad = [], []
    for key, ds in loaded.items():
        paths = sorted({item[0] for split in SPLITS for item in getattr(ds, split)})
        todo = [p for p in paths if cache.get(p) != (_stamp(p) if os.path.exists(p) else None)]
        errors = verify_images(todo, raise_on_error=False)
        failed = {e.split(" (", 1)[0] for e in errors}
        for p in todo:
            if p not in failed:
                cache[p] = _stamp(p)
        bad += [f"[{key}] {e}" for e in errors]
        rows.append({"dataset": key, "images": len(paths), "decoded now": len(todo),
                     "known good (cached)": len(paths) - len(todo), "unreadable": len(errors)})
    if cache_file is not None:
        write_json(cache_file, cache, indent=0)
    if bad:
        raise ImageReadError(f"{len(bad)} unreadable image(s); replace or remove them, then rerun:\n  "
                             + "\n  ".join(bad))
    return pd.DataFrame(rows).set_index("dataset")


def sample_grid(dataset, num_ids: int = 6, per_id: int = 6, seed: int = 0):
    """A figure with one row per identity (query + gallery images), for a first look at a dataset."""
    from matplotlib.figure import Figure

    from reidlib.data.images import read_image

    by_pid: dict[int, list] = {}
    for path, pid, cam in list(dataset.query) + list(dataset.gallery):
        if pid > 0:
            by_pid.setdefault(pid, []).append((path, cam))
    rng = random.Random(seed)
    pids = sorted(by_pid)
    pids = rng.sample(pids, min(num_ids, len(pids)))
    fig = Figure(figsize=(per_id * 0.9, len(pids) * 1.6))
    axes = fig.subplots(len(pids), per_id, squeeze=False)
    for r, pid in enumerate(pids):
        items = sorted(by_pid[pid], key=lambda t: (t[1], t[0]))[:per_id]
        for c in range(per_id):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(items):
                ax.imshow(read_image(items[c][0]))
                ax.set_title(f"id {pid} c{items[c][1] + 1}", fontsize=6)
    fig.tight_layout()
    return fig
