"""The resolved target: which backend the suites test, validated once, read by every keyword.

:func:`resolve` turns a profile (``resources/profiles/<name>.json``) and the environment
into a :class:`Target`, naming every problem at once (:class:`ConfigurationError`). For
the ``local`` profile it starts the embedded reference backend. :func:`require` is what
keywords call: it returns the resolved target, resolving it on first use when no suite
setup did, so a single suite file or a new folder of tests runs as written.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from robot.utils import timestr_to_secs

from .transports.process import PROJECT_ROOT, BackendProcess, BackendStartError
from .wire import dialect as dialects
from .wire.masking import REDACTOR, mask
from .wire.session import DEFAULT_GRACE
from .wire.spec import AUTH_MODES, ConnectionSpec, SpecError, default_ws_url, ws_base
from .transports.http import probe
from .wire.tls import TLSConfig

PROFILES = PROJECT_ROOT / "resources" / "profiles"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
WIRES = ("default", "netra", "ag-ui")  # the wires the embedded reference backend speaks


class ConfigurationError(AssertionError):
    """The configuration cannot be used; the message names every problem at once."""

    ROBOT_SUPPRESS_NAME = True


@dataclass
class Target:
    """Where the suites point and how they authenticate.

    ``profile`` is ``local`` (the embedded reference backend) or a remote profile name.
    Secrets are plain strings here; only masked forms ever leave this object
    (:meth:`describe`). Settings left ``None`` come from the dialect."""

    profile: str
    backend_url: str
    ws_url: str
    auth_url: str | None
    jwt_secret: str | None = None
    simulation_key: str | None = None
    token_source: str = "jwt"          # "jwt": sign locally; "auth-service": POST the simulation key
    dialect_name: str = "default"
    auth_mode: str | None = None
    token_encoding: str | None = None
    simulation_key_header: str | None = None
    first_event_timeout: float = 2.0
    run_timeout: float = 30.0
    connect_timeout: float = 10.0
    grace: float = DEFAULT_GRACE
    tls: TLSConfig = field(default_factory=TLSConfig)
    agent_api: bool = True
    auth_service: bool = True
    settings: dict = field(default_factory=dict)
    embedded: bool = False
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        REDACTOR.add(self.jwt_secret, keep=0)
        REDACTOR.add(self.simulation_key, keep=0)

    def __repr__(self) -> str:
        """Masked, like :meth:`describe`: Robot logs a keyword's return value at TRACE level."""
        return "Target(" + ", ".join(f"{k}={v!r}" for k, v in self.describe().items()) + ")"

    @property
    def dialect(self) -> dialects.Dialect:
        """The dialect in force: the target's, unless ``Use Event Dialect`` switched it."""
        return dialects.current()

    @property
    def auth(self) -> str:
        return self.auth_mode or self.dialect.connect["auth"][0]

    @property
    def encoding(self) -> str:
        return self.token_encoding or self.dialect.connect.get("token_encoding", "raw")

    @property
    def key_header(self) -> str:
        return (self.simulation_key_header or self.dialect.auth_service.get("simulation_key_header")
                or "X-E2E-OAuth-Simulation-Key")

    @property
    def has_auth_service(self) -> bool:
        return bool(self.auth_service and self.auth_url)

    @property
    def verify_tls(self) -> bool:
        return self.tls.verify

    def connection_spec(self, token: str | None, auth: str | None = None, url: str | None = None,
                        headers: dict | None = None, timeout: float | None = None,
                        thread_id: str = "") -> ConnectionSpec:
        """The handshake of one connection to this target, as its dialect describes it."""
        d = self.dialect
        connect = d.connect
        if url is None:
            from .wire.paths import render

            url = render(connect.get("url", "{ws_url}"),
                         d.template_values(ws_url=self.ws_url, ws_base=ws_base(self.ws_url), thread_id=thread_id))
        return ConnectionSpec(url=url, token=token, auth=auth or self.auth,
                              subprotocols_template=connect.get("subprotocols", ["jwt-auth", "jwt.{token}"]),
                              token_encoding=self.encoding, query_param=connect.get("query_param", "token"),
                              headers=dict(connect.get("headers", {}), **(headers or {})), tls=self.tls,
                              open_timeout=self.connect_timeout if timeout is None else timeout)

    def describe(self) -> dict[str, str]:
        """Report metadata: every setting, secrets masked."""
        return {
            "profile": self.profile, "backend_url": self.backend_url, "ws_url": self.ws_url,
            "auth_url": self.auth_url or "(none: no auth service)",
            "jwt_secret": mask(self.jwt_secret, keep=0) if self.jwt_secret else "(not set)",
            "simulation_key": mask(self.simulation_key, keep=0) if self.simulation_key else "(not set)",
            "token_source": self.token_source, "dialect": f"{self.dialect_name}",
            "auth_mode": self.auth, "token_encoding": self.encoding, "simulation_key_header": self.key_header,
            "first_event_timeout": f"{self.first_event_timeout:g}s", "run_timeout": f"{self.run_timeout:g}s",
            "connect_timeout": f"{self.connect_timeout:g}s", "run_grace": f"{self.grace:g}s",
            "tls": self.tls.describe() if _is_tls(self) else "not used (plain http/ws)",
            "agent_api": str(self.agent_api).lower(), "auth_service": str(self.has_auth_service).lower(),
        }


