"""One dedicated virtual environment per real agent server, built from a pinned file and cached.

``ensure_venv(name, requirements_file)`` returns the path of a ready venv, or a
``SkipReason`` when, and only when, the package index cannot be reached. Every other
failure (a pin that does not exist, a resolver conflict, a broken build) raises
``VenvBuildError`` with pip's own words: a broken pin must fail the tests, never skip them.

The cache lives under ``$AGENTKIT_INTEROP_CACHE`` (default
``$XDG_CACHE_HOME/agentkit-interop``, else ``~/.cache/agentkit-interop``), one folder per
server and key: ``<name>-<sha256 of the requirements file and the Python version>``. A
venv is reused only when its marker file exists; the marker is written last, after pip
succeeded and the venv was checked, so a half-built venv is never reused (it is removed
and built again). An exclusive file lock per folder keeps two processes (pytest-xdist
workers, CI and a developer) from building the same venv at once: the second waits, then
finds the marker.

Build times are kept apart from test time: each call returns quickly on a cache hit, and
``builds()`` lists what this process built or reused and how long the first build took
(read back from the marker). ``python -m tests.interop.venvs build`` builds every server's
venv up front and prints the time each took; CI calls it before pytest.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE_ENV = "AGENTKIT_INTEROP_CACHE"
MARKER = "agentkit-interop-ready.json"
LOCK_WAIT_SECONDS = 1800.0     # another process may be building a large venv on a slow machine
PROBE_TIMEOUT_SECONDS = 20     # pip's socket timeout for the reachability probe
INSTALL_TIMEOUT_SECONDS = 1800

#: The real servers this folder knows, by name: their pinned requirements files.
SERVERS: dict[str, Path] = {
    "langgraph": HERE / "langgraph" / "requirements.txt",
    "pydantic_ai": HERE / "pydantic_ai" / "requirements.txt",
}

# Words pip and urllib3 print when the index cannot be reached at all (no route, no DNS,
# refused, timed out, proxy or TLS failure): the only failures that may become a skip.
_NETWORK_MARKERS = (
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Name or service not known",
    "nodename nor servname",
    "Network is unreachable",
    "No route to host",
    "Connection refused",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "Read timed out",
    "connection timed out",
    "ProxyError",
    "SSLError",
    "Max retries exceeded",
    "RemoteDisconnected",
    "Connection reset by peer",
)


class VenvBuildError(RuntimeError):
    """The venv could not be built although the package index answered: a real error."""


@dataclass(frozen=True)
class SkipReason:
    """Why a venv could not be built: the package index cannot be reached."""

    reason: str

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True)
class VenvBuild:
    """What one ``ensure_venv`` call found or did.

    ``build_seconds`` and ``size_bytes`` are those of the first build of this venv (read
    from its marker on a cache hit); ``built_now`` says whether this call built it, and
    ``waited_seconds`` how long it waited for another process that held the lock."""

    name: str
    path: str
    built_now: bool
    build_seconds: float
    size_bytes: int
    waited_seconds: float
    python: str
    requirements_sha256: str

    @property
    def size_mib(self) -> float:
        return self.size_bytes / 2**20


_BUILDS: dict[str, VenvBuild] = {}


def builds() -> list[VenvBuild]:
    """The venvs this process asked for, in order, each with its first build's time and size."""
    return list(_BUILDS.values())


def cache_root() -> Path:
    """The folder that holds every cached venv (created on demand)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "agentkit-interop"


def python_tag() -> str:
    """The interpreter a venv is built for: implementation, version and machine."""
    return f"{sys.implementation.name}-{platform.python_version()}-{platform.machine()}"


def venv_key(requirements_file: Path) -> str:
    """Hash of the pinned file's bytes and the interpreter: a change to either is a new venv."""
    digest = hashlib.sha256()
    digest.update(Path(requirements_file).read_bytes())
    digest.update(b"\0" + python_tag().encode())
    return digest.hexdigest()[:16]


def venv_path(name: str, requirements_file: Path, cache_dir: Path | None = None) -> Path:
    """Where the venv for this name and pinned file lives (whether built or not)."""
    return (cache_dir or cache_root()) / f"{name}-{venv_key(requirements_file)}"


def venv_bin(venv: Path, program: str) -> Path:
    """A program installed in the venv, e.g. ``venv_bin(venv, "langgraph")``."""
    return Path(venv) / "bin" / program


