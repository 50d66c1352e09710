"""Rule 7: each agent event validates against its JSON Schema, formats included.

One verdict: ``jsonschema`` with its ``FormatChecker`` (``date-time`` needs the
``format-nongpl`` extra, which requirements.txt installs). Before the first check the
kit proves that format checking really works (a known-bad date-time must be rejected);
when it does not, rule 7 refuses to run rather than pass. The ``ag-ui`` dialect is
checked against AG-UI's own published event models (the ``ag-ui-protocol`` package).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..wire.dialect import Dialect, schema_dir
from ..wire.event import Event
from ..wire.run import RunRecord
from . import Violation

BAD_DATE_TIMES = ("2026-99-99T99:99:99Z", "yesterday at noon", "2026-01-05 10:00:00")


class SchemaCheckUnavailable(RuntimeError):
    """Rule 7 cannot be judged in this environment; the message says why and what to install."""


@lru_cache(maxsize=1)
def format_checking_problem() -> str | None:
    """``None`` when ``format: date-time`` is really checked, else why not."""
    from jsonschema import Draft202012Validator, FormatChecker

    probe = Draft202012Validator({"type": "string", "format": "date-time"}, format_checker=FormatChecker())
    passed = [value for value in BAD_DATE_TIMES if probe.is_valid(value)]
    if passed:
        return (f"jsonschema's FormatChecker accepts {passed[0]!r} as a date-time, so formats are not checked: "
                "install the format extra (pip install 'jsonschema[format-nongpl]', part of requirements.txt)")
    return None


@lru_cache(maxsize=128)
def _validator(path: str):
    from jsonschema import Draft202012Validator, FormatChecker

    schema = json.loads(Path(path).read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker())


def schema_file(event: Event) -> Path | None:
    """The schema file that judges an event under its dialect, or ``None``."""
    d = event.dialect
    schemas = d.schemas
    if not isinstance(schemas, dict) or "by_type" not in schemas:
        return None
    by_type = schemas["by_type"]
    name = by_type.get(event.type or "") or by_type.get("*")
    return schema_dir(d) / name if name else None


def event_errors(event: Event) -> list[str]:
    """Why an agent event does not match its schema (empty when it does)."""
    d = event.dialect
    if isinstance(d.schemas, dict) and "models" in d.schemas:
        return agui_errors(event.message)[0]
    path = schema_file(event)
    if path is None:
        return [f"dialect '{d.name}' has no schema for {event.type!r} (schemas/by_type)"]
    validator = _validator(str(path))
    return [f"{'.'.join(map(str, err.absolute_path)) or '<root>'}: {err.message}"
            for err in sorted(validator.iter_errors(event.message), key=lambda e: list(map(str, e.absolute_path)))]


def schema_valid(event: Event) -> bool:
    return not event_errors(event)


def schemas_off_reason(dialect: Dialect) -> str | None:
    """Why rule 7 cannot run for a dialect (``schemas: false``, or no format checking)."""
    if dialect.schemas is False:
        return f"dialect '{dialect.name}' switches schema checks off (schemas: false)"
    if isinstance(dialect.schemas, dict) and "models" in dialect.schemas:
        return None
    return format_checking_problem()


def check_schemas(run: RunRecord) -> list[Violation]:
    """Rule 7 over a run's agent events; raises :class:`SchemaCheckUnavailable` when the
    check cannot be made (it never passes silently)."""
    if run.dialect.schemas is False:
        return []
    problem = schemas_off_reason(run.dialect)
    if problem:
        raise SchemaCheckUnavailable(f"Rule 7 (schema) cannot be checked: {problem}.")
    out = []
    source = "AG-UI event models, ag-ui-protocol" if isinstance(run.dialect.schemas, dict) \
        and "models" in run.dialect.schemas else None
    for e in run.agent_events:
        errors = event_errors(e)
        if errors:
            what = source or (schema_file(e).name if schema_file(e) else "its schema")
            out.append(Violation(7, f"{run.at(e)}{_ids(e)} does not match {what}: " + "; ".join(errors[:3]), e))
    return out


def _ids(event: Event) -> str:
    """The ids an event carries, for a message that must name the event concerned."""
    shown = [f"{name} {event.field(name)!r}" for name in ("tool_call_id", "message_id", "run_id")
             if event.dialect.has_field(name) and event.field(name) is not None]
    return f" ({', '.join(shown)})" if shown else ""


# --- AG-UI: the published models ------------------------------------------------------
@lru_cache(maxsize=1)
def _agui():
    from ag_ui.core import events
    from pydantic import TypeAdapter

    return TypeAdapter(events.Event), {t.value for t in events.EventType}


def agui_errors(message: Any) -> tuple[list[str], list[str]]:
    """``(errors, warnings)`` of one AG-UI event against the ``ag-ui-protocol`` models.

    A known field with a malformed value is an error; an unknown event type, an unknown
    field or an optional field sent as ``null`` is a warning (the spec drops or tolerates
    those)."""
    from pydantic import ValidationError

    adapter, known = _agui()
    kind = message.get("type") if isinstance(message, dict) else None
    if kind not in known:
        return [], [f"unknown AG-UI event type {kind!r}: dropped, as the spec says"]
    try:
        # JSON mode, strict: a timestamp "123" is a malformed value, not a number to coerce
        model = adapter.validate_json(json.dumps(message), strict=True)
    except ValidationError as err:
        return [f"{'.'.join(map(str, e['loc'][1:])) or '<root>'}: {e['msg']}" for e in err.errors()[:5]], []
    warnings = []
    extra = sorted((model.model_extra or {}).keys())
    if extra:
        warnings.append(f"{kind}: unknown field(s) {extra}")
    for key, value in message.items():
        if value is None and key != "value":
            warnings.append(f"{kind}: optional field {key!r} sent as null (AG-UI: omit it)")
    return [], warnings
