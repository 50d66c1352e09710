"""Field reports of tokens in the output:

- When a server selected no subprotocol, or one that was not offered, websocket-client's
  own logger printed the offered subprotocols, the full token, to the console, log.html
  and output.xml.
- A server that echoes the token-bearing subprotocol got the token printed in the failure
  message; a server error body that quotes the token was printed as it came.

Every token and secret the kit knows is masked in every text that reaches an output,
whatever produced it. One real ``robot`` run (``field_robot.py``, ``--loglevel TRACE``)
points the step-by-step keywords and the engine at each such server; then every file it
wrote (output.xml, log.html and report.html decoded, summary.html/.md, the console) is
scanned with ``tools/secrets_scan.py`` for the signing secret, every token the servers
saw (in any encoding), 32-character pieces of each token, and any JWT at all."""

from __future__ import annotations

import re

import pytest

from field_robot import secrets_scan

STEP = "Step By Step"
FAILING_SERVERS = ["No Subprotocol", "Not Offered Subprotocol", "Echoed Token Subprotocol",
                   "Error Body Quoting The Token", "Error Frame Quoting The Token"]
MASKED = re.compile(r"eyJh…[\w-]{4} \(\d+ chars\)")


def test_the_run_did_what_the_scan_relies_on(field_robot_run):
    run = field_robot_run
    assert run.tests, f"no results (rc {run.rc}):\n{run.console[-3000:]}"
    for server in FAILING_SERVERS:
        assert run.status(f"{server} {STEP}") == "FAIL", run.tests[f"{server} {STEP}"]
        assert run.status(f"{server} Engine") == "FAIL", run.tests[f"{server} Engine"]
    assert run.status("Error Body Quoting The Token Is A Refusal") == "PASS", run.tests
    assert len(set(run.tokens)) >= 2, "the servers saw the tokens of both transports"
    names = {p.name for p in run.files()}
    assert {"output.xml", "log.html", "report.html", "summary.html", "summary.md", "console-stdout.txt",
            "console-stderr.txt"} <= names, names


def test_the_scan_would_find_a_token_even_cut_short(field_robot_run):
    """Positive control: a token's first 200 characters (a failure message cut at 200) is found."""
    token = field_robot_run.tokens[0]
    found = secrets_scan.scan_text(f"Body: invalid token {token}"[:200], field_robot_run.secrets())
    assert found, "the scan would miss a token cut short"


def test_tokens_are_masked_in_the_failure_messages(field_robot_run):
    run = field_robot_run
    nosel = run.message(f"No Subprotocol {STEP}")
    assert "selected no subprotocol" in nosel and "offered: jwt-auth, jwt." in nosel, nosel
    assert MASKED.search(nosel), nosel
    offered = run.message(f"Not Offered Subprotocol {STEP}")
    assert "selected subprotocol 'graphql-ws'" in offered and "did not offer" in offered, offered
    echoed = run.message(f"Echoed Token Subprotocol {STEP}")
    assert re.search(r"selected subprotocol 'jwt\.eyJh…[\w-]{4} \(\d+ chars\)'", echoed), echoed
    body = run.message(f"Error Body Quoting The Token {STEP}")
    assert "refused with HTTP 403" in body and "Body: Forbidden: the token eyJh…" in body, body
    for server in ("No Subprotocol", "Not Offered Subprotocol", "Echoed Token Subprotocol"):
        engine = run.message(f"{server} Engine")
        assert "errors 2" in engine and "handshake: the server selected" in engine, engine
    assert "auth rejected 2" in run.message("Error Body Quoting The Token Engine")
    for name, (_, message) in run.tests.items():
        for token in run.tokens:
            assert token not in message, f"{name}: the token is in the failure message"


def test_the_error_frame_quoting_the_token_was_logged_masked(field_robot_run):
    """The raw frames (DEBUG) are in the log, masked: so the scan below read them."""
    log = (field_robot_run.outdir / "log.html").read_text(encoding="utf-8")
    strings = secrets_scan.robot_log_strings(log)
    raw = [s for s in strings if "was revoked" in s]
    assert raw, "the error frame that quotes the token is not in the log: the scan would prove nothing"
    assert any(MASKED.search(s) and "base64url token ZXlK…" in s for s in raw), raw[:2]


@pytest.mark.parametrize("kind", ["output.xml", "log.html", "report.html", "summary", "console"])
def test_no_token_or_secret_in_any_output(field_robot_run, kind):
    files = [p for p in field_robot_run.files()
             if p.name == kind or (kind == "summary" and p.name.startswith("summary."))
             or (kind == "console" and p.name.startswith("console-"))]
    assert files, f"no {kind} in {field_robot_run.outdir}"
    findings = secrets_scan.scan_paths(files, field_robot_run.secrets())
    assert not findings, "tokens or secrets in the run's output:\n" + "\n".join(map(str, findings))


def test_websocket_client_logs_nothing_for_the_kits_own_connections(field_robot_run):
    """websocket-client's own logger (the field report's source) says nothing for the kit's
    connections: the kit offers the subprotocols as a header and judges the answer itself."""
    from robot.api import ExecutionResult

    suite = ExecutionResult(str(field_robot_run.outdir / "output.xml")).suite
    for test in suite.all_tests:
        if test.name.startswith("Websocket Client Used Directly"):
            continue
        messages = [m.message for m in _messages(test)]
        assert not any("Invalid subprotocol" in m for m in messages), f"{test.name}: websocket-client logged"


def test_a_third_party_log_record_with_the_token_is_masked(field_robot_run):
    """Whatever produced it: websocket-client used directly logs the offered subprotocols,
    the token raw and base64url; the record reaches the log masked (and the scan above
    finds no token in any output)."""
    from robot.api import ExecutionResult

    suite = ExecutionResult(str(field_robot_run.outdir / "output.xml")).suite
    test = next(t for t in suite.all_tests if t.name.startswith("Websocket Client Used Directly"))
    assert test.status == "PASS", test.message
    records = [m.message for m in _messages(test) if "Invalid subprotocol" in m.message]
    assert records, "websocket-client's record is not in the log: this test would prove nothing"
    assert MASKED.search(records[0]) and "base64url token ZXlK…" in records[0], records[0]


def _messages(item):
    for child in getattr(item, "body", []):
        if getattr(child, "type", None) == "MESSAGE":
            yield child
        else:
            yield from _messages(child)
