"""TargetConfig: one validation naming every problem, no localhost fallback, the local
target's backend started and stopped, and secrets only ever masked."""

from __future__ import annotations

import logging

import pytest
import requests

from AgentSessions import AgentSessions
from TargetConfig import ConfigurationError, TargetConfig
from agentkit.wire import dialect as dialects
from agentkit import target as targets

SECRET = "staging-jwt-secret-0123456789abcdefghijkl"
SIM_KEY = "staging-simulation-key-0123456789abcdefgh"
STAGING = {
    "E2E_BACKEND_URL": "https://staging.example.com/",
    "E2E_AUTH_URL": "https://auth.staging.example.com",
    "E2E_JWT_SECRET": SECRET,
    "E2E_OAUTH_SIMULATION_KEY": SIM_KEY,
}


@pytest.fixture(autouse=True)
def no_fault_from_the_environment(monkeypatch):
    monkeypatch.delenv("E2E_REFERENCE_FAULTS", raising=False)


@pytest.fixture(autouse=True)
def tls_probes(monkeypatch):
    """The TLS hosts resolving probed (the check every https/wss target gets once): recorded, not
    connected to, since the staging hosts here do not exist."""
    probed: list[str] = []

    def probe(url, tls, timeout=10.0, **options):
        probed.append(url)
        return None

    monkeypatch.setattr(targets, "probe", probe)
    return probed


@pytest.fixture
def config():
    lib = TargetConfig()
    yield lib
    lib.release_target()


def problems_of(err) -> list[str]:
    return [line[2:] for line in str(err.value).splitlines()[1:]]


# --- remote profiles -------------------------------------------------------------------
def test_staging_with_nothing_set_names_every_missing_variable_at_once(config):
    with pytest.raises(ConfigurationError) as err:
        config.resolve_target("staging", env={})
    # the auth service is optional (docs/protocol.md, "Tokens"): no E2E_AUTH_URL is not a problem
    assert str(err.value).splitlines()[0] == ("Configuration invalid for target 'staging' (2 problems); "
                                              "nothing was connected:")
    assert problems_of(err) == ["E2E_BACKEND_URL is not set",
                                "E2E_JWT_SECRET and/or E2E_OAUTH_SIMULATION_KEY is not set"]
    assert targets.current() is None


def test_remote_target_never_falls_back_to_localhost(config):
    with pytest.raises(ConfigurationError) as err:
        config.resolve_target("staging", env={"E2E_JWT_SECRET": SECRET, "E2E_AUTH_URL": "https://auth.example.com"})
    assert problems_of(err) == ["E2E_BACKEND_URL is not set"]
    assert "127.0.0.1" not in str(err.value) and "localhost" not in str(err.value)
    assert targets.current() is None and config.backend is None


def test_malformed_values_are_each_named(config, tmp_path):
    env = {
        "E2E_BACKEND_URL": "ftp://staging.example.com",
        "E2E_AUTH_URL": "http://:8080",
        "E2E_WS_URL": "https://staging.example.com/ws",
        "E2E_JWT_SECRET": SECRET,
        "E2E_FIRST_EVENT_TIMEOUT": "soon",
        "E2E_RUN_TIMEOUT": "0s",
        "E2E_AUTH_MODE": "cookie",
        "E2E_TOKEN_ENCODING": "rot13",
        "E2E_VERIFY_TLS": "maybe",
        "E2E_CA_FILE": str(tmp_path / "missing-ca.pem"),
        "E2E_DIALECT": "klingon",
        "E2E_CONCURRENT_USERS": "many",
        "E2E_MIN_SUCCESS_RATE": "150",
        "E2E_MAX_CONNECT_P95": "fast",
    }
    with pytest.raises(ConfigurationError) as err:
        config.resolve_target("staging", env=env)
    problems = problems_of(err)
    expected = [
        "E2E_FIRST_EVENT_TIMEOUT 'soon' is not a time: expected a Robot time string",
        "E2E_RUN_TIMEOUT '0s' must be positive",
        "E2E_AUTH_MODE 'cookie' is not valid: expected one of subprotocol, bearer, query",
        "E2E_TOKEN_ENCODING 'rot13' is not valid: expected one of raw, base64url",
        "E2E_VERIFY_TLS 'maybe' is not valid: expected true or false",
        f"E2E_CA_FILE '{tmp_path / 'missing-ca.pem'}' does not exist: expected a PEM CA bundle or a folder of CA "
        f"certificates",
        "E2E_DIALECT: Dialect 'klingon' not found",
        "E2E_CONCURRENT_USERS 'many' is not valid: expected a whole number >= 1",
        "E2E_MIN_SUCCESS_RATE '150' is not valid: expected a percent 0-100",
        "E2E_MAX_CONNECT_P95 'fast' is not a time",
        "E2E_BACKEND_URL 'ftp://staging.example.com' is malformed: expected http(s)://host[:port]",
        "E2E_AUTH_URL 'http://:8080' is malformed: expected http(s)://host[:port]",
        "E2E_WS_URL 'https://staging.example.com/ws' is malformed: expected ws(s)://host[:port]/path",
    ]
    assert len(problems) == len(expected), problems
    for problem, start in zip(problems, expected):
        assert problem.startswith(start), (problem, start)
    assert f"({len(expected)} problems)" in str(err.value)
    assert SECRET not in str(err.value)
    assert targets.current() is None


