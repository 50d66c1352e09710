"""The sans-I/O agent session (``agentkit.wire.session.AgentSession``) without sockets:
what both transports ask it (selected subprotocol, refusal, welcome, heartbeat replies,
which run a frame belongs to, command replies, when a run is over, why a run saw nothing)."""

from __future__ import annotations

import json

import pytest

from agentkit.rules import foreign_violations
from agentkit.wire import dialect as dialects
from agentkit.wire.event import Event
from agentkit.wire.masking import b64url
from agentkit.wire.session import AgentSession
from agentkit.wire.spec import ConnectionSpec
from rules_helpers import CONNECTION, load, make_jwt

DEFAULT, NETRA, LANGGRAPH, AGUI = load("default"), load("netra"), load("langgraph"), load("ag-ui")
JWT = make_jwt()


class Wire:
    """A session and a clock: frames arrive at the times the test says."""

    def __init__(self, dialect, user_id="alice", grace=0.3):
        self.session = AgentSession(dialect, CONNECTION, user_id, grace=grace)
        self.dialect = dialect
        self.seq = 0
        self.now = 100.0

    def send(self, message, at=None, **start):
        return self.session.start_run(message, sent_at=self.now if at is None else at, **start)

    def recv(self, message, at=None, binary=False):
        self.seq += 1
        self.now = self.now + 0.01 if at is None else at
        if binary:
            text = message if isinstance(message, bytes) else json.dumps(message).encode()
        else:
            text = message if isinstance(message, str) else json.dumps(message)
        event = Event.from_text(self.seq, self.now, CONNECTION, text, self.dialect)
        return event, self.session.receive(event)

    def close(self, code, reason="", at=None, by="server"):
        self.seq += 1
        self.now = self.now + 0.01 if at is None else at
        event = Event.closed(self.seq, self.now, CONNECTION, code, reason, self.dialect, by=by)
        self.session.receive(event)
        return event


def dv(kind, run_id="r1", thread_id="t1", user_id="alice", **data):
    return {"type": kind, "run_id": run_id, "thread_id": thread_id, "user_id": user_id, "timestamp": 1767607200.5,
            "data": data}


