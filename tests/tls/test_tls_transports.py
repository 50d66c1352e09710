"""The one trust configuration in each client, without Robot: the kit's HTTP calls
(``agentkit.transports.http.request``), the concurrency engine over WSS
(``agentkit.transports.fanout.run_sessions``) and the Locust users (``load/locustfile.py``).
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys

import pytest

from agentkit.transports import http
from agentkit.transports.fanout import run_sessions
from agentkit.wire.tls import TLSConfig
from tls_support import AMBIENT_TRUST, JWT_SECRET, RAW_HTTP_ERRORS, ROOT, TRUST_SETTINGS, clean_env, trusted

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _no_ambient_trust(monkeypatch):
    """The tests decide trust: a CA bundle exported by the shell must not decide for them."""
    for name in AMBIENT_TRUST:
        monkeypatch.delenv(name, raising=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ca(pki) -> TLSConfig:
    return TLSConfig(ca=str(pki["ca"]))


def _client(pki, cert: str = "client") -> TLSConfig:
    return TLSConfig(ca=str(pki["ca"]), client_cert=str(pki[cert]), client_key=str(pki[f"{cert}_key"]))


def _no_raw(message: str) -> None:
    for raw in RAW_HTTP_ERRORS:
        assert raw not in message, f"requests' raw exception ({raw}) in: {message}"


# --- agentkit.transports.http.request ---------------------------------------------------------
def test_http_request_with_the_ca_verifies_and_answers(tls_backend, pki):
    answer = http.request("GET", tls_backend.url + "/health", tls=_ca(pki))
    assert answer.status == 200 and answer.body["status"] == "healthy"


def test_http_request_with_verification_off_answers(tls_backend):
    answer = http.request("GET", tls_backend.url + "/health", tls=TLSConfig(verify=False))
    assert answer.status == 200


def test_http_request_without_the_ca_fails_with_one_diagnosis(tls_backend):
    with pytest.raises(http.HttpFailure) as caught:
        http.request("GET", tls_backend.url + "/health", tls=TLSConfig(), what="GET /health (health)")
    message = str(caught.value)
    assert message.startswith("GET /health (health): "), message
    assert tls_backend.hostport in message and "E2E_CA_FILE" in message and "CA you do not trust" in message, message
    _no_raw(message)


def test_http_request_to_a_closed_https_port_is_a_diagnosis(pki):
    closed = _free_port()
    with pytest.raises(http.HttpFailure) as caught:
        http.request("POST", f"https://127.0.0.1:{closed}/auth/e2e/test-auth", tls=_ca(pki), timeout=5)
    message = str(caught.value)
    assert f"127.0.0.1:{closed}" in message and "connection refused" in message, message
    assert "Check" in message, message
    _no_raw(message)


def test_http_request_with_the_client_certificate_passes_mutual_tls(mtls_backend, pki):
    assert http.request("GET", mtls_backend.url + "/health", tls=_client(pki)).status == 200


def test_http_request_without_a_client_certificate_names_the_client_certificate_settings(mtls_backend, pki):
    with pytest.raises(http.HttpFailure) as caught:
        http.request("GET", mtls_backend.url + "/health", tls=_ca(pki))
    message = str(caught.value)
    assert mtls_backend.hostport in message and "E2E_CLIENT_CERT" in message and "E2E_CLIENT_KEY" in message, message
    _no_raw(message)


@pytest.mark.parametrize("case", ["expired", "wrong_host", "self_signed"])
def test_http_request_names_why_a_certificate_is_refused(case, request, pki):
    backend = request.getfixturevalue(f"{case}_backend")
    with pytest.raises(http.HttpFailure) as caught:
        http.request("GET", backend.url + "/health", tls=_ca(pki))
    message = str(caught.value)
    why = {"expired": r"expired", "wrong_host": r"name.*'127\.0\.0\.1'", "self_signed": r"self-signed"}
    assert backend.hostport in message and re.search(why[case], message), message
    _no_raw(message)


# --- the concurrency engine over wss ----------------------------------------------------------
def _engine(backend, tls: TLSConfig, count: int = 4) -> dict:
    return run_sessions(ws_url=f"wss://{backend.hostport}/ws", jwt_secret=JWT_SECRET, count=count,
                        concurrency=count, scenario="chat", tls=tls, dialect="default", session_timeout=30.0,
                        open_timeout=15.0)


def test_engine_over_wss_with_the_ca_completes_every_session(tls_backend, pki):
    stats = _engine(tls_backend, _ca(pki))
    assert stats["successful"] == stats["total"] == 4, stats["first_errors"]


def test_engine_over_wss_with_verification_off_completes_every_session(tls_backend):
    stats = _engine(tls_backend, TLSConfig(verify=False))
    assert stats["successful"] == 4, stats["first_errors"]


def test_engine_over_wss_without_the_ca_fails_every_session_with_the_diagnosis(tls_backend):
    stats = _engine(tls_backend, TLSConfig())
    assert stats["successful"] == 0 and stats["errors"] == 4, stats
    assert stats["first_errors"], stats
    for line in stats["first_errors"]:
        assert tls_backend.hostport in line and "E2E_CA_FILE" in line, line


def test_engine_over_wss_with_the_client_certificate_passes_mutual_tls(mtls_backend, pki):
    stats = _engine(mtls_backend, _client(pki))
    assert stats["successful"] == 4, stats["first_errors"]


def test_engine_over_wss_without_a_client_certificate_names_the_client_certificate_settings(mtls_backend, pki):
    stats = _engine(mtls_backend, _ca(pki), count=2)
    assert stats["successful"] == 0, stats
    assert stats["first_errors"], stats
    for line in stats["first_errors"]:
        assert "E2E_CLIENT_CERT" in line, line


# --- the Locust users -------------------------------------------------------------------------
def _locust(tmp_path, host: str, **env: str) -> tuple[dict, str]:
    """One headless Locust run (2 users, 2 sessions each; 60 s at most) in its own process;
    its stats rows (from ``--json``, written at the end: the CSV is only rewritten each second)
    and its log. Counted sessions, not a time: a busy machine gets its sessions too."""
    cmd = [sys.executable, "-m", "locust", "-f", str(ROOT / "load" / "locustfile.py"), "--headless",
           "-u", "2", "-r", "2", "-t", "60s", "--host", host, "--json", "--loglevel", "WARNING",
           "--exit-code-on-error", "0"]
    env = dict(env, E2E_LOCUST_ITERATIONS="2")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=clean_env(E2E_JWT_SECRET=JWT_SECRET, **env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        out, log = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, log = proc.communicate()
        pytest.fail(f"locust did not finish within 90 s:\n{log[-3000:]}")
    start = out.find("[")
    entries = json.loads(out[start:]) if start >= 0 else []
    rows = {(e["method"], e["name"]): {"Request Count": e["num_requests"], "Failure Count": e["num_failures"]}
            for e in entries}
    errors = " ".join(str(e) for e in entries)
    return rows, log + out + errors


def _locust_available() -> None:
    probe = subprocess.run([sys.executable, "-c", "import locust"], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip("locust is not installed (optional: requirements-load.txt)")


@pytest.mark.parametrize("setting", TRUST_SETTINGS)
def test_locust_users_use_the_trust_settings(setting, tls_backend, mtls_backend, pki, tmp_path):
    _locust_available()
    backend, env = trusted(setting, tls_backend, mtls_backend, pki)
    rows, log = _locust(tmp_path, f"wss://{backend.hostport}/ws", **env)
    for name in ("connect", "chat run"):
        row = rows.get(("WS", name))
        assert row is not None, f"no WS {name!r} row in Locust's stats ({sorted(rows)}):\n{log[-3000:]}"
        assert int(row["Request Count"]) > 0 and int(row["Failure Count"]) == 0, f"{row}\n{log[-3000:]}"


def test_locust_users_without_the_ca_fail_to_connect(tls_backend, tmp_path):
    _locust_available()
    rows, log = _locust(tmp_path, f"wss://{tls_backend.hostport}/ws")
    row = rows.get(("WS", "connect"))
    assert row is not None, f"no WS 'connect' row in Locust's stats ({sorted(rows)}):\n{log[-3000:]}"
    assert int(row["Failure Count"]) > 0 and int(row["Failure Count"]) == int(row["Request Count"]), row
    assert ("WS", "chat run") not in rows or int(rows[("WS", "chat run")]["Request Count"]) == 0, rows
    assert "certificate" in log.lower(), log[-3000:]
