"""The one event model: every frame a server sends, as every transport records it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from .dialect import Dialect, current


def parse_timestamp(value: Any) -> float | None:
    """Unix seconds from a float/int or an ISO 8601 string; ``None`` when neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return None
    return None


@dataclass
class Event:
    """One frame received on one connection.

    ``seq`` counts frames per connection from 1; ``received`` is ``time.perf_counter()``
    at arrival (compare it with send times from the same clock). ``message`` is the parsed
    JSON (``None`` when the frame was not JSON: ``raw`` and ``parse_error`` keep it).
    ``kind`` is ``frame`` for data frames and ``close`` for the close the connection saw.
    An event is a record: ``type`` and the ids are read once and cached (the reader files
    each frame by its ids on arrival; the assertions read them again).
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
    dialect: Dialect = field(default_factory=current, repr=False, compare=False)

    @classmethod
    def from_text(cls, seq: int, received: float, connection: str, text: str | bytes,
                  dialect: Dialect | None = None) -> "Event":
        binary = isinstance(text, (bytes, bytearray))
        raw = text.decode("utf-8", "replace") if binary else text
        try:
            message = json.loads(raw)
            error = None
        except ValueError as err:
            message, error = None, f"not JSON ({err})"
        return cls(seq, received, connection, raw, message, error, binary=binary,
                   dialect=dialect or current())

    @classmethod
    def closed(cls, seq: int, received: float, connection: str, code: int | None, reason: str = "",
               dialect: Dialect | None = None) -> "Event":
        return cls(seq, received, connection, f"<close {code} {reason}>".strip(), None, None,
                   kind="close", close_code=code, close_reason=reason, dialect=dialect or current())

    # --- what the dialect says about it ------------------------------------
    @property
    def is_json_object(self) -> bool:
        return isinstance(self.message, dict)

    @cached_property
    def type(self) -> str | None:
        if self.kind == "close":
            return "<close>"
        if not self.is_json_object:
            return None
        value = self.message.get("type")
        return value if isinstance(value, str) else None

    @property
    def role(self) -> str | None:
        return self.dialect.role(self.type)

    @property
    def is_agent_event(self) -> bool:
        return self.role is not None

    @property
    def is_terminal(self) -> bool:
        return self.dialect.is_terminal(self.type)

    @property
    def is_welcome(self) -> bool:
        return self.dialect.is_welcome(self.message)

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

    @property
    def timestamp(self) -> float | None:
        return parse_timestamp(self.field("timestamp"))

    def summary(self, width: int = 80) -> str:
        """Short human description of the payload for timelines."""
        if self.kind == "close":
            return f"connection closed, code {self.close_code}" + (f" ({self.close_reason})" if self.close_reason else "")
        if self.parse_error:
            return f"{'binary' if self.binary else 'text'} frame, {self.parse_error}: {self.raw[:width]!r}"
        role = self.role
        parts = []
        if role == "started":
            parts.append(f"agent={self.field('agent_name')}")
        if role in ("tool_executing", "tool_completed"):
            parts.append(f"tool={self.tool_name}")
        if role == "thinking":
            parts.append(f"thought={self.field('thought')!r}")
        if role in ("completed", "tool_completed"):
            parts.append(f"result={self.field('result')!r}")
        if role == "error" or self.type in self.dialect.error_frames:
            parts.append(f"error={self.field('error', self.field('error_code'))!r}")
        if self.is_welcome:
            parts.append(f"connection_id={self.field('connection_id')} user_id={self.field('user_id')}")
        if not parts:
            parts.append(json.dumps(self.message, default=str))
        text = " ".join(parts)
        return text if len(text) <= width else text[: width - 1] + "…"

    def to_dict(self) -> dict:
        """Plain data for Robot variables and reports."""
        return {"seq": self.seq, "connection": self.connection, "type": self.type, "role": self.role,
                "kind": self.kind, "received": self.received, "message": self.message, "raw": self.raw,
                "parse_error": self.parse_error, "close_code": self.close_code}
