"""The embedded reference backend never outlives the run that started it.

Each run gets a marker in its environment; the backend inherits it, so the backends of
this run (and only these: other runs on the machine are left alone) are found in the
process table by ``reference_backend`` in the command line plus the marker. While the
run is going, at least one must be found (the check can see what it looks for), with its
listening socket; after the run none may remain, and none of their ports may still be
listened on. Cases: a normal run, a failing run, runs interrupted mid-test by SIGINT,
by two SIGINTs (Robot's forced stop) and by SIGTERM, and a pabot run.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid

import psutil
import pytest

from suite_runs import LiveRobot, clean_env, report

pytestmark = pytest.mark.slow

MARK = "SUITES_CLEANUP_MARK"
BLOCKING_TEST = "Connection Is Established With A Welcome Frame"  # waits 10s for a welcome that never comes


def marked_backends(mark: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if "reference_backend" not in " ".join(proc.info["cmdline"] or []):
                continue
            if proc.environ().get(MARK) == mark and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)  # a zombie has ended; only its exit status waits to be read
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def listening_ports(proc: psutil.Process) -> set[int]:
    try:
        return {c.laddr.port for c in proc.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return set()


def wait_for(predicate, timeout: float, interval: float = 0.05):
    """Polls a condition nothing signals (a process appearing); returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def is_descendant(proc: psutil.Process, ancestor_pid: int) -> bool:
    try:
        return any(p.pid == ancestor_pid for p in proc.parents())
    except psutil.NoSuchProcess:
        return False


class Sampler(threading.Thread):
    """Records every marked backend (pid -> listening ports) until the run ends, so pabot's
    backends, started one per process at different times, are all seen."""

    def __init__(self, mark: str, robot: LiveRobot) -> None:
        super().__init__(daemon=True)
        self.mark, self.robot = mark, robot
        self.seen: dict[int, set[int]] = {}
        self.parents_ok: dict[int, bool] = {}
        self.start()

    def run(self) -> None:
        while self.robot.proc.poll() is None:
            for proc in marked_backends(self.mark):
                self.seen.setdefault(proc.pid, set()).update(listening_ports(proc))
                self.parents_ok.setdefault(proc.pid, is_descendant(proc, self.robot.pid))
            time.sleep(0.05)


CASES = {
    # name: (env overrides, robot args, pabot processes, signals to send once the blocking test started)
    "normal": ({}, (), None, ()),
    # held 5 s in the blocking test, then failing: its backend is surely up while the sampler looks
    "failing": ({"E2E_REFERENCE_FAULTS": "no-connection-established", "E2E_CONNECT_TIMEOUT": "5s"},
                ("--test", BLOCKING_TEST), None, ()),
    "sigint": ({"E2E_REFERENCE_FAULTS": "no-connection-established"}, (), None, (signal.SIGINT,)),
    "sigint-twice": ({"E2E_REFERENCE_FAULTS": "no-connection-established"}, (), None, (signal.SIGINT, signal.SIGINT)),
    "sigterm": ({"E2E_REFERENCE_FAULTS": "no-connection-established"}, (), None, (signal.SIGTERM,)),
    # four suites in two processes: enough for one process to start the shared backend and others to adopt it
    "pabot": ({}, ("--include", "smoke", "--include", "auth", "--include", "isolation"), 2, ()),
    # without PabotLib nothing can be shared: each process starts (and stops) its own backend
    "pabot-no-pabotlib": ({}, ("--no-pabotlib", "--include", "smoke", "--include", "isolation"), 2, ()),
}


