"""Raw WebSocket transcripts for the interop tests, and a small recording client.

A transcript is JSONL, one record per line, in the format of
``shared/interop/langgraph/`` (``{"t": seconds since the transcript began, "dir": ...}``):

* ``{"dir": "meta", "event": "connect" | "open" | "handshake_rejected" | "http", ...}``
* ``{"dir": "send", "raw": <exact text sent>}``, ``{"dir": "recv", "raw": <exact text received>}``
* ``{"dir": "close", "code": ..., "reason": ..., "initiated_by": "server" | "client"}``

Tokens never reach a transcript: anything JWT-shaped is masked (``eyJh…x9Q (151 chars)``).
``RecordedSocket`` wraps a ``websockets`` sync client connection and records every frame
the moment the test sends or receives it; ``recv_until`` waits on a condition with a
deadline, never on a sleep.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


def mask(text: str) -> str:
    """Replace every JWT-shaped string by its first and last four characters and its length."""
    return _JWT.sub(lambda m: f"{m.group()[:4]}…{m.group()[-4:]} ({len(m.group())} chars)", text)


class Transcript:
    """Records of one scenario, written to ``path`` as JSONL by ``save()``."""

    def __init__(self, path: Path, title: str = ""):
        self.path = Path(path)
        self.started = time.monotonic()
        self.records: list[dict] = []
        if title:
            self.meta("scenario", title=title)

    def _add(self, record: dict) -> dict:
        record = {"t": round(time.monotonic() - self.started, 4), **record}
        self.records.append(record)
        return record

    def meta(self, event: str, **fields) -> None:
        self._add({"dir": "meta", "event": event, **{k: _masked(v) for k, v in fields.items()}})

    def send(self, raw: str, conn: str | None = None) -> None:
        self._add({"dir": "send", "raw": mask(raw), **({"conn": conn} if conn else {})})

    def recv(self, raw: str, conn: str | None = None) -> None:
        self._add({"dir": "recv", "raw": mask(raw), **({"conn": conn} if conn else {})})

    def close(self, code: int | None, reason: str, initiated_by: str, conn: str | None = None) -> None:
        self._add({"dir": "close", "code": code, "reason": reason, "initiated_by": initiated_by,
                   **({"conn": conn} if conn else {})})

    def save(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.records))
        return self.path


def _masked(value):
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


class RecordedSocket:
    """A connected WebSocket whose every frame goes into the transcript; ``frames`` keeps them."""

    def __init__(self, ws: ClientConnection, transcript: Transcript, conn: str | None = None):
        self.ws = ws
        self.transcript = transcript
        self.conn = conn
        self.frames: list[str] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None

    @property
    def response(self):
        return self.ws.response

    def send(self, message: str | dict) -> None:
        raw = message if isinstance(message, str) else json.dumps(message)
        self.transcript.send(raw, self.conn)
        self.ws.send(raw)

    def recv(self, timeout: float) -> str:
        """The next frame; raises TimeoutError, or ConnectionClosed (recorded) when the peer closed."""
        try:
            raw = self.ws.recv(timeout=timeout)
        except ConnectionClosed as exc:
            self._record_close(exc, "server")
            raise
        if isinstance(raw, bytes):
            raw = raw.decode(errors="replace")
        self.transcript.recv(raw, self.conn)
        self.frames.append(raw)
        return raw

    def recv_until(self, done: Callable[[dict], bool], timeout: float) -> list[dict]:
        """Receive JSON frames until ``done(frame)`` is true for one; returns all of them.

        Raises AssertionError naming what arrived when the deadline passes or the server closes."""
        deadline = time.monotonic() + timeout
        got: list[dict] = []
        while True:
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise TimeoutError
                frame = json.loads(self.recv(timeout=left))
            except TimeoutError:
                raise AssertionError(f"no frame ended the wait within {timeout:.0f} s; got {len(got)} frames, "
                                     f"last: {[_brief(f) for f in got[-5:]]}") from None
            except ConnectionClosed:
                raise AssertionError(f"server closed ({self.close_code} {self.close_reason!r}) before the wait "
                                     f"ended; got {len(got)} frames, last: {[_brief(f) for f in got[-5:]]}") from None
            got.append(frame)
            if done(frame):
                return got

    def wait_closed(self, timeout: float) -> tuple[int | None, str | None, list[str]]:
        """Receive until the server closes; returns (code, reason, frames received meanwhile).

        Raises AssertionError when the socket is still open at the deadline."""
        deadline = time.monotonic() + timeout
        got: list[str] = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"server did not close within {timeout:.0f} s; frames: {got[-5:]}")
            try:
                got.append(self.recv(timeout=left))
            except TimeoutError:
                continue
            except ConnectionClosed:
                return self.close_code, self.close_reason, got

    def _record_close(self, exc: ConnectionClosed, initiated_by: str) -> None:
        if self.close_code is not None:
            return
        rcvd = exc.rcvd
        self.close_code = rcvd.code if rcvd else None
        self.close_reason = rcvd.reason if rcvd else None
        self.transcript.close(self.close_code, self.close_reason or "", initiated_by, self.conn)

    def close(self) -> None:
        if self.close_code is not None:
            return
        self.ws.close()
        protocol = self.ws.protocol
        by_server = bool(protocol.close_rcvd_then_sent)
        frame = protocol.close_rcvd if by_server else protocol.close_sent
        self.close_code = frame.code if frame else None
        self.close_reason = frame.reason if frame else ""
        self.transcript.close(self.close_code, self.close_reason or "", "server" if by_server else "client", self.conn)


def _brief(frame: dict) -> str:
    return json.dumps(frame)[:160]


@contextlib.contextmanager
def recorded_connect(url: str, transcript: Transcript, headers: dict | None = None, *, conn: str | None = None,
                     open_timeout: float = 30.0) -> Iterator[RecordedSocket]:
    """Open a WebSocket and record the handshake; closes it (recorded) on leaving, also on failure.

    A refused handshake is recorded (status, headers, body) and ``InvalidStatus`` re-raised."""
    transcript.meta("connect", url=url, headers=dict(headers or {}), **({"conn": conn} if conn else {}))
    try:
        ws = connect(url, additional_headers=headers, open_timeout=open_timeout, close_timeout=10,
                     max_size=None)
    except InvalidStatus as exc:
        response = exc.response
        transcript.meta("handshake_rejected", status=response.status_code, reason=response.reason_phrase,
                        headers=dict(response.headers.raw_items()), body=bytes(response.body or b"").decode(
                            errors="replace"), **({"conn": conn} if conn else {}))
        raise
    transcript.meta("open", status=ws.response.status_code, subprotocol=ws.subprotocol,
                    response_headers=dict(ws.response.headers.raw_items()), **({"conn": conn} if conn else {}))
    with ws:  # the connection's own context: websockets 17 wants one
        sock = RecordedSocket(ws, transcript, conn)
        try:
            yield sock
        finally:
            sock.close()


def handshake_status(url: str, transcript: Transcript, headers: dict | None = None) -> int:
    """The HTTP status the server answers a WebSocket upgrade with (101 when accepted; then closed)."""
    try:
        with recorded_connect(url, transcript, headers) as sock:
            return sock.response.status_code
    except InvalidStatus as exc:
        return exc.response.status_code
