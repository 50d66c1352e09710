"""The .robot and .resource files pass robocop's lint (configured in pyproject.toml)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_robot_files_pass_robocop():
    proc = subprocess.run([sys.executable, "-m", "robocop", "check", "suites", "resources"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-1000:]
