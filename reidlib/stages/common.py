"""Shared by every stage: metrics files, dataset specs, CMC summaries and figures shown inline and saved.

All accuracies in tables and ``metrics.json`` evaluation records are percentages (0-100); CMC curves are stored
as fractions (0-1), as :func:`reidlib.evaluation.evaluate` returns them.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from reidlib.io import write_json
from reidlib.paths import repo_path

from .ids import REPORT_STAGE

RANKS = (1, 5, 10, 20)


METRICS_FORMAT = 1  # the integer "format" of every metrics.json written; records without one are format 0


class MetricsFormatError(ValueError):
    """A ``metrics.json`` written in a format this reidlib does not read; the message names the command that
    regenerates it."""


def write_metrics(out_dir: str | Path, metrics: dict) -> Path:
    """Write ``out_dir/metrics.json`` atomically, starting with ``"format": METRICS_FORMAT`` (non-finite numbers
    become ``null``, see :mod:`reidlib.io`)."""
    record = {"format": METRICS_FORMAT, **{k: v for k, v in metrics.items() if k != "format"}}
    return write_json(Path(out_dir) / "metrics.json", record)


def _regenerate_command(path: Path, metrics: dict) -> str:
    """``./run_all.sh <profile> --only <run id> --force`` for a record at ``results/<profile>/<stage>/<run>/``."""
    if path.parent.name == "report":
        run_id, profile = REPORT_STAGE, path.parent.parent.name
    else:
        run_id, profile = f"{path.parent.parent.name}/{path.parent.name}", path.parent.parent.parent.name
    return f"./run_all.sh {metrics.get('profile') or profile} --only {run_id} --force"


def read_metrics(path: str | Path) -> dict:
    """Read a run's ``metrics.json``; a clear error names the stage to run when it is missing.

    Formats read: :data:`METRICS_FORMAT` and records without a ``"format"`` key (format 0, written before the key
    existed; their keys are the same). Recorded paths of work artefacts (checkpoints, stored features) may be
    repo-relative (the pipeline writes them so); they are returned as absolute paths inside this checkout.

    Raises:
        FileNotFoundError: no such file (the message names the stage to run).
        MetricsFormatError: a format newer than this reidlib reads, or not an integer (the message names the
            command that regenerates the record with this reidlib).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run the stage that writes it first "
                                f"(./run_all.sh <profile> --only {path.parent.parent.name})")
    metrics = json.loads(path.read_text())
    fmt = metrics.get("format", 0)
    if isinstance(fmt, bool) or not isinstance(fmt, int) or not 0 <= fmt <= METRICS_FORMAT:
        raise MetricsFormatError(
            f"{path} is a format {fmt!r} record; this reidlib reads formats 0-{METRICS_FORMAT}. Use the reidlib "
            f"that wrote it, or regenerate it with this one: {_regenerate_command(path, metrics)}")
    if metrics.get("checkpoint"):
        metrics["checkpoint"] = repo_path(metrics["checkpoint"])
    for feats in (metrics.get("features") or {}).values():
        for key in ("query", "gallery"):
            if isinstance(feats, dict) and feats.get(key):
                feats[key] = repo_path(feats[key])
    return metrics


def require_file(path: str | Path, stage_hint: str) -> Path:
    """``path`` if it exists, else a ``FileNotFoundError`` saying which run to redo (``stage_hint``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing (work files are not kept in git and may have been deleted): "
                                f"rerun {stage_hint}, e.g. ./run_all.sh <profile> --only {stage_hint} --force")
    return path


def load_dataset(spec: dict):
    """Build the dataset a profile entry ``{name, root, kwargs}`` describes."""
    from reidlib.data import build_dataset

    return build_dataset(spec["name"], spec["root"], **(spec.get("kwargs") or {}))


def summarize(result: dict) -> dict:
    """Percentages of an :func:`reidlib.evaluation.evaluate` result: R1/R5/R10/R20, mAP, mINP."""
    cmc = np.asarray(result["cmc"], dtype=float)
    row = {f"R{r}": 100.0 * float(cmc[min(r, len(cmc)) - 1]) for r in RANKS}
    row["mAP"] = 100.0 * float(result["mAP"])
    row["mINP"] = 100.0 * float(result.get("mINP", float("nan")))
    return row


def as_eval(ev: dict) -> dict:
    """A metrics.json evaluation record back in :func:`reidlib.evaluation.evaluate`'s form (fractions)."""
    minp = ev.get("mINP")
    return {"cmc": np.asarray(ev["cmc"], dtype=float), "mAP": ev["mAP"] / 100.0,
            "mINP": (minp if minp is not None else 0.0) / 100.0}


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where figures can be shown inline)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - ipykernel is a study dependency
        return False
    shell = get_ipython()
    return shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell"


def show_figure(fig: Any, path: str | Path, inline: bool = True, dpi: int = 120) -> Path:
    """Save ``fig`` atomically to ``path``, show that same image inline in a notebook (when ``inline``), close it.

    Pass ``inline=False`` for figures made of real pedestrians' crops: they are saved outside the repository and
    must not reappear inside an executed notebook under ``results/``.
    """
    from reidlib.plots import save_figure

    path = save_figure(fig, path, dpi=dpi)
    if inline and in_notebook() and path.suffix.lower() == ".png":
        from IPython.display import Image, display

        display(Image(filename=str(path)))
    return path


def show_markdown(text: str) -> None:
    """Render markdown inline in a notebook (printed elsewhere)."""
    if in_notebook():
        from IPython.display import Markdown, display

        display(Markdown(text))
    else:
        print(text)
