"""Running a profile: plan, skip what is up to date, execute the rest in order, one console line per run."""
from __future__ import annotations

import time
from pathlib import Path

from .execute import clean_leftovers, execute, interrupted_message, print_flush
from .plan import STAGES, Run, plan, results_dir
from .profile import load_profile
from .provenance import portable, run_status, with_stale_runs
from .schema import ProfileError


class InterruptedRun(KeyboardInterrupt):
    """Ctrl-C during a run; the message says what was kept and what was discarded."""


def check_work_dir(cfg: dict) -> None:
    """Refuse a profile whose ``work_dir`` is already used by another profile (they would delete each other's
    checkpoints): the work folder records the profile that owns it."""
    work = Path(cfg["work_dir"])
    owner = work / ".profile"
    me = portable(cfg["path"])  # "{repo}/params/x.yaml": a moved checkout still owns its own work folder
    if owner.is_file():
        recorded = owner.read_text().strip()
        if recorded and recorded not in (me, cfg["path"]):
            raise ProfileError(f"work_dir {work} belongs to profile {recorded}; give {cfg['path']} its own work_dir "
                               f"(or delete {owner} if that profile is gone)")
    work.mkdir(parents=True, exist_ok=True)
    owner.write_text(me + "\n")


def _needed_downstream(run: Run, runs: list[Run]) -> bool:
    return any(run.id in other.depends_on for other in runs if other.stage != "40_report")


def run_study(profile: str, data_root: str | None = None, only: list[str] | None = None, force: bool = False,
              dry_run: bool = False, log_output: bool = False, cwd: str | None = None) -> list[Path]:
    """Run (or refresh) a whole profile. ``only`` restricts to stages (e.g. ``["10_train"]``) or run ids.

    A run is skipped when it is up to date: same input hash as recorded, and the checkpoint and features later
    stages read from it still exist. Returns the run folders executed.
    """
    cfg = load_profile(profile, data_root, cwd=cwd)
    everything = plan(cfg)
    runs = everything
    if only:
        unknown = [o for o in only if o not in STAGES and o not in {r.id for r in everything}]
        if unknown:
            raise ProfileError(f"--only {unknown}: not a stage {STAGES} nor a run id of this profile")
        runs = [r for r in everything if r.stage in only or r.id in only]
    if not dry_run:
        check_work_dir(cfg)
        clean_leftovers(cfg, everything)
    done: list[Path] = []
    would: list[str] = []
    total = time.time()
    current: Run | None = None
    try:
        for i, run in enumerate(runs, 1):
            head = f"[{i}/{len(runs)}] {run.id}"
            if run.stage == "40_report":  # the runs executed above are up to date now
                with_stale_runs(everything, cfg)
            fresh, reason = run_status(run, cfg, needed=_needed_downstream(run, everything))
            if not force and fresh:
                print_flush(f"{head}: up to date")
                continue
            why = f" ({reason})" if reason and not force else ""
            if dry_run:
                print_flush(f"{head}: would run {run.notebook.name}{why}")
                would.append(run.id)
                continue
            t0 = time.time()
            current = run
            out = execute(run, cfg, log_output=log_output)
            current = None
            shown = out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out
            print_flush(f"{head}: done in {time.time() - t0:.0f} s{why} -> {shown}")
            done.append(out)
    except KeyboardInterrupt:
        raise InterruptedRun(interrupted_message(current, cfg)) from None
    if dry_run:
        print_flush(f"profile {cfg['name']}: {len(would)} of {len(runs)} run(s) would run; results in "
                    f"{results_dir(cfg)}/")
    else:
        print_flush(f"profile {cfg['name']}: {len(done)} run(s) executed in {time.time() - total:.0f} s; "
                    f"results in {results_dir(cfg)}/")
    return done
