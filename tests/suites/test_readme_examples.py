"""The README's "Writing tests" example, taken from README.md itself, runs as written from a
new folder next to ``suites/``; a single suite file runs on its own (issue 13.1).

Nothing resolves the target in a suite setup here: the keywords resolve it on first use.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import uuid

from suite_runs import ROOT, RobotRun, clean_env, read_results

README = ROOT / "README.md"


def readme_example() -> tuple[str, str]:
    """(the folder/file the README says to save it as, the example's text)."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Writing tests"):]
    where = re.search(r"Save this as `([\w/]+\.robot)`", section)
    block = re.search(r"```robotframework\n(.*?)```", section, re.S)
    assert where and block, "README.md: the Writing tests section lost its example or where to save it"
    return where.group(1), block.group(1)


def robot(out, *args: str) -> RobotRun:
    cmd = [sys.executable, "-m", "robot", "-d", str(out), "--console", "dotted", *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    return read_results(RobotRun(cmd, proc.returncode, 0.0, proc.stdout, proc.stderr, out))


def test_the_readme_example_passes_from_a_new_folder(tmp_path):
    saved_as, example = readme_example()
    # The README's folder name, made unique so parallel runs never share it; same depth.
    folder = ROOT / f"{saved_as.split('/')[0]}_{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    try:
        (folder / saved_as.split("/", 1)[1]).write_text(example, encoding="utf-8")
        run = robot(tmp_path / "results", folder.name)
    finally:
        shutil.rmtree(folder)
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert run.tests and all(t.status == "PASS" for t in run.tests.values()), run.counts()
    assert "Asking For The Weather Calls The Weather Tool" in run.tests
    # the kit's files go where output.xml goes, never into the current folder
    assert (tmp_path / "results" / "summary.html").is_file()
    assert not (ROOT / "summary.html").exists() and not (ROOT / "reference-backend.log").exists()


def test_a_single_suite_file_runs_on_its_own(tmp_path):
    run = robot(tmp_path / "results", "suites/staging/05_agent_event_flow.robot")
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert len(run.tests) >= 5 and all(t.status == "PASS" for t in run.tests.values()), \
        {n: (t.status, t.message[:200]) for n, t in run.tests.items()}
