"""Many WebSocket sessions at once: fan-out load from one keyword, judged by the protocol rules.

``Run Concurrent Sessions`` opens hundreds or thousands of sessions against the agent
backend (one asyncio event loop in a background thread, so the Robot process stays
responsive), runs a scenario in each, checks every agent run against the same rules as
the step-by-step keywords (event order, thinking, tool pairing, ids, timing, schemas)
and every connection for isolation (no other user's events), and returns a dictionary
of statistics. ``Concurrent Sessions Should Meet Thresholds`` turns those statistics
into a pass or a readable failure.

Scenarios:

| =Scenario= | =Each session does= |
| ``connect`` | WebSocket handshake with a token, waits for the welcome frame, closes. |
| ``ping``    | As ``connect``, then one ``ping``/``pong`` round trip. |
| ``chat``    | As ``connect``, then sends one user message and reads the whole agent run to its ``agent_completed`` (or ``agent_error``). |

With a target resolved by the suite setup, the WebSocket URL, the JWT secret, the auth
transport, the dialect and the timing budgets come from it; without one, give
``ws_url`` and ``jwt_secret``. Secrets are never written to the log (pass them as
Robot's ``Secret`` to keep them out of the argument log too).

The statistics dictionary has these keys: ``scenario``, ``total``, ``concurrency``,
``successful``, ``failed``, ``success_rate`` (percent), ``auth_rejected``,
``timeouts``, ``errors``, ``agent_errors`` (runs that ended with ``agent_error``),
``rule_violations``, ``isolation_violations``,
``connect_p50_ms``, ``connect_p95_ms``, ``connect_max_ms``, ``run_p50_ms``,
``run_p95_ms``, ``run_max_ms``, ``sessions_per_second`` (sessions finished per second
of the whole batch), ``events_received``, ``peak_open_connections``, ``duration_s``, ``users``, ``violated_rules`` and ``first_errors`` (up to five
distinct failure messages). Times with no sample are ``None``.
"""

from __future__ import annotations

import concurrent.futures
import html
import time
from datetime import timedelta
from typing import Any, Literal

from robot.api import logger
from robot.api.deco import keyword, library
from robot.api.types import Secret

from agentkit import target as targets
from agentkit import tokens
from agentkit.transports import http
from agentkit.transports.fanout import EngineError, EngineSettings, SessionRun
from agentkit.wire import dialect as dialects
from agentkit.wire.masking import install_log_filter, mask, redact, reveal
from agentkit.wire.spec import SpecError

Scenario = Literal["connect", "ping", "chat"]
Users = Literal["distinct", "single"]
AuthMode = Literal["subprotocol", "bearer", "query", "none"]

PROGRESS_AFTER = 3.0     # seconds before the first progress line on the console
PROGRESS_EVERY = 2.0     # seconds between progress lines

_LABELS = (
    ("scenario", "scenario"), ("users", "users"), ("total", "sessions"), ("concurrency", "concurrency"),
    ("successful", "successful"), ("failed", "failed"), ("success_rate", "success rate %"),
    ("auth_rejected", "auth rejected"), ("timeouts", "timeouts"), ("errors", "errors"),
    ("agent_errors", "agent errors"),
    ("rule_violations", "rule violations"), ("isolation_violations", "isolation violations"),
    ("connect_p50_ms", "connect p50 ms"), ("connect_p95_ms", "connect p95 ms"), ("connect_max_ms", "connect max ms"),
    ("run_p50_ms", "run p50 ms"), ("run_p95_ms", "run p95 ms"), ("run_max_ms", "run max ms"),
    ("sessions_per_second", "sessions/s"), ("events_received", "events received"),
    ("binary_frames", "binary frames"),
    ("peak_open_connections", "peak open connections"), ("duration_s", "duration s"),
    ("violated_rules", "violated rules"), ("ramp_up_s", "ramp-up s"), ("max_handshakes", "handshakes in flight at most"),
    ("generator_lag_p95_ms", "load generator loop lag p95 ms"), ("generator_lag_max_ms", "load generator loop lag max ms"),
)


def _secs(value: timedelta | float | None) -> float | None:
    if value is None:
        return None
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items()) or "none"
    return str(value)


