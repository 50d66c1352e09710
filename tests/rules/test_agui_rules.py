"""The AG-UI rule set (``agentkit.rules.agui``) on hand-written event sequences.

For each rule of the spec (docs/protocol.md, "AG-UI over a WebSocket") at least one valid
and one invalid sequence, fed through a sans-I/O AgentSession started with ``start_run``
(or, where one record holds several runs, straight into a RunRecord). Each invalid case
asserts the kit's rule number and that the message names the event (``TYPE (#seq)``) and
the id concerned. Also: what QA reads from a run (trajectory, answer) and the notes for
what the spec tolerates.
"""

from __future__ import annotations

import pytest

from agentkit.rules import foreign_violations
from rules_helpers import assert_clean, assert_names, load, only, record, run_through_session, show, violations

AG = load("ag-ui")

RS = {"type": "RUN_STARTED", "threadId": "t1", "runId": "r1"}
RF = {"type": "RUN_FINISHED", "threadId": "t1", "runId": "r1"}
RE = {"type": "RUN_ERROR", "message": "model unavailable", "code": "UPSTREAM"}
RS2 = {"type": "RUN_STARTED", "threadId": "t1", "runId": "r2"}
RF2 = {"type": "RUN_FINISHED", "threadId": "t1", "runId": "r2"}


def text_start(mid="m1"):
    return {"type": "TEXT_MESSAGE_START", "messageId": mid, "role": "assistant"}


def text_content(mid="m1", delta="Hello"):
    return {"type": "TEXT_MESSAGE_CONTENT", "messageId": mid, "delta": delta}


def text_end(mid="m1"):
    return {"type": "TEXT_MESSAGE_END", "messageId": mid}


def tool_start(cid="c1", name="get_weather"):
    return {"type": "TOOL_CALL_START", "toolCallId": cid, "toolCallName": name}


def tool_args(cid="c1", delta='{"city": "Paris"}'):
    return {"type": "TOOL_CALL_ARGS", "toolCallId": cid, "delta": delta}


def tool_end(cid="c1"):
    return {"type": "TOOL_CALL_END", "toolCallId": cid}


def tool_result(cid="c1", content="18C, sunny", mid="tm1"):
    return {"type": "TOOL_CALL_RESULT", "messageId": mid, "toolCallId": cid, "content": content}


def run_of(*messages, **kwargs):
    return run_through_session(AG, messages, **kwargs)[1]


# --- rule 1: the run's lifecycle -----------------------------------------------------------
class TestFirstEvent:
    def test_run_started_first_is_valid(self):
        assert_clean(run_of(RS, text_start(), text_content(), text_end(), RF))

    def test_run_error_as_the_very_first_event_is_a_well_formed_failed_run(self):
        run = run_of(RE)
        assert_clean(run)
        assert run.terminal is not None and run.terminal.type == "RUN_ERROR"
        assert not run.succeeded

    def test_any_other_first_event_fails_rule_1_naming_it(self):
        run = run_of(text_start(), text_content(), text_end(), RF)
        found = violations(run, 1)
        assert found, show(violations(run))
        assert_names(found[0], "TEXT_MESSAGE_START", 1)
        assert "RUN_STARTED" in found[0].message


class TestOneRunAtATime:
    def test_run_started_while_a_run_is_active_fails_rule_1_naming_the_active_run(self):
        run = record(AG, [RS, text_start(), text_end(), RS2, RF])
        v = only(run, 1)
        assert_names(v, "RUN_STARTED", 4, "r1")

    def test_on_a_connection_a_second_start_is_a_run_it_never_started(self):
        # One input, one run: the session keeps a second RUN_STARTED out of the run, as a
        # foreign run (rule 5), and the run itself stays well-formed.
        session, run = run_through_session(AG, [RS, text_start(), RS2, text_end(), RF])
        assert [e.seq for e in run.events] == [1, 2, 4, 5]
        assert [e.seq for e in session.foreign] == [3]
        assert_clean(run)
        [v] = foreign_violations(session.foreign, session.user_id, session.name)
        assert v.rule == 5
        assert_names(v, "RUN_STARTED", 3, "r2")

    def test_runs_in_sequence_in_one_stream_are_valid(self):
        assert_clean(record(AG, [RS, text_start(), text_end(), RF, RS2, text_start("m2"), text_end("m2"), RF2]))


