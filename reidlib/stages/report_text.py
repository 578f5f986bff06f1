"""The report's text: ``report.md`` assembled section by section from the tables (:mod:`.report_tables`), the
learning check (:mod:`.report_learning`) and the claims (:mod:`.findings`), with the sentences that say how to
read each table.

Accuracies are percentages (0-100), differences percentage points.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .distance import distance_summary
from .findings import at_a_glance, fix_costs, ranking_paragraph
from .ids import FINETUNE_STAGE, REPORT_STAGE, TRAIN_STAGE, in_stage
from .records import Runs
from .report_figures import figure_caption
from .report_learning import MIN_SPREAD, NEAR_CHANCE_POINTS, chance_levels, failed_runs, learned_view, learning_check
from .report_runs import distance_run, minutes_text, or_dash, run_setting
from .report_tables import (
    comparison_table,
    complexity_table,
    distance_table,
    finetune_table,
    head_to_head,
    reference_rows,
    table_one,
    variant_table,
    verification_tables,
)
from .seeds import group_runs, measured_noise, variant_runs

TABLE_I = "## Table I: rank-1 / mAP (%) of this study"


def interval_note(runs: Runs, profile: str) -> str:
    """One line: what the intervals are, and (once) that records without them show n/a and how to regenerate."""
    note = ("[95% CI]: a percentile bootstrap over query identities (1,000 replicates; all queries of a drawn identity "
            "together); it covers which people were sampled, not seed or CPU-kind variation.")
    records = [ev for rid, m in runs.items() if in_stage(rid, TRAIN_STAGE, FINETUNE_STAGE)
               for ev in (m.evaluations or {}).values()]
    old = sum(not ev.has_intervals for ev in records)
    if old:
        note += (f" {old} of the {len(records)} evaluations were recorded before intervals were added and show n/a: "
                 f"`./run_all.sh {profile}` regenerates them with the current code.")
    return note


def pair_head_verdict(head: pd.DataFrame) -> str:
    """One sentence: the range of the learned head's AUC minus the cosine threshold's over the models (points).

    The AUCs carry no interval, so the sentence names no winner: it gives the differences and says they are
    point estimates."""
    if head.empty:
        return ""
    auc = head["AUC"].unstack("method")
    if not {"cosine threshold", "learned pair head"} <= set(auc.columns):
        return ""
    diff = auc["learned pair head"] - auc["cosine threshold"]
    span = (f"{diff.iloc[0]:+.1f} points" if len(diff) == 1
            else f"from {diff.min():+.1f} to {diff.max():+.1f} points over {len(diff)} models")
    return (f"The learned pair head's AUC minus the cosine threshold's on the held-out identities' pairs: {span}. "
            "These AUCs carry no interval, so a difference of a point or two is not read as a ranking.")


def _md(df: pd.DataFrame) -> str:
    from reidlib.plots import to_markdown

    return to_markdown(df)


def _side_by_side(runs: Runs, paper: dict | None) -> list[str]:
    comparison = comparison_table(runs, paper=paper)
    if not paper:
        return ["## Side by side: this study's test rows", "",
                "Rank-1 / mAP (%) [95 % CI] on each row's test split.", "", _md(comparison), ""]
    cited = paper["source"] + (f"; {paper['note']}" if paper.get("note") else "")
    return ["## Side by side: the paper's Table I and this study", "",
            ("Rank-1 / mAP (%) on each row's test split (this study's rows with 95 % intervals; the paper gives "
             "none). The column \"what differs\" says what differs from the paper's setting."), "",
            f"The paper's rows: {cited}.", "", _md(comparison), ""]


def _learning_section(learned: pd.DataFrame, side: bool = False) -> list[str]:
    return ["## Did each model learn?", "",
            ("Test rank-1 against the chance level of the same split, and the signs of training: train "
             "accuracy, ID loss, the triplet loss next to its margin (stuck at the margin = collapse), how far "
             "the hardest negative of a training batch sits beyond its hardest positive (the ratio of their mean "
             "distances: above 1 even the hardest pairs are apart; a collapse keeps it below 1 while the triplet "
             "loss sits at its margin) and the spread of the test gallery "
             "features (0 = every image mapped to the same feature). Verdict: "
             f"\"near chance\" where test rank-1 is less than {NEAR_CHANCE_POINTS:g} points above chance, "
             f"\"collapsed\" where the spread is below {MIN_SPREAD:g}; such a run is left out of every "
             "ranking claim." + (" The runs of a variant (run id with @) and the repeats with other seeds (-seed"
                                 "N) are side rows, never ranked." if side else "")),
            "", _md(learned_view(learned)), ""]


def _distance_sections(runs: Runs) -> list[str]:
    lines: list[str] = []
    dist = distance_table(runs)
    if not dist.empty:
        paired_rows = distance_run(runs).paired_frame()
        lines += ["## Distance study: rank-1 and mAP (%) [95% CI] per distance", "",
                  distance_summary(paired_rows), "",
                  ("Each distance on the features as the network gives them and after L2 normalisation; "
                   "\"+RK\" is k-reciprocal re-ranking, run on L2-normalised features only."), "",
                  _md(dist.reset_index()), ""]
    ver, head, best = verification_tables(runs)
    if not ver.empty:
        lines += ["## Verification: same person or not? AUC, EER, TAR@FAR=1e-2, TAR@FAR=1e-3 (%) per distance", "",
                  ("Pairs from each test split's query and gallery images: every cross-camera pair of one identity "
                   "is genuine, impostors are all pairs of different identities or a seeded sample of them; scores "
                   "are negated distances of L2-normalised features (ROC curves under Figures)."), "",
                  _md(ver.reset_index()), ""]
    if not head.empty:
        lines += ["## A learned verification head against a cosine threshold (%)", "",
                  ("The head (|f1 - f2|, f1 * f2 -> MLP -> logit) trains with binary cross-entropy on P×K batches of "
                   "half the test identities' stored features; both are scored on the other half's pairs. "
                   + pair_head_verdict(head)), "", _md(head.reset_index()), ""]
    if not best.empty:
        lines += ["## Which distance is best, for ranking and for verification", "", _md(best.reset_index()), ""]
    return lines


def _provenance(runs: Runs, stale: list[str]) -> tuple[list[str], float, set[str]]:
    """The "What every number rests on" lines, the total training seconds and the hardware names."""
    lines = ["## What every number rests on", ""]
    total_train_s, hardware = 0.0, set()
    for rid, m in sorted(runs.items()):
        if not in_stage(rid, TRAIN_STAGE, FINETUNE_STAGE):
            continue
        tr, st, info = m.train, run_setting(m), m.run_info
        total_train_s += float(tr.train_seconds or 0.0)
        hardware.add(st["hardware"])
        wall_min = float(info.wall_seconds or 0.0) / 60
        # a run resumed from its checkpoint trained over several sittings; run.json times only the last
        notebook = ("for the notebook's last sitting (resumed)" if 0 < wall_min * 60 < float(tr.train_seconds or 0.0)
                    else "for the whole notebook")
        lines.append(f"- `{rid}`: {m.model_label} on {m.dataset_label}; init {st['init']}; "
                     f"epochs run {tr.epochs_completed} of {tr.epochs} ({minutes_text(st)} of training, "
                     f"{wall_min:.1f} min {notebook}); "
                     f"optimizer {tr.optimizer}; selected on {or_dash(tr.select_on)} "
                     f"(epoch {or_dash(tr.best_epoch)}); input {st['input']}; {st['hardware']}; "
                     f"commit {(info.git_commit or 'unknown')[:12]}"
                     + (f"; **stopped early** ({tr.stopped_early}): fewer epochs than planned ran, so this "
                        "row is not the profile's recipe" if tr.stopped_early else "")
                     + ("; **stale**: its inputs changed after it ran." if rid in stale else "."))
    lines += ["", f"Total training time: {total_train_s / 60:.1f} min on "
              + ("; ".join(sorted(hardware)) or "no training") + ".", ""]
    return lines, total_train_s, hardware


def compose_report(runs: Runs, out_dir: Path, *, profile: str, description: str, profile_path: str,
                   report: dict | None = None, stale_runs: list[str] | None = None,
                   figures: list[Path] | None = None, run_groups: list[dict] | None = None) -> tuple[str, dict]:
    """(``report.md`` text, the report's ``metrics.json`` record); arguments as
    :func:`reidlib.stages.report.write_report` (``run_groups``: the seeds' and variants' runs, read here only for
    what "At a glance" sets beside its leads)."""
    report = report or {}
    paper, references = report.get("reproduces"), report.get("references") or []
    t1, ft, cx = table_one(runs), finetune_table(runs), complexity_table(runs)
    chance = chance_levels(runs)
    comparison = comparison_table(runs, paper=paper)
    published = pd.DataFrame(reference_rows(references, paper))
    # beside the profile's own runs, never in Table I or a ranking: its variants' runs (the fix pairs) and every
    # seed's and variant's run (learning check, provenance, staleness)
    with_side = {**variant_runs(run_groups or []), **runs}
    every = {**group_runs(run_groups or []), **runs}
    versus, learned = head_to_head(runs, references), learning_check(every, chance)
    failed = {rid: why for rid, why in failed_runs(learned).items() if rid in runs}
    stale = sorted(set(stale_runs or []) & set(every))
    noise = measured_noise(run_groups, report.get("variants"))
    glance = at_a_glance(runs, report, failed, profile, stale, noise)
    verdicts = {str(row["run"]).strip("`"): row["verdict"] for row in learned.to_dict("records")}
    costs = fix_costs(with_side, report.get("variants") or [], verdicts)
    glance += f" {costs}" if costs else ""
    lines = [f"# reidlib study report: profile `{profile}`", "", "## At a glance", "", glance, "",
             description.strip(), "",
             (f"Regenerate: `./run_all.sh {profile}` (parameters: `params/{Path(profile_path).name}`; the executed "
              "notebook, parameters and `run.json` of every number sit in the stage folders beside this report)."), ""]
    if stale:
        lines += [(f"**{len(stale)} of the {len(every)} runs gathered here are stale**: their code, parameters or "
                   f"upstream results changed after they ran, so `./run_all.sh {profile}` would now produce other "
                   "numbers for them (it reruns exactly these): " + ", ".join(f"`{r}`" for r in stale) + "."), ""]
    lines += [TABLE_I, "", _md(t1.reset_index()), "", interval_note(runs, profile), ""]
    if chance:
        levels = "; ".join(f"{k} {v:.2f}" for k, v in sorted(chance.items()))
        lines += [f"Chance level, the expected rank-1 (%) of a random ranking under the same protocol: {levels}.", ""]
    lines += _side_by_side(runs, paper)
    if not published.empty:
        lines += ["## Published reference systems", "",
                  "Numbers cited from the named source, not rerun here (no intervals published).", "",
                  _md(published), ""]
    if not versus.empty:
        lines += ["## Against the references on the same split", "",
                  ("This study's row next to the reference run that names it (difference = ours minus theirs, "
                   "percentage points)."), "", _md(versus), ""]
    if not learned.empty:
        lines += _learning_section(learned, side=len(every) > len(runs))
    if report.get("ranking"):
        lines += ["## Does the paper's ranking hold?", "",
                  ranking_paragraph(runs, report["ranking"], failed, paper), ""]
    variants = variant_table(with_side, report.get("variants") or [])
    if not variants.empty:
        lines += ["## What each fix of the paper's code is worth", "",
                  ("Each fixed run beside the same model and recipe with the paper code's behaviour switched back "
                   "on (test split, %; gain = fixed minus paper code, with its paired 95 % interval over the same "
                   "queries). A run selected on the test split reports an optimistic number, so its gain "
                   "understates the fix."), "", _md(variants), ""]
    if not ft.empty:
        lines += ["## Fine-tuning (target test split)", "",
                  "Rank-1 / mAP (%) [95 % CI]; the gain is fine-tuned minus zero-shot on the same queries (paired).",
                  "", _md(ft), ""]
    lines += _distance_sections(runs)
    if not cx.empty:
        lines += ["## Complexity and measured throughput", "", _md(cx.reset_index(names="model")), ""]
    if figures:
        lines += ["## Figures", ""]
        for path in figures:
            lines += [f"![{figure_caption(Path(path))}]({Path(path).relative_to(out_dir).as_posix()})", ""]
    if report.get("notes"):
        lines += ["## Notes", ""] + [f"- {note.strip()}" for note in report["notes"]] + [""]
    provenance, total_train_s, hardware = _provenance(every, stale)
    lines += provenance
    record = {"stage": REPORT_STAGE, "profile": profile, "table_one": t1.reset_index().to_dict("records"),
              "comparison": comparison.to_dict("records"), "chance_rank1": chance,
              "head_to_head": versus.to_dict("records"), "learning_check": learned.to_dict("records"),
              "variants": variants.to_dict("records"), "at_a_glance": glance, "excluded_from_ranking": failed,
              "stale_runs": stale, "total_train_minutes": total_train_s / 60, "hardware": sorted(hardware),
              "runs": sorted(runs)}
    return "\n".join(lines) + "\n", record
