"""load/locustfile.py in a real distributed Locust run: one master, two workers, loopback.

Skipped only when Locust is not importable (it is optional: requirements-load.txt). The
check imports it in a child process, not here: importing Locust monkey-patches the whole
interpreter with gevent (threads become greenlets), which would break every other test in
this pytest process that uses a thread with its own asyncio loop."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = ROOT / "load" / "locustfile.py"


def _locust_importable() -> tuple[bool, str]:
    probe = subprocess.run([sys.executable, "-c", "import locust"], capture_output=True, text=True, timeout=60)
    lines = probe.stderr.strip().splitlines()
    return probe.returncode == 0, lines[-1] if lines else ""


_IMPORTABLE, _WHY = _locust_importable()
pytestmark = pytest.mark.skipif(not _IMPORTABLE, reason=f"locust is not importable ({_WHY}); "
                                                        f"pip install -r requirements-load.txt")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_master_and_two_workers_report_connect_and_chat_runs(backend, tmp_path):
    port = _free_port()
    # Workers report to the master every 3 s and the master's CSV may be written before their
    # last report: 10 s gives three reports, so sessions done on a busy machine are counted
    # (5 s once counted none). One user per worker keeps the load, and the CPU, as before.
    env = dict(os.environ, E2E_WS_URL=backend.ws_url, E2E_JWT_SECRET=backend.jwt_secret, PYTHONUNBUFFERED="1")
    base = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--loglevel", "WARNING"]
    master_cmd = base + ["--headless", "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
                         "--expect-workers", "2", "-u", "2", "-r", "2", "-t", "10s",
                         "--csv", str(tmp_path / "run"), "--only-summary"]
    worker_cmd = base + ["--worker", "--master-host", "127.0.0.1", "--master-port", str(port)]
    procs: list[subprocess.Popen] = []
    logs = []
    try:
        for name, cmd in (("master", master_cmd), ("worker-1", worker_cmd), ("worker-2", worker_cmd)):
            log = (tmp_path / f"{name}.log").open("w")
            logs.append(log)
            procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL))
        master = procs[0]
        try:
            rc = master.wait(timeout=90)
        except subprocess.TimeoutExpired:
            pytest.fail("the Locust master did not finish within 90 s:\n"
                        + (tmp_path / "master.log").read_text()[-3000:])
        for worker in procs[1:]:
            try:
                worker.wait(timeout=15)  # workers quit when the master stops them
            except subprocess.TimeoutExpired:
                pass  # killed below; the exit-code check then fails
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        for log in logs:
            log.close()
    master_log = (tmp_path / "master.log").read_text()
    assert rc == 0, f"master exit code {rc}:\n{master_log[-3000:]}"
    rows = {(r["Type"], r["Name"]): r for r in csv.DictReader((tmp_path / "run_stats.csv").open())}
    for name in ("connect", "chat run"):
        row = rows.get(("WS", name))
        assert row is not None, f"no WS {name!r} row in the stats CSV: {sorted(rows)}\n{master_log[-2000:]}"
        assert int(row["Request Count"]) > 0 and int(row["Failure Count"]) == 0, row
    failures = (tmp_path / "run_failures.csv").read_text().strip().splitlines()
    assert len(failures) == 1, failures  # the header only
    worker_codes = [p.returncode for p in procs[1:]]
    assert worker_codes == [0, 0], f"workers exited with {worker_codes}:\n" + (tmp_path / "worker-1.log").read_text()[-2000:]
