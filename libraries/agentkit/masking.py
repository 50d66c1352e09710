"""Masked forms of secrets and tokens: enough to tell two apart, never enough to use."""

from __future__ import annotations

from typing import Any

try:  # Robot Framework 7.4+
    from robot.api.types import Secret
except ImportError:  # pragma: no cover - requirements pin 7.4+
    Secret = None  # type: ignore[assignment]


def reveal(value: Any) -> str | None:
    """The plain value of a ``Secret`` or a string; ``None`` stays ``None``."""
    if value is None:
        return None
    if Secret is not None and isinstance(value, Secret):
        return value.value
    return str(value)


def mask(value: Any, keep: int = 4) -> str:
    """``eyJh…Xk9Q (212 chars)`` for long values (tokens), ``•••• (6 chars)`` for short ones
    and for ``keep=0`` (signing secrets and keys: not even a prefix)."""
    plain = reveal(value)
    if plain is None:
        return "<none>"
    if not plain:
        return "<empty>"
    n = len(plain)
    if n < 24 or keep == 0:  # secrets and short values: show nothing but the length
        return f"•••• ({n} chars)"
    return f"{plain[:keep]}…{plain[-keep:]} ({n} chars)"


def as_secret(value: str):
    """Wrap a plain value in Robot's ``Secret`` so Robot never logs it."""
    return Secret(value) if Secret is not None else value