def first_pin(requirements_file: Path) -> str:
    """The first requirement line (``name[extra]==version``), used to probe the index."""
    for line in Path(requirements_file).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            return line
    raise VenvBuildError(f"{requirements_file} names no requirement")


def _read_marker(venv: Path) -> dict | None:
    marker = venv / MARKER
    if not marker.is_file() or not venv_bin(venv, "python").exists():
        return None
    try:
        return json.loads(marker.read_text())
    except (OSError, ValueError):
        return None


def _disk_usage(path: Path) -> int:
    """Bytes on disk, as ``du`` counts them (hard links once, symlinks not followed)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, dirs, files in os.walk(path):
        for entry in dirs + files:
            try:
                st = os.lstat(os.path.join(root, entry))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
    return total


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _pip(*args: str, timeout: float) -> subprocess.CompletedProcess:
    """Run the current interpreter's pip (its configuration, index and cache are the user's)."""
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def index_unreachable(requirements_file: Path) -> str | None:
    """Probe the package index: ``pip download --no-deps`` of the file's first pin, no cache.

    Returns why the index cannot be reached, or None when it answered (also when it answered
    that the pin does not exist: that is the caller's error, not a network problem)."""
    pin = first_pin(requirements_file)
    with tempfile.TemporaryDirectory(prefix="agentkit-interop-probe-") as dest:
        try:
            proc = _pip("download", "--no-deps", "--no-cache-dir", "--dest", dest,
                        "--timeout", str(PROBE_TIMEOUT_SECONDS), "--retries", "1", "--progress-bar", "off",
                        pin, timeout=PROBE_TIMEOUT_SECONDS * 6 + 60)
        except subprocess.TimeoutExpired:
            return f"the package index cannot be reached: 'pip download {pin}' did not finish"
    if proc.returncode == 0:
        return None
    output = proc.stdout + proc.stderr
    hits = [m for m in _NETWORK_MARKERS if m.lower() in output.lower()]
    if not hits:
        return None
    evidence = next((ln.strip() for ln in output.splitlines() if any(h.lower() in ln.lower() for h in hits)), hits[0])
    evidence = re.sub(r"^WARNING: Retrying \(Retry\(.*?\)\) after connection broken by ", "", evidence)
    return f"the package index cannot be reached (pip download {pin}: {evidence[:300]})"


@contextlib.contextmanager
def _exclusive(lock_path: Path, deadline_s: float):
    """Hold an exclusive ``flock`` on ``lock_path``; waits for another holder up to the deadline.

    Yields the seconds spent waiting. The kernel drops the lock if the holder dies."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    started = time.monotonic()
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() - started > deadline_s:
                    raise VenvBuildError(
                        f"another process held {lock_path} for more than {deadline_s:.0f} s") from None
                time.sleep(0.2)  # polling a lock another process holds; no event to wait on
        yield time.monotonic() - started
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _build(name: str, requirements_file: Path, venv: Path, log_path: Path) -> dict:
    """Create the venv and install the pins into it; returns the marker's content."""
    started = time.monotonic()
    if venv.exists():
        shutil.rmtree(venv)  # a half-built venv (no marker) from an interrupted build
    log_lines: list[str] = []

    def run(cmd: list[str], what: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_SECONDS,
                              stdin=subprocess.DEVNULL)
        log_lines.append(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}\n(exit {proc.returncode})\n")
        log_path.write_text("".join(log_lines))
        if proc.returncode != 0:
            unreachable = index_unreachable(requirements_file) if what == "pip install" else None
            if unreachable:
                raise _IndexUnreachable(unreachable)
            raise VenvBuildError(f"{what} failed for the {name} venv ({venv}); log: {log_path}\n"
                                 + _tail(proc.stdout + proc.stderr))
        return proc

    # The venv gets no pip of its own: the current interpreter's pip installs into it
    # (``pip --python``), so the probe and the install read the same configuration.
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], "python -m venv")
    py = str(venv_bin(venv, "python"))
    run([sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "--python", py,
         "install", "--progress-bar", "off", "-r", str(requirements_file)], "pip install")
    check = run([sys.executable, "-m", "pip", "--disable-pip-version-check", "--python", py, "check"], "pip check")
    freeze = run([sys.executable, "-m", "pip", "--disable-pip-version-check", "--python", py,
                  "freeze", "--all"], "pip freeze")
    (venv / "freeze.txt").write_text(freeze.stdout)
    seconds = time.monotonic() - started
    return {
        "name": name,
        "requirements_file": str(requirements_file),
        "requirements_sha256": hashlib.sha256(Path(requirements_file).read_bytes()).hexdigest(),
        "python": python_tag(),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "build_seconds": round(seconds, 2),
        "size_bytes": _disk_usage(venv),
        "pip_check": check.stdout.strip(),
    }


