"""Helpers for the suite self-checks: run ``robot``/``pabot`` on ``suites/staging`` as a
subprocess, read its ``output.xml``, and start reference backends of our own.

A unique module name (not ``helpers.py``) so it cannot clash with other test folders'
modules on ``sys.path``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from robot.api import ExecutionResult, ResultVisitor
from robot.errors import DataError

import forked
from agentkit.transports.process import BackendProcess

ROOT = Path(__file__).resolve().parents[2]
SUITES = ROOT / "suites" / "staging"


def _count_staging_tests() -> int:
    from robot.api import TestSuiteBuilder

    return TestSuiteBuilder().build(str(SUITES)).test_count


# How many tests suites/staging holds, read from the suites themselves (not a fixed number).
STAGING_TESTS = _count_staging_tests()
BIN = Path(sys.executable).parent

#: Lines added to the pytest terminal summary by ``conftest.pytest_terminal_summary``.
REPORT: dict[str, list[str]] = {}


def report(section: str, line: str) -> None:
    REPORT.setdefault(section, []).append(line)


def clean_env(**overrides: str) -> dict[str, str]:
    """This process's environment without any kit or backend setting, plus ``overrides``.

    So a developer's exported ``E2E_TARGET`` (or a fault left set) never changes what a
    test checks."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("E2E_", "REFERENCE_BACKEND_", "ROBOT_", "PABOT"))}
    env["PYTHONUNBUFFERED"] = "1"
    env.update({k: str(v) for k, v in overrides.items()})
    return env


@dataclass
class TestInfo:
    name: str
    longname: str
    status: str
    message: str
    elapsed: float


@dataclass
class RobotRun:
    """One finished robot/pabot run: exit code, wall time, console and parsed results."""

    cmd: list[str]
    rc: int
    wall: float
    stdout: str
    stderr: str
    outdir: Path
    tests: dict[str, TestInfo] = field(default_factory=dict)
    suite_setup_message: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
    result_error: str | None = None   # output.xml missing or unreadable (e.g. a forced stop)

    @property
    def failed(self) -> list[TestInfo]:
        return [t for t in self.tests.values() if t.status == "FAIL"]

    @property
    def passed(self) -> list[TestInfo]:
        return [t for t in self.tests.values() if t.status == "PASS"]

    @property
    def output_xml(self) -> Path:
        return self.outdir / "output.xml"

    def test(self, name: str) -> TestInfo:
        assert name in self.tests, f"no test named {name!r} in the run; tests: {sorted(self.tests)}"
        return self.tests[name]

    def counts(self) -> str:
        skipped = len(self.tests) - len(self.passed) - len(self.failed)
        return f"{len(self.tests)} tests, {len(self.passed)} passed, {len(self.failed)} failed, {skipped} skipped"


class _Collect(ResultVisitor):
    def __init__(self, run: RobotRun) -> None:
        self.run = run

    def visit_test(self, test) -> None:
        self.run.tests[test.name] = TestInfo(test.name, test.full_name, test.status, test.message,
                                             test.elapsed_time.total_seconds())
        super().visit_test(test)

    def visit_message(self, msg) -> None:
        self.run.messages.append(msg.message)


def read_results(run: RobotRun) -> RobotRun:
    if not run.output_xml.is_file():
        run.result_error = f"{run.output_xml} was not written"
        return run
    try:
        result = ExecutionResult(str(run.output_xml))
    except DataError as err:
        run.result_error = str(err)
        return run
    run.suite_setup_message = result.suite.setup.message if result.suite.setup else ""
    run.metadata = dict(result.suite.metadata)
    result.visit(_Collect(run))
    return run


def robot_cmd(outdir: Path, args: list[str] | tuple[str, ...] = (), pabot: int | None = None) -> list[str]:
    if pabot:
        # --pabotlibport 0: a free port, so two pabot runs never fight over 8270.
        head = [str(BIN / "pabot"), "--processes", str(pabot), "--pabotlibport", "0"]
    else:
        head = [sys.executable, "-m", "robot"]
    return [*head, "--outputdir", str(outdir), "--console", "verbose", *args, str(SUITES)]


def run_robot(outdir: Path, env: dict[str, str], args: list[str] | tuple[str, ...] = (),
              timeout: float = 120.0, pabot: int | None = None) -> RobotRun:
    """Runs the staging suites; a run over ``timeout`` is killed and reported as a hang."""
    return run_command(robot_cmd(outdir, args, pabot), outdir, env, timeout)


def run_command(cmd: list[str], outdir: Path, env: dict[str, str], timeout: float) -> RobotRun:
    """A robot or pabot command in its own process group, read back from ``outdir``; killed
    (with everything it started) and reported as a hang after ``timeout`` seconds."""
    started = time.monotonic()
    proc = forked.popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        out, err = forked.finish(proc, timeout)
    finally:
        if proc.poll() is None:
            forked.kill_group(proc)
            proc.wait(5)
    return read_results(RobotRun(cmd, proc.returncode, time.monotonic() - started, out, err, outdir))


class LiveRobot:
    """A robot run whose console is read as it is written (to act mid-run)."""

    def __init__(self, outdir: Path, env: dict[str, str], args: list[str] | tuple[str, ...] = (),
                 pabot: int | None = None) -> None:
        self.outdir = outdir
        self.cmd = robot_cmd(outdir, args, pabot)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        self._buf = bytearray()
        self._cond = threading.Condition()
        self._done = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        fd = self.proc.stdout.fileno()
        while True:
            chunk = os.read(fd, 65536)
            with self._cond:
                if not chunk:
                    self._done = True
                    self._cond.notify_all()
                    return
                self._buf += chunk
                self._cond.notify_all()

    @property
    def console(self) -> str:
        with self._cond:
            return self._buf.decode("utf-8", "replace")

    def wait_for_console(self, text: str, timeout: float) -> bool:
        """True once ``text`` is on the console; False if the run ended or time ran out first."""
        deadline = time.monotonic() + timeout
        needle = text.encode()
        with self._cond:
            while needle not in self._buf:
                remaining = deadline - time.monotonic()
                if self._done or remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def signal(self, signum: int = signal.SIGINT) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> RobotRun:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"robot did not exit within {timeout:g}s; console:\n{self.console[-3000:]}") from None
        with self._cond:
            self._cond.wait_for(lambda: self._done, 5)
        wall = time.monotonic() - self.started
        return read_results(RobotRun(self.cmd, self.proc.returncode, wall, self.console, "", self.outdir))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(5)


class OwnBackend(BackendProcess):
    """``python -m reference_backend --port 0`` started by a test, with known secrets and a
    clean environment; everything it printed is in ``log`` (``lines``)."""

    def __init__(self, jwt_secret: str, simulation_key: str, *args: str, log: Path) -> None:
        super().__init__(think_delay=0.005, jwt_secret=jwt_secret, simulation_key=simulation_key,
                         extra_args=list(args), log_file=log, env=clean_env())
        self.start()

    @property
    def lines(self) -> list[str]:
        return self.log_file.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
