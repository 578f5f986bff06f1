"""The validator: a YAML mapping built into a spec dataclass from the dataclass's annotations and field rules.

A spec (:mod:`.specs`) declares each key as a field: its annotation is the type, and :func:`rule` puts the rest in
the field's metadata (range, choices, a default taken from another key or from the enclosing block, a parser with
its own message). :func:`build` checks a mapping against that alone, so adding a field adds an accepted key:

- unknown keys are errors that list the known ones and suggest the closest ("did you mean");
- YAML 1.1 reads ``1e-3`` (no dot) as a *string*: a string that is a plain number is accepted for a float field
  and converted; any other string (``fast``, ``"16"`` for an integer, ``ture`` for a boolean) is an error naming the
  key, the value and what it should be;
- numbers are ``>= 0`` unless the rule says otherwise (``min``, ``min_inclusive``, ``max``);
- every problem is collected (:class:`Problems`), so the user fixes them all in one go.

:func:`resolved` turns a built spec back into the plain dict the pipeline passes on.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import MISSING, dataclass
from functools import lru_cache
from typing import Any, Callable

__all__ = ["Problems", "ProfileError", "Rule", "build", "check_value", "coerce", "resolved", "rule", "rules_of"]


class ProfileError(ValueError):
    """A profile file is missing or malformed; the message says which key and how to fix it."""


class Problems:
    """Collects every problem of one profile, so the user fixes them all in one go."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.errors: list[str] = []

    def fail(self, where: str, message: str) -> None:
        line = f"{where}: {message}"
        if line not in self.errors:  # a shared block's problem is reported once, not once per model
            self.errors.append(line)

    def unknown_keys(self, where: str, block: Any, known: set[str] | frozenset[str],
                     required: tuple[str, ...] = ()) -> bool:
        """Record the keys of ``block`` not in ``known`` and the ``required`` ones it lacks; False if it is not a
        mapping at all."""
        if not isinstance(block, dict):
            self.fail(where, f"must be a mapping of keys, got {type(block).__name__} {block!r}")
            return False
        for key in sorted(map(str, set(block) - set(known))):
            close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            self.fail(where, f"unknown key {key!r}{hint} (known: {', '.join(sorted(known))})")
        for key in required:
            if key not in block:
                self.fail(where, f"lacks the required key {key!r} (see params/default.yaml for a complete profile)")
        return True

    def raise_if_any(self) -> None:
        if self.errors:
            lines = "\n  - ".join(self.errors)
            raise ProfileError(f"{self.source} has {len(self.errors)} problem(s):\n  - {lines}")


# ----------------------------------------------------------------------------------------------------------------
# field rules
# ----------------------------------------------------------------------------------------------------------------
Parser = Callable[[Any, str, Problems, dict], Any]  # (value, where, problems, enclosing values) -> value
REQUIRED: Any = type("Required", (), {"__repr__": lambda self: "REQUIRED"})()  # a rule's default: none


@dataclass(frozen=True)
class Rule:
    """What a key accepts beyond its type. ``min``/``max`` bound numbers (and each number of a list);
    ``choices`` (a sequence, or a function returning one) bound strings; ``lower`` lower-cases a string first;
    ``parse`` replaces the type check with the field's own; a missing key takes ``default``, else the value of
    key ``default_from`` (``"$key"``: the block's key in its mapping), else the enclosing block's key ``inherit``.
    ``none_is_default``: ``null`` means the default. ``given_only``: :func:`resolved` keeps the key only if the
    mapping wrote it. ``block``: the key is part of the YAML block (False for values a builder sets)."""

    type: Any = Any
    default: Any = REQUIRED
    factory: Callable[[], Any] | None = None
    min: float | None = 0
    min_inclusive: bool = True
    max: float | None = None
    choices: Any = None
    lower: bool = False
    parse: Parser | None = None
    default_from: str | None = None
    inherit: str | None = None
    none_is_default: bool = False
    given_only: bool = False
    block: bool = True
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED and self.factory is None and not (self.default_from or self.inherit)

    def default_value(self) -> Any:
        return self.factory() if self.factory is not None else self.default