class _IndexUnreachable(Exception):
    pass


def ensure_venv(name: str, requirements_file: Path | str, *, cache_dir: Path | None = None,
                lock_wait_s: float = LOCK_WAIT_SECONDS) -> Path | SkipReason:
    """A ready venv for ``name`` built from ``requirements_file``, or why the index is unreachable.

    Cached: returns at once when the venv's marker exists. Otherwise takes the folder's
    lock, builds, checks (``pip check``), writes the marker last. Raises ``VenvBuildError``
    on any failure but an unreachable index. ``builds()`` records the outcome."""
    requirements_file = Path(requirements_file).resolve()
    venv = venv_path(name, requirements_file, cache_dir)
    waited = 0.0
    built_now = False
    marker = _read_marker(venv)
    if marker is None:
        with _exclusive(venv.with_name(venv.name + ".lock"), lock_wait_s) as waited:
            marker = _read_marker(venv)  # another process may have built it while we waited
            if marker is None:
                # Ask the index first: offline, this costs seconds instead of pip's retries.
                unreachable = index_unreachable(requirements_file)
                if unreachable:
                    return _skip(name, unreachable)
                try:
                    marker = _build(name, requirements_file, venv, venv.with_name(venv.name + ".build.log"))
                except _IndexUnreachable as exc:
                    return _skip(name, str(exc))
                tmp = venv / (MARKER + ".tmp")
                tmp.write_text(json.dumps(marker, indent=2) + "\n")
                os.replace(tmp, venv / MARKER)
                built_now = True
    _BUILDS[name] = VenvBuild(
        name=name, path=str(venv), built_now=built_now, build_seconds=float(marker.get("build_seconds", 0.0)),
        size_bytes=int(marker.get("size_bytes", 0)), waited_seconds=round(waited, 2),
        python=str(marker.get("python", "")), requirements_sha256=str(marker.get("requirements_sha256", "")))
    return venv


def _skip(name: str, reason: str) -> SkipReason:
    return SkipReason(f"{name} venv not built: {reason}")


def describe(build: VenvBuild) -> str:
    """One line: ``langgraph: built now; first build took 22.8 s, 181 MiB (/path)``."""
    how = "built now" if build.built_now else "cached"
    wait = f", waited {build.waited_seconds:.1f} s for another build" if build.waited_seconds >= 0.5 else ""
    return (f"{build.name}: {how}; first build took {build.build_seconds:.1f} s, "
            f"{build.size_mib:.0f} MiB{wait} ({build.path})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.interop.venvs",
                                     description="Build the real agent servers' venvs ahead of the tests.")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build (or find in the cache) every server's venv; print the times")
    build.add_argument("names", nargs="*", metavar="NAME",
                       help=f"servers to build (default: all of {', '.join(SERVERS)})")
    build.add_argument("--json", action="store_true", help="print one JSON object per venv instead")
    sub.add_parser("where", help="print the cache folder")
    args = parser.parse_args(argv)
    if args.command == "where":
        print(cache_root())
        return 0
    unknown = sorted(set(args.names) - set(SERVERS))
    if unknown:
        parser.error(f"unknown server(s) {', '.join(unknown)}; known: {', '.join(SERVERS)}")
    for name in args.names or list(SERVERS):
        started = time.monotonic()
        result = ensure_venv(name, SERVERS[name])
        wall = time.monotonic() - started
        if isinstance(result, SkipReason):
            print(f"{name}: SKIPPED: {result}" if not args.json else json.dumps({"name": name, "skip": str(result)}))
            continue
        record = _BUILDS[name]
        if args.json:
            print(json.dumps({**asdict(record), "wall_seconds": round(wall, 2)}))
        else:
            print(f"{describe(record)}; this call {wall:.1f} s", flush=True)
    # An unreachable index is not CI's failure here: the tests skip and say why.
    return 0


if __name__ == "__main__":
    sys.exit(main())
