"""Inline assertions (AssertionEngine) on values read from events and tokens."""

from __future__ import annotations

from typing import Any

from assertionengine import AssertionOperator, verify_assertion


def coerce_expected(value: Any, expected: Any) -> Any:
    """Robot passes ``expected`` as text; compare numbers as numbers and booleans as booleans."""
    if not isinstance(expected, str) or isinstance(value, str) or value is None:
        return expected
    if isinstance(value, bool):
        return {"true": True, "false": False}.get(expected.lower(), expected)
    if isinstance(value, (int, float)):
        try:
            return type(value)(expected) if isinstance(value, int) and expected.lstrip("-").isdigit() else float(expected)
        except ValueError:
            return expected
    return expected


def verify(value: Any, operator: AssertionOperator | None, expected: Any, message: str) -> Any:
    return verify_assertion(value, operator, coerce_expected(value, expected), message)
