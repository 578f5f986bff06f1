"""Stage ``10_train``: one model trained on one dataset with the profile's recipe, tested once, zero-shot elsewhere.

The model is selected on identities held out of the training split; the test split is evaluated once, from the
selected checkpoint; query/gallery features are stored in the run's work directory for the distance study.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .common import RANKS, as_eval, load_dataset, summarize


@dataclass
class Outcome:
    """What a training or fine-tuning run produced."""

    model_name: str
    dataset_label: str
    history: list[dict]
    evaluations: dict[str, dict]  # dataset key -> {label, role, summary numbers, cmc, ...}
    train_info: dict
    checkpoint: str | None
    features: dict[str, dict] = field(default_factory=dict)
    complexity: dict = field(default_factory=dict)

    def summary_table(self) -> pd.DataFrame:
        rows = []
        for key, ev in self.evaluations.items():
            rows.append({"dataset": key, "role": ev["role"], **{k: round(ev[k], 1) for k in (*[f"R{r}" for r in RANKS],
                                                                                            "mAP", "mINP")}})
        return pd.DataFrame(rows).set_index(["dataset", "role"])

    def to_metrics(self, **extra) -> dict:
        return {**extra, "model_name": self.model_name, "dataset_label": self.dataset_label,
                "train": self.train_info, "history": self.history, "evaluations": self.evaluations,
                "checkpoint": self.checkpoint, "features": self.features, "complexity": self.complexity}


def test_transform(image_size):
    """Resize to ``image_size`` (height, width) and normalise: what every evaluation feeds the model."""
    from reidlib.data import build_transforms

    return build_transforms(int(image_size[0]), int(image_size[1]), is_train=False)


def evaluate_split(model, ds, test_tf, evaluation, device, precision, num_workers: int, role: str,
                   label: str, feature_dir: Path | None, key: str) -> tuple[dict, dict]:
    """Embed and rank the query/gallery of ``ds`` (:func:`reidlib.evaluation.embed_and_rank`) under the profile's
    ``evaluation`` block (a mapping or :class:`reidlib.evaluation.EvalSettings`); return (evaluation record,
    feature paths).

    The record holds percentages, the CMC (fractions), a 95 % identity-bootstrap interval (``ci95``), the
    per-query values a paired comparison needs (``per_query``) and the chance rank-1 of the split (``chance_R1``),
    see :mod:`reidlib.stages.uncertainty`.
    """
    from reidlib.evaluation import EvalSettings, chance_rank1, embed_and_rank

    from .uncertainty import eval_kwargs, record_extras

    boot = eval_kwargs()
    settings = EvalSettings.from_mapping(evaluation, ci=boot["ci"], n_boot=boot["n_boot"], boot_seed=boot["seed"],
                                         per_query=boot["return_per_query"])
    ranked = embed_and_rank(model, ds.query, ds.gallery, settings, transform=test_tf, protocol=ds.protocol,
                            device=device, precision=precision, num_workers=num_workers, keep_features=True)
    result, qf, gf = ranked.result, ranked.query, ranked.gallery
    paths = {}
    if feature_dir is not None:
        feature_dir.mkdir(parents=True, exist_ok=True)
        for split, fs in (("query", qf), ("gallery", gf)):
            p = feature_dir / f"{key}_{split}.npz"
            fs.save(p)
            paths[split] = str(p)
        paths["protocol"] = ds.protocol
    record = {"label": label, "role": role, **summarize(result), "cmc": np.asarray(result["cmc"]).tolist(),
              "num_query": len(qf.pids), "num_gallery": len(gf.pids),
              "num_valid_queries": int(result["num_valid_queries"]),
              "metric": settings.metric, "normalize": settings.normalize, "flip": settings.flip,
              "rerank": settings.rerank is not None,
              "extract_images_per_s": ranked.num_images * (2 if settings.flip else 1)
              / max(ranked.extract_seconds, 1e-9),
              "chance_R1": 100.0 * chance_rank1(qf.pids, gf.pids, qf.camids, gf.camids, ds.protocol),
              **record_extras(result)}
    return record, paths


def _complexity(model_name: str, model_kwargs: dict, num_classes: int, image_size=(256, 128)) -> dict:
    """Trainable and inference-time parameters, and multiply-adds of one image at ``image_size`` (the paper's
    256x128 by default, whatever size a run trained at)."""
    from reidlib.models import build_model
    from reidlib.models.complexity import (
        count_flops,
        count_parameters,
        inference_parameter_count,
    )

    model = build_model(model_name, num_classes=num_classes, **model_kwargs)
    size = tuple(image_size)
    return {"params_trainable": count_parameters(model), "params_inference": inference_parameter_count(model, size),
            "gmacs": count_flops(model, size)["macs"] / 1e9, "image_size": list(size)}


RUN_FILES = ("last.pt", "best.pt", "metrics.csv", "history.json", "result.json", "test_metrics.json")
FEATURE_PATTERNS = ("*_query.npz", "*_gallery.npz")
FRESH = "fresh:"


def discard_run_files(work: Path) -> list[Path]:
    """Delete what a training run wrote into its work folder ``work``, and nothing else: the trainer's files
    (:data:`RUN_FILES`), the stored features (``features/*_query.npz``, ``*_gallery.npz``), the temporary files of
    interrupted writes of either, and ``features/`` when that leaves it empty. Returns the paths deleted."""
    gone: list[Path] = []
    targets = [(work, name) for name in RUN_FILES]
    features = work / "features"
    if features.is_dir():
        targets += [(features, p.name) for pattern in FEATURE_PATTERNS for p in features.glob(pattern)]
    for folder, name in targets:
        for path in [folder / name, *folder.glob(f".{name}.*")]:  # reidlib.io.atomic_path's temporary names
            if path.is_file():
                path.unlink()
                gone.append(path)
    if features.is_dir() and not any(features.iterdir()):
        features.rmdir()
    return gone


def prepare_work_dir(work_dir: str | Path, run_key: str | None) -> Path:
    """Create a run's work directory (checkpoints, features) and decide between resuming and starting afresh.

    The pipeline passes the run's input hash as ``run_key``: the same key as recorded in ``run_key.txt`` means an
    interrupted run of the same inputs, whose ``last.pt`` the trainer resumes; a different key means the inputs
    (parameters, code, upstream results) changed, and ``"fresh:<key>"`` (``--force``) asks for a new run: in both
    cases the run's own files are deleted (:func:`discard_run_files`) so training starts at epoch 0. Files the
    pipeline did not write are left where they are. ``run_key=None`` (a notebook opened by hand) keeps everything.
    """
    work = Path(work_dir)
    if work.exists() and not work.is_dir():
        raise NotADirectoryError(f"work_dir {work} is a file; move it away (the run keeps its checkpoints there)")
    marker = work / "run_key.txt"
    if run_key is not None:
        fresh = run_key.startswith(FRESH)
        run_key = run_key[len(FRESH):] if fresh else run_key
        if fresh or (marker.is_file() and marker.read_text().strip() != run_key):
            discard_run_files(work)
    work.mkdir(parents=True, exist_ok=True)
    if run_key is not None:
        marker.write_text(run_key)
    return work


def fit_kwargs(train: dict, image_size, device, precision: str, seed: int, num_workers: int,
               evaluation=None) -> dict:
    """Map a profile's ``training`` block onto :func:`reidlib.engine.fit` keywords (test evaluation is ours).

    ``evaluation``: the profile's ``evaluation`` block (mapping or :class:`reidlib.evaluation.EvalSettings`);
    model selection then runs under the settings the test uses (the ``TrainConfig`` fields of
    :meth:`reidlib.engine.TrainConfig.evaluation_fields`). A training block that sets one of those fields to
    another value is refused.
    """
    from reidlib.engine import TrainConfig

    kwargs = {k: v for k, v in train.items() if k != "transforms"}
    kwargs.update(train.get("transforms") or {})
    if evaluation is not None:
        fields = TrainConfig.evaluation_fields(evaluation)
        clash = sorted(k for k, v in fields.items() if k in kwargs and kwargs[k] != v)
        if clash:
            raise ValueError(f"the training block sets {clash}, which the evaluation block decides (model "
                             f"selection runs under the test's settings): remove them from the training block")
        kwargs.update(fields)
    kwargs.update(height=int(image_size[0]), width=int(image_size[1]), device=str(device), precision=precision,
                  seed=seed, num_workers=num_workers, evaluate_test=False)
    return kwargs


class ScheduleCut(RuntimeError):
    """The wall-clock guard (``max_minutes``) ended a run before its planned epochs."""


def require_full_schedule(res) -> None:
    """Refuse to report a run the wall-clock guard cut short: its number would not be the profile's recipe.

    Its checkpoints stay in the work folder, so rerunning the same command continues from the last epoch.
    """
    if res.stopped_early:
        raise ScheduleCut(
            f"training stopped after epoch {res.epochs_completed} of the planned {res.epochs_planned} "
            f"({res.stopped_early}); nothing was reported. Its checkpoint is kept: rerun the same command to continue "
            "from there, or raise max_minutes (a guard against runaway runs, not part of the recipe) if this machine "
            "is slower than the profile assumes")


def train_info(res, image_size, device, seed: int) -> dict:
    info = res.summary()
    info.update(epochs=res.epochs_planned, image_size=list(image_size), device=str(device), seed=seed,
                torch_threads=_threads(), select_on=res.selected_on,
                images_per_s=float(np.mean([r["images_per_s"] for r in res.history])) if res.history else None,
                recipe={k: v for k, v in res.config.items() if k not in ("device", "progress", "resume")})
    return info


def train_and_test(*, model_name: str, model_kwargs: dict, pretrained: str | None, dataset: dict, zero_shot: dict,
                   train: dict, evaluation: dict, image_size, work_dir: str, seed: int = 0, device: str = "auto",
                   precision: str = "auto", num_workers: int = 0, run_key: str | None = None,
                   test_split: bool = True) -> Outcome:
    """Train ``model_name`` on ``dataset`` with the profile's recipe, select on held-out ids, test once.

    ``train["epochs"] == 0`` skips training (a reference row: pretrained weights evaluated as they are).
    Then the selected model is evaluated on the test split and zero-shot on each dataset in ``zero_shot``;
    the test features are stored in ``work_dir/features`` for the distance study.

    ``test_split=False`` (a profile comparing recipes): the trainer gets the training split's items only, and the
    selected model is evaluated on the held-out identities instead (record ``"held-out"``, role ``held-out``, no
    stored features); no test or zero-shot evaluation.
    """
    from reidlib.engine import fit
    from reidlib.models import build_model
    from reidlib.runtime import resolve_device, seed_everything

    work = prepare_work_dir(work_dir, run_key)
    seed_everything(seed)
    dev = resolve_device(device)
    ds = load_dataset(dataset)
    test_tf = test_transform(image_size)
    epochs = int(train.get("epochs", 0))
    kwargs = {**model_kwargs, "pretrained": pretrained} if pretrained else dict(model_kwargs)
    history: list[dict] = []
    checkpoint = None
    if epochs > 0:
        with warnings.catch_warnings():
            # re-ID weights from another dataset always get a fresh classifier for this one: expected, not news
            if pretrained:
                warnings.filterwarnings("ignore", message="classifier has .* fresh head")
            res = fit(model_name, ds if test_split else list(ds.train), out_dir=work, model_kwargs=kwargs,
                      **fit_kwargs(train, image_size, dev, precision, seed, num_workers, evaluation))
        require_full_schedule(res)
        model, history, checkpoint = res.model, res.history, str(res.checkpoint)
        info = train_info(res, image_size, dev, seed)
    else:
        model = build_model(model_name, num_classes=max(ds.num_train_pids, 1), **kwargs)
        info = {"epochs": 0, "epochs_completed": 0, "optimizer": None, "image_size": list(image_size),
                "device": str(dev), "seed": seed, "note": "no training: weights evaluated as loaded"}
    info["init"] = pretrained or "random"
    model.eval()
    evaluations, features = {}, {}
    if not test_split:
        evaluations["held-out"] = _evaluate_held_out(model, ds, train, test_tf, evaluation, dev, precision,
                                                     num_workers, seed, dataset.get("label", ds.name))
        complexity = _complexity(model_name, model_kwargs, max(ds.num_train_pids, 1))
        return Outcome(model_name, dataset.get("label", ds.name), history, evaluations, info, checkpoint, {},
                       complexity)
    evaluations["test"], features["test"] = evaluate_split(
        model, ds, test_tf, evaluation, dev, precision, num_workers, "test", dataset.get("label", ds.name),
        work / "features", "test")
    for key, spec in (zero_shot or {}).items():
        zds = load_dataset(spec)
        evaluations[key], features[key] = evaluate_split(
            model, zds, test_tf, evaluation, dev, precision, num_workers, "zero-shot", spec.get("label", key),
            work / "features", key)
    complexity = _complexity(model_name, model_kwargs, max(ds.num_train_pids, 1))
    return Outcome(model_name, dataset.get("label", ds.name), history, evaluations, info, checkpoint, features,
                   complexity)


def _evaluate_held_out(model, ds, train: dict, test_tf, evaluation, device, precision, num_workers: int, seed: int,
                       label: str) -> dict:
    """The evaluation record of ``model`` on the identities the trainer held out of ``ds``'s training split
    (the same ``num_val_ids`` and ``seed``, so the same query/gallery items it selected on; market protocol)."""
    from types import SimpleNamespace

    from reidlib.data import make_val_split

    n = int(train["num_val_ids"])
    _, query, gallery = make_val_split(list(ds.train), n, seed=seed)
    held_out = SimpleNamespace(query=query, gallery=gallery, protocol="market")
    record, _ = evaluate_split(model, held_out, test_tf, evaluation, device, precision, num_workers, "held-out",
                               f"{label}, {n} held-out identities", None, "held-out")
    return record


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def plot_history(history: list[dict], title: str = "", train: Mapping[str, Any] | None = None,
                 model_run: str | None = None, label: str | None = None):
    """Learning curves of one run in its model's colour: a panel per loss term (the triplet margin dotted), train
    accuracy and, where evaluated, held-out rank-1 (%); see :func:`reidlib.learning_curves.plot_histories`.

    ``train`` is the run's training (or fine-tuning) block: its ``triplet_margin`` (0.3 where unset; none drawn for
    the soft margin) and the distance its triplet compares (``loss_kwargs.metric``). ``model_run`` picks the colour
    (:func:`reidlib.figure_style.model_style`); ``label`` names the run in the legend (default: ``title``)."""
    from reidlib.figure_style import model_style
    from reidlib.learning_curves import plot_histories

    block = dict(train or {})
    loss = dict(block.get("loss_kwargs") or {})
    margin = None if loss.get("soft_margin") else block.get("triplet_margin", 0.3)
    name = label or title or "this run"
    styles = {name: model_style(model_run)} if model_run else None
    return plot_histories({name: history}, styles=styles, margins={name: margin}, title=title or None,
                          metrics={name: str(loss.get("metric", "euclidean"))})


EVALUATION_ROLES = {"test": "test split", "zero-shot": "zero-shot", "fine-tuned": "fine-tuned"}


def plot_outcome_cmc(outcome: Outcome, label: str, model_run: str | None = None):
    """CMC curves of every evaluation of one run on one axes, in its model's colour (``model_run``, see
    :func:`reidlib.figure_style.model_style`), one line style per evaluated split; the legend sits right of the
    axes."""
    from reidlib.figure_style import DEFAULT_CYCLE, model_style
    from reidlib.plots import plot_cmc

    colour = model_style(model_run)["color"] if model_run else DEFAULT_CYCLE[0]
    curves, styles = {}, {}
    for i, ev in enumerate(outcome.evaluations.values()):
        name = f"{ev['label']}, {EVALUATION_ROLES.get(ev['role'], ev['role'])}"
        curves[name] = as_eval(ev)
        styles[name] = {"color": colour, "linestyle": ("-", "--", ":", "-.")[i % 4], "marker": "os^D"[i % 4],
                        "markersize": 2.5}
    return plot_cmc(curves, title=f"CMC of {label}", styles=styles)
