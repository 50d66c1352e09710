"""Suite self-checks: ``robot`` runs of ``suites/staging`` judged from their output.

The fault matrix and other findings are printed in pytest's terminal summary
(visible without ``-s``)."""

from __future__ import annotations

import suite_runs


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    for section, lines in suite_runs.REPORT.items():
        terminalreporter.write_sep("=", section)
        for line in lines:
            terminalreporter.write_line(line)
