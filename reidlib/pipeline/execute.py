"""Executing runs: one notebook through papermill into a temporary folder, renamed into place on success.

Each run executes ``notebooks/<stage>.ipynb`` into ``results/<profile>/<stage>/.tmp-<run>-<pid>/``; only a
notebook that finished and wrote its ``metrics.json`` is renamed to ``results/<profile>/<stage>/<run>/``.
The kernel gets the environment a reader's notebook should have been made in:

* ``PYTHONPATH`` starts with this checkout, so the kernel imports *this* ``reidlib`` whatever env runs it;
* ``REIDLIB_PROGRESS=lines``: one line per epoch instead of progress-bar redraws in the stored outputs;
* no ``MPLBACKEND``, so figures are drawn by the notebook's inline backend;
* a kernel connected over local IPC sockets (not TCP), which keeps the kernel's transport warning off the console;
* a kernel shut down without the interrupt (SIGINT) jupyter_client sends first by default: a kernel that is
  still inside a message handler logs that interrupt as ``KeyboardInterrupt caught in kernel.`` on the console.
  A run stopped by Ctrl-C or SIGTERM kills its kernel's process group instead (its output is discarded anyway).

Leftovers of a crash (``.tmp-*``/``.old-*`` folders of dead processes, empty stage folders, executed notebooks of
failures that have since succeeded) are removed by :func:`clean_leftovers` at the start of every run of the profile.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

import yaml

from reidlib.io import write_json
from reidlib.paths import NOTEBOOKS_DIR, PARAMS_DIR, REPO_ROOT, WORK_PREFIX, shared_dir, work_root
from reidlib.stages.ids import REPORT_STAGE

from .plan import STAGES, Run, results_dir, run_dir
from .provenance import data_fingerprints, environment_info, git_commit, hash_and_digests, portable


class StageFailed(RuntimeError):
    """A notebook raised; the message carries the whole error and names the executed notebook that shows it."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_orphans(final: Path) -> list[Path]:
    """Clean up after a pipeline process killed while executing the run that ends in ``final``.

    Its half-written ``.tmp-<run>-<pid>`` folder is deleted; its ``.old-<run>-<pid>`` (the previous result, set aside
    for the swap) is moved back to ``final`` if nothing took its place, else deleted. Only folders whose pid is no
    longer alive are touched. Returns the folders removed or restored.
    """
    touched = []
    for folder in sorted(final.parent.glob(f".tmp-{final.name}-*")) + sorted(final.parent.glob(f".old-{final.name}-*")):
        pid = folder.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or _pid_alive(int(pid)):
            continue
        if folder.name.startswith(".old-") and not final.exists():
            folder.rename(final)
        else:
            shutil.rmtree(folder, ignore_errors=True)
        touched.append(folder)
    return touched


def clean_leftovers(cfg: dict, runs: list[Run]) -> list[Path]:
    """Remove what crashed runs of this profile left behind, whatever is about to run.

    * ``.tmp-*``/``.old-*`` folders of dead processes in every stage folder (:func:`remove_orphans`);
    * empty stage folders under ``results/<profile>/``;
    * ``work/<profile>/failed/<stage>/<run>.ipynb`` of runs that have succeeded since (their ``run.json`` is newer).
    """
    touched: list[Path] = []
    root = results_dir(cfg)
    for stage in STAGES:
        folder = root / ("report" if stage == REPORT_STAGE else stage)
        parent = folder.parent if stage == REPORT_STAGE else folder
        if not parent.is_dir():
            continue
        names = {p.name.split("-", 1)[1].rsplit("-", 1)[0] for p in parent.glob(".tmp-*")} | \
                {p.name.split("-", 1)[1].rsplit("-", 1)[0] for p in parent.glob(".old-*")}
        for name in sorted(names):
            touched += remove_orphans(parent / name)
        if stage != REPORT_STAGE and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            touched.append(folder)
    failed_root = Path(cfg["work_dir"]) / "failed"
    for run in runs:
        failed = failed_root / run.stage / f"{run.name}.ipynb"
        info = run_dir(cfg, run.stage, run.name) / "run.json"
        if failed.is_file() and info.is_file() and info.stat().st_mtime > failed.stat().st_mtime:
            failed.unlink()
            touched.append(failed)
    return touched


