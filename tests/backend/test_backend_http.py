"""HTTP side of the reference backend: health, discovery, MCP, /api auth, the e2e auth service."""

from __future__ import annotations

import time

import jwt
import pytest
import requests

from backend_helpers import JWT_SECRET, SIMULATION_KEY, bearer, connect, expired_token, make_token, recv_json

API_ENDPOINTS = ["/api/health", "/api/discovery/services", "/api/mcp/config", "/api/mcp/servers"]


@pytest.fixture(scope="module")
def http():
    with requests.Session() as session:
        yield session


@pytest.fixture(scope="module")
def auth_headers():
    return bearer(make_token("http_user"))


@pytest.mark.parametrize("path", ["/health", "/api/health"])
def test_health_endpoints_report_healthy(server, http, auth_headers, path):
    response = http.get(server.url + path, headers=auth_headers, timeout=5)
    assert response.status_code == 200
    assert response.json()["status"] == "healthy"


def test_auth_health_is_open_and_healthy(server, http):
    response = http.get(server.url + "/auth/health", timeout=5)
    assert response.status_code == 200
    assert response.json()["status"] == "healthy"


def test_discovery_names_backend_websocket_and_auth_from_the_request_host(server, http, auth_headers):
    services = http.get(server.url + "/api/discovery/services", headers=auth_headers, timeout=5).json()["services"]
    assert services["backend"]["url"] == server.url
    assert services["websocket"]["url"] == server.ws_url
    assert services["auth"]["url"].startswith(server.url)
    other = http.get(server.url + "/api/discovery/services", headers={**auth_headers, "Host": "example.test:8123"},
                     timeout=5).json()["services"]
    assert other["websocket"]["url"] == "ws://example.test:8123/ws"
    assert other["backend"]["url"] == "http://example.test:8123"


def test_mcp_config_is_a_non_empty_object(server, http, auth_headers):
    response = http.get(server.url + "/api/mcp/config", headers=auth_headers, timeout=5)
    assert response.status_code == 200
    body = response.json()
    assert isinstance(body, dict) and body


def test_mcp_servers_lists_named_servers_with_status(server, http, auth_headers):
    response = http.get(server.url + "/api/mcp/servers", headers=auth_headers, timeout=5)
    assert response.status_code == 200
    servers = response.json()["data"]
    assert servers and all(isinstance(s["name"], str) and s["name"] and s["status"] for s in servers)


@pytest.mark.parametrize("path", API_ENDPOINTS)
@pytest.mark.parametrize("headers", [
    pytest.param({}, id="no-header"),
    pytest.param({"Authorization": "Basic dXNlcjpwYXNz"}, id="not-bearer"),
    pytest.param(bearer("not.a.jwt"), id="malformed"),
    pytest.param(bearer(expired_token()), id="expired"),
    pytest.param(bearer(make_token(secret="x" * 40)), id="wrong-signature"),
    pytest.param(bearer(make_token(drop=("sub",))), id="no-sub"),
    pytest.param(bearer(make_token(type="refresh")), id="refresh-type"),
])
def test_api_endpoints_answer_401_without_a_valid_bearer_token(server, http, path, headers):
    response = http.get(server.url + path, headers=headers, timeout=5)
    assert response.status_code == 401, response.text


def test_public_health_needs_no_token(server, http):
    assert http.get(server.url + "/health", timeout=5).status_code == 200


def _test_auth(server, http, key, body=None):
    headers = {} if key is None else {"X-E2E-OAuth-Simulation-Key": key}
    return http.post(server.url + "/auth/e2e/test-auth", headers=headers,
                     json=body if body is not None else {"email": "qa@example.test", "name": "QA"}, timeout=5)


def test_simulation_key_yields_a_working_access_token(server, http):
    before = int(time.time())
    response = _test_auth(server, http, SIMULATION_KEY)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert isinstance(body["expires_in"], int) and body["expires_in"] > 0
    claims = jwt.decode(body["access_token"], JWT_SECRET, algorithms=["HS256"])
    assert claims["email"] == "qa@example.test"
    assert claims["type"] == "access"
    assert isinstance(claims["sub"], str) and claims["sub"]
    assert before - 1 <= claims["iat"] <= claims["exp"] - body["expires_in"] + 1
    # The token opens both the API and the WebSocket, as that user.
    assert http.get(server.url + "/api/health", headers=bearer(body["access_token"]), timeout=5).status_code == 200
    ws = connect(server, body["access_token"])
    try:
        assert recv_json(ws)["data"]["user_id"] == claims["sub"]
    finally:
        ws.close()


def test_same_email_gets_the_same_user(server, http):
    subs = {jwt.decode(_test_auth(server, http, SIMULATION_KEY).json()["access_token"], JWT_SECRET,
                       algorithms=["HS256"])["sub"] for _ in range(2)}
    assert len(subs) == 1


@pytest.mark.parametrize("key", [None, "", "wrong-key", SIMULATION_KEY + "x", SIMULATION_KEY[:-1]],
                         ids=["missing", "empty", "wrong", "longer", "shorter"])
def test_simulation_key_missing_or_wrong_is_401(server, http, key):
    response = _test_auth(server, http, key)
    assert response.status_code == 401
    assert "access_token" not in response.text


@pytest.mark.parametrize("body", [{}, {"name": "no email"}, {"email": 5}, ["x"]],
                         ids=["empty", "no-email", "bad-email", "list"])
def test_test_auth_with_a_bad_body_is_400(server, http, body):
    assert _test_auth(server, http, SIMULATION_KEY, body).status_code == 400
