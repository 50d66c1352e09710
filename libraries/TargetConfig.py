"""Which backend the suites test, resolved once, validated once, printed in the report.

The library documentation (what libdoc shows) is the docstring of :class:`TargetConfig`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import urlsplit

from robot.api import logger
from robot.api.deco import keyword, library
from robot.libraries.BuiltIn import BuiltIn
from robot.utils import timestr_to_secs

from agentkit import dialect as dialects
from agentkit import target as targets
from agentkit.masking import as_secret
from agentkit.process import PROJECT_ROOT, BackendProcess, BackendStartError
from agentkit.target import Target

PROFILES = PROJECT_ROOT / "resources" / "profiles"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class ConfigurationError(AssertionError):
    """The configuration cannot be used; the message names every problem at once."""

    ROBOT_SUPPRESS_NAME = True


def _profile(name: str) -> dict:
    path = PROFILES / f"{name}.json"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PROFILES.glob("*.json")))
        raise ConfigurationError(f"Configuration invalid: E2E_TARGET '{name}' is not a known profile: "
                                 f"expected one of {known} (files in {PROFILES}).")
    return json.loads(path.read_text(encoding="utf-8"))


def _http_url(name: str, value: str, problems: list[str]) -> str | None:
    parts = urlsplit(value)
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        problems.append(f"{name} '{value}' is malformed: expected http(s)://host[:port]")
        return None
    return value.rstrip("/")


def _ws_url(name: str, value: str, problems: list[str]) -> str | None:
    parts = urlsplit(value)
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    if parts.scheme not in ("ws", "wss") or not parts.hostname or not port_ok:
        problems.append(f"{name} '{value}' is malformed: expected ws(s)://host[:port]/path")
        return None
    return value


def _seconds(name: str, value: str, problems: list[str]) -> float | None:
    try:
        secs = timestr_to_secs(value)
    except (ValueError, TypeError):
        problems.append(f"{name} '{value}' is not a time: expected a Robot time string such as 2s or 1 min 30 s")
        return None
    if secs <= 0:
        problems.append(f"{name} '{value}' must be positive")
        return None
    return secs


def _choice(name: str, value: str, choices: tuple[str, ...], problems: list[str]) -> str:
    if value not in choices:
        problems.append(f"{name} '{value}' is not valid: expected one of {', '.join(choices)}")
    return value


@library(scope="GLOBAL", auto_keywords=False)
class TargetConfig:
    """Which backend the suites test, resolved once, validated once, printed in the report.

    ``E2E_TARGET`` (or ``--variable TARGET:<name>``) picks a profile from
    ``resources/profiles/``: ``local`` (default) starts the embedded reference backend on a
    free loopback port and stops it at the end; a remote profile such as ``staging`` takes
    its URLs and secrets from the environment and never falls back to localhost.

    For ``local``, importing this library in a run already launches the backend, so it
    boots while Robot imports the other libraries; ``Resolve Target`` adopts it (and
    validates everything, once). Nothing is launched for a dry run, a remote profile or
    a configuration with problems; a backend that is never adopted is stopped at the end.
    Import this library before the others to get the most out of it.

    | =Variable= | =Meaning= |
    | ``E2E_TARGET`` | Profile name: ``local`` (default), ``staging``, or any ``resources/profiles/<name>.json``. |
    | ``E2E_BACKEND_URL`` | Backend base URL, ``http(s)://host[:port]``. Required for remote profiles. |
    | ``E2E_WS_URL`` | WebSocket URL; default derived from the backend URL (``http``->``ws``, ``https``->``wss``, plus ``/ws``). |
    | ``E2E_AUTH_URL`` | Auth service base URL. Required for remote profiles. |
    | ``E2E_JWT_SECRET`` | HS256 secret to sign test tokens. This and/or the simulation key is required. |
    | ``E2E_OAUTH_SIMULATION_KEY`` | Key for ``POST /auth/e2e/test-auth``. |
    | ``E2E_FIRST_EVENT_TIMEOUT`` | Robot time string, default ``2s``. |
    | ``E2E_RUN_TIMEOUT`` | Robot time string, default ``30s``. |
    | ``E2E_CONNECT_TIMEOUT`` | Handshake plus welcome frame, Robot time string, default ``10s``. |
    | ``E2E_AUTH_MODE`` | ``subprotocol`` (default), ``bearer`` or ``query``. |
    | ``E2E_DIALECT`` | Event dialect name or file (default ``default``). |
    | ``E2E_SIMULATION_KEY_HEADER`` | Default ``X-E2E-OAuth-Simulation-Key``. |
    | ``E2E_TOKEN_ENCODING`` | ``raw`` (default) or ``base64url`` token inside the subprotocol. |
    | ``E2E_VERIFY_TLS`` | ``true`` (default) or ``false``; ``E2E_CA_FILE`` trusts a CA bundle. |
    | ``E2E_CONCURRENT_USERS`` | Users in the concurrency suite, default ``20``. |
    | ``E2E_MIN_SUCCESS_RATE`` | Percent, default ``100``. |
    | ``E2E_MAX_CONNECT_P95`` | Robot time string, default ``2s``. |
    """

    ROBOT_LISTENER_API_VERSION = 3

    def __init__(self) -> None:
        self.ROBOT_LIBRARY_LISTENER = self
        self.backend: BackendProcess | None = None
        self._owner_suite: str | None = None
        self._early: tuple[dict, BackendProcess] | None = None
        self._launch_early()

    # Robot imports this library while it sets up the top suite, before the suites' other
    # libraries. Launching the embedded backend here lets its boot (about 0.25 s, mostly
    # importing FastAPI) overlap that work; Resolve Target adopts it if the configuration
    # it resolves is the same, and validation still happens there, once.
    def _launch_early(self) -> None:
        builtin = BuiltIn()
        if not builtin.robot_running or builtin.dry_run_active:
            return
        try:
            name = self._target_name(None, os.environ)
            profile = _profile(name)
            problems: list[str] = []
            self._common(profile, dict(os.environ), problems)
            if profile.get("kind") != "embedded" or problems:
                return
            spec = self._backend_spec(profile)
            self._early = (spec, BackendProcess(**spec).launch())
        except Exception:  # noqa: BLE001 - Resolve Target reports every problem with its context
            self._drop_early()

    def _drop_early(self) -> None:
        early, self._early = self._early, None
        if early is not None:
            early[1].stop()

    def _target_name(self, name: str | None, environ) -> str:
        if name is None and self._in_robot():
            name = BuiltIn().get_variable_value("${TARGET}", None)
        return (name or environ.get("E2E_TARGET") or "local").strip()

    def _backend_spec(self, profile: dict) -> dict:
        out = self._output_dir()
        log = out / "reference-backend.log" if out else None
        faults = [f.strip() for f in os.environ.get("E2E_REFERENCE_FAULTS", "").split(",") if f.strip()]
        return {"faults": faults, "think_delay": float(profile.get("think_delay", 0.005)),
                "tools": int(profile.get("tools", 1)), "log_file": log}

    # Stop the embedded backend when the suite that started it ends, even if its
    # teardown never ran (e.g. the run was interrupted).
    def end_suite(self, data, result) -> None:
        if self._owner_suite is not None and data.longname == self._owner_suite:
            self.release_target()

    def close(self) -> None:  # Robot calls this at the end of the library's scope
        self.release_target()

    @keyword
    def resolve_target(self, name: str | None = None, env: dict | None = None) -> Target:
        """Resolves and validates the target once, before any connection, and returns it.

        ``name`` defaults to ``${TARGET}`` if set, else ``E2E_TARGET``, else ``local``.
        Every missing or malformed value is named in one failure. For ``local`` the
        embedded reference backend is started. The resolved target (profile, URLs, auth
        mode; secrets masked) is written to the top suite's metadata and the console.

        Example (suite setup of ``__init__.robot``):
        | Resolve Target
        """
        environ = dict(os.environ if env is None else env)
        name = self._target_name(name, environ)
        if targets.current() is not None and targets.current().profile == name and (
                self.backend is None or self.backend.alive()):
            return targets.current()
        profile = _profile(name)
        problems: list[str] = []
        common = self._common(profile, environ, problems)
        if profile.get("kind") == "embedded":
            target = self._embedded(name, profile, common, problems)
        else:
            target = self._remote(name, profile, environ, common, problems)
        self._drop_early()  # an early backend the resolved target did not adopt is not needed
        if target is None:
            raise ConfigurationError(
                f"Configuration invalid for target '{name}' ({len(problems)} problem{'s' * (len(problems) != 1)}); "
                "nothing was connected:\n- " + "\n- ".join(problems))
        targets.set_current(target)
        try:
            dialects.use(target.dialect)
        except dialects.DialectError as err:
            raise ConfigurationError(f"Configuration invalid: E2E_DIALECT: {err}") from None
        self._publish(target)
        return target

    def _in_robot(self) -> bool:
        try:
            BuiltIn().get_variables()
            return True
        except Exception:  # noqa: BLE001 - not running inside Robot (unit tests)
            return False

    def _common(self, profile: dict, environ: dict, problems: list[str]) -> dict:
        def get(var, key, default):
            return environ.get(var) or str(profile.get(key, default))
        out = {
            "first_event_timeout": _seconds("E2E_FIRST_EVENT_TIMEOUT", get("E2E_FIRST_EVENT_TIMEOUT", "first_event_timeout", "2s"), problems),
            "run_timeout": _seconds("E2E_RUN_TIMEOUT", get("E2E_RUN_TIMEOUT", "run_timeout", "30s"), problems),
            "connect_timeout": _seconds("E2E_CONNECT_TIMEOUT", get("E2E_CONNECT_TIMEOUT", "connect_timeout", "10s"),
                                        problems),
            "auth_mode": _choice("E2E_AUTH_MODE", get("E2E_AUTH_MODE", "auth_mode", "subprotocol"),
                                 ("subprotocol", "bearer", "query"), problems),
            "token_encoding": _choice("E2E_TOKEN_ENCODING", get("E2E_TOKEN_ENCODING", "token_encoding", "raw"),
                                      ("raw", "base64url"), problems),
            "dialect": get("E2E_DIALECT", "dialect", "default"),
            "simulation_key_header": get("E2E_SIMULATION_KEY_HEADER", "simulation_key_header", "X-E2E-OAuth-Simulation-Key"),
            "verify_tls": _choice("E2E_VERIFY_TLS", get("E2E_VERIFY_TLS", "verify_tls", "true").lower(),
                                  ("true", "false"), problems) == "true",
            "ca_file": environ.get("E2E_CA_FILE") or None,
        }
        try:  # with the other problems, before anything is started or set
            dialects.Dialect.load(out["dialect"])
        except dialects.DialectError as err:
            problems.append(f"E2E_DIALECT: {err}")
        if out["ca_file"] and not Path(out["ca_file"]).is_file():
            problems.append(f"E2E_CA_FILE '{out['ca_file']}' does not exist or is not a file")
        extra = {
            "concurrent_users": environ.get("E2E_CONCURRENT_USERS") or str(profile.get("concurrent_users", 20)),
            "min_success_rate": environ.get("E2E_MIN_SUCCESS_RATE") or str(profile.get("min_success_rate", 100)),
            "max_connect_p95": environ.get("E2E_MAX_CONNECT_P95") or str(profile.get("max_connect_p95", "2s")),
        }
        if not extra["concurrent_users"].isdigit() or int(extra["concurrent_users"]) < 1:
            problems.append(f"E2E_CONCURRENT_USERS '{extra['concurrent_users']}' is not valid: expected a whole number >= 1")
        try:
            rate = float(extra["min_success_rate"])
            if not 0 <= rate <= 100:
                raise ValueError
        except ValueError:
            problems.append(f"E2E_MIN_SUCCESS_RATE '{extra['min_success_rate']}' is not valid: expected a percent 0-100")
        _seconds("E2E_MAX_CONNECT_P95", extra["max_connect_p95"], problems)
        out["extra"] = extra
        return out

    def _embedded(self, name: str, profile: dict, common: dict, problems: list[str]) -> Target | None:
        if problems:
            return None
        spec = self._backend_spec(profile)
        faults = spec["faults"]
        early, self._early = self._early, None
        if early is not None and early[0] == spec and early[1].alive():
            self.backend = early[1]
        else:
            if early is not None:
                early[1].stop()
            self.backend = BackendProcess(**spec).launch()
        try:
            self.backend.wait_ready()
        except BackendStartError as err:
            raise ConfigurationError(f"Target '{name}': {err}") from None
        if self._in_robot():
            self._owner_suite = BuiltIn().get_variable_value("${SUITE NAME}")
        url = self.backend.url
        return Target(profile=name, backend_url=url, ws_url=self.backend.ws_url, auth_url=url,
                      jwt_secret=self.backend.jwt_secret, simulation_key=self.backend.simulation_key,
                      extra=dict(common.pop("extra"), faults=",".join(faults) or "none",
                                 backend_pid=str(self.backend.pid)), **common)

    def _remote(self, name: str, profile: dict, environ: dict, common: dict, problems: list[str]) -> Target | None:
        backend = environ.get("E2E_BACKEND_URL", "").strip()
        auth = environ.get("E2E_AUTH_URL", "").strip()
        ws = environ.get("E2E_WS_URL", "").strip()
        secret = environ.get("E2E_JWT_SECRET") or None
        key = environ.get("E2E_OAUTH_SIMULATION_KEY") or None
        missing = [v for v, val in (("E2E_BACKEND_URL", backend), ("E2E_AUTH_URL", auth)) if not val]
        if not secret and not key:
            missing.append("E2E_JWT_SECRET and/or E2E_OAUTH_SIMULATION_KEY")
        problems[:0] = [f"{v} is not set" for v in missing]
        backend_url = _http_url("E2E_BACKEND_URL", backend, problems) if backend else None
        auth_url = _http_url("E2E_AUTH_URL", auth, problems) if auth else None
        if ws:
            ws_url = _ws_url("E2E_WS_URL", ws, problems)
        elif backend_url:
            scheme = "wss" if backend_url.startswith("https") else "ws"
            ws_url = f"{scheme}://{backend_url.split('://', 1)[1]}/ws"
        else:
            ws_url = None
        if problems:
            return None
        token_source = "jwt" if secret else "auth-service"
        return Target(profile=name, backend_url=backend_url, ws_url=ws_url, auth_url=auth_url, jwt_secret=secret,
                      simulation_key=key, token_source=token_source,
                      extra=dict(common.pop("extra"), faults="n/a"), **common)

    def _output_dir(self) -> Path | None:
        if not self._in_robot():
            return None
        out = BuiltIn().get_variable_value("${OUTPUT DIR}")
        return Path(out) if out else None

    def _publish(self, target: Target) -> None:
        described = target.describe()
        is_loopback = urlsplit(target.backend_url).hostname in LOOPBACK
        where = "embedded reference backend" if target.profile == "local" else target.profile
        line = (f"Target: {where} | backend {target.backend_url} | ws {target.ws_url} | auth {target.auth_url} | "
                f"auth mode {target.auth_mode}, tokens from {target.token_source}")
        if target.profile != "local" and is_loopback:
            line += " | NOTE: a remote profile pointed at loopback by configuration"
        logger.info(line)
        if not self._in_robot():
            return
        logger.console(line)
        builtin = BuiltIn()
        builtin.set_suite_metadata("Target", where, top=True)
        for key in ("backend_url", "ws_url", "auth_url", "auth_mode", "token_source", "jwt_secret",
                    "simulation_key", "first_event_timeout", "run_timeout", "connect_timeout", "dialect"):
            builtin.set_suite_metadata(f"Target {key.replace('_', ' ')}", described[key], top=True)
        if target.profile == "local":
            builtin.set_suite_metadata("Target faults", target.extra.get("faults", "none"), top=True)
        for key, value in target.extra.items():
            builtin.set_global_variable(f"${{E2E_{key.upper()}}}", value)
        builtin.set_global_variable("${BACKEND_URL}", target.backend_url)
        builtin.set_global_variable("${WS_URL}", target.ws_url)
        builtin.set_global_variable("${AUTH_URL}", target.auth_url)
        builtin.set_global_variable("${TOKEN_SOURCE}", target.token_source)
        builtin.set_global_variable("${HAS_JWT_SECRET}", bool(target.jwt_secret))
        builtin.set_global_variable("${HAS_SIMULATION_KEY}", bool(target.simulation_key))
        if target.simulation_key:
            builtin.set_global_variable("${SIMULATION_KEY}", as_secret(target.simulation_key))

    @keyword
    def get_target_setting(self, name: str) -> str:
        """Returns one setting of the resolved target (secrets masked), e.g. ``ws_url``."""
        tgt = targets.current()
        if tgt is None:
            raise ValueError("No target resolved: call 'Resolve Target' first.")
        described = dict(tgt.describe(), **tgt.extra)
        if name not in described:
            raise ValueError(f"Unknown target setting '{name}': expected one of {', '.join(sorted(described))}.")
        return described[name]

    @keyword
    def release_target(self, wait: bool = True) -> None:
        """Stops the embedded backend if this run started it. Safe to call more than once.

        With ``wait=False`` the backend is sent its stop signal now and Robot waits for its
        exit when Robot itself exits, so the backend shuts down while Robot writes its
        output, log and report. It is stopped either way before Robot exits.

        Example (suite teardown of ``__init__.robot``):
        | Release Target    wait=False
        """
        backend, self.backend = self.backend, None
        self._owner_suite = None
        self._drop_early()
        if backend is not None:
            if wait:
                code = backend.stop()
                message = f"stopped, exit code {code}"
            else:
                backend.terminate()
                message = "stopped by SIGTERM; Robot waits for its exit before exiting itself"
            if self._in_robot():
                logger.info(f"Embedded reference backend (pid {backend.pid}) {message}.")
        targets.set_current(None)
