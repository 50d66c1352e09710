"""Step-by-step WebSocket connections on websocket-client.

One reader thread per connection appends every frame to the connection's log the moment
it arrives (it never logs: Robot drops log calls from other threads). Waits match against
that log from a cursor under a condition variable, so nothing is lost between keywords."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from bisect import bisect_left
from dataclasses import dataclass
from typing import Any, Callable

import jwt
import websocket
from robot.utils import ConnectionCache

from .dialect import Dialect, current
from .event import Event
from .spec import ConnectionSpec


class HandshakeRefused(ConnectionError):
    """The server answered the upgrade with a non-101 status."""

    def __init__(self, url: str, status: int | None, body: str = "") -> None:
        self.url, self.status, self.body = url, status, body
        super().__init__(f"Handshake to {url} refused with HTTP {status}" + (f": {body[:200]}" if body else ""))


class HandshakeFailed(ConnectionError):
    """The handshake did not complete: connection refused, DNS, TLS or timeout."""


@dataclass
class Handshake:
    url: str
    description: str
    status: int | None
    subprotocol: str | None
    duration: float
    headers: dict


def token_subject(token: str | None) -> str | None:
    """The token's ``sub`` (unverified: the server verifies, we only need the user id)."""
    if not token:
        return None
    try:
        sub = jwt.decode(token, options={"verify_signature": False}).get("sub")
        return str(sub) if sub is not None else None
    except jwt.PyJWTError:
        return None


