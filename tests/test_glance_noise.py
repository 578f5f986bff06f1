""""At a glance" sets its leads beside measured noise: the sd over seeds of a repeated run and the paired
difference of a profile variant named in report.variants (fp32 against bf16 autocast); without either it keeps
the caveat that the intervals do not cover them. Numbers are percentages and percentage points."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from reidlib.evaluation.bootstrap import paired_difference
from reidlib.stages import seeds as seeds_mod
from reidlib.stages.findings import at_a_glance
from reidlib.stages.records import as_runs
from reidlib.stages.uncertainty import BOOT_SEED, CI_LEVEL, N_BOOT, encode_per_query

HEAD = "10_train/d-osnet"
FP32 = "10_train/d-osnet@fp32"
CHANGE = "fp32 instead of bf16 autocast (the CPU-kind difference)"
PEER = {"source": "torchreid 0.2.5 (KaiyangZhou/deep-person-reid) trained by this project", "model": "OSNet x0.25",
        "data": "CUHK03-NP", "R1": 43.0, "mAP": 41.0, "compare_with": HEAD}


def _record(label: str, r1: float, m_ap: float, seed: int = 0, hits: np.ndarray | None = None,
            n_ids: int = 20) -> dict:
    """A training record on CUHK03-NP: 2 queries per identity, AP ``m_ap`` % on every query, a rank-1 hit on the
    first ``r1`` % of the queries (or where ``hits``)."""
    from reidlib.evaluation import bootstrap_ci

    pids = np.repeat(np.arange(n_ids), 2)
    hit = np.arange(2 * n_ids) < round(r1 / 100 * 2 * n_ids) if hits is None else hits
    ap = np.full(2 * n_ids, m_ap / 100)
    ci = bootstrap_ci({"R1": hit, "mAP": ap}, pids)
    test = {"label": "CUHK03-NP", "role": "test", "R1": 100 * float(np.mean(hit)), "mAP": m_ap,
            "ci95": {k: [100 * v for v in ci[k]] for k in ci},
            "per_query": encode_per_query({"pid": pids, "first_hit": np.where(hit, 1, 5), "ap": ap})}
    return {"stage": "10_train", "model_label": label, "dataset_label": "CUHK03-NP", "evaluations": {"test": test},
            "train": {"init": "random", "image_size": [128, 64], "epochs_completed": 30, "seed": seed,
                      "train_seconds": 600.0, "device": "cpu"}}


def _write(tmp_path: Path, run_id: str, record: dict) -> str:
    path = tmp_path / run_id / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return str(path)


def _study(tmp_path: Path, seeds_run: int = 3) -> tuple[dict, list[dict], dict]:
    """(runs, run_groups, report) of a cpu-real-shaped study: OSNet with seeds 0, 1, 2 (R1 50 / 52 / 54, mAP
    40 / 41 / 45), ResNet50 with one seed (30 / 30), an fp32 variant of OSNet (R1 the same queries hit, mAP 41)
    named in report.variants, and a reference (41.0 mAP) set beside OSNet; ``seeds_run``: how many seeds ran."""
    seeds = [_record("OSNet", 50.0, 40.0), _record("OSNet", 52.5, 41.0, 1), _record("OSNet", 55.0, 45.0, 2)]
    osnet = [_write(tmp_path, rid, rec) for rid, rec in zip([HEAD, f"{HEAD}-seed1", f"{HEAD}-seed2"], seeds)]
    resnet = _record("ResNet50", 30.0, 30.0)
    groups = [{"stage": "10_train", "variant": None, "model_run": "osnet", "dataset_key": "d", "seeds": [0, 1, 2],
               "runs": [HEAD, f"{HEAD}-seed1", f"{HEAD}-seed2"],
               "metrics": osnet[:seeds_run] + [str(tmp_path / "not-run.json")] * (3 - seeds_run)},
              {"stage": "10_train", "variant": None, "model_run": "resnet", "dataset_key": "d", "seeds": [0],
               "runs": ["10_train/d-resnet"], "metrics": [_write(tmp_path, "10_train/d-resnet", resnet)]},
              {"stage": "10_train", "variant": "fp32", "model_run": "osnet", "dataset_key": "d", "seeds": [0],
               "runs": [FP32], "metrics": [_write(tmp_path, FP32, _record("OSNet", 50.0, 41.0))]}]
    report = {"variants": [{"fixed": HEAD, "variant": FP32, "change": CHANGE, "noise": True}], "references": [PEER]}
    return as_runs({HEAD: seeds[0], "10_train/d-resnet": resnet}), groups, report


def test_the_sentence_gives_the_seed_sd_and_the_fp32_difference_and_judges_each_lead(tmp_path):
    runs, groups, report = _study(tmp_path)
    noise = seeds_mod.measured_noise(groups, report["variants"])
    # by hand: R1 50, 52.5, 55 -> sd 2.5; mAP 40, 41, 45 -> deviations -2, -1, 3, sd sqrt(14 / 2) = 2.65
    (spread,) = noise.spreads
    assert (spread.run, spread.seeds, spread.planned) == (HEAD, (0, 1, 2), 3)
    assert np.isclose(spread.R1_sd, 2.5) and np.isclose(spread.mAP_sd, np.sqrt(7.0))
    # fp32 minus bf16 on the same queries: the same rank-1 hits, AP 0.41 against 0.40 on every query, so both
    # paired intervals are degenerate: +0.0 [+0.0, +0.0] rank-1 and +1.0 [+1.0, +1.0] mAP
    (shift,) = noise.shifts
    assert (shift.fixed, shift.variant, shift.name, shift.change) == (HEAD, FP32, "fp32", CHANGE)
    assert np.allclose(shift.mAP["ci95"], [1.0, 1.0]) and np.isclose(shift.mAP_point, 1.0)
    assert np.allclose(shift.R1["ci95"], [0.0, 0.0]) and shift.reach("mAP") == max(abs(v) for v in shift.mAP["ci95"])
    text = at_a_glance(runs, report, {}, "p", noise=noise)
    assert "not seed-to-seed" not in text
    assert ("The intervals cover which query identities were sampled. Measured beyond them: the sd over seeds of "
            "test rank-1 / mAP is 2.5 / 2.6 points for OSNet on CUHK03-NP, n = 3; " + CHANGE + " moves OSNet on "
            "CUHK03-NP by +0.0 [+0.0, +0.0] rank-1 and +1.0 [+1.0, +1.0] mAP points (paired 95 % intervals). "
            # 10.0 > 2 x 2.65 and > 1.0: larger; |40.0 - 41.0| = 1.0 is neither beyond 5.3 nor beyond the fp32
            # interval's far end (1.0)
            "The mAP lead of OSNet over ResNet50, +10.0 points, is larger than 5.3 points (twice the seed sd of mAP) "
            "and the fp32 difference (+1.0 [+1.0, +1.0]); the mAP difference of OSNet against the reference "
            "OSNet x0.25 of torchreid 0.2.5 (mAP 41.0), -1.0 points, is not larger than 5.3 points (twice the seed "
            "sd of mAP) and the fp32 difference (+1.0 [+1.0, +1.0]): treat it as within noise.") in text
    assert 'seed 0 (OSNet also with seeds 1, 2, see "Seeds"; one training run for each other model)' in text


def test_a_non_degenerate_fp32_interval_is_the_paired_bootstrap_of_the_two_runs(tmp_path):
    hits = np.arange(40) < 20
    hits_fp32 = hits.copy()
    hits_fp32[[3, 7, 30, 31, 35]] = ~hits_fp32[[3, 7, 30, 31, 35]]  # 2 hits lost, 3 gained
    groups = [{"stage": "10_train", "variant": None, "model_run": "osnet", "dataset_key": "d", "seeds": [0],
               "runs": [HEAD], "metrics": [_write(tmp_path, HEAD, _record("OSNet", 0.0, 40.0, hits=hits))]},
              {"stage": "10_train", "variant": "fp32", "model_run": "osnet", "dataset_key": "d", "seeds": [0],
               "runs": [FP32], "metrics": [_write(tmp_path, FP32, _record("OSNet", 0.0, 40.0, hits=hits_fp32))]}]
    (shift,) = seeds_mod.measured_noise(groups, [{"fixed": HEAD, "variant": FP32, "noise": True}]).shifts
    # the same pair without noise: true is a recipe change, not noise
    assert not seeds_mod.measured_noise(groups, [{"fixed": HEAD, "variant": FP32}]).shifts
    want = paired_difference(hits_fp32.astype(float), hits.astype(float), np.repeat(np.arange(20), 2), ci=CI_LEVEL,
                             n_boot=N_BOOT, seed=BOOT_SEED)
    assert np.isclose(shift.R1_point, 2.5)  # 21 against 20 hits of 40 queries
    assert np.allclose(shift.R1["ci95"], [100 * v for v in want["ci"]]) and shift.R1["ci95"][0] < 0
    assert shift.change == "" and shift.reach("R1") == max(abs(v) for v in shift.R1["ci95"])


def test_without_seeds_or_variant_pairs_the_caveat_stays(tmp_path):
    runs, groups, report = _study(tmp_path)
    caveat = "The intervals cover which query identities were sampled, not seed-to-seed or CPU-kind (bf16 against fp32)"
    for noise in (None, seeds_mod.measured_noise(None, report["variants"]), seeds_mod.Noise()):
        text = at_a_glance(runs, report, {}, "p", noise=noise)
        assert caveat + " variation." in text and "Measured beyond" not in text
        assert "(one training run per model)" in text
    # a pair of two rows of the profile itself (a paper-code fix) is a recipe's worth, not variation
    fix = [{"fixed": HEAD, "variant": "10_train/d-resnet", "change": "paper code"}]
    assert not seeds_mod.measured_noise(groups[1:2] + [{**groups[0], "seeds": [0], "runs": [HEAD],
                                                        "metrics": groups[0]["metrics"][:1]}], fix)


def test_seeds_only_name_what_was_not_varied_and_count_the_seeds_that_ran(tmp_path):
    runs, groups, report = _study(tmp_path, seeds_run=2)
    text = at_a_glance(runs, {}, {}, "p", noise=seeds_mod.measured_noise(groups, None))
    # two of three seeds ran: R1 50, 52.5 -> sd 1.8; mAP 40, 41 -> sd 0.7
    assert ("the sd over seeds of test rank-1 / mAP is 1.8 / 0.7 points for OSNet on CUHK03-NP, n = 2 of 3 planned; "
            "CPU kind (bf16 against fp32) was not varied.") in text
    assert ("The mAP lead of OSNet over ResNet50, +10.0 points, is larger than 1.4 points (twice the seed sd of "
            "mAP).") in text
    one = at_a_glance(runs, {}, {}, "p", noise=seeds_mod.measured_noise(_study(tmp_path / "one", 1)[1], None))
    assert "not seed-to-seed or CPU-kind" in one  # one seed ran: no sd yet


def test_many_repeated_runs_are_summarised_by_the_range_of_their_sds():
    from reidlib.stages.findings import _spread_words
    from reidlib.stages.seeds import SeedSpread

    spreads = tuple(SeedSpread(f"10_train/r{i}", f"M{i}", "D", (0, 1, 2)[:2 + i % 2], 3, 0.5 + i, 0.2 + i / 2)
                    for i in range(4))
    assert _spread_words(spreads) == ("the sd over seeds of test rank-1 / mAP is 0.5-3.5 / 0.2-1.7 points across 4 "
                                      "repeated runs (n = 2-3; widest in mAP: M3 on D)")


def test_a_variant_repeating_a_whole_model_entry_is_named_by_its_label_in_the_variants_table():
    from reidlib.stages.seeds import _changes

    entry = {"name": "osnet_x0_25", "run": "osnet_x0_25_msmt17", "label": "OSNet x0.25 (MSMT17 init)",
             "pretrained": "/shared/weights/osnet_x0_25_msmt17.pth", "train_on": ["cuhk03"], "seeds": [0],
             "train": {"epochs": 40, "warmup_epochs": 0, "num_val_ids": 0, "select_on": "last", "max_minutes": 150}}
    assert _changes({"precision": "fp32", "models": [entry], "finetune": None}) == (
        'precision: "fp32"; models: [OSNet x0.25 (MSMT17 init)] (in full in the profile); finetune: null')
    short = {"models": [{"name": "bot_resnet50", "run": "bot_resnet50", "kwargs": {"zero_init_residual": True}}]}
    assert _changes(short) == ('models: [{"name": "bot_resnet50", "run": "bot_resnet50", "kwargs": '
                               '{"zero_init_residual": true}}]')


def test_the_report_opens_with_the_measured_noise_and_keeps_its_tables(tmp_path):
    from reidlib.stages.report import write_report

    runs, groups, report = _study(tmp_path)
    text = write_report(runs, tmp_path / "report", profile="p", description="d", profile_path="p.yaml",
                        report=report, run_groups=groups, variant_overrides={"fp32": {"precision": "fp32"}})
    glance = text.split("## At a glance\n\n")[1].split("\n")[0]
    assert "Measured beyond them: the sd over seeds of test rank-1 / mAP is 2.5 / 2.6 points" in glance
    record = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert record["at_a_glance"] == glance
    assert "## Seeds" in text and "| 52.5 ± 2.5 | 42.0 ± 2.6 |" in text
    assert "- `fp32`: precision: \"fp32\"" in text and "+0.0 [+0.0, +0.0] / +1.0 [+1.0, +1.0]" in text