class TestAfterRunFinished:
    def test_a_new_run_started_may_follow(self):
        assert_clean(record(AG, [RS, RF, RS2, RF2]))

    def test_a_late_run_error_is_conformant_but_the_run_is_not_a_success(self):
        run = run_of(RS, text_start(), text_content(), text_end(), RF, RE)
        assert_clean(run)
        assert [e.type for e in run.events] == ["RUN_STARTED", "TEXT_MESSAGE_START", "TEXT_MESSAGE_CONTENT",
                                                "TEXT_MESSAGE_END", "RUN_FINISHED", "RUN_ERROR"]
        # docs/protocol.md: "a late RUN_ERROR after RUN_FINISHED turns the run into a failure"
        assert not run.succeeded, "a run with a late RUN_ERROR after RUN_FINISHED must not count as a success"

    @pytest.mark.parametrize("late", [text_start("m9"), tool_start("c9"), RF],
                             ids=["TEXT_MESSAGE_START", "TOOL_CALL_START", "RUN_FINISHED"])
    def test_anything_else_fails_rule_1_naming_it(self, late):
        run = run_of(RS, RF, late)
        v = only(run, 1)
        assert_names(v, late["type"], 3)
        assert "RUN_FINISHED" in v.message


class TestAfterRunError:
    def test_only_a_new_run_started_may_follow(self):
        assert_clean(record(AG, [RS, RE, RS2, RF2]))

    @pytest.mark.parametrize("late", [text_start("m9"), RE, RF],
                             ids=["TEXT_MESSAGE_START", "RUN_ERROR", "RUN_FINISHED"])
    def test_anything_else_fails_rule_1_naming_it(self, late):
        run = record(AG, [RS, RE, late])
        v = only(run, 1)
        assert_names(v, late["type"], 3)
        assert "RUN_ERROR" in v.message


class TestTruncatedRun:
    def test_a_stream_closed_before_the_terminal_event_fails_rule_1(self):
        session, run = run_through_session(AG, [RS, text_start(), text_content()], close=1006)
        assert run.ended == "closed"
        found = violations(run, 1)
        assert len(found) == 1, show(violations(run))
        assert "RUN_FINISHED" in found[0].message and "1006" in found[0].message
        assert not run.succeeded

    def test_a_stream_that_falls_silent_fails_rule_1(self):
        run = run_of(RS, text_start(), text_content())
        found = violations(run, 1)
        assert len(found) == 1, show(violations(run))
        assert "RUN_FINISHED or RUN_ERROR" in found[0].message
        assert not run.succeeded

    def test_a_run_that_saw_nothing_fails_rule_1(self):
        run = run_of()
        assert [v.rule for v in violations(run)] == [1]