class Connection:
    """One open WebSocket and the log of every frame it received."""

    def __init__(self, alias: str, spec: ConnectionSpec, dialect: Dialect | None = None) -> None:
        self.alias = alias
        self.spec = spec
        self.dialect = dialect or current()
        self.events: list[Event] = []
        self.cursor = 0
        self.closed: Event | None = None
        self.handshake: Handshake | None = None
        self.user_id: str | None = token_subject(spec.token)
        self.opened_at: float | None = None
        self.sent: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        # ("run_id" | "thread_id", value) -> log indices of the frames carrying it, in arrival
        # order: collecting a run reads its own frames, not the whole log.
        self._by_id: dict[tuple[str, Any], list[int]] = {}
        self._ws: websocket.WebSocket | None = None
        self._reader: threading.Thread | None = None
        self._closing = False

    # --- lifecycle ------------------------------------------------------------
    def open(self) -> Handshake:
        spec = self.spec
        sslopt = None
        if spec.is_tls:
            sslopt = {"cert_reqs": ssl.CERT_REQUIRED if spec.verify_tls else ssl.CERT_NONE,
                      "check_hostname": spec.verify_tls}
            if spec.ca_file:
                sslopt["ca_certs"] = spec.ca_file
        ws = websocket.WebSocket(sslopt=sslopt, enable_multithread=True, skip_utf8_validation=True)
        headers = [f"{k}: {v}" for k, v in spec.request_headers().items()]
        started = time.perf_counter()
        try:
            ws.connect(spec.request_url(), header=headers, subprotocols=spec.subprotocols() or None,
                       timeout=spec.open_timeout, suppress_origin=True)
        except websocket.WebSocketBadStatusException as err:
            body = err.resp_body.decode("utf-8", "replace") if isinstance(err.resp_body, bytes) else str(err.resp_body or "")
            raise HandshakeRefused(spec.url, err.status_code, body) from None
        except (websocket.WebSocketTimeoutException, socket.timeout, TimeoutError):
            raise HandshakeFailed(f"Handshake to {spec.url} did not complete within {spec.open_timeout:g}s "
                                  f"(no HTTP 101 answer).") from None
        except ssl.SSLError as err:
            raise HandshakeFailed(f"TLS handshake with {spec.url} failed: {err.reason or err}. Trust a CA file "
                                  f"with ca_file=... or (test systems only) verify_tls=False.") from None
        except (OSError, websocket.WebSocketException) as err:
            raise HandshakeFailed(f"Cannot connect to {spec.url}: {err}.") from None
        self.opened_at = time.perf_counter()
        self._ws = ws
        ws.settimeout(None)  # the reader blocks; close() unblocks it
        self.handshake = Handshake(spec.url, spec.describe(), ws.getstatus(), ws.getsubprotocol(),
                                   self.opened_at - started, dict(ws.getheaders() or {}))
        self._reader = threading.Thread(target=self._read, name=f"ws-reader-{self.alias}", daemon=True)
        self._reader.start()
        return self.handshake

    def _append(self, event: Event) -> None:
        keys = _id_keys(event)
        with self._cond:
            for key in keys:
                self._by_id.setdefault(key, []).append(len(self.events))
            self.events.append(event)
            self._cond.notify_all()

    def _read(self) -> None:
        ws = self._ws
        seq = 0
        while True:
            try:
                opcode, data = ws.recv_data(control_frame=True)
            except (websocket.WebSocketConnectionClosedException, OSError, websocket.WebSocketException) as err:
                now = time.perf_counter()
                seq += 1
                reason = "closed by the client" if self._closing else f"connection lost: {err}"
                self.closed = Event.closed(seq, now, self.alias, None, reason, self.dialect)
                self._append(self.closed)
                return
            now = time.perf_counter()
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
                seq += 1
                self.closed = Event.closed(seq, now, self.alias, code, data[2:].decode("utf-8", "replace"), self.dialect)
                self._append(self.closed)
                try:
                    ws.close(timeout=1)
                except Exception:  # noqa: BLE001 - the peer is gone already
                    pass
                return
            if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                seq += 1
                text = data.decode("utf-8", "replace") if opcode == websocket.ABNF.OPCODE_TEXT else data
                event = Event.from_text(seq, now, self.alias, text, self.dialect)
                self._append(event)
                if event.type in self.dialect.server_ping and event.run_id is None and event.is_json_object \
                        and self.dialect.pong and "ping" not in (self.sent[-1][1] if self.sent else ""):
                    self._answer_heartbeat()

    def _answer_heartbeat(self) -> None:
        try:
            self._ws.send(json.dumps({"type": self.dialect.pong[0]}))
        except (OSError, websocket.WebSocketException):
            pass

    @property
    def is_open(self) -> bool:
        return self._ws is not None and self.closed is None

    def close(self, timeout: float = 3.0) -> None:
        ws = self._ws
        if ws is None:
            return
        self._closing = True
        if self.closed is None:
            try:
                ws.close(timeout=timeout)
            except Exception:  # noqa: BLE001 - best effort, then force the socket down
                pass
        try:
            ws.shutdown()
        except Exception:  # noqa: BLE001
            pass
        if self._reader is not None:
            self._reader.join(timeout)

    # --- sending -----------------------------------------------------------
    def send_text(self, text: str) -> float:
        if not self.is_open:
            raise ConnectionError(f"Connection '{self.alias}' is closed"
                                  + (f" ({self.closed.summary()})" if self.closed else "") + ".")
        sent_at = time.perf_counter()
        try:
            self._ws.send(text)
        except (OSError, websocket.WebSocketException) as err:
            raise ConnectionError(f"Sending on connection '{self.alias}' failed: {err}.") from None
        self.sent.append((sent_at, text))
        return sent_at

    def send_json(self, message: Any) -> float:
        return self.send_text(json.dumps(message))

    # --- waiting ---------------------------------------------------------------
    def snapshot(self) -> list[Event]:
        with self._cond:
            return list(self.events)

    def _wait(self, scan: Callable[[], tuple[int, Event] | None], timeout: float,
              stop_on_close: bool) -> tuple[int, Event] | None:
        """Run ``scan`` under the lock each time frames arrive, until it finds one, the
        timeout passes or (with ``stop_on_close``) the connection has closed."""
        deadline = time.perf_counter() + timeout
        with self._cond:
            while True:
                found = scan()
                if found is not None:
                    return found
                if stop_on_close and self.closed is not None:
                    return None
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)

    def wait_for(self, predicate: Callable[[Event], bool], timeout: float, start: int | None = None,
                 stop_on_close: bool = True) -> tuple[int, Event] | None:
        """First event at or after ``start`` (default: the cursor) matching ``predicate``.

        Returns ``(index, event)`` or ``None`` on timeout or, with ``stop_on_close``, when the
        connection closed and no later frame can match."""
        index = self.cursor if start is None else start

        def scan() -> tuple[int, Event] | None:
            nonlocal index
            while index < len(self.events):  # each frame is looked at once
                event = self.events[index]
                if event.kind != "close" and predicate(event):
                    return index, event
                index += 1
            return None

        return self._wait(scan, timeout, stop_on_close)

    def frames_with_ids(self, keys: list[tuple[str, Any]], start: int = 0) -> list[Event]:
        """Frames at or after ``start`` carrying any of ``keys`` (``("run_id", "run_1")``, ...), in log order."""
        with self._cond:
            indices: set[int] = set()
            for key in keys:
                found = self._by_id.get(key, [])
                indices.update(found[bisect_left(found, start):])
            return [self.events[i] for i in sorted(indices)]

    def wait_for_ids(self, keys: list[tuple[str, Any]], predicate: Callable[[Event], bool], timeout: float,
                     start: int = 0, stop_on_close: bool = True) -> tuple[int, Event] | None:
        """Like :meth:`wait_for`, over only the frames carrying one of ``keys`` (see :meth:`frames_with_ids`)."""
        with self._cond:
            seen = {key: bisect_left(self._by_id.get(key, []), start) for key in keys}

        def scan() -> tuple[int, Event] | None:
            fresh: set[int] = set()
            for key in keys:
                found = self._by_id.get(key, [])
                fresh.update(found[seen[key]:])
                seen[key] = len(found)
            for index in sorted(fresh):  # every earlier index was checked on an earlier pass
                if predicate(self.events[index]):
                    return index, self.events[index]
            return None

        return self._wait(scan, timeout, stop_on_close)


def _id_keys(event: Event) -> list[tuple[str, Any]]:
    """The index keys of a frame: its run_id and thread_id, when it is a JSON object carrying them."""
    if not event.is_json_object:
        return []
    keys = []
    for name, value in (("run_id", event.run_id), ("thread_id", event.thread_id)):
        if value is not None and isinstance(value, (str, int, float)):
            keys.append((name, value))
    return keys


class Registry(ConnectionCache):
    """Alias registry shared by the kit's libraries in one Robot process."""

    def __init__(self) -> None:
        super().__init__(no_current_msg="No WebSocket connection is open. Open one with 'Connect To Agent WebSocket'.")

    def get(self, alias: str | None = None) -> Connection:
        try:
            return self.get_connection(alias)
        except (RuntimeError, ValueError):
            if alias is None:
                raise RuntimeError(self.current.message) from None
            known = ", ".join(f"'{a}'" for a in self._aliases) or "none"
            raise ValueError(f"No WebSocket connection with alias '{alias}'. Open connections: {known}.") from None


REGISTRY = Registry()