def _is_tls(target: Target) -> bool:
    return any(u and u.startswith(("https://", "wss://")) for u in (target.backend_url, target.ws_url, target.auth_url))


# --- validation helpers --------------------------------------------------------------
def _url(name: str, value: str, schemes: tuple[str, str], shape: str, problems: list[str]) -> str | None:
    parts = urlsplit(value)
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    if parts.scheme not in schemes or not parts.hostname or not port_ok:
        problems.append(f"{name} '{value}' is malformed: expected {shape}")
        return None
    return value


def _http_url(name: str, value: str, problems: list[str]) -> str | None:
    url = _url(name, value, ("http", "https"), "http(s)://host[:port]", problems)
    return url.rstrip("/") if url else None


def _ws_url(name: str, value: str, problems: list[str]) -> str | None:
    return _url(name, value, ("ws", "wss"), "ws(s)://host[:port]/path", problems)


def _seconds(name: str, value: str, problems: list[str], allow_zero: bool = False) -> float | None:
    try:
        secs = timestr_to_secs(value)
    except (ValueError, TypeError):
        problems.append(f"{name} '{value}' is not a time: expected a Robot time string such as 2s or 1 min 30 s")
        return None
    if secs < 0 or (secs == 0 and not allow_zero):
        problems.append(f"{name} '{value}' must be {'zero or ' if allow_zero else ''}positive")
        return None
    return secs


def _choice(name: str, value: str | None, choices: tuple[str, ...], problems: list[str]) -> str | None:
    if value is None:
        return None
    if value not in choices:
        problems.append(f"{name} '{value}' is not valid: expected one of {', '.join(choices)}")
    return value


def _bool(name: str, value: str | None, problems: list[str]) -> bool | None:
    if value is None:
        return None
    lowered = str(value).strip().lower()
    if lowered not in ("true", "false"):
        problems.append(f"{name} '{value}' is not valid: expected true or false")
        return None
    return lowered == "true"


#: Settings that point at a deployed backend: with one set and no target named, the
#: remote profile is meant, never the embedded backend.
REMOTE_URL_SETTINGS = ("E2E_BACKEND_URL", "E2E_WS_URL", "E2E_AUTH_URL")


def target_name(name: str | None, environ: dict) -> str:
    """The profile to resolve: ``name``, else ``E2E_TARGET``, else ``staging`` when a backend
    URL is set (``E2E_BACKEND_URL``, ``E2E_WS_URL``), else ``local``."""
    chosen = (name or environ.get("E2E_TARGET") or "").strip()
    if chosen:
        return chosen
    if any((environ.get(k) or "").strip() for k in REMOTE_URL_SETTINGS[:2]):
        return "staging"
    return "local"


def profile_of(name: str) -> dict:
    path = PROFILES / f"{name}.json"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PROFILES.glob("*.json")))
        raise ConfigurationError(f"Configuration invalid: E2E_TARGET '{name}' is not a known profile: "
                                 f"expected one of {known} (files in {PROFILES}).")
    return json.loads(path.read_text(encoding="utf-8"))


class Settings:
    """One setting's value: the environment first, then the profile, then a default."""

    def __init__(self, profile: dict, environ: dict) -> None:
        self.profile, self.environ = profile, environ

    def get(self, var: str, key: str, default: Any = None) -> Any:
        value = self.environ.get(var)
        if value not in (None, ""):
            return value
        value = self.profile.get(key)
        return default if value is None else str(value) if not isinstance(value, str) else value