@pytest.mark.parametrize("case", list(CASES))
def test_no_backend_process_or_socket_remains(tmp_path, case):
    overrides, args, pabot, signals = CASES[case]
    mark = uuid.uuid4().hex
    env = clean_env(E2E_CONCURRENT_USERS="3", **{MARK: mark}, **overrides)
    robot = LiveRobot(tmp_path / "out", env, args, pabot=pabot)
    sampler = Sampler(mark, robot)
    try:
        if "no-connection-established" in overrides.get("E2E_REFERENCE_FAULTS", ""):
            # The run is held in the blocking test (no welcome comes): not over before it is looked at.
            assert robot.wait_for_console(BLOCKING_TEST, 30), f"{case}: the test never started:\n{robot.console[-2000:]}"
        # While running: a backend of this run is there, a descendant of robot, listening.
        assert wait_for(lambda: any(sampler.seen.values()), 30), \
            f"{case}: no listening reference backend of this run was seen:\n{robot.console[-2000:]}"
        if signals:
            signalled = time.monotonic()
            robot.signal(signals[0])
            if len(signals) > 1:
                assert robot.wait_for_console("Second signal will force exit", 10), robot.console[-2000:]
                robot.signal(signals[1])
        run = robot.wait(60 if pabot else 30)
        since_signal = time.monotonic() - signalled if signals else None
    except BaseException:
        robot.kill()
        raise
    sampler.join(5)
    pids, ports = set(sampler.seen), set().union(*sampler.seen.values())
    assert all(sampler.parents_ok.values()), f"{case}: a backend was not a descendant of robot: {sampler.parents_ok}"
    # pabot's shared backend is detached from its starter and stops when pabot ends (told by a
    # pidfd), so it may still be shutting down as pabot returns: bounded wait for that, reported.
    ended = time.monotonic()
    if pabot:
        wait_for(lambda: not marked_backends(mark), 10)
    left = marked_backends(mark)
    stop_lag = time.monotonic() - ended
    still_alive = [p for p in pids if p in {q.pid for q in left}]
    listening = [c for c in psutil.net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port in ports]
    report("cleanup (reference backends of a run after it ends)",
           f"{case:<13} rc={run.rc:<4} backends seen {sorted(pids)} ports {sorted(ports)}; after: "
           f"{len(left)} process(es), {len(listening)} listening socket(s)"
           + (f"; exited {since_signal:.1f}s after the signal" if since_signal is not None else "")
           + (f"; backend(s) gone {stop_lag:.2f}s after pabot" if pabot else ""))
    assert not left, f"{case}: backend(s) left running: {[(p.pid, ' '.join(p.cmdline())) for p in left]}"
    assert not still_alive, f"{case}: backend pid(s) {still_alive} still alive"
    assert not listening, f"{case}: port(s) still listened on: {listening}"

    if case in ("normal", "pabot"):  # normal: the backend launched early is the one used; pabot: one shared
        assert len(pids) == 1, f"{case}: {len(pids)} backends for one run: {sorted(pids)}"
    if case == "pabot-no-pabotlib":
        assert len(pids) == 3, f"{case}: one backend per suite process expected, saw {sorted(pids)}"
        notes = [m for m in run.messages if m.startswith("PabotLib is not reachable")]
        assert len(notes) == 3 and "own embedded backend" in notes[0], run.messages
    if case in ("normal", "pabot", "pabot-no-pabotlib"):
        assert run.rc == 0 and run.tests and not run.failed, f"{case}: {run.counts()}\n{run.stdout[-2000:]}"
    elif case == "failing":
        assert run.rc > 0 and run.failed, run.counts()
    else:
        # Interrupted: it stops promptly (the blocking wait is cut short, not sat out).
        assert since_signal < 8.0, f"{case}: robot exited {since_signal:.1f}s after the signal"
        if case == "sigint-twice":
            assert "Execution forcefully stopped" in run.stdout, run.stdout[-2000:]
        else:
            assert run.result_error is None, run.result_error
            blocked = run.test(BLOCKING_TEST)
            assert blocked.status == "FAIL" and "terminated by signal" in blocked.message, blocked.message
            assert any(m.startswith("Embedded reference backend (pid") and "stopped" in m for m in run.messages), \
                "the suite teardown did not log stopping the backend"


NO_BACKEND = {
    # name: (env overrides, robot args)
    "dry-run": ({}, ("--dryrun",)),
    "invalid-local-config": ({"E2E_RUN_TIMEOUT": "soon"}, ()),
    "staging-target": ({"E2E_TARGET": "staging"}, ()),
}


@pytest.mark.parametrize("case", list(NO_BACKEND))
def test_no_backend_is_launched_when_the_run_needs_none(tmp_path, case):
    """The backend is launched early, while Robot imports the libraries. A dry run, a remote
    target, or a configuration that fails validation must launch none at all: neither a
    process is seen nor a backend log written."""
    overrides, args = NO_BACKEND[case]
    mark = uuid.uuid4().hex
    robot = LiveRobot(tmp_path / "out", clean_env(**{MARK: mark}, **overrides), args)
    sampler = Sampler(mark, robot)
    try:
        run = robot.wait(60)
    except BaseException:
        robot.kill()
        raise
    sampler.join(5)
    assert not sampler.seen, f"{case}: backend(s) {sorted(sampler.seen)} launched"
    assert not (tmp_path / "out" / "reference-backend.log").exists(), f"{case}: a backend wrote its log"
    if case == "dry-run":
        assert run.rc == 0 and not run.failed, run.counts()
    else:
        assert run.rc > 0 and "Configuration invalid" in run.suite_setup_message, run.suite_setup_message


def test_backend_goes_when_robot_is_killed(tmp_path):
    mark = uuid.uuid4().hex
    env = clean_env(E2E_REFERENCE_FAULTS="no-connection-established", **{MARK: mark})
    robot = LiveRobot(tmp_path / "out", env)
    try:
        assert robot.wait_for_console(BLOCKING_TEST, 30), robot.console[-2000:]
        assert marked_backends(mark), "no backend of this run found while it ran"
        robot.signal(signal.SIGKILL)
        robot.proc.wait(10)
        gone = wait_for(lambda: not marked_backends(mark), 5)
        assert gone, f"backend(s) {[p.pid for p in marked_backends(mark)]} outlived the killed robot by 5s"
    finally:
        robot.kill()
        for orphan in marked_backends(mark):  # ours: started by this test's robot
            orphan.terminate()
            try:
                orphan.wait(10)
            except psutil.TimeoutExpired:
                orphan.kill()
