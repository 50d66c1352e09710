"""``ensure_venv``: skip only for an unreachable index, error otherwise, build once, reuse after.

Offline and fast: pip reads no configuration file here (``PIP_CONFIG_FILE`` = /dev/null)
and is pointed at a closed loopback port, an empty local index, or a folder holding one
tiny wheel these tests write themselves.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

from . import venvs
from .venvs import MARKER, SkipReason, VenvBuildError, ensure_venv, venv_path

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]
PKG, VERSION = "agentkit-interop-probe", "1.0"


@pytest.fixture
def offline_pip(monkeypatch):
    """pip with no configuration file: only what each test puts in the environment."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for var in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_INDEX_URL", "PIP_NO_INDEX", "PIP_CONSTRAINT"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


def _requirements(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "requirements.txt"
    path.write_text(text)
    return path


def _write_wheel(folder: Path) -> Path:
    """A minimal pure-Python wheel of ``agentkit-interop-probe`` 1.0."""
    dist = f"agentkit_interop_probe-{VERSION}.dist-info"
    files = {
        "agentkit_interop_probe/__init__.py": "VALUE = 42\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {PKG}\nVersion: {VERSION}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = "\n".join(record) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"agentkit_interop_probe-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return wheel


def test_unreachable_index_is_a_skip_with_the_reason(tmp_path, offline_pip):
    offline_pip.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{_closed_port()}/simple")
    requirements = _requirements(tmp_path, f"{PKG}=={VERSION}\n")
    result = ensure_venv("probe", requirements, cache_dir=tmp_path / "cache")
    assert isinstance(result, SkipReason)
    assert "package index cannot be reached" in str(result) and "Connection refused" in str(result)
    assert not venv_path("probe", requirements, tmp_path / "cache").exists()


def test_a_pin_the_index_does_not_have_is_an_error_and_a_half_built_venv_is_not_reused(tmp_path, offline_pip):
    index = tmp_path / "empty-index"
    index.mkdir()
    offline_pip.setenv("PIP_INDEX_URL", index.as_uri())
    requirements = _requirements(tmp_path, f"{PKG}=={VERSION}\n")
    half_built = venv_path("probe", requirements, tmp_path / "cache")
    (half_built / "bin").mkdir(parents=True)
    (half_built / "leftover-of-an-interrupted-build").write_text("")
    with pytest.raises(VenvBuildError, match="pip install failed") as failure:
        ensure_venv("probe", requirements, cache_dir=tmp_path / "cache")
    assert "No matching distribution found" in str(failure.value)
    assert not (half_built / "leftover-of-an-interrupted-build").exists(), "the half-built venv was reused"
    assert not (half_built / MARKER).exists()


def test_builds_once_records_the_time_then_reuses_the_cache(tmp_path, offline_pip):
    _write_wheel(tmp_path / "wheels")
    offline_pip.setenv("PIP_NO_INDEX", "1")
    offline_pip.setenv("PIP_FIND_LINKS", str(tmp_path / "wheels"))
    requirements = _requirements(tmp_path, f"# a comment\n{PKG}=={VERSION}  # the only pin\n")
    cache = tmp_path / "cache"

    first = ensure_venv("probe", requirements, cache_dir=cache)
    assert isinstance(first, Path) and first == venv_path("probe", requirements, cache)
    build = next(b for b in venvs.builds() if b.name == "probe")
    assert build.built_now and build.build_seconds > 0 and build.size_bytes > 0
    marker = json.loads((first / MARKER).read_text())
    assert marker["build_seconds"] == build.build_seconds and marker["python"] == venvs.python_tag()
    assert f"{PKG}=={VERSION}" in (first / "freeze.txt").read_text()
    out = subprocess.run([str(first / "bin" / "python"), "-c", "import agentkit_interop_probe as m; print(m.VALUE)"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "42"

    again = ensure_venv("probe", requirements, cache_dir=cache)
    assert again == first
    cached = next(b for b in venvs.builds() if b.name == "probe")
    assert not cached.built_now and cached.build_seconds == build.build_seconds

    requirements.write_text(requirements.read_text() + "\n")  # another file: another venv
    assert venv_path("probe", requirements, cache) != first


def test_two_processes_never_build_the_same_venv_at_once(tmp_path, offline_pip, monkeypatch):
    _write_wheel(tmp_path / "wheels")
    offline_pip.setenv("PIP_NO_INDEX", "1")
    offline_pip.setenv("PIP_FIND_LINKS", str(tmp_path / "wheels"))
    requirements = _requirements(tmp_path, f"{PKG}=={VERSION}\n")
    calls = []
    real_build = venvs._build
    monkeypatch.setattr(venvs, "_build", lambda *a, **k: calls.append(a) or real_build(*a, **k))

    results: list = []
    errors: list = []

    def worker():  # flock is per open file: two threads contend as two processes would
        try:
            results.append(ensure_venv("probe", requirements, cache_dir=tmp_path / "cache"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors and len(results) == 3 and len(set(results)) == 1
    assert len(calls) == 1


def test_cli_lists_the_servers_and_the_cache():
    out = subprocess.run([sys.executable, "-m", "tests.interop.venvs", "build", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "langgraph, pydantic_ai" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "tests.interop.venvs", "build", "nonesuch"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown server(s) nonesuch" in bad.stderr
    where = subprocess.run([sys.executable, "-m", "tests.interop.venvs", "where"], cwd=ROOT,
                           capture_output=True, text=True, timeout=60,
                           env={**os.environ, venvs.CACHE_ENV: "/tmp/somewhere"})
    assert where.stdout.strip() == "/tmp/somewhere"