def common(profile: dict, environ: dict, problems: list[str], check_dialect: bool = True) -> dict:
    """Every setting shared by local and remote profiles, checked; problems appended.

    ``check_dialect=False`` leaves the dialect file unchecked (the early launch of the
    embedded backend: resolving checks it, while the backend boots)."""
    s = Settings(profile, environ)
    out: dict[str, Any] = {
        "first_event_timeout": _seconds("E2E_FIRST_EVENT_TIMEOUT", s.get("E2E_FIRST_EVENT_TIMEOUT", "first_event_timeout", "2s"), problems),
        "run_timeout": _seconds("E2E_RUN_TIMEOUT", s.get("E2E_RUN_TIMEOUT", "run_timeout", "30s"), problems),
        "connect_timeout": _seconds("E2E_CONNECT_TIMEOUT", s.get("E2E_CONNECT_TIMEOUT", "connect_timeout", "10s"), problems),
        "grace": _seconds("E2E_RUN_GRACE", s.get("E2E_RUN_GRACE", "run_grace", f"{DEFAULT_GRACE}s"), problems,
                          allow_zero=True),
        "auth_mode": _choice("E2E_AUTH_MODE", s.get("E2E_AUTH_MODE", "auth_mode"), AUTH_MODES[:3], problems),
        "token_encoding": _choice("E2E_TOKEN_ENCODING", s.get("E2E_TOKEN_ENCODING", "token_encoding"),
                                  ("raw", "base64url"), problems),
        "simulation_key_header": s.get("E2E_SIMULATION_KEY_HEADER", "simulation_key_header"),
    }
    verify = _bool("E2E_VERIFY_TLS", s.get("E2E_VERIFY_TLS", "verify_tls", "true"), problems)
    tls = TLSConfig(verify=verify is not False, ca=s.get("E2E_CA_FILE", "ca_file"),
                    client_cert=s.get("E2E_CLIENT_CERT", "client_cert"), client_key=s.get("E2E_CLIENT_KEY", "client_key"))
    problems.extend(tls.problems())
    out["tls"] = tls
    wire = s.get("E2E_REFERENCE_WIRE", "wire")
    name = s.get("E2E_DIALECT", "dialect") or (wire if profile.get("kind") == "embedded" and wire else "default")
    out["dialect_name"] = name
    dialect = None
    try:
        dialect = dialects.load(name) if check_dialect else None
    except dialects.DialectError as err:
        problems.append(f"E2E_DIALECT: {err}")
    if dialect is not None:
        settings = {}
        for key, default in dialect.spec.get("settings", {}).items():
            settings[key] = s.get(f"E2E_{key.upper()}", key, default)
        out["settings"] = settings
        accepted = dialect.connect["auth"]
        if out["auth_mode"] in AUTH_MODES and out["auth_mode"] not in accepted:  # a bad value is named above
            problems.append(f"E2E_AUTH_MODE '{out['auth_mode']}' is not one the dialect '{dialect.name}' accepts: "
                            f"expected one of {', '.join(accepted)} (its connect/auth)")
        http = dialect.http
        out["agent_api"] = _bool("E2E_AGENT_API", s.get("E2E_AGENT_API", "agent_api"), problems)
        out["auth_service"] = _bool("E2E_AUTH_SERVICE", s.get("E2E_AUTH_SERVICE", "auth_service"), problems)
        out["agent_api"] = http.get("agent_api", True) if out["agent_api"] is None else out["agent_api"]
        out["auth_service"] = http.get("auth_service", True) if out["auth_service"] is None else out["auth_service"]
    extra = {
        "concurrent_users": s.get("E2E_CONCURRENT_USERS", "concurrent_users", "20"),
        "min_success_rate": s.get("E2E_MIN_SUCCESS_RATE", "min_success_rate", "100"),
        "max_connect_p95": s.get("E2E_MAX_CONNECT_P95", "max_connect_p95", "2s"),
    }
    if not str(extra["concurrent_users"]).isdigit() or int(extra["concurrent_users"]) < 1:
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


