"""``tools/summary.py`` on outputs the kit did not produce: no metrics, other suites, bad paths."""

from __future__ import annotations

import subprocess
import sys
import time

import forked
import pytest
import report_runs as rr
from robot.api import ExecutionResult

from agentkit.report import summary as summaries

SUITE = """\
*** Test Cases ***
Passes
    Log    fine
Fails Without A Known Cause
    Fail    boom
Is Skipped For A Missing Setting
    Skip    E2E_JWT_SECRET is not set for this target
"""


@pytest.fixture(scope="module")
def plain_output(tmp_path_factory):
    """An output.xml of a suite that does not use the kit (so it holds no E2E metrics)."""
    base = tmp_path_factory.mktemp("plain")
    (base / "plain.robot").write_text(SUITE, encoding="utf-8")
    forked.run([sys.executable, "-m", "robot", "--outputdir", str(base / "out"), "--log", "NONE", "--report",
                "NONE", str(base / "plain.robot")], capture_output=True, timeout=120, env=rr.clean_env())
    return base / "out" / "output.xml"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(rr.CLI), *args], capture_output=True, text=True, timeout=60)


def test_an_output_without_metrics_still_gets_an_honest_summary(plain_output):
    proc = _cli(str(plain_output.parent))  # a directory means <dir>/output.xml
    assert proc.returncode == 0, proc.stderr
    assert "FAILED: 1 passed, 1 failed, 1 skipped of 3 (pass rate 33.3%)" in proc.stdout
    md = (plain_output.parent / "summary.md").read_text(encoding="utf-8")
    assert "No E2E metrics in this output" in md
    assert "| Unclassified | - | 1 | boom |" in md
    assert "| Plain | Is Skipped For A Missing Setting | configuration |" in md
    assert "no target metadata" in md.lower() or "names no target" in md


def test_missing_output_is_an_error_not_an_empty_summary(tmp_path):
    proc = _cli(str(tmp_path / "nothing.xml"))
    assert proc.returncode == 2 and "No such output file" in proc.stderr
    assert not (tmp_path / "summary.html").exists()


def test_summary_generation_is_cheap_in_cpu(runs, tmp_path):
    # CPU time of this process, not wall time: the machine is shared (other test workers, other
    # runs), and what is measured is what the summary costs, not how busy the machine was.
    output = runs["passing"].output
    started = time.process_time()
    result = ExecutionResult(str(output))
    summary = summaries.write(result, None, tmp_path, source=str(output))
    took = time.process_time() - started
    assert took < 2.0, f"parsing output.xml and writing the summary took {took:.3f}s of CPU"
    started = time.process_time()
    summaries.build(result, source=str(output))
    built_ms = (time.process_time() - started) * 1000
    assert built_ms < 1000, f"building the summary took {built_ms:.0f} ms of CPU"
    assert summary.build_ms > 0
    assert (tmp_path / "summary.html").stat().st_size > 10_000


def test_several_outputs_are_combined(runs, tmp_path):
    proc = _cli(str(runs["isolation"].output), str(runs["health"].output), "--outdir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "| Isolation |" in md and "| Service health |" in md
