"""Published numbers as data: ``params/_references.yaml`` read, checked, and resolved into a profile's report block.

An entry is either a *table* (a paper's results for several models sharing one setting: ``source``, ``setting``,
``main_data``, ``models`` and optionally ``short``, how its rows name their source, and ``note``) or a *row* (one
published system: ``source``, ``model``, ``data``, ``R1``, ``mAP`` and optionally ``init``, ``epochs``, ``input``,
``hardware``, ``differs``). Rank-1 and mAP are percentages.
A profile's ``report`` block names entries by key (``reproduces``: a table; ``references``: rows, each a key or
``{key: run id}`` to set one of the profile's runs beside it); :func:`resolve_report` replaces the keys by the
entries, so the report run receives the numbers as parameters and its input hash changes when a cited number does.
"""
from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any

from reidlib.paths import PARAMS_DIR

from .schema import ProfileError

REFERENCES_FILE = PARAMS_DIR / "_references.yaml"

ROW_REQUIRED = ("source", "model", "data", "R1", "mAP")
ROW_OPTIONAL = ("init", "epochs", "input", "hardware", "differs")
TABLE_REQUIRED = ("source", "setting", "main_data", "models")
TABLE_OPTIONAL = ("short", "note")
SETTING_KEYS = ("init", "epochs", "input", "hardware", "losses")


def _unknown(where: str, got: set[str], known: tuple[str, ...]) -> list[str]:
    out = []
    for key in sorted(got - set(known)):
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        out.append(f"{where}: unknown field {key!r}" + (f"; did you mean {close[0]!r}?" if close else "")
                   + f" (known: {', '.join(known)})")
    return out


def _percent(where: str, value: Any) -> list[str]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
        return [f"{where}: must be a percentage from 0 to 100, got {value!r}"]
    return []


def entry_problems(key: str, entry: Any) -> list[str]:
    """What is wrong with one entry (empty when nothing is): missing or unknown fields, numbers out of range."""
    if not isinstance(entry, dict):
        return [f"{key}: must be a mapping of fields, got {type(entry).__name__}"]
    fields = set(entry) - {"key"}
    if "models" in entry:
        problems = _unknown(key, fields, TABLE_REQUIRED + TABLE_OPTIONAL)
        problems += [f"{key}: lacks the field {f!r}" for f in TABLE_REQUIRED if f not in entry]
        setting = entry.get("setting")
        if not isinstance(setting, dict) or set(setting) != set(SETTING_KEYS):
            problems.append(f"{key}.setting: must be a mapping of exactly {', '.join(SETTING_KEYS)}, got {setting!r}")
        models = entry["models"]
        if not isinstance(models, dict) or not models:
            return problems + [f"{key}.models: must map registered model names to {{label, results}}"]
        for name, model in models.items():
            where = f"{key}.models.{name}"
            if not isinstance(model, dict) or set(model) != {"label", "results"}:
                problems.append(f"{where}: must be a mapping of label and results, got {model!r}")
                continue
            results = model["results"]
            if not isinstance(results, dict) or not results:
                problems.append(f"{where}.results: must map a dataset label to [R1, mAP]")
                continue
            for data, pair in results.items():
                if not (isinstance(pair, list) and len(pair) == 2):
                    problems.append(f"{where}.results.{data}: must be [R1, mAP], got {pair!r}")
                    continue
                problems += _percent(f"{where}.results.{data}", pair[0]) + _percent(f"{where}.results.{data}", pair[1])
            if entry.get("main_data") not in results:
                problems.append(f"{where}.results: lacks main_data {entry.get('main_data')!r}")
        return problems
    problems = _unknown(key, fields, ROW_REQUIRED + ROW_OPTIONAL)
    problems += [f"{key}: lacks the field {f!r} (a row needs {', '.join(ROW_REQUIRED)}; a table needs "
                 f"{', '.join(TABLE_REQUIRED)})" for f in ROW_REQUIRED if f not in entry]
    for stat in ("R1", "mAP"):
        if stat in entry:
            problems += _percent(f"{key}.{stat}", entry[stat])
    return problems


