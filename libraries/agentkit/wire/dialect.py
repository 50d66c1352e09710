"""A backend's whole wire, as data: one JSON file per dialect (``resources/dialects/``).

The file says how to connect (auth transports, token encoding, subprotocols, what a
refusal looks like, setup commands), what the welcome frame is, how a run is started
and how its frames are tied to it, how frames are classified into lifecycle *roles*
(started, thinking, tool_executing, tool_completed, completed, error, ...), which rule
set judges a run and which JSON Schemas its events must match. Every key is described
in ``docs/dialects.md``; the files are checked against ``resources/schemas/dialect.schema.json``
with ``jsonschema`` when loaded, and every problem is named at once.
"""

from __future__ import annotations

import copy
import json
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from .paths import MISSING, OPERATORS, Matcher, first_present, get_path, placeholders, render, render_text, set_path

RESOURCES = Path(__file__).resolve().parents[3] / "resources"
DIALECTS = RESOURCES / "dialects"
SCHEMAS = RESOURCES / "schemas"
DIALECT_SCHEMA = SCHEMAS / "dialect.schema.json"

ROLES = ("started", "thinking", "tool_executing", "tool_arguments", "tool_end", "tool_chunk", "tool_completed",
         "tool_error", "message_start", "answer", "message_end", "completed", "error", "event")
TERMINAL_ROLES = ("completed", "error")
#: Placeholders the kit fills in templates; a dialect's ``settings`` add their own.
RUN_PLACEHOLDERS = {"content", "thread_id", "run_id", "message_id", "command_id", "messages"}
CONNECT_PLACEHOLDERS = {"ws_url", "ws_base", "thread_id"}
COMMAND_PLACEHOLDERS = {"command_id"}
AUTH_PLACEHOLDERS = {"email", "name"}


class DialectError(ValueError):
    """A dialect file that cannot be used; the message names the file and every problem."""


def known_dialects() -> list[str]:
    return sorted(p.stem for p in DIALECTS.glob("*.json"))


def _with(probe: dict, path: str, value: Any) -> dict:
    out = copy.deepcopy(probe)
    set_path(out, path, value)
    return out


def _deep_merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = _deep_merge(base[key], value) if key in base else value
        return out
    return copy.deepcopy(override)


def _resolve(name_or_path: str | Path, relative_to: Path | None = None) -> Path:
    text = str(name_or_path)
    path = Path(text)
    if not path.suffix and "/" not in text and "\\" not in text:
        return DIALECTS / f"{text}.json"
    if not path.is_absolute() and relative_to is not None and not path.exists():
        candidate = relative_to / path
        if candidate.exists():
            return candidate
    return path


def _read(path: Path, name_or_path: Any) -> dict:
    if not path.is_file():
        raise DialectError(f"Dialect '{name_or_path}' not found: expected a JSON file at {path} or one of the "
                           f"built-in dialects: {', '.join(known_dialects())}.")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise DialectError(f"Dialect file {path} cannot be read: {err}.") from None
    except json.JSONDecodeError as err:
        raise DialectError(f"Dialect file {path} is not valid JSON: {err.msg} at line {err.lineno}, "
                           f"column {err.colno}.") from None
    if not isinstance(raw, dict):
        raise DialectError(f"Dialect file {path} must hold a JSON object, got {type(raw).__name__}.")
    return raw


def _load_raw(name_or_path: str | Path, seen: tuple[Path, ...] = ()) -> tuple[dict, Path]:
    path = _resolve(name_or_path, seen[-1].parent if seen else None).resolve()
    if path in seen:
        raise DialectError(f"Dialect file {path} extends itself (chain: {' -> '.join(map(str, seen + (path,)))}).")
    raw = _read(path, name_or_path)
    base_name = raw.get("extends")
    if isinstance(base_name, str):
        base, _ = _load_raw(base_name, seen + (path,))
        base.pop("name", None)
        base.pop("description", None)
        raw = _deep_merge(base, {k: v for k, v in raw.items() if k != "extends"})
    return raw, path


_SCHEMA_VALIDATOR = None


