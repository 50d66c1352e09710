"""Masked forms of secrets and tokens: enough to tell two apart, never enough to use.

:func:`mask` gives the masked form of one value. :data:`REDACTOR` knows every secret
and token the kit has seen in this process (signing secrets, simulation keys, tokens it
made or was given, their base64url forms) and replaces each occurrence in any text with
its masked form; anything that looks like a JWT is masked too, known or not. Every text
the kit writes goes through it, and :func:`install_log_filter` routes other libraries'
log records (websocket-client prints the offered subprotocols) through it as well.
"""

from __future__ import annotations

import base64
import logging
import re
from typing import Any

try:  # Robot Framework 7.4+
    from robot.api.types import Secret
except ImportError:  # pragma: no cover - requirements pin 7.4+
    Secret = None  # type: ignore[assignment]

# header.payload.signature of a JWT (the signature may be empty: alg none)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
# base64url of a JWT (a token carried in a subprotocol by some backends): "eyJ" encodes to "ZXlK"
_B64_JWT = re.compile(r"ZXlK[A-Za-z0-9_-]{30,}")
MIN_SECRET = 6  # shorter values would mask ordinary words


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


def b64url(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


class Redactor:
    """Replaces every known secret (and every JWT-shaped string) in a text by its masked form."""

    def __init__(self) -> None:
        # Copy on write: readers (any thread) see one whole (known, pattern) pair, never a
        # half-updated one, without a lock.
        self._state: tuple[dict[str, str], re.Pattern | None] = ({}, None)

    def add(self, value: Any, keep: int = 4) -> None:
        """Remember a secret (``keep=0``: show not even a prefix) and its base64url form."""
        plain = reveal(value)
        if not plain or len(plain) < MIN_SECRET or _JWT.fullmatch(plain):
            return  # JWTs (and their base64url form) are masked by shape, known or not
        known = self._state[0]
        if plain in known:
            return
        masked = mask(plain, keep)
        added = dict(known)
        added[plain] = masked
        added.setdefault(b64url(plain), f"base64url of {masked}")
        # Longest first, so a token wins over a secret that happens to be inside it.
        ordered = sorted(added, key=len, reverse=True)
        self._state = (added, re.compile("|".join(map(re.escape, ordered))))

    def redact(self, text: Any) -> Any:
        """``text`` with every secret masked; non-strings are returned unchanged."""
        if not isinstance(text, str) or not text:
            return text
        known, pattern = self._state
        if pattern is not None:
            text = pattern.sub(lambda m: known.get(m.group(0), "••••"), text)
        if "eyJ" in text:
            text = _JWT.sub(lambda m: mask(m.group(0)), text)
        if "ZXlK" in text:
            text = _B64_JWT.sub(lambda m: f"base64url token {mask(m.group(0))}", text)
        return text

    def redact_data(self, value: Any) -> Any:
        """A copy of a JSON-like value with every string redacted."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {self.redact(k): self.redact_data(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.redact_data(v) for v in value]
        return value


REDACTOR = Redactor()
redact = REDACTOR.redact


class _RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is logging's problem, not ours
            return True
        clean = REDACTOR.redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:
            # Handlers format the traceback later, unmasked: format it now, masked.
            record.exc_text = REDACTOR.redact(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = REDACTOR.redact(record.stack_info)
        return True


_installed = False


def install_log_filter() -> None:
    """Mask secrets in every log record of this process, whoever logs it (once per process).

    A record factory, not a handler filter: Robot's own handler, pytest's and the console's
    all see the record after it was made, so one place covers them all."""
    global _installed
    if _installed:
        return
    _installed = True
    previous = logging.getLogRecordFactory()
    redacting = _RedactingFilter()

    def factory(*args, **kwargs):
        record = previous(*args, **kwargs)
        redacting.filter(record)
        return record

    logging.setLogRecordFactory(factory)