def read_references(path: str | Path | None = None) -> dict[str, dict]:
    """Every entry of a references file (default :data:`REFERENCES_FILE`), checked: ``{key: entry}``.

    Raises:
        ProfileError: the file is missing, not YAML, holds a key twice, or any entry is malformed (all problems
            listed at once).
    """
    from .profile import read_yaml

    path = Path(path or REFERENCES_FILE)
    if not path.is_file():
        raise ProfileError(f"the references file {path} does not exist; it holds the published numbers a report "
                           "cites (see params/_references.yaml in the repository)")
    raw = read_yaml(path) or {}
    if not isinstance(raw, dict):
        raise ProfileError(f"{path} must map reference keys to entries, got {type(raw).__name__}")
    problems = [p for key, entry in raw.items() for p in entry_problems(str(key), entry)]
    if problems:
        raise ProfileError(f"{path} has {len(problems)} problem(s):\n  - " + "\n  - ".join(problems))
    return {str(k): v for k, v in raw.items()}


def _entry(value: Any, where: str, known: dict[str, dict], table: bool) -> dict:
    """One entry of a report block, resolved: a key of ``known``; for a row also ``{key: run id}`` (the run set
    beside it, kept as ``compare_with``); or an entry resolved before (a mapping with its ``key``)."""
    kind = "table" if table else "row"
    run = None
    if isinstance(value, dict) and "key" not in value and len(value) == 1 and not table:
        (value, run), = value.items()
        if not isinstance(run, str):
            raise ProfileError(f"{where}: {{{value}: ...}} must name the run id of this profile to set beside the "
                               f"reference (e.g. 10_train/cuhk03-osnet_x0_25_msmt17), got {run!r}")
    if isinstance(value, dict):  # resolved before (e.g. a `pipeline show` output loaded again)
        if not isinstance(value.get("key"), str):
            raise ProfileError(f"{where}: give the key of an entry of {REFERENCES_FILE.name} (or, for a row, "
                               f"{{key: run id}}), got {value!r}")
        problems = entry_problems(f"{where} {value['key']!r}", {k: v for k, v in value.items() if k != "compare_with"})
        if problems:
            raise ProfileError("; ".join(problems))
        entry = copy.deepcopy(value)
    elif isinstance(value, str) and value in known:
        entry = {"key": value, **copy.deepcopy(known[value])}
    else:
        close = difflib.get_close_matches(str(value), sorted(known), n=1, cutoff=0.6)
        raise ProfileError(f"{where} names {value!r}, which is not a key of {REFERENCES_FILE.name}"
                           + (f"; did you mean {close[0]!r}?" if close else "")
                           + f" (known: {', '.join(sorted(known))}); add the entry there, with its source")
    if ("models" in entry) != table:
        raise ProfileError(f"{where} names {entry['key']!r}, which is not a {kind} entry: reproduces takes a table "
                           "(source, setting, main_data, models), references take rows (source, model, data, R1, mAP)")
    if run is not None:
        entry["compare_with"] = run
    return entry


def resolve_report(report: dict | None, where: str, path: str | Path | None = None) -> dict:
    """A profile's ``report`` block with its reference keys replaced by the entries of the references file.

    ``reproduces: <key>`` becomes that table entry and ``references: [<key> or {<key>: <run id>}, ...]`` the row
    entries, each with its ``key`` (and, for ``{key: run id}``, ``compare_with``: the run of this profile the
    report sets beside it). Entries given as resolved mappings are checked and kept, so resolving twice changes
    nothing. ``where`` names the profile in error messages; ``path``: the references file (default
    :data:`REFERENCES_FILE`).

    Raises:
        ProfileError: an unknown key (with the closest known one), an entry of the wrong kind or a malformed one.
    """
    report = dict(report or {})
    refs = report.get("references") or []
    if not isinstance(refs, list):
        raise ProfileError(f"{where}: report.references must be a list of reference keys, got {refs!r}")
    names = [report.get("reproduces"), *refs]
    needs_file = any(isinstance(n, str) or (isinstance(n, dict) and "key" not in n) for n in names)
    known = read_references(path) if needs_file else {}
    if report.get("reproduces") is not None:
        report["reproduces"] = _entry(report["reproduces"], f"{where}: report.reproduces", known, table=True)
    report["references"] = [_entry(r, f"{where}: report.references[{i}]", known, table=False)
                            for i, r in enumerate(refs)]
    return report