def _dialect_validator():
    global _SCHEMA_VALIDATOR
    if _SCHEMA_VALIDATOR is None:
        from jsonschema import Draft202012Validator, FormatChecker

        schema = json.loads(DIALECT_SCHEMA.read_text(encoding="utf-8"))  # itself checked by tests/rules
        # The dialect schema uses one format (regex): only its checker, not every format library's import.
        _SCHEMA_VALIDATOR = Draft202012Validator(schema, format_checker=FormatChecker(formats=("regex",)))
    return _SCHEMA_VALIDATOR


def _where(error) -> str:
    return "/".join(str(p) for p in error.absolute_path) or "<root>"


def _describe(error) -> str:
    # oneOf/anyOf errors say little on their own: name the closest sub-error too.
    if error.context:
        best = min(error.context, key=lambda e: (len(list(e.absolute_path)) * -1, e.validator == "type"))
        return f"{_where(error)}: {error.message[:160]} ({_where(best)}: {best.message[:160]})"
    return f"{_where(error)}: {error.message[:200]}"


@dataclass
class Dialect:
    """A loaded, checked dialect. ``spec`` is the file's content (after ``extends``)."""

    name: str
    spec: dict
    source: str = "<built-in>"
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        events = self.spec["events"]
        self._roles = [(Matcher(r["match"]), r["role"]) for r in events["roles"]]
        self._scope = Matcher(events["scope"]) if events.get("scope") else None
        self._names = events.get("name") or ["{type}"]
        self._fields = events.get("fields", {})
        welcome = self.spec["welcome"]
        self._welcome = [Matcher(m) for m in welcome.get("match", [])]
        frames = self.spec.get("frames") or {}
        self._errors = [Matcher(m) for m in frames.get("error", [])]
        self._acks = [Matcher(m) for m in frames.get("ack", [])]
        self._replies = [Matcher(m) for m in frames.get("replies", [])]
        ping = frames.get("ping")
        self._pong = Matcher(ping["reply"]) if ping else None
        beat = frames.get("heartbeat")
        self._heartbeat = Matcher(beat["match"]) if beat else None
        refusal = self.spec["connect"]["refusal"]
        self._refusal_frame = Matcher(refusal["error_frame"]) if refusal.get("error_frame") else None
        self.settings = {**self.spec.get("settings", {}), **self.settings}

    # --- classification -----------------------------------------------------
    def in_scope(self, message: Any) -> bool:
        return self._scope is None or self._scope(message)

    def role_of(self, message: Any) -> str | None:
        """Lifecycle role of a frame (``None`` for frames that are not agent events)."""
        if not isinstance(message, dict) or (self._scope is not None and not self._scope(message)):
            return None
        for matcher, role in self._roles:
            if matcher(message):
                return role
        return None

    def name_of(self, message: Any) -> str | None:
        """The frame's name for people: the first of the dialect's name templates that renders."""
        if not isinstance(message, dict):
            return None
        for template in self._names:
            text = render_text(template, message)
            if text is not None:
                return text
        value = message.get("type")
        return value if isinstance(value, str) else None

    def control_of(self, message: Any) -> str | None:
        """``welcome``, ``heartbeat``, ``pong``, ``error``, ``ack`` or ``reply`` for control frames."""
        if not isinstance(message, dict):
            return None
        if any(m(message) for m in self._welcome):
            return "welcome"
        if self._heartbeat is not None and self._heartbeat(message):
            return "heartbeat"
        if self._pong is not None and self._pong(message):
            return "pong"
        if any(m(message) for m in self._replies):
            return "reply"
        if any(m(message) for m in self._errors):
            return "error"
        if any(m(message) for m in self._acks):
            return "ack"
        return None

    def is_refusal_frame(self, message: Any) -> bool:
        return self._refusal_frame is not None and self._refusal_frame(message)

    def field(self, message: Any, name: str, default: Any = None) -> Any:
        """First present value among the dialect's paths for ``name``; a name the dialect
        does not know is read as a dotted path. ``name.sub.path`` reads below a dialect field."""
        paths = self._fields.get(name)
        if paths is not None:
            return first_present(message, paths, default)
        head, _, rest = name.partition(".")
        if rest and head in self._fields:
            base = first_present(message, self._fields[head], MISSING)
            if base is MISSING:
                return default
            if isinstance(base, str) and base[:1] in "[{":
                try:  # arguments that travel as JSON text (AG-UI deltas)
                    base = json.loads(base)
                except ValueError:
                    return default
            return get_path(base, rest, default)
        return get_path(message, name, default)

    def has_field(self, name: str) -> bool:
        return name.partition(".")[0] in self._fields

    # --- what the rules and messages need ----------------------------------
    def names(self, role: str) -> list[str]:
        """Wire names of a role, as people read them (``agent_started``, ``RUN_STARTED``, ``lifecycle.running``)."""
        out: list[str] = []
        for matcher, r in self._roles:
            if r != role:
                continue
            probes: list[dict] = [{}]
            for path, expected in matcher.spec.items():
                if isinstance(expected, dict) and len(expected) == 1 and next(iter(expected)) in OPERATORS:
                    op, arg = next(iter(expected.items()))
                    if op not in ("$in", "$prefix"):
                        continue  # $exists, $regex: say nothing about the name
                    values = list(arg) if op == "$in" else [f"{arg}*"]
                else:
                    values = [expected]
                probes = [_with(p, path, v) for p in probes for v in values]
            out += [self.name_of(p) or role for p in probes]
        return list(dict.fromkeys(out))

    def label(self, role: str) -> str:
        """One name for a role in messages: ``agent_started`` or ``RUN_STARTED``."""
        names = self.names(role)
        return "/".join(names[:2]) if names else role

    @property
    def rule_set(self) -> str:
        return self.spec["rules"]["set"]

    @property
    def thinking_required(self) -> bool:
        return self.spec["rules"].get("thinking", "required") == "required"

    @property
    def required_roles(self) -> list[str]:
        return list(self.spec["rules"].get("required_roles", ["started", "completed"]))

    @property
    def tool_call_key(self) -> str:
        return self.spec["events"]["tool_call_key"]

    @property
    def correlation(self) -> str:
        return self.spec["run"]["correlation"]

    @property
    def event_ids(self) -> list[str]:
        return list(self.spec["run"].get("event_ids", []))

    @property
    def welcome_presence(self) -> str:
        return self.spec["welcome"]["presence"]

    @property
    def welcome_identifies(self) -> str:
        return self.spec["welcome"].get("identifies", "none")

    def welcome_field(self, message: Any, name: str) -> Any:
        paths = self.spec["welcome"].get(name)
        return first_present(message, paths) if paths else None

    @property
    def binary_json(self) -> bool:
        return bool(self.spec["events"].get("binary_json", False))

    @property
    def frames(self) -> dict:
        return self.spec.get("frames") or {}

    @property
    def connect(self) -> dict:
        return self.spec["connect"]

    @property
    def http(self) -> dict:
        return self.spec.get("http") or {}

    @property
    def auth_service(self) -> dict:
        return self.spec.get("auth_service") or {}

    @cached_property
    def refusal_close_codes(self) -> list[tuple[int, int]]:
        out = []
        for code in self.connect["refusal"].get("close_codes", []):
            if isinstance(code, int):
                out.append((code, code))
            else:
                low, high = code.split("-")
                out.append((int(low), int(high)))
        return out

    def is_refusal_close(self, code: int | None) -> bool:
        return code is not None and any(low <= code <= high for low, high in self.refusal_close_codes)

    @property
    def schemas(self) -> dict | bool:
        return self.spec["schemas"]

    # --- building client frames ---------------------------------------------
    def new_id(self, kind: str) -> str:
        """A fresh id the kit makes for a ``thread``, ``run`` or ``msg`` (``run.id_format``)."""
        if self.spec["run"].get("id_format") == "uuid":
            return str(uuid.uuid4())
        return f"{kind}_{uuid.uuid4().hex[:12]}"

    def template_values(self, **values: Any) -> dict:
        return {**self.settings, **values}

    def build_start(self, content: str, thread_id: str, run_id: str, message_id: str, command_id: int,
                    history: list[dict] | None = None) -> Any:
        """The frame that starts a run (``run.start`` of the dialect), as JSON data.

        ``{messages}`` is the thread's conversation so far (``history``: earlier user
        messages and the agent's answers, as ``{"id", "role", "content"}``) plus this message."""
        messages = list(history or []) + [{"id": message_id, "role": "user", "content": content}]
        return render(self.spec["run"]["start"], self.template_values(
            content=content, thread_id=thread_id, run_id=run_id, message_id=message_id, command_id=command_id,
            messages=messages))

    def build_user_message(self, content: str, thread_id: str | None, run_id: str | None) -> Any:
        """Kept for callers of the first dialect version: :meth:`build_start` with fresh ids."""
        return self.build_start(content, thread_id or "", run_id or "", f"msg-{run_id}", 1)

    def __repr__(self) -> str:
        return f"Dialect({self.name!r} from {self.source})"


