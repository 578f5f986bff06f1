"""Typed run records (reidlib.stages.records): every committed metrics.json parses, a record written by the
stages' own writers round-trips, formats newer than this reidlib reads are refused with the command that
regenerates them, and format-0 records (written before the key existed) are read."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from reidlib.stages.common import METRICS_FORMAT, MetricsFormatError, write_metrics
from reidlib.stages.records import (
    DataRecord,
    DistanceRecord,
    EvalRecord,
    FinetuneRecord,
    RunRecord,
    TrainRecord,
    as_runs,
    read_record,
)

REPO = Path(__file__).resolve().parents[1]
RUN_STAGES = ("10_train", "20_finetune", "30_distance_study")
COMMITTED = sorted(p for stage in RUN_STAGES for p in (REPO / "results").glob(f"*/{stage}/*/metrics.json"))
FORMAT0 = sorted((Path(__file__).parent / "data" / "format0").glob("*/*/*/metrics.json"))
CLASSES = {"10_train": TrainRecord, "20_finetune": FinetuneRecord, "30_distance_study": DistanceRecord}


def _run_id(path: Path) -> str:
    return f"{path.parent.parent.name}/{path.parent.name}"


def test_the_committed_results_hold_records_of_every_run_stage_and_both_formats():
    stages = {p.parent.parent.name for p in COMMITTED}
    formats = {json.loads(p.read_text()).get("format", 0) for p in COMMITTED}
    assert stages == set(RUN_STAGES) and formats == {0, METRICS_FORMAT}


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(REPO / "results")))
def test_every_committed_run_record_parses_and_gives_back_what_was_written(path):
    raw = json.loads(path.read_text())
    stage = path.parent.parent.name
    record = RunRecord.from_dict(raw, run_id=_run_id(path))
    assert type(record) is CLASSES[stage] and record.format == raw.get("format", 0)
    assert record.to_dict() == raw  # nothing lost, nothing added
    from_file = read_record(path)  # through read_metrics: work paths made absolute
    assert type(from_file) is CLASSES[stage]
    if isinstance(record, TrainRecord):
        assert record.evaluations and all(isinstance(ev, EvalRecord) for ev in record.evaluations.values())
        for ev in record.evaluations.values():
            assert 0.0 <= ev.R1 <= 100.0 and 0.0 <= ev.mAP <= 100.0  # percent, as written
            assert all(0.0 <= v <= 1.0 for v in ev.cmc)  # fractions
            assert ev.has_intervals == (record.format >= 1)
            if ev.has_intervals:
                lo, hi = ev.interval("R1")
                assert lo <= ev.R1 <= hi
        if set(record.evaluations) == {"held-out"}:  # a held-out-only sweep run reads no test split
            assert record.result_eval is None and record.evaluation("held-out") is not None
        else:
            assert record.result_eval is not None
        assert all(Path(f.query).is_absolute() for f in from_file.features.values() if f.query)
    else:
        assert record.rows and {r.run for r in record.rows} >= set(record.roc)
        assert not record.rows_frame().empty and list(record.verification_frame()["AUC"]) == [
            r["AUC"] for r in raw["verification"]]


def test_format_0_records_read_without_the_keys_added_later():
    # one record of each stage as the study committed them before the key existed (tests/data/format0), and any
    # committed record still without it
    old = FORMAT0 + [p for p in COMMITTED if "format" not in json.loads(p.read_text())]
    assert {p.parts[-3] for p in FORMAT0} == set(RUN_STAGES)
    for path in old:
        record = read_record(path)
        assert record.format == 0 and "format" not in record.to_dict()
        if isinstance(record, TrainRecord):
            ev = record.result_eval
            assert ev.chance_R1 is None and ev.per_query is None and ev.interval("R1") is None
            assert ev.fmt_record().endswith("[n/a]") and not ev.has("ci95")


def test_a_record_newer_than_this_reidlib_is_refused_with_the_command_that_regenerates_it(tmp_path):
    newer = {"format": METRICS_FORMAT + 1, "stage": "10_train", "profile": "cpu-real", "model_label": "M"}
    with pytest.raises(MetricsFormatError, match=r"regenerate it with this one: "
                                                 r"\./run_all\.sh cpu-real --only 10_train/x --force"):
        RunRecord.from_dict(newer, run_id="10_train/x")
    with pytest.raises(MetricsFormatError, match=r"\./run_all\.sh cpu-real --only 10_train/x --force"):
        as_runs({"10_train/x": newer})
    path = tmp_path / "results" / "p" / "10_train" / "cuhk03-osnet" / "metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(newer))
    with pytest.raises(MetricsFormatError, match=r"\./run_all\.sh cpu-real --only 10_train/cuhk03-osnet --force"):
        read_record(path)
    for bad in ("1", 1.0, True, -1):
        with pytest.raises(MetricsFormatError, match="reads formats 0-"):
            RunRecord.from_dict({**newer, "format": bad}, run_id="10_train/x")


def test_the_stage_picks_the_record_type_and_a_mismatch_is_refused():
    assert type(read_record({"datasets": {}}, "00_data")) is DataRecord
    assert type(read_record({}, run_id="20_finetune/a-to-b-m")) is FinetuneRecord
    assert type(TrainRecord.from_dict({"stage": "20_finetune"})) is FinetuneRecord  # a fine-tune run is a training run
    with pytest.raises(ValueError, match="written by stage '10_train', read as '30_distance_study'"):
        read_record({"stage": "10_train"}, "30_distance_study")
    with pytest.raises(ValueError, match="no DistanceRecord for stage '10_train'"):
        DistanceRecord.from_dict({}, "10_train")
    with pytest.raises(ValueError, match="stages with records"):
        read_record({}, "40_report")


def test_unknown_keys_are_kept_and_missing_ones_read_as_absent():
    ev = EvalRecord.from_dict({"R1": 50.0, "mAP": 40.0, "new_stat": 3})
    assert ev.extra == {"new_stat": 3} and not ev.has("ci95") and ev.cmc == ()
    assert ev.to_dict() == {"R1": 50.0, "mAP": 40.0, "new_stat": 3}
    assert ev.value("mAP") == 40.0
    with pytest.raises(KeyError, match="not an evaluation statistic"):
        ev.value("label")
    run = TrainRecord.from_dict({"train": {"epochs": 0, "note": "no training"}})
    assert not run.train.has_recipe and run.train.epochs_run == 0 and run.test_eval is None
    with pytest.raises(KeyError, match="no 'test' evaluation"):
        run.require_eval("test")


# ---------------------------------------------------------------------------------------------------------------
# written by the stages themselves
# ---------------------------------------------------------------------------------------------------------------
def _tiny_dataset(root: Path, label: str, seed: int) -> dict:
    return {"name": "synthetic", "root": str(root), "label": label,
            "kwargs": {"num_ids": 12, "num_cams": 2, "images_per_id_per_cam": 2, "height": 64, "width": 32,
                       "seed": seed}}


def _round_trip(path: Path, stage: str, cls: type) -> RunRecord:
    written = json.loads(path.read_text())
    assert written["format"] == METRICS_FORMAT
    assert cls.from_dict(written).to_dict() == written
    record = read_record(path, stage)
    assert type(record) is cls and record.to_dict() == written  # absolute paths are written as they are
    return record


def test_records_written_by_the_train_and_finetune_stages_round_trip(tmp_path, one_torch_thread):
    from reidlib.stages.finetune import finetune_and_test
    from reidlib.stages.train import train_and_test

    train = {"epochs": 1, "batch_size": 8, "num_instances": 2, "warmup_epochs": 0, "milestones": [5],
             "num_val_ids": 2, "select_on": "val", "progress": False}
    common = dict(evaluation={"max_rank": 5}, image_size=[64, 32], device="cpu", precision="fp32")
    a, b = _tiny_dataset(tmp_path / "a", "Set A", 0), _tiny_dataset(tmp_path / "b", "Set B", 1)
    out = train_and_test(model_name="osnet_x0_25", model_kwargs={"feature_dim": 16}, pretrained=None, dataset=a,
                         zero_shot={"b": b}, train=train, work_dir=str(tmp_path / "work" / "train"), **common)
    trained = tmp_path / "results" / "p" / "10_train" / "a-osnet"
    write_metrics(trained, out.to_metrics(stage="10_train", profile="p", model_run="osnet", model_label="OSNet",
                                          dataset_key="a"))
    record = _round_trip(trained / "metrics.json", "10_train", TrainRecord)
    test = record.test_eval
    assert (test.R1, test.mAP, test.label, test.role) == (out.evaluations["test"]["R1"], out.evaluations["test"]["mAP"],
                                                         "Set A", "test")
    assert test.interval("mAP") == tuple(out.evaluations["test"]["ci95"]["mAP"]) and test.chance_R1 > 0
    assert len(test.per_query.decode()["ap"]) == test.num_valid_queries
    assert test.paired(test, "mAP")["difference"] == 0.0
    assert record.evaluation("b").role == "zero-shot" and record.stored_features("b").exist()
    assert record.train.recipe.triplet_margin == out.train_info["recipe"]["triplet_margin"]
    assert [e.epoch for e in record.history] == [1] and record.history_dicts() == out.history
    assert record.complexity.params_trainable == out.complexity["params_trainable"]

    tuned = finetune_and_test(source_metrics=str(trained / "metrics.json"), target=b, finetune=train,
                              work_dir=str(tmp_path / "work" / "ft"), **common)
    ft_dir = tmp_path / "results" / "p" / "20_finetune" / "a-to-b-osnet"
    write_metrics(ft_dir, tuned.to_metrics(stage="20_finetune", profile="p", model_run="osnet", model_label="OSNet",
                                           dataset_key="b", source_key="a"))
    ft = _round_trip(ft_dir / "metrics.json", "20_finetune", FinetuneRecord)
    assert ft.source_key == "a" and ft.result_eval == ft.evaluation("fine-tuned")
    assert ft.require_eval("fine-tuned").paired(ft.require_eval("zero-shot"), "mAP") is not None
    assert ft.train.source_checkpoint == record.checkpoint


def _feature_run(tmp_path: Path, name: str, noise: float) -> str:
    """A training run's record with stored test features: 12 identities, identity centre + noise."""
    import torch

    from reidlib.evaluation import FeatureSet

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(12, 16))
    sets = {}
    for split, cams in (("query", (0,)), ("gallery", (1, 1))):
        pids = np.repeat(np.arange(1, 13), len(cams))
        feats = centres[pids - 1] + noise * rng.normal(size=(len(pids), 16))
        fs = FeatureSet(torch.tensor(feats, dtype=torch.float32), pids.astype(np.int64),
                        np.tile(np.array(cams), 12).astype(np.int64), [f"{split}_{i}.jpg" for i in range(len(pids))])
        sets[split] = str(fs.save(tmp_path / name / f"test_{split}.npz"))
    path = tmp_path / name / "metrics.json"
    path.write_text(json.dumps({"dataset_key": "d", "model_run": name, "model_label": name.upper(),
                                "dataset_label": "D", "features": {"test": {**sets, "protocol": "market"}}}))
    return str(path)