# --- rule 3: pairing -----------------------------------------------------------------------
class TestTextMessages:
    def test_start_content_end_by_message_id_is_valid(self):
        assert_clean(run_of(RS, text_start("m1"), text_content("m1", "Hel"), text_content("m1", "lo"), text_end("m1"),
                            RF))

    def test_interleaved_messages_are_valid(self):
        assert_clean(run_of(RS, text_start("m1"), text_start("m2"), text_content("m2", "b"), text_content("m1", "a"),
                            text_end("m1"), text_end("m2"), RF))

    def test_content_for_a_message_not_open_fails_rule_3(self):
        v = only(run_of(RS, text_start("m1"), text_content("m2", "x"), text_end("m1"), RF), 3)
        assert_names(v, "TEXT_MESSAGE_CONTENT", 3, "m2")

    def test_end_for_a_message_not_open_fails_rule_3(self):
        v = only(run_of(RS, text_end("m7"), RF), 3)
        assert_names(v, "TEXT_MESSAGE_END", 2, "m7")

    def test_content_after_the_message_ended_fails_rule_3(self):
        v = only(run_of(RS, text_start("m1"), text_end("m1"), text_content("m1", "late"), RF), 3)
        assert_names(v, "TEXT_MESSAGE_CONTENT", 4, "m1")

    def test_start_of_a_message_already_open_fails_rule_3(self):
        v = only(run_of(RS, text_start("m1"), text_start("m1"), text_end("m1"), RF), 3)
        assert_names(v, "TEXT_MESSAGE_START", 3, "m1")
        assert "#2" in v.message  # where it was opened

    def test_a_closed_message_may_be_reopened(self):
        assert_clean(run_of(RS, text_start("m1"), text_content("m1"), text_end("m1"),
                            text_start("m1"), text_content("m1", " again"), text_end("m1"), RF))


class TestToolCalls:
    def test_start_args_end_result_by_tool_call_id_is_valid(self):
        assert_clean(run_of(RS, tool_start("c1"), tool_args("c1", '{"city": '), tool_args("c1", '"Paris"}'),
                            tool_end("c1"), tool_result("c1"), RF))

    def test_args_for_a_call_not_open_fails_rule_3(self):
        v = only(run_of(RS, tool_start("c1"), tool_args("c2"), tool_end("c1"), RF), 3)
        assert_names(v, "TOOL_CALL_ARGS", 3, "c2")

    def test_end_for_a_call_not_open_fails_rule_3(self):
        v = only(run_of(RS, tool_end("c5"), RF), 3)
        assert_names(v, "TOOL_CALL_END", 2, "c5")

    def test_start_of_a_call_already_open_fails_rule_3(self):
        v = only(run_of(RS, tool_start("c1"), tool_start("c1"), tool_end("c1"), RF), 3)
        assert_names(v, "TOOL_CALL_START", 3, "c1")

    def test_a_closed_call_may_be_reopened(self):
        assert_clean(run_of(RS, tool_start("c1"), tool_end("c1"), tool_start("c1"), tool_args("c1"), tool_end("c1"),
                            RF))


class TestToolCallResult:
    def test_a_result_for_a_known_call_is_valid(self):
        assert_clean(run_of(RS, tool_start("c1"), tool_end("c1"), tool_result("c1"), RF))

    def test_a_result_for_an_unknown_call_fails_rule_3(self):
        v = only(run_of(RS, tool_start("c1"), tool_end("c1"), tool_result("c404"), RF), 3)
        assert_names(v, "TOOL_CALL_RESULT", 4, "c404")


class TestReasoning:
    def test_reasoning_span_and_messages_by_message_id_are_valid(self):
        assert_clean(run_of(
            RS, {"type": "REASONING_START", "messageId": "rs1"},
            {"type": "REASONING_MESSAGE_START", "messageId": "rm1", "role": "reasoning"},
            {"type": "REASONING_MESSAGE_CONTENT", "messageId": "rm1", "delta": "The user wants the weather."},
            {"type": "REASONING_MESSAGE_END", "messageId": "rm1"},
            {"type": "REASONING_END", "messageId": "rs1"}, text_start(), text_content(), text_end(), RF))

    def test_reasoning_end_for_a_span_not_open_fails_rule_3(self):
        v = only(run_of(RS, {"type": "REASONING_START", "messageId": "rs1"},
                        {"type": "REASONING_END", "messageId": "rs2"}, {"type": "REASONING_END", "messageId": "rs1"},
                        RF), 3)
        assert_names(v, "REASONING_END", 3, "rs2")

    def test_reasoning_start_of_a_span_already_open_fails_rule_3(self):
        v = only(run_of(RS, {"type": "REASONING_START", "messageId": "rs1"},
                        {"type": "REASONING_START", "messageId": "rs1"},
                        {"type": "REASONING_END", "messageId": "rs1"}, RF), 3)
        assert_names(v, "REASONING_START", 3, "rs1")

    def test_reasoning_content_for_a_message_not_open_fails_rule_3(self):
        v = only(run_of(RS, {"type": "REASONING_MESSAGE_CONTENT", "messageId": "rm9", "delta": "hm"}, RF), 3)
        assert_names(v, "REASONING_MESSAGE_CONTENT", 2, "rm9")

    def test_reasoning_message_end_not_open_fails_rule_3(self):
        v = only(run_of(RS, {"type": "REASONING_MESSAGE_END", "messageId": "rm9"}, RF), 3)
        assert_names(v, "REASONING_MESSAGE_END", 2, "rm9")


