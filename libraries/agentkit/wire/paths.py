"""Dotted paths, matchers and templates: how a dialect file points into a JSON frame.

A *path* is dotted (``data.tool_name``, ``params.data.event``, ``messages.0.content``).
A *matcher* is an object of ``path: expected`` pairs that all hold; ``expected`` is a
JSON value compared for equality, or one operator object: ``{"$in": [...]}``,
``{"$exists": true|false}``, ``{"$regex": "..."}`` (searched in the value as text),
``{"$prefix": "..."}``. A *template* is a JSON value whose strings may hold
placeholders: a string that is exactly ``"{name}"`` becomes the value itself (any
JSON type), ``"text {name}"`` substitutes text. Names may be dotted paths into the
values given (``{params.data.event}``).
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable

MISSING: Any = object()
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.\-]*)\}")
OPERATORS = ("$in", "$exists", "$regex", "$prefix")


def get_path(obj: Any, path: str, default: Any = None) -> Any:
    """Value at a dotted ``path`` (``data.tool_name``, ``items.0.name``) or ``default``."""
    cur = obj
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.lstrip("-").isdigit() and -len(cur) <= int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return default
    return cur


def set_path(obj: dict, path: str, value: Any) -> None:
    parts = path.split(".")
    for part in parts[:-1]:
        obj = obj.setdefault(part, {})
    obj[parts[-1]] = value


def first_present(obj: Any, paths: Iterable[str], default: Any = None) -> Any:
    """The value at the first of ``paths`` present in ``obj`` (a JSON ``null`` counts as present)."""
    for path in paths:
        value = get_path(obj, path, MISSING)
        if value is not MISSING:
            return value
    return default


class Matcher:
    """A compiled matcher: every ``path: expected`` pair must hold."""

    __slots__ = ("spec", "_checks")

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self._checks = [(path, _check(expected)) for path, expected in spec.items()]

    def __call__(self, message: Any) -> bool:
        if not isinstance(message, dict):
            return False
        return all(check(get_path(message, path, MISSING)) for path, check in self._checks)

    def __repr__(self) -> str:
        return json.dumps(self.spec)


def _check(expected: Any):
    if isinstance(expected, dict) and len(expected) == 1 and next(iter(expected)) in OPERATORS:
        op, arg = next(iter(expected.items()))
        if op == "$in":
            return lambda v: v is not MISSING and v in arg
        if op == "$exists":
            return lambda v: (v is not MISSING) == bool(arg)
        if op == "$regex":
            pattern = re.compile(arg)
            return lambda v: v is not MISSING and pattern.search(v if isinstance(v, str) else json.dumps(v)) is not None
        return lambda v: isinstance(v, str) and v.startswith(arg)
    return lambda v: v is not MISSING and v == expected


def render(template: Any, values: dict[str, Any]) -> Any:
    """``template`` with its placeholders filled from ``values`` (see the module doc).

    A placeholder whose name is not in ``values`` raises ``KeyError`` naming it."""
    if isinstance(template, str):
        whole = _PLACEHOLDER.fullmatch(template)
        if whole:
            return _lookup(values, whole.group(1))
        return _PLACEHOLDER.sub(lambda m: _text(_lookup(values, m.group(1))), template)
    if isinstance(template, dict):
        return {render(k, values) if "{" in k else k: render(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [render(v, values) for v in template]
    return template


def render_text(template: str, message: Any) -> str | None:
    """A name template filled from a frame's fields; ``None`` when a field is missing."""
    try:
        return _PLACEHOLDER.sub(lambda m: _text(_lookup(message, m.group(1))), template)
    except KeyError:
        return None


def placeholders(template: Any) -> set[str]:
    """Every placeholder name used in a template (to check a dialect before it runs)."""
    if isinstance(template, str):
        return set(_PLACEHOLDER.findall(template))
    if isinstance(template, dict):
        return set().union(*(placeholders(k) | placeholders(v) for k, v in template.items())) if template else set()
    if isinstance(template, list):
        return set().union(*(placeholders(v) for v in template)) if template else set()
    return set()


def _lookup(values: Any, name: str) -> Any:
    if isinstance(values, dict) and name in values:
        return values[name]
    value = get_path(values, name, MISSING)
    if value is MISSING:
        raise KeyError(name)
    return value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