def backend_spec(profile: dict, environ: dict, output_dir: Path | None, problems: list[str] | None = None) -> dict:
    """How to start the embedded backend for a local profile (compared to adopt an early launch)."""
    s = Settings(profile, environ)
    faults = [f.strip() for f in (environ.get("E2E_REFERENCE_FAULTS") or "").split(",") if f.strip()]
    wire = s.get("E2E_REFERENCE_WIRE", "wire")
    if wire is None:
        name = s.get("E2E_DIALECT", "dialect")
        wire = name if name in WIRES else "default"
    if wire not in WIRES and problems is not None:
        problems.append(f"E2E_REFERENCE_WIRE '{wire}' is not valid: expected one of {', '.join(WIRES)}")
    scenarios = s.get("E2E_REFERENCE_SCENARIOS", "scenarios")
    if scenarios:
        path = Path(scenarios)
        path = path if path.is_absolute() else PROJECT_ROOT / path
        if not path.is_file() and problems is not None:
            problems.append(f"E2E_REFERENCE_SCENARIOS '{scenarios}' does not exist: expected a scenario file "
                            f"(YAML or JSON, see resources/scenarios/README.md)")
        scenarios = str(path)
    extra_args = ["--wire", wire]
    if scenarios:
        extra_args += ["--scenarios", scenarios]
    heartbeat = s.get("E2E_REFERENCE_HEARTBEAT", "heartbeat")
    if heartbeat and wire == "netra":
        extra_args += ["--heartbeat", str(heartbeat)]
    log = output_dir / "reference-backend.log" if output_dir else None
    return {"faults": faults, "think_delay": float(profile.get("think_delay", 0.005)),
            "tools": int(profile.get("tools", 1)), "log_file": log, "extra_args": extra_args}


def _remote(name: str, profile: dict, environ: dict, settings: dict, problems: list[str]) -> Target | None:
    backend = (environ.get("E2E_BACKEND_URL") or "").strip()
    auth = (environ.get("E2E_AUTH_URL") or "").strip()
    ws = (environ.get("E2E_WS_URL") or "").strip()
    secret = environ.get("E2E_JWT_SECRET") or None
    key = environ.get("E2E_OAUTH_SIMULATION_KEY") or None
    missing = []
    if not backend:
        missing.append("E2E_BACKEND_URL")
    if not secret and not key:
        missing.append("E2E_JWT_SECRET and/or E2E_OAUTH_SIMULATION_KEY")
    elif key and not secret and not auth:
        missing.append("E2E_AUTH_URL (tokens come from the auth service: only E2E_OAUTH_SIMULATION_KEY is set)")
    problems[:0] = [f"{v} is not set" for v in missing]
    backend_url = _http_url("E2E_BACKEND_URL", backend, problems) if backend else None
    auth_url = _http_url("E2E_AUTH_URL", auth, problems) if auth else None
    if ws:
        ws_url = _ws_url("E2E_WS_URL", ws, problems)
    elif backend_url:
        ws_url = default_ws_url(backend_url)
    else:
        ws_url = None
    if problems:
        return None
    return Target(profile=name, backend_url=backend_url, ws_url=ws_url, auth_url=auth_url, jwt_secret=secret,
                  simulation_key=key, token_source="jwt" if secret else "auth-service",
                  extra=dict(settings.pop("extra"), faults="n/a"), **settings)


# --- the process-wide state ----------------------------------------------------------
_lock = threading.RLock()
_current: Target | None = None
_backend: BackendProcess | None = None
_resolver: Callable[[], Target] | None = None


def current() -> Target | None:
    return _current


def set_current(target: Target | None) -> None:
    global _current
    _current = target


def set_resolver(resolver: Callable[[], Target] | None) -> None:
    """What :func:`require` calls when no target is resolved yet (``TargetConfig`` sets it)."""
    global _resolver
    _resolver = resolver


def require() -> Target:
    """The resolved target, resolving it on first use (raises :class:`ConfigurationError`)."""
    with _lock:
        if _current is not None:
            return _current
        if _resolver is not None:
            return _resolver()
        target, _ = resolve(None, dict(os.environ))
        return target