def check(raw: dict, path: Path) -> list[str]:
    """Every problem of a dialect's content (schema and what a schema cannot say), as lines."""
    validator = _dialect_validator()
    errors = sorted(validator.iter_errors(raw), key=lambda e: list(map(str, e.absolute_path)))
    problems = [_describe(e) for e in errors]
    # The other checks run too, except in sections the schema already found broken (they
    # would only restate those problems).
    broken = {str(e.absolute_path[0]) if e.absolute_path else "<root>" for e in errors}
    try:
        problems += [p for p in _semantic_problems(raw, path) if p.split("/", 1)[0].split(":")[0] not in broken]
    except (KeyError, TypeError, AttributeError, ValueError):
        pass  # a shape the schema already named
    return problems


def _unknown(where: str, template: Any, allowed: set[str]) -> list[str]:
    unknown = placeholders(template) - allowed
    return [f"{where}: unknown placeholder(s) {sorted(unknown)}; known here: {sorted(allowed)}"] if unknown else []


def _semantic_problems(raw: dict, path: Path) -> list[str]:
    """What the JSON Schema cannot say: placeholders, cross references, schema files."""
    problems: list[str] = []
    settings = set(raw.get("settings") or {})
    run = raw.get("run") or {}
    connect = raw.get("connect") or {}
    problems += _unknown("run/start", run.get("start"), RUN_PLACEHOLDERS | settings)
    if isinstance(run.get("reply"), dict):
        problems += _unknown("run/reply", {k: v for k, v in run["reply"].items() if k != "run_id"},
                             COMMAND_PLACEHOLDERS | settings)
    problems += _unknown("connect/url", connect.get("url", ""), CONNECT_PLACEHOLDERS | settings)
    for n, sub in enumerate(connect.get("subprotocols", [])):
        problems += _unknown(f"connect/subprotocols/{n}", sub, {"token"})
    for n, step in enumerate(connect.get("prepare", [])):
        problems += _unknown(f"connect/prepare/{n}", step, {"thread_id"} | settings)
    for n, step in enumerate(connect.get("setup", [])):
        problems += _unknown(f"connect/setup/{n}", step, COMMAND_PLACEHOLDERS | settings)
    problems += _unknown("auth_service/body", (raw.get("auth_service") or {}).get("body", {}), AUTH_PLACEHOLDERS)
    beat = (raw.get("frames") or {}).get("heartbeat")
    if isinstance(beat, dict):
        problems += _unknown("frames/heartbeat/reply", beat.get("reply"), settings)
    auth = connect.get("auth", [])
    if "subprotocol" in auth and not any("{token}" in s for s in connect.get("subprotocols", [])):
        problems.append("connect/subprotocols: subprotocol auth needs one subprotocol carrying {token}, "
                        "e.g. [\"jwt-auth\", \"jwt.{token}\"]")
    if run.get("reply") and run.get("correlation") != "connection":
        problems.append("run/reply: a run id from the reply needs run/correlation 'connection'")
    events = raw.get("events") or {}
    fields = events.get("fields") or {}
    key = events.get("tool_call_key")
    if key is not None and key not in fields and key != "tool_name":
        problems.append(f"events/tool_call_key: '{key}' is not one of events/fields ({', '.join(sorted(fields))})")
    for name in run.get("event_ids", []):
        if name not in fields:
            problems.append(f"run/event_ids: '{name}' has no path in events/fields")
    mapped = {r.get("role") for r in events.get("roles", []) if isinstance(r, dict)}
    for role in (raw.get("rules") or {}).get("required_roles", []):
        if role not in mapped:
            problems.append(f"rules/required_roles: role '{role}' is not given by any events/roles matcher")
    for role in ("started", "completed"):
        if role not in mapped:
            problems.append(f"events/roles: no matcher gives the role '{role}': a run could never start or end")
    schemas = raw.get("schemas")
    if isinstance(schemas, dict) and isinstance(schemas.get("dir"), str) and isinstance(schemas.get("by_type"), dict):
        folder = _schema_dir(schemas["dir"], path)
        if not folder.is_dir():
            problems.append(f"schemas/dir: folder '{schemas['dir']}' does not exist (looked in {SCHEMAS} and "
                            f"next to {path.name})")
        else:
            for name, file in schemas["by_type"].items():
                if not (folder / file).is_file():
                    problems.append(f"schemas/by_type/{name}: schema file {folder / file} does not exist")
                    continue
                try:
                    schema = json.loads((folder / file).read_text(encoding="utf-8"))
                    if not isinstance(schema, (dict, bool)):
                        raise ValueError(f"a schema is an object, got {type(schema).__name__}")
                    if folder.resolve().parent != SCHEMAS.resolve():
                        # A user's schema meets the meta-schema here; the kit's own are checked by tests/rules.
                        from jsonschema import Draft202012Validator

                        Draft202012Validator.check_schema(schema)
                except Exception as err:  # noqa: BLE001 - ValueError, OSError or jsonschema's SchemaError
                    problems.append(f"schemas/by_type/{name}: {folder / file} is not a valid JSON Schema: "
                                    f"{str(err).splitlines()[0][:160]}")
    elif isinstance(schemas, dict) and "models" in schemas:
        try:
            import ag_ui.core  # noqa: F401
        except ImportError:
            problems.append("schemas/models: 'ag-ui-protocol' is not installed (pip install -r requirements.txt)")
    return problems