class TestSteps:
    def test_steps_by_step_name_are_valid(self):
        assert_clean(run_of(RS, {"type": "STEP_STARTED", "stepName": "plan"},
                            {"type": "STEP_STARTED", "stepName": "act"},
                            {"type": "STEP_FINISHED", "stepName": "act"}, {"type": "STEP_FINISHED", "stepName": "plan"},
                            RF))

    def test_step_finished_not_started_fails_rule_3(self):
        v = only(run_of(RS, {"type": "STEP_STARTED", "stepName": "plan"}, {"type": "STEP_FINISHED", "stepName": "act"},
                        {"type": "STEP_FINISHED", "stepName": "plan"}, RF), 3)
        assert_names(v, "STEP_FINISHED", 3, "act")

    def test_step_started_twice_fails_rule_3(self):
        v = only(run_of(RS, {"type": "STEP_STARTED", "stepName": "plan"}, {"type": "STEP_STARTED", "stepName": "plan"},
                        {"type": "STEP_FINISHED", "stepName": "plan"}, RF), 3)
        assert_names(v, "STEP_STARTED", 3, "plan")


class TestNothingOpenAtRunFinished:
    @pytest.mark.parametrize("opener, key", [
        (text_start("m1"), "m1"),
        (tool_start("c1"), "c1"),
        ({"type": "REASONING_START", "messageId": "rs1"}, "rs1"),
        ({"type": "REASONING_MESSAGE_START", "messageId": "rm1", "role": "reasoning"}, "rm1"),
        ({"type": "STEP_STARTED", "stepName": "plan"}, "plan"),
    ], ids=["text message", "tool call", "reasoning span", "reasoning message", "step"])
    def test_an_item_still_open_at_run_finished_fails_rule_3(self, opener, key):
        v = only(run_of(RS, opener, RF), 3)
        assert_names(v, "RUN_FINISHED", 3, key)
        assert "#2" in v.message  # the event that opened it

    def test_every_kind_still_open_is_named(self):
        run = run_of(RS, text_start("m1"), tool_start("c1"), {"type": "REASONING_START", "messageId": "rs1"},
                     {"type": "REASONING_MESSAGE_START", "messageId": "rm1", "role": "reasoning"},
                     {"type": "STEP_STARTED", "stepName": "plan"}, RF)
        found = violations(run)
        assert {v.rule for v in found} == {3}, show(found)
        text = show(found)
        for key in ("m1", "c1", "rs1", "rm1", "plan"):
            assert repr(key) in text

    def test_items_still_open_at_run_error_are_not_a_violation(self):
        assert_clean(run_of(RS, text_start("m1"), tool_start("c1"), RE))


