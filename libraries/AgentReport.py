"""The run's own report: metrics recorded while the suites run, a summary page at the end.

Imported by ``resources/agent_chat.resource``, so it is active in every run of the
suites with no command-line option: a library listener (Robot listener API v3). It has
no keywords.

While the run goes, it records per test (and per suite setup/teardown) the WebSocket
connections the kit opened (handshake and welcome times, the server's connection id,
frames received by type), connection attempts that failed, the bad credentials that had
to be refused and whether they were, the agent runs' event timelines, the statistics of
``Run Concurrent Sessions`` and the peak memory of the Robot process. Each record is
logged as one collapsed HTML message inside the test it belongs to (its gist readable in
log.html, the JSON one click away), so
``output.xml`` alone rebuilds the summary (``python tools/summary.py results/output.xml``),
also after pabot merged several processes' outputs.

At the end of a ``robot`` run it writes ``summary.html`` and ``summary.md`` next to
``output.xml`` (from the finished result model, before Robot writes log and report) and
links them from the report's metadata. Under pabot each process only records; the first
process to finish starts a small watcher that waits for pabot to exit and then writes
the summary of the merged ``output.xml`` into pabot's output directory.

Recording is cheap (a few dictionaries per test); the summary takes a few milliseconds.
It can also be used as a plain listener for suites that do not import the resource:
``robot --listener libraries/AgentReport.py ...`` (one instance records, never two).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

from robot.api import logger
from robot.api.deco import library
from robot.libraries.BuiltIn import BuiltIn, RobotNotRunningError

from agentkit.report import summary as summaries
from agentkit.report import metrics
from agentkit import target as targets
from agentkit.transports.threaded import REGISTRY

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SUMMARY_CLI = PROJECT_ROOT / "tools" / "summary.py"


def _norm(name: str | None) -> str:
    return re.sub(r"[\s_]", "", (name or "").lower())


# Library keywords whose outcome is evidence (owner, normalized name) -> what they are.
_CONNECT = ("agentsessions", "connecttoagentwebsocket")
_REFUSALS = {
    ("agentsessions", "handshakeshouldberefused"): "WebSocket handshake with a bad or missing token",
    ("agentauth", "authserviceshouldrefusesimulationkey"): "auth service with a wrong or missing simulation key",
    ("agentapi", "agentapishouldrequireauthentication"): "agent API call without a token",
}
_TOKENS = {
    ("agentauth", "createtesttoken"): "signed",
    ("agentauth", "gettokenfromauthservice"): "auth_service",
}
_CONCURRENCY = ("agentconcurrency", "runconcurrentsessions")
_API_GET = ("agentapi", "getagentapi")  # a refusal check when it expects 401/403
_EXPECTS_REFUSAL = re.compile(r"^expected_status=\s*(?:401|403)\s*$")
_REFUSED = re.compile(r"refused with HTTP (\d+)")
_UNREACHABLE = re.compile(r"Cannot connect|did not complete within|TLS handshake|could not be attempted|"
                          r"Connection refused|Name or service not known|timed out", re.I)


class _Scope:
    def __init__(self, kind: str, name: str) -> None:
        self.kind = kind
        self.name = name
        self.connect_failures: list[dict] = []
        self.refusal_checks: list[dict] = []
        self.tokens: dict[str, int] = {}
        self.concurrency: list[dict] = []
        self.repeated: list[dict] = []


@library(scope="GLOBAL", auto_keywords=False)
class AgentReport:
    """Records the run's metrics into ``output.xml`` and writes ``summary.html``/``summary.md``."""

    ROBOT_LISTENER_API_VERSION = 3
    ROBOT_LISTENER_PRIORITY = -10  # after the other libraries' listeners (e.g. closing connections)

    def __init__(self) -> None:
        self.ROBOT_LIBRARY_LISTENER = self
        self._owner = False
        self._reset()

    def _reset(self) -> None:
        self._records: list[dict] = []
        self._scope: _Scope | None = None
        self._suite_kw: Any = None          # the suite setup/teardown keyword being recorded
        self._tracked: list[list] = []      # [connection, frames recorded, handshake recorded]
        self._tracked_ids: set[int] = set()
        self._no_welcome: set[int] = set()  # tracked connections whose connect keyword failed
        self._root: Any = None
        self._output_dir: Path | None = None
        self._output_file: Path | None = None
        self._log_file: Path | None = None
        self._options: dict[str, list[str]] = {}
        self._pabot: dict[str, str] | None = None
        self._process_logged = False
        self._written: Path | None = None
        self._started = time.time()

    # --- ownership: one recorder per process ----------------------------------
    def _claim(self) -> bool:
        if self._owner:
            return True
        if metrics.ACTIVE:
            return False
        metrics.ACTIVE.append(self)
        self._owner = True
        return True

    def _release(self) -> None:
        if self._owner and self in metrics.ACTIVE:
            metrics.ACTIVE.remove(self)
        self._owner = False

    # --- suites and tests ------------------------------------------------------
    def start_suite(self, data, result) -> None:
        if not self._claim():
            return
        if self._root is None:
            self._read_settings()
        root = result
        while root.parent is not None:
            root = root.parent
        self._root = root

    def end_suite(self, data, result) -> None:
        if not self._owner or result.parent is not None:
            return
        # Written into output.xml with the top suite (listeners run before the output file).
        result.metadata["E2E summary"] = ("[summary.html|summary.html] (verdict, figures, failures by root cause; "
                                          "also summary.md)")

    def start_test(self, data, result) -> None:
        if self._owner:
            self._scope = _Scope("test", result.full_name)

    def end_test(self, data, result) -> None:
        if self._owner and self._scope is not None:
            self._flush(self._scope)
            self._scope = None

    # --- keywords ------------------------------------------------------------------
    def start_keyword(self, data, result) -> None:
        if not self._owner or self._scope is not None:
            return
        if result.type in ("SETUP", "TEARDOWN"):  # a suite setup or teardown (tests have a scope)
            suite = self._current_suite_name()
            self._scope = _Scope(f"suite {result.type.lower()}", suite)
            self._suite_kw = result

    def end_keyword(self, data, result) -> None:
        if not self._owner:
            return
        scope = self._scope
        if scope is not None:
            key = (_norm(getattr(result, "owner", None) or getattr(result, "libname", None)), _norm(result.name))
            try:
                self._observe(scope, key, data, result)
            except Exception as err:  # noqa: BLE001 - the report must never break a run
                logger.debug(f"AgentReport could not record {result.name}: {err}")
        if scope is not None and result is self._suite_kw:
            self._flush(scope, process=True)
            self._scope = None
            self._suite_kw = None

    def _observe(self, scope: _Scope, key: tuple[str, str], data, result) -> None:
        if result.status not in ("PASS", "FAIL"):  # NOT RUN (after a failure, dry run) or SKIP: nothing happened
            return
        passed = result.status == "PASS"
        if key == _CONNECT:
            conn = REGISTRY.current if REGISTRY._connections else None
            new = conn is not None and id(conn) not in self._tracked_ids
            if new:
                self._track(conn)
            if not passed:
                message = result.message or ""
                refused = _REFUSED.search(message)
                if refused:
                    outcome = "refused"
                elif new:
                    outcome = "no welcome"  # the handshake was accepted, the welcome frame never came
                    self._no_welcome.add(id(conn))
                elif _UNREACHABLE.search(message):
                    outcome = "unreachable"
                else:
                    outcome = "error"
                scope.connect_failures.append({
                    "outcome": outcome, "status": int(refused.group(1)) if refused else None,
                    "alias": conn.alias if new else None, "message": metrics.first_line(message)})
        elif key in _REFUSALS or (key == _API_GET and any(_EXPECTS_REFUSAL.match(str(a)) for a in data.args)):
            message = result.message or ""
            if passed:
                outcome = "refused"
            elif "ACCEPTED" in message or re.search(r"answered HTTP 2\d\d, expected (?:a refusal|40[13])|to refuse "
                                                     r"the simulation key .* got HTTP 2\d\d", message):
                outcome = "accepted"
            elif _UNREACHABLE.search(message) or "Cannot reach" in message or "ConnectionError" in message:
                outcome = "unreachable"
            else:
                outcome = "failed"
            check = _REFUSALS.get(key, "agent API call with a bad token")
            scope.refusal_checks.append({"check": check, "ok": passed, "outcome": outcome,
                                         "message": "" if passed else metrics.first_line(message)})
        elif key in _TOKENS:
            name = _TOKENS[key] + ("" if passed else "_failed")
            scope.tokens[name] = scope.tokens.get(name, 0) + 1
        elif key == _CONCURRENCY and passed and result.assign:
            stats = BuiltIn().get_variable_value(result.assign[0].rstrip("= "))
            if isinstance(stats, dict):
                scope.concurrency.append(metrics.plain(stats))

    def record_repeated_runs(self, result: dict) -> None:
        """Called by ``Run Prompt Repeatedly``: the pass rate and failing runs, for the summary."""
        if self._owner and self._scope is not None:
            self._scope.repeated.append(metrics.plain(result))

    # --- connections -------------------------------------------------------------
    def _track(self, conn) -> None:
        self._tracked.append([conn, 0, False])
        self._tracked_ids.add(id(conn))

    def _flush(self, scope: _Scope, process: bool = False) -> None:
        try:
            for conn in list(REGISTRY._connections):  # opened some other way than the keyword
                if id(conn) not in self._tracked_ids and getattr(conn, "handshake", None) is not None:
                    self._track(conn)
            connections, runs = [], []
            for entry in self._tracked:
                conn, done, opened = entry
                frames = conn.snapshot()
                if opened and len(frames) <= done:
                    continue
                record = metrics.connection_record(conn, frames[done:], with_handshake=not opened)
                if not opened:
                    record["established"] = id(conn) not in self._no_welcome
                connections.append(record)
                runs += metrics.runs_of(conn, start=done, timelines=max(0, metrics.MAX_TIMELINES_PER_SCOPE - len(runs)))
                entry[1], entry[2] = len(frames), True
            # Forget connections that can get no more frames.
            self._tracked = [e for e in self._tracked if e[0].closed is None and e[0]._ws is not None]
            record = {"v": metrics.VERSION, "kind": "scope", "process": metrics.process_id(), "pid": os.getpid(),
                      "scope": scope.kind, "name": scope.name, "connections": connections,
                      "connect_failures": scope.connect_failures, "refusal_checks": scope.refusal_checks,
                      "tokens": scope.tokens, "runs": runs[: metrics.MAX_RUNS_PER_SCOPE],
                      "concurrency": scope.concurrency, "repeated": scope.repeated,
                      "rss_peak_mb": metrics.peak_rss_mb()}
            self._emit(record)
            if process or not self._process_logged:
                self._emit(self._process_record())
                self._process_logged = True
        except Exception as err:  # noqa: BLE001 - the report must never break a run
            logger.debug(f"AgentReport could not record metrics: {err}")

    def _emit(self, record: dict) -> None:
        self._records.append(record)
        logger.info(metrics.dumps(record), html=True)

    def _process_record(self) -> dict:
        tgt = targets.current()
        target = None
        if tgt is not None:
            target = {k: metrics.mask_url(v) for k, v in tgt.describe().items()}
            target["faults"] = tgt.extra.get("faults", "n/a")
        return {"v": metrics.VERSION, "kind": "process", "process": metrics.process_id(), "pid": os.getpid(),
                "rss_peak_mb": metrics.peak_rss_mb(), "target": target, "include": self._options.get("include", []),
                "exclude": self._options.get("exclude", []), "pabot": self._pabot,
                "python": sys.version.split()[0]}

    # --- settings and the end of the run ---------------------------------------------
    def _read_settings(self) -> None:
        try:
            builtin = BuiltIn()
            out_dir = builtin.get_variable_value("${OUTPUT DIR}")
            out_file = builtin.get_variable_value("${OUTPUT FILE}")
            log_file = builtin.get_variable_value("${LOG FILE}")
            options = builtin.get_variable_value("${OPTIONS}")
            queue = builtin.get_variable_value("${PABOTQUEUEINDEX}")
            processes = builtin.get_variable_value("${PABOTNUMBEROFPROCESSES}")
        except RobotNotRunningError:
            return
        self._output_file = Path(out_file) if out_file and out_file != "NONE" else None
        # The kit's files go where output.xml goes (--output X/o.xml puts them in X, not in '.').
        self._output_dir = self._output_file.parent if self._output_file else (Path(out_dir) if out_dir else None)
        self._log_file = Path(log_file) if log_file and log_file != "NONE" else None
        if options is not None:
            self._options = {"include": [str(t) for t in options.include], "exclude": [str(t) for t in options.exclude]}
        if queue is not None:
            self._pabot = {"queue_index": str(queue), "processes": str(processes or "")}

    def _current_suite_name(self) -> str:
        try:
            return BuiltIn().get_variable_value("${SUITE NAME}") or "?"
        except RobotNotRunningError:
            return "?"

    def close(self) -> None:
        """End of the run (Robot closes global library listeners after the top suite)."""
        if not self._owner:
            return
        try:
            if self._root is not None and self._output_dir is not None:
                if self._pabot is not None:
                    self._start_pabot_watcher()
                else:
                    self._write_summary()
        except Exception as err:  # noqa: BLE001 - the report must never break a run
            logger.console(f"[ WARN ] E2E summary not written: {err}")
        finally:
            self._release()

    def _write_summary(self) -> None:
        source = str(self._output_file) if self._output_file else "no output.xml (--output NONE)"
        log = None
        if self._log_file is not None:
            try:
                log = os.path.relpath(self._log_file, self._output_dir)
            except ValueError:  # another drive
                log = str(self._log_file)
        summary = summaries.write(self._root, self._records, self._output_dir, source=source,
                                  note="written at the end of the robot run from its result model", log=log)
        self._written = summary.paths[0]
        logger.console(f"Summary: {summary.paths[0]}\n         {summaries.verdict_line(summary)}")

    def _start_pabot_watcher(self) -> None:
        """Pabot merges the outputs after every process ended and has no hook for that: the
        first process to finish starts a watcher that waits for pabot to exit, then writes
        the summary of the merged output.xml (``tools/summary.py --after-pid``)."""
        out = self._output_dir.resolve()
        merged_dir = next((p.parent for p in (out, *out.parents) if p.name == "pabot_results"), None)
        if merged_dir is None:
            return
        pabot_pid = os.getppid()
        digest = zlib.crc32(str(merged_dir).encode())
        lock = Path(tempfile.gettempdir()) / f"e2e-summary-{pabot_pid}-{digest:08x}.lock"
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.close(fd)
        subprocess.Popen(
            [sys.executable, str(SUMMARY_CLI), "--after-pid", str(pabot_pid), "--since", f"{self._started:.3f}",
             "--lock", str(lock), str(merged_dir)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True, cwd=str(PROJECT_ROOT))
