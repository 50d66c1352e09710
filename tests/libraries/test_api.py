"""AgentApi: authenticated GETs of the backend's /api endpoints, with the token masked."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from AgentApi import AgentApi
from AgentAuth import AgentAuth
from agentkit import target as targets
from agentkit.wire.masking import reveal
from agentkit.target import ConfigurationError, Target


@pytest.fixture
def api():
    return AgentApi()


@pytest.fixture
def token(backend):
    return AgentAuth().create_test_token("alice", secret=backend.jwt_secret)


def test_mcp_servers_with_a_token(api, backend, token):
    body = api.get_agent_api("/api/mcp/servers", token, base_url=backend.url)
    assert body["data"][0]["name"] == "reference-tools" and body["data"][0]["status"] == "connected"


def test_discovery_and_health_through_the_target(api, backend, token):
    targets.set_current(Target("staging", backend.url, backend.ws_url, backend.url))
    services = api.get_agent_api("api/discovery/services", token)["services"]
    assert {"backend", "websocket", "auth"} <= set(services)
    assert services["websocket"]["url"] == backend.ws_url
    assert api.get_agent_api("/api/health", token)["status"] == "healthy"
    assert api.get_agent_api(backend.url + "/api/mcp/config", token)["servers"]  # absolute URL as is


def test_unexpected_status_names_url_status_and_body(api, backend):
    expired = AgentAuth().create_expired_token("alice", secret=backend.jwt_secret)
    with pytest.raises(AssertionError, match=r"GET http://127\.0\.0\.1:\d+/api/mcp/servers answered HTTP 401, "
                                             r"expected 200: \{'detail': 'invalid token'\}"):
        api.get_agent_api("/api/mcp/servers", expired, base_url=backend.url)
    assert api.get_agent_api("/api/mcp/servers", expired, expected_status=401, base_url=backend.url) \
        == {"detail": "invalid token"}
    assert api.get_agent_api("/api/mcp/servers", expired, expected_status=None, base_url=backend.url) \
        == {"detail": "invalid token"}


def test_api_requires_authentication(api, backend):
    assert api.agent_api_should_require_authentication("/api/mcp/servers", base_url=backend.url) == 401
    with pytest.raises(AssertionError, match=r"GET http://127\.0\.0\.1:\d+/health without a token answered HTTP 200, "
                                             r"expected a refusal \(401/403\)"):
        api.agent_api_should_require_authentication("/health", base_url=backend.url)


def test_unhealthy_backend_fails_with_the_status(api, backend_factory):
    sick = backend_factory(faults=["health-500"])
    token = AgentAuth().create_test_token("alice", secret=sick.jwt_secret)
    with pytest.raises(AssertionError, match=r"/api/health answered HTTP 500, expected 200: \{'status': 'unhealthy'\}"):
        api.get_agent_api("/api/health", token, base_url=sick.url)


def test_no_base_url_and_unreachable_backend(api, monkeypatch):
    # Without base_url the target is resolved on first use: the configured one, never a guess.
    monkeypatch.setenv("E2E_TARGET", "staging")
    for name in ("E2E_BACKEND_URL", "E2E_WS_URL", "E2E_AUTH_URL", "E2E_JWT_SECRET", "E2E_OAUTH_SIMULATION_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigurationError, match=r"^Configuration invalid for target 'staging' \(2 problems\); nothing "
                                                 r"was connected:\n- E2E_BACKEND_URL is not set\n"):
        api.get_agent_api("/api/health", "t")
    assert targets.current() is None
    with pytest.raises(AssertionError, match=r"^GET http://127\.0\.0\.1:9/api/health: cannot connect to 127\.0\.0\.1:9 "
                                             r"\(connection refused: nothing listens on that port\)\."):
        api.get_agent_api("/api/health", "t", base_url="http://127.0.0.1:9", timeout=timedelta(seconds=2))


def test_token_is_masked_in_the_log(api, backend, token, caplog):
    caplog.set_level(logging.DEBUG)
    api.get_agent_api("/api/mcp/servers", token, base_url=backend.url)
    plain = reveal(token)
    assert f"Authorization: Bearer {plain[:4]}…{plain[-4:]} ({len(plain)} chars)" in caplog.text
    assert plain not in caplog.text