# --- chunks -------------------------------------------------------------------------------
class TestChunks:
    def test_text_chunks_expand_and_a_continuation_without_id_continues(self):
        run = run_of(RS, {"type": "TEXT_MESSAGE_CHUNK", "messageId": "m1", "role": "assistant", "delta": "It is "},
                     {"type": "TEXT_MESSAGE_CHUNK", "delta": "18C "},
                     {"type": "TEXT_MESSAGE_CHUNK", "messageId": "m1", "delta": "in Paris."}, RF)
        assert_clean(run)
        assert run.answer() == "It is 18C in Paris."

    def test_a_chunk_stream_is_closed_implicitly_by_run_finished(self):
        assert_clean(run_of(RS, {"type": "TOOL_CALL_CHUNK", "toolCallId": "c1", "toolCallName": "get_weather",
                                 "delta": "{}"}, RF))

    def test_a_chunk_with_another_id_closes_the_first_stream_and_opens_a_new_one(self):
        run = run_of(RS, {"type": "TEXT_MESSAGE_CHUNK", "messageId": "m1", "delta": "first"},
                     {"type": "TEXT_MESSAGE_CHUNK", "messageId": "m2", "delta": "second"}, RF)
        assert_clean(run)
        assert run.messages() == ["first", "second"]

    def test_the_first_text_chunk_must_carry_its_message_id(self):
        v = only(run_of(RS, {"type": "TEXT_MESSAGE_CHUNK", "delta": "orphan"}, RF), 3)
        assert_names(v, "TEXT_MESSAGE_CHUNK", 2)
        assert "messageId" in v.message

    def test_the_first_tool_chunk_must_carry_its_tool_call_id(self):
        v = only(run_of(RS, {"type": "TOOL_CALL_CHUNK", "toolCallName": "get_weather", "delta": "{}"}, RF), 3)
        assert_names(v, "TOOL_CALL_CHUNK", 2)
        assert "toolCallId" in v.message

    def test_the_first_tool_chunk_must_carry_its_tool_call_name(self):
        v = only(run_of(RS, {"type": "TOOL_CALL_CHUNK", "toolCallId": "c1", "delta": "{}"}, RF), 3)
        assert_names(v, "TOOL_CALL_CHUNK", 2, "c1")
        assert "toolCallName" in v.message

    def test_a_continuation_repeating_the_tool_name_with_another_value_is_fatal(self):
        v = only(run_of(RS, {"type": "TOOL_CALL_CHUNK", "toolCallId": "c1", "toolCallName": "get_weather",
                             "delta": "{"},
                        {"type": "TOOL_CALL_CHUNK", "toolCallId": "c1", "toolCallName": "delete_files", "delta": "}"},
                        RF), 3)
        assert_names(v, "TOOL_CALL_CHUNK", 3, "c1", "delete_files", "get_weather")

    def test_a_continuation_repeating_the_role_with_another_value_is_fatal(self):
        v = only(run_of(RS, {"type": "TEXT_MESSAGE_CHUNK", "messageId": "m1", "role": "assistant", "delta": "a"},
                        {"type": "TEXT_MESSAGE_CHUNK", "role": "user", "delta": "b"}, RF), 3)
        assert_names(v, "TEXT_MESSAGE_CHUNK", 3, "m1", "user")

    def test_a_continuation_repeating_the_same_values_continues(self):
        assert_clean(run_of(RS, {"type": "TOOL_CALL_CHUNK", "toolCallId": "c1", "toolCallName": "get_weather",
                                 "delta": "{"},
                            {"type": "TOOL_CALL_CHUNK", "toolCallId": "c1", "toolCallName": "get_weather",
                             "delta": "}"},
                            RF))

    def test_reasoning_chunks_expand(self):
        assert_clean(run_of(RS, {"type": "REASONING_MESSAGE_CHUNK", "messageId": "rm1", "delta": "Let me "},
                            {"type": "REASONING_MESSAGE_CHUNK", "delta": "think."}, RF))

    def test_a_chunk_stream_is_closed_implicitly_by_another_event(self):
        assert_clean(run_of(RS, {"type": "TEXT_MESSAGE_CHUNK", "messageId": "m1", "delta": "a"},
                            text_start("m2"), text_content("m2"), text_end("m2"), RF))


