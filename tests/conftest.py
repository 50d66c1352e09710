"""Shared fixtures: the reference backend as a real child process on a free port.

``libraries`` and the project root are on sys.path (pyproject's pytest ``pythonpath``)."""

from __future__ import annotations

import os

import pytest

import forked
from agentkit.transports.process import BackendProcess


def pytest_configure(config) -> None:
    # Backends the tests start fork from a process with their imports done (tests/forked.py).
    BackendProcess.popen = staticmethod(forked.popen)


def pytest_collection_modifyitems(config, items) -> None:
    """Modules marked ``slow`` first (a stable sort): pytest-xdist hands modules out in this
    order, so the longest ones start at once instead of running alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="module")
def real_processes():
    """For a module that tests how processes start, stop and clean up: every command it
    starts is a real process, not forked from the preloading one."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AGENTKIT_TESTS_REAL_PROCESSES", "1")
        yield


def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto``: two workers per core. Many tests wait on servers and subprocesses
    (robot runs, budgets, handshakes); a second worker per core fills that wait."""
    return 2 * (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


@pytest.fixture(scope="session")
def backend():
    """One healthy reference backend for the whole session (think delay 2 ms, 1 tool)."""
    with BackendProcess(think_delay=0.002) as proc:
        yield proc


@pytest.fixture(scope="session")
def backend_factory():
    """Start extra backends (e.g. with a fault): ``backend_factory(faults=["leak"])``.
    Every one started is stopped at the end of the session, also on failure."""
    started: list[BackendProcess] = []

    def start(**kwargs) -> BackendProcess:
        kwargs.setdefault("think_delay", 0.002)
        proc = BackendProcess(**kwargs).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
