"""The layer that drives the study's notebooks, one module per job.

==================  =============================================================================================
``specs``           the profile's keys, types, ranges and defaults, as typed dataclasses
``schema``          the validator the specs' annotations drive: every problem of a profile at once
``profile``         ``params/<name>.yaml`` read (``extends:`` followed), checked and resolved into absolute paths
``references``      the published numbers a report names, from ``params/_references.yaml``
``variants``        ``variants:``, ``seeds:`` and ``test_split:`` checked and expanded
``plan``            a profile expanded into the ordered notebook runs (pure: reads only the profile)
``provenance``      input hashes of runs; up-to-date checks; recorded environment
``codehash``        the library code each stage runs, hashed without comments and docstrings
``fingerprint``     fingerprints of the datasets a run reads
``execute``         one run through papermill into a temporary folder, renamed into place on success
``lock``            one run of a profile at a time (a lock file in its work folder)
``runner``          a whole profile: skip what is up to date, run the rest, one console line per run
``cli``             ``python -m reidlib.pipeline run|list|show`` (what ``./run_all.sh`` calls)
==================  =============================================================================================

Checkpoints and feature files live in the work directory (``work/<profile>/...``, or
``$REIDLIB_WORK_ROOT/<profile>/...``), never in ``results/``.
"""
from reidlib.paths import NOTEBOOKS_DIR, PARAMS_DIR, REPO_ROOT, results_root, shared_dir

from .cli import main
from .codehash import import_closure, library_files, library_hash
from .execute import StageFailed, clean_leftovers, execute, remove_orphans
from .plan import STAGES, Run, metrics_files, plan, results_dir, run_dir, train_metrics_path, train_run_name
from .profile import list_profiles, load_profile
from .provenance import (
                         environment_info,
                         input_hash,
                         is_current,
                         is_up_to_date,
                         missing_artefacts,
                         portable,
                         stale_runs,
                         with_stale_runs,
)
from .runner import InterruptedRun, run_study
from .schema import MODEL_KEYS, ProfileError, check_profile, training_keys

__all__ = [
    "MODEL_KEYS", "NOTEBOOKS_DIR", "PARAMS_DIR", "REPO_ROOT", "STAGES", "InterruptedRun", "ProfileError", "Run",
    "StageFailed", "check_profile", "clean_leftovers", "environment_info", "execute", "import_closure",
    "input_hash", "is_current", "is_up_to_date", "library_files", "library_hash", "list_profiles", "load_profile",
    "main", "metrics_files", "missing_artefacts", "plan", "portable", "remove_orphans", "results_dir",
    "results_root", "run_dir", "run_study", "shared_dir", "stale_runs", "train_metrics_path", "train_run_name",
    "training_keys", "with_stale_runs",
]
