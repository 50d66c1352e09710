"""How to open one WebSocket: URL, auth transport, subprotocols, headers, TLS.

Both transports (websocket-client for step-by-step keywords, ``websockets`` for fan-out)
build their handshake from this one spec, so a target configured once behaves the
same in both. Neither client library judges the server's selected subprotocol: the
kit does (:meth:`agentkit.wire.session.AgentSession.check_subprotocol`), the same way
for both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .masking import REDACTOR, b64url, mask, redact
from .paths import render
from .tls import TLSConfig

AuthMode = Literal["subprotocol", "bearer", "query", "none"]
AUTH_MODES = ("subprotocol", "bearer", "query", "none")
# RFC 6455 4.1: a subprotocol is an HTTP token (RFC 7230 tchar); '+', '/', '=' of base64 are not.
_TOKEN_CHARS = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_FORBIDDEN_IN_SUBPROTOCOL = re.compile(r"[^!#$%&'*\-.^_`|~0-9A-Za-z]")


class SpecError(ValueError):
    """A connection setting that cannot work; the message names the value."""


def validate_ws_url(url: str) -> str:
    parts = urlsplit(url or "")
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise SpecError(f"WebSocket URL '{url}' is not valid: expected ws://host[:port]/path "
                        f"or wss://host[:port]/path.")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise SpecError(f"WebSocket URL '{url}' has an invalid port.") from None
    return url


def default_ws_url(http_url: str) -> str:
    """The WebSocket URL of a backend at ``http(s)://host[:port]``: ``ws(s)://host[:port]/ws``
    (docs/protocol.md)."""
    scheme, rest = http_url.split("://", 1)
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/ws"


def ws_base(url: str) -> str:
    """``scheme://host:port`` of a WebSocket URL."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass
class ConnectionSpec:
    """Everything needed for one handshake.

    ``auth``: ``subprotocol`` offers ``subprotocols`` with ``{token}`` filled in (default
    ``jwt-auth, jwt.<token>``); ``bearer`` sends ``Authorization: Bearer <token>``;
    ``query`` appends ``?<query_param>=<token>``; ``none`` sends no token.
    ``token_encoding`` ``base64url`` encodes the token inside the subprotocol.
    ``tls`` applies to ``wss://``.
    """

    url: str
    token: str | None = None
    auth: AuthMode = "subprotocol"
    subprotocols_template: list[str] = field(default_factory=lambda: ["jwt-auth", "jwt.{token}"])
    token_encoding: Literal["raw", "base64url"] = "raw"
    query_param: str = "token"
    headers: dict[str, str] = field(default_factory=dict)
    tls: TLSConfig = field(default_factory=TLSConfig)
    open_timeout: float = 10.0

    def __post_init__(self) -> None:
        validate_ws_url(self.url)
        if self.auth not in AUTH_MODES:
            raise SpecError(f"Auth mode '{self.auth}' is not valid: expected one of {', '.join(AUTH_MODES)}.")
        if self.auth != "none" and not self.token:
            raise SpecError(f"Auth mode '{self.auth}' needs a token, got none.")
        if self.token:
            REDACTOR.add(self.token)
        if self.auth == "subprotocol":
            if not any("{token}" in s for s in self.subprotocols_template):
                raise SpecError("Subprotocol auth needs a subprotocol carrying {token} (connect/subprotocols).")
            encoded = self._encoded_token()
            bad = sorted(set(_FORBIDDEN_IN_SUBPROTOCOL.findall(encoded)))
            if bad:
                raise SpecError(
                    f"Token {mask(self.token)} cannot travel in a subprotocol: it holds {' '.join(repr(c) for c in bad)}, "
                    "which a WebSocket subprotocol may not contain (RFC 6455, section 4.1), so the server would answer "
                    "HTTP 400. Use token_encoding base64url (E2E_TOKEN_ENCODING=base64url), or send the token in a "
                    "header (auth=bearer) or the query (auth=query).")

    @property
    def is_tls(self) -> bool:
        return self.url.startswith("wss://")

    def _encoded_token(self) -> str:
        if self.token_encoding == "base64url":
            return b64url(self.token)
        return self.token

    def subprotocols(self) -> list[str]:
        """The subprotocols offered (with the token in them for subprotocol auth)."""
        if self.auth != "subprotocol":
            return []
        return [render(s, {"token": self._encoded_token()}) for s in self.subprotocols_template]

    def request_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.auth == "bearer":
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def request_url(self) -> str:
        if self.auth != "query":
            return self.url
        parts = urlsplit(self.url)
        query = parse_qsl(parts.query) + [(self.query_param, self.token)]
        return urlunsplit(parts._replace(query=urlencode(query)))

    def describe(self) -> str:
        """One line for logs: URL, auth transport and masked token; never the token."""
        auth = "no token" if self.auth == "none" else f"{self.auth} auth, token {mask(self.token)}"
        if self.auth == "subprotocol":
            auth += f", offering {', '.join(mask_subprotocol(s) for s in self.subprotocols())}"
        extra = f", headers {sorted(self.headers)}" if self.headers else ""
        tls = f", TLS {self.tls.describe()}" if self.is_tls else ""
        return f"{self.url} ({auth}{extra}{tls})"


def mask_subprotocol(value: str | None) -> str:
    """A subprotocol as it may be shown: one that carries a token shows it masked."""
    if value is None:
        return "none"
    return redact(value)
