"""Minutes of training until the model is as good as torchreid's after its 20 epochs, on one machine, in one run.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/time_to_accuracy.py                  # the full run (~1.5 h, 2 cores)
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/time_to_accuracy.py --recipe R.yaml  # ours with another recipe
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/time_to_accuracy.py --recipe-from sweeps/cuhk03-osnet-speed@cos12
                                      # ours with a recipe a held-out sweep profile (one of its variants) trained
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/time_to_accuracy.py --quick --out /tmp/tta   # minutes, to try it

Two sides train OSNet x0.25 from the MSMT17 re-ID weights on the CUHK03-NP (detected) train split, one after the
other, each in its own process with the same torch threads (``--threads``):

* **peer**: torchreid 0.2.5 (deep-person-reid 1.4.0) in its benchmark env ``.peer-venv`` (``peer_env.py``), its
  recipe for 20 epochs: 256x128, P x K 16 x 4, amsgrad 1.5e-3 with a cosine schedule, LS-CE + triplet, random flip
  only, ``ImageTripletEngine`` in fp32 with 2 loader workers (``peer_speed_torchreid.py curve``).
* **ours**: ``reidlib.engine.fit`` with the recipe of ``--recipe`` (a YAML file: ``train:`` with ``fit`` keywords as
  in a profile's ``train:`` block, ``transforms:`` inside it allowed, optional ``image_size: [h, w]`` and ``kwargs:``
  for the model) and ``--set key=value`` on top; by default the peer's recipe, with ``fit``'s own defaults for the
  rest (``precision="auto"``: bf16 autocast where the CPU has native bf16, cached data path). The recipe is fixed
  before this run (chosen on identities held out of the training split); nothing here is selected on the test split.
  ``fit`` is called once per epoch (``stop_after=k``, ``resume=True``: its exact resume, the same training as one
  call) so that each epoch's weights can be kept; its ``train_seconds`` are the epoch's minutes, plus the one-off
  decode of the image cache (timed here, counted in epoch 1).

Training minutes are the epochs' training loops only: checkpoint writing and the test evaluation are outside them.
After training, every epoch's weights of both sides (epoch 0 = before training) are evaluated on the CUHK03-NP test
split with one evaluator, for the curve only: ``reidlib.evaluation.embed_and_rank`` (flip averaging, L2-normalised
features, euclidean distance, the dataset's protocol, ``--eval-precision``), each accuracy with a 95 %
identity-bootstrap interval; ours minus the target is compared on the same test queries (paired interval).

Minutes to reach an accuracy: the first epoch whose test accuracy is >= the target, the minute linearly interpolated
between that epoch's end and the previous one's (epoch 0 = minute 0); the same rule on both sides; "not reached" when
no epoch gets there. The target is the peer's accuracy after its last epoch (rank-1 and mAP apart), and
``ratio`` = peer minutes / our minutes to it.

Resumable: every epoch leaves its record (``records.json``) and weights in the work folder (default
``<work root>/time_to_accuracy/{full,quick}``; ``--work DIR``; the work root is ``work/`` or ``$REIDLIB_WORK_ROOT``);
run the same command again and it continues after the last recorded epoch of each side and evaluates only what is
not yet evaluated. Our side has one folder per recipe (``ours-<digest>``), so the runs of several recipes share one
peer run; a side whose data changed is refused (``--fresh peer|ours|all`` discards it: ``ours`` this recipe's run).

Writes ``time_to_accuracy.md``, ``.json`` and ``.png`` into ``--out`` (default ``results/benchmarks``; with
``--quick`` or ``--held-out`` the work folder).

``--held-out N`` asks the same question without the test split, to choose a recipe: both sides train on the training
split minus the N identities ``fit(num_val_ids=N, seed=0)`` holds out (those of the held-out sweep profiles) and
are evaluated on them (work folder ``<work root>/time_to_accuracy/full-held-out-N``). To time several of our
recipes against one peer run, run each with the same ``--held-out N`` (each recipe trains in its own folder). Or,
cheaper, ``--sweep PROFILE`` with ``--held-out N`` ranks every recipe of a held-out sweep profile (the same
identities and evaluator, so its committed per-epoch records hold the accuracies such a run would) by its minutes to
the peer's held-out accuracy, in a section of the report, and chooses the recipe to commit to: the one with the
fewest training minutes whose held-out mAP is no worse than the profile's own recipe's by more than
:data:`NON_INFERIORITY_MARGIN` points (the lower end of the paired 95 % interval of the difference above minus the
margin), since on a hundred identities one run's crossing of the peer's accuracy is mostly sampling noise.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any, Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from peer_env import DATA, PEER_EPOCHS, PEER_RECIPE, PEER_WORKER, WEIGHTS, peer_spec  # noqa: E402

MODEL = "osnet_x0_25"
QUICK_EPOCHS = 3
QUICK_TRAIN_IDS, QUICK_TEST_IDS = 40, 50
RECORDS = "records.json"
# fit keywords this benchmark sets itself: the recipe may not
FIXED = ("select_on", "num_val_ids", "evaluate_test", "stop_after", "resume", "progress", "device", "cache_dir",
         "max_minutes", "eval_every", "model_kwargs")
# spec keys that name places, not what is trained: a moved work folder is the same run
PLACES = ("curve_dir", "train_items", "work")
SIDE_LABELS = {"peer": "torchreid 0.2.5", "ours": "reidlib fit"}
# mAP points a sweep recipe may lose against the profile's own recipe on the held-out identities and still be chosen;
# about the half-width of one run's 95 % mAP interval on 100 identities (rank-1's is some 8 points there, too wide to
# show any recipe no worse on it)
NON_INFERIORITY_MARGIN = 5.0
# one evaluator for both sides; 95 % identity-bootstrap intervals and the per-query values paired comparisons need
EVAL_SETTINGS = {"metric": "euclidean", "normalize": True, "flip": True, "ci": 0.95, "per_query": True}
METRICS = ("rank1", "mAP")


# ---- records and resume (stdlib only: the peer worker imports these) ---------------------------------------
def read_records(folder: Path) -> list[dict]:
    """The per-epoch rows of ``folder/records.json`` (epoch 0 first), or ``[]`` when there is none yet."""
    path = Path(folder) / RECORDS
    return json.loads(path.read_text()) if path.is_file() else []


def write_records(folder: Path, rows: list[dict]) -> None:
    """Write ``folder/records.json`` through a temporary file, so an interruption leaves the old or the new one."""
    path = Path(folder) / RECORDS
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(rows, indent=1))
    os.replace(tmp, path)


def resume_point(recorded: Sequence[int], saved: Sequence[int]) -> tuple[int | None, list[int]]:
    """``(last recorded epoch or None for a fresh start, saved epochs to discard)``.

    ``recorded``: epochs with a record, which must be ``0, 1, ..., n``; ``saved``: epochs whose weights are on disk.
    The last recorded epoch must have its weights (training continues from them); weights saved after it have no
    record (the run stopped between saving and recording) and are trained again.
    """
    recorded = list(recorded)
    if recorded != list(range(len(recorded))):
        raise ValueError(f"the records hold epochs {recorded}, not 0, 1, ..., n: the work folder is damaged; "
                         "discard that side with --fresh")
    if not recorded:
        return None, sorted(saved)
    last = recorded[-1]
    if last not in saved:
        raise ValueError(f"epoch {last} is recorded but its weights are missing: the work folder is damaged; "
                         "discard that side with --fresh")
    return last, sorted(e for e in saved if e > last)


def spec_differences(old: dict, new: dict) -> list[str]:
    """Keys whose values differ between two side specs, places (:data:`PLACES`) left out; sorted."""
    keys = (set(old) | set(new)) - set(PLACES)
    return sorted(k for k in keys if old.get(k) != new.get(k))


# ---- curves, minutes to reach, ratio -------------------------------------------------------------------------
def cumulative_minutes(rows: Sequence[dict]) -> list[float]:
    """Training minutes at the end of each recorded epoch: running sum of ``train_seconds + setup_seconds`` / 60."""
    out, total = [], 0.0
    for row in rows:
        total += row["train_seconds"] + row.get("setup_seconds", 0.0)
        out.append(total / 60)
    return out


def minutes_to_reach(minutes: Sequence[float], values: Sequence[float], target: float) -> float | None:
    """The minute the curve first reaches ``target`` (module docstring's rule), or None if it never does.

    ``minutes[i]``, ``values[i]``: training minutes and accuracy at the end of epoch ``i`` (epoch 0 at minute 0).
    """
    if len(minutes) != len(values):
        raise ValueError(f"{len(minutes)} minutes but {len(values)} accuracies")
    for i, value in enumerate(values):
        if value >= target:
            if i == 0:
                return float(minutes[0])
            m0, m1, v0 = minutes[i - 1], minutes[i], values[i - 1]
            return float(m0 + (target - v0) / (value - v0) * (m1 - m0))
    return None


def minutes_to_targets(rows: Sequence[dict], target: dict) -> dict[str, float | None]:
    """Per metric of :data:`METRICS`, the minute a curve (rows ``{"minutes", "rank1", "mAP"}``, epoch 0 first)
    first reaches ``target[metric]`` (:func:`minutes_to_reach`)."""
    mins = [r["minutes"] for r in rows]
    return {m: minutes_to_reach(mins, [r[m] for r in rows], target[m]) for m in METRICS}


def ratio(peer_minutes: float | None, our_minutes: float | None) -> float | None:
    """Peer minutes / our minutes to the same accuracy; None when either side never reached it (or ours at 0)."""
    if peer_minutes is None or our_minutes is None or our_minutes <= 0:
        return None
    return peer_minutes / our_minutes


def ratio_note(peer_minutes: float | None, our_minutes: float | None) -> str | None:
    """Why there is no ratio (None when there is one)."""
    if our_minutes is None:
        return "not reached by ours"
    if peer_minutes is None:
        return "not reached by the peer"
    if our_minutes <= 0:
        return "undefined: the weights before training already reach it"
    return None


def summarize(curves: dict[str, list[dict]], per_query: dict[str, list[dict]] | None = None) -> dict:
    """Target (the peer's last epoch), each side's minutes to it and the ratios, from per-epoch rows.

    ``curves[side]``: rows ``{"epoch", "minutes", "rank1", "mAP"}`` in epoch order, epoch 0 first, for the sides
    ``"peer"`` and ``"ours"``; accuracies as fractions, with ``"rank1_ci"`` / ``"mAP_ci"`` ([lo, hi]) where measured.
    ``per_query[side]``: per epoch, the evaluation's per-query ``{"pid", "first_hit", "ap"}`` (encoded or arrays);
    with it the summary adds ``paired``: ours minus the target on the same test queries, in percentage points with a
    95 % paired identity-bootstrap interval, after our last epoch (``"final"``) and at the epoch where ours first
    reached the target (``"at_reach"``, None where it never did), and ``ratio_ci95``: the ratios' identity-bootstrap
    intervals (:func:`ratio_interval`).
    """
    final = curves["peer"][-1]
    out: dict[str, Any] = {"target": {m: final[m] for m in METRICS}, "target_epoch": final["epoch"],
                           "target_ci": {m: final.get(f"{m}_ci") for m in METRICS},
                           "minutes_to_target": {}, "ratio": {}, "ratio_note": {}}
    for side, rows in curves.items():
        out["minutes_to_target"][side] = minutes_to_targets(rows, final)
    for m in METRICS:
        pair = (out["minutes_to_target"]["peer"][m], out["minutes_to_target"]["ours"][m])
        out["ratio"][m], out["ratio_note"][m] = ratio(*pair), ratio_note(*pair)
    if per_query:
        out["paired"] = paired_to_target(curves["ours"], per_query["ours"], per_query["peer"][-1])
        out["ratio_ci95"] = ratio_interval(curves, per_query)
    return out


def ratio_interval(curves: dict[str, list[dict]], per_query: dict[str, list[dict]], n_boot: int = 1000,
                   seed: int = 0) -> dict[str, list[float] | None]:
    """Per metric, a 95 % identity-bootstrap interval ``[lo, hi]`` of :func:`summarize`'s ratio.

    Each replicate draws the evaluation's identities with replacement (the draws of
    :func:`reidlib.evaluation.bootstrap.bootstrap_means`, the same for every epoch of both sides), recomputes both
    curves on the drawn queries, takes the peer's last epoch as the replicate's target and both sides' minutes to
    it by the rule of :func:`minutes_to_reach`; a replicate where ours never reaches it counts as ratio 0, one where
    the weights before training already reach it (both sides start from them) has no ratio and is left out. It covers
    which people the evaluation sampled, not run-to-run variation of either side's training or timing. None for a
    metric when the sides were not evaluated on the same queries.
    """
    import numpy as np

    from reidlib.evaluation.bootstrap import bootstrap_means, percentile_interval
    from reidlib.stages.uncertainty import per_query_values

    stat = {"rank1": "R1", "mAP": "mAP"}
    minutes = {side: [r["minutes"] for r in curves[side]] for side in ("peer", "ours")}
    out: dict[str, list[float] | None] = {}
    for m in METRICS:
        got = {(side, i): per_query_values({"per_query": block}, stat[m])
               for side in ("peer", "ours") for i, block in enumerate(per_query[side])}
        pids = got[("peer", 0)][1]
        if pids is None or any(v is None or v[1] is None or not np.array_equal(v[1], pids) for v in got.values()):
            out[m] = None
            continue
        reps = bootstrap_means({f"{side}/{i}": v[0] for (side, i), v in got.items()}, pids, n_boot=n_boot,
                               seed=seed)
        ratios = []
        for b in range(n_boot):
            values = {side: [reps[f"{side}/{i}"][b] for i in range(len(per_query[side]))] for side in ("peer", "ours")}
            target = values["peer"][-1]
            peer_min, our_min = (minutes_to_reach(minutes[side], values[side], target) for side in ("peer", "ours"))
            if our_min is None:
                ratios.append(0.0)
            elif our_min > 0:
                ratios.append(ratio(peer_min, our_min))
        out[m] = percentile_interval(np.asarray(ratios)) if ratios else None
    return out


def paired_to_target(ours: list[dict], ours_pq: list[dict], target_pq: dict) -> dict:
    """Ours minus the peer's last epoch on the same queries, after our last epoch and where ours first reached it.

    Returns ``{"final" | "at_reach": {metric: {"epoch", "difference", "ci95", "excludes_zero"} or None}}``:
    percentage points with a 95 % paired identity-bootstrap interval (:func:`reidlib.stages.uncertainty.paired`).
    """
    from reidlib.stages.uncertainty import paired, per_query_values

    stat = {"rank1": "R1", "mAP": "mAP"}
    target = {"per_query": target_pq}

    def diff(i: int, m: str) -> dict:
        res = paired({"per_query": ours_pq[i]}, target, stat[m])
        if res is None:
            raise ValueError("the two sides were not evaluated on the same queries")
        return {"epoch": ours[i]["epoch"], **res}

    t_final = {m: float(per_query_values(target, stat[m])[0].mean()) for m in METRICS}
    reach = {m: next((i for i, r in enumerate(ours) if r[m] >= t_final[m] - 1e-12), None) for m in METRICS}
    return {"final": {m: diff(len(ours) - 1, m) for m in METRICS},
            "at_reach": {m: None if reach[m] is None else diff(reach[m], m) for m in METRICS}}


# ---- the recipe ------------------------------------------------------------------------------------------------
# what a held-out sweep's recipe holds for its own selection (which this benchmark fixes itself) or for its cache
SWEEP_ONLY = FIXED + ("cache_dir",)


def recipe_from_sweep(spec: str) -> dict:
    """The recipe file content (``train``, ``image_size``, ``kwargs``) of the one model a
    held-out sweep profile trains, for ``PROFILE`` (its own runs) or ``PROFILE@VARIANT``: the recipe the sweep
    chose on held-out identities, read from the profile itself so there is no second copy of it. Its selection
    keys (held-out ids, ``select_on``, ``eval_every``, ``max_minutes``) are dropped: this benchmark trains on all
    training ids and keeps the last epoch.

    Raises:
        SystemExit: the profile does not load, names no such variant, or does not train OSNet x0.25 from the
            MSMT17 weights this benchmark starts from.
    """
    from reidlib.pipeline import ProfileError, load_profile

    profile, _, variant = spec.partition("@")
    try:
        cfg = load_profile(profile)
    except ProfileError as err:
        raise SystemExit(f"--recipe-from {spec}: {err}") from None
    studies = {None: cfg, **(cfg.get("variant_profiles") or {})}
    if (variant or None) not in studies:
        raise SystemExit(f"--recipe-from {spec}: {profile} has no variant {variant!r}; its variants: "
                         f"{sorted(k for k in studies if k)}")
    models = studies[variant or None]["models"]
    model = models[0] if len(models) == 1 else None
    if model is None or model["name"] != MODEL or Path(model["pretrained"] or "").name != WEIGHTS.name:
        raise SystemExit(f"--recipe-from {spec}: this benchmark trains {MODEL} from {WEIGHTS.name}; the sweep must "
                         f"train that one model, it trains {[(m['name'], m['pretrained']) for m in models]}")
    train = {k: v for k, v in model["train"].items() if k not in SWEEP_ONLY}
    return {"train": train, "image_size": list(model["image_size"]), "kwargs": dict(model["kwargs"])}


def _recipe_source(args: argparse.Namespace) -> str:
    """Where our recipe came from, for the report."""
    if args.recipe_from:
        return f"the held-out sweep params/{args.recipe_from.split('@')[0].removesuffix('.yaml')}.yaml" + (
            f", variant {args.recipe_from.partition('@')[2]}" if "@" in args.recipe_from else "")
    return str(args.recipe) if args.recipe else "the peer's recipe"


def load_recipe(path: Path | None, sets: Sequence[str], epochs: int | None = None,
                sweep: str | None = None) -> tuple[dict, dict]:
    """``(fit keywords, model keywords)`` of our side: the peer's recipe, then the YAML file's (or the sweep's,
    :func:`recipe_from_sweep`), then ``--set``.

    The file holds ``train:`` (``fit`` keywords; a ``transforms:`` mapping inside is merged into them), and
    optionally ``image_size: [height, width]``, ``kwargs:`` (model keywords) and ``description:``. ``epochs``
    (``--quick``) replaces the recipe's epoch count.
    """
    import yaml

    from reidlib.engine.config import TrainConfig

    recipe: dict = {**PEER_RECIPE, "epochs": PEER_EPOCHS}
    model_kwargs: dict = {}
    if path is not None and sweep is not None:
        raise SystemExit("give --recipe or --recipe-from, not both")
    if path is not None or sweep is not None:
        data = recipe_from_sweep(sweep) if sweep else yaml.safe_load(Path(path).read_text()) or {}
        unknown = sorted(set(data) - {"train", "image_size", "kwargs", "description"})
        if unknown or not isinstance(data.get("train", {}), dict):
            raise SystemExit(f"{path}: a recipe file holds train: (fit keywords), image_size:, kwargs: and "
                             f"description:; it has {sorted(data)}")
        train = dict(data.get("train") or {})
        recipe.update({k: v for k, v in train.items() if k != "transforms"}, **(train.get("transforms") or {}))
        if data.get("image_size"):
            recipe.update(height=int(data["image_size"][0]), width=int(data["image_size"][1]))
        model_kwargs = dict(data.get("kwargs") or {})
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set takes KEY=VALUE (a YAML value), got {item!r}")
        parsed = yaml.safe_load(value)
        if isinstance(parsed, str):  # YAML 1.1 reads 3e-3 (no dot) as a string
            try:
                parsed = float(parsed)
            except ValueError:
                pass
        recipe[key] = parsed
    if epochs is not None:
        recipe["epochs"] = epochs
    fixed = sorted(set(recipe) & set(FIXED))
    if fixed:
        raise SystemExit(f"the recipe sets {fixed}, which this benchmark fixes itself (all training ids, the last "
                         "epoch, no test evaluation inside fit); remove them (model keywords go under kwargs:)")
    try:
        TrainConfig.from_kwargs(**recipe)
    except (TypeError, ValueError) as err:
        raise SystemExit(f"our recipe is not a valid fit recipe: {err}") from None
    recipe["milestones"] = list(recipe.get("milestones") or [])
    return recipe, model_kwargs


# ---- a held-out sweep's recipes against the peer's held-out accuracy ---------------------------------------------
def sweep_curves(spec: str, held_out: int) -> dict[str, dict]:
    """Each recipe of a held-out sweep profile with its committed per-epoch record, keyed by variant (``""``: the
    profile's own runs): ``{"changes": variant overrides, "trained": ISO date or None, "curve": rows}``, rows
    ``{"epoch", "minutes", "rank1", "mAP"}`` (fractions; cumulative training minutes) from epoch 1 on.

    The sweep's held-out evaluation after every epoch is ``fit``'s: the same ``num_val_ids`` identities, the same
    evaluator settings as this benchmark's (:data:`EVAL_SETTINGS`), so its accuracies are those a ``--held-out``
    run of that recipe records. Its minutes are from its own sitting.

    Raises:
        SystemExit: the profile does not load, trains another model or holds out another number of identities,
            or a recipe has no record with a held-out evaluation after every epoch (run the sweep first).
    """
    from reidlib.pipeline import ProfileError, load_profile, run_dir, train_run_name

    try:
        cfg = load_profile(spec)
    except ProfileError as err:
        raise SystemExit(f"--sweep {spec}: {err}") from None
    out = {}
    for variant, study in {"": cfg, **(cfg.get("variant_profiles") or {})}.items():
        model = study["models"][0]
        if (len(study["models"]) != 1 or model["name"] != MODEL or len(model["train_on"]) != 1
                or model["train"].get("num_val_ids") != held_out):
            raise SystemExit(f"--sweep {spec}: a sweep of one {MODEL} model on one dataset holding out {held_out} "
                             f"identities is needed; {variant or 'its own runs'} train "
                             f"{[m['name'] for m in study['models']]} on {model['train_on']} holding out "
                             f"{model['train'].get('num_val_ids')}")
        folder = run_dir(cfg, "10_train", train_run_name(model["run"], model["train_on"][0], variant or None))
        path = folder / "metrics.json"
        record = json.loads(path.read_text()) if path.is_file() else {}
        history = record.get("history") or []
        if not history or any(row.get("val_rank1") is None for row in history):
            raise SystemExit(f"--sweep {spec}: {path} holds no held-out evaluation after every epoch; run the "
                             f"sweep first: ./run_all.sh params/{spec.removesuffix('.yaml')}.yaml")
        run = folder / "run.json"
        started = json.loads(run.read_text()).get("started") if run.is_file() else None
        minutes, rows = 0.0, []
        for row in history:
            minutes += row["train_seconds"] / 60
            rows.append({"epoch": row["epoch"], "minutes": minutes, "rank1": row["val_rank1"],
                         "mAP": row["val_mAP"]})
        out[variant] = {"changes": (cfg.get("variants") or {}).get(variant, {}),
                        "trained": started[:10] if started else None,
                        "curve": rows,
                        "held_out": (record.get("evaluations") or {}).get("held-out")}
    return out


def rank_sweep(summary: dict, peer: list[dict], recipes: dict[str, dict],
               margin: float = NON_INFERIORITY_MARGIN) -> dict:
    """Each sweep recipe's minutes to the peer's final accuracy (``summary["target"]``), its two ratios to the
    peer's minutes, and its held-out rank-1 / mAP minus the profile's own recipe's (``recipes[""]``) on the same
    identities with a paired 95 % interval; the chosen recipe is the one with the fewest training minutes among
    those whose mAP difference has its lower end above ``-margin`` points (the profile's own recipe always counts).

    ``peer``: the peer's rows (epoch 0 first); its epoch 0 (the shared starting weights) starts every recipe's curve.
    A recipe without per-query held-out records cannot be compared and is never chosen.
    Returns ``{"recipes": [{"variant", "changes", "trained", "epochs", "minutes", "final", "minutes_to_target",
    "ratio", "smaller", "vs_own", "non_inferior"}], "chosen": variant or None, "margin": margin}``, ``vs_own``
    ``{"R1": paired, "mAP": paired}`` (:func:`reidlib.stages.uncertainty.paired`, None where not comparable);
    recipes sorted chosen-eligible first, then by training minutes.
    """
    from reidlib.stages.uncertainty import paired

    start = peer[0]
    own = (recipes.get("") or {}).get("held_out")
    rows = []
    for variant, rec in recipes.items():
        curve = [{"minutes": 0.0, **{m: start[m] for m in METRICS}}] + rec["curve"]
        to = minutes_to_targets(curve, summary["target"])
        rat = {m: ratio(summary["minutes_to_target"]["peer"][m], to[m]) for m in METRICS}
        smaller = None if None in rat.values() else min(rat.values())
        mine = rec.get("held_out")
        vs_own = ({stat: (paired(mine, own, stat) if mine and own else None) for stat in ("R1", "mAP")}
                  if variant else None)
        eligible = not variant or bool(vs_own["mAP"] and vs_own["mAP"]["ci95"][0] > -margin)
        rows.append({"variant": variant, "changes": rec["changes"], "trained": rec["trained"],
                     "epochs": curve[-1]["epoch"], "minutes": curve[-1]["minutes"],
                     "final": {m: curve[-1][m] for m in METRICS}, "minutes_to_target": to, "ratio": rat,
                     "smaller": smaller, "vs_own": vs_own, "non_inferior": eligible})
    rows.sort(key=lambda r: (not r["non_inferior"], r["minutes"], r["variant"]))
    return {"recipes": rows, "chosen": rows[0]["variant"] if rows and rows[0]["non_inferior"] else None,
            "margin": margin}


OWN_RUNS = "the profile's own recipe"  # the sweep recipe that is no variant


def sweep_lines(report: dict) -> list[str]:
    """The report section ranking a held-out sweep's recipes: minutes to the peer's held-out accuracy, and the
    recipe chosen by the non-inferiority rule of :func:`rank_sweep`."""
    from reidlib.stages.seeds import _changes as variant_changes  # the sweep report's own wording of a variant
    from reidlib.stages.uncertainty import fmt_diff

    sw = report.get("sweep")
    if not sw:
        return []
    peer = report["summary"]["minutes_to_target"]["peer"]
    margin = sw.get("margin", NON_INFERIORITY_MARGIN)
    chosen = sw["chosen"]
    lines = ["## The sweep's recipes against the peer's held-out accuracy", "",
             f"Each recipe of `params/{sw['profile']}.yaml`, from its committed run (the same held-out identities and "
             "evaluator as above, so the same accuracies a run of it here would record; its training minutes from "
             f"its own sitting): minutes to the peer's final held-out rank-1 and mAP (the peer: {_mins(peer['rank1'])}"
             f" / {_mins(peer['mAP'])}), the ratios, and its held-out rank-1 / mAP at its selected epoch minus the "
             "profile's own recipe's on the same identities (paired 95 % interval). On a hundred identities whether "
             "one run crosses the peer's accuracy is mostly sampling noise, so the benchmark commits to the recipe "
             f"with the fewest training minutes whose mAP is no worse than the profile's own recipe's by more than "
             f"{margin:g} points (the lower end of the interval above -{margin:g}; rank-1's intervals, some 8 points "
             "either side, are too wide for such a rule)"
             + (f": **{chosen or OWN_RUNS}**." if chosen is not None else "; none qualifies."),
             "",
             "| recipe | changes | trained | epochs | minutes | last epoch R1 / mAP | minutes to R1 / mAP | "
             "ratio R1 / mAP | R1 / mAP minus the profile's recipe (selected epoch, paired 95 %) |",
             "|---|---|---|---:|---:|---|---|---|---|"]
    for r in sw["recipes"]:
        changes = variant_changes(r["changes"])
        rat = " / ".join("-" if r["ratio"][m] is None else f"×{r['ratio'][m]:.2f}" for m in METRICS)
        vs = r.get("vs_own")
        diff = "-" if not vs else f"{fmt_diff(vs['R1'])} / {fmt_diff(vs['mAP'])}"
        name = r["variant"] or "(profile)"
        lines.append(f"| {f'**{name}**' if r['variant'] == chosen else name} | {changes} | {r['trained'] or '-'} | "
                     f"{r['epochs']} | {r['minutes']:.1f} | "
                     f"{_pct(r['final']['rank1'])} / {_pct(r['final']['mAP'])} | "
                     f"{_mins(r['minutes_to_target']['rank1'])} / {_mins(r['minutes_to_target']['mAP'])} | {rat} | "
                     f"{diff} |")
    return lines + [""]


# ---- the children (our side, in the project venv) --------------------------------------------------------------
def _ours_curve(spec: dict) -> dict:
    """Train our side epoch by epoch (see the module docstring); records and weights in ``spec["curve_dir"]``."""
    import torch

    from reidlib.data import ImageCache
    from reidlib.engine import fit
    from reidlib.models import build_model
    from reidlib.models.weights import read_state_dict

    out = Path(spec["curve_dir"])
    fit_dir, cache_dir = out / "fit", out / "cache"
    items = [tuple(it) for it in json.loads(Path(spec["train_items"]).read_text())]
    recipe, epochs = dict(spec["recipe"]), int(spec["recipe"]["epochs"])
    model_kwargs = {**spec["model_kwargs"], "pretrained": spec["weights"]}
    records = read_records(out)
    last, stale = resume_point([r["epoch"] for r in records],
                               sorted(int(p.stem.split("-")[1]) for p in out.glob("epoch-*.pt")))
    for epoch in stale:
        (out / f"epoch-{epoch}.pt").unlink()
    if last is None:
        num_classes = len({pid for _, pid, _ in items})
        torch.save(build_model(spec["model"], num_classes, **model_kwargs).state_dict(), out / "epoch-0.pt")
        for folder in (fit_dir, cache_dir):  # a fresh start trains from scratch and times the cache's decode
            shutil.rmtree(folder, ignore_errors=True)
        t0 = time.perf_counter()
        ImageCache.build([p for p, _, _ in items], recipe["height"], recipe["width"], cache_dir=cache_dir)
        records = [{"epoch": 0, "train_seconds": 0.0, "setup_seconds": 0.0, "cache_seconds":
                    time.perf_counter() - t0, "images": 0, "checkpoint": "epoch-0.pt", "load": list(os.getloadavg()),
                    "time": time.time()}]
        write_records(out, records)
        last = 0
    history = json.loads((fit_dir / "history.json").read_text()) if (fit_dir / "history.json").is_file() else []
    if len(history) not in (last, last + 1):
        raise SystemExit(f"fit's run in {fit_dir} is at epoch {len(history)} but the records stop at epoch {last}: "
                         "discard our side with --fresh ours")
    for epoch in range(last + 1, epochs + 1):
        if len(history) >= epoch:  # trained and saved by fit, stopped before its record: take it from last.pt
            row, extra = history[epoch - 1], 0.0
            state = read_state_dict(fit_dir / "last.pt")
        else:
            res = fit(spec["model"], items, out_dir=fit_dir, **recipe, stop_after=epoch, resume=True,
                      select_on="last", evaluate_test=False, progress=False, device="cpu", num_workers=0,
                      cache_dir=str(cache_dir), model_kwargs=model_kwargs)
            row, run = res.history[-1], res.meta["runs"][-1]
            cache = run.get("image_cache") or {}
            extra = 0.0 if cache.get("hit", True) else float(cache.get("seconds", 0.0))  # a cache fit had to build
            state = res.model.state_dict()
        torch.save(state, out / f"epoch-{epoch}.pt")
        setup = extra or (records[0]["cache_seconds"] if epoch == 1 else 0.0)  # fit's own decode replaces ours
        records.append({"epoch": epoch, "train_seconds": row["train_seconds"], "setup_seconds": setup,
                        "images": row["images"], "checkpoint": f"epoch-{epoch}.pt", "load": list(os.getloadavg()),
                        "time": time.time(), "input_size": row.get("input_size")})
        write_records(out, records)
        print(f"ours epoch {epoch}/{epochs}: {row['train_seconds']:.1f} s, {row['images_per_s']:.1f} img/s",
              flush=True)
    result = json.loads((fit_dir / "result.json").read_text())
    return {"epochs": len(records) - 1, "precision": result["meta"]["runs"][-1]["precision"],
            "data_path": result["meta"]["runs"][-1]["data_path"]}


def _evaluate(spec: dict) -> dict:
    """Evaluate every recorded epoch of each side not yet evaluated; results in ``<curve_dir>/evals.json``."""
    import numpy as np
    import torch

    from reidlib.data import build_transforms
    from reidlib.evaluation import embed_and_rank
    from reidlib.models import build_model
    from reidlib.models.weights import read_state_dict
    from reidlib.runtime import resolve_precision
    from reidlib.stages.uncertainty import encode_per_query

    test = json.loads(Path(spec["test"]).read_text())
    settings = {**spec["eval"], "test_sha": spec["test_sha"]}
    for side, side_spec in spec["sides"].items():
        folder = Path(side_spec["curve_dir"])
        path = folder / "evals.json"
        evals = json.loads(path.read_text()) if path.is_file() else {}
        if evals.get("settings") != settings:
            evals = {"settings": settings, "epochs": {}}
        for row in read_records(folder):
            key = str(row["epoch"])
            if evals["epochs"].get(key, {}).get("record_time") == row["time"]:  # these very weights: done
                continue
            state = read_state_dict(folder / row["checkpoint"])
            model = build_model(MODEL, int(state["classifier.weight"].shape[0]), **side_spec["model_kwargs"])
            model.load_state_dict(state)
            t0 = time.perf_counter()
            res = embed_and_rank(model, test["query"], test["gallery"], EVAL_SETTINGS, protocol=test["protocol"],
                                 transform=build_transforms(side_spec["height"], side_spec["width"], is_train=False),
                                 precision=spec["eval"]["precision"], device="cpu").result
            cmc = np.asarray(res["cmc"], dtype=float).ravel()
            evals["epochs"][key] = {"rank1": float(cmc[0]), "rank5": float(cmc[4]), "rank10": float(cmc[9]),
                                    "mAP": float(res["mAP"]), "mINP": float(res["mINP"]),
                                    "num_valid_queries": int(res["num_valid_queries"]), "ci": res["ci"],
                                    "per_query": encode_per_query(res["per_query"]),
                                    "seconds": time.perf_counter() - t0, "record_time": row["time"]}
            tmp = path.with_name("evals.json.tmp")
            tmp.write_text(json.dumps(evals, indent=1))
            os.replace(tmp, path)
            print(f"{side} epoch {key}: test R1 {100 * cmc[0]:.1f}%, mAP {100 * res['mAP']:.1f}%", flush=True)
    return {"precision": resolve_precision(spec["eval"]["precision"], torch.device("cpu"))}


def child(task: str, spec_file: str, out_file: str) -> None:
    """Run one of our side's tasks (``ours`` or ``evaluate``) with the spec's threads; its JSON into ``out_file``."""
    import torch

    spec = json.loads(Path(spec_file).read_text())
    torch.set_num_threads(spec["threads"])
    result = {"ours": _ours_curve, "evaluate": _evaluate}[task](spec)
    result.update(torch_threads=torch.get_num_threads(), torch=torch.__version__)
    Path(out_file).write_text(json.dumps(result))


# ---- the run -------------------------------------------------------------------------------------------------
def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def ours_folder(recipe: dict, model_kwargs: dict) -> str:
    """Our side's folder name in the work folder, one per recipe (``ours-<digest of recipe and model kwargs>``), so
    that runs of several recipes (bf16 and fp32, a sweep's variants) keep their records beside one peer run."""
    return "ours-" + _sha({"recipe": recipe, "model_kwargs": model_kwargs})[:10]


def prepare(args: argparse.Namespace, work: Path, recipe: dict, model_kwargs: dict) -> dict:
    """Write the training items, the evaluation split (the test split, or with ``--held-out N`` the N identities
    ``fit(num_val_ids=N, seed=0)`` holds out of the training split) and each side's spec; return
    ``{"peer": spec, "ours": spec}``."""
    from reidlib.data import build_dataset, relabel
    from reidlib.engine.trainer import split_training_data

    cuhk = build_dataset("folder", DATA / "cuhk03-np-detected")
    train, query, gallery, protocol = cuhk.train, cuhk.query, cuhk.gallery, cuhk.protocol
    if args.held_out:  # exactly fit's held-out identities, so a held-out sweep and this run see the same ones
        train, (query, gallery), _ = split_training_data(cuhk, num_val_ids=args.held_out, seed=0)
        protocol = "market"  # fit's protocol for held-out ids (each query keeps a match from another camera)
    if args.quick:
        keep = set(sorted({pid for _, pid, _ in train})[:QUICK_TRAIN_IDS])
        train = relabel([it for it in train if it[1] in keep])
        keep = set(sorted({pid for _, pid, _ in query})[:QUICK_TEST_IDS])
        query, gallery = [it for it in query if it[1] in keep], [it for it in gallery if it[1] in keep]
    train = [list(it) for it in train]
    work.mkdir(parents=True, exist_ok=True)
    (work / "train_items.json").write_text(json.dumps(train))
    test = {"query": [list(it) for it in query], "gallery": [list(it) for it in gallery], "protocol": protocol}
    (work / "test.json").write_text(json.dumps(test))
    base = {"train_items": str(work / "train_items.json"), "train_sha": _sha(train), "weights": str(WEIGHTS),
            "threads": args.threads, "seed": 0}
    epochs = QUICK_EPOCHS if args.quick else PEER_EPOCHS
    sides = {"peer": {**base, **peer_spec(), "epochs": epochs, "workers": 2, "model_kwargs": {},
                      "curve_dir": str(work / "peer")},
             "ours": {**base, "model": MODEL, "recipe": recipe, "model_kwargs": model_kwargs,
                      "height": recipe["height"], "width": recipe["width"],
                      "curve_dir": str(work / ours_folder(recipe, model_kwargs))}}
    for side, spec in sides.items():
        folder = Path(spec["curve_dir"])
        if side in args.fresh or "all" in args.fresh:
            shutil.rmtree(folder, ignore_errors=True)
        old = folder / "spec.json"
        if old.is_file():
            diff = spec_differences(json.loads(old.read_text()), spec)
            if diff:
                raise SystemExit(f"{folder} holds a run of the {side} side with other {diff}; continue it with its "
                                 f"own settings, give another --work, or discard it with --fresh {side}")
        folder.mkdir(parents=True, exist_ok=True)
        old.write_text(json.dumps(spec, indent=1))
    ev = {"threads": args.threads, "test": str(work / "test.json"), "test_sha": _sha(test),
          "eval": {**EVAL_SETTINGS, "precision": args.eval_precision},
          "sides": {s: {k: sides[s].get(k) for k in ("curve_dir", "model_kwargs", "height", "width")}
                    for s in sides}}
    (work / "spec.json").write_text(json.dumps(ev, indent=1))
    return sides


def _evals(folder: Path) -> dict:
    return json.loads((folder / "evals.json").read_text())["epochs"]


def side_curve(folder: Path) -> list[dict]:
    """Per-epoch rows of one side: records joined with their test evaluation, cumulative minutes added.

    Accuracies are fractions; ``rank1_ci`` / ``mAP_ci`` their 95 % identity-bootstrap intervals (None when the
    evaluation had none).
    """
    records, evals = read_records(folder), _evals(folder)
    rows = []
    for rec, minutes in zip(records, cumulative_minutes(records)):
        ev = evals[str(rec["epoch"])]
        ci = ev.get("ci") or {}
        rows.append({"epoch": rec["epoch"], "minutes": minutes, "train_seconds": rec["train_seconds"],
                     "setup_seconds": rec.get("setup_seconds", 0.0), "rank1": ev["rank1"], "mAP": ev["mAP"],
                     "rank1_ci": ci.get("rank1"), "mAP_ci": ci.get("mAP"),
                     "rank5": ev.get("rank5"), "mINP": ev.get("mINP"), "load_1min": rec["load"][0],
                     "eval_seconds": ev["seconds"], "ended_at": rec.get("time"),
                     "input_size": rec.get("input_size")})
    return rows


def training_load(folder: Path) -> dict[str, list[float]]:
    """Load average (1, 5, 15 min) recorded when a side's epoch 0 was saved and when its last epoch ended: the
    machine's business while that side trained, whichever invocation of this benchmark trained it."""
    records = read_records(folder)
    return {"start": list(records[0]["load"]), "end": list(records[-1]["load"])}


def side_per_query(folder: Path) -> list[dict] | None:
    """Per epoch (in record order), the per-query block of its test evaluation; None if any epoch lacks one."""
    evals = _evals(folder)
    blocks = [evals[str(rec["epoch"])].get("per_query") for rec in read_records(folder)]
    return None if any(b is None for b in blocks) else blocks


def _pct(v: float | None) -> str:
    return "" if v is None else f"{100 * v:.1f}"


def _mins(v: float | None) -> str:
    return "not reached" if v is None else f"{v:.1f}"


def _with_ci(v: float | None, ci: Sequence[float] | None) -> str:
    """A fraction as percent, with its interval ``[lo, hi]`` (fractions) when there is one."""
    return _pct(v) + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


def _diff(d: dict | None) -> str:
    if d is None:
        return "not reached"
    lo, hi = d["ci95"]
    return f"{d['difference']:+.1f} [{lo:+.1f}, {hi:+.1f}] (epoch {d['epoch']})"


def _on(report: dict) -> str:
    """The evaluation split's adjective: ``"held-out"`` for a ``--held-out`` run, else ``"test"``."""
    return "held-out" if report.get("evaluation", {}).get("held_out") else "test"


SPLIT_WORDS = {"test": "test split", "held-out": "held-out identities"}  # the split named by its adjective


def noise_lines(s: dict, on: str = "test") -> list[str]:
    """What the evaluation split's sampling noise says about the target and the two sides (needs ``paired``);
    ``on``: ``"test"`` or ``"held-out"``, the split's adjective."""
    ci = s.get("target_ci") or {}
    lines = []
    if ci.get("rank1") and ci.get("mAP"):
        lines.append(f"The target is one run's accuracy on the {on} identities: the peer's final rank-1 "
                     f"{_with_ci(s['target']['rank1'], ci['rank1'])}, mAP {_with_ci(s['target']['mAP'], ci['mAP'])} "
                     "(95 % identity-bootstrap intervals).")
    pair = s.get("paired")
    if pair:
        lines.append(f"Ours minus the target on the same {on} queries, in points with a 95 % paired "
                     f"identity-bootstrap interval: after our last epoch rank-1 {_diff(pair['final']['rank1'])}, "
                     f"mAP {_diff(pair['final']['mAP'])}; at the first epoch at or above the target rank-1 "
                     f"{_diff(pair['at_reach']['rank1'])}, mAP {_diff(pair['at_reach']['mAP'])}. A crossing of the "
                     "target is within its noise by construction; the difference after the last epoch says whether "
                     "ours ends above the peer beyond it.")
    return lines


def ratio_ci_lines(s: dict) -> list[str]:
    """The ratios' bootstrap intervals (:func:`ratio_interval`), where the summary has them."""
    ci = s.get("ratio_ci95") or {}
    if not (ci.get("rank1") and ci.get("mAP")):
        return []
    def bound(v: float) -> str:
        return "×0 (not reached)" if v == 0 else f"×{v:.2f}"

    return ["", f"95 % identity-bootstrap intervals of the ratios: rank-1 {bound(ci['rank1'][0])} to "
            f"{bound(ci['rank1'][1])}, mAP {bound(ci['mAP'][0])} to {bound(ci['mAP'][1])} (every epoch of both sides "
            "evaluated on the same resampled identities, the peer's last epoch the target of each replicate; a "
            "replicate where ours never reaches the target counts as 0). They cover which people the evaluation "
            "sampled, not run-to-run variation of either side's training or timing."]


def _trained_span(curve: list[dict]) -> str:
    """``"2026-12-05 03:44 to 04:21"``: when a side's epoch 0 was recorded and its last epoch ended (UTC)."""
    from datetime import datetime, timezone

    start, end = curve[0].get("ended_at"), curve[-1].get("ended_at")
    if start is None or end is None:
        return "-"
    a, b = (datetime.fromtimestamp(t, tz=timezone.utc) for t in (start, end))
    return f"{a:%Y-%m-%d %H:%M} to {b:%H:%M}" if a.date() == b.date() else f"{a:%Y-%m-%d %H:%M} to {b:%Y-%m-%d %H:%M}"


def markdown(report: dict) -> str:
    """The report page: setting, headline table, figure, the per-epoch curves, the recipes."""
    hw, s, sides = report["hardware"], report["summary"], report["sides"]
    bf16 = ("native bf16" + (", AMX" if hw["amx"] else "")) if hw["native_bf16"] else "no native bf16"
    la = report["load_average"]
    load = "; ".join(f"{sides[k]['label']} {', '.join(f'{v:.2f}' for v in la[k]['start'])} at its start and "
                     f"{', '.join(f'{v:.2f}' for v in la[k]['end'])} at its end" for k in ("peer", "ours"))
    on = _on(report)
    title = "# Time to accuracy: reidlib against torchreid on CUHK03-NP" + (
        " (held-out training identities)" if on == "held-out" else "")
    lines = [title, "", f"Command: `{report['command']}`", "",
             f"{hw['cpu']}, {hw['cores']} cores ({bf16}), {hw['threads']} torch threads on each side; torch "
             f"{report['versions'].get('torch', '?')}, torchreid {report['versions'].get('torchreid', '?')}. The sides "
             f"trained one after the other (when: in the table). Load average (1, 5, 15 min) while training: {load}; "
             "per epoch in the tables."
             + (" **Quick mode: a subset and a few epochs; not a measurement to quote.**" if report["quick"] else ""),
             "", report["method"], "",
             "| | " + " | ".join(sides[k]["label"] for k in ("peer", "ours")) + " |", "|---|---|---|"]
    rows = [("trained (UTC)", lambda d, k: _trained_span(d["curve"])),
            ("precision", lambda d, k: d["precision"]),
            ("epochs", lambda d, k: str(d["curve"][-1]["epoch"])),
            ("training minutes", lambda d, k: f"{d['curve'][-1]['minutes']:.1f}"),
            (f"{on} rank-1 / mAP after the last epoch (%)",
             lambda d, k: f"{_with_ci(d['curve'][-1]['rank1'], d['curve'][-1].get('rank1_ci'))} / "
                          f"{_with_ci(d['curve'][-1]['mAP'], d['curve'][-1].get('mAP_ci'))}"),
            (f"minutes to the peer's final rank-1 ({_pct(s['target']['rank1'])}%)",
             lambda d, k: _mins(s["minutes_to_target"][k]["rank1"])),
            (f"minutes to the peer's final mAP ({_pct(s['target']['mAP'])}%)",
             lambda d, k: _mins(s["minutes_to_target"][k]["mAP"]))]
    for name, cell in rows:
        lines.append(f"| {name} | " + " | ".join(cell(sides[k], k) for k in ("peer", "ours")) + " |")
    r, why = s["ratio"], s["ratio_note"]
    lines += ["", "Ratio (peer minutes / our minutes to the peer's final accuracy): rank-1 "
              + (why["rank1"] if r["rank1"] is None else f"**×{r['rank1']:.2f}**") + ", mAP "
              + (why["mAP"] if r["mAP"] is None else f"**×{r['mAP']:.2f}**") + ".", *ratio_ci_lines(s), ""]
    noise = noise_lines(s, on)
    lines += ([" ".join(noise), ""] if noise else []) + [
              f"![{on} accuracy against training minutes](time_to_accuracy.png)", "", *sweep_lines(report),
              "## Per epoch", "",
              f"Minutes: cumulative training minutes at the end of the epoch; R1 / mAP on the {SPLIT_WORDS[on]} in % "
              "[95 % identity-bootstrap interval]; load: 1-minute load average at the end of the epoch"
              + ("; trained at: the epoch's training input size in pixels (progressive resizing; every evaluation "
                 "at the full size)" if any(c.get("input_size") for c in sides["ours"]["curve"]) else "")
              + ".", ""]
    for k in ("peer", "ours"):
        curve = sides[k]["curve"]
        sized = any(c.get("input_size") for c in curve)  # progressive resizing: each epoch's training input size
        lines += [f"**{sides[k]['label']}**", "", "| epoch | minutes | R1 | mAP | load |" + (" trained at |" if sized
                  else ""), "|---|---|---|---|---|" + ("---|" if sized else "")]
        lines += [f"| {c['epoch']} | {c['minutes']:.2f} | {_with_ci(c['rank1'], c.get('rank1_ci'))} | "
                  f"{_with_ci(c['mAP'], c.get('mAP_ci'))} | {c['load_1min']:.2f} |"
                  + (f" {'×'.join(str(v) for v in c['input_size']) if c.get('input_size') else '-'} |" if sized
                     else "") for c in curve]
        lines.append("")
    lines += ["## Recipes", "", f"- peer: `{json.dumps(sides['peer']['recipe'])}`",
              f"- ours: `{json.dumps(sides['ours']['recipe'])}`"
              + (f" (from {sides['ours']['recipe_source']})" if sides["ours"].get("recipe_source") else "")
              + (f", model `{json.dumps(sides['ours']['model_kwargs'])}`" if sides["ours"]["model_kwargs"] else "")]
    return "\n".join(lines) + "\n"


def figure(report: dict, path: Path) -> None:
    """Test rank-1 and mAP (%) against cumulative training minutes, both sides, the peer's final value dashed."""
    from matplotlib.patches import Patch

    from reidlib.figure_style import DEFAULT_CYCLE, grid, handle, legend_under
    from reidlib.plots import save_figure

    fig, axes = grid(2, panel_size=(4.6, 3.4), extra_height=0.5)
    styles = {k: {"color": DEFAULT_CYCLE[i], "linestyle": "-"} for i, k in enumerate(("peer", "ours"))}
    s = report["summary"]
    for ax, metric, name in zip(axes, ("rank1", "mAP"), ("Rank-1", "mAP")):
        for side in ("peer", "ours"):
            curve = report["sides"][side]["curve"]
            minutes = [c["minutes"] for c in curve]
            ax.plot(minutes, [100 * c[metric] for c in curve], marker="o", markersize=3, **styles[side])
            if all(c.get(f"{metric}_ci") for c in curve):
                ax.fill_between(minutes, [100 * c[f"{metric}_ci"][0] for c in curve],
                                [100 * c[f"{metric}_ci"][1] for c in curve], color=styles[side]["color"],
                                alpha=0.15, linewidth=0)
            reach = s["minutes_to_target"][side][metric]
            if reach is not None:
                ax.plot([reach], [100 * s["target"][metric]], marker="x", markersize=8, color=styles[side]["color"])
        ax.axhline(100 * s["target"][metric], color="0.4", linestyle="--", linewidth=1)
        ax.set_xlabel("training minutes")
        on = _on(report)
        ax.set_ylabel(f"{name} on the {SPLIT_WORDS[on]} (%)")
        ax.set_title(f"CUHK03-NP {on} {name}")
        ax.grid(alpha=0.3)
    handles = [handle(f"{report['sides'][k]['label']} ({report['sides'][k]['precision']})", styles[k], marker="o")
               for k in ("peer", "ours")]
    handles.append(handle("the peer's final accuracy (x: reached)", {"color": "0.4", "linestyle": "--"}))
    if any(c.get("rank1_ci") for k in ("peer", "ours") for c in report["sides"][k]["curve"]):
        handles.append(Patch(facecolor="0.4", alpha=0.15, label="95 % identity-bootstrap interval"))
    legend_under(fig, handles)
    save_figure(fig, path)


METHOD = ("Both sides start from the MSMT17 OSNet x0.25 weights and train on the same {train}. "
          "Training minutes count the epochs' training loops only (ours: plus the one-off image-cache decode, in "
          "epoch 1); checkpoints and the per-epoch {on} evaluation are outside them. Each epoch's weights (epoch 0 "
          "= before training) are evaluated afterwards on {split} with the same evaluator for both sides "
          "(reidlib embed_and_rank: flip averaging, L2-normalised features, euclidean, {precision}), for the curve "
          "only: nothing is selected on it. Minutes to reach an accuracy: the first epoch at or above it, the minute "
          "linearly interpolated between that epoch's end and the previous one's (epoch 0 at minute 0), the same "
          "rule on both sides; \"not reached\" if no epoch gets there. Target: the peer's {on} accuracy after its "
          "last epoch; ratio = peer minutes / our minutes to it.")


def method_text(precision: str, held_out: int = 0) -> str:
    """The report's method paragraph, for a test run or a ``--held-out N`` run."""
    if not held_out:
        return METHOD.format(train="CUHK03-NP training split", on="test", split="the test split",
                             precision=precision)
    return METHOD.format(train=f"CUHK03-NP training split minus {held_out} identities held out of it (the ones "
                               f"fit(num_val_ids={held_out}, seed=0) holds out, as in the held-out sweep profiles)",
                         on="held-out", split=f"those {held_out} identities (one query image each, the rest "
                                               "gallery; no test image is read)", precision=precision)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", type=Path, default=None, help="our recipe (YAML; default: the peer's recipe)")
    ap.add_argument("--recipe-from", default=None, metavar="PROFILE[@VARIANT]",
                    help="our recipe from a held-out sweep profile (its own runs, or one variant's)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="fit keywords on top of the recipe")
    ap.add_argument("--quick", action="store_true",
                    help=f"{QUICK_TRAIN_IDS} training ids, {QUICK_TEST_IDS} test ids, {QUICK_EPOCHS} epochs a side")
    ap.add_argument("--held-out", type=int, default=0, metavar="N",
                    help="train both sides without N training identities and evaluate on those instead of the test "
                         "split (the identities fit(num_val_ids=N) holds out): a recipe's time to the peer's accuracy "
                         "judged without the test split")
    ap.add_argument("--sweep", default=None, metavar="PROFILE",
                    help="with --held-out: rank the committed runs of this held-out sweep profile by their time to "
                         "the peer's held-out accuracy (a section of the report)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of each side")
    ap.add_argument("--eval-precision", default="auto", choices=("auto", "fp32", "bf16"),
                    help="precision of the test evaluation (both sides; its time is not counted)")
    ap.add_argument("--work", type=Path, default=None,
                    help="work folder (default <work root>/time_to_accuracy/{full,quick})")
    ap.add_argument("--fresh", nargs="*", default=[], choices=("peer", "ours", "all"),
                    help="discard these sides' records and weights first")
    ap.add_argument("--rebuild-peer", action="store_true", help="make .peer-venv afresh")
    ap.add_argument("--out", type=Path, default=None, help="report folder (default results/benchmarks; "
                                                           "--quick or --held-out: the work folder)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args, rest = ap.parse_known_args(argv)
    if args.child:
        child(*rest)
        return 0
    if rest:
        ap.error(f"unrecognized arguments: {' '.join(rest)}")
    # stopped by a signal: exit through an exception, which makes subprocess.run kill the side it is waiting on
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    from benchlib import command_line
    from peer_env import ensure_peer_env, hardware, run_side

    from reidlib.engine.records import write_json
    from reidlib.io import write_atomic
    from reidlib.paths import work_root

    for need in (DATA / "cuhk03-np-detected", WEIGHTS):
        if not need.exists():
            raise SystemExit(f"missing {need}: this benchmark needs ../shared/data and ../shared/weights "
                             "(or $REIDLIB_SHARED)")
    recipe, model_kwargs = load_recipe(args.recipe, args.set, QUICK_EPOCHS if args.quick else None,
                                       args.recipe_from)
    if args.held_out < 0:
        ap.error(f"--held-out takes a number of identities >= 1 (0: the test split), got {args.held_out}")
    if args.sweep and not args.held_out:
        ap.error("--sweep ranks a held-out sweep's recipes on held-out identities: give --held-out N as well")
    recipes = sweep_curves(args.sweep, args.held_out) if args.sweep else None
    kind = ("quick" if args.quick else "full") + (f"-held-out-{args.held_out}" if args.held_out else "")
    work = (args.work or work_root() / "time_to_accuracy" / kind).resolve()
    sides = prepare(args, work, recipe, model_kwargs)
    peer_python = ensure_peer_env(args.rebuild_peer)
    me, ours, t = Path(__file__), Path(sys.executable), args.threads
    runs = {}
    for side, python, script in (("peer", peer_python, PEER_WORKER), ("ours", ours, me)):
        folder = Path(sides[side]["curve_dir"])
        done = len(read_records(folder)) - 1
        epochs = sides[side]["epochs"] if side == "peer" else recipe["epochs"]
        print(f"{side}: {max(done, 0)} of {epochs} epochs recorded in {folder}", flush=True)
        runs[side] = run_side(python, script, "ours" if side == "ours" else "curve", folder, t, f"{side} curve",
                              child_flag=side == "ours", stream=True)
    eval_precision = run_side(ours, me, "evaluate", work, t, "evaluate", child_flag=True, stream=True)["precision"]

    folders = {side: Path(sides[side]["curve_dir"]) for side in ("peer", "ours")}
    curves = {side: side_curve(folder) for side, folder in folders.items()}
    per_query = {side: side_per_query(folder) for side, folder in folders.items()}
    summary = summarize(curves, per_query if all(per_query.values()) else None)
    peer_recipe = {**PEER_RECIPE, "epochs": sides["peer"]["epochs"], "precision": "fp32",
                   "loader": "torchreid DataLoader, 2 workers"}
    report = {"command": command_line(__file__, argv).strip(), "quick": args.quick, "hardware": hardware(t),
              "versions": {"torch": runs["ours"].get("torch"), "torchreid": runs["peer"].get("versions", {})
                           .get("torchreid")},
              "load_average": {side: training_load(folder) for side, folder in folders.items()},
              "method": method_text(f"in {eval_precision}", args.held_out),
              "evaluation": {**EVAL_SETTINGS, "precision": eval_precision, "held_out": args.held_out,
                             "split": (f"{args.held_out} identities held out of the CUHK03-NP (detected) training "
                                       "split" if args.held_out else "CUHK03-NP (detected) test")
                             + (f", first {QUICK_TEST_IDS} ids" if args.quick else "")},
              "sides": {"peer": {"label": SIDE_LABELS["peer"], "precision": "fp32", "threads": t,
                                 "recipe": peer_recipe, "model_kwargs": {}, "curve": curves["peer"]},
                        "ours": {"label": SIDE_LABELS["ours"], "precision": runs["ours"]["precision"], "threads": t,
                                 "recipe": recipe, "model_kwargs": model_kwargs, "curve": curves["ours"],
                                 "recipe_source": _recipe_source(args)}},
              "summary": summary, "ratio": summary["ratio"]}
    if recipes is not None:
        report["sweep"] = {"profile": args.sweep.removesuffix(".yaml"),
                           **rank_sweep(summary, curves["peer"], recipes)}
    out = args.out or (work if args.quick or args.held_out else ROOT / "results" / "benchmarks")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "time_to_accuracy.json", report)
    write_atomic(out / "time_to_accuracy.md", markdown(report))
    figure(report, out / "time_to_accuracy.png")
    r = summary["ratio"]
    print(f"ratio to the peer's final rank-1: {r['rank1'] if r['rank1'] is None else round(r['rank1'], 2)}, "
          f"mAP: {r['mAP'] if r['mAP'] is None else round(r['mAP'], 2)}; report in {out / 'time_to_accuracy.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
