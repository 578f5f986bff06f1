"""DukeMTMC-reID (Zheng et al., ICCV 2017) in its raw download layout.

``root`` may be the dataset folder itself (holding ``bounding_box_train/``) or its parent holding
``DukeMTMC-reID/`` (or ``dukemtmc-reid/``, ``dukemtmcreid/``). Names look like ``0001_c2_f0046182.jpg``;
there is no junk or pid 0: the 408 distractor identities are ordinary ids that appear only in the gallery.
"""
from __future__ import annotations

from pathlib import Path

from .base import ReIDDataset
from .folder import read_market_layout
from .registry import register_dataset

ALIASES = ("DukeMTMC-reID", "dukemtmc-reid", "dukemtmcreid")
EXPECTED_COUNTS = {
    "train": {"images": 16_522, "ids": 702, "cameras": 8},
    "query": {"images": 2_228, "ids": 702, "cameras": 8},
    "gallery": {"images": 17_661, "ids": 1_110, "cameras": 8},
}


@register_dataset("dukemtmcreid")
def dukemtmcreid(root: str | Path, check_counts: bool = True) -> ReIDDataset:
    """Read DukeMTMC-reID; ``check_counts`` warns when the counts differ from :data:`EXPECTED_COUNTS`."""
    return read_market_layout("dukemtmcreid", root, ALIASES, EXPECTED_COUNTS, check_counts)