def rule(default: Any = REQUIRED, *, factory: Callable[[], Any] | None = None, **kwargs: Any) -> Any:
    """A dataclass field carrying its :class:`Rule` (see there for the keywords); no default: a required key
    (or one :func:`build` fills from another key)."""
    meta = {"rule": {"default": default, "factory": factory, **kwargs}}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=None if default is REQUIRED else default, metadata=meta)


@lru_cache(maxsize=None)
def rules_of(cls: type) -> dict[str, Rule]:
    """Each field of dataclass ``cls`` -> its :class:`Rule`, the type from its annotation (field order)."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        meta = dict(f.metadata.get("rule", {}))
        if "rule" not in f.metadata:  # a plain dataclass (TrainConfig): its default is the rule's
            meta = {"default": REQUIRED if f.default is MISSING else f.default,
                    "factory": None if f.default_factory is MISSING else f.default_factory}
            meta.update({k: v for k, v in f.metadata.items() if k in Rule.__dataclass_fields__})
        out[f.name] = Rule(type=hints[f.name], **meta)
    return out


# ----------------------------------------------------------------------------------------------------------------
# values
# ----------------------------------------------------------------------------------------------------------------
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _is_spec(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def coerce(value: Any, tp: Any, where: str, ck: Problems, ctx: dict | None = None) -> Any:
    """``value`` converted to annotation ``tp`` where the YAML is ambiguous, else recorded as an error; a spec
    dataclass (or a list or mapping of them) is built with :func:`build`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return coerce(value, inner[0], where, ck, ctx)
        for a in inner:  # e.g. bool | str: the first type the value already is
            if isinstance(value, typing.get_origin(a) or a):
                return value
        ck.fail(where, f"must be one of {[_type_name(a) for a in inner]}, got {value!r}")
        return value
    if _is_spec(tp):
        return build(tp, value, where, ck, ctx)
    if tp is bool:
        if isinstance(value, bool):
            return value
        ck.fail(where, f"must be true or false, got {value!r}" + (" (a typo?)" if isinstance(value, str) else ""))
        return value
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        what = f"the string {value!r} (remove the quotes)" if isinstance(value, str) and _NUMBER.match(value) \
            else repr(value)
        ck.fail(where, f"must be an integer, got {what}")
        return value
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _NUMBER.match(value.strip()):
            return float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
        ck.fail(where, f"must be a number, got {value!r}")
        return value
    if tp is str:
        if isinstance(value, str):
            return value
        ck.fail(where, f"must be a string, got {value!r}")
        return value
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            ck.fail(where, f"must be a mapping, got {value!r}")
            return value
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is not Any:
            return {k: coerce(v, args[1], f"{where}.{k}", ck, {**(ctx or {}), "$key": str(k)})
                    for k, v in value.items()}
        return value
    if origin in (tuple, list) or tp in (tuple, list):
        if not isinstance(value, (list, tuple)):
            ck.fail(where, f"must be a list, got {value!r}")
            return value
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        item = args[0] if args else Any
        return [v if item is Any else coerce(v, item, f"{where}[{i}]", ck, ctx) for i, v in enumerate(value)]
    return value


def _check_range(value: Any, r: Rule, where: str, ck: Problems) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    low_ok = r.min is None or (value >= r.min if r.min_inclusive else value > r.min)
    if r.max is not None and (not low_ok or value > r.max):
        ck.fail(where, f"must be between {r.min} and {r.max}, got {value}")
    elif not low_ok:
        ck.fail(where, f"must be {'>=' if r.min_inclusive else '>'} {r.min}, got {value}")


