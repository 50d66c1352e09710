"""One agent session's protocol state, with no I/O (sans-I/O, as the ``websockets``
package does it): a transport feeds it what arrived and sends what it returns.

Both transports (the step-by-step keywords' reader thread and the fan-out engine's
event loop) call the same methods, so they can never disagree about one server: which
selected subprotocol is right (:meth:`check_subprotocol`), what counts as a refusal
(:meth:`refusal_for_status`, :meth:`refusal`), which frames are control frames
(answered heartbeats, command replies), which agent events belong to which run and
which are foreign (:meth:`receive`), when a run is over (:meth:`run_done`) and why a
run saw nothing (:meth:`unmatched_diagnosis`). Deadlines stay with the transports.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .dialect import Dialect
from .event import Event
from .paths import Matcher, get_path, render
from .run import RunRecord
from .spec import mask_subprotocol

#: How long a run keeps listening after its first terminal event, by default (seconds).
DEFAULT_GRACE = 0.3


@dataclass
class Refusal:
    """How a server refused a connection: ``http`` (a status at the upgrade) or ``close``
    (101, then a close with a refusal code before any welcome or agent event)."""

    how: str
    status: int | None = None
    close: Event | None = None
    frame: Event | None = None

    def describe(self) -> str:
        if self.how == "http":
            return f"refused with HTTP {self.status}"
        text = f"closed with code {self.close.close_code}"
        if self.close.close_reason:
            text += f" ({self.close.close_reason})"
        text += " before the welcome"
        if self.frame is not None:
            text += f", after {self.frame.summary(120)}"
        return text


@dataclass
class _Command:
    kind: str                      # "setup" or "run"
    reply: Matcher
    error: Matcher | None
    run: RunRecord | None = None
    answer: Event | None = None


class AgentSession:
    """Protocol state of one connection: frames in, replies and verdicts out.

    ``user_id`` is the token's subject: the connection's user is never read back from
    the server. ``grace`` is how long (seconds) a run keeps listening after its first
    terminal event, so a second terminal event or a late event fails it (0: off)."""

    def __init__(self, dialect: Dialect, name: str, user_id: str | None, grace: float = DEFAULT_GRACE) -> None:
        self.dialect = dialect
        self.name = name
        self.user_id = user_id
        self.grace = max(0.0, grace)
        self.frames: list[Event] = []
        self.runs: list[RunRecord] = []
        self.foreign: list[Event] = []
        self.unmatched: list[Event] = []
        self.welcome: Event | None = None
        self.refusal_frame: Event | None = None
        self.first_agent_event: Event | None = None
        self.closed: Event | None = None
        self.setup_failure: Event | None = None
        self._foreign_runs: set = set()  # run ids of runs this connection never started
        self._commands: dict[Any, _Command] = {}
        self._next_command = 0
        frames = dialect.frames
        beat = frames.get("heartbeat")
        self._heartbeat_reply = json.dumps(render(beat["reply"], dialect.settings)) if beat else None

    # --- handshake ----------------------------------------------------------------
    def check_subprotocol(self, offered: list[str], selected: str | None) -> str | None:
        """``None`` when the server's selected subprotocol is the one the dialect expects,
        else the problem in words (tokens masked)."""
        rule = self.dialect.connect.get("subprotocol_selection", "any")
        shown = ", ".join(mask_subprotocol(s) for s in offered) or "none"
        got = mask_subprotocol(selected)
        if selected is not None and selected not in offered:
            return (f"the server selected subprotocol '{got}', which the client did not offer (offered: {shown}); "
                    f"RFC 6455 (section 4.2.2) lets a server select only one of the offered subprotocols")
        if rule == "none":
            return None if selected is None else (f"the server selected subprotocol '{got}', but dialect "
                                                  f"'{self.dialect.name}' expects none (offered: {shown})")
        if rule == "any":
            return None
        if rule == "offered":
            if offered and selected is None:
                return (f"the server selected no subprotocol, but dialect '{self.dialect.name}' expects one of the "
                        f"offered ones (offered: {shown})")
            return None
        if not offered:
            return None  # nothing offered (bearer or query auth): nothing can be selected
        if selected != rule:
            return (f"the server selected {'no subprotocol' if selected is None else f'subprotocol {got!r}'}, but "
                    f"dialect '{self.dialect.name}' expects '{rule}' (offered: {shown})")
        return None

    def refusal_for_status(self, status: int | None) -> bool:
        """Whether an HTTP status at the upgrade is one of the dialect's refusals."""
        return status in self.dialect.connect["refusal"]["http_status"]

    @property
    def accepted(self) -> bool:
        """Evidence that the server accepted the connection: the welcome or any agent event."""
        return self.welcome is not None or self.first_agent_event is not None

    def refusal(self) -> Refusal | None:
        """A refusal after the upgrade: a close with a refusal code before any acceptance."""
        closed = self.closed
        if closed is None or self.accepted or closed.closed_by != "server":
            return None
        if self.dialect.is_refusal_close(closed.close_code):
            return Refusal("close", close=closed, frame=self.refusal_frame)
        return None

    def welcome_problem(self) -> str | None:
        """Whether the welcome names the connection's user the way the dialect says it does."""
        if self.welcome is None or self.user_id is None:
            return None
        how = self.dialect.welcome_identifies
        named = self.dialect.welcome_field(self.welcome.message, "user_id")
        if how == "none":
            return None
        if named is None:
            return f"the welcome frame names no user (expected the token's user {self.user_id!r})"
        text = str(named)
        if how == "equal" and text != self.user_id:
            return f"the welcome frame names user {text!r}, expected the token's user {self.user_id!r}"
        if how == "prefix":
            stem = text.rstrip(".…")
            if not stem or not self.user_id.startswith(stem):
                return (f"the welcome frame names user {text!r}, which is not a prefix of the token's user "
                        f"{self.user_id!r}")
        return None

    # --- frames in ------------------------------------------------------------------
    def receive(self, event: Event) -> list[str]:
        """Take one frame (or the close); returns the frames to send in answer, at once."""
        self.frames.append(event)
        if event.kind == "close":
            self.closed = event
            for run in self.runs:
                if run.terminal is None and run.ended == "terminal":
                    run.ended, run.close = "closed", event
            return []
        if event.role is not None:
            if self.first_agent_event is None:
                self.first_agent_event = event
            run = self._attribute(event)
            if run is None:
                self.foreign.append(event)
            else:
                run.events.append(event)
                # Stamped with another user: foreign whatever run it names (and a rule 4 violation of it).
                if self.user_id is not None and event.user_id is not None and str(event.user_id) != self.user_id:
                    self.foreign.append(event)
            return []
        if not self.accepted and self.refusal_frame is None and self.dialect.is_refusal_frame(event.message):
            self.refusal_frame = event
            return []
        control = event.control
        if control == "heartbeat":
            return [self._heartbeat_reply] if self._heartbeat_reply else []
        if control == "welcome":
            if self.welcome is None:
                self.welcome = event
            return []
        if control in ("reply", "error") and self._answer_command(event):
            return []
        if control is None:
            self.unmatched.append(event)
            active = self._active_run()
            if active is not None and self.dialect.correlation == "connection":
                active.other.append(event)
        return []

    def _active_run(self) -> RunRecord | None:
        return next((r for r in self.runs if r.terminal is None and r.ended == "terminal"), None)

    def _attribute(self, event: Event) -> RunRecord | None:
        if not self.runs:
            return None
        if self.dialect.correlation == "connection":
            rid = event.run_id
            if rid is not None and rid in self._foreign_runs:
                return None
            if event.role == "started" and rid is not None:
                ours = next((r for r in self.runs if r.run_id == rid), None)
                if ours is not None:
                    # The start naming our run id is ours; a start taken before it was an impostor.
                    for taken in [e for e in ours.events if e.role == "started" and e.run_id != rid]:
                        ours.events.remove(taken)
                        self.foreign.append(taken)
                        if taken.run_id is not None:
                            self._foreign_runs.add(taken.run_id)
                    return ours
            active = self._active_run()
            if active is not None:
                if event.role == "started" and any(e.role == "started" for e in active.events):
                    # One input, one run: a second start is a run this connection never started.
                    if rid is not None:
                        self._foreign_runs.add(rid)
                    return None
                return active
            # Within the grace window after a run's end, a late event belongs to that run (and
            # fails it); a new start nobody asked for is a run this connection never started.
            ended = [r for r in self.runs if r.terminal is not None]
            if ended and event.role != "started" and event.received - ended[-1].terminal.received <= ended[-1].grace:
                return ended[-1]
            return None
        rid, tid = event.run_id, event.thread_id
        if rid is not None:
            found = [r for r in self.runs if r.run_id == rid]
            if found:
                return found[-1]
        if tid is not None:
            found = [r for r in self.runs if r.thread_id == tid and r.log_index < len(self.frames)]
            if found:
                return found[-1]
        if rid is None and tid is None:
            return self._active_run()  # no ids at all: the ids rule names that
        return None

    def _answer_command(self, event: Event) -> bool:
        for command_id, command in list(self._commands.items()):
            if command.answer is not None:
                continue
            if command.reply(event.message):
                command.answer = event
                if command.run is not None:
                    path = self.dialect.spec["run"].get("reply", {}).get("run_id")
                    if path:  # a path into the reply itself, not a dialect field
                        command.run.server_run_id = get_path(event.message, path)
                    command.run.reply = event
                return True
            if command.error is not None and command.error(event.message):
                command.answer = event
                if command.kind == "setup":
                    self.setup_failure = event
                elif command.run is not None and command.run.terminal is None:
                    command.run.reply = event
                    command.run.ended = "refused"
                return True
        return False

    # --- commands out -------------------------------------------------------------
    def _command(self, kind: str, reply: Any, error: Any, run: RunRecord | None = None) -> int:
        self._next_command += 1
        cid = self._next_command
        values = self.dialect.template_values(command_id=cid)
        self._commands[cid] = _Command(kind, Matcher(render(reply, values)),
                                       Matcher(render(error, values)) if error else None, run)
        return cid

    def setup_frames(self) -> list[str]:
        """The setup commands to send right after connecting (their replies are awaited)."""
        out = []
        for step in self.dialect.connect.get("setup", []):
            cid = self._command("setup", step["reply"], step.get("error"))
            out.append(json.dumps(render(step["send"], self.dialect.template_values(command_id=cid))))
        return out

    @property
    def setup_done(self) -> bool:
        """All setup commands answered (successfully or not: see :attr:`setup_failure`)."""
        return all(c.answer is not None for c in self._commands.values() if c.kind == "setup")

    def start_run(self, content: str, thread_id: str | None = None, run_id: str | None = None,
                  sent_at: float = 0.0) -> tuple[RunRecord, str]:
        """A new run and the frame that starts it. Set ``record.sent_at`` when it is sent."""
        thread_id = thread_id or self.dialect.new_id("thread")
        run_id = run_id or self.dialect.new_id("run")
        message_id = self.dialect.new_id("msg")
        record = RunRecord(self.name, self.user_id, run_id, thread_id, sent_at, dialect=self.dialect,
                           grace=self.grace, content=content, message_id=message_id)
        reply = self.dialect.spec["run"].get("reply")
        cid = self._command("run", reply["match"], reply.get("error"), record) if reply else self._next_command + 1
        if not reply:
            self._next_command = cid
        frame = self.dialect.build_start(content, thread_id, run_id, message_id, cid, self._history(thread_id))
        record.log_index = len(self.frames)
        self.runs.append(record)
        return record, json.dumps(frame)

    def _history(self, thread_id: str) -> list[dict]:
        """The earlier turns of a thread on this connection: each user message and the answer."""
        out: list[dict] = []
        for run in self.runs:
            if run.thread_id != thread_id:
                continue
            out.append({"id": run.message_id, "role": "user", "content": run.content})
            answer = run.answer()
            if answer:
                out.append({"id": f"{run.message_id}_answer", "role": "assistant", "content": answer})
        return out

    # --- verdicts the transports wait on ------------------------------------------------
    def run_done(self, run: RunRecord, now: float) -> bool:
        """The run is over: it ended (and its grace window passed), the connection closed,
        or the server refused to start it."""
        if run.ended in ("closed", "refused", "timeout"):
            return True
        term = run.terminal
        return term is not None and now - term.received >= run.grace

    def run_wait_until(self, run: RunRecord) -> float | None:
        """When a run that has its terminal event will be done (its grace window's end)."""
        term = run.terminal
        return None if term is None else term.received + run.grace

    def unmatched_diagnosis(self, run: RunRecord) -> str | None:
        """Why a run with no agent event saw nothing, when frames did arrive: names the
        unknown types and keys, or the ids that did not match (``None`` when nothing came)."""
        if run.agent_events:
            return None
        after = {id(e) for e in self.frames[run.log_index:]}
        strangers = [e for e in self.unmatched if id(e) in after]
        foreign = [e for e in self.foreign if id(e) in after]
        if not strangers and not foreign:
            return None
        lines = []
        if strangers:
            kinds = sorted({(e.type or ("<binary>" if e.binary else "<no type>" if e.is_json_object else "<not json>"))
                            for e in strangers})
            keys = sorted({k for e in strangers if e.is_json_object for k in e.message})
            lines.append(f"{len(strangers)} frame(s) arrived that dialect '{self.dialect.name}' does not classify: "
                         f"types {kinds}" + (f", keys {keys[:20]}" if keys else ""))
        if foreign:
            ids = sorted({f"run_id={e.run_id!r} thread_id={e.thread_id!r}" for e in foreign})[:5]
            lines.append(f"{len(foreign)} agent event(s) arrived that carry none of this run's ids "
                         f"(run_id {run.run_id!r}, thread_id {run.thread_id!r}): {'; '.join(ids)}")
        return ("; ".join(lines) + f". Is E2E_DIALECT right for this backend? (dialect '{self.dialect.name}' from "
                f"{self.dialect.source}; every key is explained in docs/dialects.md)")