def test_bad_port_is_malformed(config):
    with pytest.raises(ConfigurationError, match=r"E2E_BACKEND_URL 'http://staging\.example\.com:notaport' is "
                                                 r"malformed"):
        config.resolve_target("staging", env=dict(STAGING, E2E_BACKEND_URL="http://staging.example.com:notaport"))


def test_valid_staging_resolves_and_derives_the_websocket_url(config, tls_probes):
    target = config.resolve_target("staging", env=STAGING)
    # each distinct TLS host is checked once, before any test connects (backend and ws share one)
    assert tls_probes == ["https://staging.example.com", "https://auth.staging.example.com"]
    assert targets.current() is target
    assert target.backend_url == "https://staging.example.com"
    assert target.ws_url == "wss://staging.example.com/ws"
    assert target.auth_url == "https://auth.staging.example.com"
    assert target.token_source == "jwt" and target.first_event_timeout == 2.0 and target.run_timeout == 30.0
    assert config.get_target_setting("ws_url") == "wss://staging.example.com/ws"
    assert config.get_target_setting("concurrent_users") == "20"
    assert config.backend is None  # nothing local was started


def test_simulation_key_alone_means_tokens_from_the_auth_service(config):
    env = {k: v for k, v in STAGING.items() if k != "E2E_JWT_SECRET"}
    env.update(E2E_WS_URL="wss://ws.staging.example.com/socket", E2E_FIRST_EVENT_TIMEOUT="1.5s",
               E2E_RUN_TIMEOUT="1 min 30 s", E2E_AUTH_MODE="bearer")
    target = config.resolve_target("staging", env=env)
    assert target.token_source == "auth-service" and target.jwt_secret is None
    assert target.ws_url == "wss://ws.staging.example.com/socket"
    assert target.first_event_timeout == 1.5 and target.run_timeout == 90.0 and target.auth_mode == "bearer"


def test_target_name_comes_from_e2e_target(config):
    assert config.resolve_target(env=dict(STAGING, E2E_TARGET="staging")).profile == "staging"


@pytest.mark.parametrize("url", ["E2E_BACKEND_URL", "E2E_WS_URL"])
def test_a_backend_url_with_no_target_named_means_the_remote_profile(config, url):
    # A QA engineer who sets their backend's URL and forgets E2E_TARGET must not get a green
    # report about the embedded backend instead.
    env = {"E2E_JWT_SECRET": SECRET, url: {"E2E_BACKEND_URL": "https://staging.example.com",
                                           "E2E_WS_URL": "wss://staging.example.com/ws"}[url]}
    if url == "E2E_WS_URL":
        with pytest.raises(ConfigurationError) as err:
            config.resolve_target(env=env)
        assert problems_of(err) == ["E2E_BACKEND_URL is not set"]
    else:
        assert config.resolve_target(env=env).profile == "staging"
    assert config.backend is None


@pytest.mark.parametrize("url", ["E2E_BACKEND_URL", "E2E_WS_URL", "E2E_AUTH_URL"])
def test_the_local_target_with_a_url_set_is_refused_naming_it(config, url):
    with pytest.raises(ConfigurationError) as err:
        config.resolve_target("local", env={url: "https://staging.example.com"})
    assert problems_of(err) == [f"{url} is set to 'https://staging.example.com', but target 'local' tests the "
                                f"embedded reference backend and would ignore it: name a remote target "
                                f"(E2E_TARGET=staging) or unset {url}"]
    assert config.backend is None and targets.current() is None


def test_secrets_are_never_in_the_description_or_the_log(config, caplog):
    caplog.set_level(logging.DEBUG)
    target = config.resolve_target("staging", env=STAGING)
    described = target.describe()
    # signing secrets show nothing but their length, not even a prefix
    assert described["jwt_secret"] == f"•••• ({len(SECRET)} chars)"
    assert described["simulation_key"] == f"•••• ({len(SIM_KEY)} chars)"
    assert described["first_event_timeout"] == "2s"
    for value in (SECRET, SIM_KEY):
        assert value not in str(described)
        assert value not in repr(target) and value not in str(target)  # Robot logs return values at TRACE
        assert value not in caplog.text
        for name in described:
            assert value not in config.get_target_setting(name)
    assert "Target: staging | backend https://staging.example.com" in caplog.text


