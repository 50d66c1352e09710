"""Helpers for the summary tests: real ``robot``/``pabot`` runs of ``suites/staging`` into a
temporary directory, and headless Chromium to look at the page they produce.

A unique module name (not ``helpers.py``) so it cannot clash with other test folders'
modules on ``sys.path``."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import forked

ROOT = Path(__file__).resolve().parents[2]
SUITES = ROOT / "suites" / "staging"
RESOURCE = ROOT / "resources" / "agent_chat.resource"
LISTENER = ROOT / "libraries" / "AgentReport.py"
CLI = ROOT / "tools" / "summary.py"
BIN = Path(sys.executable).parent


def clean_env(**overrides: str) -> dict[str, str]:
    """This environment without kit, backend, Robot or pabot settings, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("E2E_", "REFERENCE_BACKEND_", "ROBOT_", "PABOT"))}
    env["PYTHONUNBUFFERED"] = "1"
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def listener_args() -> list[str]:
    """``--listener`` for AgentReport while ``agent_chat.resource`` does not import it yet.

    Once the resource imports the library, the library listener is active by itself and
    no option is passed (passing both would still record once)."""
    return [] if "AgentReport.py" in RESOURCE.read_text(encoding="utf-8") else ["--listener", str(LISTENER)]


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Run:
    name: str
    cmd: list[str]
    outdir: Path
    rc: int | None = None
    stdout: str = ""
    wall: float = 0.0

    @property
    def output(self) -> Path:
        return self.outdir / "output.xml"

    @property
    def html(self) -> Path:
        return self.outdir / "summary.html"

    @property
    def md(self) -> Path:
        return self.outdir / "summary.md"


def robot_run(name: str, base: Path, env: dict[str, str], args: list[str] | tuple[str, ...] = (),
              pabot: int | None = None) -> tuple[Run, subprocess.Popen, dict]:
    outdir = base / name
    if pabot:
        head = [str(BIN / "pabot"), "--processes", str(pabot), "--pabotlibport", "0"]
    else:
        head = [sys.executable, "-m", "robot"]
    cmd = [*head, "--outputdir", str(outdir), "--console", "dotted", *listener_args(), *args, str(SUITES)]
    proc = forked.popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    return Run(name, cmd, outdir), proc, {"started": time.monotonic()}


def finish(run: Run, proc: subprocess.Popen, meta: dict, timeout: float = 180.0) -> Run:
    out, _ = forked.finish(proc, timeout)
    run.rc, run.stdout, run.wall = proc.returncode, out, time.monotonic() - meta["started"]
    return run


def wait_for(path: Path, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and path.stat().st_size > 0:
            return True
        time.sleep(0.1)
    return False


# --- headless Chromium ----------------------------------------------------------------------
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium() -> str | None:
    """The Chromium binary; installed with apt-get (Debian package ``chromium``) when missing."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        if subprocess.run(cmd, env=env, capture_output=True, timeout=900).returncode != 0:
            return None
    return shutil.which("chromium")


def browse(binary: str, page: Path, screenshot: Path, size: str = "1280,2000") -> str:
    """Renders ``page``: writes a screenshot and returns the rendered DOM (one Chromium start
    does both: each start costs about 2 s of CPU)."""
    with tempfile.TemporaryDirectory() as profile:
        shown = subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={screenshot}",
                                f"--window-size={size}", "--dump-dom", page.as_uri()],
                               capture_output=True, text=True, timeout=120)
        assert shown.returncode == 0, shown.stderr[-2000:]
    return shown.stdout


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs) -> None:
        if tag in ("style", "script", "title"):
            self._skip += 1

    def handle_endtag(self, tag) -> None:
        if tag in ("style", "script", "title") and self._skip:
            self._skip -= 1

    def handle_data(self, data) -> None:
        if not self._skip:
            self.parts.append(data)


def visible_text(dom: str) -> str:
    parser = _Text()
    parser.feed(dom)
    return re.sub(r"\s+", " ", " ".join(parser.parts))


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
