"""Running a profile: plan, skip what is up to date, execute the rest in order, one console line per run.

Before anything runs: ``results/<profile>/`` and the work folder must belong to this profile's file
(:func:`check_results_dir`, :func:`check_work_dir`), and no other process may be running the profile
(:mod:`.lock`). Ctrl-C and SIGTERM stop a run the same way: one line, the half-written run discarded, exit
status 130 or 143.
"""
from __future__ import annotations

import difflib
import json
import logging
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from reidlib.paths import PARAMS_DIR
from reidlib.stages.ids import REPORT_STAGE

from .execute import clean_leftovers, execute, interrupted_message, print_flush, profile_file
from .lock import profile_lock
from .plan import STAGES, Run, plan, results_dir
from .profile import load_profile
from .provenance import began_in_other_precision, portable, resume_point, run_status, with_stale_runs
from .schema import ProfileError


class InterruptedRun(KeyboardInterrupt):
    """Ctrl-C during a run; the message says what was kept and what was discarded."""

    exit_code = 130


class TerminatedRun(InterruptedRun):
    """SIGTERM during a run (``timeout``, batch schedulers, ``docker stop``), handled like Ctrl-C."""

    exit_code = 143


# papermill's and the notebook client's loggers: after SIGTERM their "kernel died" lines are noise
NOTEBOOK_CLIENT_LOGGERS = ("nbclient", "papermill", "traitlets")


class _Terminated(KeyboardInterrupt):
    """Raised by the SIGTERM handler wherever the pipeline process is, so it unwinds like Ctrl-C."""


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises an exception that unwinds like Ctrl-C (a second SIGTERM is ignored while
    that happens). Outside the main thread, where Python cannot handle signals, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    loggers = [logging.getLogger(name) for name in NOTEBOOK_CLIENT_LOGGERS]
    was_disabled = [log.disabled for log in loggers]

    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for log in loggers:  # the notebook client would report the kernel it loses while this unwinds
            log.disabled = True
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        for log, disabled in zip(loggers, was_disabled):
            log.disabled = disabled


def _shown(recorded: str) -> str:
    return recorded.replace("{repo}/", "")


