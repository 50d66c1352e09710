"""The one event model: every frame a server sends, as every transport records it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from .dialect import TERMINAL_ROLES, Dialect, current

# Unix times above this are milliseconds (it is the year 5138 in seconds).
_MS_THRESHOLD = 1e11


def parse_timestamp(value: Any) -> float | None:
    """Unix seconds from seconds or milliseconds (a number) or an ISO 8601 string; ``None`` when neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) / 1000.0 if value > _MS_THRESHOLD else float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            try:
                return parse_timestamp(float(value))
            except ValueError:
                return None
    return None


def _hex_preview(data: bytes, width: int = 24) -> str:
    shown = data[:width].hex(" ")
    return shown + (" …" if len(data) > width else "")


@dataclass(eq=False)
class Event:
    """One frame received on one connection.

    ``seq`` counts frames per connection from 1; ``received`` is ``time.perf_counter()``
    at arrival (compare it with send times from the same clock). ``message`` is the parsed
    JSON object or value (``None`` when the frame was not JSON, or was a binary frame the
    dialect does not read as JSON: ``raw``, ``data`` and ``parse_error`` keep it).
    ``kind`` is ``frame`` for data frames and ``close`` for the close the connection saw.
    What the dialect says of the frame (its ``type`` name, ``role``, ``control`` kind) is
    read once and cached: an event is a record.
    """

    seq: int
    received: float
    connection: str
    raw: str
    message: Any = None
    parse_error: str | None = None
    kind: str = "frame"
    close_code: int | None = None
    close_reason: str = ""
    binary: bool = False
    data: bytes | None = field(default=None, repr=False)
    closed_by: str = "server"          # for close events: "server" or "client"
    dialect: Dialect = field(default_factory=current, repr=False, compare=False)

    @classmethod
    def from_text(cls, seq: int, received: float, connection: str, text: str | bytes,
                  dialect: Dialect | None = None) -> "Event":
        dialect = dialect or current()
        if isinstance(text, (bytes, bytearray, memoryview)):
            data = bytes(text)
            raw = data.decode("utf-8", "replace")
            if not dialect.binary_json:
                return cls(seq, received, connection, f"<binary frame, {len(data)} bytes: {_hex_preview(data)}>", None,
                           f"binary frame of {len(data)} bytes; dialect '{dialect.name}' reads JSON from text "
                           f"frames only (events.binary_json)", binary=True, data=data, dialect=dialect)
            try:
                message, error = json.loads(raw), None
            except ValueError as err:
                message, error = None, f"binary frame of {len(data)} bytes, not JSON ({err})"
            return cls(seq, received, connection, raw, message, error, binary=True, data=data, dialect=dialect)
        try:
            message, error = json.loads(text), None
        except ValueError as err:
            message, error = None, f"not JSON ({err})"
        return cls(seq, received, connection, text, message, error, dialect=dialect)

    @classmethod
    def closed(cls, seq: int, received: float, connection: str, code: int | None, reason: str = "",
               dialect: Dialect | None = None, by: str = "server") -> "Event":
        who = "" if by == "server" else f" by the {by}"
        return cls(seq, received, connection, f"<close {code} {reason}{who}>".replace("  ", " ").strip(), None, None,
                   kind="close", close_code=code, close_reason=reason, closed_by=by, dialect=dialect or current())

    # --- what the dialect says about it ------------------------------------
    @property
    def is_json_object(self) -> bool:
        return isinstance(self.message, dict)

    @cached_property
    def type(self) -> str | None:
        """The frame's name (the dialect's ``events.name``; usually its ``type`` field)."""
        if self.kind == "close":
            return "<close>"
        if not self.is_json_object:
            return None
        return self.dialect.name_of(self.message)

    @cached_property
    def role(self) -> str | None:
        """Lifecycle role (``started``, ``thinking``, ``tool_executing``, ...) or ``None``."""
        return self.dialect.role_of(self.message) if self.is_json_object else None

    @cached_property
    def control(self) -> str | None:
        """``welcome``, ``heartbeat``, ``pong``, ``error``, ``ack`` or ``reply`` for control frames."""
        if not self.is_json_object or self.role is not None:
            return None
        return self.dialect.control_of(self.message)

    @property
    def is_agent_event(self) -> bool:
        return self.role is not None

    @property
    def is_terminal(self) -> bool:
        return self.role in TERMINAL_ROLES

    @property
    def is_welcome(self) -> bool:
        return self.control == "welcome"

    def field(self, name: str, default: Any = None) -> Any:
        if not self.is_json_object:
            return default
        return self.dialect.field(self.message, name, default)

    @cached_property
    def run_id(self) -> Any:
        return self.field("run_id")

    @cached_property
    def thread_id(self) -> Any:
        return self.field("thread_id")

    @cached_property
    def user_id(self) -> Any:
        return self.field("user_id")

    @property
    def tool_name(self) -> Any:
        return self.field("tool_name")

    @cached_property
    def tool_key(self) -> Any:
        """The value that pairs this tool event with the others of the same call."""
        return self.field(self.dialect.tool_call_key)

    @property
    def timestamp(self) -> float | None:
        return parse_timestamp(self.field("timestamp"))

    def summary(self, width: int = 80) -> str:
        """Short human description of the payload for timelines."""
        if self.kind == "close":
            text = f"connection closed by the {self.closed_by}, code {self.close_code}"
            return text + (f" ({self.close_reason})" if self.close_reason else "")
        if self.parse_error:
            if self.binary and self.data is not None and self.message is None:
                return _cut(self.raw, width)
            return _cut(f"{self.parse_error}: {self.raw[:width]!r}", width)
        role = self.role
        parts = []
        if role == "started" and self.field("agent_name") is not None:
            parts.append(f"agent={self.field('agent_name')}")
        if role in ("tool_executing", "tool_completed", "tool_error", "tool_chunk"):
            name = self.tool_name
            if name is not None:
                parts.append(f"tool={name}")
            if self.dialect.tool_call_key != "tool_name" and self.tool_key is not None:
                parts.append(f"call={self.tool_key}")
        if role in ("tool_executing", "tool_chunk") and self.field("parameters") is not None:
            parts.append(f"args={json.dumps(self.field('parameters'), default=str)}")
        if role == "tool_arguments":
            parts.append(f"call={self.tool_key} args+={self.field('arguments_delta')!r}")
        if role == "thinking" and self.field("thought") is not None:
            parts.append(f"thought={self.field('thought')!r}")
        if role == "answer":
            parts.append(f"text+={self.field('answer_delta')!r}")
        if role in ("completed", "tool_completed") and self.field("result") is not None:
            parts.append(f"result={self.field('result')!r}")
        if role in ("error", "tool_error") or self.control == "error":
            parts.append(f"error={self.field('error', self.dialect_error_code())!r}")
        if self.is_welcome:
            parts.append(f"connection_id={self.dialect.welcome_field(self.message, 'connection_id')} "
                         f"user_id={self.dialect.welcome_field(self.message, 'user_id')}")
        if role is not None and role not in ("answer", "thinking"):
            ids = [f"{n}={self.field(n)}" for n in ("run_id", "user_id") if self.field(n) is not None]
            parts.extend(ids)
        if not parts:
            parts.append(json.dumps(self.message, default=str))
        return _cut(" ".join(parts), width)

    def dialect_error_code(self) -> Any:
        paths = self.dialect.frames.get("error_code")
        if not paths or not self.is_json_object:
            return None
        from .paths import first_present

        return first_present(self.message, paths)

    def to_dict(self) -> dict:
        """Plain data for Robot variables and reports."""
        return {"seq": self.seq, "connection": self.connection, "type": self.type, "role": self.role,
                "kind": self.kind, "received": self.received, "message": self.message, "raw": self.raw,
                "parse_error": self.parse_error, "close_code": self.close_code, "binary": self.binary}


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