def test_a_record_written_by_the_distance_stage_round_trips(tmp_path):
    from reidlib.stages import distance

    runs = [_feature_run(tmp_path, "clean", 0.3), _feature_run(tmp_path, "noisy", 1.5)]
    table, curves = distance.distance_study(runs, metrics=["euclidean", "cosine"], normalize=[True, False])
    ver, head, roc = distance.verification_study(runs, metrics=["euclidean", "cosine"], pair_head_steps=5)
    paired = distance.paired_distance_table(table, curves, reference="euclidean (L2)")
    out = tmp_path / "results" / "p" / "30_distance_study" / "all"
    write_metrics(out, {"stage": "30_distance_study", "profile": "p", "rows": table.to_dict("records"),  # as the
                        "paired": paired.to_dict("records"), "verification": ver.to_dict("records"),  # notebook
                        "pair_head": head.to_dict("records"), "roc": roc})
    record = _round_trip(out / "metrics.json", "30_distance_study", DistanceRecord)
    assert len(record.rows) == len(table) and {r.rerank for r in record.rows} == {"none", "k-reciprocal"}
    assert record.rows[0].ci95["mAP"][0] <= record.rows[0].mAP <= record.rows[0].ci95["mAP"][1]
    lead = [p for p in record.paired if p.comparison == "lead"]
    # the clean run ranks every query first under every setting: nothing differs, so it has no lead row
    assert [p.run for p in lead] == ["d-noisy"] and len(lead[0].map_ci95) == 2
    assert lead[0].near_chance is False and "cosine" in lead[0].ties and record.rows[0].chance_R1 is None
    assert {v.method for v in record.pair_head} == {"cosine threshold", "learned pair head"}
    assert record.pair_head[0].held_out_pairs > 0 and record.verification[0].genuine > 0
    assert record.roc_dict() == json.loads(json.dumps(roc))
    frame = record.rows_frame()
    assert list(frame["mAP"]) == list(table["mAP"]) and list(frame["metric"]) == list(table["metric"])
    assert distance.pivot_distance_table(frame).equals(distance.pivot_distance_table(table))
