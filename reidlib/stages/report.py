"""The report stage (``40_report``): what its notebook calls to gather every run's ``metrics.json`` into
``report.md``, its figures and the report's own ``metrics.json``.

The report is built in rooms, each imported only by this stage (so editing how results are *presented* never
makes a training run stale; the pipeline hashes the code each stage imports):

=====================  ==================================================================================
``records``            typed run records: what each stage's metrics.json holds (the report reads run data only
                       through them)
``report_runs``        reading run records: metrics.json + run.json, the setting a run trained in
``report_tables``      the tables (Table I, side by side with the paper and references, fine-tuning, ...)
``report_learning``    did each model learn? chance level, feature spread, verdicts
``findings``           the claims: best model and its lead, whether the paper's ranking holds
``uncertainty``        intervals and paired differences in the records, and how they are printed
``report_text``        report.md assembled section by section
``report_figures``     CMC / ROC grids, learning curves, ranked lists
=====================  ==================================================================================

All accuracies are percentages (0-100).
"""
from __future__ import annotations

import re
from pathlib import Path

from .common import show_markdown, write_metrics
from .records import Runs
from .report_figures import ranked_list_examples, report_figures
from .report_runs import load_runs
from .report_text import compose_report

__all__ = ["load_runs", "ranked_list_examples", "report_figures", "show_ranked_lists", "show_report",
           "write_report"]


def write_report(runs: Runs, out_dir: Path, *, profile: str, description: str, profile_path: str,
                 report: dict | None = None, stale_runs: list[str] | None = None,
                 figures: list[Path] | None = None, run_groups: list[dict] | None = None,
                 variant_overrides: dict | None = None, test_split: bool = True) -> str:
    """Write ``report.md`` (tables + provenance) and the report's ``metrics.json``; return the markdown.

    ``runs``: run id -> record, as :func:`load_runs` reads them.

    ``report`` is the profile's resolved ``report`` block (:func:`reidlib.pipeline.references.resolve_report`):
    ``reproduces`` (the published table this study redoes: its rows, setting and ranking), ``references``
    (published rows, each optionally with ``compare_with``: a run id set beside it), ``ranking`` and ``variants``
    (run ids) and ``notes`` (lines printed under "Notes"). ``stale_runs``: ids of runs whose inputs changed after
    they ran (the pipeline's list); the report warns about them at the top and marks them in "What every number
    rests on". ``figures``: image files inside ``out_dir`` linked under "Figures". ``run_groups``,
    ``variant_overrides``: the variants' and seeds' runs (the "Variants" and "Seeds" sections, :mod:`.seeds`, and
    the seed sd and variant differences "At a glance" sets beside its leads);
    ``test_split=False``: a profile that compared recipes on held-out identities only gets the held-out report
    (:func:`reidlib.stages.seeds.write_held_out_report`).
    """
    from reidlib.io import write_atomic

    from . import seeds

    out_dir = Path(out_dir)
    groups = seeds.load_groups(run_groups)  # read once; the sections below take them as loaded
    if not test_split:
        return seeds.write_held_out_report(groups, variant_overrides, out_dir, profile=profile,
                                           description=description, profile_path=profile_path,
                                           stale_runs=stale_runs, figures=figures)
    separation = seeds.separation_figure(groups, out_dir / "figures", compared_only=True)
    figures = [*(figures or []), *([separation] if separation else [])]
    text, record = compose_report(runs, out_dir, profile=profile, description=description, profile_path=profile_path,
                                  report=report, stale_runs=stale_runs, figures=figures, run_groups=groups)
    text, record = seeds.add_sections(text, record, groups, variant_overrides)
    write_atomic(out_dir / "report.md", text)
    write_metrics(out_dir, record)
    return text


_IMAGE_LINE = re.compile(r"^!\[(?P<alt>[^\]]*)\]\((?P<src>[^)]+)\)\s*$")


def show_report(text: str, base_dir: str | Path) -> None:
    """Render a report's markdown inline, its linked figures embedded as images (so they show on any viewer).

    Markdown between figures is rendered as Markdown; each line ``![title](relative.png)`` becomes the image
    itself. Outside a notebook the text is printed.
    """
    from .common import in_notebook

    if not in_notebook():
        print(text)
        return
    from IPython.display import Image, display

    chunk: list[str] = []
    for line in text.splitlines():
        match = _IMAGE_LINE.match(line)
        if match and (Path(base_dir) / match["src"]).is_file():
            if chunk:
                show_markdown("\n".join(chunk))
                chunk = []
            show_markdown(f"*{match['alt']}*")
            display(Image(filename=str(Path(base_dir) / match["src"])))
        else:
            chunk.append(line)
    if chunk:
        show_markdown("\n".join(chunk))


def show_ranked_lists(paths: list[Path], inline: bool = True, per_run: int = 1) -> None:
    """Show the first ``per_run`` ranked-list images of each run inline (or, with ``inline=False``, only say where
    they were written: figures of real pedestrians stay out of the executed notebook)."""
    from .common import in_notebook

    by_run: dict[Path, list[Path]] = {}
    for path in paths:
        by_run.setdefault(Path(path).parent, []).append(Path(path))
    if not inline or not in_notebook():
        where = sorted({str(p.parent) for p in by_run}) or ["(none)"]
        print(f"{len(paths)} ranked lists written under {Path(where[0]).parent if by_run else where[0]}")
        return
    from IPython.display import Image, display

    for folder, files in sorted(by_run.items()):
        show_markdown(f"*{folder.name}*")
        for path in sorted(files)[:per_run]:
            display(Image(filename=str(path)))
