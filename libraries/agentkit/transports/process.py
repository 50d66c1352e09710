"""Start and stop the embedded reference backend as a child process.

A child process, not a thread: its CPU never skews the client's timings and a crash in
it cannot take Robot down. It binds port 0 and reports its URL on one stdout line; we
wait for that line (not a sleep), then drain its output to a log file so a full pipe
can never stall it. Every started process is stopped at interpreter exit too."""

from __future__ import annotations

import atexit
import ctypes
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[3]
READY = re.compile(r"listening on (https?://\S+)")
_running: set["BackendProcess"] = set()
_lock = threading.Lock()


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM when the process that started it dies, even by SIGKILL
    (a CI timeout, the OOM killer), so no backend outlives its Robot run. The kernel ties
    this to the *thread* that spawned it: start backends from a thread that lives as long
    as they should (Robot's main thread, a pytest fixture)."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))


class BackendStartError(RuntimeError):
    """The reference backend did not come up; the message holds its last output."""


class BackendProcess:
    """One reference backend child process.

    ``faults``: fault-mode names (docs/protocol.md); ``think_delay`` seconds between events;
    ``tools``: tool calls per run. ``jwt_secret``/``simulation_key`` default to fresh
    random values per process, so no development default is ever relied on. ``env``: the
    environment the process starts from (default: this process's).

    ``popen`` starts the command (``subprocess.Popen``); the project's own tests put in one
    that forks it from a process with the backend's imports already done."""

    popen = staticmethod(subprocess.Popen)

    def __init__(self, faults: list[str] | tuple[str, ...] = (), think_delay: float = 0.01, tools: int = 1,
                 jwt_secret: str | None = None, simulation_key: str | None = None,
                 log_file: str | Path | None = None, host: str = "127.0.0.1",
                 extra_args: list[str] | None = None, detached: bool = False,
                 env: dict[str, str] | None = None) -> None:
        self.faults = [f for f in faults if f]
        self.think_delay = think_delay
        self.tools = tools
        self.jwt_secret = jwt_secret or secrets.token_urlsafe(32)
        self.simulation_key = simulation_key or secrets.token_urlsafe(24)
        self.log_file = Path(log_file) if log_file else None
        self.host = host
        self.extra_args = list(extra_args or [])
        # detached: shared by several test processes (pabot), so it must outlive the one that
        # started it; it writes straight to its log file and stops with --exit-with-pid.
        self.detached = detached
        self.base_env = env
        self.url: str | None = None
        self.proc: subprocess.Popen | None = None
        self._drain: threading.Thread | None = None
        self._ready = threading.Event()
        self._tail: list[str] = []

    @property
    def ws_url(self) -> str:
        from ..wire.spec import default_ws_url  # here: the wire package imports Robot, this module need not

        return default_ws_url(self.url)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "reference_backend", "--host", self.host, "--port", "0",
               "--think-delay", str(self.think_delay), "--tools", str(self.tools)]
        for fault in self.faults:
            cmd += ["--fault", fault]
        return cmd + self.extra_args

    def start(self, timeout: float = 60.0) -> "BackendProcess":
        """Launch the process and wait until it reports its URL."""
        return self.launch().wait_ready(timeout)

    def launch(self) -> "BackendProcess":
        """Start the process and return at once; :meth:`wait_ready` waits for its URL.
        Lets the caller do other work while the backend boots (a quarter of a second)."""
        env = dict(os.environ if self.base_env is None else self.base_env, E2E_JWT_SECRET=self.jwt_secret,
                   E2E_OAUTH_SIMULATION_KEY=self.simulation_key, PYTHONUNBUFFERED="1")
        env.pop("REFERENCE_BACKEND_FAULTS", None)  # faults come from this object only
        if self.detached:
            return self._launch_detached(env)
        self.proc = self.popen(self.command(), cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                               start_new_session=True,
                               preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        with _lock:
            _running.add(self)
        self._drain = threading.Thread(target=self._read_output, daemon=True,
                                       name=f"reference-backend-{self.proc.pid}")
        self._drain.start()
        return self

    def _launch_detached(self, env: dict) -> "BackendProcess":
        if self.log_file is None:
            import tempfile

            self.log_file = Path(tempfile.mkstemp(prefix="reference-backend-", suffix=".log")[1])
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open(_log_mode(self.log_file), encoding="utf-8") as log:
            self.proc = subprocess.Popen(self.command(), cwd=PROJECT_ROOT, env=env, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self._drain = threading.Thread(target=self._watch_log, daemon=True, name=f"reference-backend-{self.proc.pid}")
        self._drain.start()
        return self

    def _watch_log(self) -> None:
        """The ready line of a detached backend, from its log file (nothing signals a file write)."""
        try:
            with self.log_file.open(encoding="utf-8", errors="replace") as log:
                while self.url is None and self.proc.poll() is None:
                    line = log.readline()
                    if not line:
                        time.sleep(0.01)
                        continue
                    self._tail = (self._tail + [line])[-50:]
                    match = READY.search(line)
                    if match:
                        self.url = match.group(1).rstrip("/")
                self._tail += log.readlines()[-20:]
        finally:
            self._ready.set()

    def wait_ready(self, timeout: float = 60.0) -> "BackendProcess":
        """Wait for the ready line of a launched process (it boots in about 0.3 s; the 60 s default only
        bounds a hang on a loaded machine); stop it and raise if it never comes."""
        if not self._ready.wait(timeout) or self.url is None:
            self.stop()
            tail = "".join(self._tail[-20:]) or "<no output>"
            raise BackendStartError(f"Reference backend did not report ready within {timeout:g}s "
                                    f"(command: {' '.join(self.command())}). Last output:\n{tail}")
        return self

    def _read_output(self) -> None:
        # line-buffered: the log can be followed (and read by tests) while the backend runs
        log = self.log_file.open(_log_mode(self.log_file), encoding="utf-8", buffering=1) if self.log_file else None
        try:
            for line in self.proc.stdout:
                if log:
                    log.write(line)
                else:
                    self._tail = (self._tail + [line])[-50:]
                if self.url is None:
                    match = READY.search(line)
                    if match:
                        self.url = match.group(1).rstrip("/")
                        self._ready.set()
                    else:
                        self._tail = (self._tail + [line])[-50:]
        finally:
            self._ready.set()  # process ended before ready: let wait_ready() fail at once
            if log:
                log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self) -> None:
        """Send SIGTERM and return at once; :meth:`stop` (or interpreter exit) waits for the exit."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait, SIGKILL if it will not go. Returns the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            self.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if self._drain is not None:
            self._drain.join(5)
        with _lock:
            _running.discard(self)
        return proc.returncode

    def __enter__(self) -> "BackendProcess":
        return self.start() if self.proc is None else self

    def __exit__(self, *exc) -> None:
        self.stop()


def stop_all() -> None:
    with _lock:
        running = list(_running)
    for proc in running:
        proc.stop()


atexit.register(stop_all)


_logs_opened: set[Path] = set()


def _log_mode(path: Path) -> str:
    """A log starts empty for each run, as Robot's own outputs do: emptied on its first use
    in this process; every writer appends (a second backend of the same process, after a
    dropped early launch, must not overwrite the first one's lines)."""
    path = path.resolve()
    with _lock:
        if path not in _logs_opened:
            _logs_opened.add(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("", encoding="utf-8")
    return "a"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (one we may not signal counts; a zombie has ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):  # no /proc (not Linux): kill(0) is all we know
        return True


def wait_until(predicate, timeout: float, interval: float = 0.02) -> bool:
    """Poll a condition until true or timeout (for conditions no event signals, e.g. a port closing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
