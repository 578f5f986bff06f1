"""The study's stage ids, in run order, and the run ids built from them (``"<stage>/<name>"``, e.g.
``"10_train/cuhk03-osnet_x0_25"``).

Each stage id is also the name of its notebook (``notebooks/<stage>.ipynb``). The pipeline imports these names
from here (a stage never imports the pipeline).
"""
from __future__ import annotations

DATA_STAGE = "00_data"
TRAIN_STAGE = "10_train"
FINETUNE_STAGE = "20_finetune"
DISTANCE_STAGE = "30_distance_study"
REPORT_STAGE = "40_report"
STAGES = (DATA_STAGE, TRAIN_STAGE, FINETUNE_STAGE, DISTANCE_STAGE, REPORT_STAGE)


def run_id(stage: str, name: str) -> str:
    """``"<stage>/<name>"``."""
    return f"{stage}/{name}"


def in_stage(run: str, *stages: str) -> bool:
    """True when run id ``run`` belongs to one of ``stages``."""
    return run.split("/", 1)[0] in stages
