"""The command line: ``python -m reidlib.pipeline run|list|show`` (what ``./run_all.sh`` calls)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from reidlib.paths import expand_path

from .execute import StageFailed
from .plan import STAGES, plan
from .profile import list_profiles, load_profile, show_profile
from .runner import InterruptedRun, run_study
from .schema import ProfileError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m reidlib.pipeline",
                                     description="Run the study's notebooks for a profile into results/<profile>/.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_run = sub.add_parser("run", help="run a profile's notebooks into results/<profile>/")
    p_run.add_argument("profile", nargs="?", default="default", help=f"one of {list_profiles()} or a YAML path")
    p_run.add_argument("--data-root", default=None, help="where datasets live / synthetic data is generated")
    p_run.add_argument("--only", action="append", default=None, help=f"a stage {STAGES} or run id; repeatable")
    p_run.add_argument("--force", action="store_true", help="rerun even when outputs are up to date")
    p_run.add_argument("--dry-run", action="store_true", help="check the profile and print what would run")
    p_run.add_argument("--log-output", action="store_true", help="stream notebook output to the terminal")
    p_run.add_argument("--work-root", default=None, metavar="DIR",
                       help="put each profile's checkpoints, features and caches under DIR/<profile>/ instead of "
                            "work/<profile>/ (default: $REIDLIB_WORK_ROOT, else work/)")
    sub.add_parser("list", help="list profiles and their runs")
    p_show = sub.add_parser("show", help="print a profile fully resolved: bases merged, every default filled in")
    p_show.add_argument("profile", help=f"one of {list_profiles()} or a YAML path")
    p_show.add_argument("--data-root", default=None, help="as for run: where datasets live")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status. Paths on the command line are relative to ``$REIDLIB_CALLER_CWD``
    (set by ``run_all.sh`` to the folder it was called from) or the current directory."""
    args = _parser().parse_args(argv)
    cwd = os.environ.get("REIDLIB_CALLER_CWD") or os.getcwd()
    before = os.environ.get("REIDLIB_WORK_ROOT")
    try:
        _set_work_root(getattr(args, "work_root", None), cwd)
        if args.cmd == "list":
            for name in list_profiles():
                cfg = load_profile(name)
                print(f"{name}: {cfg['description'].strip().splitlines()[0]}")
                for run in plan(cfg):
                    print(f"    {run.id}")
            return 0
        if args.cmd == "show":
            print(show_profile(args.profile, args.data_root, cwd=cwd), end="")
            return 0
        run_study(args.profile, args.data_root, args.only, args.force, args.dry_run, args.log_output, cwd=cwd)
        return 0
    except (ProfileError, StageFailed) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except InterruptedRun as exc:
        print(f"\n{exc}", file=sys.stderr)
        return exc.exit_code
    finally:
        if before is None:
            os.environ.pop("REIDLIB_WORK_ROOT", None)
        else:
            os.environ["REIDLIB_WORK_ROOT"] = before


def _set_work_root(option: str | None, cwd: str) -> None:
    """Export the work root (``--work-root``, else ``$REIDLIB_WORK_ROOT``) as an absolute path, a relative one
    taken from the caller's folder, so the notebook kernels find the same folders."""
    value = option or os.environ.get("REIDLIB_WORK_ROOT")
    if not value:
        return
    try:
        path = expand_path(value, "--work-root" if option else "REIDLIB_WORK_ROOT")
    except ValueError as exc:
        raise ProfileError(str(exc)) from None
    path = (path if path.is_absolute() else Path(cwd) / path).resolve()
    if path.exists() and not path.is_dir():
        raise ProfileError(f"work root {path} is a file; give a folder (it is created when missing)")
    os.environ["REIDLIB_WORK_ROOT"] = str(path)
