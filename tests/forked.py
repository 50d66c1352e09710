"""Test-only: start ``python -m <module>`` commands from a process that has already imported
their heavy dependencies, so the test suite's ~200 reference backends and ~100 robot runs
do not each pay 0.3-0.6 s of CPU for the same imports (on 2 cores the suite is CPU-bound).

The preloading process is :mod:`multiprocessing`'s forkserver: each command runs in a fresh
child forked from it (its own pid, session, environment, working folder and file
descriptors; nothing of an earlier command is left in it), then ``runpy`` runs the module as
``python -m`` would. :class:`ForkedPopen` answers like :class:`subprocess.Popen` for what
the tests and :class:`agentkit.transports.process.BackendProcess` use.

Used where a test judges what a command does, not how it starts: the README commands, the
signal and clean-up tests, pabot and the backend's own process tests start real processes.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from multiprocessing import reduction

# Third-party modules the kit and the reference backend import (not the kit's own
# modules: importing TargetConfig starts a backend).
PRELOAD = [
    "robot.api", "robot.run", "robot.running", "robot.libraries.BuiltIn", "robot.libraries.Collections",
    "robot.reporting", "robot.result", "RequestsLibrary", "requests", "jwt", "jsonschema", "rfc3339_validator",
    "websocket", "websockets.asyncio.client", "websockets.sync.client", "yaml", "psutil", "assertionengine",
    "starlette.applications", "starlette.routing", "starlette.responses", "uvicorn", "uvicorn.config",
    "ag_ui.core", "ag_ui.encoder",
]
_context: multiprocessing.context.ForkServerContext | None = None
_lock = threading.Lock()
_base_path: list[str] = []


def _interpreter_path() -> list[str]:
    """``sys.path`` of a plain ``python -c`` here, without PYTHONPATH (pytest's own additions
    must not reach the commands: a robot run finds the kit the way a user's does)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", "import sys, json; print(json.dumps(sys.path[1:]))"],
                         env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def _ctx() -> multiprocessing.context.ForkServerContext:
    global _context
    with _lock:
        if _context is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(PRELOAD)
            _context = ctx
            _base_path.extend(_interpreter_path())
        return _context


class _Fd:
    """A file descriptor handed to the forked child (duplicated into it by the forkserver)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self):
        return _Fd._received, (reduction.DupFd(self.fd),)

    @staticmethod
    def _received(dup) -> int:
        return dup.detach()


def _die_with_parent() -> None:
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG


def _fresh_interpreter_state() -> None:
    """For a child forked from a process that has run code (a robot run): drop what that
    process set up and a new interpreter would not have (exit handlers, logging handlers,
    signal handlers)."""
    import logging

    atexit._clear()
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _child(module: str, args: list[str], cwd: str, env: dict[str, str], fds: tuple[int, int, int],
           base_path: list[str], inherited: bool, started: int) -> None:
    import fcntl
    import runpy

    if inherited:
        _fresh_interpreter_state()
    os.setsid()
    parent = os.getppid()
    _die_with_parent()  # the process that forked this one ends with the test; so does this child
    if os.getppid() != parent:  # it ended before the line above took effect
        os._exit(1)
    os.write(started, b"1")  # the starter returns now: a signal to this process group reaches it
    # The three standard descriptors, and no other (as close_fds gives): an inherited copy of
    # the forkserver's pipes would keep it, and so this child, alive after the test process died.
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 3) for fd in fds]
    for target, fd in enumerate(high):
        os.dup2(fd, target)
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    multiprocessing.current_process().daemon = False   # it may start processes of its own
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    # sys.path as ``python -m`` builds it: the working folder, PYTHONPATH, the interpreter's own.
    extra = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:] = [cwd, *extra, *base_path]
    _base_path[:] = base_path   # for what this child forks in turn
    _standard_streams(env)
    sys.argv = [module, *args]
    if module == "robot":
        _fork_embedded_backends(cwd)
    code = 0
    interrupted = False
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        import traceback

        traceback.print_exc()
        interrupted = True
    except BaseException:  # noqa: BLE001 - reported as python would, then exit 1
        import traceback

        traceback.print_exc()
        code = 1
    # What the interpreter does at exit: wait for non-daemon threads, run atexit handlers
    # (the kit's stop every backend it started there), flush.
    threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    if interrupted:  # python ends by SIGINT after an uncaught KeyboardInterrupt (exit code -2)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(code)


def _standard_streams(env: dict[str, str]) -> None:
    """sys.stdin/stdout/stderr on descriptors 0-2 as a new interpreter builds them: buffered,
    the encoding from PYTHONIOENCODING or the locale's, stderr with backslashreplace, stdout
    and stderr written through with PYTHONUNBUFFERED."""
    import locale

    encoding, _, errors = env.get("PYTHONIOENCODING", "").partition(":")
    encoding = encoding or locale.getpreferredencoding(False)
    unbuffered = bool(env.get("PYTHONUNBUFFERED"))
    sys.stdin = open(0, "r", encoding=encoding, errors=errors or "strict", closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", encoding=encoding, errors=errors or "strict", closefd=False,  # noqa: SIM115
                      buffering=1 if unbuffered else -1)
    sys.stderr = open(2, "w", encoding=encoding, errors="backslashreplace", closefd=False, buffering=1)  # noqa: SIM115
    if unbuffered:
        sys.stdout.reconfigure(write_through=True)
        sys.stderr.reconfigure(write_through=True)
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr


def _fork_embedded_backends(cwd: str) -> None:
    """In a forked robot run: the kit's embedded backend forks from this process too (its
    imports are preloaded here), instead of a fresh ``python -m reference_backend``."""
    libraries = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "libraries")
    sys.path.insert(0, libraries)
    try:
        from agentkit.transports.process import BackendProcess
    finally:
        sys.path.remove(libraries)

    def popen(cmd, **kwargs):
        # A fork while another thread runs could copy a lock it holds: a real process then.
        if threading.active_count() > 1:
            return subprocess.Popen(cmd, **kwargs)
        return InRunFork(cmd, **kwargs)

    BackendProcess.popen = staticmethod(popen)


def module_of(cmd: list[str]) -> str | None:
    """``[python, "-m", "robot", ...]`` -> ``"robot"``; ``None`` for any other command."""
    if len(cmd) >= 3 and cmd[0] == sys.executable and cmd[1] == "-m":
        return cmd[2]
    return None


class _Plumbing:
    """Popen's ``stdin``/``stdout``/``stderr`` arguments as the child's three descriptors and
    the parent's ends (``PIPE``, ``DEVNULL``, ``STDOUT``, a file object or descriptor, ``None``)."""

    def __init__(self, stdin, stdout, stderr) -> None:
        self.to_close: list[int] = []   # the parent's copies of the child's ends
        self.pipes: dict[str, int] = {}  # "out"/"err" -> read end kept by the parent
        child_in = self._end("in", subprocess.DEVNULL if stdin is None else stdin, 0)
        child_out = self._end("out", stdout, 1)
        child_err = child_out if stderr == subprocess.STDOUT else self._end("err", stderr, 2)
        self.child = (child_in, child_out, child_err)
        # The child writes a byte here once it leads its own session (Popen with
        # start_new_session returns only then too).
        self.started_r, self.started_w = os.pipe()

    def _end(self, name: str, spec, default: int) -> int:
        if spec is None:
            return default
        if spec == subprocess.PIPE:
            if name == "in":
                raise ValueError("stdin=PIPE is not supported here")
            r, w = os.pipe()
            self.pipes[name] = r
            self.to_close.append(w)
            return w
        if spec == subprocess.DEVNULL:
            fd = os.open(os.devnull, os.O_RDWR)
            self.to_close.append(fd)
            return fd
        return spec.fileno() if hasattr(spec, "fileno") else spec

    def parent_streams(self, text: bool):
        """Wait until the child leads its session; close the parent's copies of the child's
        ends; the parent's ends as file objects (text: the locale's encoding, strict, as
        ``Popen(text=True)``)."""
        import select

        os.close(self.started_w)
        try:
            if select.select([self.started_r], [], [], 60)[0]:
                os.read(self.started_r, 1)  # b"" if the child died first: nothing to wait for then
        finally:
            os.close(self.started_r)
        for fd in self.to_close:
            os.close(fd)
        kwargs = {"mode": "r"} if text else {"mode": "rb"}
        return tuple(open(self.pipes[n], **kwargs) if n in self.pipes else None  # noqa: SIM115 - closed by readers
                     for n in ("out", "err"))

    def abandon(self) -> None:
        """The child was never started: close every descriptor made for it."""
        for fd in [*self.to_close, *self.pipes.values(), self.started_r, self.started_w]:
            os.close(fd)