def _schema_dir(folder: str, dialect_path: Path) -> Path:
    candidate = Path(folder)
    if candidate.is_absolute():
        return candidate
    local = dialect_path.parent / candidate
    return local if local.is_dir() and not (SCHEMAS / candidate).is_dir() else SCHEMAS / candidate


def schema_dir(dialect: Dialect) -> Path | None:
    schemas = dialect.schemas
    if isinstance(schemas, dict) and "dir" in schemas:
        return _schema_dir(schemas["dir"], Path(dialect.source))
    return None


_cache: dict[tuple[str, float], Dialect] = {}


def load(name_or_path: str | Path = "default", settings: dict[str, Any] | None = None) -> Dialect:
    """Load ``resources/dialects/<name>.json`` or a JSON file at a path, checked completely.

    Raises :class:`DialectError` naming the file and every problem at once."""
    raw, path = _load_raw(name_or_path)
    stamp = (str(path), path.stat().st_mtime)
    cached = _cache.get(stamp)
    if cached is None:
        problems = check(raw, path)
        if problems:
            raise DialectError(f"Dialect file {path} is invalid ({len(problems)} problem"
                               f"{'s' * (len(problems) != 1)}; see docs/dialects.md):\n- " + "\n- ".join(problems))
        cached = _cache[stamp] = Dialect(name=raw["name"], spec=raw, source=str(path))
    if settings:
        return Dialect(name=cached.name, spec=cached.spec, source=cached.source,
                       settings={k: v for k, v in settings.items() if k in cached.spec.get("settings", {})})
    return cached


_current: Dialect | None = None


def current() -> Dialect:
    """The dialect in force for this Robot process (default: ``default``)."""
    global _current
    if _current is None:
        _current = load("default")
    return _current


def use(name_or_path: str | Path | Dialect, settings: dict[str, Any] | None = None) -> Dialect:
    global _current
    _current = name_or_path if isinstance(name_or_path, Dialect) else load(name_or_path, settings)
    return _current
