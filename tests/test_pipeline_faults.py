"""Faults of the pipeline round 2: nothing overwritten that another profile made, nothing deleted that the pipeline
did not write, no forced run passing off an old model as new, dangerous work folders refused, one run of a profile
at a time, SIGTERM handled like Ctrl-C, no kernel noise, and a work root outside the checkout."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from reidlib import pipeline
from reidlib.pipeline import ProfileError, load_profile, plan
from reidlib.pipeline.lock import LOCK_NAME, ProfileBusy, profile_lock
from reidlib.pipeline.runner import check_results_dir

REPO = pipeline.REPO_ROOT


def _profile(folder: Path, stem: str = "p", edit=None, work: bool = True) -> Path:
    """A copy of the smoke profile at ``folder/<stem>.yaml`` (its work folder under ``folder`` unless ``work`` is
    False), edited by ``edit(cfg)``."""
    cfg = yaml.safe_load((pipeline.PARAMS_DIR / "smoke.yaml").read_text())
    if work:
        cfg["work_dir"] = str(folder / "work" / stem)
    else:
        cfg.pop("work_dir", None)
    if edit:
        edit(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)


# ---- results belong to the profile file that made them --------------------------------------------------------
def test_a_copy_of_a_shipped_profile_cannot_write_into_its_committed_results(tmp_path, capsys):
    committed = REPO / "results" / "cpu-real" / "00_data" / "datasets" / "run.json"
    assert committed.is_file()  # refused whether its record names the profile file or predates that key
    copy = _profile(tmp_path / "elsewhere", "cpu-real")
    with pytest.raises(ProfileError, match=r"holds results made by params/cpu-real.yaml \(a profile shipped with "
                                           r"the study\).*add `name: my-copy` to cpu-real.yaml or rename the file"):
        check_results_dir(load_profile(copy))
    assert pipeline.main(["run", str(copy), "--only", "00_data", "--dry-run"]) == 1  # refused before anything runs
    assert "would overwrite them" in capsys.readouterr().err
    renamed = _profile(tmp_path / "elsewhere", "cpu-real", edit=lambda c: c.update(name="my-copy"))
    cfg = load_profile(renamed)
    assert cfg["name"] == "my-copy" and pipeline.results_dir(cfg) == pipeline.results_root() / "my-copy"
    check_results_dir(cfg)
    assert load_profile("cpu-real")["name"] == "cpu-real"
    check_results_dir(load_profile("cpu-real"))  # the shipped file itself still owns them


def test_results_made_by_one_file_are_refused_to_another_file_of_the_same_name(tmp_path, monkeypatch):
    monkeypatch.setenv("REIDLIB_RESULTS_DIR", str(tmp_path / "results"))
    first = load_profile(_profile(tmp_path / "a", "same"))
    run = pipeline.run_dir(first, "00_data", "datasets")
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"profile": "same", "profile_file": str(tmp_path / "a" / "same.yaml")}))
    check_results_dir(first)
    with pytest.raises(ProfileError, match=rf"holds results made by {tmp_path}/a/same.yaml \(e.g. 00_data/datasets\)"):
        check_results_dir(load_profile(_profile(tmp_path / "b", "same")))


@pytest.mark.parametrize("name", ["", "../up", "a/b", ".hidden", 3])
def test_a_bad_profile_name_is_refused(tmp_path, name):
    with pytest.raises(ProfileError, match=r"name: must be a folder name"):
        load_profile(_profile(tmp_path, edit=lambda c: c.update(name=name)))


def test_results_of_a_profile_that_is_a_file_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REIDLIB_RESULTS_DIR", str(tmp_path / "results"))
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "p").write_text("not a folder")
    assert pipeline.main(["run", str(_profile(tmp_path)), "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path}/results/p is a file; move that file away" in err and "Traceback" not in err


# ---- only what the pipeline wrote is deleted ------------------------------------------------------------------
def _fill_run_folder(work: Path) -> tuple[list[Path], list[Path]]:
    ours = [work / n for n in ("last.pt", "best.pt", "metrics.csv", "history.json", "result.json",
                               "test_metrics.json", ".last.pt.x1y2.tmp")]
    ours += [work / "features" / n for n in ("test_query.npz", "test_gallery.npz", "synth-b_query.npz")]
    theirs = [work / "my_export.onnx", work / "NOTES.md", work / "features" / "mine.txt"]
    for path in ours + theirs:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(path.name)
    return ours, theirs


def test_changed_inputs_delete_the_runs_files_and_keep_the_users(tmp_path):
    from reidlib.stages.train import prepare_work_dir

    work = tmp_path / "run"
    prepare_work_dir(work, "old-key")
    ours, theirs = _fill_run_folder(work)
    prepare_work_dir(work, "old-key")  # same inputs: an interrupted run is resumed, nothing deleted
    assert all(p.is_file() for p in ours + theirs)
    prepare_work_dir(work, "new-key")
    assert not any(p.exists() for p in ours)
    assert all(p.read_text() == p.name for p in theirs)
    assert (work / "run_key.txt").read_text() == "new-key"


def test_a_work_dir_that_is_a_file_is_refused_by_the_stage(tmp_path):
    from reidlib.stages.train import prepare_work_dir

    (tmp_path / "run").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file; move it away"):
        prepare_work_dir(tmp_path / "run", "k")


# ---- --force starts from scratch ------------------------------------------------------------------------------
def test_force_asks_every_forced_run_for_a_fresh_start(tmp_path, monkeypatch):
    monkeypatch.setenv("REIDLIB_RESULTS_DIR", str(tmp_path / "results"))
    path = _profile(tmp_path)
    calls = []

    def fake(run, cfg, log_output=False, **kw):
        calls.append((run.id, kw.get("fresh", False)))
        out = pipeline.run_dir(cfg, run.stage, run.name)
        out.mkdir(parents=True, exist_ok=True)
        return out

    monkeypatch.setattr(pipeline.runner, "execute", fake)
    pipeline.run_study(str(path), only=["10_train/synth-a-osnet_x0_25"])
    pipeline.run_study(str(path), only=["10_train/synth-a-osnet_x0_25"], force=True)
    train = [c for c in calls if c[0] == "10_train/synth-a-osnet_x0_25"]
    assert train == [("10_train/synth-a-osnet_x0_25", False), ("10_train/synth-a-osnet_x0_25", True)]
    # the data stage it reads never ran (the fake writes no record): run first both times, never forced
    assert [c for c in calls if c not in train] == [("00_data/datasets", False)] * 2


def test_a_forced_run_trains_from_epoch_0_not_from_the_finished_checkpoint(tmp_path, one_torch_thread):
    from reidlib.data import build_dataset
    from reidlib.engine import fit
    from reidlib.stages.train import prepare_work_dir

    ds = build_dataset("synthetic", tmp_path / "data", num_ids=12, num_cams=2, images_per_id_per_cam=2, height=64,
                       width=32)
    kw = dict(epochs=1, batch_size=8, num_instances=2, height=64, width=32, device="cpu", precision="fp32",
              channels_last=False, progress=False, warmup_epochs=0, milestones=(5,), num_val_ids=2,
              model_kwargs={"feature_dim": 16})
    work = prepare_work_dir(tmp_path / "run", "key")
    fit("osnet_x0_25", ds, out_dir=work, **kw)

    def starts() -> list[int]:
        return [r["start_epoch"] for r in json.loads((work / "result.json").read_text())["meta"]["runs"]]

    assert starts() == [0]
    fit("osnet_x0_25", ds, out_dir=prepare_work_dir(work, "key"), **kw)  # same key: the finished run is resumed
    assert starts() == [0, 1]
    fit("osnet_x0_25", ds, out_dir=prepare_work_dir(work, "fresh:key"), **kw)  # --force
    assert starts() == [0]
    assert (work / "run_key.txt").read_text() == "key"  # an interrupted forced run resumes itself next time



def test_a_run_cut_short_by_its_time_guard_reports_nothing_and_continues_on_rerun(tmp_path, one_torch_thread):
    """max_minutes guards a run; it never turns a shorter schedule into a reported number."""
    from reidlib.stages.train import ScheduleCut, train_and_test

    dataset = {"name": "synthetic", "root": str(tmp_path / "data"), "label": "S",
               "kwargs": {"num_ids": 12, "num_cams": 2, "images_per_id_per_cam": 2, "height": 64, "width": 32}}
    train = {"epochs": 3, "batch_size": 8, "num_instances": 2, "warmup_epochs": 0, "milestones": [5],
             "num_val_ids": 2, "select_on": "val", "max_minutes": 1e-4, "progress": False}
    kw = dict(model_name="osnet_x0_25", model_kwargs={"feature_dim": 16}, pretrained=None, dataset=dataset,
              zero_shot={}, evaluation={"max_rank": 5}, image_size=[64, 32], work_dir=str(tmp_path / "run"),
              device="cpu", precision="fp32", run_key="key")
    with pytest.raises(ScheduleCut, match=r"after epoch 1 of the planned 3 \(max_minutes=.*rerun the same command"):
        train_and_test(train=train, **kw)
    out = train_and_test(train={**train, "max_minutes": 60}, **kw)  # the guard is not part of the recipe
    starts = [r["start_epoch"] for r in json.loads((tmp_path / "run" / "result.json").read_text())["meta"]["runs"]]
    assert starts == [0, 1] and out.train_info["epochs_completed"] == 3 and not out.train_info["stopped_early"]



def test_the_time_guard_is_not_an_input_of_a_run_but_the_recipe_is(tmp_path):
    def hashes(training: dict) -> dict[str, str]:
        path = _profile(tmp_path, edit=lambda c: c["training"].update(training))
        cfg = load_profile(path)
        return {r.id: pipeline.input_hash(r, cfg) for r in pipeline.plan(cfg) if r.stage in ("10_train", "20_finetune")}

    base = hashes({})
    assert hashes({"max_minutes": 5}) == base
    assert all(a != b for a, b in zip(base.values(), hashes({"lr": 1.0e-4}).values()))


# ---- dangerous work folders ------------------------------------------------------------------------------------
@pytest.mark.parametrize("work_dir, why", [
    ("/", "the file system's root"),
    ("~", "your home folder itself"),
    ("$HOME", "your home folder itself"),
    (".", "this checkout"),
    ("..", "it holds this checkout"),
    ("work", "the work root"),
])
def test_dangerous_work_dirs_are_refused_at_load(tmp_path, monkeypatch, work_dir, why):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    with pytest.raises(ProfileError, match=rf"work_dir {'.*'}{why}.*give the profile a folder of its own"):
        load_profile(_profile(tmp_path, edit=lambda c: c.update(work_dir=work_dir)))


def test_work_dir_expands_home_and_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SCRATCH", str(tmp_path / "scratch"))
    assert load_profile(_profile(tmp_path, edit=lambda c: c.update(work_dir="~/reid-work")))["work_dir"] == \
        str(tmp_path / "home" / "reid-work")
    assert load_profile(_profile(tmp_path, edit=lambda c: c.update(work_dir="$SCRATCH/p")))["work_dir"] == \
        str(tmp_path / "scratch" / "p")
    monkeypatch.delenv("SCRATCH")
    with pytest.raises(ProfileError, match=r"work_dir '\$SCRATCH/p': the environment variable .* is not set"):
        load_profile(_profile(tmp_path, edit=lambda c: c.update(work_dir="$SCRATCH/p")))


def test_a_work_dir_that_is_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "taken").write_text("x")
    for work_dir in (tmp_path / "taken", tmp_path / "taken" / "below"):
        with pytest.raises(ProfileError, match=rf"cannot be a folder: {tmp_path / 'taken'} is a file"):
            load_profile(_profile(tmp_path, edit=lambda c, w=work_dir: c.update(work_dir=str(w))))


# ---- one run of a profile at a time -----------------------------------------------------------------------------
def test_a_second_run_of_a_running_profile_exits_at_once_naming_the_first(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REIDLIB_RESULTS_DIR", str(tmp_path / "results"))
    path = _profile(tmp_path)
    work = Path(load_profile(path)["work_dir"])
    with profile_lock(work, "p"):
        info = json.loads((work / LOCK_NAME).read_text())
        assert info["pid"] == os.getpid() and info["host"] and info["started"]
        with pytest.raises(ProfileBusy, match=rf"profile p is already running \(pid {os.getpid()} on "):
            with profile_lock(work, "p"):
                pass
        assert pipeline.main(["run", str(path), "--only", "00_data"]) == 1
        assert f"already running (pid {os.getpid()}" in capsys.readouterr().err
    assert not (work / LOCK_NAME).exists()  # released


def test_a_stale_lock_is_taken_over_with_one_line(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    dead = _dead_pid()
    (work / LOCK_NAME).write_text(json.dumps({"pid": dead, "host": "h", "started": "t", "command": "c"}))
    said = []
    with profile_lock(work, "p", say=said.append):
        assert json.loads((work / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert said == [f"note: taking over the lock of profile p left by a process that is gone (pid {dead} on h, "
                    "started t: c)"]


# ---- SIGTERM like Ctrl-C ------------------------------------------------------------------------------------------
def test_sigterm_prints_one_line_and_exits_143(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REIDLIB_RESULTS_DIR", str(tmp_path / "results"))
    path = _profile(tmp_path)

    def terminated(run, cfg, log_output=False):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
        raise AssertionError("SIGTERM was not handled")

    monkeypatch.setattr(pipeline.runner, "execute", terminated)
    before = signal.getsignal(signal.SIGTERM)
    assert pipeline.main(["run", str(path), "--only", "00_data"]) == 143
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("terminated (SIGTERM) during 00_data/datasets: its half-written")
    assert signal.getsignal(signal.SIGTERM) == before
    assert not (Path(load_profile(path)["work_dir"]) / LOCK_NAME).exists()


# ---- no kernel noise -------------------------------------------------------------------------------------------------
def test_a_finished_notebook_is_shut_down_without_an_interrupt(tmp_path):
    """jupyter_client interrupts (SIGINT to the kernel's process group) before every shutdown; a kernel caught
    inside a message handler then logs ``KeyboardInterrupt caught in kernel.``. A child of the kernel stands in
    for it here: it records any SIGINT the group gets."""
    import nbformat
    import papermill as pm

    from reidlib.pipeline.execute import _ipc_kernel_manager, kernel_env

    seen, ready = tmp_path / "sigint", tmp_path / "ready"
    child = (f"import signal, time, pathlib\n"
             f"signal.signal(signal.SIGINT, lambda *a: pathlib.Path({str(seen)!r}).write_text('x'))\n"
             f"pathlib.Path({str(ready)!r}).write_text('')\n"
             f"time.sleep(20)\n")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f"import subprocess, sys, time, os\n"
                                          f"p = subprocess.Popen([sys.executable, '-c', {child!r}])\n"
                                          f"while not os.path.exists({str(ready)!r}): time.sleep(0.05)\n"
                                          f"print(p.pid)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "in.ipynb")
    sockets = tmp_path / "s"
    sockets.mkdir()
    kernels: list = []
    pm.execute_notebook(str(tmp_path / "in.ipynb"), str(tmp_path / "out.ipynb"), kernel_name="python3",
                        progress_bar=False, kernel_manager_class=_ipc_kernel_manager(str(sockets), kernel_env(),
                                                                                     kernels))
    pid = int(nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[0].outputs[0]["text"])
    time.sleep(0.5)
    try:
        assert not seen.exists(), "the kernel's process group got a SIGINT at shutdown"
        assert len(kernels) == 1 and kernels[0].poll() is not None  # the kernel itself has exited
    finally:
        with contextlib.suppress(ProcessLookupError):  # gone already if the kernel's group was killed at shutdown
            os.kill(pid, signal.SIGKILL)


# ---- work root ----------------------------------------------------------------------------------------------------
def test_the_work_root_moves_work_folders_and_leaves_hashes_alone(tmp_path, monkeypatch):
    smoke = load_profile("smoke")
    hashes = {r.id: pipeline.input_hash(r, smoke) for r in plan(smoke)}
    monkeypatch.setenv("REIDLIB_WORK_ROOT", str(tmp_path / "scratch"))
    moved = load_profile("smoke")
    assert moved["work_dir"] == str(tmp_path / "scratch" / "smoke")
    assert all(str(REPO / "work") not in json.dumps(r.parameters) for r in plan(moved))
    assert {r.id: pipeline.input_hash(r, moved) for r in plan(moved)} == hashes
    assert load_profile(_profile(tmp_path, "mine", work=False))["work_dir"] == str(tmp_path / "scratch" / "mine")
    named = _profile(tmp_path, "named", edit=lambda c: c.update(work_dir="work/elsewhere"))
    assert load_profile(named)["work_dir"] == str(tmp_path / "scratch" / "elsewhere")


def test_records_name_work_files_by_the_work_root_and_resolve_through_it(tmp_path, monkeypatch):
    from reidlib.pipeline.execute import _scrub_tmp_paths
    from reidlib.stages.common import read_metrics

    monkeypatch.setenv("REIDLIB_WORK_ROOT", str(tmp_path / "scratch"))
    out = tmp_path / "results" / "run"
    out.mkdir(parents=True)
    ckpt = tmp_path / "scratch" / "p" / "10_train" / "r" / "best.pt"
    (out / "metrics.json").write_text(json.dumps({"checkpoint": str(ckpt), "features": {
        "test": {"query": str(ckpt.parent / "features" / "test_query.npz"), "gallery": "/abs/g.npz"}}}))
    _scrub_tmp_paths(out, out)
    recorded = json.loads((out / "metrics.json").read_text())
    assert recorded["checkpoint"] == "work/p/10_train/r/best.pt"  # what a run under work/ records: portable
    monkeypatch.setenv("REIDLIB_WORK_ROOT", str(tmp_path / "moved"))
    m = read_metrics(out / "metrics.json")
    assert m["checkpoint"] == str(tmp_path / "moved" / "p" / "10_train" / "r" / "best.pt")
    assert m["features"]["test"] == {"query": str(tmp_path / "moved/p/10_train/r/features/test_query.npz"),
                                     "gallery": "/abs/g.npz"}
    monkeypatch.delenv("REIDLIB_WORK_ROOT")
    assert read_metrics(out / "metrics.json")["checkpoint"] == str(REPO / "work/p/10_train/r/best.pt")


def test_a_relative_work_root_is_taken_from_the_callers_folder(tmp_path, monkeypatch, capsys):
    from reidlib.pipeline.execute import kernel_env

    monkeypatch.setenv("REIDLIB_CALLER_CWD", str(tmp_path))
    monkeypatch.setenv("REIDLIB_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.delenv("REIDLIB_WORK_ROOT", raising=False)
    path = _profile(tmp_path, "rel", work=False)
    assert pipeline.main(["run", str(path), "--work-root", "scratch", "--dry-run"]) == 0
    assert "REIDLIB_WORK_ROOT" not in os.environ  # the command's setting ends with it
    (tmp_path / "afile").write_text("x")
    assert pipeline.main(["run", str(path), "--work-root", "afile", "--dry-run"]) == 1
    assert f"work root {tmp_path / 'afile'} is a file" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REIDLIB_WORK_ROOT", "scratch")
    assert kernel_env()["REIDLIB_WORK_ROOT"] == str(tmp_path / "scratch")  # the kernel runs in notebooks/


@pytest.mark.slow
def test_a_terminated_run_resumes_from_its_last_epoch_under_a_moved_work_root(tmp_path):
    """SIGTERM mid-training, then the work root moved (as a fresh checkout given the same scratch folder would see
    it): the run resumes from its last saved epoch, nothing lands in the checkout's work/, and afterwards the run is
    up to date under the new work root."""
    name, EPOCHS = f"faults-{os.getpid()}", 40

    def edit(c):
        c.update(name=name, data_root=str(tmp_path / "data"), train_on=["synth-a"], zero_shot=[], finetune=None,
                 distance_study=None, models=[{"name": "osnet_x0_25", "kwargs": {"feature_dim": 16}}])
        c["datasets"] = {"synth-a": {"name": "synthetic", "root": "a", "kwargs": {
            "num_ids": 12, "num_cams": 2, "images_per_id_per_cam": 2}}}
        # enough epochs that SIGTERM, sent once the first is saved, lands mid-run on a fast quiet machine too
        c["training"].update(epochs=EPOCHS, batch_size=8, num_instances=2, num_val_ids=2, eval_every=EPOCHS,
                             milestones=[EPOCHS - 1])
    path = _profile(tmp_path, work=False, edit=edit)
    env = {**os.environ, "REIDLIB_RESULTS_DIR": str(tmp_path / "results"), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "reidlib.pipeline", "run", str(path), "--only", "10_train"]
    run_work = tmp_path / "first" / name / "10_train" / "synth-a-osnet_x0_25"
    proc = subprocess.Popen([*cmd, "--work-root", str(tmp_path / "first")], env=env, cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (run_work / "last.pt").is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    kernels = [int(p) for p in subprocess.run(["ps", "-o", "pid=", "--ppid", str(proc.pid)], capture_output=True,
                                              text=True).stdout.split()]
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.strip().splitlines() == [err.strip()] and err.strip().startswith(
        "terminated (SIGTERM) during 10_train/synth-a-osnet_x0_25"), err
    assert kernels and not any(Path(f"/proc/{k}").exists() for k in kernels), "the kernel outlived its run"
    assert not list((tmp_path / "results").rglob(".tmp-*"))
    import torch

    stopped_at = torch.load(run_work / "last.pt", map_location="cpu", weights_only=True)["epoch"]
    assert 1 <= stopped_at < EPOCHS

    (tmp_path / "first").rename(tmp_path / "second")
    done = subprocess.run([*cmd, "--work-root", str(tmp_path / "second")], env=env, cwd=REPO, text=True,
                          capture_output=True, timeout=300)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    # history.json is written just after last.pt: a stop between the two leaves it one epoch behind
    assert done.stdout.splitlines()[0] in {f"[1/1] 10_train/synth-a-osnet_x0_25: resumes from its checkpoint ({n} "
                                           f"of {EPOCHS} epochs done)" for n in (stopped_at - 1, stopped_at)}
    assert done.stdout.splitlines()[1].startswith("[1/1] 10_train/synth-a-osnet_x0_25: done in ")
    result = json.loads((tmp_path / "second" / name / "10_train" / "synth-a-osnet_x0_25" / "result.json").read_text())
    assert [r["start_epoch"] for r in result["meta"]["runs"]] == [0, stopped_at]
    metrics = json.loads((tmp_path / "results" / name / "10_train" / "synth-a-osnet_x0_25" / "metrics.json")
                         .read_text())
    assert metrics["checkpoint"].startswith(f"work/{name}/10_train/synth-a-osnet_x0_25/")
    info = json.loads((tmp_path / "results" / name / "10_train" / "synth-a-osnet_x0_25" / "run.json").read_text())
    assert info["profile_file"] == str(path) and info["command"] == f"./run_all.sh {path} --only 10_train"
    again = subprocess.run([*cmd, "--dry-run"], env={**env, "REIDLIB_WORK_ROOT": str(tmp_path / "second")},
                           cwd=REPO, text=True, capture_output=True, timeout=120)
    assert "10_train/synth-a-osnet_x0_25: up to date" in again.stdout, again.stdout + again.stderr
    assert not (REPO / "work" / name).exists()


# ---- --only names a run by id or by name, and a typo lists the profile's runs ---------------------------------
def test_only_takes_a_run_name_without_its_stage_and_names_the_runs_on_a_typo(tmp_path, capsys):
    path = _profile(tmp_path)
    assert pipeline.main(["run", str(path), "--only", "synth-a-osnet_x0_25", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "10_train/synth-a-osnet_x0_25: would run" in out and "10_train/synth-a-bot_resnet50" not in out
    assert pipeline.main(["run", str(path), "--only", "synth-a-osnet_x0_2", "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert "did you mean 'synth-a-osnet_x0_25'?" in err and "its runs: 00_data/datasets, 10_train/" in err, err


# ---- --only runs first what the chosen runs read, when that is not up to date -----------------------------------
def _statuses(monkeypatch, stale: set[str]) -> None:
    """Make every run up to date except the ids in ``stale`` (no notebook is executed in these tests)."""
    from reidlib.pipeline import runner

    monkeypatch.setattr(runner, "run_status", lambda run, cfg, needed=True: (run.id not in stale, ""))


def test_only_adds_the_inputs_that_are_not_up_to_date_and_never_for_the_report(tmp_path, monkeypatch):
    from reidlib.pipeline.runner import _select_only, _with_stale_inputs

    cfg = load_profile(_profile(tmp_path))
    everything = plan(cfg)
    chosen = _select_only(everything, ["20_finetune"])
    train_inputs = sorted({d for r in chosen for d in r.depends_on})
    assert train_inputs and all(d.startswith("10_train/") for d in train_inputs)

    _statuses(monkeypatch, {"00_data/datasets"})  # the data stage never ran: it and, after it, every input
    runs, added = _with_stale_inputs(cfg, everything, chosen)
    assert added[0] == "00_data/datasets" and sorted(added[1:]) == train_inputs  # they read what reruns
    assert [r.id for r in runs] == [r.id for r in everything if r.id in added or r in chosen]  # plan order

    _statuses(monkeypatch, {train_inputs[0]})  # one stale input: only it
    assert _with_stale_inputs(cfg, everything, chosen)[1] == [train_inputs[0]]
    _statuses(monkeypatch, set())
    assert _with_stale_inputs(cfg, everything, chosen) == (chosen, [])
    _statuses(monkeypatch, {"00_data/datasets"})  # --only 40_report gathers what is there, stale or not
    report = _select_only(everything, ["40_report"])
    assert _with_stale_inputs(cfg, everything, report) == (report, [])


def test_dry_run_says_a_run_reruns_when_its_input_reruns_before_it(tmp_path, monkeypatch, capsys):
    path = _profile(tmp_path)
    _statuses(monkeypatch, {"00_data/datasets"})
    assert pipeline.main(["run", str(path), "--only", "synth-a-osnet_x0_25", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "--only: runs first what the chosen runs read that is not up to date: 00_data/datasets"
    assert out[1] == "[1/2] 00_data/datasets: would run 00_data.ipynb"
    assert out[2] == ("[2/2] 10_train/synth-a-osnet_x0_25: would run 10_train.ipynb (00_data/datasets runs before "
                      "it and its results are this run's input)")


def test_force_with_only_forces_the_chosen_runs_not_the_inputs_it_added(tmp_path, monkeypatch, capsys):
    path = _profile(tmp_path)
    finetune = next(r for r in plan(load_profile(path)) if r.stage == "20_finetune")
    _statuses(monkeypatch, {"00_data/datasets"})
    assert pipeline.main(["run", str(path), "--only", finetune.id, "--force", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    inputs = [line for line in out[1:] if line.split()[1].rstrip(":") in finetune.depends_on]
    # an added input runs because its own input reruns (the reason shown), not because --force says so
    assert inputs and all(line.endswith("(00_data/datasets runs before it and its results are this run's input)")
                          for line in inputs)
    assert out[-2].startswith(f"[{len(out) - 2}/{len(out) - 2}] {finetune.id}: would run 20_finetune.ipynb")
    assert out[-2].endswith("20_finetune.ipynb")  # forced: no reason given
