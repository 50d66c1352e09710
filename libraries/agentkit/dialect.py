"""Wire names are data: a dialect maps a backend's event names and field paths onto
the lifecycle roles the assertions speak of (started, thinking, tool_executing,
tool_completed, completed, error)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESOURCES = Path(__file__).resolve().parents[2] / "resources"
DIALECTS = RESOURCES / "dialects"
SCHEMAS = RESOURCES / "schemas"

ROLES = ("started", "thinking", "tool_executing", "tool_completed", "completed", "error")
TERMINAL_ROLES = ("completed", "error")
_MISSING = object()


class DialectError(ValueError):
    """A dialect file that cannot be used; the message names the file and the problem."""


def get_path(obj: Any, path: str, default: Any = None) -> Any:
    """Value at a dotted path (``data.tool_name``, ``items.0.name``) or ``default``."""
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


@dataclass
class Dialect:
    name: str
    events: dict[str, list[str]]
    welcome: list[dict[str, str]]
    error_frames: list[str]
    pong: list[str]
    server_ping: list[str]
    fields: dict[str, list[str]]
    user_message: dict[str, str]
    schemas: dict[str, str] = field(default_factory=dict)
    source: str = "<built-in>"

    def __post_init__(self) -> None:
        self._role_of = {name: role for role, names in self.events.items() for name in names}

    # --- classification -------------------------------------------------
    def role(self, event_type: str | None) -> str | None:
        """Lifecycle role of a wire event name, or ``None`` for non-agent frames."""
        return self._role_of.get(event_type) if event_type else None

    def names(self, role: str) -> list[str]:
        return self.events.get(role, [])

    def is_terminal(self, event_type: str | None) -> bool:
        return self.role(event_type) in TERMINAL_ROLES

    def is_welcome(self, message: Any) -> bool:
        if not isinstance(message, dict):
            return False
        return any(all(get_path(message, k) == v for k, v in rule.items()) for rule in self.welcome)

    def field(self, message: Any, name: str, default: Any = None) -> Any:
        """First present value among the dialect's paths for a field name.

        A name the dialect does not know is read as a dotted path."""
        for path in self.fields.get(name, [name]):
            value = get_path(message, path, _MISSING)
            if value is not _MISSING:
                return value
        return default

    # --- building client messages -----------------------------------------
    def build_user_message(self, content: str, thread_id: str | None, run_id: str | None) -> dict:
        spec = self.user_message
        msg: dict[str, Any] = {"type": spec.get("type", "user_message")}
        set_path(msg, spec.get("content", "payload.content"), content)
        if thread_id is not None and spec.get("thread_id"):
            set_path(msg, spec["thread_id"], thread_id)
        if run_id is not None and spec.get("run_id"):
            set_path(msg, spec["run_id"], run_id)
        return msg

    # --- loading ------------------------------------------------------------
    @classmethod
    def load(cls, name_or_path: str | Path = "default") -> "Dialect":
        """Load ``resources/dialects/<name>.json`` or a JSON file at a path."""
        path = Path(name_or_path)
        if not path.suffix:
            path = DIALECTS / f"{name_or_path}.json"
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in DIALECTS.glob("*.json")))
            raise DialectError(f"Dialect '{name_or_path}' not found: expected a file at {path} "
                               f"or one of the built-in dialects: {known}.")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise DialectError(f"Dialect file {path} is not readable JSON: {err}") from None
        missing = [k for k in ("events", "fields", "user_message") if k not in raw]
        unknown_roles = sorted(set(raw.get("events", {})) - set(ROLES))
        if missing or unknown_roles:
            raise DialectError(
                f"Dialect file {path} is invalid: "
                + "; ".join(filter(None, [
                    f"missing keys {missing}" if missing else "",
                    f"unknown roles {unknown_roles}, expected some of {list(ROLES)}" if unknown_roles else ""])))
        return cls(
            name=raw.get("name", path.stem), events=raw["events"], welcome=raw.get("welcome", []),
            error_frames=raw.get("error_frames", ["error"]), pong=raw.get("pong", ["pong"]),
            server_ping=raw.get("server_ping", []), fields=raw["fields"],
            user_message=raw["user_message"], schemas=raw.get("schemas", {}), source=str(path))


_current: Dialect | None = None


def current() -> Dialect:
    """The dialect in force for this Robot process (default: PROTOCOL.md's names)."""
    global _current
    if _current is None:
        _current = Dialect.load("default")
    return _current


def use(name_or_path: str | Path) -> Dialect:
    global _current
    _current = Dialect.load(name_or_path)
    return _current
