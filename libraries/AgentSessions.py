"""WebSocket sessions with an AI-agent chat backend, step by step.

The library documentation (what libdoc shows) is the docstring of :class:`AgentSessions`.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta
from typing import Any, Literal

from robot.api import logger
from robot.api.deco import keyword, library
from robot.api.types import Secret

from agentkit import dialect as dialects
from agentkit import target as targets
from agentkit import timeline
from agentkit.client import REGISTRY, Connection, HandshakeFailed, HandshakeRefused, token_subject
from agentkit.dialect import get_path
from agentkit.event import Event
from agentkit.masking import mask, reveal
from agentkit.rules import RunRecord
from agentkit.spec import ConnectionSpec, SpecError

AuthMode = Literal["subprotocol", "bearer", "query", "none"]


def _secs(value: timedelta | float | None, default: float) -> float:
    if value is None:
        return default
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _connect_timeout() -> float:
    tgt = targets.current()
    return tgt.connect_timeout if tgt is not None else 10.0


def _parse_condition(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise ValueError(f"Condition '{text}' is not valid: expected path=value, e.g. data.tool_name=search_docs.")
    path, value = text.split("=", 1)
    return path.strip(), value


def _matches(value: Any, expected: str) -> bool:
    if isinstance(value, str):
        return value == expected
    return json.dumps(value) == expected or str(value) == expected


@library(scope="GLOBAL", auto_keywords=False)
class AgentSessions:
    """WebSocket sessions with an AI-agent chat backend, step by step.

    Open a connection (named by an alias), send messages, wait for events, collect a whole
    agent run, and check refused handshakes and closes. Every frame the server sends is
    recorded by a reader thread the moment it arrives and shown in the log, so nothing is
    lost between two keywords.

    Connections opened in a test are closed when that test ends, also when it fails;
    connections opened in a suite setup are closed when that suite ends.

    With a target resolved by the suite setup (``Resolve Target`` of ``TargetConfig``),
    ``url`` may be left out; otherwise give it.

    Tokens and secrets may be given as Robot's ``Secret`` (shown masked) or as plain
    strings (the argument then shows in the log as given).
    """

    ROBOT_LISTENER_API_VERSION = 3

    def __init__(self) -> None:
        self.ROBOT_LIBRARY_LISTENER = self
        self._opened_in: dict[str, str] = {}  # alias -> "test" | "suite"
        self._in_test = False
        self._counter = 0

    # --- listener: close what a test or suite opened, also on failure ----------
    def start_test(self, data, result) -> None:
        self._in_test = True

    def end_test(self, data, result) -> None:
        self._in_test = False
        self._close_scope("test")

    def end_suite(self, data, result) -> None:
        self._close_scope("suite")

    def _close_scope(self, scope: str) -> None:
        for alias in [a for a, s in self._opened_in.items() if s == scope]:
            try:
                conn = REGISTRY.get(alias)
            except (RuntimeError, ValueError):
                continue
            if conn.is_open or conn._reader is not None:
                self._close_one(conn, quiet=True)
            self._opened_in.pop(alias, None)

    # --- connecting ------------------------------------------------------------
    def _spec(self, url: str | None, token: Secret | str | None, auth: str, headers: dict | None,
              timeout: float, verify_tls: bool | None, ca_file: str | None) -> ConnectionSpec:
        tgt = targets.current()
        if url is None:
            if tgt is None:
                raise ValueError("No WebSocket URL given and no target resolved: pass url=ws://... "
                                 "or run 'Resolve Target' in the suite setup.")
            url = tgt.ws_url
        kwargs: dict[str, Any] = {}
        if tgt is not None:
            kwargs = {"subprotocol": tgt.subprotocol, "token_prefix": tgt.token_prefix,
                      "token_encoding": tgt.token_encoding, "verify_tls": tgt.verify_tls, "ca_file": tgt.ca_file}
        if verify_tls is not None:
            kwargs["verify_tls"] = verify_tls
        if ca_file is not None:
            kwargs["ca_file"] = ca_file
        try:
            return ConnectionSpec(url=url, token=reveal(token), auth=auth, headers=dict(headers or {}),
                                  open_timeout=timeout, **kwargs)
        except SpecError as err:
            raise ValueError(str(err)) from None

    def _default_auth(self) -> str:
        tgt = targets.current()
        return tgt.auth_mode if tgt is not None else "subprotocol"

    @keyword
    def connect_to_agent_websocket(self, token: Secret | str | None = None, url: str | None = None,
                                   alias: str | None = None, auth: AuthMode | None = None,
                                   headers: dict | None = None, timeout: timedelta | None = None,
                                   expect_welcome: bool = True, verify_tls: bool | None = None,
                                   ca_file: str | None = None) -> str:
        """Opens a WebSocket, waits for the welcome frame and returns the alias.

        | =Argument= | =Meaning= |
        | ``token`` | JWT for the user (``Secret`` recommended). Required unless ``auth=none``. |
        | ``url`` | ``ws://`` or ``wss://`` URL. Default: the resolved target's WebSocket URL. |
        | ``alias`` | Name to refer to this connection later. Default: ``ws-1``, ``ws-2``, ... |
        | ``auth`` | ``subprotocol`` (``jwt-auth, jwt.<token>``, the default), ``bearer`` (``Authorization`` header), ``query`` (``?token=``) or ``none``. |
        | ``headers`` | Extra handshake headers, a dictionary. |
        | ``timeout`` | Handshake and welcome-frame timeout, e.g. ``10s``. Default: the target's ``E2E_CONNECT_TIMEOUT``, else 10s. |
        | ``expect_welcome`` | When true (default), the first frame must be ``connection_established``. |
        | ``verify_tls`` | ``wss://`` certificate verification; on by default. Turn off only for test systems. |
        | ``ca_file`` | A CA bundle to trust for ``wss://``. |

        The connection becomes the current one. Fails with the HTTP status when the
        server refuses the handshake, or when the first frame is not the welcome.

        Example:
        | ${token}=    Create Test Token    alice
        | Connect To Agent WebSocket    ${token}    alias=alice
        """
        secs = _secs(timeout, _connect_timeout())
        spec = self._spec(url, token, auth or self._default_auth(), headers, secs, verify_tls, ca_file)
        self._counter += 1
        alias = alias or f"ws-{self._counter}"
        conn = Connection(alias, spec, dialects.current())
        try:
            hs = conn.open()
        except HandshakeRefused as err:
            self._log_handshake(spec, f"refused: HTTP {err.status}")
            raise AssertionError(f"Handshake to {spec.url} was refused with HTTP {err.status}; expected it to be "
                                 f"accepted ({spec.describe()})." + (f" Body: {err.body[:200]}" if err.body else "")) from None
        except HandshakeFailed as err:
            self._log_handshake(spec, "failed")
            raise AssertionError(str(err)) from None
        REGISTRY.register(conn, alias)
        self._opened_in[alias] = "test" if self._in_test else "suite"
        self._log_handshake(spec, f"HTTP {hs.status}, subprotocol {hs.subprotocol!r}, {hs.duration * 1000:.1f} ms")
        if expect_welcome:
            found = conn.wait_for(lambda e: True, secs, start=0)
            if found is None or not found[1].is_welcome:
                what = (f"got {found[1].type} (#{found[1].seq}): {found[1].summary()}" if found
                        else f"no frame arrived within {secs:g}s" + (f" ({conn.closed.summary()})" if conn.closed else ""))
                raise AssertionError(f"Expected connection_established as the first frame on '{alias}', {what}.\n"
                                     + timeline.text(conn.snapshot(), conn.opened_at))
            welcome = found[1]
            conn.cursor = found[0] + 1
            conn.user_id = str(welcome.field("user_id")) if welcome.field("user_id") is not None else conn.user_id
            logger.info(f"Welcome on '{alias}' after {(welcome.received - conn.opened_at) * 1000:.1f} ms: "
                        f"connection_id {welcome.field('connection_id')}, user_id {welcome.field('user_id')}")
        return alias

    def _log_handshake(self, spec: ConnectionSpec, outcome: str) -> None:
        logger.info(f"WebSocket handshake {spec.describe()}: {outcome}")

    @keyword
    def handshake_should_be_refused(self, token: Secret | str | None = None, url: str | None = None,
                                    auth: AuthMode | None = None, statuses: list[int] | None = None,
                                    policy_close: bool = False, close_codes: list[int] | None = None,
                                    timeout: timedelta | None = None) -> str:
        """Attempts a handshake that the server must refuse; fails if it is accepted.

        By default a refusal is an HTTP ``403`` at the upgrade (PROTOCOL.md). ``statuses``
        lists other accepted statuses (e.g. ``[401, 403]``). With ``policy_close=True`` an
        accepted upgrade followed by a close with one of ``close_codes`` (default 1008,
        1011) *before* any welcome frame or agent event also counts as a refusal: a
        variant some backends use. Reaching the welcome frame or any agent event is
        acceptance, and fails this keyword. Returns a one-line description of the refusal.

        Example:
        | ${expired}=    Create Expired Token    mallory
        | Handshake Should Be Refused    ${expired}
        """
        secs = _secs(timeout, _connect_timeout())
        statuses = statuses or [403]
        close_codes = close_codes or [1008, 1011]
        mode = auth or self._default_auth()
        if token is None and mode != "none":
            mode = "none"
        spec = self._spec(url, token, mode, None, secs, None, None)
        conn = Connection(f"refusal-check-{uuid.uuid4().hex[:6]}", spec, dialects.current())
        try:
            hs = conn.open()
        except HandshakeRefused as err:
            self._log_handshake(spec, f"refused: HTTP {err.status}")
            if err.status in statuses:
                return f"refused with HTTP {err.status}"
            raise AssertionError(f"Expected the handshake to be refused with HTTP {' or '.join(map(str, statuses))}, "
                                 f"got HTTP {err.status} ({spec.describe()}).") from None
        except HandshakeFailed as err:
            raise AssertionError(f"Expected a refusal with HTTP {'/'.join(map(str, statuses))}, but the handshake "
                                 f"could not be attempted: {err}") from None
        try:
            self._log_handshake(spec, f"ACCEPTED: HTTP {hs.status}, subprotocol {hs.subprotocol!r}")
            found = conn.wait_for(lambda e: e.is_welcome or e.is_agent_event, secs if policy_close else 2.0, start=0)
            frames = conn.snapshot()
            if found is None and policy_close and conn.closed is not None and conn.closed.close_code in close_codes:
                logger.info("Refused after the upgrade by a policy close:\n" + timeline.text(frames, conn.opened_at))
                return f"closed with code {conn.closed.close_code} before the welcome"
            first = f"; first frame: {frames[0].summary()}" if frames else ""
            raise AssertionError(
                f"Expected the handshake to be REFUSED (HTTP {'/'.join(map(str, statuses))}"
                + (f" or close {close_codes} before the welcome" if policy_close else "")
                + f"), but the server ACCEPTED it: HTTP {hs.status}, subprotocol {hs.subprotocol!r}{first}. "
                f"A bad token that is accepted is a security failure, not a pass.\n"
                + timeline.text(frames, conn.opened_at))
        finally:
            conn.close()

    # --- choosing and closing --------------------------------------------------
    @keyword
    def switch_connection(self, alias: str) -> str:
        """Makes ``alias`` the current connection and returns the previous alias."""
        previous = REGISTRY.current.alias if REGISTRY.current else None
        REGISTRY.get(alias)
        REGISTRY.switch(alias)
        return previous

    @keyword
    def close_connection(self, alias: str | None = None) -> None:
        """Closes one connection (default: the current one) and logs every frame it received."""
        self._close_one(REGISTRY.get(alias))

    @keyword
    def close_all_connections(self) -> None:
        """Closes every open connection; their frames are logged. Safe to call in any teardown."""
        for conn in list(REGISTRY._connections):
            self._close_one(conn, quiet=True)
        REGISTRY.empty_cache()
        self._opened_in.clear()

    def _close_one(self, conn: Connection, quiet: bool = False) -> None:
        if conn._ws is None:
            return
        was_open = conn.is_open
        conn.close()
        conn._ws = None
        frames = conn.snapshot()
        logger.info(timeline.html_table(frames, conn.opened_at,
                                        f"All {len(frames)} frames received on '{conn.alias}'"
                                        + ("" if was_open else " (already closed by the server)")), html=True)

    # --- sending ---------------------------------------------------------------
    @keyword
    def send_json(self, message: dict | list | str, alias: str | None = None) -> None:
        """Sends a JSON text frame: a dictionary, a list, or a JSON string (sent as is).

        Example:
        | Send Json    {"type": "ping"}
        """
        conn = REGISTRY.get(alias)
        if isinstance(message, str):
            try:
                json.loads(message)
            except ValueError as err:
                raise ValueError(f"Message '{message[:80]}' is not JSON ({err}); use 'Send Text' for raw text.") from None
            text = message
        else:
            text = json.dumps(message)
        conn.send_text(text)
        logger.info(f"Sent on '{conn.alias}': {text[:500]}")

    @keyword
    def send_text(self, text: str, alias: str | None = None) -> None:
        """Sends a raw text frame, e.g. deliberately invalid JSON."""
        conn = REGISTRY.get(alias)
        conn.send_text(text)
        logger.info(f"Sent raw text on '{conn.alias}': {text[:500]!r}")

    @keyword
    def send_ping(self, alias: str | None = None) -> None:
        """Sends the protocol's ``{"type": "ping"}`` message (not a WebSocket control ping)."""
        self.send_json({"type": "ping"}, alias)

    @keyword
    def send_user_message(self, content: str, thread_id: str | None = None, run_id: str | None = None,
                          alias: str | None = None) -> dict:
        """Sends a chat message that starts one agent run and returns the run handle.

        ``thread_id`` and ``run_id`` are generated when not given, so every event of the
        run can be matched to it. Pass the handle to ``Collect Agent Run``.

        Example:
        | ${run}=    Send User Message    What is in the docs?
        | ${events}=    Collect Agent Run    ${run}
        """
        conn = REGISTRY.get(alias)
        thread_id = thread_id or f"thread_{uuid.uuid4().hex[:12]}"
        run_id = run_id or f"run_{uuid.uuid4().hex[:12]}"
        message = conn.dialect.build_user_message(content, thread_id, run_id)
        log_index = len(conn.events)  # before sending: the first event may arrive before send returns
        sent_at = conn.send_json(message)
        logger.info(f"Sent user message on '{conn.alias}' (run_id {run_id}, thread_id {thread_id}): {content[:200]!r}")
        return {"connection": conn.alias, "run_id": run_id, "thread_id": thread_id, "user_id": conn.user_id,
                "content": content, "sent_at": sent_at, "log_index": log_index}

    # --- waiting ---------------------------------------------------------------
    @keyword
    def wait_for_event(self, event_type: str | None = None, *conditions: str, timeout: timedelta = timedelta(seconds=10),
                       alias: str | None = None) -> dict:
        """Waits for the next frame of ``event_type`` matching every ``path=value`` condition.

        Searches from the connection's cursor (just after the previous match or the
        welcome frame) and moves the cursor past the match, so consecutive waits read the
        stream in order and nothing that arrived in between is lost. Returns the message.

        Example:
        | ${event}=    Wait For Event    tool_executing    data.tool_name=search_docs    timeout=5s
        | Wait For Event    pong
        """
        conn = REGISTRY.get(alias)
        conds = [_parse_condition(c) for c in conditions]
        secs = _secs(timeout, 10.0)
        start = conn.cursor
        waited_from = time.perf_counter()

        def match(e: Event) -> bool:
            return (event_type is None or e.type == event_type) and all(
                _matches(get_path(e.message, p, object()), v) for p, v in conds)

        found = conn.wait_for(match, secs)
        if found is None:
            frames = conn.snapshot()[start:]
            what = " and ".join([f"type {event_type}"] * bool(event_type) + [f"{p} == {v}" for p, v in conds]) or "any frame"
            ended = (f"the connection closed ({conn.closed.summary()})" if conn.closed
                     else f"nothing matched within {secs:g}s")
            raise AssertionError(f"Expected a frame with {what} on '{conn.alias}'; {ended}. "
                                 f"{len(frames)} frame(s) since the cursor:\n" + timeline.text(frames, waited_from))
        index, event = found
        conn.cursor = index + 1
        logger.info(f"Got {event.type} (#{event.seq}) on '{conn.alias}' after "
                    f"{max(0.0, event.received - waited_from) * 1000:.1f} ms: {event.raw[:500]}")
        return event.message if event.message is not None else {"raw": event.raw}

    @keyword
    def collect_agent_run(self, run: dict, timeout: timedelta | None = None, allow_incomplete: bool = False) -> RunRecord:
        """Waits until the run of ``run`` (from ``Send User Message``) ends and returns it.

        A frame belongs to the run when its ``run_id`` or ``thread_id`` is the run's. The
        run ends with the first terminal event (``agent_completed``/``agent_error``); frames
        after it are not part of the run (they stay in the connection's log). It
        fails (rule 1) if the connection closes first or no terminal event arrives within
        ``timeout`` (default: the target's run budget, else 30s), unless
        ``allow_incomplete=True``. The run's timeline is logged as a table.

        Example:
        | ${run}=    Send User Message    hello
        | ${result}=    Collect Agent Run    ${run}    timeout=30s
        | Agent Run Should Complete With All Required Events    ${result}
        """
        conn = REGISTRY.get(run["connection"])
        tgt = targets.current()
        secs = _secs(timeout, tgt.run_timeout if tgt else 30.0)
        run_id, thread_id = run.get("run_id"), run.get("thread_id")
        # A frame belongs to the run when it carries its run_id or thread_id. The reader files
        # frames by those ids on arrival, so this reads the run's frames, not the whole log.
        # A run's events come after its message: from the log length at the send (which also
        # leaves out earlier runs of the same thread).
        ids = [(name, value) for name, value in (("run_id", run_id), ("thread_id", thread_id)) if value is not None]
        start = int(run.get("log_index", 0))
        remaining = max(0.0, run["sent_at"] + secs - time.perf_counter())
        found = conn.wait_for_ids(ids, lambda e: e.is_terminal, remaining, start=start)
        frames = conn.frames_with_ids(ids, start)
        if found is not None:
            # The run is what arrived up to its first terminal event: deterministic, where
            # "what else came by the time we looked" would depend on scheduling.
            frames = [e for e in frames if e.seq <= found[1].seq]
        record = RunRecord(conn.alias, run.get("user_id") or conn.user_id, run_id, thread_id, run["sent_at"],
                           frames, dialect=conn.dialect)
        if found is None:
            record.ended = "closed" if conn.closed is not None else "timeout"
            record.close = conn.closed
        logger.info(timeline.html_table(record.events, record.sent_at,
                                        f"Run {run_id} on '{conn.alias}' ({len(record.events)} events, {record.ended})"),
                    html=True)
        if found is None and not allow_incomplete:
            if record.ended == "closed":
                why = f"the connection closed ({conn.closed.summary()}) at {record.rel(conn.closed):.3f}s"
            else:
                why = f"no terminal event within {secs:g}s"
            first_budget = tgt.first_event_timeout if tgt else 2.0
            late = ""
            if not record.agent_events or record.rel(record.agent_events[0]) > first_budget:
                late = (f"Rule 6 (timing) violated: no agent event within the first-event budget of "
                        f"{first_budget:g}s.\n")
            raise AssertionError(late +
                f"Rule 1 (start and end) violated: run {run_id} did not end with "
                f"{'/'.join(conn.dialect.names('completed') + conn.dialect.names('error'))}: {why}. "
                f"Events of the run:\n{timeline.text(record.events, record.sent_at)}")
        return record

    @keyword
    def get_received_events(self, alias: str | None = None, event_type: str | None = None) -> list:
        """Returns every frame received so far on a connection (optionally of one type), as messages.

        Frames that were not JSON appear as ``{"raw": ..., "parse_error": ...}``."""
        conn = REGISTRY.get(alias)
        out = []
        for e in conn.snapshot():
            if e.kind == "close" or (event_type and e.type != event_type):
                continue
            out.append(e.message if e.message is not None else {"raw": e.raw, "parse_error": e.parse_error})
        return out

    @keyword
    def get_event_log(self, alias: str | None = None) -> list[Event]:
        """Returns the connection's full frame log as ``Event`` objects (for the assertion keywords)."""
        return REGISTRY.get(alias).snapshot()

    @keyword
    def get_connection_info(self, alias: str | None = None) -> dict:
        """Returns ``alias``, ``url``, ``user_id``, ``subprotocol``, ``status``, ``open``, ``frames``
        and ``connection_id`` (from the welcome frame) of a connection."""
        conn = REGISTRY.get(alias)
        welcome = next((e for e in conn.snapshot() if e.is_welcome), None)
        hs = conn.handshake
        return {"alias": conn.alias, "url": conn.spec.url, "user_id": conn.user_id,
                "subprotocol": hs.subprotocol if hs else None, "status": hs.status if hs else None,
                "open": conn.is_open, "frames": len(conn.snapshot()),
                "connection_id": welcome.field("connection_id") if welcome else None,
                "handshake_ms": round(hs.duration * 1000, 2) if hs else None}

    @keyword
    def connection_should_be_closed_by_server(self, code: int | None = None, timeout: timedelta = timedelta(seconds=5),
                                              alias: str | None = None) -> int | None:
        """Waits until the server closes the connection; with ``code``, the close code must match.
        Returns the close code."""
        conn = REGISTRY.get(alias)
        secs = _secs(timeout, 5.0)
        conn.wait_for(lambda e: False, secs, start=len(conn.snapshot()))
        if conn.closed is None:
            raise AssertionError(f"Expected the server to close '{conn.alias}' within {secs:g}s; it is still open. "
                                 f"Frames:\n{timeline.text(conn.snapshot(), conn.opened_at)}")
        if code is not None and conn.closed.close_code != code:
            raise AssertionError(f"Expected close code {code} on '{conn.alias}', got {conn.closed.summary()}.")
        return conn.closed.close_code

    @keyword
    def connection_should_be_open(self, alias: str | None = None) -> None:
        """Fails if the server has closed the connection."""
        conn = REGISTRY.get(alias)
        if not conn.is_open:
            raise AssertionError(f"Expected '{conn.alias}' to be open, but {conn.closed.summary() if conn.closed else 'it was closed'}.")

    @keyword
    def get_token_subject(self, token: Secret | str) -> str | None:
        """Returns the ``sub`` claim of a token without verifying it (the user id a server should see)."""
        return token_subject(reveal(token))

    @keyword
    def mask_secret(self, value: Secret | str) -> str:
        """Returns the masked form of a token or secret, for messages and metadata."""
        return mask(value)