def test_unset_secret_is_described_as_not_set(config):
    env = {k: v for k, v in STAGING.items() if k != "E2E_OAUTH_SIMULATION_KEY"}
    assert config.resolve_target("staging", env=env).describe()["simulation_key"] == "(not set)"


def test_unknown_profile_lists_the_known_ones(config):
    with pytest.raises(ConfigurationError, match=r"E2E_TARGET 'prod' is not a known profile: expected one of local, "
                                                 r"staging \(files in .*resources/profiles\)"):
        config.resolve_target("prod", env={})


def test_setting_without_a_target_or_unknown_setting(config, monkeypatch):
    # no target resolved: the setting resolves the configured target on first use (here E2E_TARGET=staging)
    for name, value in dict(STAGING, E2E_TARGET="staging").items():
        monkeypatch.setenv(name, value)
    assert targets.current() is None
    assert config.get_target_setting("ws_url") == "wss://staging.example.com/ws"
    assert targets.current() is not None and targets.current().profile == "staging"
    with pytest.raises(ValueError, match=r"Unknown target setting 'colour': expected one of agent_api, auth_mode, "
                                         r"auth_service, auth_url, "):
        config.get_target_setting("colour")


def test_dialect_from_the_environment_is_put_in_force(config, tmp_path):
    import json
    path = tmp_path / "variant.json"
    default = json.loads((dialects.DIALECTS / "default.json").read_text(encoding="utf-8"))
    default["name"] = "variant"
    path.write_text(json.dumps(default), encoding="utf-8")
    config.resolve_target("staging", env=dict(STAGING, E2E_DIALECT=str(path)))
    assert dialects.current().name == "variant"


# --- the local target --------------------------------------------------------------------
def test_local_target_starts_and_stops_the_reference_backend(config):
    target = config.resolve_target("local", env={})
    backend = config.backend
    try:
        assert backend is not None and backend.alive()
        assert target.profile == "local" and target.backend_url == backend.url
        assert target.backend_url.startswith("http://127.0.0.1:") and target.ws_url == backend.ws_url
        assert target.jwt_secret == backend.jwt_secret and target.extra["faults"] == "none"
        assert requests.get(target.backend_url + "/health", timeout=5).json()["status"] == "healthy"
        assert config.resolve_target("local") is target and config.backend is backend  # resolved once
        # the target is what the other libraries read
        from AgentAuth import AgentAuth
        sessions = AgentSessions()
        sessions.connect_to_agent_websocket(AgentAuth().create_test_token("alice"), alias="local")
        assert sessions.get_connection_info("local")["user_id"] == "alice"
        sessions.close_all_connections()
    finally:
        config.release_target()
    assert not backend.alive() and backend.proc.returncode is not None
    assert targets.current() is None and config.backend is None
    with pytest.raises(requests.ConnectionError):
        requests.get(target.backend_url + "/health", timeout=2)
    config.release_target()  # a second release is harmless


def test_local_target_with_faults_from_the_environment(config, monkeypatch):
    monkeypatch.setenv("E2E_REFERENCE_FAULTS", "health-500")
    target = config.resolve_target("local")  # env=... would replace the environment
    try:
        assert target.extra["faults"] == "health-500"
        assert requests.get(target.backend_url + "/health", timeout=5).status_code == 500
    finally:
        config.release_target()


def test_invalid_local_setting_starts_nothing(config):
    with pytest.raises(ConfigurationError, match=r"E2E_RUN_TIMEOUT 'never' is not a time"):
        config.resolve_target("local", env={"E2E_RUN_TIMEOUT": "never"})
    assert config.backend is None and targets.current() is None


def test_an_auth_mode_the_dialect_does_not_accept_is_named_with_the_ones_it_does(config):
    with pytest.raises(ConfigurationError) as err:
        config.resolve_target("staging", env=dict(STAGING, E2E_DIALECT="langgraph", E2E_AUTH_MODE="subprotocol"))
    assert ("E2E_AUTH_MODE 'subprotocol' is not one the dialect 'langgraph' accepts: expected one of bearer, query"
            in str(err.value)), str(err.value)


def test_an_early_launched_backend_is_stopped_when_the_configuration_is_refused(config):
    from agentkit.transports.process import BackendProcess

    early = BackendProcess(think_delay=0).launch()
    spec = {"faults": [], "think_delay": 0.0, "tools": 1, "log_file": None, "extra_args": []}
    with pytest.raises(ConfigurationError, match="E2E_AUTH_URL is set"):
        targets.resolve("local", {"E2E_AUTH_URL": "https://auth.example.com"}, early=(spec, early))
    assert early.proc.poll() is not None, "the early backend outlived the refused configuration"