def kernel_env() -> dict[str, str]:
    """The environment of a notebook kernel started by the pipeline (see the module docstring)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["REIDLIB_PROGRESS"] = "lines"
    env["HF_HUB_OFFLINE"] = env.get("HF_HUB_OFFLINE", "1")
    env.pop("MPLBACKEND", None)
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"  # the debugger's frozen-modules note is noise in a stored notebook
    if env.get("REIDLIB_WORK_ROOT"):  # absolute: the kernel runs in notebooks/
        env["REIDLIB_WORK_ROOT"] = str(work_root())
    return env


def _ipc_kernel_manager(socket_dir: str, env: dict[str, str], started: list | None = None,
                        stderr: IO[bytes] | None = None):
    """A kernel manager class whose kernels talk over IPC sockets in ``socket_dir`` and start with ``env``
    (papermill offers no way to hand the kernel an environment; this process's own is left alone).

    Its shutdown skips jupyter_client's leading interrupt (see the module docstring). Each started kernel's
    process is appended to ``started`` (for :func:`stop_kernels`). ``stderr``: an open file the kernel process
    writes its own log to (what a notebook raises is in the executed notebook, not there)."""
    from jupyter_client.manager import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.transport = "ipc"
            self.ip = os.path.join(socket_dir, "kernel")

        async def start_kernel(self, **kw):
            kw["env"] = dict(env)
            if stderr is not None:
                kw["stderr"] = stderr
            out = await super().start_kernel(**kw)
            process = getattr(self.provisioner, "process", None)
            if started is not None and process is not None:
                started.append(process)
            return out

        async def _async_interrupt_kernel(self) -> None:
            if self.shutting_down:  # a graceful shutdown of an idle kernel: the shutdown request suffices
                return
            await super()._async_interrupt_kernel()

    return IPCKernelManager


def stop_kernels(processes: list[subprocess.Popen], timeout: float = 10.0) -> None:
    """Kill the process group of every kernel in ``processes`` that is still running and wait for it to exit
    (each kernel leads its own session, so its group holds the kernel and what it started: data loader workers)."""
    for process in processes:
        if process.poll() is not None:
            continue
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except OSError:
            process.kill()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not refused
            pass


def _error_text(exc: BaseException) -> str:
    """The whole message of a notebook's exception (papermill's ``ename: evalue``), without its traceback."""
    ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    if ename:
        return f"{ename}: {evalue}".strip()
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def execute(run: Run, cfg: dict, log_output: bool = False, fresh: bool = False) -> Path:
    """Execute one run's notebook into a temporary folder and move it into place when it succeeds.

    ``fresh`` (``--force``): the run starts from scratch; its notebook gets ``run_key="fresh:<input hash>"``, and
    :func:`reidlib.stages.train.prepare_work_dir` discards the run's checkpoints instead of resuming them.

    Returns:
        The final run directory. On failure the executed notebook is kept under ``work/<profile>/failed/`` and
        :class:`StageFailed` carries the notebook's whole error message and names that notebook;
        ``results/`` is left as it was.
    """
    import papermill as pm

    final = run_dir(cfg, run.stage, run.name)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(final)
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    out_nb = tmp / f"{run.stage}.ipynb"
    key, digests = hash_and_digests(run, cfg)
    # run_key lets a training notebook tell "resume my interrupted run" (same key) from "inputs changed" (new key)
    params = {**run.parameters, "out_dir": str(tmp), "run_key": ("fresh:" if fresh else "") + key}
    (tmp / "params.yaml").write_text(yaml.safe_dump(portable(run.parameters), sort_keys=False))
    started = time.time()
    kernels: list[subprocess.Popen] = []
    kernel_log = Path(cfg["work_dir"]) / "kernel-logs" / run.stage / f"{run.name}.log"
    kernel_log.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix="reidlib-kernel-") as sockets, open(kernel_log, "wb") as log:
            try:
                pm.execute_notebook(str(run.notebook), str(out_nb), parameters=params, cwd=str(NOTEBOOKS_DIR),
                                    kernel_name="python3", progress_bar=False, log_output=log_output,
                                    kernel_manager_class=_ipc_kernel_manager(sockets, kernel_env(), kernels,
                                                                             None if log_output else log))
            finally:  # Ctrl-C/SIGTERM leave papermill before it shuts its kernel down: no kernel outlives its run
                stop_kernels(kernels)
    except Exception as exc:
        failed = Path(cfg["work_dir"]) / "failed" / run.stage / f"{run.name}.ipynb"
        failed.parent.mkdir(parents=True, exist_ok=True)
        if out_nb.is_file():
            shutil.copy2(out_nb, failed)
        shutil.rmtree(tmp, ignore_errors=True)
        raise StageFailed(f"{run.id} failed: {_error_text(exc)}\n  executed notebook with the error: {failed}"
                          f"\n  the kernel's own log: {kernel_log}") from exc
    except BaseException:  # Ctrl-C/SIGTERM: leave results/ as it was, and say so in one line (the caller's)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not (tmp / "metrics.json").is_file():
        shutil.rmtree(tmp, ignore_errors=True)
        raise StageFailed(f"{run.id}: notebook finished but wrote no metrics.json into out_dir")
    _scrub_tmp_paths(tmp, final)
    write_json(tmp / "run.json", {
        "run": run.id,
        "profile": cfg["name"],
        "profile_file": profile_file(cfg),  # the file that owns results/<profile>/ (runner.check_results_dir)
        "notebook": str(run.notebook.relative_to(REPO_ROOT)),
        "command": f"./run_all.sh {profile_argument(cfg)} --only {run.stage}",
        "input_hash": key,
        "inputs": digests,  # each input's own digest: --dry-run names the one that changed
        "data": data_fingerprints(run),  # what the datasets it read looked like (a changed one is named by --dry-run)
        "git_commit": git_commit(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "wall_seconds": round(time.time() - started, 1),
        "environment": environment_info(),
    })
    trash = final.parent / f".old-{final.name}-{os.getpid()}"
    if final.exists():
        final.rename(trash)
    tmp.rename(final)
    shutil.rmtree(trash, ignore_errors=True)
    failed = Path(cfg["work_dir"]) / "failed" / run.stage / f"{run.name}.ipynb"
    failed.unlink(missing_ok=True)
    return final


def profile_file(cfg: dict) -> str:
    """The profile's YAML file as recorded beside its results and in its work folder (``{repo}/params/x.yaml`` for a
    file in this checkout, so a clone elsewhere is the same profile)."""
    return portable(str(Path(cfg["path"]).resolve()))


def profile_argument(cfg: dict) -> str:
    """How ``./run_all.sh`` names this profile: a shipped profile by its name, another file by its path
    (repo-relative when inside the checkout)."""
    path = Path(cfg["path"])
    if path.parent == PARAMS_DIR and path.stem == cfg["name"]:
        return cfg["name"]
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def _scrub_tmp_paths(tmp: Path, final: Path) -> None:
    """In a run's text outputs, write the temporary folder as the final one, every path under the work root as
    ``work/...`` (wherever the work root is), every other path inside this checkout as repo-relative and the shared
    folder as ``{shared}`` (:func:`reidlib.stages.common.read_metrics` resolves them)."""
    replacements = [(str(tmp), str(final)), (str(work_root()) + "/", WORK_PREFIX), (str(REPO_ROOT) + "/", ""),
                    (str(shared_dir()), "{shared}")]
    for path in list(tmp.glob("*.json")) + list(tmp.glob("*.ipynb")) + list(tmp.glob("*.md")):
        text = original = path.read_text()
        for old, new in replacements:
            text = text.replace(old, new)
        if text != original:
            path.write_text(text)


def interrupted_message(run: Run | None, cfg: dict, how: str = "interrupted") -> str:
    """The one line Ctrl-C (``how="interrupted"``) or SIGTERM prints: what was kept and what was discarded."""
    where = results_dir(cfg)
    if run is None:
        return f"{how}: nothing was running; results in {where}/ are as they were"
    return (f"{how} during {run.id}: its half-written output was discarded and its previous result (if any) "
            f"kept; finished runs are kept in {where}/ (rerun the same command to continue)")


def print_flush(text: str, err: bool = False) -> None:
    print(text, file=sys.stderr if err else sys.stdout, flush=True)
