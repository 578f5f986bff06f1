"""Bad input, as a careless user would give it: every mistake is caught before work is wasted, with its cause
and its fix named (one test per row of the README's "Bad input" table; weights rows are in test_models_weights)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from reidlib import pipeline
from reidlib.pipeline import ProfileError, load_profile, plan


def _profile(tmp_path: Path, name: str = "p", edit=None) -> Path:
    cfg = yaml.safe_load((pipeline.PARAMS_DIR / "smoke.yaml").read_text())
    cfg["work_dir"] = str(tmp_path / "work" / name)
    if edit:
        edit(cfg)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _raw_profile(tmp_path: Path, text_edit) -> Path:
    """A profile whose YAML text is edited (to keep what YAML itself would read, e.g. ``1e-3`` as a string)."""
    text = (pipeline.PARAMS_DIR / "smoke.yaml").read_text()
    path = tmp_path / "raw.yaml"
    path.write_text(text_edit(text) + f"\nwork_dir: {tmp_path / 'work' / 'raw'}\n")
    return path


# row 1 ----------------------------------------------------------------------------------------------------------
def test_a_typo_in_a_training_key_is_refused_with_a_suggestion(tmp_path):
    path = _profile(tmp_path, edit=lambda c: c["training"].update(epoch=1))
    with pytest.raises(ProfileError, match=r"training: unknown key 'epoch'; did you mean 'epochs'\?"):
        load_profile(path)


def test_training_keys_are_derived_from_train_config():
    import dataclasses

    from reidlib.engine.config import TrainConfig

    keys = pipeline.training_keys()
    for f in dataclasses.fields(TrainConfig):
        assert (f.name in keys) != (f.name in pipeline.schema.SET_BY_PIPELINE), f.name


# row 2 ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("edit, message", [
    (lambda c: c["evaluation"].update(metrc="cosine"), r"evaluation: unknown key 'metrc'; did you mean 'metric'\?"),
    (lambda c: c["datasets"]["synth-a"].update(kwarg={}),
     r"datasets.synth-a: unknown key 'kwarg'; did you mean 'kwargs'"),
    (lambda c: c["evaluation"].update(rerank="ture"), r"evaluation.rerank: must be false, true, .* got 'ture'"),
    (lambda c: c["datasets"]["synth-a"]["kwargs"].update(num_idz=3), r"datasets.synth-a.kwargs: unknown key 'num_idz'"),
    (lambda c: c["models"][0].update(kwargs={"neck_fet": "after"}), r"models\[0\].kwargs: unknown key 'neck_fet'"),
    (lambda c: c.update(distance_study={"metrics": ["cosine", "hamming"]}),
     r"distance_study.metrics\[1\]: unknown value 'hamming'"),
    (lambda c: c["evaluation"].update(flip="yes"), r"evaluation.flip: must be true or false, got 'yes'"),
])
def test_unknown_keys_and_values_are_refused_in_every_block(tmp_path, edit, message):
    with pytest.raises(ProfileError, match=message):
        load_profile(_profile(tmp_path, edit=edit))


def test_dry_run_checks_the_profile_too(tmp_path, capsys):
    path = _profile(tmp_path, edit=lambda c: c["evaluation"].update(metrc="cosine"))
    assert pipeline.main(["run", str(path), "--dry-run"]) == 1
    assert "did you mean 'metric'" in capsys.readouterr().err


def test_every_problem_is_listed_at_once(tmp_path):
    def edit(c):
        c["training"].update(epoch=1, lr="fast")
        c["evaluation"].update(metrc="cosine")
    with pytest.raises(ProfileError, match=r"3 problem\(s\)") as err:
        load_profile(_profile(tmp_path, edit=edit))
    assert "'epoch'" in str(err.value) and "'fast'" in str(err.value) and "'metrc'" in str(err.value)


# row 3 ----------------------------------------------------------------------------------------------------------
def test_yaml_exponent_without_a_dot_is_read_as_a_number(tmp_path):
    path = _raw_profile(tmp_path, lambda t: t.replace("lr: 3.5e-4", "lr: 1e-3"))
    assert isinstance(yaml.safe_load(path.read_text())["training"]["lr"], str)  # what YAML 1.1 gives
    cfg = load_profile(path)
    assert cfg["training"]["lr"] == pytest.approx(1e-3)
    assert all(m["train"]["lr"] == pytest.approx(1e-3) for m in cfg["models"])


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["training"].update(lr="fast"), r"training.lr: must be a number, got 'fast'"),
    (lambda c: c["training"].update(batch_size="16"),
     r"training.batch_size: must be an integer, got the string '16' \(remove the quotes\)"),
    (lambda c: c["training"].update(batch_size=18), r"batch_size \(18\) must be a multiple of num_instances"),
    (lambda c: c.update(image_size=[64, 32]) or c["training"].update(low_res_epochs=2, low_res_size=[96, 48]),
     r"low_res_size .* at most the input size 64x32 pixels, got \[96, 48\]"),
])
def test_wrong_types_name_the_key(tmp_path, edit, message):
    with pytest.raises(ProfileError, match=message):
        load_profile(_profile(tmp_path, edit=edit))


# row 4 ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("edit, message", [
    (lambda c: c["training"].update(lr=-3.5e-4), r"training.lr: must be > 0, got -0.00035"),
    (lambda c: c.update(precision="bf61"), r"precision: unknown value 'bf61'; did you mean 'bf16'\?"),
    (lambda c: c["training"].update(transforms={"flip": 0.5}),
     r"training.transforms: unknown key 'flip'; did you mean 'flip_p'\?"),
    (lambda c: c["training"].update(transforms={"erasing_p": 1.5}),
     r"training.transforms.erasing_p: must be between 0 and 1"),
    (lambda c: c["training"].update(epochs=-1), r"training.epochs: must be >= 0"),
    (lambda c: c["training"].update(optimizer="adma"),
     r"training.optimizer: unknown value 'adma'; did you mean 'adam'\?"),
    (lambda c: c.update(device="gpu"), r"device: must be auto, cpu, cuda or cuda:N"),
])
def test_out_of_range_values_fail_at_load_time(tmp_path, edit, message):
    with pytest.raises(ProfileError, match=message):
        load_profile(_profile(tmp_path, edit=edit))


def test_report_ranking_and_variants_must_name_runs_of_the_profile(tmp_path):
    def bad_type(c):
        c["report"] = {"ranking": "10_train/x", "variants": [{"fixed": "10_train/x"}]}
    with pytest.raises(ProfileError, match=r"report.ranking: must be a list of run ids") as err:
        load_profile(_profile(tmp_path, edit=bad_type))
    assert "report.variants[0]: must be a mapping" in str(err.value)

    cfg = load_profile(_profile(tmp_path, "q", edit=lambda c: c.update(report={"ranking": ["10_train/nope"]})))
    with pytest.raises(ProfileError, match=r"report.ranking/variants/references name \['10_train/nope'\], which "
                                           r"this profile does not run; its training runs are \['10_train/"):
        plan(cfg)


# row 5 ----------------------------------------------------------------------------------------------------------
def test_a_failed_stage_shows_the_whole_error_on_the_console(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REIDLIB_RESULTS_DIR", str(tmp_path / "results"))
    missing = tmp_path / "no-such-dir"
    path = _profile(tmp_path, edit=lambda c: c.update(
        datasets={"real": {"name": "folder", "root": str(missing)}}, train_on=["real"], zero_shot=[],
        finetune=None, models=[{"name": "osnet_x0_25"}]))
    assert pipeline.main(["run", str(path), "--only", "00_data"]) == 1
    err = capsys.readouterr().err
    assert str(missing) in err, err            # the missing folder, not only the last line
    assert "bounding_box_train" in err        # the layout to create
    assert "executed notebook with the error" in err


# row 6 ----------------------------------------------------------------------------------------------------------
def test_a_run_whose_work_files_are_gone_is_not_up_to_date(tmp_path, monkeypatch):
    monkeypatch.setenv("REIDLIB_RESULTS_DIR", str(tmp_path / "results"))
    cfg = load_profile(_profile(tmp_path))
    run = next(r for r in plan(cfg) if r.stage == "10_train")
    out = pipeline.run_dir(cfg, run.stage, run.name)
    out.mkdir(parents=True)
    feats = tmp_path / "work" / "f.npz"
    (out / "metrics.json").write_text(json.dumps({"checkpoint": str(tmp_path / "work" / "best.pt"),
                                                  "features": {"test": {"query": str(feats), "gallery": str(feats)}}}))
    (out / "run.json").write_text(json.dumps({"input_hash": pipeline.input_hash(run, cfg)}))
    assert pipeline.is_current(run, cfg)
    assert not pipeline.is_up_to_date(run, cfg)
    assert pipeline.missing_artefacts(run, cfg)[0].endswith("best.pt")
    (tmp_path / "work").mkdir(exist_ok=True)
    torch.save({"model": {}}, tmp_path / "work" / "best.pt")  # files that can be read (unreadable ones: row 6b)
    np.savez(feats, feats=np.zeros((1, 2)))
    assert pipeline.is_up_to_date(run, cfg)


def test_dry_run_says_why_a_run_with_lost_work_files_reruns(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REIDLIB_RESULTS_DIR", str(tmp_path / "results"))
    path = _profile(tmp_path)
    cfg = load_profile(path)
    run = next(r for r in plan(cfg) if r.stage == "10_train")
    out = pipeline.run_dir(cfg, run.stage, run.name)
    out.mkdir(parents=True)
    (out / "metrics.json").write_text(json.dumps({"checkpoint": str(tmp_path / "gone.pt")}))
    (out / "run.json").write_text(json.dumps({"input_hash": pipeline.input_hash(run, cfg)}))
    pipeline.run_study(str(path), dry_run=True)
    assert f"{run.id}: would run 10_train.ipynb (its work files are gone, e.g. {tmp_path / 'gone.pt'})" \
        in capsys.readouterr().out


def test_dry_run_says_how_far_an_interrupted_run_got(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REIDLIB_RESULTS_DIR", str(tmp_path / "results"))
    path = _profile(tmp_path)
    cfg = load_profile(path)
    run = next(r for r in plan(cfg) if r.stage == "10_train")
    work = Path(run.parameters["work_dir"])
    work.mkdir(parents=True)
    (work / "last.pt").write_bytes(b"")
    (work / "history.json").write_text(json.dumps([{"epoch": 1}, {"epoch": 2}]))
    (work / "run_key.txt").write_text("the key of other inputs")
    assert pipeline.provenance.resume_point(run, cfg) is None  # those files are discarded, the run starts afresh
    (work / "run_key.txt").write_text(pipeline.input_hash(run, cfg))
    planned = run.parameters["train"]["epochs"]
    assert pipeline.provenance.resume_point(run, cfg) == (2, planned)
    pipeline.run_study(str(path), dry_run=True)
    assert f"{run.id}: would run 10_train.ipynb; resumes from its checkpoint (2 of {planned} epochs done)" \
        in capsys.readouterr().out
    (work / "history.json").write_text("[]")
    assert pipeline.provenance.resume_point(run, cfg) is None


def test_a_run_begun_in_another_precision_is_not_resumed_here(tmp_path, monkeypatch, capsys):
    import torch

    from reidlib.engine.checkpoint import save_checkpoint
    from reidlib.runtime import resolve_precision

    monkeypatch.setenv("REIDLIB_RESULTS_DIR", str(tmp_path / "results"))
    path = _profile(tmp_path)
    cfg = load_profile(path)
    run = next(r for r in plan(cfg) if r.stage == "10_train")
    assert run.parameters["precision"] == "auto"
    here = resolve_precision("auto", torch.device("cpu"))
    other = "bf16" if here == "fp32" else "fp32"
    work = Path(run.parameters["work_dir"])
    work.mkdir(parents=True)
    (work / "history.json").write_text(json.dumps([{"epoch": 1}, {"epoch": 2}, {"epoch": 3}]))
    (work / "run_key.txt").write_text(pipeline.input_hash(run, cfg))
    planned = run.parameters["train"]["epochs"]
    save_checkpoint({"model": {}, "meta": {"runs": [{"precision": here}]}}, work / "last.pt")
    resumes = pipeline.provenance.resume_point(run, cfg)
    assert resumes == (3, planned)
    assert pipeline.provenance.began_in_other_precision(run, resumes) is None  # same arithmetic: it resumes
    save_checkpoint({"model": {}, "meta": {"runs": [{"precision": other}]}}, work / "last.pt")
    problem = pipeline.provenance.began_in_other_precision(run, resumes)
    assert problem == (f"{run.id} trained its first 3 of {planned} epochs in {other}, but precision 'auto' means "
                       f"{here} on this machine, so resuming would train the rest in another arithmetic. Resume it "
                       f"on a machine of the kind it began on, start it afresh here (--force --only {run.id}), or "
                       f"set `precision: fp32` in the profile so that every machine trains alike (that starts it "
                       f"afresh once).")
    pipeline.run_study(str(path), dry_run=True)
    assert (f"{run.id}: would run 10_train.ipynb; resumes from its checkpoint (3 of {planned} epochs done); "
            f"refused on this machine: {problem}") in capsys.readouterr().out


def test_two_profiles_sharing_a_work_dir_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("REIDLIB_RESULTS_DIR", str(tmp_path / "results"))
    first = _profile(tmp_path, "first")
    second = _profile(tmp_path, "second", edit=lambda c: c.update(work_dir=str(tmp_path / "work" / "first")))
    pipeline.runner.check_work_dir(load_profile(first))
    with pytest.raises(ProfileError, match=r"belongs to profile .*first.yaml; give .*second.yaml its own work_dir"):
        pipeline.runner.check_work_dir(load_profile(second))


def test_distance_study_names_the_training_run_to_redo_when_features_are_gone(tmp_path):
    from reidlib.stages.distance import distance_study

    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"dataset_key": "d", "model_run": "m", "model_label": "M", "dataset_label": "D",
                                   "features": {"test": {"query": str(tmp_path / "q.npz"),
                                                         "gallery": str(tmp_path / "g.npz")}}}))
    with pytest.raises(FileNotFoundError, match=r"rerun 10_train/d-m"):
        distance_study([str(metrics)], metrics=["cosine"], normalize=[True], rerank=False)


# row 9 ----------------------------------------------------------------------------------------------------------
def test_image_check_reports_every_bad_file_and_caches_good_ones(tmp_path, tiny_market):
    import shutil

    from reidlib.data import build_dataset
    from reidlib.data.base import ImageReadError
    from reidlib.stages.data import check_images

    root = tmp_path / "market"
    shutil.copytree(tiny_market, root)
    ds = build_dataset("folder", root)
    table = check_images({"m": ds}, cache_dir=tmp_path / "cache")
    assert table.loc["m", "decoded now"] == table.loc["m", "images"] > 0
    again = check_images({"m": ds}, cache_dir=tmp_path / "cache")
    assert again.loc["m", "decoded now"] == 0  # cached by size and mtime
    bad = [Path(ds.gallery[0][0]), Path(ds.query[0][0])]
    for p in bad:
        p.write_bytes(b"not a jpeg")
    with pytest.raises(ImageReadError, match="2 unreadable image") as err:
        check_images({"m": build_dataset("folder", root)}, cache_dir=tmp_path / "cache")
    assert all(str(p) in str(err.value) for p in bad)


# row 10 ---------------------------------------------------------------------------------------------------------
def test_command_line_paths_resolve_against_the_callers_folder(tmp_path, monkeypatch, capsys):
    elsewhere = tmp_path / "caller"
    (elsewhere / "prof").mkdir(parents=True)
    path = _profile(elsewhere / "prof", "x")
    monkeypatch.setenv("REIDLIB_CALLER_CWD", str(elsewhere))
    monkeypatch.setenv("REIDLIB_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.chdir(pipeline.REPO_ROOT)
    assert pipeline.main(["run", "prof/x.yaml", "--data-root", "mydata", "--dry-run"]) == 0
    cfg = load_profile("prof/x.yaml", data_root="mydata", cwd=elsewhere)
    assert cfg["path"] == str(path)
    assert cfg["data_root"] == str((elsewhere / "mydata").resolve())


# row 11 ---------------------------------------------------------------------------------------------------------
def test_crash_leftovers_are_cleaned_by_the_next_run_whatever_it_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("REIDLIB_RESULTS_DIR", str(tmp_path / "results"))
    cfg = load_profile(_profile(tmp_path))
    runs = plan(cfg)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    stage = pipeline.results_dir(cfg) / "10_train"
    half = stage / f".tmp-synth-a-osnet_x0_25-{dead}"
    half.mkdir(parents=True)
    empty = pipeline.results_dir(cfg) / "20_finetune"
    empty.mkdir(parents=True)
    done = pipeline.run_dir(cfg, "30_distance_study", "all")
    done.mkdir(parents=True)
    failed = Path(cfg["work_dir"]) / "failed" / "30_distance_study" / "all.ipynb"
    failed.parent.mkdir(parents=True)
    failed.write_text("{}")
    os.utime(failed, (1, 1))
    (done / "run.json").write_text("{}")  # succeeded after that failure
    still_failing = Path(cfg["work_dir"]) / "failed" / "40_report" / "report.ipynb"
    still_failing.parent.mkdir(parents=True)
    still_failing.write_text("{}")
    removed = pipeline.clean_leftovers(cfg, runs)
    assert not half.exists() and not empty.exists() and not failed.exists()
    assert still_failing.exists()  # its run never succeeded: the notebook showing the error stays
    assert set(removed) >= {half, empty, failed}


# row 12 ---------------------------------------------------------------------------------------------------------
def test_ctrl_c_prints_one_line_saying_what_was_kept(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REIDLIB_RESULTS_DIR", str(tmp_path / "results"))
    path = _profile(tmp_path)

    def interrupted(run, cfg, log_output=False):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline.runner, "execute", interrupted)
    assert pipeline.main(["run", str(path), "--only", "00_data"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "interrupted during 00_data/datasets" in err[0] and "discarded" in err[0]


# row 13 ---------------------------------------------------------------------------------------------------------
def test_the_kernel_imports_this_checkouts_reidlib(monkeypatch):
    from reidlib.pipeline.execute import kernel_env

    monkeypatch.setenv("PYTHONPATH", "/some/other/checkout")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    env = kernel_env()
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(pipeline.REPO_ROOT)
    assert env["REIDLIB_PROGRESS"] == "lines" and "MPLBACKEND" not in env
    code = "import reidlib, sys; print(reidlib.__file__)"
    other = subprocess.run([sys.executable, "-c", code], env=env, cwd="/", capture_output=True, text=True, check=True)
    assert other.stdout.strip() == str(pipeline.REPO_ROOT / "reidlib" / "__init__.py")


def test_the_kernel_gets_its_environment_and_the_runner_keeps_its_own(tmp_path, monkeypatch):
    import nbformat
    import papermill as pm

    from reidlib.pipeline.execute import _ipc_kernel_manager, kernel_env

    monkeypatch.setenv("MPLBACKEND", "Agg")
    before = dict(os.environ)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import os, reidlib\n"
                                          "print(os.environ.get('REIDLIB_PROGRESS'), os.environ.get('MPLBACKEND'),"
                                          " reidlib.__file__)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    src, out = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    nbformat.write(nb, src)
    sockets = tmp_path / "sockets"
    sockets.mkdir()
    pm.execute_notebook(str(src), str(out), kernel_name="python3", progress_bar=False, cwd=str(tmp_path),
                        kernel_manager_class=_ipc_kernel_manager(str(sockets), kernel_env()))
    printed = nbformat.read(out, as_version=4).cells[0].outputs[0]["text"].split()
    # the parent's MPLBACKEND=Agg did not leak: the kernel chose its inline backend, so figures show inline
    assert printed == ["lines", "module://matplotlib_inline.backend_inline",
                       str(pipeline.REPO_ROOT / "reidlib" / "__init__.py")]
    assert dict(os.environ) == before  # the runner's own environment was never touched
