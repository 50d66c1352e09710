"""WebSocket sessions with an AI-agent chat backend, step by step.

The library documentation (what libdoc shows) is the docstring of :class:`AgentSessions`.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta
from typing import Any, Literal

from robot.api import SkipExecution, logger
from robot.api.deco import keyword, library
from robot.api.types import Secret

from agentkit import target as targets
from agentkit import timeline
from agentkit.transports.threaded import (REGISTRY, Connection, HandshakeFailed, HandshakeRefused, prepare,
                                          token_subject)
from agentkit.wire import dialect as dialects
from agentkit.wire.event import Event
from agentkit.wire.masking import install_log_filter, mask, redact, reveal
from agentkit.wire.paths import MISSING, get_path
from agentkit.wire.run import RunRecord
from agentkit.wire.session import DEFAULT_GRACE
from agentkit.wire.spec import ConnectionSpec, SpecError, mask_subprotocol, ws_base
from agentkit.wire.tls import TLSConfig

AuthMode = Literal["subprotocol", "bearer", "query", "none"]
BadInput = Literal["invalid_json", "unknown_message"]
DOCS = "docs/protocol.md"


def _secs(value: timedelta | float | None, default: float) -> float:
    if value is None:
        return default
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _target():
    """The target when one is configured (resolved on first use), else ``None`` for
    keywords given everything explicitly."""
    return targets.require()


def _parse_condition(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise ValueError(f"Condition '{text}' is not valid: expected path=value, e.g. data.tool_name=search_docs.")
    path, value = text.split("=", 1)
    return path.strip(), value


def _matches(value: Any, expected: str) -> bool:
    if isinstance(value, str):
        return value == expected
    return json.dumps(value) == expected or str(value) == expected


def _log(text: str, html: bool = False) -> None:
    logger.info(redact(text), html=html)


@library(scope="GLOBAL", auto_keywords=False)
class AgentSessions:
    """WebSocket sessions with an AI-agent chat backend, step by step.

    Open a connection (named by an alias), send messages, wait for events, collect a whole
    agent run, and check refused handshakes and closes. Every frame the server sends is
    recorded by a reader thread the moment it arrives (binary frames too) and shown in
    the log, so nothing is lost between two keywords.

    The wire is the target's *dialect* (``E2E_DIALECT``, docs/dialects.md): how the token
    travels, which subprotocol the server must select, what a refusal and the welcome
    look like, the frame that starts a run, how frames are tied to it and which frames
    are answered for you (a server heartbeat is answered and kept out of runs).

    Connections opened in a test are closed when that test ends, also when it fails;
    connections opened in a suite setup are closed when that suite ends.

    The target (``TargetConfig``) is resolved on first use; ``url`` may be left out.
    Tokens and secrets may be given as Robot's ``Secret`` (shown masked) or as plain
    strings; the kit masks every token it knows in everything it logs.
    """

    ROBOT_LISTENER_API_VERSION = 3

    def __init__(self) -> None:
        self.ROBOT_LIBRARY_LISTENER = self
        self._opened_in: dict[str, str] = {}  # alias -> "test" | "suite"
        self._in_test = False
        self._counter = 0
        self._runs: dict[str, RunRecord] = {}  # run handle id -> record
        install_log_filter()

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
                self._close_one(conn, quiet=True, why=f"the {scope} that opened it ended")
            self._opened_in.pop(alias, None)

    # --- connecting ------------------------------------------------------------
    def _spec(self, url: str | None, token: Secret | str | None, auth: str | None, headers: dict | None,
              timeout: float, verify_tls: bool | None, ca_file: str | None,
              thread_id: str = "") -> tuple[ConnectionSpec, Any]:
        plain = reveal(token)
        if url is not None and targets.current() is None:
            tls = TLSConfig(verify=verify_tls is not False, ca=ca_file)
            d = dialects.current()
            try:
                spec = ConnectionSpec(url=url, token=plain, auth=auth or d.connect["auth"][0],
                                      subprotocols_template=d.connect.get("subprotocols", ["jwt-auth", "jwt.{token}"]),
                                      token_encoding=d.connect.get("token_encoding", "raw"),
                                      query_param=d.connect.get("query_param", "token"), headers=dict(headers or {}),
                                      tls=tls, open_timeout=timeout)
            except SpecError as err:
                raise ValueError(str(err)) from None
            return spec, None
        tgt = _target()
        try:
            spec = tgt.connection_spec(plain, auth=auth, url=url, headers=headers, timeout=timeout, thread_id=thread_id)
        except SpecError as err:
            raise ValueError(str(err)) from None
        if verify_tls is not None or ca_file is not None:
            spec.tls = TLSConfig(verify=tgt.tls.verify if verify_tls is None else verify_tls,
                                 ca=ca_file or tgt.tls.ca, client_cert=tgt.tls.client_cert,
                                 client_key=tgt.tls.client_key)
        return spec, tgt

    def _dialect(self):
        return dialects.current()

    def _connect_timeout(self) -> float:
        tgt = targets.current()
        return tgt.connect_timeout if tgt is not None else 10.0

    def _grace(self) -> float:
        tgt = targets.current()
        return tgt.grace if tgt is not None else DEFAULT_GRACE

    def _open(self, alias: str, spec: ConnectionSpec, tgt, thread_id: str) -> tuple[Connection, Any]:
        dialect = self._dialect()
        conn = Connection(alias, spec, dialect, self._grace(), token_subject(spec.token), thread_id)
        values = dialect.template_values(thread_id=thread_id)
        prepare(dialect, spec, tgt.backend_url if tgt is not None else None, values)
        return conn, conn.open()

    @keyword
    def connect_to_agent_websocket(self, token: Secret | str | None = None, url: str | None = None,
                                   alias: str | None = None, auth: AuthMode | None = None,
                                   headers: dict | None = None, timeout: timedelta | None = None,
                                   expect_welcome: bool = True, verify_tls: bool | None = None,
                                   ca_file: str | None = None, thread_id: str | None = None) -> str:
        """Opens a WebSocket as the dialect describes it and returns the alias.

        | =Argument= | =Meaning= |
        | ``token`` | JWT for the user (``Secret`` recommended). Required unless ``auth=none``. |
        | ``url`` | ``ws://`` or ``wss://`` URL. Default: the target's (the dialect's URL template, e.g. a fresh thread URL for ``langgraph``). |
        | ``alias`` | Name to refer to this connection later. Default: ``ws-1``, ``ws-2``, ... |
        | ``auth`` | ``subprotocol``, ``bearer`` (``Authorization`` header), ``query`` (``?token=``) or ``none``. Default: the target's (``E2E_AUTH_MODE``, else the dialect's first). |
        | ``headers`` | Extra handshake headers, a dictionary. |
        | ``timeout`` | Handshake, welcome and setup timeout, e.g. ``10s``. Default: the target's ``E2E_CONNECT_TIMEOUT``. |
        | ``expect_welcome`` | When true (default) and the dialect has a welcome frame, the first frame must be it. |
        | ``verify_tls`` | ``wss://`` certificate verification; default: the target's (``E2E_VERIFY_TLS``). |
        | ``ca_file`` | A CA bundle to trust for ``wss://``; default: the target's (``E2E_CA_FILE``). |
        | ``thread_id`` | For dialects whose thread is in the URL (``langgraph``): join this thread instead of a new one. |

        The connection becomes the current one. Fails, with what was expected and what
        arrived, when the server refuses the handshake, selects the wrong subprotocol
        (docs/protocol.md, "WebSocket handshake"), sends another first frame than the
        welcome, names another user in the welcome (as the dialect says it identifies
        users), or refuses a setup command. The connection's user is always the token's
        subject, never read back from the server.

        Example:
        | ${token}=    Create Test Token    alice
        | Connect To Agent WebSocket    ${token}    alias=alice
        """
        if url is None:
            targets.require()  # the target's dialect makes the thread id
        secs = _secs(timeout, self._connect_timeout())
        thread_id = thread_id or self._dialect().new_id("thread")
        spec, tgt = self._spec(url, token, auth, headers, secs, verify_tls, ca_file, thread_id)
        self._counter += 1
        alias = alias or f"ws-{self._counter}"
        try:
            conn, hs = self._open(alias, spec, tgt, thread_id)
        except HandshakeRefused as err:
            self._log_handshake(spec, f"refused: HTTP {err.status}")
            raise AssertionError(f"Handshake to {spec.url} was refused with HTTP {err.status}; expected it to be "
                                 f"accepted ({spec.describe()})." + (f" Body: {err.body[:200]}" if err.body else "")) from None
        except HandshakeFailed as err:
            self._log_handshake(spec, "failed")
            raise AssertionError(str(err)) from None
        REGISTRY.register(conn, alias)
        self._opened_in[alias] = "test" if self._in_test else "suite"
        self._log_handshake(spec, f"HTTP {hs.status}, subprotocol {mask_subprotocol(hs.subprotocol)!r}, "
                                  f"{hs.duration * 1000:.1f} ms")
        if hs.problem:
            raise AssertionError(f"Handshake with {spec.url}: {hs.problem} (docs/protocol.md, 'WebSocket handshake').")
        session = conn.session
        if expect_welcome and conn.dialect.welcome_presence == "required":
            conn.wait_until(lambda: any(e.control != "heartbeat" for e in session.frames), secs)
            first = next((e for e in session.frames if e.control != "heartbeat"), None)
            if first is not None and not first.is_welcome and (first is session.refusal_frame or first.control == "error"):
                # A refusal after the upgrade: the error frame comes first, then the close.
                conn.wait_until(lambda: session.closed is not None, secs)
            if first is None or not first.is_welcome:
                refusal = session.refusal()
                if refusal is not None:
                    raise AssertionError(f"The server refused the connection on '{alias}' after the upgrade: "
                                         f"{refusal.describe()} ({spec.describe()}).\n"
                                         + timeline.text(conn.snapshot(), conn.opened_at))
                names = " or ".join(json.dumps(m) for m in conn.dialect.spec["welcome"]["match"])
                name = first.type or ("<binary>" if first.binary else "<not json>") if first else None
                what = (f"got {name} (#{first.seq}): {first.summary()}" if first
                        else f"no frame arrived within {secs:g}s")
                raise AssertionError(f"Expected the welcome frame ({names}) as the first frame on '{alias}', {what}.\n"
                                     + timeline.text(conn.snapshot(), conn.opened_at))
            conn.cursor = session.frames.index(first) + 1
            welcome = session.welcome
            d = conn.dialect
            _log(f"Welcome on '{alias}' after {(welcome.received - conn.opened_at) * 1000:.1f} ms: connection_id "
                 f"{d.welcome_field(welcome.message, 'connection_id')}, user_id {d.welcome_field(welcome.message, 'user_id')}")
            problem = session.welcome_problem()
            if problem:
                raise AssertionError(f"Welcome on '{alias}': {problem} (dialect '{d.name}', welcome.identifies: "
                                     f"{d.welcome_identifies}).")
        try:
            failure = conn.setup(secs)
        except TimeoutError as err:
            raise AssertionError(f"Setup of '{alias}': {err}.\n" + timeline.text(conn.snapshot(), conn.opened_at)) from None
        if failure is not None:
            raise AssertionError(f"The server refused a setup command on '{alias}': {failure.summary(200)}.")
        conn.cursor = max(conn.cursor, len(conn.snapshot()) if conn.dialect.welcome_presence != "required" else conn.cursor)
        return alias

    def _log_handshake(self, spec: ConnectionSpec, outcome: str) -> None:
        _log(f"WebSocket handshake {spec.describe()}: {outcome}")

    @keyword
    def handshake_should_be_refused(self, token: Secret | str | None = None, url: str | None = None,
                                    auth: AuthMode | None = None, statuses: list[int] | None = None,
                                    close_codes: list[int] | None = None,
                                    timeout: timedelta | None = None) -> str:
        """Attempts a handshake that the server must refuse; fails if it is accepted.

        What counts as a refusal comes from the dialect (``connect.refusal``): an HTTP status
        at the upgrade (default 403, docs/protocol.md), and/or an accepted upgrade followed,
        before any welcome or agent event, by an optional error frame and a close with one
        of the dialect's policy codes (the ``netra`` dialect: ``AUTH_FAILED``, then 1008).
        ``statuses`` and ``close_codes`` override the dialect's lists. Reaching the welcome
        frame or any agent event is acceptance, and fails this keyword: a bad token that
        is accepted is a security failure, not a pass. Returns a one-line description of
        the refusal.

        Example:
        | ${expired}=    Create Expired Token    mallory
        | Handshake Should Be Refused    ${expired}
        """
        if url is None:
            targets.require()
        secs = _secs(timeout, self._connect_timeout())
        mode = auth or None
        if token is None:
            mode = "none"
        spec, tgt = self._spec(url, token, mode, None, secs, None, None, self._dialect().new_id("thread"))
        dialect = self._dialect()
        refusal = dialect.connect["refusal"]
        wanted_status = statuses or refusal["http_status"]
        codes = close_codes if close_codes is not None else None
        expected = f"HTTP {'/'.join(map(str, wanted_status))}"
        if codes or refusal.get("close_codes"):
            expected += f" or a close with {codes or refusal['close_codes']} before the welcome"
        alias = f"refusal-check-{uuid.uuid4().hex[:6]}"
        try:
            conn, hs = self._open(alias, spec, tgt, "")
        except HandshakeRefused as err:
            self._log_handshake(spec, f"refused: HTTP {err.status}")
            if err.status in wanted_status:
                return f"refused with HTTP {err.status}"
            raise AssertionError(f"Expected the handshake to be refused with {expected}, got HTTP {err.status} "
                                 f"({spec.describe()}).") from None
        except HandshakeFailed as err:
            raise AssertionError(f"Expected a refusal ({expected}), but the handshake could not be attempted: "
                                 f"{err}") from None
        session = conn.session
        try:
            self._log_handshake(spec, f"upgrade accepted: HTTP {hs.status}, subprotocol "
                                      f"{mask_subprotocol(hs.subprotocol)!r}")
            can_close = bool(codes or refusal.get("close_codes"))
            if can_close:
                conn.wait_until(lambda: session.accepted or session.closed is not None, secs)
            else:
                # The upgrade itself is acceptance here; a moment for the evidence to arrive.
                conn.wait_until(lambda: session.accepted, min(secs, 1.0))
            frames = conn.snapshot()
            closed = session.closed
            if closed is not None and not session.accepted and closed.closed_by == "server" and (
                    closed.close_code in (codes or []) or (codes is None and dialect.is_refusal_close(closed.close_code))):
                described = (f"closed with code {closed.close_code}"
                             + (f" ({closed.close_reason})" if closed.close_reason else "") + " before the welcome"
                             + (f", after {session.refusal_frame.summary(120)}" if session.refusal_frame else ""))
                _log("Refused after the upgrade: " + described + "\n" + timeline.text(frames, conn.opened_at))
                return described
            if closed is not None and not session.accepted:
                what = f"the server closed the connection with code {closed.close_code}, not a refusal code"
            elif session.accepted:
                first = session.welcome or session.first_agent_event
                what = f"the server ACCEPTED it: {first.type} (#{first.seq}) arrived"
            else:
                what = (f"the server ACCEPTED it: HTTP {hs.status}, and the connection stayed open for {secs:g}s"
                        if can_close else f"the server ACCEPTED it: HTTP {hs.status}")
            verdict = (" A bad token that is accepted is a security failure, not a pass." if "ACCEPTED" in what
                       else " That is neither an acceptance nor the refusal the dialect describes.")
            raise AssertionError(
                f"Expected the handshake to be REFUSED ({expected}), but {what} (subprotocol "
                f"{mask_subprotocol(hs.subprotocol)!r}).{verdict}\n" + timeline.text(frames, conn.opened_at))
        finally:
            conn.close(why="the refusal check ended")

    @keyword
    def thread_should_not_be_joinable_by(self, token: Secret | str, alias: str | None = None,
                                         timeout: timedelta | None = None) -> str:
        """A second user (``token``) must not be able to read or join the thread of the
        connection ``alias`` (default: the current one). Returns how the server kept them out.

        Connects with ``token`` to the same thread (for dialects whose thread is a URL,
        ``run.thread_in_url``); the server keeps the thread private if it refuses the
        handshake, closes the connection, or refuses a setup command. Otherwise the first
        user starts a run and the second connection must receive none of its events: if it
        does (or it receives the thread's history), the keyword fails naming them.
        Skips, saying why, for dialects with no addressable thread.

        Example:
        | ${mallory}=    Create Test Token    mallory
        | Thread Should Not Be Joinable By    ${mallory}    alias=alice
        """
        owner = REGISTRY.get(alias)
        d = owner.dialect
        if not d.spec["run"].get("thread_in_url"):
            raise SkipExecution(f"dialect '{d.name}' has no thread another connection could join "
                                f"(threads are not addressable)")
        secs = _secs(timeout, self._connect_timeout())
        thread_id = owner.thread_id
        spec, tgt = self._spec(None, token, None, None, secs, None, None, thread_id)
        intruder_alias = f"intruder-{uuid.uuid4().hex[:6]}"
        try:
            intruder = Connection(intruder_alias, spec, d, self._grace(), token_subject(spec.token), thread_id)
            intruder.open()  # no prepare: the thread exists, and belongs to someone else
        except HandshakeRefused as err:
            return self._kept_out(f"the second user's handshake was refused with HTTP {err.status}")
        except HandshakeFailed as err:
            raise AssertionError(f"Could not attempt the second user's connection: {err}") from None
        try:
            session = intruder.session
            try:
                failure = intruder.setup(secs)
            except (TimeoutError, ConnectionError):  # no reply, or closed before the command went out
                failure = None
            if session.closed is not None:
                return self._kept_out(f"the server closed the second user's connection ({session.closed.summary()})")
            if failure is not None:
                return self._kept_out(f"the server refused the second user's setup command: {failure.summary(160)}")
            run = self.send_user_message("A private question", alias=owner.alias)
            self.collect_agent_run(run, allow_incomplete=True)
            intruder.wait_quiet(self._grace() or 0.3, 2.0)
            leaked = [e for e in intruder.snapshot() if e.is_agent_event]
            if session.closed is not None and not leaked:
                return self._kept_out(f"the server closed the second user's connection ({session.closed.summary()})")
            if leaked:
                raise AssertionError(
                    f"User {intruder.user_id!r} joined the thread of user {owner.user_id!r} ({spec.url}) and received "
                    f"{len(leaked)} of its event(s): a thread must belong to its user.\n"
                    + timeline.text(intruder.snapshot(), intruder.opened_at, mark=leaked[0]))
            return self._kept_out("the second user's connection received nothing of the thread")
        finally:
            intruder.close(why="the thread ownership check ended")
            self._log_frames(intruder, f"All frames the second user received on '{owner.alias}''s thread")

    def _kept_out(self, how: str) -> str:
        _log(f"The thread stayed private: {how}.")
        return how

    # --- choosing and closing --------------------------------------------------
    @keyword
    def switch_connection(self, alias: str) -> str:
        """Makes ``alias`` the current connection and returns the previous alias.

        Example:
        | Switch Connection    bob
        """
        previous = REGISTRY.current.alias if REGISTRY.current else None
        REGISTRY.get(alias)
        REGISTRY.switch(alias)
        return previous

    @keyword
    def close_connection(self, alias: str | None = None) -> None:
        """Closes one connection (default: the current one) and logs every frame it received.

        Example:
        | Close Connection    alice
        """
        self._close_one(REGISTRY.get(alias), why="Close Connection")

    @keyword
    def close_all_connections(self) -> None:
        """Closes every open connection; their frames are logged. Safe to call in any teardown.

        Example:
        | [Teardown]    Close All Connections
        """
        for conn in list(REGISTRY._connections):
            self._close_one(conn, quiet=True, why="Close All Connections")
        REGISTRY.empty_cache()
        self._opened_in.clear()

    def _close_one(self, conn: Connection, quiet: bool = False, why: str = "") -> None:
        if conn._ws is None:
            return
        was_open = conn.is_open
        conn.close(why=why)
        conn._ws = None
        self._log_frames(conn, f"All {len(conn.snapshot())} frames received on '{conn.alias}'"
                               + ("" if was_open else " (already closed by the server)"))

    def _log_frames(self, conn: Connection, title: str) -> None:
        frames = conn.snapshot()
        logger.info(redact(timeline.html_table(frames, conn.opened_at, title)), html=True)
        logger.debug(redact("Raw frames:\n" + "\n".join(f"#{e.seq} {e.raw}" for e in frames)))

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
        _log(f"Sent on '{conn.alias}': {text}")

    @keyword
    def send_text(self, text: str, alias: str | None = None) -> None:
        """Sends a raw text frame, e.g. deliberately invalid JSON.

        Example:
        | Send Text    {this is not json
        """
        conn = REGISTRY.get(alias)
        conn.send_text(text)
        _log(f"Sent raw text on '{conn.alias}': {text!r}")

    @keyword
    def send_ping(self, alias: str | None = None) -> None:
        """Sends the dialect's application ping (``frames.ping.send``; default ``{"type": "ping"}``),
        not a WebSocket control ping. Skips, saying why, when the dialect has none.

        Example:
        | Send Ping
        | Wait For Event    pong
        """
        conn = REGISTRY.get(alias)
        ping = conn.dialect.frames.get("ping")
        if not ping:
            raise SkipExecution(f"dialect '{conn.dialect.name}' defines no application ping (frames.ping)")
        self.send_json(ping["send"], alias)

    @keyword
    def send_user_message(self, content: str, thread_id: str | None = None, run_id: str | None = None,
                          alias: str | None = None) -> dict:
        """Sends the frame that starts one agent run (the dialect's ``run.start``) and returns the run handle.

        ``thread_id`` and ``run_id`` are generated when not given, so every event of the run
        can be matched to it (dialects that tie events to runs by ids); on dialects whose
        thread is the connection, give the same connection for a follow-up turn. Pass the
        handle to ``Collect Agent Run``.

        Example:
        | ${run}=    Send User Message    What is in the docs?
        | ${events}=    Collect Agent Run    ${run}
        """
        conn = REGISTRY.get(alias)
        record = conn.start_run(content, thread_id, run_id)
        handle = uuid.uuid4().hex
        self._runs[handle] = record
        _log(f"Sent user message on '{conn.alias}' (run_id {record.run_id}, thread_id {record.thread_id}): "
             f"{content[:200]!r}")
        return {"connection": conn.alias, "run_id": record.run_id, "thread_id": record.thread_id,
                "user_id": conn.user_id, "content": content, "sent_at": record.sent_at, "handle": handle}

    # --- waiting ---------------------------------------------------------------
    @keyword
    def wait_for_event(self, event_type: str | None = None, *conditions: str, timeout: timedelta = timedelta(seconds=10),
                       alias: str | None = None) -> dict:
        """Waits for the next frame of ``event_type`` matching every ``path=value`` condition.

        ``event_type`` is a frame name (``tool_executing``, ``RUN_STARTED``, ``pong``) or a
        lifecycle role (``started``, ``thinking``, ``tool_executing``, ``tool_completed``,
        ``completed``, ``error``, ``answer``). Searches from the connection's cursor (just
        after the previous match or the welcome frame) and moves the cursor past the match,
        so consecutive waits read the stream in order and nothing that arrived in between is
        lost. Returns the message. Fails with the frames that did arrive.

        Example:
        | ${event}=    Wait For Event    tool_executing    data.tool_name=search_docs    timeout=5s
        | Wait For Event    pong
        """
        conn = REGISTRY.get(alias)
        conds = [_parse_condition(c) for c in conditions]
        secs = _secs(timeout, 10.0)
        start = conn.cursor
        waited_from = time.perf_counter()
        is_role = event_type in dialects.ROLES

        def match(e: Event) -> bool:
            if event_type is not None and e.type != event_type and not (is_role and e.role == event_type) \
                    and not (event_type in ("pong", "error", "ack", "welcome") and e.control == event_type):
                return False
            return all(_matches(conn.dialect.field(e.message, p, MISSING) if e.is_json_object else MISSING, v)
                       for p, v in conds)

        found = conn.wait_for(match, secs)
        if found is None:
            frames = conn.snapshot()[start:]
            what = " and ".join([f"type {event_type}"] * bool(event_type) + [f"{p} == {v}" for p, v in conds]) or "any frame"
            ended = (f"the connection closed ({conn.closed.summary()})" if conn.closed
                     else f"nothing matched within {secs:g}s")
            raise AssertionError(redact(f"Expected a frame with {what} on '{conn.alias}'; {ended}. "
                                        f"{len(frames)} frame(s) since the cursor:\n" + timeline.text(frames, waited_from)))
        index, event = found
        conn.cursor = index + 1
        _log(f"Got {event.type} (#{event.seq}) on '{conn.alias}' after "
             f"{max(0.0, event.received - waited_from) * 1000:.1f} ms: {event.summary(200)}")
        logger.debug(redact(event.raw))
        return event.message if event.message is not None else {"raw": event.raw}

    @keyword
    def server_should_answer_bad_input(self, kind: BadInput = "invalid_json", alias: str | None = None,
                                       timeout: timedelta = timedelta(seconds=5)) -> dict:
        """Sends bad input and waits for the answer the dialect says it gets; returns it.

        ``invalid_json`` sends a text frame that is not JSON; ``unknown_message`` sends the
        dialect's unknown message (``frames.unknown_message.send``). The answer must match
        the dialect's (``frames.invalid_json`` / ``frames.unknown_message.answer``: an error
        frame with its code, or an ``ack``). The connection must stay open (check it with a
        run afterwards). Skips, saying why, when the dialect defines no answer.

        Example:
        | Server Should Answer Bad Input    invalid_json
        | User Chats And The Agent Answers Correctly    Still there?
        """
        conn = REGISTRY.get(alias)
        frames = conn.dialect.frames
        if kind == "invalid_json":
            answer = frames.get("invalid_json")
            if not answer:
                raise SkipExecution(f"dialect '{conn.dialect.name}' defines no answer to a frame that is not JSON "
                                    f"(frames.invalid_json)")
            self.send_text("{this is not json", alias)
        else:
            spec = frames.get("unknown_message")
            if not spec:
                raise SkipExecution(f"dialect '{conn.dialect.name}' defines no answer to an unknown message "
                                    f"(frames.unknown_message)")
            answer = spec["answer"]
            self.send_json(spec["send"], alias)
        from agentkit.wire.paths import Matcher

        matcher = Matcher(answer["match"])
        start = conn.cursor
        found = conn.wait_for(lambda e: matcher(e.message), _secs(timeout, 5.0))
        if found is None:
            frames_since = conn.snapshot()[start:]
            raise AssertionError(redact(f"Expected the {answer['kind']} frame {json.dumps(answer['match'])} in answer "
                                        f"to {kind} on '{conn.alias}' (dialect '{conn.dialect.name}'); "
                                        + (f"the connection closed ({conn.closed.summary()})" if conn.closed else
                                           f"it did not come within {_secs(timeout, 5.0):g}s")
                                        + ". Frames since:\n" + timeline.text(frames_since, conn.opened_at)))
        conn.cursor = found[0] + 1
        _log(f"The server answered {kind} with {found[1].summary(200)}")
        return found[1].message

    def _record(self, run: dict) -> RunRecord:
        if not isinstance(run, dict) or "handle" not in run:
            raise TypeError(f"Expected a run handle from 'Send User Message', got {type(run).__name__}: {str(run)[:80]}.")
        record = self._runs.get(run["handle"])
        if record is None:
            raise ValueError(f"Run handle {run.get('run_id')!r} is not known to this process.")
        return record

    @keyword
    def collect_agent_run(self, run: dict, timeout: timedelta | None = None, allow_incomplete: bool = False) -> RunRecord:
        """Waits until the run of ``run`` (from ``Send User Message``) ends and returns it.

        The dialect ties frames to the run (by the ids they carry, or by their order on the
        connection). The run ends with its first terminal event; it then keeps listening for
        the target's grace window (``E2E_RUN_GRACE``), so a second terminal event or an
        event after the end is in the record and fails the rules. Fails (rule 1) if the
        connection closes first, the server refuses to start the run, or no terminal event
        arrives within ``timeout`` (default: the target's run budget, else 30s), unless
        ``allow_incomplete=True``. When frames arrive but none is an agent event of the run
        within the first-event budget, it fails at once, listing what did arrive and naming
        ``E2E_DIALECT``. The run's timeline is logged as a table.

        Example:
        | ${run}=    Send User Message    hello
        | ${result}=    Collect Agent Run    ${run}    timeout=30s
        | Agent Run Should Complete With All Required Events    ${result}
        """
        record = self._record(run)
        conn = REGISTRY.get(run["connection"])
        tgt = targets.current()
        secs = _secs(timeout, tgt.run_timeout if tgt else 30.0)
        first_budget = tgt.first_event_timeout if tgt else 2.0
        deadline = record.sent_at + secs
        why = conn.wait_for_run(record, deadline, record.sent_at + first_budget)
        logger.info(redact(timeline.html_table(record.events + record.other, record.sent_at,
                                               f"Run {record.run_id} on '{conn.alias}' ({len(record.events)} events, "
                                               f"{record.ended})", sort=True)), html=True)
        for note in record.notes:
            logger.info(redact(f"Note on run {record.run_id}: {note}"))
        if why and not allow_incomplete:
            raise AssertionError(redact(
                f"No agent event of run {record.run_id} within the first-event budget of {first_budget:g}s, but frames "
                f"did arrive: {why}.\nFrames since the message:\n"
                + timeline.text(conn.snapshot()[record.log_index:], record.sent_at)))
        if record.terminal is None and not allow_incomplete and record.close is not None \
                and record.close.closed_by == "client":
            raise AssertionError(redact(
                f"Run {record.run_id} was cut short by the client, not the server: '{conn.alias}' was closed by the "
                f"client ({record.close.close_reason or 'no reason given'}) at {record.rel(record.close):.3f}s, before "
                f"the run ended. This is no verdict on the server. Events of the run:\n"
                f"{timeline.text(record.events, record.sent_at)}"))
        if record.terminal is None and not allow_incomplete:
            if record.ended == "closed" and record.close is not None:
                cause = f"the connection was closed by the {record.close.closed_by} ({record.close.summary()}) at " \
                        f"{record.rel(record.close):.3f}s"
            elif record.ended == "refused":
                cause = f"the server refused to start it: {record.reply.summary(200)}"
            else:
                cause = f"no terminal event within {secs:g}s"
            late = ""
            if not record.agent_events or record.rel(record.agent_events[0]) > first_budget:
                late = (f"Rule 6 (timing) violated: no agent event within the first-event budget of "
                        f"{first_budget:g}s.\n")
            raise AssertionError(redact(
                late + f"Rule 1 (start and end) violated: run {record.run_id} did not end with "
                f"{record.terminal_names()}: {cause}. Events of the run:\n{timeline.text(record.events, record.sent_at)}"))
        return record

    @keyword
    def get_received_events(self, alias: str | None = None, event_type: str | None = None) -> list:
        """Returns every frame received so far on a connection (optionally of one type or
        role), as messages. Frames that were not JSON appear as ``{"raw": ..., "parse_error": ...}``.

        Example:
        | ${frames}=    Get Received Events    alice
        """
        conn = REGISTRY.get(alias)
        out = []
        for e in conn.snapshot():
            if e.kind == "close" or (event_type and e.type != event_type and e.role != event_type):
                continue
            out.append(e.message if e.message is not None else {"raw": e.raw, "parse_error": e.parse_error,
                                                                  "binary": e.binary})
        return out

    @keyword
    def get_event_log(self, alias: str | None = None) -> list[Event]:
        """Returns the connection's full frame log as ``Event`` objects (for the assertion keywords).

        Example:
        | ${log}=    Get Event Log    alice
        """
        return REGISTRY.get(alias).snapshot()

    @keyword
    def get_connection_info(self, alias: str | None = None) -> dict:
        """Returns ``alias``, ``url``, ``user_id`` (the token's subject), ``subprotocol``
        (masked when it carries a token), ``status``, ``open``, ``frames``, ``handshake_ms``
        and, from the welcome frame where the dialect has one, ``connection_id`` and
        ``welcome_user_id``.

        Example:
        | ${info}=    Get Connection Info
        | Should Be Equal    ${info}[status]    ${101}
        """
        conn = REGISTRY.get(alias)
        welcome = conn.session.welcome
        d = conn.dialect
        hs = conn.handshake
        return {"alias": conn.alias, "url": conn.spec.url, "user_id": conn.user_id,
                "subprotocol": mask_subprotocol(hs.subprotocol) if hs and hs.subprotocol else None,
                "status": hs.status if hs else None, "open": conn.is_open, "frames": len(conn.snapshot()),
                "connection_id": d.welcome_field(welcome.message, "connection_id") if welcome else None,
                "welcome_user_id": d.welcome_field(welcome.message, "user_id") if welcome else None,
                "handshake_ms": round(hs.duration * 1000, 2) if hs else None}

    @keyword
    def server_should_select_the_expected_subprotocol(self, alias: str | None = None) -> str:
        """The subprotocol the server selected is the one the dialect expects
        (``connect.subprotocol_selection``: ``jwt-auth`` for ``default``, one of the offered
        for ``netra``); returns it (masked). Skips, saying why, when the connection offered
        no subprotocol (bearer or query auth).

        Example:
        | Server Should Select The Expected Subprotocol    alice
        """
        conn = REGISTRY.get(alias)
        hs = conn.handshake
        if not hs.offered:
            raise SkipExecution(f"connection '{conn.alias}' offered no subprotocol ({conn.spec.auth} auth): there is "
                                f"nothing for the server to select")
        if hs.problem:
            raise AssertionError(f"Handshake with {hs.url}: {hs.problem}.")
        return mask_subprotocol(hs.subprotocol)

    @keyword
    def connection_should_be_closed_by_server(self, code: int | None = None, timeout: timedelta = timedelta(seconds=5),
                                              alias: str | None = None) -> int | None:
        """Waits until the server closes the connection; with ``code``, the close code must match.
        Returns the close code.

        Example:
        | Connection Should Be Closed By Server    1008
        """
        conn = REGISTRY.get(alias)
        secs = _secs(timeout, 5.0)
        conn.wait_until(lambda: conn.closed is not None, secs)
        if conn.closed is None:
            raise AssertionError(f"Expected the server to close '{conn.alias}' within {secs:g}s; it is still open. "
                                 f"Frames:\n{timeline.text(conn.snapshot(), conn.opened_at)}")
        if conn.closed.closed_by != "server":
            raise AssertionError(f"Expected the server to close '{conn.alias}', but the client did: "
                                 f"{conn.closed.summary()}.")
        if code is not None and conn.closed.close_code != code:
            raise AssertionError(f"Expected close code {code} on '{conn.alias}', got {conn.closed.summary()}.")
        return conn.closed.close_code

    @keyword
    def connection_should_be_open(self, alias: str | None = None) -> None:
        """Fails if the server has closed the connection.

        Example:
        | Connection Should Be Open    alice
        """
        conn = REGISTRY.get(alias)
        if not conn.is_open:
            raise AssertionError(f"Expected '{conn.alias}' to be open, but {conn.closed.summary() if conn.closed else 'it was closed'}.")

    @keyword
    def get_token_subject(self, token: Secret | str) -> str | None:
        """Returns the ``sub`` claim of a token without verifying it (the user id a server should see).

        Example:
        | ${user}=    Get Token Subject    ${token}
        """
        return token_subject(reveal(token))

    @keyword
    def mask_secret(self, value: Secret | str) -> str:
        """Returns the masked form of a token or secret, for messages and metadata.

        Example:
        | ${shown}=    Mask Secret    ${token}
        """
        return mask(value)

    def run_record(self, run: dict) -> RunRecord:
        """The record behind a run handle (for other libraries of the kit)."""
        return self._record(run)

    def base_url(self) -> str | None:
        tgt = targets.current()
        return tgt.backend_url if tgt else None


__all__ = ["AgentSessions", "ws_base", "get_path"]