def _check_choice(value: Any, choices: Any, where: str, ck: Problems) -> None:
    choices = list(choices() if callable(choices) else choices)
    if isinstance(value, str) and value not in choices:
        close = difflib.get_close_matches(value, choices, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        ck.fail(where, f"unknown value {value!r}{hint} (choose one of {', '.join(choices)})")


def check_value(value: Any, r: Rule, where: str, ck: Problems, ctx: dict) -> Any:
    """One key's value checked against its rule (type, then choices or range; a list item by item)."""
    if r.parse is not None:
        return r.parse(value, where, ck, ctx)
    value = coerce(value, r.type, where, ck, ctx)
    if r.lower and isinstance(value, str):
        value = value.lower()
    items = list(enumerate(value)) if isinstance(value, list) else [(None, value)]
    for i, v in items:
        place = where if i is None else f"{where}[{i}]"
        if r.choices is not None:
            _check_choice(v, r.choices, place, ck)
        else:
            _check_range(v, r, place, ck)
    return value


# ----------------------------------------------------------------------------------------------------------------
# blocks
# ----------------------------------------------------------------------------------------------------------------
def build(cls: type, block: Any, where: str, ck: Problems, ctx: dict | None = None, key: str | None = None) -> Any:
    """Spec ``cls`` built from mapping ``block`` (None if it is not a mapping), every problem recorded in ``ck``.

    ``where`` names the block in messages (``""``: the top level); ``ctx`` holds the enclosing block's values
    (for ``inherit``) and ``key`` the block's key in its mapping (for ``default_from="$key"``). The spec remembers
    which keys the mapping wrote (``resolved`` keeps those) and, if it defines ``check(where, problems, given)``,
    that method checks the rules between its fields.
    """
    rules = {k: r for k, r in rules_of(cls).items() if r.block}
    label = where or "profile"
    required = tuple(k for k, r in rules.items() if r.required)
    if not ck.unknown_keys(label, block, set(rules), required):
        return None
    ctx = dict(ctx or {})
    key = ctx.pop("$key", None) if key is None else key
    values: dict[str, Any] = {}
    for name, r in rules.items():
        place = f"{where}.{name}" if where else name
        if name in block and not (block[name] is None and r.none_is_default):
            values[name] = check_value(block[name], r, place, ck, values)
        elif r.default_from == "$key":
            values[name] = coerce(key, r.type, place, ck)
        elif r.default_from:
            values[name] = values.get(r.default_from)
        elif r.inherit:
            values[name] = ctx.get(r.inherit)
        else:
            values[name] = None if r.required else r.default_value()
    values = {k: v for k, v in values.items() if k in {f.name for f in dataclasses.fields(cls) if f.init}}
    spec = cls(**values)
    spec.given_keys = tuple(k for k in block if k in rules)
    if hasattr(spec, "check"):
        spec.check(where, ck, spec.given_keys)
    return spec


def _plain(value: Any) -> Any:
    if hasattr(value, "resolved"):
        return value.resolved()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return resolved(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def resolved(spec: Any) -> dict:
    """A built spec as a plain dict: the keys its mapping wrote (in its order), then the defaults of the others,
    except those whose rule (or the whole class, ``given_only = True``) says to keep only what was written."""
    rules = {k: r for k, r in rules_of(type(spec)).items() if r.block}
    given = getattr(spec, "given_keys", ())
    out = {k: _plain(getattr(spec, k)) for k in given}
    for k, r in rules.items():
        if k not in out and not (r.given_only or getattr(type(spec), "given_only", False)):
            out[k] = _plain(getattr(spec, k))
    return out


# ----------------------------------------------------------------------------------------------------------------
# the names this module held before the specs had their own (imported from .specs when first asked for)
# ----------------------------------------------------------------------------------------------------------------
_FROM_SPECS = ("MIN_INPUT_SIZE", "MODEL_KEYS", "SET_BY_PIPELINE", "TOP_KEYS", "TRANSFORM_KEYS", "check_profile",
               "training_keys", "with_defaults")


def __getattr__(name: str) -> Any:
    if name in _FROM_SPECS:
        from . import specs

        return getattr(specs, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
