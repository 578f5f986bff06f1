"""Profiles, the run plan and the pipeline's failure behaviour (no training here: see test_study_smoke.py)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from reidlib import pipeline
from reidlib.pipeline import ProfileError, load_profile, plan


def _write_profile(tmp_path: Path, name: str, **changes) -> Path:
    cfg = yaml.safe_load((pipeline.PARAMS_DIR / "smoke.yaml").read_text())
    for key, value in changes.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("name", pipeline.list_profiles())
def test_every_shipped_profile_loads_and_plans(name):
    cfg = load_profile(name)
    runs = plan(cfg)
    stages = [r.stage for r in runs]
    assert stages[0] == "00_data" and stages[-1] == "40_report"
    assert stages == sorted(stages), "runs must come in stage order"
    ids = [r.id for r in runs]
    assert len(ids) == len(set(ids))
    for run in runs:
        assert run.notebook.is_file(), run.notebook
        for dep in run.depends_on:
            assert ids.index(dep) < ids.index(run.id), f"{run.id} runs before its input {dep}"


@pytest.mark.parametrize("name", pipeline.list_profiles())
def test_shipped_profile_model_entries_hold_only_known_keys(name):
    raw = yaml.safe_load((pipeline.PARAMS_DIR / f"{name}.yaml").read_text())
    for i, spec in enumerate(raw["models"]):
        stray = sorted(map(str, set(spec) - pipeline.MODEL_KEYS))
        assert not stray, f"params/{name}.yaml models[{i}] has unknown key(s) {stray} (a label with a comma unquoted?)"
        assert isinstance(spec.get("label", ""), str) and spec.get("label", "").count("(") == \
            spec.get("label", "").count(")"), f"params/{name}.yaml models[{i}] label {spec.get('label')!r} looks cut"


def test_smoke_plan_has_expected_runs():
    cfg = load_profile("smoke")
    ids = [r.id for r in plan(cfg)]
    assert "10_train/synth-a-bot_resnet50" in ids
    assert "10_train/synth-b-osnet_x0_25" in ids          # per-model train_on override
    assert "10_train/synth-b-bot_resnet50" not in ids
    assert "20_finetune/synth-a-to-synth-b-osnet_x0_25" in ids
    train = next(r for r in plan(cfg) if r.id == "10_train/synth-a-osnet_x0_25")
    assert train.parameters["train"]["epochs"] == 1 and train.parameters["train"]["optimizer"] == "adam"
    assert list(train.parameters["zero_shot"]) == ["synth-b"]
    assert Path(train.parameters["dataset"]["root"]).is_absolute()


def test_placeholders_and_data_root_override(tmp_path):
    path = _write_profile(tmp_path, "p", models=[{"name": "osnet_x0_25", "pretrained": "{shared}/weights/x.pth"}])
    cfg = load_profile(path, data_root=tmp_path / "elsewhere")
    assert cfg["models"][0]["pretrained"] == str(pipeline.shared_dir() / "weights" / "x.pth")
    assert cfg["datasets"]["synth-a"]["root"] == str((tmp_path / "elsewhere" / "smoke-a").resolve())


@pytest.mark.parametrize("changes, message", [
    ({"models": None}, "lacks the required key 'models'"),
    ({"colour": 1}, "unknown key"),
    ({"train_on": ["nowhere"]}, "not under 'datasets'"),
    ({"models": [{"name": "osnet_x0_25"}, {"name": "osnet_x0_25"}]}, "share run name"),
    ({"finetune": {"pairs": [["synth-a", "mars"]], "models": []}}, "finetune.pairs"),
    ({"finetune": {"pairs": [], "models": ["resnet9000"]}}, "not a model run"),
    ({"models": [{"name": "osnet_x0_25", "image_size": [128]}]}, r"models\[0\]\.image_size: must be \[height, width\]"),
])
def test_bad_profiles_get_clear_errors(tmp_path, changes, message):
    with pytest.raises(ProfileError, match=message):
        load_profile(_write_profile(tmp_path, "bad", **changes))


def test_unknown_profile_lists_the_available_ones():
    with pytest.raises(ProfileError, match="available: .*smoke"):
        load_profile("no-such-profile")


def test_input_hash_follows_parameters(tmp_path):
    cfg = load_profile("smoke")
    run = plan(cfg)[1]
    h1 = pipeline.input_hash(run, cfg)
    run.parameters["train"]["epochs"] = 2
    assert pipeline.input_hash(run, cfg) != h1


def test_model_image_size_overrides_the_profile_for_its_training_and_finetune_runs(tmp_path):
    models = [{"name": "osnet_x0_25", "image_size": [96, 48]}, {"name": "bot_resnet50"}]
    cfg = load_profile(_write_profile(tmp_path, "p", models=models,
                                      finetune={"pairs": [["synth-a", "synth-b"]], "models": ["osnet_x0_25"]}))
    sizes = {r.id: r.parameters["image_size"] for r in plan(cfg) if r.stage in ("10_train", "20_finetune")}
    assert sizes["10_train/synth-a-osnet_x0_25"] == [96, 48]
    assert sizes["20_finetune/synth-a-to-synth-b-osnet_x0_25"] == [96, 48]
    assert sizes["10_train/synth-a-bot_resnet50"] == cfg["image_size"]


def test_a_model_entry_with_an_unknown_key_is_rejected(tmp_path):
    # what an unquoted flow-style label with a comma turns into: a cut label and a stray null key
    cfg = yaml.safe_load((pipeline.PARAMS_DIR / "smoke.yaml").read_text())
    cfg["models"][0] = yaml.safe_load("{name: osnet_x0_25, label: OSNet (baseline, scratch)}")
    path = tmp_path / "comma.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ProfileError, match=r"models\[0\]: unknown key 'scratch\)'"):
        load_profile(path)


def test_a_run_hashes_its_own_model_family_and_never_the_runner():
    root = pipeline.REPO_ROOT / "reidlib"
    osnet = pipeline.library_files("10_train", "osnet_x0_25")
    assert root / "models" / "osnet.py" in osnet and root / "models" / "base.py" in osnet
    assert root / "models" / "mnv3_siamese.py" not in osnet and root / "models" / "bot_resnet50.py" not in osnet
    assert root / "models" / "mnv3_siamese.py" in pipeline.library_files("10_train", "no_such_model")
    for stage in pipeline.STAGES:
        assert not any((root / "pipeline") in p.parents for p in pipeline.library_files(stage)), stage
    runs = {r.id: r for r in plan(load_profile("smoke"))}
    assert runs["10_train/synth-a-osnet_x0_25"].model_name == "osnet_x0_25"
    assert runs["20_finetune/synth-a-to-synth-b-osnet_x0_25"].model_name == "osnet_x0_25"


@pytest.mark.parametrize("module, stages", [
    ("stages/distance.py", {"30_distance_study", "40_report"}),
    ("stages/report.py", {"40_report"}),
    ("stages/train.py", {"10_train", "20_finetune"}),
    ("stages/data.py", {"00_data"}),
    ("engine/trainer.py", {"10_train", "20_finetune"}),
    ("evaluation/rank.py", set(pipeline.STAGES)),
])
def test_a_stage_hashes_only_the_code_it_imports(module, stages):
    path = pipeline.REPO_ROOT / "reidlib" / module
    assert path.is_file()
    hashed_by = {s for s in pipeline.STAGES if path in pipeline.library_files(s)}
    assert hashed_by == stages


def test_import_closure_follows_imports_inside_functions(tmp_path):
    # stages/report.py imports reidlib.plots.plot_cmc inside a function only
    files = pipeline.import_closure({"reidlib.stages.report"})
    assert pipeline.REPO_ROOT / "reidlib" / "plots.py" in files
    assert pipeline.REPO_ROOT / "reidlib" / "__init__.py" in files  # parents run on the way
    assert pipeline.REPO_ROOT / "reidlib" / "engine" / "trainer.py" not in files


def test_recorded_parameters_name_no_machine_folder(tmp_path):
    value = {"a": [str(pipeline.REPO_ROOT / "work" / "x"), str(pipeline.shared_dir() / "data")], "n": 3}
    assert pipeline.portable(value) == {"a": ["{repo}/work/x", "{shared}/data"], "n": 3}
    cfg = load_profile("smoke")
    run = plan(cfg)[1]
    assert "{repo}" in json.dumps(pipeline.portable(run.parameters))
    assert str(pipeline.REPO_ROOT) not in json.dumps(pipeline.portable(run.parameters))


def test_read_metrics_resolves_repo_relative_paths(tmp_path):
    from reidlib.stages.common import read_metrics

    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"checkpoint": "work/p/best.pt", "features": {"test": {"query": "/abs/q.npz",
                                                                                      "gallery": "work/p/g.npz"}}}))
    m = read_metrics(path)
    assert m["checkpoint"] == str(pipeline.REPO_ROOT / "work" / "p" / "best.pt")
    assert m["features"]["test"] == {"query": "/abs/q.npz", "gallery": str(pipeline.REPO_ROOT / "work/p/g.npz")}


def test_failed_stage_leaves_results_untouched_and_names_the_notebook(tmp_path, monkeypatch):
    monkeypatch.setenv("REIDLIB_RESULTS_DIR", str(tmp_path / "results"))
    datasets = {"broken": {"name": "folder", "root": str(tmp_path / "missing-dataset")}}
    path = _write_profile(tmp_path, "broken", datasets=datasets, train_on=["broken"], zero_shot=[],
                          models=[{"name": "osnet_x0_25"}],
                          finetune=None, work_dir=str(tmp_path / "work"))
    with pytest.raises(pipeline.StageFailed) as err:
        pipeline.run_study(str(path), only=["00_data"])
    failed = tmp_path / "work" / "failed" / "00_data" / "datasets.ipynb"
    assert str(failed) in str(err.value)
    assert failed.is_file()
    nb = json.loads(failed.read_text())
    assert any("missing-dataset" in json.dumps(c.get("outputs", [])) for c in nb["cells"])
    results = tmp_path / "results" / "broken"
    assert not (results / "00_data" / "datasets").exists()
    assert not any(p.name.startswith(".tmp-") for p in results.rglob("*"))


def test_the_report_is_told_which_runs_are_stale(tmp_path, monkeypatch):
    monkeypatch.setenv("REIDLIB_RESULTS_DIR", str(tmp_path / "results"))
    cfg = load_profile(_write_profile(tmp_path, "stale", work_dir=str(tmp_path / "work")))
    runs = pipeline.with_stale_runs(plan(cfg), cfg)
    report = runs[-1]
    upstream = [r.id for r in runs[:-1]]
    assert report.stage == "40_report" and report.parameters["stale_runs"] == upstream  # nothing has run yet
    data = runs[0]  # pretend 00_data ran with today's inputs
    out = pipeline.run_dir(cfg, data.stage, data.name)
    out.mkdir(parents=True)
    (out / "run.json").write_text(json.dumps({"input_hash": pipeline.input_hash(data, cfg)}))
    assert pipeline.with_stale_runs(plan(cfg), cfg)[-1].parameters["stale_runs"] == upstream[1:]
    (out / "run.json").write_text(json.dumps({"input_hash": "made by other code"}))
    assert pipeline.with_stale_runs(plan(cfg), cfg)[-1].parameters["stale_runs"] == upstream


def test_cli_reports_profile_errors(capsys):
    assert pipeline.main(["run", "no-such-profile"]) == 1
    assert "available" in capsys.readouterr().err


def test_cpu_real_profile_points_at_shared_data_and_weights():
    cfg = load_profile("cpu-real")
    assert cfg["data_root"] == str(pipeline.shared_dir() / "data")
    assert cfg["datasets"]["cuhk03"]["root"] == str(pipeline.shared_dir() / "data" / "cuhk03-np-detected")
    ref = next(m for m in cfg["models"] if m["run"] == "osnet_x0_25_market_ref")
    assert ref["pretrained"].endswith("weights/osnet_x0_25_market1501.pth") and ref["train"]["epochs"] == 0
    assert cfg["real_data"] is True


def test_remove_orphans_cleans_up_after_a_killed_run_only(tmp_path):
    import os
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()  # a pid that has exited
    final = tmp_path / "10_train" / "d-osnet"
    (tmp_path / "10_train").mkdir()
    half = tmp_path / "10_train" / f".tmp-d-osnet-{dead}"
    live = tmp_path / "10_train" / f".tmp-d-osnet-{os.getpid()}"
    old = tmp_path / "10_train" / f".old-d-osnet-{dead}"
    other = tmp_path / "10_train" / f".tmp-d-osnet_x-{dead}"
    for folder in (half, live, old, other):
        folder.mkdir()
    (old / "metrics.json").write_text("{}")
    assert set(pipeline.remove_orphans(final)) == {half, old}
    assert not half.exists() and live.exists() and other.exists()
    assert (final / "metrics.json").is_file()  # the set-aside previous result is back in place
    (tmp_path / "10_train" / f".old-d-osnet-{dead}").mkdir()
    pipeline.remove_orphans(final)  # now final exists: the leftover is deleted, final kept
    assert not (tmp_path / "10_train" / f".old-d-osnet-{dead}").exists() and (final / "metrics.json").is_file()
