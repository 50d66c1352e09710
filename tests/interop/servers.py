"""Real third-party agent servers as child processes on free loopback ports, for the tests.

``LangGraphServer(venv, graph_dir)`` runs ``langgraph dev`` on a copy of ``graph_dir``;
``PydanticAIServer(venv)`` runs our thin WebSocket front of Pydantic AI's AG-UI adapter.
Both are context managers:

    with LangGraphServer(venv, LANGGRAPH_DIR, env={"E2E_JWT_SECRET": secret}) as server:
        server.ws_url("/threads/<id>/stream/events")

``__enter__`` starts the process in its own process group, waits until the server answers
its health URL ON THE PORT IT WAS GIVEN (a condition, polled, with a generous deadline) and
returns it; on any failure it stops the process group and raises ``ServerStartError`` with
the log's tail. ``__exit__`` (also on an exception or KeyboardInterrupt) stops the whole
process group: SIGTERM, a grace period, then SIGKILL, and reaps every descendant. An
``atexit`` hook stops whatever is still running if the interpreter exits without leaving
the ``with`` block, and on Linux each server is started with PR_SET_PDEATHSIG, so it gets
SIGTERM even when the test process is killed outright. Servers bind 127.0.0.1 only; their
output goes to a log file.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path

from .venvs import venv_bin

HERE = Path(__file__).resolve().parent
LANGGRAPH_DIR = HERE / "langgraph"
PYDANTIC_AI_DIR = HERE / "pydantic_ai"
HOST = "127.0.0.1"
READY_TIMEOUT_S = 120.0   # langgraph dev is ready in ~3 s idle, 6+ s under load; a busy CI may be slower
STOP_GRACE_S = 10.0


class ServerStartError(RuntimeError):
    """The server did not become ready on its port; the message holds the reason and log tail."""


def free_port(host: str = HOST) -> int:
    """A TCP port that is free on ``host`` right now (the kernel's choice for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


_LIVE: weakref.WeakSet[ServerProcess] = weakref.WeakSet()

# Runs first in the child: asks Linux to SIGTERM the server when the process that started
# it dies (also by SIGTERM or SIGKILL, where no atexit hook runs), then becomes the server.
# The flag survives exec. It fires when the starting *thread* ends: start servers from a
# thread that outlives them (the main thread, as pytest fixtures do), or pass
# die_with_parent=False.
_LAUNCHER = """
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
if os.getppid() != int(sys.argv[1]):
    sys.exit("the process that started this server is gone")
os.execv(sys.argv[2], sys.argv[2:])
"""


@atexit.register
def _stop_all_at_exit() -> None:
    for server in list(_LIVE):
        server.stop()


class ServerProcess:
    """A server started as ``argv`` in its own process group, ready when ``health_path`` says so.

    Subclasses set ``name`` and ``health_path`` and may override ``_healthy(status, body)``
    and ``_check_log(text)`` (to fail fast on a message that means it will never be ready)."""

    name = "server"
    health_path = "/health"

    def __init__(self, argv: list[str], *, port: int, cwd: Path, env: dict[str, str] | None = None,
                 log_path: Path | None = None, ready_timeout: float = READY_TIMEOUT_S,
                 die_with_parent: bool = True):
        self.argv = [str(a) for a in argv]
        self.die_with_parent = die_with_parent
        self.port = port
        self.cwd = Path(cwd)
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self._own_log_dir: str | None = None
        if log_path is None:
            self._own_log_dir = tempfile.mkdtemp(prefix=f"agentkit-{self.name}-log-")
            log_path = Path(self._own_log_dir) / "server.log"
        self.log_path = Path(log_path)
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen | None = None
        self.ready_seconds: float | None = None
        self._log_file = None

    # -- URLs ------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def http_url(self, path: str = "") -> str:
        return self.base_url + path

    def ws_url(self, path: str = "") -> str:
        return f"ws://{HOST}:{self.port}{path}"

    # -- lifecycle -------------------------------------------------------------------
    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self):
        """Start the process and wait until it is ready; returns self. Stops it on any failure."""
        if self.proc is not None:
            raise RuntimeError(f"{self.name} already started")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        started = time.monotonic()
        try:
            argv = self.argv
            if self.die_with_parent and sys.platform.startswith("linux"):
                argv = [sys.executable, "-c", _LAUNCHER, str(os.getpid()), *self.argv]
            self.proc = subprocess.Popen(argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True)
            _LIVE.add(self)
            self._wait_ready(started)
        except BaseException:  # also KeyboardInterrupt during the wait
            self.stop()
            raise
        self.ready_seconds = time.monotonic() - started
        return self

    def _wait_ready(self, started: float) -> None:
        deadline = started + self.ready_timeout
        last = "no answer yet"
        while True:
            code = self.proc.poll()
            if code is not None:
                raise ServerStartError(f"{self.name} exited with code {code} before it was ready on port "
                                       f"{self.port}\n{self.log_tail()}")
            problem = self._check_log(self.log_text())
            if problem:
                raise ServerStartError(f"{self.name}: {problem}\n{self.log_tail()}")
            status, body = _http_get(self.http_url(self.health_path), timeout=2.0)
            if status is not None:
                last = f"HTTP {status} {body[:200]!r}"
                if self._healthy(status, body):
                    self._check_listener()
                    return
            else:
                last = body
            if time.monotonic() > deadline:
                raise ServerStartError(f"{self.name} not ready on {self.http_url(self.health_path)} after "
                                       f"{self.ready_timeout:.0f} s (last: {last})\n{self.log_tail()}")
            time.sleep(0.1)  # poll interval of the readiness condition above

    def _healthy(self, status: int, body: str) -> bool:
        return status == 200

    def _check_log(self, text: str) -> str | None:
        return None

    def _check_listener(self) -> None:
        """The answer must come from our process tree: something else may hold the port."""
        try:
            import psutil
        except ImportError:  # pragma: no cover - psutil is a project requirement
            return
        try:
            tree = [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(recursive=True)]
            for proc in tree:
                for conn in proc.net_connections(kind="tcp"):
                    if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == self.port:
                        return
        except psutil.Error:
            return  # the process went away: the next poll reports it
        raise ServerStartError(f"{self.name}: port {self.port} answers, but not from our process "
                               f"{self.proc.pid}; something else holds it\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop the whole process group (SIGTERM, grace period, SIGKILL); idempotent."""
        proc = self.proc
        if proc is not None:
            _stop_group(proc, STOP_GRACE_S)
            _LIVE.discard(self)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- log -------------------------------------------------------------------------
    def log_text(self) -> str:
        try:
            return _ANSI.sub("", self.log_path.read_text(errors="replace"))
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        tail = self.log_text().strip().splitlines()[-lines:]
        return f"--- last {len(tail)} lines of {self.log_path} ---\n" + "\n".join(tail)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _http_get(url: str, timeout: float) -> tuple[int | None, str]:
    """(status, body) of a GET, or (None, why) when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback only
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        return None, f"{type(exc).__name__}: {exc}"


def _stop_group(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM the process group, wait up to ``grace`` s, then SIGKILL it; reap stragglers."""
    descendants = []
    with contextlib.suppress(Exception):
        import psutil
        descendants = psutil.Process(proc.pid).children(recursive=True)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # anything left in the group
    for child in descendants:  # a child that left the group (setsid) is still ours
        with contextlib.suppress(Exception):
            child.kill()
            child.wait(timeout=grace)


# -- LangGraph Agent Server ------------------------------------------------------------

_PORT_MOVED = re.compile(r"Port (\d+) is already in use, using port (\d+) instead")


class LangGraphServer(ServerProcess):
    """``langgraph dev`` on a private copy of ``graph_dir``, on ``port`` (default: a free one).

    The copy keeps the repository clean: the server writes ``.langgraph_api/`` into its
    working folder (even with persistence disabled); the copy is deleted on stop. The log
    goes to ``log_path`` (default: a temporary folder that is kept, for reading after a
    failure). ``env`` adds to the environment (``E2E_JWT_SECRET`` for ``auth.py``).
    ``langgraph dev`` silently moves to another port when ours is taken: that is detected
    from its log and fails the start, naming both ports."""

    name = "langgraph"
    health_path = "/ok"

    def __init__(self, venv: Path, graph_dir: Path = LANGGRAPH_DIR, port: int | None = None, *,
                 env: dict[str, str] | None = None, n_jobs_per_worker: int = 4, log_path: Path | None = None,
                 ready_timeout: float = READY_TIMEOUT_S, config: str = "langgraph.json",
                 die_with_parent: bool = True):
        self.venv = Path(venv)
        self.graph_dir = Path(graph_dir)
        self.workdir: Path | None = None  # the private copy, made by start()
        port = port or free_port()
        argv = [venv_bin(self.venv, "langgraph"), "dev", "--no-browser", "--no-reload", "--host", HOST,
                "--port", str(port), "--n-jobs-per-worker", str(n_jobs_per_worker), "--config", config]
        server_env = {
            "LANGGRAPH_NO_VERSION_CHECK": "1",      # no version check against the package index
            "LANGGRAPH_CLI_NO_ANALYTICS": "1",
            "LANGSMITH_TRACING": "false",
            "LANGCHAIN_TRACING_V2": "false",
            "LANGGRAPH_DISABLE_FILE_PERSISTENCE": "true",  # as langgraph.json's disable_persistence says
            "LOG_COLOR": "false",
            **(env or {}),
        }
        super().__init__(argv, port=port, cwd=self.graph_dir, env=server_env, log_path=log_path,
                         ready_timeout=ready_timeout, die_with_parent=die_with_parent)

    def start(self):
        """Copy the graph folder to a private working folder, then start there."""
        self.workdir = Path(tempfile.mkdtemp(prefix="agentkit-langgraph-"))
        shutil.copytree(self.graph_dir, self.workdir, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("transcripts", "__pycache__", ".langgraph_api", "*.md",
                                                      "requirements*.txt"))
        self.cwd = self.workdir
        try:
            return super().start()  # stops the process itself if the start fails
        except BaseException:
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise

    def _healthy(self, status: int, body: str) -> bool:
        if status != 200:
            return False
        try:
            return json.loads(body).get("ok") is True
        except (ValueError, AttributeError):
            return False

    def _check_log(self, text: str) -> str | None:
        moved = _PORT_MOVED.search(text)
        if moved:
            return (f"port {moved.group(1)} was taken, and langgraph dev silently moved to port "
                    f"{moved.group(2)}; it must serve on the port it was given")
        return None

    def stop(self) -> None:
        """Stop the process group, then delete the private copy of the graph folder."""
        super().stop()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


# -- Pydantic AI over AG-UI ------------------------------------------------------------

class PydanticAIServer(ServerProcess):
    """``pydantic_ai/server.py`` (a Pydantic AI agent behind our WebSocket ``/ws``) on ``port``.

    ``failing_tool=True`` starts the variant whose tool raises. ``env`` adds to the
    environment (``E2E_JWT_SECRET``)."""

    name = "pydantic_ai"
    health_path = "/health"

    def __init__(self, venv: Path, port: int | None = None, *, failing_tool: bool = False,
                 env: dict[str, str] | None = None, log_path: Path | None = None,
                 ready_timeout: float = READY_TIMEOUT_S, die_with_parent: bool = True):
        self.venv = Path(venv)
        self.failing_tool = failing_tool
        port = port or free_port()
        argv = [venv_bin(self.venv, "python"), PYDANTIC_AI_DIR / "server.py", "--host", HOST, "--port", str(port)]
        if failing_tool:
            argv.append("--failing-tool")
        server_env = {"PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
        super().__init__(argv, port=port, cwd=PYDANTIC_AI_DIR, env=server_env, log_path=log_path,
                         ready_timeout=ready_timeout, die_with_parent=die_with_parent)

    def _healthy(self, status: int, body: str) -> bool:
        if status != 200:
            return False
        try:
            return json.loads(body).get("status") == "healthy"
        except (ValueError, AttributeError):
            return False