def assert_masked(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text, f"a token shows in full: {text}"


# --- the selected subprotocol ---------------------------------------------------------------
class TestSubprotocolJwtAuth:
    """default: the client offers jwt-auth and jwt.<token>, the server must select jwt-auth."""

    OFFERED = ["jwt-auth", f"jwt.{JWT}"]

    def check(self, selected, offered=None):
        return AgentSession(DEFAULT, CONNECTION, "alice").check_subprotocol(
            self.OFFERED if offered is None else offered, selected)

    def test_jwt_auth_selected_is_right(self):
        assert self.check("jwt-auth") is None

    def test_the_token_bearing_subprotocol_selected_is_wrong_and_masked(self):
        problem = self.check(f"jwt.{JWT}")
        assert problem and "'jwt-auth'" in problem
        assert_masked(problem, JWT)

    def test_no_subprotocol_selected_is_wrong(self):
        problem = self.check(None)
        assert problem and "no subprotocol" in problem and "jwt-auth" in problem
        assert_masked(problem, JWT)

    def test_nothing_offered_nothing_selected_is_right(self):
        assert self.check(None, offered=[]) is None


class TestSubprotocolOffered:
    """netra: the server echoes the token-bearing subprotocol it was offered."""

    OFFERED = [f"jwt.{b64url(JWT)}"]

    def check(self, selected):
        return AgentSession(NETRA, CONNECTION, "alice").check_subprotocol(self.OFFERED, selected)

    def test_the_offered_subprotocol_echoed_is_right(self):
        assert self.check(self.OFFERED[0]) is None

    def test_none_selected_is_wrong_and_masked(self):
        problem = self.check(None)
        assert problem and "no subprotocol" in problem
        assert_masked(problem, JWT, b64url(JWT))


class TestSubprotocolAnyAndNone:
    def test_any_accepts_none_or_an_offered_one(self):
        session = AgentSession(AGUI, CONNECTION, "alice")
        assert session.check_subprotocol([f"jwt.{JWT}"], None) is None
        assert session.check_subprotocol([f"jwt.{JWT}"], f"jwt.{JWT}") is None

    def test_none_accepts_only_none(self):
        session = AgentSession(LANGGRAPH, CONNECTION, "alice")
        assert session.check_subprotocol([], None) is None
        problem = session.check_subprotocol(["graph.v1"], "graph.v1")
        assert problem and "expects none" in problem


@pytest.mark.parametrize("name", ["default", "netra", "ag-ui", "langgraph"])
def test_a_selection_the_client_did_not_offer_is_always_wrong(name):
    offered = ["jwt-auth", f"jwt.{JWT}", f"jwt.{b64url(JWT)}"]
    problem = AgentSession(load(name), CONNECTION, "alice").check_subprotocol(offered, "chat.v2")
    assert problem and "did not offer" in problem and "'chat.v2'" in problem
    assert_masked(problem, JWT, b64url(JWT))


def test_a_registered_opaque_token_and_its_base64url_form_are_masked_in_the_message():
    token = "opaque-session-token-7f3a9c2e41b8d6"
    spec = ConnectionSpec("ws://127.0.0.1:9/ws", token=token, subprotocols_template=["jwt.{token}"],
                          token_encoding="base64url")
    offered = spec.subprotocols()
    problem = AgentSession(NETRA, CONNECTION, "alice").check_subprotocol(offered, f"jwt.{token}")
    assert problem and "did not offer" in problem
    assert_masked(problem, token, b64url(token))


# --- refusal --------------------------------------------------------------------------------
@pytest.mark.parametrize("name, status, refused", [
    ("default", 403, True), ("default", 401, False), ("default", 500, False), ("default", None, False),
    ("netra", 401, True), ("netra", 403, True), ("netra", 404, False),
    ("langgraph", 401, True), ("langgraph", 403, True), ("ag-ui", 401, True), ("ag-ui", 200, False),
])
def test_http_statuses_that_refuse(name, status, refused):
    assert AgentSession(load(name), CONNECTION, "alice").refusal_for_status(status) is refused


AUTH_FAILED = {"type": "error_message", "error_code": "AUTH_FAILED", "error_message": "Invalid token", "details": {},
               "timestamp": 1767607200.2}
NETRA_WELCOME = {"type": "connection_established",
                 "data": {"mode": "main", "user_id": "abcdefgh...", "connection_id": "ws_1",
                          "golden_path_events": [], "timestamp": "2026-01-05T10:00:00Z"},
                 "timestamp": 1767607200.1}


class TestRefusalByClose:
    @pytest.mark.parametrize("code", [1008, 1011, 4000, 4401, 4999])
    def test_a_policy_close_before_the_welcome_is_a_refusal_with_its_error_frame(self, code):
        wire = Wire(NETRA)
        error, _ = wire.recv(AUTH_FAILED)
        wire.close(code, "Authentication failed")
        refusal = wire.session.refusal()
        assert refusal is not None and refusal.how == "close" and refusal.frame is error
        text = refusal.describe()
        assert str(code) in text and "Authentication failed" in text and "before the welcome" in text
        assert "AUTH_FAILED" in text or "Invalid token" in text
        assert not wire.session.accepted

    def test_a_policy_close_without_an_error_frame_is_a_refusal(self):
        wire = Wire(NETRA)
        wire.close(1008)
        refusal = wire.session.refusal()
        assert refusal is not None and refusal.frame is None and "1008" in refusal.describe()

    @pytest.mark.parametrize("code", [1000, 1001, 1006, 3000, None])
    def test_other_close_codes_are_not_a_refusal(self, code):
        wire = Wire(NETRA)
        wire.close(code)
        assert wire.session.refusal() is None

    def test_a_close_after_the_welcome_is_not_a_refusal(self):
        wire = Wire(NETRA)
        wire.recv(NETRA_WELCOME)
        wire.close(1008, "Policy")
        assert wire.session.accepted and wire.session.refusal() is None

    def test_a_close_after_an_agent_event_is_not_a_refusal(self):
        wire = Wire(NETRA)
        wire.send("hi", run_id="r1", thread_id="t1")
        wire.recv({"type": "agent_started", "run_id": "r1", "thread_id": "t1", "user_id": "alice",
                   "timestamp": "2026-01-05T10:00:00Z", "agent_name": "a"})
        wire.close(1011)
        assert wire.session.accepted and wire.session.refusal() is None

    def test_a_close_by_the_client_is_not_a_refusal(self):
        wire = Wire(NETRA)
        wire.close(1008, by="client")
        assert wire.session.refusal() is None

    def test_an_error_frame_after_the_welcome_is_not_kept_as_a_refusal_frame(self):
        wire = Wire(NETRA)
        wire.recv(NETRA_WELCOME)
        wire.recv(AUTH_FAILED)
        assert wire.session.refusal_frame is None

    def test_the_default_dialect_refuses_only_at_the_upgrade(self):
        wire = Wire(DEFAULT)
        wire.close(1008)
        assert wire.session.refusal() is None


# --- welcome --------------------------------------------------------------------------------
def default_welcome(user_id="alice"):
    data = {"event": "connection_established", "connection_id": "ws_1"}
    if user_id is not None:
        data["user_id"] = user_id
    return {"type": "system_message", "data": data}


class TestWelcome:
    def test_equal_user_is_right(self):
        wire = Wire(DEFAULT)
        event, replies = wire.recv(default_welcome("alice"))
        assert replies == [] and wire.session.welcome is event and wire.session.accepted
        assert wire.session.welcome_problem() is None

    def test_equal_with_another_user_is_named(self):
        wire = Wire(DEFAULT)
        wire.recv(default_welcome("bob"))
        problem = wire.session.welcome_problem()
        assert problem and "'bob'" in problem and "'alice'" in problem

    def test_a_welcome_naming_no_user_is_named(self):
        wire = Wire(DEFAULT)
        wire.recv(default_welcome(None))
        assert "names no user" in wire.session.welcome_problem()

    @pytest.mark.parametrize("shown", ["abcdefgh...", "abcdefgh…", "abcdefgh", "abcdefgh-1234-5678-90ab"])
    def test_prefix_accepts_a_truncated_id(self, shown):
        wire = Wire(NETRA, user_id="abcdefgh-1234-5678-90ab")
        wire.recv(dict(NETRA_WELCOME, data=dict(NETRA_WELCOME["data"], user_id=shown)))
        assert wire.session.welcome_problem() is None

    @pytest.mark.parametrize("shown", ["zyxwvuts...", "...", "abcdefgh-9999..."])
    def test_prefix_names_an_id_that_is_not_a_prefix(self, shown):
        wire = Wire(NETRA, user_id="abcdefgh-1234-5678-90ab")
        wire.recv(dict(NETRA_WELCOME, data=dict(NETRA_WELCOME["data"], user_id=shown)))
        problem = wire.session.welcome_problem()
        assert problem and repr(shown) in problem and "prefix" in problem

    def test_none_does_not_judge_the_welcome_s_user(self, tmp_path):
        path = tmp_path / "anonymous-welcome.json"
        path.write_text(json.dumps({"extends": "default", "name": "anonymous-welcome",
                                    "welcome": {"identifies": "none"}}), encoding="utf-8")
        wire = Wire(dialects.load(str(path)))
        wire.recv(default_welcome("bob"))
        assert wire.session.welcome is not None and wire.session.welcome_problem() is None

    def test_only_the_first_welcome_is_kept_and_it_is_not_a_run_event(self):
        wire = Wire(DEFAULT)
        run, _ = wire.send("hi", run_id="r1", thread_id="t1")
        first, _ = wire.recv(default_welcome("alice"))
        wire.recv(default_welcome("bob"))
        assert wire.session.welcome is first and run.events == [] and wire.session.unmatched == []


# --- heartbeat --------------------------------------------------------------------------------
class TestHeartbeat:
    def test_a_server_ping_is_answered_and_kept_out_of_the_run(self):
        wire = Wire(NETRA)
        run, _ = wire.send("hi", run_id="r1", thread_id="t1")
        wire.recv({"type": "agent_started", "run_id": "r1", "thread_id": "t1", "user_id": "alice",
                   "timestamp": "2026-01-05T10:00:00Z", "agent_name": "a"})
        ping, replies = wire.recv({"type": "ping"})
        assert [json.loads(r) for r in replies] == [{"type": "pong"}]
        assert ping.control == "heartbeat"
        assert ping not in run.events and ping not in run.other and ping not in wire.session.unmatched
        assert [e.type for e in run.events] == ["agent_started"]

    def test_a_dialect_without_heartbeat_answers_nothing(self):
        wire = Wire(DEFAULT)
        _, replies = wire.recv({"type": "ping"})
        assert replies == []


# --- attribution by ids ------------------------------------------------------------------------
class TestAttributionByIds:
    def two_runs(self):
        wire = Wire(DEFAULT)
        one, _ = wire.send("first", run_id="r1", thread_id="t1")
        two, _ = wire.send("second", run_id="r2", thread_id="t2")
        return wire, one, two

    def test_events_go_to_the_run_whose_run_id_they_carry(self):
        wire, one, two = self.two_runs()
        wire.recv(dv("agent_started", "r2", "t2"))
        wire.recv(dv("agent_started", "r1", "t1"))
        wire.recv(dv("agent_completed", "r1", "t1", result="a"))
        wire.recv(dv("agent_completed", "r2", "t2", result="b"))
        assert [e.seq for e in one.events] == [2, 3] and [e.seq for e in two.events] == [1, 4]

    def test_run_id_comes_before_thread_id(self):
        wire, one, two = self.two_runs()
        event, _ = wire.recv(dv("agent_thinking", "r2", "t1", thought="x"))
        assert event in two.events and event not in one.events

    def test_thread_id_alone_finds_the_run(self):
        wire, one, two = self.two_runs()
        event, _ = wire.recv({"type": "agent_thinking", "thread_id": "t2", "user_id": "alice",
                              "data": {"thought": "x"}})
        assert event in two.events

    @pytest.mark.parametrize("user_id", ["alice", "bob", None])
    def test_an_event_of_a_run_never_started_here_is_foreign_whatever_its_user(self, user_id):
        wire, one, two = self.two_runs()
        event, _ = wire.recv(dv("agent_started", "r-other", "t-other", user_id=user_id, agent_name="a"))
        assert wire.session.foreign == [event] and event not in one.events + two.events
        [v] = foreign_violations(wire.session.foreign, "alice", CONNECTION)
        assert v.rule == 5 and "agent_started (#1)" in v.message and "'r-other'" in v.message
        assert CONNECTION in v.message

    def test_an_event_with_no_ids_goes_to_the_active_run(self):
        wire = Wire(DEFAULT)
        run, _ = wire.send("hi", run_id="r1", thread_id="t1")
        wire.recv(dv("agent_started"))
        bare, _ = wire.recv({"type": "agent_thinking", "data": {"thought": "x"}})
        assert bare in run.events

    def test_an_event_with_no_ids_and_no_active_run_is_foreign(self):
        wire = Wire(DEFAULT)
        run, _ = wire.send("hi", run_id="r1", thread_id="t1")
        wire.recv(dv("agent_started"))
        wire.recv(dv("agent_completed", result="ok"))
        bare, _ = wire.recv({"type": "agent_thinking", "data": {"thought": "x"}})
        assert bare in wire.session.foreign and bare not in run.events

    def test_an_event_before_any_run_is_foreign(self):
        wire = Wire(DEFAULT)
        event, _ = wire.recv(dv("agent_started"))
        assert wire.session.foreign == [event]


# --- attribution by connection order ---------------------------------------------------------
RS = {"type": "RUN_STARTED", "threadId": "t1", "runId": "r1"}
RF = {"type": "RUN_FINISHED", "threadId": "t1", "runId": "r1"}


class TestAttributionByConnectionOrder:
    def started(self, grace=0.3):
        wire = Wire(AGUI, grace=grace)
        run, _ = wire.send("hi", run_id="r1", thread_id="t1", at=100.0)
        wire.recv(RS, at=100.1)
        wire.recv({"type": "TEXT_MESSAGE_START", "messageId": "m1", "role": "assistant"}, at=100.2)
        wire.recv({"type": "TEXT_MESSAGE_END", "messageId": "m1"}, at=100.3)
        wire.recv(RF, at=100.4)
        return wire, run

    def test_events_after_the_start_until_the_terminal_belong_to_the_run(self):
        wire, run = self.started()
        assert [e.seq for e in run.events] == [1, 2, 3, 4] and wire.session.foreign == []

    def test_an_event_before_the_start_is_foreign(self):
        wire = Wire(AGUI)
        early, _ = wire.recv(RS, at=99.0)
        run, _ = wire.send("hi", run_id="r1", thread_id="t1", at=100.0)
        assert wire.session.foreign == [early] and run.events == []

    def test_a_late_event_within_the_grace_window_belongs_to_the_ended_run(self):
        wire, run = self.started()
        late, _ = wire.recv({"type": "TEXT_MESSAGE_START", "messageId": "m2", "role": "assistant"}, at=100.6)
        assert late in run.events and wire.session.foreign == []

    def test_a_new_start_within_the_grace_window_is_not_the_ended_run_s(self):
        wire, run = self.started()
        new, _ = wire.recv(dict(RS, runId="r9"), at=100.5)
        assert new not in run.events and new in wire.session.foreign

    def test_a_late_event_after_the_grace_window_is_foreign(self):
        wire, run = self.started()
        late, _ = wire.recv({"type": "TEXT_MESSAGE_START", "messageId": "m2", "role": "assistant"}, at=100.8)
        assert late not in run.events and wire.session.foreign == [late]

    def test_unclassified_frames_during_the_run_are_kept_with_it(self):
        wire = Wire(AGUI)
        run, _ = wire.send("hi", run_id="r1", thread_id="t1")
        wire.recv(RS)
        odd, _ = wire.recv({"kind": "telemetry", "cpu": 0.3})
        assert odd in run.other and odd in wire.session.unmatched and odd not in run.events

    def test_a_close_ends_the_active_run_as_closed(self):
        wire = Wire(AGUI)
        run, _ = wire.send("hi", run_id="r1", thread_id="t1")
        wire.recv(RS)
        close = wire.close(1006)
        assert run.ended == "closed" and run.close is close and wire.session.run_done(run, wire.now)


# --- commands and their replies (langgraph) ------------------------------------------------------
def lg_event(event, **data):
    return {"type": "event", "event_id": f"e-{event}", "seq": 1, "method": "lifecycle",
            "params": {"namespace": [], "timestamp": 1795973833116, "data": {"event": event, **data}}}


class TestCommands:
    def test_setup_commands_are_answered_by_id(self):
        wire = Wire(LANGGRAPH)
        [frame] = wire.session.setup_frames()
        sent = json.loads(frame)
        assert sent["method"] == "subscription.subscribe" and sent["id"] == 1
        assert not wire.session.setup_done
        wire.recv({"type": "success", "id": 7, "result": {}})
        assert not wire.session.setup_done
        reply, _ = wire.recv({"type": "success", "id": 1, "result": {"subscription_id": "s1"}})
        assert wire.session.setup_done and wire.session.setup_failure is None
        assert reply.control == "reply" and reply not in wire.session.unmatched

    def test_an_error_reply_to_a_setup_command_is_the_setup_failure(self):
        wire = Wire(LANGGRAPH)
        wire.session.setup_frames()
        error, _ = wire.recv({"type": "error", "id": 1, "error": "invalid_argument", "message": "no such channel"})
        assert wire.session.setup_done and wire.session.setup_failure is error

    def test_the_run_start_reply_carries_the_server_s_run_id(self):
        wire = Wire(LANGGRAPH)
        wire.session.setup_frames()
        run, frame = wire.send("add 2 and 3")
        assert json.loads(frame)["id"] == 2 and json.loads(frame)["method"] == "run.start"
        # replies matched by id, whatever their order
        run_reply, _ = wire.recv({"type": "success", "id": 2, "result": {"run_id": "01a22861-dde8"},
                                  "meta": {"applied_through_seq": 0}})
        setup_reply, _ = wire.recv({"type": "success", "id": 1, "result": {"subscription_id": "s1"}})
        assert wire.session.setup_done and run.reply is run_reply
        assert run.server_run_id == "01a22861-dde8"
        assert run.events == [] and run.ended == "terminal"

    def test_an_error_reply_to_the_run_start_ends_the_run_as_refused(self):
        wire = Wire(LANGGRAPH)
        wire.session.setup_frames()
        wire.recv({"type": "success", "id": 1, "result": {}})
        run, _ = wire.send("add 2 and 3")
        error, _ = wire.recv({"type": "error", "id": 2, "error": "busy", "message": "thread is busy"})
        assert run.ended == "refused" and run.reply is error
        assert wire.session.setup_failure is None
        assert wire.session.run_done(run, wire.now)
        assert "refused" in run.ending() and "busy" in run.ending()

    def test_events_of_the_run_follow_its_reply(self):
        wire = Wire(LANGGRAPH)
        run, _ = wire.send("hi")
        wire.recv({"type": "success", "id": 1, "result": {"run_id": "R"}})
        wire.recv(lg_event("running", graph_name="agent"))
        wire.recv(lg_event("completed"))
        assert [e.type for e in run.events] == ["lifecycle.running", "lifecycle.completed"]
        assert run.succeeded


# --- why a run saw nothing -----------------------------------------------------------------------
class TestUnmatchedDiagnosis:
    def test_unknown_types_and_keys_are_named_with_e2e_dialect(self):
        wire = Wire(DEFAULT)
        run, _ = wire.send("hi", run_id="r1", thread_id="t1")
        wire.recv({"type": "agentStarted", "runId": "r1", "payload": {}})
        wire.recv({"type": "agentDone", "runId": "r1", "output": "x"})
        text = wire.session.unmatched_diagnosis(run)
        for part in ("'agentStarted'", "'agentDone'", "'payload'", "'runId'", "'output'", "E2E_DIALECT", "'default'"):
            assert part in text, f"{part} not in: {text}"

    def test_foreign_events_name_the_ids_they_carry(self):
        wire = Wire(DEFAULT)
        run, _ = wire.send("hi", run_id="r1", thread_id="t1")
        wire.recv(dv("agent_started", "r-x", "t-x", agent_name="a"))
        text = wire.session.unmatched_diagnosis(run)
        assert "'r-x'" in text and "'r1'" in text and "E2E_DIALECT" in text

    def test_binary_and_non_json_frames_are_named_as_such(self):
        wire = Wire(DEFAULT)
        run, _ = wire.send("hi", run_id="r1", thread_id="t1")
        wire.recv(b"\x00\x01\x02", binary=True)
        wire.recv("not json at all")
        text = wire.session.unmatched_diagnosis(run)
        assert "<binary>" in text and "<not json>" in text

    def test_nothing_to_say_when_the_run_has_events_or_nothing_came(self):
        wire = Wire(DEFAULT)
        run, _ = wire.send("hi", run_id="r1", thread_id="t1")
        assert wire.session.unmatched_diagnosis(run) is None
        wire.recv(dv("agent_started", agent_name="a"))
        wire.recv({"type": "agentDone"})
        assert wire.session.unmatched_diagnosis(run) is None

    def test_frames_before_the_run_started_are_not_counted(self):
        wire = Wire(DEFAULT)
        wire.recv({"type": "earlyBird"})
        run, _ = wire.send("hi", run_id="r1", thread_id="t1")
        assert wire.session.unmatched_diagnosis(run) is None


# --- binary frames -------------------------------------------------------------------------------
class TestBinaryFrames:
    def test_binary_json_is_not_read_unless_the_dialect_says_so(self):
        data = json.dumps(dv("agent_started", agent_name="a")).encode()
        wire = Wire(DEFAULT)
        run, _ = wire.send("hi", run_id="r1", thread_id="t1")
        event, _ = wire.recv(data, binary=True)
        assert event.binary and event.message is None and event.role is None and event.data == data
        assert event.raw.startswith(f"<binary frame, {len(data)} bytes")
        assert f"{len(data)} bytes" in event.parse_error and "events.binary_json" in event.parse_error
        assert "binary" in event.summary() and str(len(data)) in event.summary()
        assert run.events == [] and event in wire.session.unmatched

    def test_binary_json_is_an_agent_event_where_the_dialect_reads_it(self, tmp_path):
        path = tmp_path / "binary.json"
        path.write_text(json.dumps({"extends": "default", "name": "binary", "events": {"binary_json": True}}),
                        encoding="utf-8")
        wire = Wire(dialects.load(str(path)))
        run, _ = wire.send("hi", run_id="r1", thread_id="t1")
        event, _ = wire.recv(dv("agent_started", agent_name="a"), binary=True)
        assert event.binary and event.role == "started" and run.events == [event]
        junk, _ = wire.recv(b"\xff\xfe", binary=True)
        assert junk.message is None and "binary frame of 2 bytes, not JSON" in junk.parse_error


# --- when a run is over ----------------------------------------------------------------------------
class TestRunDone:
    def ended_at(self, grace):
        wire = Wire(DEFAULT, grace=grace)
        run, _ = wire.send("hi", run_id="r1", thread_id="t1", at=100.0)
        wire.recv(dv("agent_started", agent_name="a"), at=100.1)
        wire.recv(dv("agent_completed", result="ok"), at=100.5)
        return wire, run

    def test_not_done_before_the_terminal_event(self):
        wire = Wire(DEFAULT)
        run, _ = wire.send("hi", run_id="r1", thread_id="t1")
        wire.recv(dv("agent_started", agent_name="a"))
        assert not wire.session.run_done(run, 1e9) and wire.session.run_wait_until(run) is None

    def test_done_when_the_grace_window_after_the_end_has_passed(self):
        wire, run = self.ended_at(grace=0.3)
        assert wire.session.run_wait_until(run) == pytest.approx(100.8)
        assert not wire.session.run_done(run, 100.6)
        assert wire.session.run_done(run, 100.81)

    def test_grace_zero_is_done_at_the_terminal_event(self):
        wire, run = self.ended_at(grace=0.0)
        assert wire.session.run_done(run, 100.5)

    def test_a_second_terminal_within_the_grace_window_is_recorded(self):
        wire, run = self.ended_at(grace=0.3)
        wire.recv(dv("agent_completed", result="again"), at=100.7)
        assert [e.type for e in run.events] == ["agent_started", "agent_completed", "agent_completed"]

    @pytest.mark.parametrize("ended", ["closed", "refused", "timeout"])
    def test_done_when_closed_refused_or_timed_out(self, ended):
        wire = Wire(DEFAULT)
        run, _ = wire.send("hi", run_id="r1", thread_id="t1")
        run.ended = ended
        assert wire.session.run_done(run, 0.0)
