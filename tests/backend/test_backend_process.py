"""The reference backend as a process: ready line, clean stop on signals, option errors."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from backend_helpers import ROOT, open_session, recv_json, send_message

pytestmark = pytest.mark.usefixtures("real_processes")  # these tests are about the process itself


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_cleanly_with_exit_0_and_frees_the_port(start_server, sig):
    srv = start_server("--think-delay", "0.5", "--tools", "3")
    ws, _ = open_session(srv, "user_stop")
    send_message(ws)  # a run is in flight while the server stops
    try:
        code = srv.stop(sig)
    finally:
        ws.close()
    stderr = srv.stderr()
    assert code == 0, stderr
    assert "Traceback" not in stderr, stderr
    with socket.socket() as probe:  # the port is free again
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", srv.port))


def test_ready_line_is_the_only_stdout_and_logs_go_to_stderr(start_server):
    srv = start_server("--think-delay", "0")
    ws, welcome = open_session(srv, "user_logs")
    send_message(ws)
    ws.close()
    assert srv.stop() == 0
    stdout_rest = []
    while (line := srv.stdout_lines.get(timeout=5)) is not None:
        stdout_rest.append(line)
    assert stdout_rest == []
    stderr = srv.stderr()
    assert welcome["data"]["connection_id"] in stderr and "user_logs" in stderr


def test_closing_a_connection_cancels_its_runs(start_server):
    srv = start_server("--think-delay", "1.0", "--tools", "3")
    ws, _ = open_session(srv, "user_leaves")
    _, run_id = send_message(ws)
    assert recv_json(ws)["type"] == "agent_started"
    ws.close()
    # The run would take 7 s; its cancellation is logged as soon as the close is seen.
    pattern = re.compile(rf"run {run_id} .*: 1 event\(s\) sent, cancelled")
    deadline = time.monotonic() + 3
    while not pattern.search(srv.stderr()):
        assert time.monotonic() < deadline, f"no cancellation logged for {run_id}:\n{srv.stderr()}"
        time.sleep(0.05)  # polling the log file for the condition, bounded by the deadline


def _run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reference_backend", "--port", "0", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=30)


def test_unknown_fault_exits_2_naming_the_value_and_the_valid_names():
    result = _run_cli("--fault", "explode")
    assert result.returncode == 2
    assert "explode" in result.stderr and "drop-tool-completed" in result.stderr and "health-500" in result.stderr
    assert result.stdout == ""


def test_unknown_fault_in_the_environment_exits_2():
    import os
    env = dict(os.environ, REFERENCE_BACKEND_FAULTS="leak,explode")
    result = _run_cli(env=env)
    assert result.returncode == 2
    assert "explode" in result.stderr and "REFERENCE_BACKEND_FAULTS" in result.stderr


@pytest.mark.parametrize("args", [["--tools", "-1"], ["--think-delay", "soon"]])
def test_bad_knob_values_exit_2(args):
    assert _run_cli(*args).returncode == 2


def test_stop_closes_open_connections_and_logs_to_the_end(start_server):
    """The shutdown does not sit out a fixed tick: it closes open WebSockets itself (close
    code 1012, service restart), waits for them, and the last log line still reaches stderr."""
    from backend_helpers import Closed

    srv = start_server("--think-delay", "0")
    ws, _ = open_session(srv, "user_open_at_stop")
    try:
        assert srv.stop() == 0
        with pytest.raises(Closed) as closed:
            while True:
                recv_json(ws, timeout=5)
    finally:
        ws.close()
    assert closed.value.code == 1012, f"close code {closed.value.code}"
    stderr = srv.stderr()
    assert "shutting down: 1 connection(s) open" in stderr, stderr
    assert stderr.rstrip().endswith("reference_backend: stopped"), stderr[-500:]


def test_unknown_wire_exits_2_naming_the_value_and_the_valid_names():
    import os

    result = _run_cli("--wire", "soap")
    assert result.returncode == 2 and "soap" in result.stderr and "ag-ui" in result.stderr
    result = _run_cli(env=dict(os.environ, REFERENCE_BACKEND_WIRE="soap"))
    assert result.returncode == 2
    assert "REFERENCE_BACKEND_WIRE" in result.stderr and "'soap'" in result.stderr and "netra" in result.stderr


@pytest.mark.parametrize("wire", ["default", "ag-ui"])
def test_a_heartbeat_on_a_wire_without_one_exits_2(wire):
    result = _run_cli("--wire", wire, "--heartbeat", "5")
    assert result.returncode == 2
    assert "--heartbeat 5" in result.stderr and "netra" in result.stderr and wire in result.stderr


def test_the_wire_comes_from_the_environment(start_server):
    from backend_helpers import connect, make_token

    srv = start_server(env={"REFERENCE_BACKEND_WIRE": "netra"})
    ws = connect(srv, make_token("user_env_wire"), "header")
    try:
        assert recv_json(ws)["type"] == "connection_established"
    finally:
        ws.close()


def test_exit_with_pid_stops_the_backend_when_that_process_ends(start_server):
    # pabot's shared backend lives as long as pabot: --exit-with-pid names the process to outlive.
    owner = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        srv = start_server("--exit-with-pid", str(owner.pid))
        assert srv.proc.poll() is None
        owner.stdin.close()
        owner.wait(5)
        code = srv.proc.wait(10)  # the condition itself: the backend's own exit
    finally:
        owner.kill()
    assert code == 0, srv.stderr()
    assert f"process {owner.pid} ended: stopping" in srv.stderr()
    assert "Traceback" not in srv.stderr()


def test_the_embedded_backend_log_starts_empty_for_each_run(tmp_path):
    """``reference-backend.log`` sits next to output.xml: like Robot's outputs it holds this
    run only, not every earlier run into the same folder."""
    from agentkit.transports.process import BackendProcess

    log = tmp_path / "reference-backend.log"
    log.write_text("a line from an earlier run\n", encoding="utf-8")
    with BackendProcess(think_delay=0, log_file=log) as backend:
        assert backend.url
    text = log.read_text(encoding="utf-8")
    assert "a line from an earlier run" not in text
    assert "listening on" in text, text


def test_two_backends_of_one_process_share_the_log_without_overwriting(tmp_path):
    from agentkit.transports.process import BackendProcess

    log = tmp_path / "shared.log"
    first = BackendProcess(think_delay=0, log_file=log).start()
    second = BackendProcess(think_delay=0, log_file=log).start()
    second.stop()
    first.stop()
    text = log.read_text(encoding="utf-8")
    assert text.count("listening on") == 2, text
