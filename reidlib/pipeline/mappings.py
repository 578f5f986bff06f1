"""Nested mappings as profiles use them: a base updated by overrides (``extends:``, variants, a model's ``train``
block over ``training``)."""
from __future__ import annotations

import copy


def deep_merge(base: dict, override: dict | None) -> dict:
    """``base`` updated by ``override``, recursively for nested dicts (neither input is modified)."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
