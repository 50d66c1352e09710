"""How to open one WebSocket: URL, auth transport, headers, TLS. Both transports
(websocket-client for step-by-step keywords, ``websockets`` for fan-out) build their
handshake from this one spec, so a target configured once behaves the same in both."""

from __future__ import annotations

import base64
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .masking import mask

AuthMode = Literal["subprotocol", "bearer", "query", "none"]
AUTH_MODES = ("subprotocol", "bearer", "query", "none")


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


@dataclass
class ConnectionSpec:
    """Everything needed for one handshake.

    ``auth``: ``subprotocol`` offers ``[subprotocol, token_prefix + token]`` (PROTOCOL.md:
    ``jwt-auth, jwt.<token>``); ``bearer`` sends ``Authorization: Bearer <token>``;
    ``query`` appends ``?<query_param>=<token>``; ``none`` sends no token.
    ``token_encoding`` ``base64url`` encodes the token inside the subprotocol (a variant
    some backends use). ``verify_tls`` and ``ca_file`` apply to ``wss://``.
    """

    url: str
    token: str | None = None
    auth: AuthMode = "subprotocol"
    subprotocol: str = "jwt-auth"
    token_prefix: str = "jwt."
    token_encoding: Literal["raw", "base64url"] = "raw"
    query_param: str = "token"
    headers: dict[str, str] = field(default_factory=dict)
    verify_tls: bool = True
    ca_file: str | None = None
    open_timeout: float = 10.0

    def __post_init__(self) -> None:
        validate_ws_url(self.url)
        if self.auth not in AUTH_MODES:
            raise SpecError(f"Auth mode '{self.auth}' is not valid: expected one of {', '.join(AUTH_MODES)}.")
        if self.auth != "none" and not self.token:
            raise SpecError(f"Auth mode '{self.auth}' needs a token, got none.")
        if self.ca_file and not Path(self.ca_file).is_file():
            raise SpecError(f"CA file '{self.ca_file}' does not exist or is not a file.")

    @property
    def is_tls(self) -> bool:
        return self.url.startswith("wss://")

    def _encoded_token(self) -> str:
        if self.token_encoding == "base64url":
            return base64.urlsafe_b64encode(self.token.encode()).decode().rstrip("=")
        return self.token

    def subprotocols(self) -> list[str]:
        if self.auth == "subprotocol":
            return [self.subprotocol, f"{self.token_prefix}{self._encoded_token()}"]
        return []

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

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.is_tls:
            return None
        ctx = ssl.create_default_context(cafile=self.ca_file) if self.ca_file else ssl.create_default_context()
        if not self.verify_tls:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def describe(self) -> str:
        """One line for logs: URL, auth transport and masked token; never the token."""
        auth = "no token" if self.auth == "none" else f"{self.auth} auth, token {mask(self.token)}"
        extra = f", headers {sorted(self.headers)}" if self.headers else ""
        tls = ""
        if self.is_tls:
            tls = ", TLS verification OFF" if not self.verify_tls else (f", CA {self.ca_file}" if self.ca_file else ", TLS verified")
        return f"{self.url} ({auth}{extra}{tls})"
