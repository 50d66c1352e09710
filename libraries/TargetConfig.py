"""Which backend the suites test, resolved once, validated once, printed in the report.

The library documentation (what libdoc shows) is the docstring of :class:`TargetConfig`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from robot.api import SkipExecution, logger
from robot.api.deco import keyword, library
from robot.libraries.BuiltIn import BuiltIn

from agentkit import target as targets
from agentkit.target import ConfigurationError, Target
from agentkit.transports.process import BackendProcess, pid_alive
from agentkit.wire.masking import as_secret, install_log_filter

__all__ = ["ConfigurationError", "TargetConfig"]

CAPABILITIES = ("welcome", "ping", "agent_api", "auth_service", "signed_tokens", "simulation_key",
                "subprotocol_auth", "bearer_auth", "invalid_json_reply", "unknown_message_reply", "thinking",
                "event_ids", "schemas", "runs_in_flight", "thread_join", "scenarios")


@library(scope="GLOBAL", auto_keywords=False)
class TargetConfig:
    """Which backend the suites test, resolved once, validated once, printed in the report.

    ``E2E_TARGET`` (or ``--variable TARGET:<name>``) picks a profile from
    ``resources/profiles/``: ``local`` (the default) starts the embedded reference backend on
    a free loopback port and stops it at the end; a remote profile such as ``staging`` takes
    its URLs and secrets from the environment and never falls back to localhost. With no
    profile named and ``E2E_BACKEND_URL`` (or ``E2E_WS_URL``) set, ``staging`` is used: a
    URL of your backend is never silently replaced by the embedded one.

    The target is resolved on first use: any keyword that needs it resolves it if no
    suite setup did, so a single suite file or a new folder of tests runs as written.
    ``Resolve Target`` (in a suite setup) is the explicit form. Either way the whole
    configuration is validated once, before any connection, and every problem is named
    in one failure. A TLS target's certificate is checked once, there too.

    For ``local``, importing this library in a run already launches the backend, so it
    boots while Robot imports the other libraries; resolving adopts it. Nothing is
    launched for a dry run, a remote profile or a configuration with problems; a backend
    that is never adopted is stopped at the end.

    | =Variable= | =Meaning= |
    | ``E2E_TARGET`` | Profile name: ``local``, ``staging``, or any ``resources/profiles/<name>.json``. Default: ``staging`` when ``E2E_BACKEND_URL`` or ``E2E_WS_URL`` is set, else ``local``. ``local`` with any of the URL settings set is a configuration error (the embedded backend would ignore them). |
    | ``E2E_BACKEND_URL`` | Backend base URL, ``http(s)://host[:port]``. Required for remote profiles. |
    | ``E2E_WS_URL`` | WebSocket URL; default derived from the backend URL (``http``->``ws``, ``https``->``wss``, plus ``/ws``). |
    | ``E2E_AUTH_URL`` | Auth service base URL. Optional: without it the auth-service tests skip, saying why; required when only a simulation key is set. |
    | ``E2E_JWT_SECRET`` | HS256 secret to sign test tokens. This and/or the simulation key is required. |
    | ``E2E_OAUTH_SIMULATION_KEY`` | Key for the auth service's test-auth endpoint. |
    | ``E2E_DIALECT`` | The backend's wire: ``default``, ``netra``, ``ag-ui``, ``langgraph`` or a JSON file (see docs/dialects.md). |
    | ``E2E_FIRST_EVENT_TIMEOUT`` | Robot time string, default ``2s``. |
    | ``E2E_RUN_TIMEOUT`` | Robot time string, default ``30s``. |
    | ``E2E_CONNECT_TIMEOUT`` | Handshake plus welcome frame, Robot time string, default ``10s``. |
    | ``E2E_RUN_GRACE`` | How long a run keeps listening after its end, default ``300ms``; ``0`` turns it off. |
    | ``E2E_AUTH_MODE`` | Overrides the dialect's first ``connect.auth`` entry: ``subprotocol``, ``bearer`` or ``query``, one the dialect lists. |
    | ``E2E_TOKEN_ENCODING`` | Overrides the dialect: ``raw`` or ``base64url`` token inside the subprotocol. |
    | ``E2E_SIMULATION_KEY_HEADER`` | Overrides the dialect's header for the simulation key. |
    | ``E2E_VERIFY_TLS`` | ``true`` (default) or ``false`` (test systems only; said in the console, metadata and summary). |
    | ``E2E_CA_FILE`` | A PEM CA bundle (or a folder of CA certificates) to trust for ``https://``/``wss://``. |
    | ``E2E_CLIENT_CERT`` / ``E2E_CLIENT_KEY`` | PEM client certificate and key for targets that require mutual TLS. |
    | ``E2E_AGENT_API`` / ``E2E_AUTH_SERVICE`` | ``true``/``false``: override whether the backend has the agent API and an auth service. |
    | ``E2E_ASSISTANT_ID`` | ``langgraph`` dialect: the assistant (graph) id, default ``agent``. |
    | ``E2E_CONCURRENT_USERS`` | Users in the concurrency suite, default ``20``. |
    | ``E2E_MIN_SUCCESS_RATE`` | Percent, default ``100``. |
    | ``E2E_MAX_CONNECT_P95`` | Robot time string, default ``2s``. |
    | ``E2E_REFERENCE_WIRE`` | ``local`` only: the embedded backend's wire (``default``, ``netra``, ``ag-ui``); default: the dialect's. |
    | ``E2E_REFERENCE_FAULTS`` | ``local`` only: fault modes of the embedded backend (comma-separated). |
    | ``E2E_REFERENCE_SCENARIOS`` | ``local`` only: a scenario file the embedded backend plays (resources/scenarios/README.md). |
    """

    ROBOT_LISTENER_API_VERSION = 3

    def __init__(self) -> None:
        self.ROBOT_LIBRARY_LISTENER = self
        self._owner_suite: str | None = None
        self._early: tuple[dict, BackendProcess] | None = None
        install_log_filter()
        targets.set_resolver(self._resolve_on_first_use)
        self._launch_early()

    @property
    def backend(self) -> BackendProcess | None:
        return targets._backend

    # Robot imports this library while it sets up the top suite, before the suites' other
    # libraries. Launching the embedded backend here lets its boot (about 0.3 s, mostly
    # imports) overlap that work; resolving adopts it if the configuration it
    # resolves is the same, and validation still happens there, once.
    def _launch_early(self) -> None:
        builtin = BuiltIn()
        if not builtin.robot_running or builtin.dry_run_active or self._under_pabot():
            return
        try:
            name = self._target_name(None, os.environ)
            profile = targets.profile_of(name)
            problems: list[str] = []
            targets.common(profile, dict(os.environ), problems, check_dialect=False)
            if profile.get("kind") != "embedded" or problems:
                return
            spec = targets.backend_spec(profile, dict(os.environ), self._output_dir(), problems)
            if problems:
                return
            self._early = (spec, BackendProcess(**spec).launch())
        except Exception:  # noqa: BLE001 - resolving reports every problem with its context
            self._drop_early()

    def _drop_early(self) -> None:
        early, self._early = self._early, None
        if early is not None:
            early[1].stop()

    def _target_name(self, name: str | None, environ) -> str:
        if name is None and self._in_robot():
            name = BuiltIn().get_variable_value("${TARGET}", None)
        return targets.target_name(name, environ)

    # Stop the embedded backend when the suite that resolved it explicitly ends, even if
    # its teardown never ran (e.g. the run was interrupted).
    def end_suite(self, data, result) -> None:
        if self._owner_suite is not None and data.full_name == self._owner_suite:
            self.release_target()

    def close(self) -> None:  # Robot calls this at the end of the library's scope
        self.release_target()

    def _resolve_on_first_use(self) -> Target:
        target = self._resolve(None, None)
        if self._in_robot():
            logger.info("The target was resolved on first use (no suite setup resolved it).")
        return target

    @keyword
    def resolve_target(self, name: str | None = None, env: dict | None = None) -> Target:
        """Resolves and validates the target once, before any connection, and returns it.

        ``name`` defaults to ``${TARGET}`` if set, else ``E2E_TARGET``, else ``staging`` when
        ``E2E_BACKEND_URL`` or ``E2E_WS_URL`` is set, else ``local``;
        ``env`` (a dictionary) replaces the environment variables, for tests of the kit.
        Every missing or malformed value is named in one failure (``ConfigurationError``);
        a TLS target whose certificate does not verify fails here with one diagnosis
        naming the host, the reason and the setting that fixes it. For ``local`` the
        embedded reference backend is started. The resolved target (profile, URLs,
        dialect, auth mode; secrets masked) is written to the top suite's metadata and
        the console. Keywords that need the target also resolve it on first use, so
        calling this is optional.

        Example (suite setup of ``__init__.robot``):
        | Resolve Target
        """
        target = self._resolve(name, env)
        if self._in_robot() and self._owner_suite is None and target.embedded:
            self._owner_suite = self._current_suite_full_name()
        return target

    def _current_suite_full_name(self) -> str | None:
        try:
            from robot.running.context import EXECUTION_CONTEXTS

            return EXECUTION_CONTEXTS.current.suite.full_name
        except Exception:  # noqa: BLE001 - outside a run
            return None

    def _resolve(self, name: str | None, env: dict | None) -> Target:
        environ = dict(os.environ if env is None else env)
        name = self._target_name(name, environ)
        current = targets.current()
        if current is not None and current.profile == name and env is None and (
                self.backend is None or self.backend.alive()):
            return current
        early, self._early = self._early, None
        share = self._share_under_pabot if self._under_pabot() and env is None else None
        target, _ = targets.resolve(name, environ, self._output_dir(), early, share)
        self._publish(target)
        return target

    def _under_pabot(self) -> bool:
        if not self._in_robot():
            return False
        builtin = BuiltIn()
        return bool(builtin.get_variable_value("${PABOTLIBURI}")) and \
            builtin.get_variable_value("${PABOTQUEUEINDEX}") is not None

    # Under pabot, every process would start its own backend (9 for 9 suites): one is
    # started, under PabotLib's lock, by the first process that needs it; the others adopt
    # it. Its URL and secrets travel through PabotLib's value store, never through a log.
    # It stops when pabot exits (--exit-with-pid), not when its starter does.
    # Without PabotLib (pabot --no-pabotlib) there is nothing to share through: each process
    # starts its own backend, as a plain robot run does.
    def _share_under_pabot(self, spec: dict) -> dict | None:
        from pabot.pabotlib import PabotLib

        lib = PabotLib()
        key = "agentkit-embedded-backend"
        signature = json.dumps({k: str(v) for k, v in spec.items() if k != "log_file"}, sort_keys=True)
        try:
            lib.acquire_lock(key)
        except Exception as err:  # noqa: BLE001 - Robot's Remote library raises RuntimeError and others
            uri = BuiltIn().get_variable_value("${PABOTLIBURI}")
            logger.info(f"PabotLib is not reachable at {uri} ({str(err).splitlines()[0][:160] if str(err) else type(err).__name__}; pabot --no-pabotlib?): this "
                        f"process starts its own embedded backend instead of sharing one.")
            return None
        try:
            raw = lib.get_parallel_value_for_key(key)
            if raw:
                info = json.loads(raw)
                if info.get("spec") == signature and pid_alive(int(info["pid"])):
                    logger.info(f"Adopted the embedded backend another pabot process started (pid {info['pid']}).")
                    return info
            shared = dict(spec, detached=True, extra_args=[*spec["extra_args"], "--exit-with-pid", str(os.getppid())])
            backend = BackendProcess(**shared).launch().wait_ready()
            info = {"url": backend.url, "jwt_secret": backend.jwt_secret, "simulation_key": backend.simulation_key,
                    "pid": backend.pid, "spec": signature}
            lib.set_parallel_value_for_key(key, json.dumps(info))
            logger.info(f"Started the embedded backend for every pabot process (pid {backend.pid}); it stops "
                        f"when pabot exits.")
            return info
        finally:
            lib.release_lock(key)

    def _in_robot(self) -> bool:
        try:
            BuiltIn().get_variables()
            return True
        except Exception:  # noqa: BLE001 - not running inside Robot (unit tests)
            return False

    def _output_dir(self) -> Path | None:
        """Where output.xml goes: the kit's own files (the backend's log) go there too."""
        if not self._in_robot():
            return None
        builtin = BuiltIn()
        out_file = builtin.get_variable_value("${OUTPUT FILE}")
        if out_file and out_file != "NONE":
            return Path(out_file).parent
        out = builtin.get_variable_value("${OUTPUT DIR}")
        return Path(out) if out else None

    def _publish(self, target: Target) -> None:
        described = target.describe()
        where = "embedded reference backend" if target.embedded else target.profile
        line = (f"Target: {where} | backend {target.backend_url} | ws {target.ws_url} | "
                f"auth {target.auth_url or '(none)'} | dialect {target.dialect_name}, auth mode {target.auth}, "
                f"tokens from {target.token_source}")
        if not target.embedded and targets.is_loopback(target.backend_url):
            line += " | NOTE: a remote profile pointed at loopback by configuration"
        tls_off = not target.tls.verify and described["tls"].startswith("verification OFF")
        if tls_off:
            line += " | TLS VERIFICATION OFF (E2E_VERIFY_TLS=false): certificates are not checked"
        logger.info(line)
        if not self._in_robot():
            return
        logger.console(line)
        builtin = BuiltIn()
        builtin.set_suite_metadata("Target", where, top=True)
        for key, value in described.items():
            if key == "profile":
                continue
            builtin.set_suite_metadata(f"Target {key.replace('_', ' ')}", value, top=True)
        if target.embedded:
            builtin.set_suite_metadata("Target faults", target.extra.get("faults", "none"), top=True)
            builtin.set_suite_metadata("Target wire", target.extra.get("wire", "default"), top=True)
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
        self._requests_session(target)

    def _requests_session(self, target: Target) -> None:
        """A RequestsLibrary session ``backend`` with the target's trust settings, for tests
        that call the backend's HTTP API with RequestsLibrary themselves."""
        try:
            requests_library = BuiltIn().get_library_instance("RequestsLibrary")
        except RuntimeError:
            return  # RequestsLibrary not imported: nothing to configure
        options = target.tls.requests_options()
        session = None
        if "cert" in options:
            requests_library.create_client_cert_session("backend", target.backend_url, client_certs=options["cert"],
                                                        verify=options["verify"])
        else:
            requests_library.create_session("backend", target.backend_url, verify=options["verify"])
        try:
            session = requests_library._cache.switch("backend")
        except Exception:  # noqa: BLE001 - another RequestsLibrary layout: keep its defaults
            return
        # requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE replace a session's verify: the
        # target's trust setting must win, so the environment is read for proxies only.
        from requests.utils import get_environ_proxies

        session.trust_env = False
        session.proxies.update(get_environ_proxies(target.backend_url))

    @keyword
    def get_target_setting(self, name: str) -> str:
        """Returns one setting of the target (secrets masked), e.g. ``ws_url``, ``dialect``,
        ``auth_mode``, ``run_grace``; resolves the target on first use.

        Example:
        | ${dialect}=    Get Target Setting    dialect
        """
        tgt = targets.require()
        described = dict(tgt.describe(), **tgt.extra)
        if name not in described:
            raise ValueError(f"Unknown target setting '{name}': expected one of {', '.join(sorted(described))}.")
        return described[name]

    @keyword
    def target_should_support(self, capability: str) -> None:
        """Skips the current test, saying why, when the target (its dialect and settings)
        cannot support ``capability``; does nothing when it can.

        ``capability`` is one of ``welcome``, ``ping``, ``agent_api``, ``auth_service``,
        ``signed_tokens`` (the JWT secret is known), ``simulation_key``, ``subprotocol_auth``,
        ``bearer_auth``, ``invalid_json_reply``, ``unknown_message_reply``, ``thinking``
        (the dialect requires thinking events), ``event_ids`` (events carry run ids),
        ``schemas`` (rule 7 is on), ``runs_in_flight`` (events carry ids that tell two runs
        on one connection apart), ``thread_join`` (a thread is a URL another connection can
        join) or ``scenarios`` (the target plays the kit's scenario file).

        Example:
        | Target Should Support    welcome
        """
        reason = self.unsupported_reason(capability)
        if reason:
            raise SkipExecution(reason)

    @keyword
    def target_supports(self, capability: str) -> bool:
        """Whether the target supports ``capability`` (the names of `Target Should Support`),
        for tests that take another path where it does not.

        Example:
        | ${has_ping}=    Target Supports    ping
        """
        return self.unsupported_reason(capability) is None

    def unsupported_reason(self, capability: str) -> str | None:
        if capability not in CAPABILITIES:
            raise ValueError(f"Unknown capability '{capability}': expected one of {', '.join(CAPABILITIES)}.")
        tgt = targets.require()
        d = tgt.dialect
        name = f"dialect '{d.name}'"
        frames = d.frames
        checks = {
            "welcome": (d.welcome_presence != "absent", f"{name} has no welcome frame (welcome.presence: absent)"),
            "ping": (bool(frames.get("ping")), f"{name} defines no application ping (frames.ping)"),
            "agent_api": (tgt.agent_api, f"target '{tgt.profile}' has no agent API endpoints ({name}; "
                                         f"E2E_AGENT_API=true says otherwise)"),
            "auth_service": (tgt.has_auth_service, f"target '{tgt.profile}' has no auth service ("
                             + ("E2E_AUTH_URL is not set" if tgt.auth_service else f"{name} has none") + ")"),
            "signed_tokens": (bool(tgt.jwt_secret), "E2E_JWT_SECRET is not set for this target: a correctly "
                                                    "signed special token cannot be made"),
            "simulation_key": (bool(tgt.simulation_key), "E2E_OAUTH_SIMULATION_KEY is not set for this target"),
            "subprotocol_auth": (tgt.auth == "subprotocol", f"the target authenticates with '{tgt.auth}', not "
                                                           f"with a token in a subprotocol"),
            "bearer_auth": ("bearer" in d.connect["auth"], f"{name} does not accept a bearer token on the upgrade"),
            "invalid_json_reply": (bool(frames.get("invalid_json")), f"{name} defines no answer to a frame that is "
                                                                     f"not JSON (frames.invalid_json)"),
            "unknown_message_reply": (bool(frames.get("unknown_message")), f"{name} defines no answer to an "
                                                                           f"unknown message (frames.unknown_message)"),
            "thinking": (d.thinking_required, f"{name} does not require thinking events (rules.thinking: optional)"),
            "event_ids": (d.rule_set == "ag-ui" or bool(d.event_ids),
                          f"{name}'s events carry no ids (run.event_ids is empty): runs are tied to the connection"),
            "schemas": (d.schemas is not False, f"{name} switches schema checks off (schemas: false)"),
            "runs_in_flight": (d.correlation == "ids", f"{name} ties events to runs by their order on the "
                                                       f"connection, so two runs in flight on one connection cannot "
                                                       f"be told apart"),
            "thread_join": (bool(d.spec["run"].get("thread_in_url")), f"{name} has no thread another connection "
                                                                      f"could join (threads are not addressable)"),
            "scenarios": (tgt.embedded and bool(_scenarios(tgt)), f"target '{tgt.profile}' does not play the kit's "
                          f"scenario file (only the embedded backend does, with E2E_REFERENCE_SCENARIOS or the "
                          f"local profile's scenarios); these tests are examples to adapt to your own agent"),
        }
        ok, reason = checks[capability]
        return None if ok else reason

    @keyword
    def release_target(self, wait: bool = True) -> None:
        """Stops the embedded backend if this run started it. Safe to call more than once.

        With ``wait=False`` the backend is sent its stop signal now and Robot waits for its
        exit when Robot itself exits, so the backend shuts down while Robot writes its
        output, log and report. It is stopped either way before Robot exits.

        Example (suite teardown of ``__init__.robot``):
        | Release Target    wait=False
        """
        self._owner_suite = None
        self._drop_early()
        backend, code = targets.release(wait)
        if backend is not None and self._in_robot():
            message = f"stopped, exit code {code}" if wait else \
                "stopped by SIGTERM; Robot waits for its exit before exiting itself"
            logger.info(f"Embedded reference backend (pid {backend.pid}) {message}.")


def _scenarios(target: Target) -> bool:
    return target.extra.get("scenarios") not in (None, "", "none")
