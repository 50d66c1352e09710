"""What a whole ``robot -d results suites/staging`` run costs, next to a trivial Robot run.

Three commands, each a fresh process, measured in the same session with the order
rotated every round:

1. ``floor``: a one-test suite whose test only logs (written to a temporary folder): what
   any Robot run costs on this machine (Python start, Robot's import, output, log, report).
2. ``kit, one test``: the kit's suites with ``--test`` selecting the backend health test:
   the fixed part of a kit run (library imports, the embedded backend's start and stop,
   the top suite's setup and teardown, the summary page).
3. ``kit, default run``: ``robot -d <dir> suites/staging``, what the README's first
   command runs.

Wall time is from process start to exit (its children included: Robot waits for the
embedded backend to exit). Peak memory: the Robot process's maximum resident set (from
``wait4``, what ``/usr/bin/time`` reports) and, separately, the embedded backend's
(``VmHWM`` of each descendant, read until it exits). Printed: medians over the rounds and
the ratios against the floor. Goal (issue 4): default run < 4x the floor's wall time and
< 80 MB peak; the script exits 1 when either is missed.

Bytecode: Python writes ``__pycache__`` on the first run, so a warm-up round is run and not
counted. If ``PYTHONDONTWRITEBYTECODE`` is set, every run recompiles the kit's modules:
the script says so and ``--as-set`` keeps it (by default it is removed for the children,
as on a user's machine).

Usage: ``python benchmarks/suite_run_cost.py [--rounds 7] [--json FILE]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
SUITES = ROOT / "suites" / "staging"
ONE_TEST = "Backend Health Endpoint Reports Healthy"
FLOOR_SUITE = "*** Test Cases ***\nHello\n    Log    hello\n"
GOAL_RATIO = 4.0
GOAL_MB = 80.0


def _hwm_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


class DescendantPeaks(threading.Thread):
    """Keeps the highest VmHWM seen for each descendant of ``pid`` until ``pid`` ends.
    VmHWM is the kernel's own peak, so sampling late loses nothing but a process that
    lives less than one interval."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.peaks: dict[int, int] = {}
        self.done = threading.Event()
        self.start()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                children = self.root.children(recursive=True)
            except psutil.NoSuchProcess:
                return
            for child in children:
                kb = _hwm_kb(child.pid)
                if kb is not None:
                    self.peaks[child.pid] = max(kb, self.peaks.get(child.pid, 0))
            self.done.wait(0.02)  # light: the runs share two cores with this sampler


def measure(cmd: list[str], env: dict[str, str]) -> dict:
    # stderr to a file, not a pipe: nobody reads a pipe while wait4 blocks.
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
        peaks = DescendantPeaks(proc.pid)
        _, status, usage = os.wait4(proc.pid, 0)  # wait4: this process's own peak memory
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        peaks.done.set()
        peaks.join(2)
        if proc.returncode != 0:
            err.seek(0)
            tail = err.read().decode(errors="replace")[-2000:]
            raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{tail}")
    return {"wall_s": wall, "robot_peak_mb": usage.ru_maxrss / 1024,
            "child_peak_mb": max(peaks.peaks.values(), default=0) / 1024}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="counted rounds (default 7)")
    parser.add_argument("--as-set", action="store_true",
                        help="keep PYTHONDONTWRITEBYTECODE if it is set (default: remove it for the runs)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()

    env = {k: v for k, v in os.environ.items() if not k.startswith(("E2E_", "REFERENCE_BACKEND_", "ROBOT_"))}
    if os.environ.get("PYTHONDONTWRITEBYTECODE") and not args.as_set:
        print("note: PYTHONDONTWRITEBYTECODE is set here; removed for the runs (as on a user's machine)")
        env.pop("PYTHONDONTWRITEBYTECODE")
    robot = [sys.executable, "-m", "robot", "--console", "none"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        floor_suite = tmp_path / "floor.robot"
        floor_suite.write_text(FLOOR_SUITE, encoding="utf-8")
        commands = {
            "floor": robot + ["-d", str(tmp_path / "floor"), str(floor_suite)],
            "kit, one test": robot + ["-d", str(tmp_path / "one"), "--test", ONE_TEST, str(SUITES)],
            "kit, default run": robot + ["-d", str(tmp_path / "default"), str(SUITES)],
        }
        for cmd in commands.values():  # warm-up: bytecode caches, page cache
            measure(cmd, env)
        samples: dict[str, list[dict]] = {name: [] for name in commands}
        names = list(commands)
        for round_no in range(args.rounds):
            order = names[round_no % len(names):] + names[:round_no % len(names)]
            for name in order:
                samples[name].append(measure(commands[name], env))

    floor = statistics.median(s["wall_s"] for s in samples["floor"])
    result = {}
    print(f"{args.rounds} rounds, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; medians:")
    print(f"{'':18} {'wall':>8} {'x floor':>8} {'robot peak':>11} {'backend peak':>13}")
    for name, runs in samples.items():
        wall = statistics.median(r["wall_s"] for r in runs)
        robot_mb = max(r["robot_peak_mb"] for r in runs)
        child_mb = max(r["child_peak_mb"] for r in runs)
        result[name] = {"wall_s": round(wall, 3), "ratio": round(wall / floor, 2), "robot_peak_mb": round(robot_mb, 1),
                        "backend_peak_mb": round(child_mb, 1),
                        "walls": [round(r["wall_s"], 3) for r in runs]}
        backend = f"{child_mb:.1f} MB" if child_mb else "-"
        print(f"{name:18} {wall:7.3f}s {wall / floor:7.2f}x {robot_mb:8.1f} MB {backend:>13}")
    default = result["kit, default run"]
    wall_ok = default["ratio"] < GOAL_RATIO
    mem_ok = default["robot_peak_mb"] < GOAL_MB
    print(f"goal wall < {GOAL_RATIO:g}x floor: {default['ratio']}x -> {'OK' if wall_ok else 'MISSED'}")
    print(f"goal peak < {GOAL_MB:g} MB (Robot process): {default['robot_peak_mb']} MB -> {'OK' if mem_ok else 'MISSED'}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0 if wall_ok and mem_ok else 1


if __name__ == "__main__":
    sys.exit(main())
