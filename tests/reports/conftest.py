"""Real runs of ``suites/staging`` for the summary tests: once per session, a few at a time.

Each run covers one verdict or root-cause class: all passing; a protocol fault; a leak
(isolation); a slow first event (timing); an expired token accepted (authentication);
staging without its settings (configuration); a closed loopback port (connectivity);
an unhealthy backend; a server that accepts the handshake but never sends the welcome frame;
and a pabot run whose merged output the summary must add up.

The runs are made once per pytest session, also under pytest-xdist: the first worker that
needs them makes them in the session's shared temporary folder, under a file lock, and the
others read what it recorded (no worker repeats the runs)."""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import report_runs as rr

PARALLEL = 3  # runs at once; the suites' own timing budgets stay far away on a 2-core machine


def _specs() -> list[dict]:
    port = rr.closed_port()
    closed = f"http://127.0.0.1:{port}"
    return [
        {"name": "passing", "env": {"E2E_CONCURRENT_USERS": "5"}},
        {"name": "pabot", "env": {"E2E_CONCURRENT_USERS": "5"}, "pabot": 3},
        {"name": "protocol", "env": {"E2E_REFERENCE_FAULTS": "drop-tool-completed"},
         "args": ["--exclude", "concurrency"]},
        {"name": "isolation", "env": {"E2E_REFERENCE_FAULTS": "leak"}, "args": ["--include", "isolation"]},
        {"name": "timing", "env": {"E2E_REFERENCE_FAULTS": "slow-first-event"},
         "args": ["--test", "Agent Started Arrives Within The First Event Budget"]},
        {"name": "authentication", "env": {"E2E_REFERENCE_FAULTS": "accept-expired"}, "args": ["--include", "auth"]},
        {"name": "configuration", "env": {"E2E_TARGET": "staging"}},
        {"name": "connectivity", "env": {"E2E_TARGET": "staging", "E2E_BACKEND_URL": closed, "E2E_AUTH_URL": closed,
                                         "E2E_JWT_SECRET": "a-secret-that-must-never-show-up-1234567890"},
         "args": ["--exclude", "concurrency"]},
        {"name": "health", "env": {"E2E_REFERENCE_FAULTS": "health-500"}, "args": ["--include", "smoke"]},
        # the connect timeout is short: the run waits for a welcome that never comes
        {"name": "no-welcome", "env": {"E2E_REFERENCE_FAULTS": "no-connection-established",
                                       "E2E_CONNECT_TIMEOUT": "2s"},
         "args": ["--test", "Connection Is Established With A Welcome Frame"]},
    ]


def _make_runs(base: Path) -> dict[str, rr.Run]:
    pending = _specs()
    running: list[tuple] = []
    done: dict[str, rr.Run] = {}
    while pending or running:
        while pending and len(running) < PARALLEL:
            spec = pending.pop(0)
            running.append(rr.robot_run(spec["name"], base, rr.clean_env(**spec["env"]), spec.get("args", ()),
                                        spec.get("pabot")))
        for item in list(running):
            if item[1].poll() is not None:
                running.remove(item)
                run = rr.finish(*item)
                done[run.name] = run
        time.sleep(0.05)
    # pabot has no end hook: the watcher the listener started writes the merged summary just after pabot exits.
    rr.wait_for(done["pabot"].html, timeout=30)
    return done


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> dict[str, rr.Run]:
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        return _make_runs(tmp_path_factory.mktemp("summary-runs"))
    shared = tmp_path_factory.getbasetemp().parent  # one folder for every worker of this session
    base = shared / "summary-runs"
    index = base / "runs.json"
    with open(shared / "summary-runs.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also on failure
        if index.is_file():
            recorded = json.loads(index.read_text(encoding="utf-8"))
            return {name: rr.Run(**dict(fields, outdir=Path(fields["outdir"]))) for name, fields in recorded.items()}
        base.mkdir(exist_ok=True)
        done = _make_runs(base)
        index.write_text(json.dumps({name: dict(asdict(run), outdir=str(run.outdir)) for name, run in done.items()}),
                         encoding="utf-8")
        return done


@pytest.fixture(scope="session")
def chromium_bin() -> str:
    binary = rr.chromium()
    if binary is None:
        pytest.skip("Chromium is not installed and could not be installed with apt-get (needs root and network)")
    return binary