class _ChildProcess:
    """What :class:`subprocess.Popen` offers that the tests and ``BackendProcess`` use:
    ``pid``, ``args``, ``stdout``/``stderr``, ``returncode``, ``poll``, ``wait``,
    ``communicate``, ``send_signal``, ``terminate``, ``kill``."""

    pid: int
    # Options whose effect the child has anyway: its own session, only descriptors 0-2, and
    # death with its parent (the one preexec_fn the kit passes).
    _ALWAYS = ("start_new_session", "close_fds", "preexec_fn")

    def __init__(self, cmd: list[str], options: dict) -> None:
        if module_of(cmd) is None:
            raise ValueError(f"only 'python -m <module>' commands can be forked, not {cmd!r}")
        unknown = [k for k, v in options.items() if k not in self._ALWAYS or v is False]
        if unknown:
            raise TypeError(f"forked commands do not support {unknown}; start a real process for them")
        self.args = cmd
        self.returncode: int | None = None
        self.stdout = self.stderr = None
        self._readers: list[threading.Thread] | None = None
        self._output: dict[str, object] = {}
        self._wait_lock = threading.Lock()   # one thread reaps; the others read returncode

    def _exitcode(self, timeout: float | None) -> int | None:
        """The exit code once the child has ended, waiting up to ``timeout`` (``None``: no limit)."""
        raise NotImplementedError

    def poll(self) -> int | None:
        return self._reap(0)

    def wait(self, timeout: float | None = None) -> int:
        code = self._reap(timeout)
        if code is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return code

    def _reap(self, timeout: float | None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if self._wait_lock.acquire(timeout=-1 if left is None else left):
                try:
                    if self.returncode is None:
                        self.returncode = self._exitcode(left)
                finally:
                    self._wait_lock.release()
            if deadline is not None and time.monotonic() >= deadline:
                break
        return self.returncode

    def communicate(self, timeout: float | None = None):
        """Like Popen's: ``TimeoutExpired`` when the child or its output is not done within
        ``timeout``; it may then be called again (the readers go on)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._readers is None:
            self._readers = [threading.Thread(target=self._read, args=(name, stream), daemon=True)
                             for name, stream in (("out", self.stdout), ("err", self.stderr)) if stream is not None]
            for reader in self._readers:
                reader.start()
        self.wait(timeout)
        for reader in self._readers:
            reader.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if reader.is_alive():  # a grandchild still holds the pipe open
                raise subprocess.TimeoutExpired(self.args, timeout)
        return self._output.get("out"), self._output.get("err")

    def _read(self, name: str, stream) -> None:
        with stream:
            self._output[name] = stream.read()

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class ForkedPopen(_ChildProcess):
    """``python -m <module> ...`` in a child of the preloading forkserver. The child leads its
    own session (as with ``start_new_session=True``)."""

    def __init__(self, cmd: list[str], cwd=None, env=None, stdin=None, stdout=None, stderr=None,
                 text: bool = False, **options) -> None:
        super().__init__(cmd, options)
        plumbing = _Plumbing(stdin, stdout, stderr)
        env = dict(os.environ if env is None else env)
        try:
            self._process = _ctx().Process(target=_child, daemon=True,
                                           args=(module_of(cmd), cmd[3:], str(cwd or os.getcwd()), env,
                                                 tuple(_Fd(fd) for fd in plumbing.child), _base_path, False,
                                                 _Fd(plumbing.started_w)))
            self._process.start()
        except BaseException:
            plumbing.abandon()
            raise
        # Reaped by this object only: multiprocessing polls every child it knows of from any
        # thread that starts a process, and two readers of one child's status get 255.
        multiprocessing.process._children.discard(self._process)
        self.pid = self._process.pid
        _started.add(self)
        self.stdout, self.stderr = plumbing.parent_streams(text)

    def _exitcode(self, timeout: float | None) -> int | None:
        from multiprocessing.connection import wait

        if wait([self._process.sentinel], timeout):
            code = self._process._popen.poll()
            if code is not None:
                _started.discard(self)
            return code
        return None


_started: set[ForkedPopen] = set()


@atexit.register
def _stop_started() -> None:
    """At the test process's exit, whatever forked command still runs: SIGTERM to its process
    group, up to 5 s together, then SIGKILL (as a killed parent's children get by PDEATHSIG)."""
    left = [p for p in list(_started) if p.poll() is None]
    for proc in left:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    for proc in left:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


class InRunFork(_ChildProcess):
    """``python -m <module> ...`` in a plain ``os.fork()`` of this process, with no descriptor
    but its three standard ones (as ``close_fds`` gives) and a fresh interpreter's exit,
    logging and signal handlers. A forked robot run starts its embedded backend this way."""

    def __init__(self, cmd: list[str], cwd=None, env=None, stdin=None, stdout=None, stderr=None,
                 text: bool = False, **options) -> None:
        super().__init__(cmd, options)
        plumbing = _Plumbing(stdin, stdout, stderr)
        env = dict(os.environ if env is None else env)
        cwd = str(cwd or os.getcwd())
        try:
            pid = os.fork()
        except BaseException:
            plumbing.abandon()
            raise
        if pid == 0:  # the child: never returns
            try:
                _child(module_of(cmd), cmd[3:], cwd, env, plumbing.child, list(_base_path), True,
                       plumbing.started_w)
            finally:
                os._exit(70)
        self.pid = pid
        self.stdout, self.stderr = plumbing.parent_streams(text)
        try:
            self._pidfd: int | None = os.pidfd_open(pid)
        except (AttributeError, OSError):
            self._pidfd = None

    def _exitcode(self, timeout: float | None) -> int | None:
        import select

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                if self._pidfd is not None:
                    os.close(self._pidfd)
                    self._pidfd = None
                return os.waitstatus_to_exitcode(status)
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            if self._pidfd is not None:
                select.select([self._pidfd], [], [], left)   # readable when the child ends
            else:
                time.sleep(0.01 if left is None else min(0.01, left))


def enabled() -> bool:
    """Forking is on unless ``AGENTKIT_TESTS_REAL_PROCESSES=1`` (to run every command as a
    real process, e.g. when a forked run is suspected of behaving differently)."""
    return os.environ.get("AGENTKIT_TESTS_REAL_PROCESSES", "") not in ("1", "true", "yes")


def popen(cmd: list[str], **kwargs):
    """``subprocess.Popen(cmd, **kwargs)``, forked from the preloading process when ``cmd`` is
    ``python -m <module>`` and forking is :func:`enabled`."""
    if enabled() and module_of(cmd) is not None:
        return ForkedPopen(cmd, **kwargs)
    return subprocess.Popen(cmd, **kwargs)


def run(cmd: list[str], *, timeout: float | None = None, capture_output: bool = False, text: bool = False,
        **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run`` for :func:`popen` (``capture_output``, ``text``, ``timeout``; a run over
    ``timeout`` is killed with everything it started and ``TimeoutExpired`` raised)."""
    if capture_output:
        kwargs.update(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    kwargs.setdefault("start_new_session", True)
    proc = popen(cmd, text=text, **kwargs)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def finish(proc, timeout: float) -> tuple:
    """``proc.communicate(timeout=timeout)`` for a command the test waits on; past the timeout
    its process group is killed and ``AssertionError`` raised: a hang, not a failure by a
    budget, named with the command and the tail of what it printed."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, err = proc.communicate()
        raise AssertionError(f"{' '.join(map(str, proc.args))} did not finish within {timeout:g}s (a hang, not a "
                             f"failure by budget)\n--- output tail ---\n{(out or '')[-3000:]}\n{(err or '')[-2000:]}"
                             ) from None


def kill_group(proc) -> None:
    """SIGKILL to the process group a command leads; nothing if it is gone already (a forked
    child is reaped by the forkserver at once, so its group can vanish before this)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
