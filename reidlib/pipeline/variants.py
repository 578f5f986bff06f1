"""The study keys that multiply or restrict a profile's runs: ``variants``, ``seeds`` and ``test_split``.

``variants: {name: overrides}``
    Each variant is the profile with ``overrides`` deep-merged over it (mappings key by key, anything else
    replaced, as ``extends:`` merges), checked like a whole profile (its problems named with the variant) and
    planned as its own training (and fine-tune) runs, whose ids carry ``@<name>``. A variant may override only
    what its runs read: :data:`VARIANT_KEYS`. A profile extending another leaves out a variant of its base with
    ``variants: {name: null}``.
``seeds: [s0, s1, ...]``
    Every training run is repeated once per seed. The first seed is the profile's ``seed``: its runs keep the ids
    (and parameters) a profile without ``seeds`` gives them; the others carry ``-seed<s>``.
``test_split: false``
    Recipes are compared on identities held out of the training split only: training runs select and record on
    them, read no test split, and the profile may hold no zero-shot datasets, fine-tunes or distance study.
    Every model needs ``num_val_ids`` and must select on ``val``.

:func:`check_study_keys` checks and normalises the three keys of one resolved profile (or variant);
:func:`variant_raws` gives each variant's merged, not yet checked, profile mapping.
"""
from __future__ import annotations

import difflib
import re
from typing import Any

from .mappings import deep_merge
from .schema import ProfileError

__all__ = ["VARIANT_KEYS", "check_study_keys", "variant_raws"]

# what a variant may override: the keys its training and fine-tune runs read
VARIANT_KEYS = frozenset({"datasets", "train_on", "zero_shot", "models", "training", "finetune", "evaluation",
                          "image_size", "precision", "device", "num_workers"})
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def variant_raws(raw: dict, source: str) -> dict[str, dict]:
    """``{variant name: the profile mapping with that variant's overrides merged in}`` of a profile as read
    (``raw``, its ``extends:`` chain merged); ``{}`` without ``variants``. The merged mappings lack ``variants``.

    Raises:
        ProfileError: ``variants`` is not a mapping of names to mappings, a name is not a folder name, a variant
            overrides a key it may not (:data:`VARIANT_KEYS`) or changes nothing; every problem at once.
    """
    variants = raw.get("variants")
    if isinstance(variants, dict) and variants and all(v is None for v in variants.values()):
        return {}  # every variant of a base left out
    if variants is None:
        return {}
    if not isinstance(variants, dict) or not variants:
        raise ProfileError(f"{source}: variants must map a variant name to the keys it overrides, e.g. "
                           f"variants: {{lr-low: {{training: {{lr: 1.0e-4}}}}}}; got {variants!r}")
    errors = []
    base = {k: v for k, v in raw.items() if k != "variants"}
    out = {}
    for name, overrides in variants.items():
        where = f"variants.{name}"
        if overrides is None:  # a base's variant left out by the profile extending it
            continue
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            errors.append(f"{where}: a variant name is part of its runs' ids and folders: letters, digits, '.', '_' "
                          f"and '-', starting with a letter or digit (e.g. lr-low); got {name!r}")
            continue
        if not isinstance(overrides, dict) or not overrides:
            errors.append(f"{where}: must be a mapping of the keys this variant changes (e.g. training: {{lr: 1.0e-4}}"
                          f"), got {overrides!r}; the profile's own runs already train the unchanged recipe")
            continue
        for key in sorted(map(str, set(overrides) - VARIANT_KEYS)):
            close = difflib.get_close_matches(key, sorted(VARIANT_KEYS), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            errors.append(f"{where}: cannot override {key!r}{hint} (a variant changes what its training runs read: "
                          f"{', '.join(sorted(VARIANT_KEYS))})")
        out[name] = deep_merge(base, overrides)
    if errors:
        lines = "\n  - ".join(errors)
        raise ProfileError(f"{source} has {len(errors)} problem(s):\n  - {lines}")
    return out


def is_seed_list(value: Any) -> bool:
    """A non-empty list of distinct integers >= 0 (what ``seeds:`` and a model's ``seeds:`` take)."""
    return (isinstance(value, list) and bool(value) and len(set(value)) == len(value)
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value))