# --- retired THINKING_* events --------------------------------------------------------------
class TestLegacyThinking:
    THINKING = [{"type": "THINKING_START"}, {"type": "THINKING_TEXT_MESSAGE_START"},
                {"type": "THINKING_TEXT_MESSAGE_CONTENT", "delta": "Checking the forecast."},
                {"type": "THINKING_TEXT_MESSAGE_END"}, {"type": "THINKING_END"}]

    def test_thinking_events_pair_as_reasoning_events(self):
        run = run_of(RS, *self.THINKING, RF)
        assert_clean(run)
        assert [e.role for e in run.events[1:6]] == ["thinking"] * 5

    def test_thinking_left_open_fails_rule_3_as_reasoning_would(self):
        run = run_of(RS, {"type": "THINKING_START"}, {"type": "THINKING_TEXT_MESSAGE_START"}, RF)
        found = violations(run)
        assert [v.rule for v in found] == [3, 3], show(found)
        assert all("RUN_FINISHED (#4)" in v.message for v in found)
        assert "reasoning span" in show(found) and "reasoning message" in show(found)

    def test_thinking_end_without_start_fails_rule_3(self):
        v = only(run_of(RS, {"type": "THINKING_END"}, RF), 3)
        assert_names(v, "THINKING_END", 2)

    def test_thinking_events_are_not_noted_as_dropped(self):
        # They are read as REASONING_* (docs/protocol.md), so a note must not say they were dropped.
        run = run_of(RS, *self.THINKING, RF)
        assert_clean(run)
        dropped = [n for n in run.notes if "THINKING_" in n and "dropped" in n]
        assert not dropped, "THINKING_* events are read as REASONING_*, yet the notes say:\n" + "\n".join(dropped)


# --- rule 4: ids ----------------------------------------------------------------------------
class TestIds:
    def test_run_finished_with_the_ids_of_run_started_is_valid(self):
        assert_clean(run_of(RS, RF))

    @pytest.mark.parametrize("key, value", [("runId", "r-other"), ("threadId", "t-other")])
    def test_run_finished_with_other_ids_than_run_started_fails_rule_4(self, key, value):
        v = only(run_of(RS, dict(RF, **{key: value})), 4)
        assert_names(v, "RUN_FINISHED", 2, value, RS[key])
        assert key in v.message

    def test_ids_differing_from_the_run_input_are_a_note_not_a_failure(self):
        server = {"threadId": "srv-thread", "runId": "srv-run"}
        run = run_of(dict(RS, **server), text_start(), text_end(), dict(RF, **server))
        assert_clean(run)
        assert run.succeeded
        note = "\n".join(run.notes)
        for value in ("srv-thread", "srv-run", "t1", "r1"):
            assert repr(value) in note, note


# --- what the spec tolerates: notes ---------------------------------------------------------
class TestNotes:
    def test_an_unknown_event_type_is_a_note_not_a_failure(self):
        run = run_of(RS, {"type": "WEATHER_RADAR", "frame": 3}, RF)
        assert_clean(run)
        assert any("WEATHER_RADAR" in n and "#2" in n for n in run.notes), run.notes

    def test_an_unknown_field_is_a_note_not_a_failure(self):
        run = run_of(RS, dict(text_start(), colour="blue"), text_end(), RF)
        assert_clean(run)
        assert any("colour" in n and "#2" in n for n in run.notes), run.notes

    def test_a_clean_run_has_no_notes(self):
        run = run_of(RS, text_start(), text_content(), text_end(), RF)
        assert_clean(run)
        assert run.notes == []

    def test_notes_are_written_once_however_often_the_run_is_checked(self):
        run = run_of(RS, {"type": "WEATHER_RADAR"}, RF)
        violations(run)
        violations(run)
        assert len(run.notes) == 1, run.notes


