"""Variants of a study, runs repeated per seed and the held-out-only switch: planning, checks, the report's tables,
and one variant profile run end to end on tiny synthetic data."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from reidlib import pipeline
from reidlib.pipeline import ProfileError, load_profile, plan
from reidlib.pipeline.profile import PARAMS_DIR, list_profiles
from reidlib.stages import seeds as seeds_mod

TINY_A = {"name": "synthetic", "root": "va", "label": "Synthetic A",
          "kwargs": {"domain": 0, "seed": 0, "num_ids": 16, "num_cams": 2, "images_per_id_per_cam": 2}}


def _profile(tmp_path: Path, name: str = "study", **over) -> Path:
    raw = {"description": "variants test", "device": "cpu", "image_size": [64, 32], "data_root": str(tmp_path / "data"),
           "work_dir": str(tmp_path / "work" / name), "datasets": {"a": TINY_A}, "train_on": ["a"],
           "models": [{"name": "osnet_x0_25", "run": "osnet", "label": "OSNet x0.25", "kwargs": {"bnneck": True}}],
           "training": {"epochs": 2, "optimizer": "adam", "lr": 3.5e-4, "warmup_epochs": 0, "milestones": [],
                        "batch_size": 8, "num_instances": 2, "num_val_ids": 4, "eval_every": 1,
                        "transforms": {"pad": 2, "color_jitter": None}},
           "evaluation": {"max_rank": 10}}
    raw.update(over)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


# ---------------------------------------------------------------------------------------------------------------
# planning
# ---------------------------------------------------------------------------------------------------------------
def test_without_variants_or_seeds_the_plan_is_what_it_was(tmp_path):
    cfg = load_profile(_profile(tmp_path))
    runs = plan(cfg)
    assert [r.id for r in runs] == ["00_data/datasets", "10_train/a-osnet", "40_report/report"]
    assert "test_split" not in runs[1].parameters and runs[1].parameters["seed"] == 0
    assert not {"run_groups", "variant_overrides", "test_split"} & set(runs[-1].parameters)


def test_variants_and_seeds_multiply_the_training_runs(tmp_path):
    path = _profile(tmp_path, seeds=[0, 3], variants={"lr-high": {"training": {"lr": 1.0e-3}}},
                    finetune={"pairs": [["a", "b"]], "models": ["osnet"], "epochs": 1},
                    datasets={"a": TINY_A, "b": {**TINY_A, "root": "vb", "kwargs": {**TINY_A["kwargs"], "domain": 1}}})
    cfg = load_profile(path)
    runs = {r.id: r for r in plan(cfg)}
    train = [rid for rid in runs if rid.startswith("10_train/")]
    assert train == ["10_train/a-osnet", "10_train/a-osnet-seed3", "10_train/a-osnet@lr-high",
                     "10_train/a-osnet@lr-high-seed3"]
    assert runs["10_train/a-osnet"].parameters["seed"] == 0 and runs["10_train/a-osnet-seed3"].parameters["seed"] == 3
    assert runs["10_train/a-osnet@lr-high"].parameters["train"]["lr"] == 1.0e-3
    assert runs["10_train/a-osnet"].parameters["train"]["lr"] == 3.5e-4
    # fine-tunes per variant, from the first seed's run
    assert runs["20_finetune/a-to-b-osnet@lr-high"].depends_on == ["10_train/a-osnet@lr-high"]
    assert runs["20_finetune/a-to-b-osnet"].depends_on == ["10_train/a-osnet"]
    report = runs["40_report/report"].parameters
    assert set(report["metrics_files"]) == {"00_data/datasets", "10_train/a-osnet", "20_finetune/a-to-b-osnet"}
    assert set(runs["40_report/report"].depends_on) == set(runs) - {"40_report/report"}
    groups = {(g["stage"], g["variant"]): g for g in report["run_groups"]}
    assert groups[("10_train", "lr-high")]["runs"] == ["10_train/a-osnet@lr-high", "10_train/a-osnet@lr-high-seed3"]
    assert groups[("10_train", None)]["seeds"] == [0, 3]
    assert report["variant_overrides"] == {"lr-high": {"training": {"lr": 1.0e-3}}}
    assert pipeline.run_dir(cfg, "10_train", "a-osnet@lr-high").parent == pipeline.results_dir(cfg) / "10_train"


def test_a_row_evaluated_as_loaded_runs_once_whatever_the_seeds(tmp_path):
    models = [{"name": "osnet_x0_25", "run": "osnet", "label": "OSNet x0.25"},
              {"name": "osnet_x0_25", "run": "loaded", "label": "as loaded", "train": {"epochs": 0}}]
    cfg = load_profile(_profile(tmp_path, seeds=[0, 1, 2], models=models))
    train = [r.id for r in plan(cfg) if r.stage == "10_train"]
    assert train == ["10_train/a-osnet", "10_train/a-osnet-seed1", "10_train/a-osnet-seed2", "10_train/a-loaded"]
    groups = {g["model_run"]: g for g in next(r for r in plan(cfg) if r.stage == "40_report").parameters["run_groups"]}
    assert groups["loaded"]["seeds"] == [0] and groups["osnet"]["seeds"] == [0, 1, 2]


def test_a_models_own_seeds_repeat_only_its_runs(tmp_path):
    models = [{"name": "osnet_x0_25", "run": "headline", "label": "headline", "seeds": [0, 1, 2]},
              {"name": "osnet_x0_25", "run": "other", "label": "other"}]
    cfg = load_profile(_profile(tmp_path, models=models))
    runs = plan(cfg)
    assert [r.id for r in runs if r.stage == "10_train"] == [
        "10_train/a-headline", "10_train/a-headline-seed1", "10_train/a-headline-seed2", "10_train/a-other"]
    groups = {g["model_run"]: g for g in runs[-1].parameters["run_groups"]}
    assert groups["headline"]["seeds"] == [0, 1, 2] and groups["other"]["seeds"] == [0]
    # the profile's seed comes first, and the list is checked like the study's
    with pytest.raises(ProfileError, match=r"models\[1\]\.seeds: must be a list of distinct integers"):
        load_profile(_profile(tmp_path, "bad", models=[models[0], {**models[1], "seeds": [0, 0]}]))
    with pytest.raises(ProfileError, match=r"models\[0\] \(headline\)\.seeds: the first seed is the profile's "
                                           r"seed \(0; .*write seeds: \[0, 1, 2\]"):
        load_profile(_profile(tmp_path, "bad", models=[{**models[0], "seeds": [1, 2]}, models[1]]))

def test_the_distance_study_reads_the_first_seeds_own_runs(tmp_path):
    cfg = load_profile(_profile(tmp_path, seeds=[0, 1], variants={"v": {"training": {"lr": 1.0e-3}}},
                                distance_study={"metrics": ["cosine"]}))
    ds = next(r for r in plan(cfg) if r.stage == "30_distance_study")
    assert ds.depends_on == ["10_train/a-osnet"]


def test_seeds_first_seed_is_the_profile_seed(tmp_path):
    cfg = load_profile(_profile(tmp_path, seeds=[5, 6]))
    assert cfg["seed"] == 5 and plan(cfg)[0].parameters["seed"] == 5
    with pytest.raises(ProfileError, match=r"seed is 1 and seeds starts with 5; write seeds: \[1, 5, 6\]"):
        load_profile(_profile(tmp_path, seed=1, seeds=[5, 6]))


@pytest.mark.parametrize("seeds", [[], [0, 0], [-1], ["1"], 3])
def test_bad_seeds_are_refused(tmp_path, seeds):
    with pytest.raises(ProfileError, match="seeds: must be a list of distinct integers >= 0"):
        load_profile(_profile(tmp_path, seeds=seeds))


@pytest.mark.parametrize("variants, message", [
    ({"lr high": {"training": {"lr": 1.0}}}, "variants.lr high: a variant name is part of its runs' ids"),
    ({"v": {}}, "variants.v: must be a mapping of the keys this variant changes"),
    ({"v": {"trainig": {"lr": 1.0}}}, "variants.v: cannot override 'trainig'; did you mean 'training'"),
    ({"v": {"seeds": [1]}}, "variants.v: cannot override 'seeds'"),
    ([{"lr": 1}], "variants must map a variant name to the keys it overrides"),
])
def test_bad_variants_are_refused(tmp_path, variants, message):
    with pytest.raises(ProfileError, match=message.replace("(", r"\(")):
        load_profile(_profile(tmp_path, variants=variants))


def test_a_variant_is_checked_like_a_profile_and_its_problems_name_it(tmp_path):
    path = _profile(tmp_path, variants={"bad": {"training": {"lr": "fast", "num_instances": 3}}})
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    text = str(err.value)
    assert "variant 'bad' has" in text and "training.lr: must be a number, got 'fast'" in text


def test_tool_folders_cannot_be_a_profile_name(tmp_path):
    for name in ("benchmarks", "complexity", "shared-weights", "sweeps"):
        with pytest.raises(ProfileError, match=f"results/{name}/"):
            load_profile(_profile(tmp_path, name=name))
    with pytest.raises(ProfileError, match="no profile may be called 'sweeps'"):
        load_profile(_profile(tmp_path, "sweeps"))


# ---------------------------------------------------------------------------------------------------------------
# test_split: false
# ---------------------------------------------------------------------------------------------------------------
def test_held_out_profiles_refuse_what_reads_the_test_split(tmp_path):
    path = _profile(tmp_path, test_split=False, zero_shot=["a"], distance_study={}, training={"epochs": 1},
                    finetune={"pairs": [["a", "a"]], "models": ["osnet"]})
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    text = str(err.value)
    for line in ("zero_shot: test_split: false", "write zero_shot: []", "write finetune: null",
                 "write distance_study: null", "models[0] (osnet): test_split: false compares recipes on held-out "
                 "identities only and reads no test split: give its recipe held-out identities"):
        assert line in text
    with pytest.raises(ProfileError, match="select_on is 'test'"):
        load_profile(_profile(tmp_path, test_split=False, training={"num_val_ids": 4, "select_on": "test"}))
    with pytest.raises(ProfileError, match="test_split: must be true or false, got 'no'"):
        load_profile(_profile(tmp_path, test_split="no"))


def test_held_out_runs_are_told_so(tmp_path):
    cfg = load_profile(_profile(tmp_path, test_split=False))
    runs = plan(cfg)
    assert runs[1].parameters["test_split"] is False and runs[-1].parameters["test_split"] is False
    # without variants or seeds too, the report gets its run groups: its whole report is built from them
    assert not cfg.get("variant_profiles") and not cfg.get("seeds")
    groups = runs[-1].parameters["run_groups"]
    trains = [r for r in runs if r.stage == "10_train"]
    assert [g["runs"] for g in groups] == [[r.id] for r in trains] and all(g["variant"] is None for g in groups)


# ---------------------------------------------------------------------------------------------------------------
# the shipped sweeps
# ---------------------------------------------------------------------------------------------------------------
SWEEPS = sorted(p for p in (PARAMS_DIR / "sweeps").glob("*.yaml") if not p.name.startswith("_"))


def test_the_recipe_sweeps_are_variant_profiles_that_never_read_the_test_split():
    assert [p.stem for p in SWEEPS] == [
        "cuhk03-full-scratch", "cuhk03-osnet-full-scratch", "cuhk03-osnet-long", "cuhk03-osnet-msmt17",
        "cuhk03-osnet-speed", "cuhk03-resnet50-scratch",
        "cuhk03-scratch-neck", "cuhk03-scratch-recipe", "cuhk03-scratch-regularise", "cuhk03-scratch",
        "synthetic-osnet-bnneck",
        "synthetic-scratch"]
    assert not any("sweeps" in name for name in list_profiles())
    for path in SWEEPS:
        cfg = load_profile(path)
        assert cfg["test_split"] is False, path
        # a sweep compares recipes as variants; the long-schedule study is one recipe's curve
        assert bool(cfg.get("variant_profiles")) != (path.stem == "cuhk03-osnet-long"), path
        assert cfg["name"] == path.stem
        stages = {r.stage for r in plan(cfg)}
        assert stages == {"00_data", "10_train", "40_report"}, path
    assert load_profile("sweeps/cuhk03-scratch")["path"] == str(PARAMS_DIR / "sweeps" / "cuhk03-scratch.yaml")


def test_a_sweep_variant_keeps_the_old_sweeps_recipe():
    cfg = load_profile(PARAMS_DIR / "sweeps" / "cuhk03-osnet-msmt17.yaml")
    v = cfg["variant_profiles"]["amsgrad-1.5e-3-cos-noerase-256x128-10ep"]["models"][0]
    assert v["image_size"] == [256, 128]
    assert {k: v["train"][k] for k in ("optimizer", "lr", "scheduler", "warmup_epochs", "epochs", "num_val_ids")} == {
        "optimizer": "amsgrad", "lr": 1.5e-3, "scheduler": "cosine", "warmup_epochs": 0, "epochs": 10,
        "num_val_ids": 150}
    assert v["train"]["transforms"] == {"erasing_p": 0.0, "pad": 10}
    assert v["pretrained"].endswith("weights/osnet_x0_25_msmt17.pth")


# ---------------------------------------------------------------------------------------------------------------
# the report's tables
# ---------------------------------------------------------------------------------------------------------------
def _record(r1: float, m_ap: float) -> dict:
    return {"R1": r1, "mAP": m_ap, "ci95": {"R1": [r1 - 2, r1 + 2], "mAP": [m_ap - 1, m_ap + 1]}}


def _group(tmp_path, variant, values, stage="10_train", held_out=False, seconds=None):
    paths = []
    history = [{"epoch": 1, "val_rank1": 0.1, "val_mAP": 0.2}, {"epoch": 2, "val_rank1": 0.25, "val_mAP": 0.125}]
    if seconds:
        history = [{**h, "train_seconds": s} for h, s in zip(history, seconds)]
    for seed, (r1, m_ap) in enumerate(values):
        path = tmp_path / f"{variant}-{seed}.json"
        role = "held-out" if held_out else "test"
        path.write_text(json.dumps({"model_label": "OSNet", "dataset_label": "A",
                                    "evaluations": {role: _record(r1, m_ap)},
                                    "train": {"best_epoch": 2},
                                    "history": history}))
        paths.append(str(path))
    return {"stage": stage, "variant": variant, "model_run": "osnet", "dataset_key": "a",
            "seeds": list(range(len(values))), "runs": [f"{stage}/x{i}" for i in range(len(values))], "metrics": paths}


def test_seed_table_gives_mean_and_sample_sd_beside_the_first_seeds_interval(tmp_path):
    groups = seeds_mod.load_groups([_group(tmp_path, None, [(40.0, 30.0), (44.0, 33.0), (48.0, 27.0)])])
    row = seeds_mod.seed_table(groups).iloc[0]
    assert row["R1 / mAP [95% CI], seed 0"] == "40.0 [38.0, 42.0] / 30.0 [29.0, 31.0]"
    assert row["R1 mean ± sd"] == "44.0 ± 4.0"  # sd of 40, 44, 48 with ddof 1 = 4
    assert row["mAP mean ± sd"] == "30.0 ± 3.0"
    assert row["runs"] == "3 of 3"


def test_variant_table_names_what_each_variant_changes(tmp_path):
    groups = seeds_mod.load_groups([_group(tmp_path, None, [(40.0, 30.0)]),
                                    _group(tmp_path, "lr-high", [(50.0, 35.0)])])
    table = seeds_mod.variant_table(groups, {"lr-high": {"training": {"lr": 0.001, "transforms": {"pad": 3}}}})
    assert list(table["variant"]) == ["(profile)", "lr-high"]
    assert table["changes"][1] == "training.lr: 0.001; training.transforms.pad: 3"
    assert table["R1 / mAP [95% CI]"][1] == "50.0 [48.0, 52.0] / 35.0 [34.0, 36.0]"


def test_a_test_split_variants_table_holds_only_what_a_variant_repeats_and_lists_changes_once(tmp_path):
    (tmp_path / "v").mkdir()
    other = {**_group(tmp_path / "v", None, [(30.0, 20.0)]), "model_run": "mnv3"}  # no variant repeats it
    groups = seeds_mod.load_groups([_group(tmp_path, None, [(40.0, 30.0)]), other,
                                    _group(tmp_path, "lr-high", [(50.0, 35.0)])])
    overrides = {"lr-high": {"training": {"lr": 0.001}}}
    assert len(seeds_mod.variant_table(groups, overrides)) == 3
    table = seeds_mod.variant_table(groups, overrides, compared_only=True)
    assert [(r["variant"], r["model"]) for _, r in table.iterrows()] == [("(profile)", "OSNet"), ("lr-high", "OSNet")]
    lines = seeds_mod.report_lines(groups, overrides)
    assert "- `lr-high`: training.lr: 0.001" in lines
    assert "changes" not in next(line for line in lines if line.startswith("| variant"))


def test_held_out_variant_table_shows_the_selected_and_last_epoch(tmp_path):
    groups = seeds_mod.load_groups([_group(tmp_path, "v", [(20.0, 10.0)], held_out=True)])
    row = seeds_mod.variant_table(groups, {"v": {"training": {"lr": 1.0}}}, test_split=False).iloc[0]
    assert row["R1 / mAP [95% CI], held-out, selected epoch"].startswith("20.0 [18.0, 22.0]")
    assert row["R1 / mAP, last evaluated epoch"] == "25.0 / 12.5 (epoch 2)"
    assert row["selected epoch"] == 2
    assert row["training minutes"] == "-"  # the run recorded no epoch seconds


def test_held_out_variant_table_and_curves_count_training_minutes(tmp_path):
    import matplotlib.pyplot as plt

    timed = seeds_mod.load_groups([_group(tmp_path, "v", [(20.0, 10.0)], held_out=True, seconds=[90.0, 60.0])])
    row = seeds_mod.variant_table(timed, {"v": {"training": {"lr": 1.0}}}, test_split=False).iloc[0]
    assert row["training minutes"] == "2.5"  # (90 + 60) s
    first = timed[0]["records"][0]
    assert seeds_mod._training_minutes(first, list(first.history)) == [1.5, 2.5]
    fig = seeds_mod.plot_held_out_curves(timed)
    assert len(fig.axes) == 4 and fig.axes[2].get_xlabel().startswith("training minutes")
    assert list(fig.axes[2].lines[0].get_xdata()) == [1.5, 2.5]
    plt.close(fig)
    untimed = seeds_mod.load_groups([_group(tmp_path, "w", [(20.0, 10.0)], held_out=True)])
    fig = seeds_mod.plot_held_out_curves(untimed)
    assert len(fig.axes) == 2  # by epoch only
    plt.close(fig)


def test_separation_curves_plot_the_distance_ratio_per_recipe(tmp_path):
    import matplotlib.pyplot as plt

    def with_distances(group, pairs, norms):
        path = Path(group["metrics"][0])
        record = json.loads(path.read_text())
        record["history"] = [{**h, "dist_ap": ap, "dist_an": an, "feat_norm": n}
                             for h, (ap, an), n in zip(record["history"], pairs, norms)]
        path.write_text(json.dumps(record))
        return group

    (tmp_path / "b").mkdir()
    base = with_distances(_group(tmp_path, None, [(20.0, 10.0)], held_out=True), [(2.0, 1.0), (0.5, 0.5)], [8, 1])
    cos = with_distances(_group(tmp_path / "b", "cos", [(30.0, 20.0)], held_out=True), [(0.4, 0.2), (0.2, 0.3)],
                         [8, 4])
    fig = seeds_mod.plot_separation_curves(seeds_mod.load_groups([base, cos]))
    ratio, norm = fig.axes[0], fig.axes[1]
    drawn = [ln for ln in ratio.lines if ln.get_label() in ("the profile's recipe", "cos")]
    assert [list(ln.get_ydata()) for ln in drawn] == [[0.5, 1.0], [0.5, pytest.approx(1.5)]]  # d_an / d_ap
    assert [list(ln.get_ydata()) for ln in norm.lines] == [[8, 1], [8, 4]]
    plt.close(fig)
    assert seeds_mod.separation_figure(seeds_mod.load_groups([base]), tmp_path / "f") is None  # no recipe compared
    assert not (tmp_path / "f").exists()
    written = seeds_mod.separation_figure(seeds_mod.load_groups([base, cos]), tmp_path / "f")
    assert written == tmp_path / "f" / "separation.png" and written.is_file()
    no_distances = seeds_mod.load_groups([_group(tmp_path, "v", [(20.0, 10.0)], held_out=True)])
    assert seeds_mod.plot_separation_curves(no_distances) is None
    (tmp_path / "c").mkdir()
    alone = with_distances({**_group(tmp_path / "c", None, [(9.0, 9.0)], held_out=True), "model_run": "mnv3"},
                           [(1.0, 1.0), (1.0, 1.0)], [1, 1])  # a model no variant repeats
    fig = seeds_mod.plot_separation_curves(seeds_mod.load_groups([base, cos, alone]), compared_only=True)
    assert len(fig.axes[0].lines) == 3  # the two OSNet recipes and the line at 1
    plt.close(fig)


def test_held_out_glance_compares_recipes_within_each_model_only(tmp_path):
    (tmp_path / "o").mkdir()
    (tmp_path / "r").mkdir()
    osnet = [_group(tmp_path / "o", None, [(22.0, 21.0)], held_out=True),
             _group(tmp_path / "o", "ams", [(18.0, 20.0)], held_out=True)]
    big = {**_group(tmp_path / "r", "ams", [(29.0, 30.0)], held_out=True), "model_run": "resnet"}
    text = seeds_mod._glance(seeds_mod.load_groups([*osnet, big]))
    assert "within each model" in text
    assert "best the profile's own recipe (22.0 [20.0, 24.0] / 21.0 [20.0, 22.0]), +4.0 (no paired interval) " \
           "rank-1 points over variant ams (within noise)." in text, text
    assert "best variant ams (29.0 [27.0, 31.0] / 30.0 [29.0, 31.0]), its only recipe here." in text, text


def test_a_variant_that_has_not_run_yet_is_named_by_its_labels(tmp_path):
    datasets = {"a": TINY_A, "b": {**TINY_A, "root": "vb", "label": "Synthetic B"}}
    cfg = load_profile(_profile(tmp_path, datasets=datasets, variants={"lr-high": {"training": {"lr": 1.0e-3}}},
                                finetune={"pairs": [["a", "b"]], "models": ["osnet"], "epochs": 1}))
    report = next(r for r in plan(cfg) if r.stage == "40_report")
    groups = seeds_mod.load_groups(report.parameters["run_groups"])  # no metrics.json exists yet
    table = seeds_mod.variant_table(groups, report.parameters["variant_overrides"])
    assert set(table["model"]) == {"OSNet x0.25"}
    assert set(table["data"]) == {"Synthetic A", "Synthetic B (fine-tuned from Synthetic A)"}
    assert set(table["R1 / mAP [95% CI]"]) == {"not run"}


def test_recipes_trained_in_different_precisions_say_so_in_the_table_and_the_glance(tmp_path):
    def on_cpu(folder: str, variant, values, native_bf16: bool):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "run.json").write_text(json.dumps({"environment": {"cpu_native_bf16": native_bf16}}))
        return _group(tmp_path / folder, variant, values, held_out=True)

    overrides = {"v": {"training": {"lr": 1.0}}}
    mixed = seeds_mod.load_groups([on_cpu("a", None, [(56.0, 50.0)], True), on_cpu("b", "v", [(51.0, 44.0)], False)])
    table = seeds_mod.variant_table(mixed, overrides, test_split=False)
    assert list(table["training precision"]) == ["bf16 autocast", "fp32"]
    assert "the two trained in different precisions (bf16 autocast against fp32), so the difference mixes recipe " \
           "and precision." in seeds_mod._glance(mixed)
    same = seeds_mod.load_groups([on_cpu("c", None, [(56.0, 50.0)], False), on_cpu("d", "v", [(51.0, 44.0)], False)])
    assert "training precision" not in seeds_mod.variant_table(same, overrides, test_split=False)
    assert "precision" not in seeds_mod._glance(same)


# ---------------------------------------------------------------------------------------------------------------
# end to end
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_held_out_variant_profile_runs_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("REIDLIB_RESULTS_DIR", str(tmp_path / "results"))
    path = _profile(tmp_path, "sweep", test_split=False, seeds=[0, 1],
                    variants={"lr-high": {"training": {"lr": 1.0e-3}}})
    cfg = load_profile(path)
    pipeline.run_study(str(path))
    root = tmp_path / "results" / "sweep"
    for name in ("a-osnet", "a-osnet-seed1", "a-osnet@lr-high", "a-osnet@lr-high-seed1"):
        m = json.loads((root / "10_train" / name / "metrics.json").read_text())
        assert set(m["evaluations"]) == {"held-out"}, name
        ev = m["evaluations"]["held-out"]
        assert ev["role"] == "held-out" and ev["num_query"] == 4 and 0.0 <= ev["R1"] <= 100.0
        assert not m["features"]
        best = next(h for h in m["history"] if h["epoch"] == m["train"]["best_epoch"])
        assert ev["R1"] == pytest.approx(100 * best["val_rank1"]) and ev["mAP"] == pytest.approx(100 * best["val_mAP"])
    assert json.loads((root / "10_train" / "a-osnet-seed1" / "metrics.json").read_text())["train"]["seed"] == 1
    text = (root / "report" / "report.md").read_text()
    assert "## Held-out identities: rank-1 / mAP (%)" in text and "| lr-high |" in text and "## Seeds" in text
    assert "no test split was read" in text and (root / "report" / "figures" / "held_out_curves.png").is_file()
    assert not any(p.name == "features" for p in Path(cfg["work_dir"]).rglob("*"))


def test_a_profile_extending_another_leaves_out_a_variant_of_its_base(tmp_path):
    base = _profile(tmp_path, "base", variants={"v1": {"training": {"lr": 1.0e-3}},
                                                "v2": {"training": {"lr": 1.0e-4}}})
    keep_one = tmp_path / "keep_one.yaml"
    keep_one.write_text(f"extends: {base}\nwork_dir: {tmp_path / 'work' / 'k'}\nvariants: {{v1: null}}\n")
    assert [r.id for r in plan(load_profile(keep_one)) if r.stage == "10_train"] == ["10_train/a-osnet",
                                                                                      "10_train/a-osnet@v2"]
    none_left = tmp_path / "none_left.yaml"
    none_left.write_text(f"extends: {base}\nwork_dir: {tmp_path / 'work' / 'n'}\nvariants: {{v1: null, v2: null}}\n")
    cfg = load_profile(none_left)
    assert "variant_profiles" not in cfg and [r.id for r in plan(cfg) if r.stage == "10_train"] == ["10_train/a-osnet"]


def test_report_variant_pairs_take_a_boolean_noise_flag_and_no_other_keys(tmp_path):
    pair = {"fixed": "10_train/a-osnet", "variant": "10_train/a-osnet@v", "change": "fp32"}
    variants = {"v": {"training": {"lr": 1.0e-3}}}
    load_profile(_profile(tmp_path, "ok", variants=variants, report={"variants": [{**pair, "noise": True}]}))
    with pytest.raises(ProfileError) as err:
        load_profile(_profile(tmp_path, "bad", variants=variants,
                              report={"variants": [{**pair, "noise": "yes"}, {**pair, "nosie": True}]}))
    assert "report.variants[0].noise: must be true or false, got 'yes'" in str(err.value)
    assert "report.variants[1]" in str(err.value) and "nosie" in str(err.value), str(err.value)
