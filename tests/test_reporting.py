"""The report's own statistics, tables and text: chance level, what-differs lines, the side-by-side table, the
published ranking read from the references file, the claims."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reidlib.evaluation import chance_rank1, evaluate
from reidlib.pipeline.references import read_references
from reidlib.stages.records import Recipe, TrainRecord, as_runs
from reidlib.stages.report_runs import hardware_of, loss_terms
from reidlib.stages.report_tables import comparison_table, differences
from reidlib.stages.report_text import pair_head_verdict

PAPER = {"key": "paper-table-i", **read_references()["paper-table-i"]}  # the shipped entry of the paper's Table I
PAPER_ROWS = sum(len(m["results"]) for m in PAPER["models"].values())


def test_chance_rank1_matches_the_evaluator_on_random_rankings():
    rng = np.random.default_rng(0)
    q_pids, q_cams = rng.integers(0, 6, 30), rng.integers(0, 3, 30)
    g_pids, g_cams = rng.integers(0, 6, 80), rng.integers(0, 3, 80)
    r1 = [evaluate(rng.random((30, 80)), q_pids, g_pids, q_cams, g_cams)["cmc"][0] for _ in range(400)]
    assert float(np.mean(r1)) == pytest.approx(chance_rank1(q_pids, g_pids, q_cams, g_cams), abs=0.01)


def test_differences_name_only_what_differs():
    paper_like = {"init": "ImageNet", "epochs": 120, "input": "256x128", "hardware": "GPU"}
    paper = (PAPER["setting"], "Market-1501")
    assert differences(paper_like, "Market-1501", *paper) == "same setting"
    cpu = dict(paper_like, epochs=6, hardware="AMD EPYC, 2 cores", train_min=21.5)
    assert differences(cpu, "CUHK03-NP", *paper) == "differs in data, epochs, hardware; 21.5 min of training"
    ce_frozen = dict(paper_like, losses="CE", frozen="conv1, conv2")
    assert differences(ce_frozen, "Market-1501", *paper) == "same setting; losses: CE; frozen: conv1, conv2"
    assert differences(dict(paper_like, losses="CE + triplet + center"), "Market-1501", *paper) == "same setting"


def test_loss_terms_read_the_recipe():
    assert loss_terms(Recipe.from_dict({"center_weight": 5e-4, "loss_kwargs": {}})) == "CE + triplet + center"
    assert loss_terms(Recipe.from_dict({"center_weight": 0.0, "loss_kwargs": {"triplet_weight": 0.0}})) == "CE"
    assert loss_terms(Recipe.from_dict({})) == "CE + triplet + center"  # the trainer's defaults


def test_hardware_names_native_bf16_only_where_run_json_recorded_it():
    def hardware(m: dict) -> str:
        return hardware_of(TrainRecord.from_dict(m))

    env = {"cpu": "AMD EPYC", "cpu_count": 2, "torch_threads": 2, "cuda": None}
    assert hardware({"run_info": {"environment": env}}) == "AMD EPYC, 2 cores, 2 threads"
    with_bf16 = {"run_info": {"environment": {**env, "cpu_native_bf16": True}}}
    assert hardware(with_bf16) == "AMD EPYC (native bf16), 2 cores, 2 threads"
    without = {"run_info": {"environment": {**env, "cpu_native_bf16": False}}}
    assert hardware(without) == "AMD EPYC (no native bf16), 2 cores, 2 threads"
    gpu = {"train": {"device": "cuda:0"}, "run_info": {"environment": {**env, "cuda": "NVIDIA H200"}}}
    assert hardware(gpu) == "GPU NVIDIA H200"
    assert hardware({}) == "unknown"


def test_comparison_table_holds_paper_study_and_reference_rows():
    run = {"model_label": "OSNet x0.25", "dataset_label": "CUHK03-NP",
           "evaluations": {"test": {"label": "CUHK03-NP", "role": "test", "R1": 50.0, "mAP": 45.0}},
           "train": {"init": "/x/osnet_x0_25_msmt17.pth", "image_size": [256, 128], "epochs_completed": 6,
                     "train_seconds": 1200.0, "device": "cpu"},
           "run_info": {"environment": {"cpu": "AMD EPYC", "cpu_count": 2, "torch_threads": 2, "cuda": None}}}
    ref = {"source": "peer", "model": "OSNet x0.25", "data": "CUHK03-NP", "init": "osnet_x0_25_msmt17",
           "epochs": 20, "input": "256x128", "hardware": "2-core CPU", "R1": 43.0, "mAP": 41.0, "differs": "no center"}
    runs = as_runs({"10_train/cuhk03-osnet": run})
    table = comparison_table(runs, [ref], paper=PAPER)
    assert PAPER_ROWS == 9 and len(table) == PAPER_ROWS + 2
    assert list(table["source"][:PAPER_ROWS]) == ["paper, Table I"] * PAPER_ROWS
    bot = table[(table["model"] == "BoT ResNet50 (baseline)") & (table["data"] == "Market-1501")].iloc[0]
    assert bot["R1 / mAP (%) [95% CI]"] == "89.4 / 75.5" and bot["epochs"] == 120  # as published, Table I
    ours = table[table["run"] == "`10_train/cuhk03-osnet`"].iloc[0]
    assert ours["R1 / mAP (%) [95% CI]"] == "50.0 [n/a] / 45.0 [n/a]"  # a record made before intervals
    assert len(comparison_table(runs, paper=PAPER)) == PAPER_ROWS + 1
    assert list(comparison_table({}, [ref])["source"]) == ["peer"]
    assert "what differs from the paper" not in comparison_table(runs, [ref])  # no paper
    assert ours["init"] == "osnet_x0_25_msmt17" and ours["hardware"] == "AMD EPYC, 2 cores, 2 threads"
    assert ours["what differs from the paper"] == "differs in data, init, epochs, hardware; 20.0 min of training"
    peer = table[table["source"] == "peer"].iloc[0]
    assert peer["what differs from the paper"].endswith("; no center")


def test_feature_spread_is_zero_for_collapsed_features_and_known_for_simple_sets():
    from reidlib.stages.report_learning import feature_spread

    assert feature_spread(np.tile([[3.0, 4.0]], (5, 1))) == pytest.approx(0.0, abs=1e-12)
    assert feature_spread(np.array([[2.0, 0.0], [-5.0, 0.0]])) == pytest.approx(1.0)  # opposite: mean at 0
    assert feature_spread(np.array([[1.0, 0.0], [0.0, 7.0]])) == pytest.approx(np.sqrt(0.5))  # orthogonal


def _trained_run(tmp_path, r1, feats):
    from reidlib.evaluation import FeatureSet

    gallery = FeatureSet(feats, np.arange(len(feats)), np.zeros(len(feats)), [f"{i}.jpg" for i in range(len(feats))])
    path = gallery.save(tmp_path / f"gallery-{r1}.npz")
    return {"model_label": "M", "dataset_label": "D",
            "evaluations": {"test": {"label": "D", "role": "test", "R1": r1, "mAP": r1 + 1}},
            "history": [{"train_acc": 0.01, "loss_id": 6.5, "loss_triplet": 0.9},
                        {"train_acc": 0.25, "loss_id": 4.25, "loss_triplet": 0.3}],
            "features": {"test": {"query": str(path), "gallery": str(path)}},
            "train": {"recipe": {"triplet_margin": 0.3}, "epochs_completed": 2, "train_seconds": 90.0}}


def test_learning_check_compares_with_chance_and_flags_collapse(tmp_path):
    from reidlib.stages.report_learning import learning_check

    runs = {"10_train/a": _trained_run(tmp_path, 2.0, np.eye(4)),
            "10_train/collapsed": _trained_run(tmp_path, 0.1, np.ones((4, 3))),
            "10_train/reference": dict(_trained_run(tmp_path, 5.0, np.eye(2)), history=[]),  # evaluated, not trained
            "20_finetune/x": _trained_run(tmp_path, 9.0, np.eye(2))}
    table = learning_check(as_runs(runs), {"D": 0.5}).set_index("run")
    assert list(table.index) == ["`10_train/a`", "`10_train/collapsed`"]
    a, collapsed = table.loc["`10_train/a`"], table.loc["`10_train/collapsed`"]
    assert a["R1 / chance"] == 4.0 and a["chance R1"] == 0.5 and a["train acc, last epoch"] == 25.0
    assert a["ID loss, first -> last epoch"] == "6.50 -> 4.25"
    assert a["triplet loss, last epoch (margin)"] == "0.300 (0.3)"
    assert a["feature spread"] == pytest.approx(np.sqrt(3 / 4), abs=1e-3)  # 4 orthogonal unit vectors
    assert collapsed["feature spread"] == 0.0
    ce_only = dict(runs["10_train/a"], history=[{k: v for k, v in r.items() if k != "loss_triplet"}
                                                for r in runs["10_train/a"]["history"]])
    only = learning_check(as_runs({"10_train/ce": ce_only}), {"D": 0.5}).iloc[0]
    assert only["triplet loss, last epoch (margin)"] == "not trained"
    Path(runs["10_train/a"]["features"]["test"]["gallery"]).unlink()  # work/ cleaned: no spread, no error
    assert learning_check(as_runs(runs), {}).set_index("run").loc["`10_train/a`", "feature spread"] is None


def test_head_to_head_subtracts_the_reference_and_reports_missing_runs():
    from reidlib.stages.report_tables import head_to_head

    run = {"model_label": "OSNet", "evaluations": {"test": {"label": "D", "role": "test", "R1": 44.0, "mAP": 40.5}},
           "train": {"epochs_completed": 10, "train_seconds": 1320.0, "image_size": [256, 128]}, "run_info": {}}
    refs = [{"source": "peer", "R1": 43.0, "mAP": 41.0, "epochs": 20, "hardware": "2-core CPU",
             "compare_with": "10_train/d-osnet"},
            {"source": "other", "R1": 1.0, "mAP": 1.0, "compare_with": "10_train/absent"},
            {"source": "no link", "R1": 1.0, "mAP": 1.0}]
    table = head_to_head(as_runs({"10_train/d-osnet": run}), refs)
    assert len(table) == 2
    assert table.iloc[0]["difference R1 / mAP"] == "+1.0 / -0.5"
    assert table.iloc[0]["training"] == "10 epochs, 22.0 min, unknown"
    assert table.iloc[1]["R1 / mAP"] == "not run"


def test_report_warns_about_stale_runs(tmp_path):
    from reidlib.stages.report import write_report

    run = {"model_label": "M", "dataset_label": "D", "history": [],
           "evaluations": {"test": {"label": "D", "role": "test", "R1": 50.0, "mAP": 45.0}},
           "train": {"epochs": 1, "epochs_completed": 1, "train_seconds": 60.0}, "run_info": {}}
    runs = as_runs({"10_train/fresh": run, "10_train/old": run})
    text = write_report(runs, tmp_path, profile="p", description="d", profile_path="p.yaml",
                        stale_runs=["10_train/old", "10_train/not-gathered"])
    assert "**1 of the 2 runs gathered here are stale**" in text and "`10_train/old`." in text
    lines = {line.split("`")[1]: line for line in text.splitlines() if line.startswith("- `10_train/")}
    assert lines["10_train/old"].endswith("**stale**: its inputs changed after it ran.")
    assert "stale" not in lines["10_train/fresh"]
    assert "stale" not in write_report(runs, tmp_path, profile="p", description="d", profile_path="p.yaml")


def test_imagenet_init_is_the_papers_init():
    from reidlib.stages.report_runs import run_setting

    m = {"train": {"init": "imagenet", "image_size": [256, 128], "epochs": 120, "epochs_completed": 120},
         "run_info": {"environment": {"cuda": "NVIDIA H200"}}}
    setting = run_setting(TrainRecord.from_dict(m))
    assert setting["init"] == "ImageNet" and setting["losses"] is None  # a record without its recipe
    assert "init" not in differences(setting, "Market-1501", PAPER["setting"], PAPER["main_data"])


def test_slowed_epochs_count_at_their_kinds_median_beside_the_measured_minutes():
    from reidlib.stages.report_runs import minutes_text, run_setting, steady_minutes

    # 8 epochs of 30 s, evaluated every 4th (45 s); epoch 3 shared the CPU (90 s), epoch 8's evaluation too (120 s)
    seconds = [30, 30, 90, 45, 30, 30, 30, 120]
    history = [{"epoch": e, "epoch_seconds": t, **({"val_rank1": 0.5, "select_score": 0.5} if e % 4 == 0 else {})}
               for e, t in enumerate(seconds, 1)]
    m = TrainRecord.from_dict({"history": history, "train": {"epochs": 8, "epochs_completed": 8,
                                                             "train_seconds": float(sum(seconds))}})
    steady, slowed = steady_minutes(m)
    assert slowed == 2 and steady == pytest.approx((6 * 30 + 2 * 45) / 60)  # each at 30 s or 45 s
    setting = run_setting(m)
    assert minutes_text(setting) == ("6.8 min (4.5 at its steady pace: 2 epochs ran over 1.5 times slower than "
                                     "the median)")
    quiet = TrainRecord.from_dict({"history": [{"epoch": e, "epoch_seconds": 30} for e in range(1, 5)],
                                   "train": {"epochs": 4, "epochs_completed": 4, "train_seconds": 120.0}})
    assert steady_minutes(quiet) == (2.0, 0) and minutes_text(run_setting(quiet)) == "2.0 min"
    assert steady_minutes(TrainRecord.from_dict({"history": [{"epoch": 1}], "train": {}})) is None


def test_report_flags_a_run_its_wall_clock_guard_cut_short(tmp_path):
    from reidlib.stages.report import write_report

    def run(stopped):
        return {"model_label": "M", "dataset_label": "D", "history": [],
                "evaluations": {"test": {"label": "D", "role": "test", "R1": 50.0, "mAP": 45.0}},
                "train": {"epochs": 30, "epochs_completed": 30 if stopped is None else 12, "train_seconds": 60.0,
                          "stopped_early": stopped}, "run_info": {}}

    runs = as_runs({"10_train/full": run(None), "10_train/cut": run("max_minutes=90 reached before epoch 13")})
    text = write_report(runs, tmp_path, profile="p", description="d", profile_path="p.yaml")
    lines = {line.split("`")[1]: line for line in text.splitlines() if line.startswith("- `10_train/")}
    assert "epochs run 12 of 30" in lines["10_train/cut"]
    assert "**stopped early** (max_minutes=90 reached before epoch 13)" in lines["10_train/cut"]
    assert "stopped early" not in lines["10_train/full"]


def _per_query(r1: float, m_ap: float, spread: float = 0.0, n_ids: int = 20) -> dict:
    """A record's intervals and per-query block: 2 queries per identity, mean AP ``m_ap`` % (constant per query,
    or +/- ``spread`` alternating by identity), a rank-1 hit on the first ``r1`` % of the queries."""
    from reidlib.evaluation import bootstrap_ci
    from reidlib.stages.uncertainty import encode_per_query

    pids = np.repeat(np.arange(n_ids), 2)
    ap = m_ap / 100 + spread / 100 * np.where(pids % 2 == 0, 1.0, -1.0)
    first = np.where(np.arange(2 * n_ids) < round(r1 / 100 * 2 * n_ids), 1, 7)
    ci = bootstrap_ci({"R1": first == 1, "mAP": ap}, pids)
    return {"ci95": {k: [100 * v for v in ci[k]] for k in ci},
            "per_query": encode_per_query({"pid": pids, "first_hit": first, "ap": ap})}


def _scratch_run(model_name: str, label: str, r1: float, m_ap: float, select_on: str = "val",
                 history: list[dict] | None = None, spread: float | None = None) -> dict:
    extra = _per_query(r1, m_ap, spread) if spread is not None else {}
    return {"model_name": model_name, "model_label": label, "dataset_label": "CUHK03-NP",
            "evaluations": {"test": {"label": "CUHK03-NP", "role": "test", "R1": r1, "mAP": m_ap, **extra}},
            "train": {"init": "random", "image_size": [128, 64], "epochs_completed": 30, "train_seconds": 1800.0,
                      "device": "cpu", "select_on": select_on, "recipe": {"triplet_margin": 0.3}},
            "history": history or []}


def _three(resnet_map: float, osnet_map: float, mnv3_map: float, spread: float | None = 0.0) -> dict:
    return as_runs({"10_train/r": _scratch_run("bot_resnet50", "ResNet50", 30.0, resnet_map, spread=spread),
            "10_train/o": _scratch_run("osnet_x0_25", "OSNet", 25.0, osnet_map,
                                       spread=None if spread is None else -spread),  # the opposite identities
            "10_train/m": _scratch_run("mnv3_siamese", "MNV3", 20.0, mnv3_map, spread=spread)})


@pytest.mark.parametrize("maps, verdict", [
    ((30.0, 20.0, 19.0), "It holds here, by paired 95 % intervals: ResNet50 minus OSNet +10.0 [+10.0, +10.0] mAP "
                         "points (paper: ResNet50 ahead; agrees)"),
    ((30.0, 26.0, 19.0), "It holds only in part, by paired 95 % intervals: ResNet50 minus OSNet +4.0 [+4.0, +4.0]"),
    ((20.0, 26.0, 19.0), "It does not hold here, by paired 95 % intervals: ResNet50 minus OSNet -6.0 [-6.0, -6.0] "
                         "mAP points (paper: ResNet50 ahead; reversed)"),
])
def test_ranking_paragraph_judges_the_papers_ranking_from_the_numbers(maps, verdict):
    from reidlib.stages.findings import ranking_paragraph

    text = ranking_paragraph(_three(*maps), ["10_train/r", "10_train/o", "10_train/m"], paper=PAPER)
    assert verdict in text
    best_first = sorted(zip(maps, ("ResNet50", "OSNet", "MNV3")), reverse=True)
    positions = [text.index(f"{name} ") for _, name in best_first]
    assert positions == sorted(positions)  # listed best mAP first
    assert "(30 epochs, 30 min, 128x64)" in text


def test_ranking_paragraph_says_what_is_missing():
    from reidlib.stages.findings import ranking_paragraph

    runs = _three(30.0, 20.0, 19.0)
    del runs["10_train/m"]
    text = ranking_paragraph(runs, ["10_train/r", "10_train/o", "10_train/m"], paper=PAPER)
    assert "cannot be judged yet: no results for `10_train/m`" in text
    assert "No run of the ranking" in ranking_paragraph({}, ["10_train/x"], paper=PAPER)
    unnamed = ranking_paragraph(_three(30.0, 20.0, 19.0), ["10_train/r", "10_train/o", "10_train/m"])
    assert "names no published table (report.reproduces), so there is no ranking to judge" in unnamed
    assert "It holds" not in unnamed


def test_the_published_ranking_is_read_from_the_table_and_ties_are_named_close():
    from reidlib.stages.findings import published_ranking

    assert published_ranking(PAPER) == ("The paper's ranking on Market-1501 by mAP (%): BoT ResNet50 (baseline) 75.5, "
                                        "ahead of OSNet x0.25 56.3 and MobileNetV3 siamese (custom) 56.3 (close).")
    other = {"main_data": "D", "models": {"a": {"label": "A", "results": {"D": [1.0, 10.0]}},
                                          "b": {"label": "B", "results": {"D": [1.0, 30.0]}},
                                          "c": {"label": "C", "results": {"D": [1.0, 20.0]}}}}
    assert published_ranking(other) == "The paper's ranking on D by mAP (%): B 30.0, ahead of C 20.0, ahead of A 10.0."


def test_variant_table_gives_the_fix_in_points_and_how_each_was_selected():
    from reidlib.stages.report_tables import variant_table

    runs = {"10_train/fixed": _scratch_run("mnv3_siamese", "MNV3", 22.0, 18.5),
            "10_train/paper": _scratch_run("mnv3_siamese", "MNV3 (paper code)", 15.0, 11.0, select_on="test")}
    table = variant_table(as_runs(runs), [{"fixed": "10_train/fixed", "variant": "10_train/paper", "change": "sigmoid"},
                                          {"fixed": "10_train/fixed", "variant": "10_train/gone"}])
    assert len(table) == 1  # a variant without results is left out
    row = table.iloc[0]
    assert (row["R1 gain (points)"], row["mAP gain (points)"]) == (7.0, 7.5)
    assert (row["fixed selected on"], row["variant selected on"]) == ("val", "test")


def test_learning_curves_draw_every_recorded_curve_and_the_margin():
    import matplotlib

    matplotlib.use("Agg")
    from reidlib.stages.report_figures import plot_learning_curves

    hist = [{"epoch": e, "loss_id": 6.0 - e, "loss_triplet": 0.5 - 0.1 * e, "train_acc": 0.1 * e,
             "val_rank1": 0.05 * e if e % 2 == 0 else None} for e in (1, 2, 3, 4)]
    fig = plot_learning_curves(as_runs({"10_train/a": _scratch_run("osnet_x0_25", "OSNet", 1.0, 1.0, history=hist)}))
    id_ax, tri_ax, acc_ax, r1_ax = fig.axes
    assert list(id_ax.lines[0].get_ydata()) == [5.0, 4.0, 3.0, 2.0]
    assert len(tri_ax.lines) == 2 and tri_ax.lines[1].get_ydata()[0] == pytest.approx(0.3)  # the run, its margin
    assert list(acc_ax.lines[0].get_ydata()) == pytest.approx([10.0, 20.0, 30.0, 40.0])
    assert list(r1_ax.lines[0].get_xdata()) == [2, 4]  # only the evaluated epochs
    # one legend for the whole figure, under the grid, instead of one per panel over the curves
    assert [ax.get_legend() for ax in fig.axes] == [None] * 4
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["OSNet", "triplet margin 0.3"]


def test_learning_curves_keep_one_colour_per_run_and_cut_the_triplet_axis_near_the_margin():
    import matplotlib

    matplotlib.use("Agg")
    from reidlib.stages.report_figures import plot_learning_curves

    def hist(first_triplet: float, test: bool) -> list[dict]:
        key = "test_rank1" if test else "val_rank1"
        return [{"epoch": e, "loss_id": 6.0 - e, "loss_triplet": first_triplet if e == 1 else 0.35,
                 "train_acc": 0.1 * e, key: 0.05 * e} for e in (1, 2, 3)]

    runs = as_runs({"10_train/a": _scratch_run("osnet_x0_25", "OSNet", 1.0, 1.0, history=hist(6.0, False)),
                    "10_train/b": _scratch_run("mnv3_siamese", "MNV3 paper code", 1.0, 1.0, history=hist(0.9, True))})
    fig = plot_learning_curves(runs)
    id_ax, tri_ax, acc_ax, r1_ax = fig.axes
    for i in range(2):  # run i has the same colour in every panel
        assert len({ax.lines[i].get_color() for ax in (id_ax, tri_ax, acc_ax, r1_ax)}) == 1
    assert id_ax.lines[0].get_color() != id_ax.lines[1].get_color()
    assert tri_ax.get_ylim()[1] == pytest.approx(1.5)  # 5 x the 0.3 margin: the first epoch's 6.0 is cut
    assert "axis cut at 1.5" in tri_ax.get_title()
    assert [ln.get_marker() for ln in r1_ax.lines] == ["o", "x"]  # crosses: selected on the test split
    assert [t.get_text() for t in fig.legends[0].get_texts()][-2:] == ["held-out identities", "TEST split"]


def test_ranking_paragraph_works_for_any_set_of_runs_and_leaves_out_failed_ones():
    from reidlib.stages.findings import ranking_paragraph

    two = {k: v for k, v in _three(30.0, 20.0, 19.0).items() if k != "10_train/m"}
    text = ranking_paragraph(two, ["10_train/r", "10_train/o"], paper=PAPER)
    assert "It holds here, by paired 95 % intervals: ResNet50 minus OSNet +10.0 [+10.0, +10.0]" in text
    four = as_runs(dict(_three(30.0, 20.0, 19.0), **{"10_train/v": _scratch_run("mnv3_siamese", "MNV3 v", 5.0, 0.5,
                                                                                  spread=0.0)}))
    ids = ["10_train/r", "10_train/o", "10_train/m", "10_train/v"]
    assert "It holds" in ranking_paragraph(four, ids, failed={"10_train/v": "near chance"}, paper=PAPER)
    left = ranking_paragraph(four, ids, failed={"10_train/v": "near chance", "10_train/o": "collapsed"}, paper=PAPER)
    assert "OSNet is left out of the judgement: collapsed." in left and "minus OSNet" not in left
    old = ranking_paragraph(_three(30.0, 20.0, 19.0, spread=None), ids[:3], paper=PAPER)
    assert "no interval and no ranking verdict" in old and "It holds" not in old


def test_at_a_glance_names_a_best_model_only_beyond_noise_and_says_what_it_rests_on():
    from reidlib.stages.findings import at_a_glance

    clear = at_a_glance(_three(30.0, 20.0, 19.0), {}, {}, "p")
    assert clear.startswith("On CUHK03-NP the best model is **ResNet50** (rank-1 30.0 [")
    assert "its mAP lead over OSNet is +10.0 [+10.0, +10.0] points (paired 95 % interval), beyond noise." in clear
    assert "init random, 30 epochs, input 128x64" in clear and "seed" in clear
    assert "not seed-to-seed or CPU-kind" in clear
    noisy = at_a_glance(_three(21.0, 20.0, 19.0, spread=8.0), {}, {}, "p")
    assert "ResNet50 has the highest mAP" in noisy and "is within noise: no model is named best." in noisy
    # the collapsed leader is left out: the next one is judged against the third
    out = at_a_glance(_three(30.0, 20.0, 19.0), {"ranking": ["10_train/r", "10_train/o", "10_train/m"]},
                      {"10_train/r": "its test rank-1 is within 2 points of chance"}, "p")
    assert "the best model is **OSNet**" in out and "ResNet50" not in out.split("Left out")[0]
    assert "Left out of every ranking claim: ResNet50 (`10_train/r`), its test rank-1 is within 2" in out
    sentences = [s for s in out.split(". ") if s]
    assert 3 <= len(sentences) <= 5


def test_learning_check_verdicts_exclude_near_chance_and_collapsed_runs(tmp_path):
    from reidlib.stages.report_learning import failed_runs, learning_check, learning_verdict

    assert learning_verdict(1.1, 0.07, 1.0) == "near chance"  # 1.0 point above chance
    assert learning_verdict(3.4, 0.07, 0.85) == "learned"
    assert learning_verdict(50.0, 0.1, 0.05) == "collapsed"
    assert learning_verdict(1.5, None, None) == "near chance"  # chance unknown: taken as 0
    runs = as_runs({"10_train/a": _trained_run(tmp_path, 2.0, np.eye(4)),
                    "10_train/collapsed": _trained_run(tmp_path, 9.0, np.ones((4, 3)))})
    table = learning_check(runs, {"D": 0.5})
    assert list(table["verdict"]) == ["near chance", "collapsed"]
    failed = failed_runs(table)
    assert failed["10_train/a"] == "its test rank-1 (2.0 %) is within 2 points of chance (chance 0.50 %)"
    assert failed["10_train/collapsed"].startswith("its test features have collapsed")


def test_report_opens_with_at_a_glance_and_says_once_how_to_get_intervals(tmp_path):
    from reidlib.stages.report import write_report

    old = _three(30.0, 20.0, 19.0, spread=None)
    text = write_report(old, tmp_path, profile="p", description="d", profile_path="p.yaml")
    assert text.split("\n")[2] == "## At a glance"
    assert text.count("`./run_all.sh p` regenerates them") == 1
    assert "30.0 [n/a] / 30.0 [n/a]" in text
    new = write_report(_three(30.0, 20.0, 19.0), tmp_path, profile="p", description="d", profile_path="p.yaml",
                       report={"ranking": ["10_train/r", "10_train/o", "10_train/m"], "reproduces": PAPER})
    assert "regenerates them" not in new and "[n/a]" not in new
    assert " / 30.0 [30.0, 30.0]" in new  # mAP constant per query: a degenerate interval
    assert "the best model is **ResNet50**" in new and "It holds here" in new


def test_variant_and_finetune_gains_carry_paired_intervals():
    from reidlib.stages.report_tables import finetune_table, variant_table

    runs = {"10_train/fixed": _scratch_run("mnv3_siamese", "MNV3", 22.0, 18.5, spread=0.0),
            "10_train/paper": _scratch_run("mnv3_siamese", "MNV3 (paper code)", 15.0, 11.0, select_on="test",
                                           spread=0.0)}
    row = variant_table(as_runs(runs), [{"fixed": "10_train/fixed", "variant": "10_train/paper"}]).iloc[0]
    assert row["mAP gain, paired 95% CI"] == "+7.5 [+7.5, +7.5]"
    zero, tuned = runs["10_train/paper"]["evaluations"]["test"], runs["10_train/fixed"]["evaluations"]["test"]
    ft = {"20_finetune/x": {"model_label": "MNV3", "source_key": "a", "dataset_key": "b", "train": {},
                            "evaluations": {"zero-shot": zero, "fine-tuned": tuned}}}
    assert finetune_table(as_runs(ft)).iloc[0]["mAP gain (paired 95% CI)"] == "+7.5 [+7.5, +7.5]"
    assert finetune_table(as_runs(ft)).iloc[0]["source → target"] == "a → b"  # no labels recorded: the profile keys
    ft["20_finetune/x"]["dataset_label"] = "Set B"
    ft["10_train/a-m"] = {"dataset_key": "a", "dataset_label": "Set A"}
    assert finetune_table(as_runs(ft)).iloc[0]["source → target"] == "Set A → Set B"


def test_a_fine_tuned_row_names_its_source_set_by_label():
    def record(key: str, label: str, **extra) -> dict:
        return {"model_label": "OSNet x0.25", "dataset_key": key, "dataset_label": label,
                "evaluations": {"test": {"label": label, "role": "test", "R1": 50.0, "mAP": 45.0}},
                "train": {"init": "random", "image_size": [64, 32], "epochs_completed": 2}, **extra}

    tuned = {**record("synth-b", "Synthetic B", source_key="synth-a"), "evaluations": {
        "fine-tuned": {"label": "Synthetic B", "role": "fine-tuned", "R1": 60.0, "mAP": 55.0}},
        "train": {"init": "fine-tuned from osnet trained on synth-a", "image_size": [64, 32], "epochs_completed": 1}}
    runs = {"10_train/synth-a-osnet": record("synth-a", "Synthetic A"), "20_finetune/synth-a-to-synth-b-osnet": tuned}
    row = comparison_table(as_runs(runs)).set_index("run").loc["`20_finetune/synth-a-to-synth-b-osnet`"]
    assert row["data"] == "Synthetic B (fine-tuned from Synthetic A)"
    assert row["init"] == "fine-tuned from Synthetic A"


def test_differences_are_signed_everywhere_and_never_minus_zero():
    from reidlib.stages.uncertainty import fmt_diff, fmt_signed_interval

    assert fmt_signed_interval(2.64, [0.93, 4.3]) == "+2.6 [+0.9, +4.3]"
    assert fmt_signed_interval(-0.04, [-0.21, 0.12]) == "+0.0 [-0.2, +0.1]"
    assert fmt_signed_interval(-1.0, None) == "-1.0 [n/a]"
    assert fmt_diff({"difference": -0.02, "ci95": [-0.04, 0.3]}, "mAP") == "+0.0 [+0.0, +0.3] mAP"
    assert fmt_diff(None) == "n/a"


def test_variant_runs_are_side_rows_of_the_learning_check_and_fix_table_never_ranked(tmp_path):
    import json

    from reidlib.stages.report import write_report

    runs = _three(30.0, 20.0, 19.0)
    # the profile variant "pl" of the OSNet run: near chance, its hardest pairs overlapping
    side = _scratch_run("osnet_x0_25", "OSNet", 0.0, 1.0, spread=0.0,
                        history=[{"epoch": 1, "train_acc": 0.5, "loss_id": 6.0, "loss_triplet": 0.31,
                                  "dist_ap": 1.0, "dist_an": 0.84}])
    (tmp_path / "side.json").write_text(json.dumps(side))
    groups = [{"stage": "10_train", "variant": None, "model_run": "o", "dataset_key": "d", "seeds": [0],
               "runs": ["10_train/o"], "records": [runs["10_train/o"]]},
              {"stage": "10_train", "variant": "pl", "model_run": "o", "dataset_key": "d", "seeds": [0],
               "runs": ["10_train/o@pl"], "metrics": [str(tmp_path / "side.json")]}]
    pair = {"fixed": "10_train/o", "variant": "10_train/o@pl", "change": "the paper's loss: euclidean triplet"}
    text = write_report(runs, tmp_path / "out", profile="p", description="d", profile_path="p.yaml",
                        report={"ranking": ["10_train/r", "10_train/o", "10_train/m"], "reproduces": PAPER,
                                "variants": [pair]},
                        run_groups=groups, variant_overrides={"pl": {"training": {"metric_warmup_epochs": 0}}})
    learn = text[text.index("## Did each model learn?"):text.index("## Does the paper's ranking hold?")]
    row = next(line for line in learn.splitlines() if line.startswith("| `10_train/o@pl`"))
    assert "| 0.84 |" in row and row.endswith("| near chance |")  # 0.84 / 1.0, the ratio of the batch distances
    assert "side rows, never ranked" in learn
    fixes = text[text.index("## What each fix"):]
    assert "| OSNet (variant pl) | 0.0 [0.0, 0.0] / 1.0 [1.0, 1.0] |" in fixes
    glance = text[text.index("## At a glance"):text.index("## Table I")]
    assert ("what each change of the paper's code costs in test mAP (fixed minus paper code, points, paired 95 % "
            "interval): the paper's loss +19.0 [+19.0, +19.0] for OSNet (with it near chance).") in glance
    assert "o@pl" not in glance and "o@pl" not in text[text.index("## Table I"):text.index("## Did each")]
    record = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert "10_train/o@pl" not in record["excluded_from_ranking"]
    assert record["total_train_minutes"] == 4 * 30.0  # the three ranked runs and the side run, 1800 s each
    provenance = text[text.index("## What every number rests on"):]
    assert "- `10_train/o@pl`: OSNet on CUHK03-NP; init random; epochs run 30" in provenance
    assert "(30.0 min of training, 0.0 min for the whole notebook)" in provenance  # no run.json: nothing timed
    (tmp_path / "run.json").write_text(json.dumps({"wall_seconds": 600.0}))  # beside side.json: a resumed run
    text = write_report(runs, tmp_path / "out", profile="p", description="d", profile_path="p.yaml",
                        report={"variants": [pair]}, run_groups=groups, variant_overrides={})
    assert "(30.0 min of training, 10.0 min for the notebook's last sitting (resumed))" in text


def test_fix_costs_say_within_noise_and_skip_noise_pairs():
    from reidlib.stages.findings import fix_costs

    runs = as_runs({"10_train/fixed": _scratch_run("mnv3_siamese", "MNV3", 22.0, 18.5, spread=0.0),
                    "10_train/paper": _scratch_run("mnv3_siamese", "MNV3", 22.0, 18.5, spread=0.0)})
    pairs = [{"fixed": "10_train/fixed", "variant": "10_train/paper", "change": "sigmoid"}]
    assert fix_costs(runs, pairs, {}).endswith("sigmoid +0.0 [+0.0, +0.0] for MNV3 (within noise).")
    assert fix_costs(runs, [{**pairs[0], "noise": True}], {}) == ""
    assert fix_costs(runs, [{**pairs[0], "variant": "10_train/gone"}], {}) == ""


def test_pair_head_sentence_gives_the_auc_differences_and_names_no_winner():
    rows = [{"model": m, "dataset": "d", "method": meth, "AUC": auc}
            for m, cos, head in (("a", 90.0, 91.5), ("b", 80.0, 79.2))
            for meth, auc in (("cosine threshold", cos), ("learned pair head", head))]
    head = pd.DataFrame(rows).set_index(["model", "dataset", "method"])
    text = pair_head_verdict(head)
    assert "from -0.8 to +1.5 points over 2 models" in text
    assert "beats" not in text and "no interval" in text
    one = pair_head_verdict(head.loc[["a"]])
    assert "+1.5 points." in one
    assert pair_head_verdict(head.iloc[0:0]) == ""
