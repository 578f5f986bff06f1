"""The pure parts of benchmarks/time_to_accuracy.py on hand-made curves: minutes to reach an accuracy (linear
interpolation between epoch ends, "not reached"), the ratio, the resume bookkeeping, the spec check, the recipe
loader and the markdown/json/figure writers. No torchreid, no training."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import time_to_accuracy as tta  # noqa: E402


def _rows(minutes, r1, mAP):
    return [{"epoch": i, "minutes": m, "rank1": a, "mAP": b} for i, (m, a, b) in enumerate(zip(minutes, r1, mAP))]


def test_cumulative_minutes_add_setup_seconds():
    rows = [{"train_seconds": 0.0, "setup_seconds": 0.0}, {"train_seconds": 90.0, "setup_seconds": 30.0},
            {"train_seconds": 60.0}]
    assert tta.cumulative_minutes(rows) == [0.0, 2.0, 3.0]


def test_minutes_to_reach_interpolates_between_epoch_ends():
    # 0.40 at minute 2, 0.60 at minute 4: 0.45 is a quarter of the way -> minute 2.5
    assert tta.minutes_to_reach([0, 2, 4], [0.1, 0.4, 0.6], 0.45) == pytest.approx(2.5)
    # exactly at an epoch end
    assert tta.minutes_to_reach([0, 2, 4], [0.1, 0.4, 0.6], 0.6) == pytest.approx(4.0)
    # the first crossing counts, even if the curve dips below again
    assert tta.minutes_to_reach([0, 1, 2, 3], [0.1, 0.5, 0.3, 0.5], 0.5) == pytest.approx(1.0)
    # reached before training: minute 0
    assert tta.minutes_to_reach([0, 1], [0.7, 0.8], 0.6) == 0.0


def test_minutes_to_reach_not_reached_and_bad_input():
    assert tta.minutes_to_reach([0, 1, 2], [0.1, 0.2, 0.3], 0.31) is None
    with pytest.raises(ValueError, match="3 minutes but 2"):
        tta.minutes_to_reach([0, 1, 2], [0.1, 0.2], 0.1)


def test_ratio_and_why_there_is_none():
    assert tta.ratio(30.0, 10.0) == pytest.approx(3.0) and tta.ratio_note(30.0, 10.0) is None
    assert tta.ratio(30.0, None) is None and tta.ratio_note(30.0, None) == "not reached by ours"
    assert tta.ratio(None, 10.0) is None and tta.ratio_note(None, 10.0) == "not reached by the peer"
    assert tta.ratio(30.0, 0.0) is None and "before training" in tta.ratio_note(30.0, 0.0)


def test_summarize_targets_the_peers_last_epoch():
    peer = _rows([0, 10, 20, 30], [0.10, 0.30, 0.40, 0.42], [0.10, 0.28, 0.36, 0.40])
    ours = _rows([0, 4, 8, 12], [0.10, 0.38, 0.44, 0.50], [0.10, 0.30, 0.36, 0.39])
    s = tta.summarize({"peer": peer, "ours": ours})
    assert s["target"] == {"rank1": 0.42, "mAP": 0.40} and s["target_epoch"] == 3
    # peer rank-1: 0.40 at 20, 0.42 at 30 -> minute 30 (first reached at its last epoch)
    assert s["minutes_to_target"]["peer"]["rank1"] == pytest.approx(30.0)
    # peer mAP: its last epoch too
    assert s["minutes_to_target"]["peer"]["mAP"] == pytest.approx(30.0)
    # ours rank-1: 0.38 at 4, 0.44 at 8 -> 4 + (0.04 / 0.06) * 4 = 6.667
    assert s["minutes_to_target"]["ours"]["rank1"] == pytest.approx(4 + 4 * 0.04 / 0.06)
    assert s["ratio"]["rank1"] == pytest.approx(30 / (4 + 4 * 0.04 / 0.06))
    # ours mAP tops out at 0.39 < 0.40: not reached, no ratio
    assert s["minutes_to_target"]["ours"]["mAP"] is None and s["ratio"]["mAP"] is None
    assert s["ratio_note"] == {"rank1": None, "mAP": "not reached by ours"}


def test_summarize_when_the_start_already_reaches_the_target():
    # a peer that ends below where it started: both curves reach its final value at minute 0
    peer = _rows([0, 1, 2], [0.30, 0.17, 0.26], [0.31, 0.17, 0.29])
    ours = _rows([0, 1, 2], [0.30, 0.11, 0.26], [0.31, 0.10, 0.28])
    s = tta.summarize({"peer": peer, "ours": ours})
    assert s["minutes_to_target"]["ours"] == {"rank1": 0.0, "mAP": 0.0}
    assert s["ratio"] == {"rank1": None, "mAP": None}
    assert "before training" in tta.markdown(_report({}, s))


def test_resume_point():
    assert tta.resume_point([], []) == (None, [])
    assert tta.resume_point([], [0, 1]) == (None, [0, 1])  # weights without records: start again
    assert tta.resume_point([0, 1, 2], [0, 1, 2]) == (2, [])
    assert tta.resume_point([0, 1, 2], [0, 1, 2, 3]) == (2, [3])  # saved, not recorded: trained again
    with pytest.raises(ValueError, match="weights are missing"):
        tta.resume_point([0, 1, 2], [0, 1])
    with pytest.raises(ValueError, match="not 0, 1, ..., n"):
        tta.resume_point([0, 2], [0, 1, 2])


def test_records_round_trip(tmp_path):
    assert tta.read_records(tmp_path) == []
    rows = [{"epoch": 0, "train_seconds": 0.0}, {"epoch": 1, "train_seconds": 12.5}]
    tta.write_records(tmp_path, rows)
    assert tta.read_records(tmp_path) == rows
    assert sorted(p.name for p in tmp_path.iterdir()) == ["records.json"]  # no temporary file left


def test_training_load_comes_from_the_sides_records_not_the_invocation(tmp_path):
    rows = [{"epoch": 0, "train_seconds": 0.0, "load": [0.3, 0.5, 0.7]},
            {"epoch": 1, "train_seconds": 9.0, "load": [2.0, 1.1, 0.8]},
            {"epoch": 2, "train_seconds": 9.0, "load": [2.1, 1.6, 1.0]}]
    tta.write_records(tmp_path, rows)
    assert tta.training_load(tmp_path) == {"start": [0.3, 0.5, 0.7], "end": [2.1, 1.6, 1.0]}
    report = _report({})
    report["load_average"]["ours"] = tta.training_load(tmp_path)
    assert "reidlib fit 0.30, 0.50, 0.70 at its start and 2.10, 1.60, 1.00 at its end" in tta.markdown(report)


def test_spec_differences_ignore_places():
    old = {"curve_dir": "/a/peer", "train_items": "/a/items.json", "lr": 1.5e-3, "threads": 2}
    new = {"curve_dir": "/b/peer", "train_items": "/b/items.json", "lr": 3e-3, "threads": 2, "seed": 0}
    assert tta.spec_differences(old, new) == ["lr", "seed"]
    assert tta.spec_differences(old, dict(old, curve_dir="/c")) == []


def test_load_recipe_default_is_the_peers(tmp_path):
    recipe, kwargs = tta.load_recipe(None, [])
    assert recipe["optimizer"] == "amsgrad" and recipe["lr"] == 1.5e-3 and recipe["epochs"] == 20
    assert (recipe["height"], recipe["width"], recipe["pad"], recipe["erasing_p"]) == (256, 128, 0, 0.0)
    assert kwargs == {}
    path = tmp_path / "r.yaml"
    path.write_text("image_size: [128, 64]\nkwargs: {bnneck: true}\n"
                    "train: {epochs: 8, lr: 3.0e-3, transforms: {pad: 10}}\n")
    recipe, kwargs = tta.load_recipe(path, ["warmup_epochs=1", "weight_decay=1e-4"], epochs=3)
    assert (recipe["height"], recipe["width"], recipe["pad"], recipe["lr"]) == (128, 64, 10, 3e-3)
    assert recipe["weight_decay"] == 1e-4  # YAML alone would read 1e-4 as a string
    assert recipe["warmup_epochs"] == 1 and recipe["epochs"] == 3 and kwargs == {"bnneck": True}


def test_load_recipe_refuses_what_it_fixes_and_bad_keys(tmp_path):
    with pytest.raises(SystemExit, match="select_on"):
        tta.load_recipe(None, ["select_on=val"])
    with pytest.raises(SystemExit, match="not a valid fit recipe.*lrr"):
        tta.load_recipe(None, ["lrr=0.1"])
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        tta.load_recipe(None, ["lr"])
    path = tmp_path / "r.yaml"
    path.write_text("training: {epochs: 3}\n")
    with pytest.raises(SystemExit, match="has \\['training'\\]"):
        tta.load_recipe(path, [])


def test_the_recipe_comes_from_a_held_out_sweep_variant_without_its_selection_keys():
    recipe, kwargs = tta.load_recipe(None, [], sweep="sweeps/cuhk03-osnet-speed@cos12")
    assert recipe["epochs"] == 12 and recipe["lr"] == 1.5e-3 and recipe["optimizer"] == "amsgrad"
    assert (recipe["height"], recipe["width"], recipe["pad"], recipe["center_weight"]) == (256, 128, 0, 0.0)
    assert not set(recipe) & set(tta.FIXED) and kwargs == {}
    own, _ = tta.load_recipe(None, ["lr=3e-3"], sweep="sweeps/cuhk03-osnet-speed")
    assert own["epochs"] == 20 and own["lr"] == 3e-3  # --set still goes on top
    with pytest.raises(SystemExit, match="no variant 'cos99'.*'cos12'"):
        tta.load_recipe(None, [], sweep="sweeps/cuhk03-osnet-speed@cos99")
    with pytest.raises(SystemExit, match="trains osnet_x0_25 from osnet_x0_25_msmt17.pth"):
        tta.load_recipe(None, [], sweep="sweeps/cuhk03-scratch-recipe")
    with pytest.raises(SystemExit, match="not both"):
        tta.load_recipe(tta.ROOT / "x.yaml", [], sweep="sweeps/cuhk03-osnet-speed")


def _report(ratio_map, summary=None):
    peer = _rows([0, 10, 20], [0.10, 0.30, 0.42], [0.10, 0.30, 0.40])
    ours = _rows([0, 5, 10], [0.10, 0.40, 0.50], [0.10, 0.35, 0.45])
    for rows in (peer, ours):
        for r in rows:
            r["load_1min"] = 1.5
    s = summary or tta.summarize({"peer": peer, "ours": ours})
    s["ratio"].update(ratio_map)
    s["ratio_note"].update({k: "not reached by ours" for k, v in ratio_map.items() if v is None})
    hw = {"cpu": "Test CPU", "cores": 2, "threads": 2, "native_bf16": True, "amx": False}
    return {"command": "HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/time_to_accuracy.py --quick", "quick": True,
            "hardware": hw, "versions": {"torch": "2.x", "torchreid": "0.2.5"},
            "load_average": {side: {"start": [1.0, 1.0, 1.0], "end": [2.0, 2.0, 2.0]} for side in ("peer", "ours")},
            "method": "METHOD TEXT",
            "sides": {"peer": {"label": "torchreid 0.2.5", "precision": "fp32", "recipe": {"lr": 1.5e-3},
                               "model_kwargs": {}, "curve": peer},
                      "ours": {"label": "reidlib fit", "precision": "bf16", "recipe": {"lr": 1.5e-3},
                               "model_kwargs": {}, "curve": ours}},
            "summary": s, "ratio": s["ratio"]}


def test_markdown_states_minutes_ratio_and_curves():
    report = _report({})
    text = tta.markdown(report)
    # ours: rank-1 0.42 between 0.40 at 5 and 0.50 at 10 -> 6.0 min; mAP 0.40 between 0.35 and 0.45 -> 7.5 min
    assert "| minutes to the peer's final rank-1 (42.0%) | 20.0 | 6.0 |" in text
    assert "| minutes to the peer's final mAP (40.0%) | 20.0 | 7.5 |" in text
    assert "rank-1 **×3.33**, mAP **×2.67**" in text
    assert "Test CPU, 2 cores (native bf16)" in text and "Quick mode" in text
    assert "| 2 | 10.00 | 50.0 | 45.0 | 1.50 |" in text  # ours' last epoch row
    assert "![test accuracy against training minutes](time_to_accuracy.png)" in text
    not_reached = tta.markdown(_report({"rank1": None}))
    assert "rank-1 not reached by ours, mAP **×2.67**" in not_reached


def test_markdown_says_when_each_side_trained():
    report = _report({})
    for i, row in enumerate(report["sides"]["peer"]["curve"]):
        row["ended_at"] = 1796442285.0 + 600.0 * i  # 2026-12-05 03:44:45 UTC, then every 10 min
    for i, row in enumerate(report["sides"]["ours"]["curve"]):
        row["ended_at"] = 1796442285.0 + 86400.0 + 300.0 * i  # the next day
    assert "| trained (UTC) | 2026-12-05 03:44 to 04:04 | 2026-12-06 03:44 to 03:54 |" in tta.markdown(report)
    assert tta._trained_span([{"ended_at": 1796442285.0}, {"ended_at": 1796442285.0 + 86400.0}]) == \
        "2026-12-05 03:44 to 2026-12-06 03:44"
    assert "| trained (UTC) | - | - |" in tta.markdown(_report({}))  # records made before the times were kept


def test_markdown_gives_each_epochs_training_size_under_progressive_resizing():
    report = _report({})
    assert "trained at" not in tta.markdown(report)
    for row, size in zip(report["sides"]["ours"]["curve"], (None, [192, 96], [256, 128])):
        row["input_size"] = size
    text = tta.markdown(report)
    assert "| epoch | minutes | R1 | mAP | load | trained at |" in text
    assert "| 1 | 5.00 | 40.0 | 35.0 | 1.50 | 192×96 |" in text
    assert "| 2 | 10.00 | 50.0 | 45.0 | 1.50 | 256×128 |" in text
    assert "| 0 | 0.00 | 10.0 | 10.0 | 1.50 | - |" in text  # epoch 0: the start, not trained
    assert "| 2 | 20.00 | 42.0 | 40.0 | 1.50 |\n" in text  # the peer's rows keep their five columns


def test_markdown_says_not_reached():
    report = _report({})
    report["summary"]["minutes_to_target"]["ours"]["mAP"] = None
    assert "| minutes to the peer's final mAP (40.0%) | 20.0 | not reached |" in tta.markdown(report)


def test_json_and_figure_written(tmp_path):
    from reidlib.engine.records import write_json

    report = _report({})
    write_json(tmp_path / "time_to_accuracy.json", report)
    back = json.loads((tmp_path / "time_to_accuracy.json").read_text())
    assert back["ratio"]["rank1"] == pytest.approx(20 / 6) and back["ratio"]["mAP"] == pytest.approx(20 / 7.5)
    tta.figure(report, tmp_path / "time_to_accuracy.png")
    assert (tmp_path / "time_to_accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _pq(first_hit, ap, pid=(1, 1, 2, 3)):
    return {"pid": list(pid), "first_hit": list(first_hit), "ap": list(ap)}


def test_summarize_pairs_ours_with_the_target_on_the_same_queries():
    # peer's last epoch: hits at rank 1 for queries 0 and 2 -> R1 0.5; AP mean (1 + .5 + 1 + .25) / 4 = 0.6875
    peer_pq = [_pq([2, 3, 2, 4], [.5, .2, .5, .2]), _pq([1, 2, 1, 3], [1, .5, 1, .25])]
    # ours: epoch 1 ties the target's R1 (0.5) below its mAP; epoch 2 hits 3 of 4 (R1 0.75), AP all but the last 1
    ours_pq = [_pq([3, 3, 3, 3], [.2, .2, .2, .2]), _pq([1, 3, 1, 2], [1, .3, 1, .3]), _pq([1, 1, 1, 5], [1, 1, 1, .2])]
    peer = _rows([0, 10], [0.0, 0.5], [0.35, 0.6875])
    ours = _rows([0, 4, 8], [0.0, 0.5, 0.75], [0.2, 0.65, 0.8])
    s = tta.summarize({"peer": peer, "ours": ours}, {"peer": peer_pq, "ours": ours_pq})
    final, reach = s["paired"]["final"], s["paired"]["at_reach"]
    assert final["rank1"]["difference"] == pytest.approx(25.0) and final["rank1"]["epoch"] == 2
    assert final["mAP"]["difference"] == pytest.approx(100 * (0.8 - 0.6875))
    assert reach["rank1"]["epoch"] == 1 and reach["rank1"]["difference"] == pytest.approx(0.0)
    assert reach["mAP"]["epoch"] == 2
    for d in (final["rank1"], final["mAP"], reach["rank1"]):
        lo, hi = d["ci95"]
        assert lo <= d["difference"] <= hi
    # without per-query data there is no pairing, and queries that differ are refused
    assert "paired" not in tta.summarize({"peer": peer, "ours": ours})
    other = [_pq(b["first_hit"], b["ap"], pid=(1, 2, 2, 3)) for b in ours_pq]
    with pytest.raises(ValueError, match="same queries"):
        tta.summarize({"peer": peer, "ours": ours}, {"peer": peer_pq, "ours": other})


def test_ratio_interval_resamples_identities_on_both_sides():
    # the same per-query results on both sides, ours in half the minutes: every replicate's curves coincide, so
    # every replicate crosses its own target at the same interpolated point and the ratio is exactly 2
    pq = [_pq([3, 3, 3, 3], [.2, .2, .2, .2]), _pq([1, 2, 1, 3], [1, .5, 1, .25]), _pq([1, 1, 1, 2], [1, 1, 1, .5])]
    peer = _rows([0, 10, 20], [0.0, 0.5, 0.75], [0.2, 0.6875, 0.875])
    ours = _rows([0, 5, 10], [0.0, 0.5, 0.75], [0.2, 0.6875, 0.875])
    s = tta.summarize({"peer": peer, "ours": ours}, {"peer": pq, "ours": pq})
    assert s["ratio"] == {"rank1": pytest.approx(2.0), "mAP": pytest.approx(2.0)}
    assert s["ratio_ci95"]["rank1"] == pytest.approx([2.0, 2.0]) and s["ratio_ci95"]["mAP"] == pytest.approx([2.0, 2.0])
    # ours never better than chance: every replicate counts as ratio 0
    flat = [_pq([4, 4, 4, 4], [.1, .1, .1, .1])] * 3
    ci = tta.ratio_interval({"peer": peer, "ours": ours}, {"peer": pq, "ours": flat}, n_boot=50)
    assert ci == {"rank1": [0.0, 0.0], "mAP": [0.0, 0.0]}
    # a replicate draws identities, not queries: with identity 1's two queries (first two) the only ones ours gets
    # right at epoch 1, a replicate without identity 1 reaches the target later, so the interval is not a point
    mixed = [pq[0], _pq([1, 1, 3, 3], [1, 1, .3, .3]), pq[2]]
    lo, hi = tta.ratio_interval({"peer": peer, "ours": ours}, {"peer": pq, "ours": mixed})["rank1"]
    assert lo < hi


def test_markdown_and_figure_carry_intervals(tmp_path):
    report = _report({})
    for side in ("peer", "ours"):
        for row in report["sides"][side]["curve"]:
            row["rank1_ci"], row["mAP_ci"] = [row["rank1"] - 0.05, row["rank1"] + 0.05], [row["mAP"] - 0.04,
                                                                                              row["mAP"] + 0.04]
    s = report["summary"]
    s["target_ci"] = {"rank1": [0.37, 0.47], "mAP": [0.36, 0.44]}
    d = {"epoch": 2, "difference": 8.0, "ci95": [2.5, 13.5], "excludes_zero": True}
    s["paired"] = {"final": {"rank1": d, "mAP": {**d, "difference": 5.0}}, "at_reach": {"rank1": None, "mAP": d}}
    s["ratio_ci95"] = {"rank1": [2.5, 4.125], "mAP": [0.0, 3.0]}
    text = tta.markdown(report)
    assert "intervals of the ratios: rank-1 ×2.50 to ×4.12, mAP ×0 (not reached) to ×3.00" in text
    assert "the peer's final rank-1 42.0 [37.0, 47.0], mAP 40.0 [36.0, 44.0]" in text
    assert "after our last epoch rank-1 +8.0 [+2.5, +13.5] (epoch 2), mAP +5.0 [+2.5, +13.5] (epoch 2)" in text
    assert "at or above the target rank-1 not reached" in text
    assert "| 2 | 10.00 | 50.0 [45.0, 55.0] | 45.0 [41.0, 49.0] | 1.50 |" in text
    assert "| test rank-1 / mAP after the last epoch (%) | 42.0 [37.0, 47.0] / 40.0 [36.0, 44.0] |" in text
    tta.figure(report, tmp_path / "tta.png")
    assert (tmp_path / "tta.png").stat().st_size > 10_000


def test_held_out_mode_trains_without_fits_held_out_ids_and_evaluates_on_them(shared_data, tmp_path):
    import argparse

    from reidlib.data import build_dataset
    from reidlib.engine.trainer import split_training_data

    args = argparse.Namespace(quick=False, held_out=100, threads=2, fresh=[], eval_precision="auto")
    sides = tta.prepare(args, tmp_path, dict(tta.PEER_RECIPE, epochs=20), {})
    train = json.loads((tmp_path / "train_items.json").read_text())
    held = json.loads((tmp_path / "test.json").read_text())
    cuhk = build_dataset("folder", shared_data / "cuhk03-np-detected")
    assert held["protocol"] == "market" and len({pid for _, pid, _ in held["query"]}) == 100
    def names(items):  # file names: the benchmark may reach ../shared through a link the fixture resolved
        return [Path(p).name for p, _, _ in items]

    held_names = set(names(held["query"] + held["gallery"]))
    assert not held_names & set(names(train))  # no held-out image trains
    assert held_names | set(names(train)) == set(names(cuhk.train))  # nor a test image anywhere
    _, (vq, _), _ = split_training_data(cuhk, num_val_ids=100, seed=0)
    assert names(held["query"]) == names(vq)  # the very ids a held-out sweep judges on
    assert sides["peer"]["train_sha"] == sides["ours"]["train_sha"]
    # another recipe of ours trains in its own folder beside the same peer run (no refusal, nothing discarded)
    again = tta.prepare(args, tmp_path, dict(tta.PEER_RECIPE, epochs=20, precision="fp32"), {})
    assert again["peer"]["curve_dir"] == sides["peer"]["curve_dir"]
    assert again["ours"]["curve_dir"] != sides["ours"]["curve_dir"]
    assert Path(sides["ours"]["curve_dir"], "spec.json").is_file()


def test_held_out_reports_say_held_out_not_test():
    text = tta.method_text("in bf16", 100)
    assert "training split minus 100 identities" in text and "no test image is read" in text
    assert "the test split" in tta.method_text("in bf16") and "held-out" not in tta.method_text("in bf16")
    report = _report({})
    report["evaluation"] = {"held_out": 100}
    md = tta.markdown(report)
    assert md.startswith("# Time to accuracy: reidlib against torchreid on CUHK03-NP (held-out training identities)")
    assert "| held-out rank-1 / mAP after the last epoch (%) |" in md and "test" not in md.split("## Recipes")[0]


def _held_out(ap: float, n: int = 40) -> dict:
    """A held-out record of n queries (one per identity), each with the given AP and its first match at rank 1."""
    return {"R1": 100.0, "mAP": 100.0 * ap,
            "per_query": {"pid": " ".join(map(str, range(n))), "first_hit": " ".join(["1"] * n),
                          "ap": " ".join([str(ap)] * n)}}


def test_rank_sweep_times_each_recipe_and_chooses_the_fastest_no_worse_than_the_profiles():
    peer = _rows([0, 10, 20, 30], [0.10, 0.30, 0.40, 0.42], [0.10, 0.28, 0.36, 0.40])
    s = tta.summarize({"peer": peer, "ours": peer})  # peer minutes to its final rank-1 and mAP: 30 and 30
    recipes = {  # rows from epoch 1 on; epoch 0 is the peer's (the same starting weights)
        "": {"changes": {}, "trained": "2026-12-05", "held_out": _held_out(0.80),
             "curve": [{"epoch": 1, "minutes": 5.0, "rank1": 0.42, "mAP": 0.38},
                       {"epoch": 2, "minutes": 10.0, "rank1": 0.44, "mAP": 0.40}]},
        "fast": {"changes": {"training": {"epochs": 1}}, "trained": None, "held_out": _held_out(0.77),
                 "curve": [{"epoch": 1, "minutes": 4.0, "rank1": 0.50, "mAP": 0.40}]},
        "worse": {"changes": {"training": {"lr": 1.0}}, "trained": None, "held_out": _held_out(0.60),
                  "curve": [{"epoch": 1, "minutes": 1.0, "rank1": 0.50, "mAP": 0.20}]},
        "unrecorded": {"changes": {"training": {"epochs": 2}}, "trained": None, "held_out": None,
                       "curve": [{"epoch": 1, "minutes": 2.0, "rank1": 0.50, "mAP": 0.45}]}}
    ranked = tta.rank_sweep(s, peer, recipes)
    rows = {r["variant"]: r for r in ranked["recipes"]}
    # the profile's own: rank-1 0.10 -> 0.42 in its first 5 minutes: 5 * 0.32 / 0.32 = 5.0; mAP at minute 10
    assert rows[""]["minutes_to_target"]["rank1"] == pytest.approx(5.0)
    assert rows[""]["minutes_to_target"]["mAP"] == pytest.approx(10.0)
    assert rows[""]["ratio"] == {"rank1": pytest.approx(6.0), "mAP": pytest.approx(3.0)}
    # "fast": rank-1 0.10 -> 0.50 over 4 minutes, 0.42 at 4 * 0.32 / 0.40 = 3.2; mAP 0.40 at minute 4
    assert rows["fast"]["minutes_to_target"]["rank1"] == pytest.approx(3.2)
    assert rows["fast"]["smaller"] == pytest.approx(30 / 4.0)
    assert rows["worse"]["ratio"]["mAP"] is None
    # every query 3 AP points below the profile's: the paired interval is exactly [-3, -3], inside the 5-point margin
    assert rows["fast"]["vs_own"]["mAP"]["ci95"] == [pytest.approx(-3.0), pytest.approx(-3.0)]
    assert rows["fast"]["vs_own"]["R1"]["difference"] == pytest.approx(0.0)
    assert rows["fast"]["non_inferior"] and rows[""]["non_inferior"] and rows[""]["vs_own"] is None
    assert not rows["worse"]["non_inferior"] and not rows["unrecorded"]["non_inferior"]
    assert rows["unrecorded"]["vs_own"] == {"R1": None, "mAP": None}
    # the fewest minutes among those no worse, then the rest by minutes
    assert [r["variant"] for r in ranked["recipes"]] == ["fast", "", "worse", "unrecorded"]
    assert ranked["chosen"] == "fast" and ranked["margin"] == 5.0
    assert tta.rank_sweep(s, peer, recipes, margin=2.0)["chosen"] == ""
    assert tta.rank_sweep(s, peer, {"worse": recipes["worse"]})["chosen"] is None


def test_the_sweep_section_names_the_chosen_recipe():
    report = _report({})
    report["evaluation"] = {"held_out": 100}
    peer = report["sides"]["peer"]["curve"]
    recipes = {"": {"changes": {}, "trained": "2026-12-05", "held_out": _held_out(0.8),
                    "curve": [dict(r) for r in peer[1:]]},
               "cos8": {"changes": {"training": {"epochs": 8}}, "trained": "2026-12-04", "held_out": _held_out(0.5),
                        "curve": [{"epoch": 1, "minutes": 0.5, "rank1": 0.0, "mAP": 0.0}]}}
    report["sweep"] = {"profile": "sweeps/x", **tta.rank_sweep(report["summary"], peer, recipes)}
    md = tta.markdown(report)
    section = md.split("## The sweep's recipes against the peer's held-out accuracy")[1].split("## Per epoch")[0]
    assert "`params/sweeps/x.yaml`" in section
    assert "no worse than the profile's own recipe's by more than 5 points" in section
    assert section.count("**the profile's own recipe**") == 1 and "| **(profile)** |" in section
    assert ('| cos8 | training.epochs: 8 | 2026-12-04 | 1 | 0.5 |' in section and "not reached" in section
            and "| +0.0 [+0.0, +0.0] / -30.0 [-30.0, -30.0] |" in section)
    assert "## The sweep's recipes" not in tta.markdown(_report({}))


def test_sweep_curves_read_the_committed_held_out_sweep():
    recipes = tta.sweep_curves("sweeps/cuhk03-osnet-speed", 100)
    root = Path(__file__).resolve().parents[1] / "results" / "cuhk03-osnet-speed" / "10_train"
    history = json.loads((root / "cuhk03-osnet_x0_25" / "metrics.json").read_text())["history"]
    own = recipes[""]["curve"]
    assert [r["rank1"] for r in own] == [h["val_rank1"] for h in history]
    assert own[-1]["minutes"] == pytest.approx(sum(h["train_seconds"] for h in history) / 60)
    assert recipes["cos8"]["changes"] == {"training": {"epochs": 8}} and len(recipes["cos8"]["curve"]) == 8
    assert recipes["cos8"]["held_out"]["per_query"]["pid"] == recipes[""]["held_out"]["per_query"]["pid"]
    with pytest.raises(SystemExit, match="holding out 100"):
        tta.sweep_curves("sweeps/cuhk03-osnet-speed", 50)
