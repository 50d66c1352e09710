"""Fixtures for the interop tests: real third-party agent servers, each in its own cached venv.

A test module declares the servers it needs with ``pytestmark = pytest.mark.interop("langgraph")``.
Before the first test runs (after collection, outside any test's timeout), every venv a
selected test needs is built or found in the cache, and its build time is reported apart
from test time (a line during the run, and an "interop venvs" section in the summary).
``interop_venv("langgraph")`` then returns the venv, skips the test when the package index
cannot be reached, and fails it (never skips it) on any other build error.

Transcripts go to pytest's temporary folder; with ``AGENTKIT_INTEROP_RECORD=1`` they go to
``tests/interop/<server>/transcripts/`` instead, the recordings kept in the repository.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import pytest

from .transcript import Transcript
from .venvs import SERVERS, SkipReason, VenvBuildError, builds, describe, ensure_venv

HERE = Path(__file__).resolve().parent
RECORD_ENV = "AGENTKIT_INTEROP_RECORD"

_VENVS: dict[str, Path | SkipReason | BaseException] = {}
_READY: list[str] = []


def note_ready(server) -> None:
    """Report a started server's ready time in the summary (call from the server's fixture)."""
    variant = " (failing tool)" if getattr(server, "failing_tool", False) else ""
    _READY.append(f"{server.name}{variant} ready in {server.ready_seconds:.2f} s on {server.base_url}")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "interop(*servers): runs real third-party agent servers (names from tests/interop/venvs.py SERVERS); "
        "their venvs are built before the first test, cached, and reported apart from test time",
    )


def _needed(items: list[pytest.Item]) -> list[str]:
    names: list[str] = []
    for item in items:
        for marker in item.iter_markers("interop"):
            names += [n for n in marker.args if n not in names]
    return names


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build (or find) the venvs the selected tests need, before any test's clock starts."""
    if session.config.option.collectonly:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    for name in _needed(session.items):
        if name not in SERVERS:
            _VENVS[name] = VenvBuildError(f"pytest.mark.interop names unknown server {name!r}")
            continue
        started = time.monotonic()
        try:
            _VENVS[name] = ensure_venv(name, SERVERS[name])
        except Exception as exc:  # reported by the fixture, as the tests' error
            _VENVS[name] = exc
        if reporter is not None:
            result = _VENVS[name]
            if isinstance(result, Path):
                line = describe(next(b for b in builds() if b.name == name))
            else:
                line = f"{name}: {type(result).__name__}: {str(result).splitlines()[0][:200]}"
            reporter.write_line(f"interop venv {line} [{time.monotonic() - started:.1f} s before the tests]")


def pytest_terminal_summary(terminalreporter) -> None:
    if not _VENVS:
        return
    terminalreporter.section("interop venvs (built apart from test time) and servers")
    for build in builds():
        if build.name in _VENVS:  # not the throwaway venvs of test_venvs.py
            terminalreporter.write_line(describe(build))
    for name, result in _VENVS.items():
        if not isinstance(result, Path):
            terminalreporter.write_line(f"{name}: not available: {str(result).splitlines()[0][:300]}")
    for line in _READY:
        terminalreporter.write_line(line)


def interop_venv(name: str) -> Path:
    """The venv for ``name``: skip when the package index is unreachable, error on any other failure."""
    result = _VENVS.get(name)
    if result is None:  # not prebuilt (e.g. the marker was missing): build now
        try:
            result = _VENVS[name] = ensure_venv(name, SERVERS[name])
        except Exception as exc:
            result = _VENVS[name] = exc
    if isinstance(result, SkipReason):
        pytest.skip(str(result))
    if isinstance(result, BaseException):
        raise VenvBuildError(f"the {name} venv could not be built: {result}") from result
    return result


@pytest.fixture(scope="session")
def jwt_secret() -> str:
    """A fresh HS256 secret per session, shared by the servers and the tests' tokens."""
    return "interop-" + secrets.token_urlsafe(32)


@pytest.fixture(scope="session")
def transcript_dir(tmp_path_factory):
    """Where a server's scenario transcripts go: ``transcript_dir("langgraph") / "ok.jsonl"``."""
    scratch = tmp_path_factory.mktemp("transcripts")

    def folder(server: str) -> Path:
        if os.environ.get(RECORD_ENV) == "1":
            return HERE / server / "transcripts"
        return scratch / server

    return folder


@pytest.fixture
def transcript(request, transcript_dir):
    """One scenario's transcript, saved when the test ends (also when it fails).

    Named after the test (``test_run_completes`` -> ``run_completes.jsonl``) in the folder of
    the server its module's ``interop`` marker names."""
    server = next(iter(request.node.get_closest_marker("interop").args), "unknown")
    name = request.node.name.removeprefix("test_").replace("[", "-").replace("]", "")
    record = Transcript(transcript_dir(server) / f"{name}.jsonl", title=request.node.nodeid)
    yield record
    record.save()


@pytest.fixture(scope="session")
def make_token(jwt_secret):
    """``make_token("user-a")``: an HS256 token for that subject (``ttl`` seconds, default 1 h).

    ``secret=`` signs with another key (a wrong signature); ``ttl`` < 0 makes it expired."""
    import jwt

    def make(sub: str, *, ttl: int = 3600, secret: str | None = None, **claims) -> str:
        now = int(time.time())
        payload = {"sub": sub, "iat": now, "exp": now + ttl, "type": "access", **claims}
        return jwt.encode(payload, secret or jwt_secret, algorithm="HS256")

    return make