@library(scope="GLOBAL", auto_keywords=False)
class AgentConcurrency:
    """Fan-out sessions and their thresholds; see the module documentation for the model."""

    ROBOT_LIBRARY_SCOPE = "GLOBAL"

    @keyword
    def run_concurrent_sessions(self, count: int, concurrency: int = 50, scenario: Scenario = "chat",
                                users: Users = "distinct", session_timeout: timedelta | None = None,
                                ws_url: str | None = None, jwt_secret: Secret | str | None = None,
                                compression: bool = False, auth: AuthMode | None = None,
                                dialect: str | None = None, check_schemas: bool = True,
                                message: str = "Concurrency check: please answer briefly.",
                                ramp_up: timedelta | None = None, max_handshakes: int | None = None,
                                keepalive: timedelta | None = None) -> dict[str, Any]:
        """Runs ``count`` sessions, at most ``concurrency`` at once, and returns their statistics.

        | =Argument= | =Meaning= |
        | ``count`` | How many sessions to run in total (at least 1). |
        | ``concurrency`` | How many are open at the same time (at least 1). Default 50. |
        | ``scenario`` | ``connect``, ``ping`` or ``chat`` (default): what each session does, see the library introduction. |
        | ``users`` | ``distinct`` (default): session *i* is user ``load-user-<i>`` with its own token, so isolation is checked between users. ``single``: every session is ``load-user-0``. |
        | ``session_timeout`` | Budget for one session end to end (handshake, welcome, run), e.g. ``30s``. A session over it counts under ``timeouts``. Default: the target's ``E2E_RUN_TIMEOUT`` plus its ``E2E_CONNECT_TIMEOUT``, else 30s. |
        | ``ws_url`` | ``ws://`` or ``wss://`` URL. Default: the target's. |
        | ``jwt_secret`` | Secret that signs the test tokens (``Secret`` recommended). Default: the target's. A target with only a simulation key gets one token per user from its auth service instead. |
        | ``compression`` | Offer permessage-deflate. Off by default: it costs CPU on both ends and skews timings. |
        | ``auth`` | Token transport: ``subprotocol``, ``bearer``, ``query`` or ``none``. Default: the target's. |
        | ``dialect`` | Dialect name or file. Default: the one in force. |
        | ``check_schemas`` | Validate every agent event against its JSON Schema (rule 7). Default true. |
        | ``message`` | The user message each ``chat`` session sends. |
        | ``ramp_up`` | Spread the session starts over this time, e.g. ``10s``, so the handshakes do not all land at once. Default none. |
        | ``max_handshakes`` | Handshakes in flight at once at most (the rest wait in the kit). Default: ``concurrency``. |
        | ``keepalive`` | Send WebSocket pings this often, e.g. ``20s``. Default: none (as the step-by-step keywords). Its timeout is never shorter than the session budget, so a server busy in a long tool call is not closed by the kit; a close the client made is reported as the client's. |

        A session succeeds when it is accepted (welcome, or the dialect's setup), completes
        its scenario (for ``chat``: the run ends well, within the target's budgets, not
        with an agent error) and breaks no rule; it is judged by the same code as the
        step-by-step keywords. A refusal as the dialect describes it counts as
        ``auth_rejected``, not as an error, so a run of refusals is never mistaken for a
        pass. The statistics are logged as a table and returned as a dictionary (keys in
        the library introduction); this keyword itself fails only on bad arguments: check
        the statistics with `Concurrent Sessions Should Meet Thresholds`. When the kit's own
        event loop was the bottleneck, ``generator_saturated`` is true and ``warnings`` says
        so (also in the log and the summary).

        Runs that last more than a few seconds print ``sessions done N/M, failures F`` on
        the console every two seconds.

        Example:
        | ${stats}=    Run Concurrent Sessions    200    concurrency=50    scenario=chat    ramp_up=5s
        | Concurrent Sessions Should Meet Thresholds    ${stats}    max_connect_p95=2s
        | Should Be Equal As Integers    ${stats}[auth_rejected]    0
        """
        install_log_filter()
        settings = self._settings(count, concurrency, scenario, users, session_timeout, ws_url, jwt_secret,
                                  compression, auth, dialect, check_schemas, message, ramp_up, max_handshakes,
                                  keepalive)
        logger.info(f"Running {count} {scenario} sessions, {concurrency} at once, {users} users, against "
                    f"{settings.ws_url} (dialect {settings.dialect.name}, JWT secret {mask(settings.jwt_secret, keep=0)}, "
                    f"compression {'on' if compression else 'off'}, session timeout {settings.session_timeout:g}s, "
                    f"ramp-up {settings.ramp_up:g}s, keepalive "
                    f"{'off' if settings.keepalive is None else f'{settings.keepalive:g}s'}).")
        stats = self._wait(SessionRun(settings))
        logger.info(redact(self._html_table(stats)), html=True)
        for warning in stats.get("warnings", []):
            logger.warn(warning)
        return stats

    def _settings(self, count, concurrency, scenario, users, session_timeout, ws_url, jwt_secret, compression,
                  auth, dialect, check_schemas, message, ramp_up=None, max_handshakes=None,
                  keepalive=None) -> EngineSettings:
        tgt = targets.require() if ws_url in (None, "") else targets.current()
        if ws_url is None or ws_url == "":
            ws_url = tgt.ws_url
        secret = reveal(jwt_secret) if jwt_secret not in (None, "") else (tgt.jwt_secret if tgt else None)
        options: dict[str, Any] = {}
        if tgt is not None:
            options = {"auth_mode": tgt.auth, "token_encoding": tgt.encoding, "tls": tgt.tls,
                       "first_event_timeout": tgt.first_event_timeout, "run_timeout": tgt.run_timeout,
                       "open_timeout": tgt.connect_timeout, "grace": tgt.grace, "http_base": tgt.backend_url}
        if auth is not None:
            options["auth_mode"] = auth
        issued = None
        d = dialects.load(dialect) if dialect else dialects.current()
        mode = options.get("auth_mode") or d.connect["auth"][0]
        if mode != "none" and not secret:
            if tgt is None or not tgt.simulation_key or not tgt.has_auth_service:
                raise ValueError("Run Concurrent Sessions needs a JWT secret to sign one token per user: pass "
                                 "jwt_secret=... or resolve a target that has one (E2E_JWT_SECRET) or a "
                                 "simulation key with an auth service (E2E_OAUTH_SIMULATION_KEY, E2E_AUTH_URL).")
            issued = self._tokens_from_auth_service(tgt, count if users == "distinct" else 1)
        if session_timeout is None:
            timeout = (tgt.run_timeout + tgt.connect_timeout) if tgt is not None else 30.0
        else:
            timeout = _secs(session_timeout)
        try:
            return EngineSettings(ws_url=ws_url, jwt_secret=secret, tokens=issued, count=count, concurrency=concurrency,
                                  scenario=scenario, users=users, session_timeout=timeout,
                                  compression=compression, dialect=d, check_schemas=check_schemas,
                                  message=message, ramp_up=_secs(ramp_up) or 0.0, max_handshakes=max_handshakes,
                                  keepalive=_secs(keepalive), **options).validate()
        except (EngineError, SpecError, dialects.DialectError) as err:
            raise ValueError(str(err)) from None

    @staticmethod
    def _tokens_from_auth_service(tgt, users: int) -> dict[str, str]:
        """One token per simulated user from the target's auth service (user ids as the engine names them)."""
        issued: dict[str, str] = {}
        for index in range(users):
            user_id = f"{EngineSettings.user_prefix}{index}"
            try:
                status, body, url = tokens.request_test_token(tgt, f"{user_id}@e2e.test", tgt.simulation_key)
            except http.HttpFailure as err:
                raise AssertionError(str(err)) from None
            field = tgt.dialect.auth_service.get("token_field", "access_token")
            if status != 200 or not isinstance(body, dict) or not body.get(field):
                raise AssertionError(f"Auth service {url} did not issue a token for {user_id}: HTTP {status}.")
            issued[user_id] = body[field]
        logger.info(f"Got {len(issued)} token(s) from the auth service at {tgt.auth_url}.")
        return issued

    def _wait(self, run: SessionRun) -> dict[str, Any]:
        """Wait in the main thread (Robot logs only from it), printing progress now and then."""
        started = time.monotonic()
        last = started
        run.start()
        try:
            while True:
                try:
                    return run.result(timeout=0.25)
                except concurrent.futures.TimeoutError:
                    now = time.monotonic()
                    if now - started >= PROGRESS_AFTER and now - last >= PROGRESS_EVERY:
                        last = now
                        logger.console(f"sessions done {run.done}/{run.total}, failures {run.failures}")
        finally:
            run.cancel()  # no-op when finished; on an interrupt it closes every socket and the loop

    @staticmethod
    def _html_table(stats: dict[str, Any]) -> str:
        ok = stats.get("failed", 0) == 0 and stats.get("total", 0) > 0
        colour = "#d4edda" if ok else "#f8d7da"
        rows = "".join(f"<tr><th style=\"text-align:left\">{html.escape(label)}</th>"
                       f"<td>{html.escape(_fmt(stats.get(key)))}</td></tr>" for key, label in _LABELS)
        errors = stats.get("first_errors") or []
        if errors:
            items = "".join(f"<li>{html.escape(e)}</li>" for e in errors)
            rows += f'<tr><th style="text-align:left">first errors</th><td><ul>{items}</ul></td></tr>'
        return (f'<b>Concurrent sessions: {stats.get("successful")}/{stats.get("total")} successful</b>'
                f'<table class="concurrency-stats" border="1" style="border-collapse:collapse;'
                f'font-family:monospace;font-size:12px;background:{colour}">{rows}</table>')

    @keyword
    def concurrent_sessions_should_meet_thresholds(self, stats: dict, min_success_rate: float = 100,
                                                   max_connect_p95: timedelta | None = timedelta(seconds=2),
                                                   max_run_p95: timedelta | None | str = "target",
                                                   max_isolation_violations: int = 0,
                                                   max_rule_violations: int | None = None) -> None:
        """Fails, listing every breached threshold, when the statistics fall short.

        | =Argument= | =Meaning= |
        | ``stats`` | The dictionary `Run Concurrent Sessions` returned. |
        | ``min_success_rate`` | Lowest acceptable share of successful sessions, in percent. Default ``100``. |
        | ``max_connect_p95`` | Highest acceptable 95th percentile of handshake + welcome time, e.g. ``2s``. ``None`` skips it. |
        | ``max_run_p95`` | Highest acceptable 95th percentile of the scenario's run time (message to terminal event; ping round trip). Default: the target's run budget (``E2E_RUN_TIMEOUT``), else 30s. ``None`` skips it. Not checked for ``connect``. |
        | ``max_isolation_violations`` | Highest acceptable count of events a connection received from another user's run. Default ``0``. |
        | ``max_rule_violations`` | Highest acceptable count of protocol-rule violations; not checked by default (they already lower the success rate). |

        The failure message shows each breached threshold with the actual and the expected
        value, how the failed sessions split up (auth rejected, timeouts, errors, rule
        and isolation violations), and the first distinct errors.

        Example:
        | ${stats}=    Run Concurrent Sessions    1000    concurrency=1000
        | Concurrent Sessions Should Meet Thresholds    ${stats}    min_success_rate=99.5    max_connect_p95=3s    max_run_p95=10s
        """
        missing = [k for k in ("total", "successful", "failed", "isolation_violations") if k not in stats]
        if missing:
            raise ValueError(f"Statistics lack {', '.join(missing)}: pass the dictionary that "
                             f"'Run Concurrent Sessions' returned.")
        total, successful = int(stats["total"]), int(stats["successful"])
        rate = 100.0 * successful / total if total else 0.0
        breaches: list[str] = []
        if rate < float(min_success_rate):
            breaches.append(
                f"success rate {rate:.2f}% ({successful}/{total} sessions), expected at least "
                f"{float(min_success_rate):g}%: {stats['failed']} failed (auth rejected {stats.get('auth_rejected', 0)}, "
                f"timeouts {stats.get('timeouts', 0)}, errors {stats.get('errors', 0)}, agent errors "
                f"{stats.get('agent_errors', 0)}, rule violations "
                f"{stats.get('rule_violations', 0)}, isolation violations {stats.get('isolation_violations', 0)})")
        for key, label, limit in (("connect_p95_ms", "connect p95", max_connect_p95),
                                  ("run_p95_ms", "run p95", max_run_p95)):
            if isinstance(limit, str):  # "target": the run budget the target set
                tgt = targets.current()
                limit = timedelta(seconds=tgt.run_timeout if tgt is not None else 30.0)
            limit_s = _secs(limit)
            if limit_s is None or (key == "run_p95_ms" and stats.get("scenario") == "connect"):
                continue
            actual = stats.get(key)
            if actual is None:
                breaches.append(f"{label} unknown (no session got that far), expected at most {limit_s * 1000:g} ms")
            elif float(actual) > limit_s * 1000:
                breaches.append(f"{label} {float(actual):g} ms, expected at most {limit_s * 1000:g} ms")
        iso = int(stats["isolation_violations"])
        if iso > max_isolation_violations:
            sessions = stats.get("isolation_sessions")
            who = f" on {sessions} of {total} sessions" if sessions is not None else ""
            breaches.append(f"Rule 5 (isolation) violated: {iso} foreign event(s){who} (events of runs a connection "
                            f"did not start; each event counts once), expected at most {max_isolation_violations}")
        rules = int(stats.get("rule_violations", 0))
        if max_rule_violations is not None and rules > max_rule_violations:
            breaches.append(f"rule violations {rules} ({_fmt(stats.get('violated_rules', {}))}), "
                            f"expected at most {max_rule_violations}")
        if not breaches:
            logger.info(f"All thresholds met: {successful}/{total} successful, connect p95 "
                        f"{_fmt(stats.get('connect_p95_ms'))} ms, run p95 {_fmt(stats.get('run_p95_ms'))} ms, "
                        f"isolation violations {iso}.")
            return
        head = (f"Concurrent sessions breached {len(breaches)} threshold{'s' if len(breaches) > 1 else ''} "
                f"({stats.get('scenario', '?')}, {total} sessions, concurrency {stats.get('concurrency', '?')}):")
        lines = [head] + [f"- {b}" for b in breaches]
        errors = stats.get("first_errors") or []
        if errors:
            lines.append("First errors:")
            lines += [f"  {e}" for e in errors]
        for warning in stats.get("warnings") or []:
            lines.append(f"WARNING: {warning}")
        raise AssertionError(redact("\n".join(lines)))
