"""Every HTTP call the kit makes (health, the auth service, the agent API, a dialect's
``connect.prepare`` steps) goes through :func:`request`: one trust configuration, secrets
masked, and one diagnosis in the kit's words when the call fails before any answer
(what was asked, what happened, what to check), never requests' raw exception."""

from __future__ import annotations

import socket
import ssl
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from ..wire.masking import redact
from ..wire.tls import TLSConfig, _reason, diagnose


class HttpFailure(ConnectionError):
    """An HTTP call got no answer; the message is the diagnosis."""


@dataclass
class Answer:
    status: int
    body: Any           # parsed JSON, else the text
    text: str
    headers: dict
    url: str
    elapsed_ms: float


_local = threading.local()


def _session() -> requests.Session:
    # One keep-alive session per thread: requests' Session is not meant to be shared.
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
        session.trust_env = True
    return session


def request(method: str, url: str, *, tls: TLSConfig | None = None, headers: dict | None = None,
            json: Any = None, timeout: float = 10.0, what: str = "") -> Answer:
    """``method url`` with the trust configuration; raises :class:`HttpFailure` with a diagnosis."""
    tls = tls or TLSConfig()
    label = what or f"{method} {url}"
    try:
        resp = _session().request(method, url, headers=headers or {}, json=json, timeout=timeout,
                                  **tls.requests_options())
    except requests.exceptions.SSLError as err:
        raise HttpFailure(f"{label}: {diagnose(_ssl_cause(err), url, tls)}") from None
    except requests.exceptions.ConnectTimeout:
        raise HttpFailure(f"{label}: no connection to {_where(url)} within {timeout:g}s. Check that the "
                          f"service runs and that the URL and port are right.") from None
    except requests.exceptions.ReadTimeout:
        raise HttpFailure(f"{label}: {_where(url)} accepted the connection but sent no answer within "
                          f"{timeout:g}s.") from None
    except requests.exceptions.ConnectionError as err:
        tls_problem = tls_cause(url, tls, timeout)
        if tls_problem:
            raise HttpFailure(f"{label}: {tls_problem}") from None
        raise HttpFailure(f"{label}: cannot connect to {_where(url)} ({connection_reason(err)}). Check that the "
                          f"service runs there and that the URL is right.") from None
    except requests.exceptions.InvalidURL as err:
        raise HttpFailure(f"{label}: the URL {url!r} is not valid: {err}.") from None
    except requests.RequestException as err:
        raise HttpFailure(f"{label}: the request failed before any answer: {redact(str(err))}.") from None
    try:
        body: Any = resp.json()
    except ValueError:
        body = resp.text
    return Answer(resp.status_code, body, resp.text, dict(resp.headers), url,
                  resp.elapsed.total_seconds() * 1000)


def _where(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


def _ssl_cause(err: BaseException) -> BaseException:
    seen = err
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        for arg in getattr(seen, "args", ()):
            if isinstance(arg, BaseException) and arg is not seen:
                inner = _ssl_cause(arg)
                if isinstance(inner, ssl.SSLError):
                    return inner
        seen = seen.__cause__ or seen.__context__
    return err


def connection_reason(err: BaseException) -> str:
    """Why a TCP connection failed, in words (shared by the HTTP and WebSocket transports)."""
    text = str(err)
    for needle, reason in (("Connection refused", "connection refused: nothing listens on that port"),
                           ("Name or service not known", "the host name does not resolve"),
                           ("nodename nor servname", "the host name does not resolve"),
                           ("Temporary failure in name resolution", "the host name does not resolve"),
                           ("No route to host", "no route to the host"),
                           ("Network is unreachable", "the network is unreachable"),
                           ("RemoteDisconnected", "the server closed the connection without an answer"),
                           ("Connection reset", "the server reset the connection")):
        if needle in text:
            return reason
    return "connection failed"


def tls_cause(url: str, tls: TLSConfig, timeout: float = 10.0) -> str | None:
    """After a connection to ``url`` failed: the TLS diagnosis when TLS is the cause, else
    ``None`` (a plain URL, or a host not reachable at all: the connection error says that)."""
    if not url.startswith(("https://", "wss://")):
        return None
    problem = probe(url, tls, timeout)
    return None if problem is None or problem.startswith("Cannot reach") else problem


def probe(url: str, tls: TLSConfig, timeout: float = 10.0, setting: str = "") -> str | None:
    """Check the TLS of an ``https://``/``wss://`` URL once; ``None`` when it works, else the
    diagnosis. The server's certificate is checked (unless verification is off), and one
    request is sent: a TLS 1.3 server checks a client certificate only after the handshake."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "wss"):
        return None
    port = parts.port or 443
    where = f"{setting} {url}" if setting else url
    try:
        sock = socket.create_connection((parts.hostname, port), timeout=timeout)
    except OSError as err:
        if not tls.verify:
            return None  # nothing to verify: the tests that use this URL say it is unreachable
        return (f"Cannot reach {parts.hostname}:{port} ({where}) for its TLS check: {_reason(err)}. Check that the "
                f"service runs there and that the URL and port are right.")
    try:
        with tls.ssl_context().wrap_socket(sock, server_hostname=parts.hostname) as tsock:
            tsock.sendall(f"HEAD / HTTP/1.1\r\nHost: {parts.hostname}\r\nConnection: close\r\n\r\n".encode())
            if not tsock.recv(16):
                return diagnose(None, url, tls, after_handshake=True)
            return None
    except ssl.SSLError as err:
        return diagnose(err, url, tls)
    except (ConnectionResetError, BrokenPipeError):
        return diagnose(None, url, tls, after_handshake=True)
    except OSError as err:
        return f"TLS check of {parts.hostname}:{port} ({where}) failed: {_reason(err)}."
    finally:
        sock.close()