# --- rule 7: the ag-ui-protocol models ------------------------------------------------------
class TestSchemas:
    def test_a_timestamp_given_as_text_fails_rule_7(self):
        run = run_of(dict(RS, timestamp="123"), RF)
        v = only(run, 7)
        assert_names(v, "RUN_STARTED", 1)
        assert "timestamp" in v.message

    def test_an_integer_timestamp_is_valid(self):
        assert_clean(run_of(dict(RS, timestamp=1767607200000), RF))

    def test_a_missing_tool_call_id_fails_rule_7(self):
        run = run_of(RS, {"type": "TOOL_CALL_START", "toolCallName": "get_weather"}, RF)
        found = violations(run, 7)
        assert len(found) == 1, show(violations(run))
        assert_names(found[0], "TOOL_CALL_START", 2)
        assert "toolCallId" in found[0].message

    def test_a_schema_violation_names_the_id_of_the_event_concerned(self):
        run = run_of(RS, tool_start("c1"), dict(tool_args("c1"), timestamp="123"), tool_end("c1"), RF)
        v = only(run, 7)
        assert_names(v, "TOOL_CALL_ARGS", 3, "c1")

    def test_schema_checks_can_be_left_out(self):
        assert_clean(run_of(dict(RS, timestamp="123"), RF), schemas=False)


# --- what QA reads from a run ---------------------------------------------------------------
class TestTrajectoryAndAnswer:
    def test_trajectory_assembles_arguments_from_deltas_and_pairs_results(self):
        run = run_of(RS, tool_start("c1", "get_weather"), tool_args("c1", '{"city": '), tool_args("c1", '"Paris"}'),
                     tool_end("c1"), tool_start("c2", "get_time"), tool_args("c2", '{"tz": "CET"}'), tool_end("c2"),
                     tool_result("c2", "10:00", "tm2"), tool_result("c1", "18C, sunny", "tm1"),
                     text_start("m1"), text_content("m1", "It is 18C."), text_end("m1"), RF)
        assert_clean(run)
        calls = [(c.name, c.key, c.arguments, c.result) for c in run.trajectory()]
        assert calls == [("get_weather", "c1", {"city": "Paris"}, "18C, sunny"),
                         ("get_time", "c2", {"tz": "CET"}, "10:00")]
        assert all(c.completed for c in run.trajectory())

    def test_trajectory_from_tool_chunks(self):
        run = run_of(RS, {"type": "TOOL_CALL_CHUNK", "toolCallId": "c1", "toolCallName": "get_weather",
                          "delta": '{"city": '},
                     {"type": "TOOL_CALL_CHUNK", "delta": '"Oslo"}'}, tool_result("c1", "-3C"), RF)
        assert_clean(run)
        [call] = run.trajectory()
        assert (call.name, call.key, call.arguments, call.result) == ("get_weather", "c1", {"city": "Oslo"}, "-3C")

    def test_a_call_without_result_is_in_the_trajectory_uncompleted(self):
        run = run_of(RS, tool_start("c1"), tool_args("c1"), tool_end("c1"), RF)
        [call] = run.trajectory()
        assert call.arguments == {"city": "Paris"} and call.result is None and not call.completed

    def test_the_answer_is_the_last_streamed_text_message(self):
        run = run_of(RS, text_start("m1"), text_content("m1", "Let me check."), text_end("m1"),
                     tool_start("c1"), tool_end("c1"), tool_result("c1"),
                     text_start("m2"), text_content("m2", "It is "), text_content("m2", "18C and sunny."),
                     text_end("m2"), RF)
        assert_clean(run)
        assert run.messages() == ["Let me check.", "It is 18C and sunny."]
        assert run.answer() == "It is 18C and sunny."

    def test_a_run_without_text_has_no_answer(self):
        run = run_of(RS, RF)
        assert run.answer() is None

    def test_the_start_frame_is_a_run_agent_input(self):
        import json

        from agentkit.wire.session import AgentSession

        session = AgentSession(AG, "conn-1", "alice")
        _, sent = session.start_run("What is the weather?", thread_id="t1", run_id="r1")
        data = json.loads(sent)
        assert data["threadId"] == "t1" and data["runId"] == "r1"
        assert data["messages"][-1]["role"] == "user" and data["messages"][-1]["content"] == "What is the weather?"
