"""``tools/flakiness.sh``: the healthy run repeated serially and under pabot, a summary
line per run and a total, non-zero exit on any failure (CI can call it with a larger N)."""

from __future__ import annotations

import re
import subprocess
import sys

from suite_runs import ROOT, clean_env, report

SCRIPT = ROOT / "tools" / "flakiness.sh"


def flakiness(n: str, tmp_path, timeout: float, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), n], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=clean_env(PYTHON=sys.executable, FLAKINESS_OUT=str(tmp_path / "out"), **env))


def test_a_healthy_run_each_way_passes(tmp_path):
    # One run each way over four suites: the repetition is a loop, and what can fail is a run's
    # verdict and its line (the full suites under pabot are run by tests/reports and .ci/run).
    proc = flakiness("1", tmp_path, 180, FLAKINESS_PROCESSES="2",
                     FLAKINESS_ROBOT_ARGS="--include smoke --include auth --include isolation")
    for line in proc.stdout.splitlines():
        report("flakiness (tools/flakiness.sh 1)", line)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    counts = []
    for mode in ("serial", "pabot"):
        runs = [l for l in lines if l.startswith(f"{mode} run ")]
        assert len(runs) == 1, lines
        found = re.search(r": PASS (\d+) tests, (\d+) passed, 0 failed, (\d+) skipped \(", runs[0])
        assert found, runs[0]
        total, passed, skipped = map(int, found.groups())
        # The default wire skips one isolation test by design (no thread another user could join).
        assert total > 10 and passed == total - 1 and skipped == 1, runs[0]
        counts.append(total)
    assert counts[0] == counts[1], f"serial and pabot ran different tests: {counts}"
    assert re.search(r"^TOTAL: 2 runs \(1 serial, 1 pabot x2\), 0 with failures, 0 failed tests", proc.stdout, re.M), \
        proc.stdout
    assert (tmp_path / "out" / "pabot-1" / "output.xml").is_file()


def test_a_failing_run_makes_it_fail(tmp_path):
    # A broken configuration fails every selected test at once: the quickest certain failure.
    proc = flakiness("1", tmp_path, 120, E2E_TARGET="nope", FLAKINESS_ROBOT_ARGS="--include smoke")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    for mode in ("serial", "pabot"):
        assert re.search(rf"^{mode} run 1/1: FAIL rc=\d+ (\d+) tests, 0 passed, \1 failed, 0 skipped .*"
                         r"Backend Health Endpoint Reports Healthy", proc.stdout, re.M), proc.stdout
    assert "TOTAL: 2 runs" in proc.stdout and "2 with failures" in proc.stdout, proc.stdout


def test_bad_count_is_refused(tmp_path):
    proc = flakiness("twenty", tmp_path, 30)
    assert proc.returncode == 2 and "'twenty'" in proc.stderr, proc.stdout + proc.stderr
