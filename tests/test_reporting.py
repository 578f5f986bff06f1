"""The report's own statistics and tables: chance level, what-differs lines, the side-by-side table."""
from __future__ import annotations

import numpy as np
import pytest

from reidlib.evaluation import evaluate
from reidlib.reporting import PAPER_TABLE_I, chance_rank1, comparison_table, differences


def test_chance_rank1_by_hand_drops_same_camera_positives():
    # query pid 1 (cam 0): gallery item 0 is junk, 1 positive of 3 ranked; query pid 2: 1 positive of 4
    q_pids, q_cams = np.array([1, 2]), np.array([0, 0])
    g_pids, g_cams = np.array([1, 1, 2, 3]), np.array([0, 1, 1, 1])
    assert chance_rank1(q_pids, q_cams, g_pids, g_cams) == pytest.approx(100 * (1 / 3 + 1 / 4) / 2)
    # LaST protocol: no camera filter, query 1 then has 2 positives of 4
    assert chance_rank1(q_pids, q_cams, g_pids, g_cams, "last") == pytest.approx(100 * (2 / 4 + 1 / 4) / 2)


def test_chance_rank1_matches_the_evaluator_on_random_rankings():
    rng = np.random.default_rng(0)
    q_pids, q_cams = rng.integers(0, 6, 30), rng.integers(0, 3, 30)
    g_pids, g_cams = rng.integers(0, 6, 80), rng.integers(0, 3, 80)
    r1 = [evaluate(rng.random((30, 80)), q_pids, g_pids, q_cams, g_cams)["cmc"][0] for _ in range(400)]
    assert 100 * float(np.mean(r1)) == pytest.approx(chance_rank1(q_pids, q_cams, g_pids, g_cams), abs=1.0)


def test_differences_name_only_what_differs():
    paper_like = {"init": "ImageNet", "epochs": 120, "input": "256x128", "hardware": "GPU"}
    assert differences(paper_like, "Market-1501") == "same setting"
    cpu = dict(paper_like, epochs=6, hardware="AMD EPYC, 2 cores", train_min=21.5)
    assert differences(cpu, "CUHK03-NP") == "differs in data, epochs, hardware; 21.5 min of training"


def test_comparison_table_holds_paper_study_and_reference_rows():
    run = {"model_label": "OSNet x0.25", "dataset_label": "CUHK03-NP",
           "evaluations": {"test": {"label": "CUHK03-NP", "role": "test", "R1": 50.0, "mAP": 45.0}},
           "train": {"init": "/x/osnet_x0_25_msmt17.pth", "image_size": [256, 128], "epochs_completed": 6,
                     "train_seconds": 1200.0, "device": "cpu"},
           "run_info": {"environment": {"cpu": "AMD EPYC", "cpu_count": 2, "torch_threads": 2, "cuda": None}}}
    ref = {"source": "peer", "model": "OSNet x0.25", "data": "CUHK03-NP", "init": "osnet_x0_25_msmt17",
           "epochs": 20, "input": "256x128", "hardware": "2-core CPU", "R1": 43.0, "mAP": 41.0, "differs": "no center"}
    table = comparison_table({"10_train/cuhk03-osnet": run}, [ref])
    assert len(table) == sum(len(v) for v in PAPER_TABLE_I.values()) + 2
    ours = table[table["source"].str.contains("cuhk03-osnet")].iloc[0]
    assert ours["R1 / mAP"] == "50.0 / 45.0"
    assert ours["init"] == "osnet_x0_25_msmt17" and ours["hardware"] == "AMD EPYC, 2 cores, 2 threads"
    assert ours["what differs from the paper"] == "differs in data, init, epochs, hardware; 20.0 min of training"
    peer = table[table["source"] == "peer"].iloc[0]
    assert peer["what differs from the paper"].endswith("; no center")
