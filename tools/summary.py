#!/usr/bin/env python3
"""Write summary.html and summary.md for any Robot output.xml of the kit's suites.

    python tools/summary.py results/output.xml            # next to output.xml
    python tools/summary.py results                       # the same: <dir>/output.xml
    python tools/summary.py a/output.xml b/output.xml -d combined   # several outputs, combined

The summary is rebuilt from output.xml alone (Robot's result model, plus the
metrics messages the AgentReport listener logged), so it works on old outputs,
on pabot's merged output and on rebot's.

``--after-pid PID --since EPOCH DIR`` is the pabot hook the listener starts by itself:
wait until process PID (pabot) has exited, then summarise the output.xml pabot merged
into DIR, if one was written after EPOCH. It writes nothing otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "libraries"))

from agentkit.report import summary as summaries  # noqa: E402
from agentkit.transports.process import pid_alive  # noqa: E402


def _fresh_output(directory: Path, since: float) -> Path | None:
    """pabot's merged output in ``directory`` written after ``since`` (default name or renamed)."""
    default = directory / "output.xml"
    if default.is_file() and default.stat().st_mtime >= since:
        return default
    candidates = []
    for path in directory.glob("*.xml"):
        try:
            if path.stat().st_mtime >= since and "<robot" in path.read_text(encoding="utf-8", errors="replace")[:600]:
                candidates.append(path)
        except OSError:
            continue
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None


def _write(sources: list[Path], outdir: Path | None, name: str, note: str) -> int:
    from robot.api import ExecutionResult
    from robot.errors import DataError

    started = time.perf_counter()
    try:
        result = ExecutionResult(*[str(s) for s in sources])
    except DataError as err:
        print(f"Cannot read {', '.join(map(str, sources))}: {err}", file=sys.stderr)
        return 2
    out = outdir or sources[0].parent
    log = sources[0].parent / "log.html"
    link = os.path.relpath(log, out) if len(sources) == 1 and log.is_file() else None
    summary = summaries.write(result, None, out, source=", ".join(str(s) for s in sources), note=note, name=name,
                              log=link)
    took = (time.perf_counter() - started) * 1000
    print(f"Summary: {summary.paths[0]}\n         {summary.paths[1]}\n{summaries.verdict_line(summary)} "
          f"({took:.0f} ms)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("sources", nargs="+", type=Path, help="output.xml file(s), or a directory holding output.xml")
    parser.add_argument("-d", "--outdir", type=Path, help="where to write (default: next to the first output)")
    parser.add_argument("-n", "--name", default="summary", help="file name stem (default: summary)")
    parser.add_argument("--after-pid", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--since", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--lock", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--max-wait", type=float, default=24 * 3600, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.after_pid is not None:
        try:
            deadline = time.monotonic() + args.max_wait
            while pid_alive(args.after_pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            output = _fresh_output(args.sources[0], args.since)
            if output is None:
                return 0  # pabot wrote no merged output (interrupted, or --output NONE): nothing to summarise
            return _write([output], args.outdir, args.name, "written after pabot merged the process outputs")
        finally:
            if args.lock is not None:
                try:
                    args.lock.unlink()
                except OSError:
                    pass

    sources = [s / "output.xml" if s.is_dir() else s for s in args.sources]
    missing = [str(s) for s in sources if not s.is_file()]
    if missing:
        print(f"No such output file: {', '.join(missing)}", file=sys.stderr)
        return 2
    return _write(sources, args.outdir, args.name, "written on demand by tools/summary.py")


if __name__ == "__main__":
    sys.exit(main())