def check_study_keys(cfg: dict, raw: dict, source: str) -> dict:
    """``cfg`` (checked by :func:`reidlib.pipeline.schema.check_profile`) with ``seeds`` (a list, or None),
    ``test_split`` (bool) and ``seed`` (the first seed where ``seeds`` is given without ``seed``) settled.

    Raises:
        ProfileError: every problem at once: ``seeds`` not a list of distinct integers >= 0, or disagreeing with
            ``seed``; ``test_split`` not a boolean; with ``test_split: false``, zero-shot datasets, fine-tunes, a
            distance study, test-split report comparisons, or a model without held-out identities to select on.
    """
    errors: list[str] = []
    seeds = raw.get("seeds")
    if seeds is not None:
        if not is_seed_list(seeds):
            errors.append(f"seeds: must be a list of distinct integers >= 0, e.g. [0, 1, 2], got {seeds!r}")
        elif "seed" in raw and raw["seed"] != seeds[0]:
            errors.append(f"seeds: the first seed is the profile's seed (its runs keep their plain ids), but seed is "
                          f"{raw['seed']!r} and seeds starts with {seeds[0]}; write seeds: "
                          f"{[raw['seed']] + [s for s in seeds if s != raw['seed']]} or drop seed")
        else:
            cfg["seed"] = seeds[0]
    for i, model in enumerate(cfg.get("models") or []):
        own = model.get("seeds")
        if own and own[0] != cfg["seed"]:
            errors.append(f"models[{i}] ({model.get('run')}).seeds: the first seed is the profile's seed "
                          f"({cfg['seed']}; its run keeps the plain id), but it starts with {own[0]}; write seeds: "
                          f"{[cfg['seed']] + [s for s in own if s != cfg['seed']]}")
    test_split = raw.get("test_split", True)
    if not isinstance(test_split, bool):
        errors.append(f"test_split: must be true or false, got {test_split!r}")
        test_split = True
    if not test_split:
        errors += _held_out_problems(cfg)
    if errors:
        lines = "\n  - ".join(errors)
        raise ProfileError(f"{source} has {len(errors)} problem(s):\n  - {lines}")
    cfg["seeds"] = list(seeds) if seeds is not None else None
    cfg["test_split"] = test_split
    return cfg


def _held_out_problems(cfg: dict) -> list[str]:
    """Why a profile cannot run with ``test_split: false`` (each line names the key and what to write)."""
    why = "test_split: false compares recipes on held-out identities only and reads no test split"
    out = []
    if cfg.get("zero_shot"):
        out.append(f"zero_shot: {why}, so it evaluates no zero-shot dataset; write zero_shot: []")
    if (cfg.get("finetune") or {}).get("pairs"):
        out.append(f"finetune: {why}, so it runs no fine-tune; write finetune: null")
    if cfg.get("distance_study") is not None:
        out.append(f"distance_study: {why}, so it runs no distance study; write distance_study: null")
    report = cfg.get("report") or {}
    for key in ("ranking", "variants"):
        if report.get(key):
            out.append(f"report.{key}: compares test-split numbers, which a profile with test_split: false does "
                       f"not have; remove it")
    for i, model in enumerate(cfg.get("models") or []):
        train = model.get("train") or {}
        if not train.get("num_val_ids"):
            out.append(f"models[{i}] ({model.get('run')}): {why}: give its recipe held-out identities to select "
                       f"on, e.g. training: {{num_val_ids: 100}}")
        if train.get("epochs", 1) == 0:
            out.append(f"models[{i}] ({model.get('run')}): epochs 0 evaluates weights as loaded on the test split; "
                       f"{why}: give it epochs to train")
        if train.get("select_on") not in (None, "val"):
            out.append(f"models[{i}] ({model.get('run')}): select_on is {train.get('select_on')!r}; {why}, so it "
                       f"selects on the held-out identities: select_on: val (or leave it out)")
    return out