def resolve(name: str | None, environ: dict, output_dir: Path | None = None,
            early: tuple[dict, BackendProcess] | None = None,
            share: Callable[[dict], dict] | None = None) -> tuple[Target, BackendProcess | None]:
    """Resolve and validate a target (every problem at once); for ``local`` start (or adopt
    the ``early``-launched) embedded backend, or, with ``share`` (pabot), use the one backend
    the run's processes share: ``share(spec)`` returns its ``url``, ``jwt_secret``,
    ``simulation_key`` and ``pid``, or None to start this process's own. Sets it as the
    current target."""
    global _backend
    name = target_name(name, environ)
    profile = profile_of(name)
    problems: list[str] = []
    settings = common(profile, environ, problems)
    if profile.get("kind") == "embedded":
        problems.extend(
            f"{k} is set to {environ[k].strip()!r}, but target '{name}' tests the embedded reference backend and "
            f"would ignore it: name a remote target (E2E_TARGET=staging) or unset {k}"
            for k in REMOTE_URL_SETTINGS if (environ.get(k) or "").strip())
        spec = backend_spec(profile, environ, output_dir, problems)
        if problems:
            if early is not None:  # launched before the checks ran: it must not outlive the refusal
                early[1].stop()
            raise _invalid(name, problems)
        info = share(spec) if share is not None else None  # None: nothing to share through
        if info is not None:
            if early is not None:
                early[1].stop()
            target = _embedded_target(name, profile, settings, spec, info["url"], info["jwt_secret"],
                                      info["simulation_key"], info["pid"], shared=True)
            set_current(target)
            dialects.use(target.dialect_name, target.settings)
            return target, None
        backend = early[1] if early is not None and early[0] == spec and early[1].alive() else None
        if early is not None and backend is None:
            early[1].stop()
        backend = backend or BackendProcess(**spec).launch()
        try:
            backend.wait_ready()
        except BackendStartError as err:
            raise ConfigurationError(f"Target '{name}': {err}") from None
        target = _embedded_target(name, profile, settings, spec, backend.url, backend.jwt_secret,
                                  backend.simulation_key, backend.pid)
        with _lock:
            if _backend is not None and _backend is not backend:
                _backend.stop()
            _backend = backend
    else:
        if early is not None:
            early[1].stop()
        target = _remote(name, profile, environ, settings, problems)
        if target is None:
            raise _invalid(name, problems)
        diagnosis = check_tls(target)
        if diagnosis:
            raise ConfigurationError(f"Target '{name}': {diagnosis} Nothing else was tried.")
    set_current(target)
    dialects.use(target.dialect_name, target.settings)
    return target, (_backend if target.embedded else None)


def _embedded_target(name: str, profile: dict, settings: dict, spec: dict, url: str, jwt_secret: str,
                     simulation_key: str, pid: int, shared: bool = False) -> Target:
    return Target(profile=name, backend_url=url, ws_url=default_ws_url(url), auth_url=url, jwt_secret=jwt_secret,
                  simulation_key=simulation_key, embedded=True,
                  extra=dict(settings.pop("extra"), faults=",".join(spec["faults"]) or "none", backend_pid=str(pid),
                             wire=spec["extra_args"][1], scenarios=_arg(spec["extra_args"], "--scenarios") or "none",
                             shared="one backend for every pabot process" if shared else "no"),
                  **{k: v for k, v in settings.items() if k not in ("agent_api", "auth_service")},
                  agent_api=profile.get("agent_api", True), auth_service=profile.get("auth_service", True))


def check_tls(target: Target) -> str | None:
    """Check each distinct TLS host of a target once, before any test connects."""
    seen = set()
    for setting, url in (("E2E_BACKEND_URL", target.backend_url), ("E2E_WS_URL", target.ws_url),
                         ("E2E_AUTH_URL", target.auth_url)):
        if not url or not url.startswith(("https://", "wss://")):
            continue
        host = urlsplit(url).netloc
        if host in seen:
            continue
        seen.add(host)
        diagnosis = probe(url, target.tls, timeout=target.connect_timeout, setting=setting)
        if diagnosis:
            return diagnosis
    return None


def _invalid(name: str, problems: list[str]) -> ConfigurationError:
    return ConfigurationError(
        f"Configuration invalid for target '{name}' ({len(problems)} problem{'s' * (len(problems) != 1)}); "
        "nothing was connected:\n- " + "\n- ".join(problems))


def release(wait: bool = True) -> tuple[BackendProcess | None, int | None]:
    """Stop the embedded backend this process started (``wait=False``: signal it and let
    interpreter exit wait) and forget the target. Safe to call more than once."""
    global _backend
    with _lock:
        backend, _backend = _backend, None
        set_current(None)
    if backend is None:
        return None, None
    if wait:
        return backend, backend.stop()
    backend.terminate()
    return backend, None


def _arg(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def is_loopback(url: str) -> bool:
    return urlsplit(url).hostname in LOOPBACK


atexit.register(lambda: release(True))

__all__ = ["ConfigurationError", "Target", "current", "require", "resolve", "release", "set_current",
           "set_resolver", "SpecError"]
