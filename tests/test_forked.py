"""tests/forked.py: a forked command behaves like the real process it stands for, and a
forked robot run reaches the same verdicts as a real one."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from robot.api import ExecutionResult, ResultVisitor

import forked

ROOT = Path(__file__).resolve().parents[1]
PROBE = '''
import json, os, sys
code = int(os.environ.get("PROBE_EXIT", "0"))
print(json.dumps({"cwd": os.getcwd(), "argv": sys.argv, "env": os.environ.get("PROBE_VALUE"),
                  "pytest": "PYTEST_CURRENT_TEST" in os.environ, "session_leader": os.getsid(0) == os.getpid(),
                  "path0": sys.path[0], "tests_on_path": any(p.rstrip("/").endswith("/tests") for p in sys.path),
                  "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd"))}))
sys.stdout.flush()
if os.environ.get("PROBE_HANG"):
    import time; time.sleep(60)
sys.exit(code)
'''


@pytest.fixture
def probe(tmp_path):
    (tmp_path / "probe.py").write_text(PROBE, encoding="utf-8")
    return tmp_path


def _env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}, **extra}


@pytest.mark.parametrize("kind", [forked.ForkedPopen, forked.InRunFork], ids=["forkserver", "in-run"])
def test_a_forked_command_starts_as_python_m_would(probe, kind):
    proc = kind([sys.executable, "-m", "probe", "a", "b"], cwd=probe, env=_env(PROBE_VALUE="x", PROBE_EXIT="3"),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    seen = json.loads(out)
    assert seen["cwd"] == str(probe) and seen["path0"] == str(probe)
    assert seen["argv"] == [str(probe / "probe.py"), "a", "b"]
    assert seen["env"] == "x" and not seen["pytest"], "the environment is the one given, nothing else"
    assert seen["session_leader"], "as with start_new_session=True"
    assert not seen["tests_on_path"], "pytest's sys.path must not reach the command"
    # 0-2 and the one listing /proc/self/fd: nothing inherited (a forkserver pipe kept open
    # would keep the forkserver, and so the child, alive after the test process died)
    assert seen["fds"][:3] == [0, 1, 2] and len(seen["fds"]) <= 4, f"descriptors leaked in: {seen['fds']}"


@pytest.mark.parametrize("kind", [forked.ForkedPopen, forked.InRunFork], ids=["forkserver", "in-run"])
def test_wait_times_out_and_a_signal_ends_the_command(probe, kind):
    proc = kind([sys.executable, "-m", "probe"], cwd=probe, env=_env(PROBE_HANG="1"), stdout=subprocess.PIPE)
    assert json.loads(proc.stdout.readline())["session_leader"]
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(0.2)
    assert proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL
    proc.stdout.close()


@pytest.mark.parametrize("kind", [forked.ForkedPopen, forked.InRunFork], ids=["forkserver", "in-run"])
def test_the_process_group_is_there_as_soon_as_the_start_returns(probe, kind):
    """As Popen(start_new_session=True): a SIGTERM to the group right after the start ends it
    (before, one that came too early was lost and a stop waited its full 10 s)."""
    proc = kind([sys.executable, "-m", "probe"], cwd=probe, env=_env(PROBE_HANG="1"), stdout=subprocess.DEVNULL)
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(30) == -signal.SIGTERM


def test_a_command_past_its_timeout_is_killed_and_named(probe):
    proc = forked.popen([sys.executable, "-m", "probe"], cwd=probe, env=_env(PROBE_HANG="1"),
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    with pytest.raises(AssertionError, match=r"-m probe did not finish within 0.5s \(a hang") as err:
        forked.finish(proc, 0.5)
    assert '"session_leader": true' in str(err.value), "the output's tail is in the message"
    assert proc.wait(10) == -signal.SIGKILL


def test_exit_codes_are_right_when_threads_start_and_wait_at_once(probe):
    """Each thread reaps its own child: multiprocessing's own polling from another thread's
    start would report 255 for some of them."""
    from concurrent.futures import ThreadPoolExecutor

    def one(code: int) -> int:
        proc = forked.ForkedPopen([sys.executable, "-m", "probe"], cwd=probe, env=_env(PROBE_EXIT=str(code)),
                                  stdout=subprocess.DEVNULL)
        return proc.wait(60)

    codes = [3, 4] * 12
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(one, codes)) == codes


def test_a_forked_command_ends_when_the_test_process_is_killed(probe):
    script = (f"import sys, time; sys.path.insert(0, {str(ROOT / 'tests')!r}); import forked, subprocess\n"
              "p = forked.ForkedPopen([sys.executable, '-m', 'probe'], cwd=sys.argv[1], stdout=subprocess.PIPE,\n"
              "                       env=dict(__import__('os').environ, PROBE_HANG='1'))\n"
              "p.stdout.readline(); print(p.pid, flush=True); time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", script, str(probe)], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        parent.kill()   # no exit handler runs
        parent.wait(10)
        assert forked_wait_gone(child, 20), f"forked child {child} outlived the process that started it"
    finally:
        if parent.poll() is None:
            parent.kill()


def forked_wait_gone(pid: int, timeout: float) -> bool:
    from agentkit.transports.process import pid_alive, wait_until

    return wait_until(lambda: not pid_alive(pid), timeout)


def test_a_forked_robot_run_judges_like_a_real_one(tmp_path, monkeypatch):
    """The same run (a fault that fails one rule, a test that passes, one that skips) both ways:
    the same tests, statuses and rules named, and the embedded backend logged the same kind of lines."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("E2E_", "REFERENCE_BACKEND_", "ROBOT_"))}
    env["E2E_REFERENCE_FAULTS"] = "reorder"
    selection = ["--test", "Every Tool Call Completes", "--test", "Expired Token Is Refused",
                 "--test", "A Thread Belongs To Its User"]
    verdicts = {}
    for way in ("forked", "real"):
        monkeypatch.setenv("AGENTKIT_TESTS_REAL_PROCESSES", "1" if way == "real" else "0")
        out = tmp_path / way
        run = forked.run([sys.executable, "-m", "robot", "--outputdir", str(out), "--console", "none", *selection,
                          str(ROOT / "suites" / "staging")], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
        found = _Verdicts()
        ExecutionResult(str(out / "output.xml")).visit(found)
        backend_log = (out / "reference-backend.log").read_text(encoding="utf-8")
        verdicts[way] = (run.returncode, found.tests, "listening on" in backend_log, "faults=reorder" in backend_log)
    assert verdicts["forked"] == verdicts["real"]
    rc, tests, *_ = verdicts["real"]
    assert rc == 1 and tests["Every Tool Call Completes"] == ("FAIL", "Rule 3")


class _Verdicts(ResultVisitor):
    """Each test's status and the first rule its message names."""

    def __init__(self) -> None:
        self.tests: dict[str, tuple[str, str | None]] = {}

    def visit_test(self, test) -> None:
        rule = re.search(r"Rule \d+", test.message)
        self.tests[test.name] = (test.status, rule.group(0) if rule else None)
