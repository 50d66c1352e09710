"""summary.html as a browser renders it: headless Chromium, a screenshot and the rendered text."""

from __future__ import annotations

import shutil

import pytest
import report_runs as rr
from robot.api import ExecutionResult


# "passing" is PASSED: nothing failed, and the one skip (the thread-join test) does not apply to
# the default wire; any other skip would make it INCOMPLETE. (pabot's merged summary is the same
# page, its figures checked in test_summary_runs.)
@pytest.mark.parametrize("name, label, charts", [("passing", "PASSED", 3), ("protocol", "FAILED", 3),
                                                 ("configuration", "NOT TESTED: configuration invalid", 1)])
def test_the_rendered_page_shows_verdict_and_figures(runs, chromium_bin, tmp_path, name, label, charts):
    run = runs[name]
    shot = tmp_path / f"summary-{name}.png"
    dom = rr.browse(chromium_bin, run.html, shot)
    text = rr.visible_text(dom)
    st = ExecutionResult(str(run.output)).statistics.total
    rate = f"{100.0 * st.passed / st.total:.1f}".rstrip("0").rstrip(".")
    assert f"{label} " in text, text[:500]
    assert f"Tests {st.total} {st.passed} passed, {st.failed} failed, {st.skipped} skipped" in text
    assert f"Pass rate {rate}%" in text
    assert "Target: " in text
    assert dom.count("<svg") == charts, "charts are inline SVG (nothing to draw: a sentence says so)"
    if charts == 1:
        assert "No connection reached the welcome frame" in text and "No agent run was recorded" in text
    assert not any(ref in dom for ref in ("src=", "<link", "@import", "url(")), "nothing is fetched"
    assert rr.png_size(shot) == (1280, 2000)
    assert shot.stat().st_size > 30_000, "a blank page compresses to a few kB"
    if name == "protocol":
        assert "Protocol violation" in text and "Rule 3 (pairing)" in text
        assert "tool_completed none received" in text
    shutil.copy(shot, run.outdir / shot.name)  # kept next to the run for a human look