def check_results_dir(cfg: dict) -> None:
    """Refuse to write into ``results/<profile>/`` when it is a file, or when its runs were made by another profile
    file (each ``run.json`` records its ``profile_file``; a run recorded before that, by ``params/<name>.yaml`` if
    that file exists). A copy of a shipped profile run under the shipped name would overwrite committed results."""
    root = results_dir(cfg)
    for folder in (root, *root.parents):
        if folder.exists() and not folder.is_dir():
            raise ProfileError(f"results of profile {cfg['name']} go to {root}/, but {folder} is a file; move that "
                               f"file away, or give the profile another name (name: my-copy in {cfg['path']})")
    if not root.is_dir():
        return
    me = profile_file(cfg)
    shipped = PARAMS_DIR / f"{cfg['name']}.yaml"
    for info_path in sorted(root.glob("*/*/run.json")) + [root / "report" / "run.json"]:
        try:
            info = json.loads(info_path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        owner = info.get("profile_file") if isinstance(info, dict) else None
        if not owner and shipped.is_file():
            owner = portable(str(shipped.resolve()))
        if owner and owner != me:
            kind = " (a profile shipped with the study)" if owner == portable(str(shipped.resolve())) else ""
            raise ProfileError(
                f"{root}/ holds results made by {_shown(owner)}{kind} (e.g. {info_path.parent.relative_to(root)}); "
                f"{cfg['path']} would overwrite them. Give this profile its own name: add `name: my-copy` to "
                f"{Path(cfg['path']).name} or rename the file, then run it again")


def check_work_dir(cfg: dict) -> None:
    """Refuse a profile whose ``work_dir`` is already used by another profile (they would delete each other's
    checkpoints): the work folder records the profile that owns it."""
    work = Path(cfg["work_dir"])
    owner = work / ".profile"
    me = profile_file(cfg)  # "{repo}/params/x.yaml": a moved checkout still owns its own work folder
    if owner.is_file():
        recorded = owner.read_text().strip()
        if recorded and recorded not in (me, cfg["path"], portable(cfg["path"])):
            raise ProfileError(f"work_dir {work} belongs to profile {recorded}; give {cfg['path']} its own work_dir "
                               f"(or delete {owner} if that profile is gone)")
    work.mkdir(parents=True, exist_ok=True)
    owner.write_text(me + "\n")


def _needed_downstream(run: Run, runs: list[Run]) -> bool:
    return any(run.id in other.depends_on for other in runs if other.stage != REPORT_STAGE)


def _select_only(everything: list[Run], only: list[str]) -> list[Run]:
    """The runs ``--only`` names: a stage, a run id (``10_train/cuhk03-osnet_x0_25``) or a run's name without its
    stage (``cuhk03-osnet_x0_25``), in plan order.

    Raises:
        ProfileError: a name matches nothing; the message lists this profile's run ids.
    """
    known = {r.id for r in everything} | {r.name for r in everything} | set(STAGES)
    unknown = [o for o in only if o not in known]
    if unknown:
        hints = [f"{o!r}: did you mean {m[0]!r}?" for o in unknown
                 for m in [difflib.get_close_matches(o, sorted(known), n=1, cutoff=0.6)] if m]
        raise ProfileError(f"--only {unknown}: not a stage {STAGES} nor a run of this profile"
                           + (f" ({'; '.join(hints)})" if hints else "")
                           + "; its runs: " + ", ".join(r.id for r in everything))
    return [r for r in everything if r.stage in only or r.id in only or r.name in only]


def _with_stale_inputs(cfg: dict, everything: list[Run], runs: list[Run]) -> tuple[list[Run], list[str]]:
    """``runs`` plus every run they read from (transitively) that is not up to date, in plan order, and the ids
    added.

    A run executed before its inputs exist or while they are stale records inputs that their own run then
    replaces, which leaves it stale straight away. The report is the exception: ``--only 40_report`` gathers
    what is there and names the stale runs beside it, so its inputs are never added for it.
    """
    chosen = {r.id for r in runs}
    wanted = {dep for r in runs if r.stage != REPORT_STAGE for dep in r.depends_on}
    for run in reversed(everything):  # a run's inputs come before it: this reaches every ancestor
        if run.id in wanted:
            wanted.update(run.depends_on)
    wanted -= chosen
    added: list[str] = []
    for run in everything:  # plan order: a run's inputs come before it
        if run.id in wanted and (not run_status(run, cfg, needed=True)[0]
                                 or any(dep in added for dep in run.depends_on)):
            added.append(run.id)
    return [r for r in everything if r.id in chosen or r.id in added], added


def run_study(profile: str, data_root: str | None = None, only: list[str] | None = None, force: bool = False,
              dry_run: bool = False, log_output: bool = False, cwd: str | None = None) -> list[Path]:
    """Run (or refresh) a whole profile. ``only`` restricts to stages (e.g. ``["10_train"]``) or run ids.

    A run is skipped when it is up to date: same input hash as recorded, and the checkpoint and features later
    stages read from it still exist. ``force`` reruns the selected runs from scratch (checkpoints discarded).
    Returns the run folders executed.

    Raises:
        ProfileError: a bad profile, results or work folder owned by another profile file, or the profile
            already running in another process.
        InterruptedRun: Ctrl-C (:class:`TerminatedRun`: SIGTERM); the message is the one line to print.
    """
    cfg = load_profile(profile, data_root, cwd=cwd)
    everything = plan(cfg)
    runs = everything
    added: list[str] = []
    if only:
        runs, added = _with_stale_inputs(cfg, everything, _select_only(everything, only))
        if added:
            print_flush(f"--only: runs first what the chosen runs read that is not up to date: {', '.join(added)}")
    check_results_dir(cfg)
    current: Run | None = None
    try:
        with sigterm_as_interrupt():
            if dry_run:
                return _run_all(cfg, everything, runs, force, True, log_output, lambda r: None, added)
            check_work_dir(cfg)
            with profile_lock(cfg["work_dir"], cfg["name"], say=print_flush):
                clean_leftovers(cfg, everything)

                def note(run: Run | None) -> None:
                    nonlocal current
                    current = run
                return _run_all(cfg, everything, runs, force, False, log_output, note, added)
    except _Terminated:
        raise TerminatedRun(interrupted_message(current, cfg, "terminated (SIGTERM)")) from None
    except KeyboardInterrupt:
        raise InterruptedRun(interrupted_message(current, cfg)) from None


def _run_all(cfg: dict, everything: list[Run], runs: list[Run], force: bool, dry_run: bool, log_output: bool,
             note, unforced: Sequence[str] = ()) -> list[Path]:
    """The loop of :func:`run_study`; ``note(run)`` is told which run is executing (None between runs); ``force``
    applies to every run but those in ``unforced`` (the inputs ``--only`` added: they run only if not up to date)."""
    done: list[Path] = []
    would: list[str] = []
    total = time.time()
    for i, run in enumerate(runs, 1):
        head = f"[{i}/{len(runs)}] {run.id}"
        if run.stage == REPORT_STAGE:  # the runs executed above are up to date now
            with_stale_runs(everything, cfg)
        forced = force and run.id not in unforced
        fresh, reason = run_status(run, cfg, needed=_needed_downstream(run, everything))
        rerun_inputs = [dep for dep in run.depends_on if dep in would]
        if dry_run and fresh and rerun_inputs:
            fresh, reason = False, f"{rerun_inputs[0]} runs before it and its results are this run's input"
        if not forced and fresh:
            print_flush(f"{head}: up to date")
            continue
        why = f" ({reason})" if reason and not forced else ""
        resumes = None if forced else resume_point(run, cfg)
        resuming = f"resumes from its checkpoint ({resumes[0]} of {resumes[1]} epochs done)" if resumes else ""
        mixed = began_in_other_precision(run, resumes) if resumes else None
        if dry_run:
            print_flush(f"{head}: would run {run.notebook.name}{why}" + (f"; {resuming}" if resuming else "")
                        + (f"; refused on this machine: {mixed}" if mixed else ""))
            would.append(run.id)
            continue
        if mixed:
            raise ProfileError(mixed)
        if resuming:
            print_flush(f"{head}: {resuming}")
        t0 = time.time()
        note(run)
        out = execute(run, cfg, log_output=log_output, **({"fresh": True} if forced else {}))
        note(None)
        shown = out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out
        print_flush(f"{head}: done in {time.time() - t0:.0f} s{why} -> {shown}")
        done.append(out)
    if dry_run:
        print_flush(f"profile {cfg['name']}: {len(would)} of {len(runs)} run(s) would run; results in "
                    f"{results_dir(cfg)}/")
    else:
        print_flush(f"profile {cfg['name']}: {len(done)} run(s) executed in {time.time() - total:.0f} s; "
                    f"results in {results_dir(cfg)}/")
    return done
