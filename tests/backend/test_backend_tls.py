"""TLS (``--ssl-certfile`` and friends): HTTPS and WSS with a throwaway CA, mutual TLS, bad options."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from websockets.exceptions import WebSocketException

from backend_helpers import ROOT, bearer, make_token
from wire_helpers import agui_run, agui_violations, b64url, netra_run, netra_violations, open_ws, recv


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _cert(subject: str, key, issuer=None, issuer_key=None, *, ca=False, usage=None, sans=()):
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder()
               .subject_name(name)
               .issuer_name(issuer.subject if issuer else name)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False),
            critical=True)
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                                        critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


def _write(path: Path, *objects) -> Path:
    data = b""
    for obj in objects:
        if isinstance(obj, x509.Certificate):
            data += obj.public_bytes(serialization.Encoding.PEM)
        else:
            data += obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    """A throwaway CA, a server certificate for 127.0.0.1/localhost, a client certificate, and strangers."""
    folder = tmp_path_factory.mktemp("pki")
    ca_key = _key()
    ca = _cert("tests-backend CA", ca_key, ca=True)
    server_key, client_key, other_key = _key(), _key(), _key()
    server = _cert("127.0.0.1", server_key, ca, ca_key, usage=ExtendedKeyUsageOID.SERVER_AUTH,
                   sans=(x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")))
    client = _cert("qa-client", client_key, ca, ca_key, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    other_ca_key = _key()
    other_ca = _cert("some other CA", other_ca_key, ca=True)
    stranger = _cert("stranger", other_key, other_ca, other_ca_key, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    return {
        "ca": _write(folder / "ca.pem", ca),
        "server_cert": _write(folder / "server.pem", server),
        "server_key": _write(folder / "server.key", server_key),
        "server_combined": _write(folder / "server-combined.pem", server, server_key),
        "client_cert": _write(folder / "client.pem", client),
        "client_key": _write(folder / "client.key", client_key),
        "stranger_cert": _write(folder / "stranger.pem", stranger),
        "stranger_key": _write(folder / "stranger.key", other_key),
        "other_key": _write(folder / "other.key", _key()),
    }


def client_context(pki, cert: str | None = None) -> ssl.SSLContext:
    """For the ``websockets`` sync client. TLS 1.2 at most: that client reads the socket in one
    thread while another writes the upgrade request, and TLS 1.3's session tickets arriving
    then once left the reader blocked and the test hung 300 s (OpenSSL does not support one
    connection read and written from two threads at once). TLS 1.3 is served all the same."""
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    if cert:
        context.load_cert_chain(str(pki[f"{cert}_cert"]), str(pki[f"{cert}_key"]))
    return context


@pytest.fixture(scope="module")
def tls_server(start_server, pki):
    return start_server("--ssl-certfile", str(pki["server_cert"]), "--ssl-keyfile", str(pki["server_key"]),
                        "--think-delay", "0.01")


def test_ready_line_https_health_and_discovery_with_wss(tls_server, pki):
    assert tls_server.url.startswith("https://127.0.0.1:") and tls_server.ws_url.startswith("wss://")
    headers = bearer(make_token("user_tls"))
    health = requests.get(tls_server.url + "/health", verify=str(pki["ca"]), timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "healthy"
    services = requests.get(tls_server.url + "/api/discovery/services", headers=headers, verify=str(pki["ca"]),
                            timeout=10).json()["services"]
    assert services["backend"]["url"] == tls_server.url
    assert services["websocket"]["url"] == tls_server.ws_url


def test_a_client_that_does_not_trust_the_ca_is_refused_by_itself(tls_server):
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(tls_server.url + "/health", timeout=10)  # the system CAs don't know ours


def test_a_run_over_wss(tls_server, pki):
    with open_ws(tls_server, subprotocols=["jwt-auth", f"jwt.{make_token('user_wss')}"],
                 ssl=client_context(pki)) as ws:
        assert ws.subprotocol == "jwt-auth"
        assert recv(ws)["data"]["event"] == "connection_established"
        ws.send(json.dumps({"type": "user_message", "payload": {"content": "over TLS", "thread_id": "thread_tls",
                                                                "run_id": "run_tls"}}))
        events = []
        while not events or events[-1]["type"] != "agent_completed":
            events.append(recv(ws))
    assert [e["type"] for e in events][0] == "agent_started"
    assert {(e["run_id"], e["thread_id"], e["user_id"]) for e in events} == {("run_tls", "thread_tls", "user_wss")}


@pytest.fixture(scope="module")
def mtls_servers(start_server, pki):
    """Mutual TLS, configured from the environment: netra and ag-ui wires, a client certificate required."""
    env = {"REFERENCE_BACKEND_SSL_CERTFILE": str(pki["server_combined"]),
           "REFERENCE_BACKEND_SSL_CA_CERTS": str(pki["ca"]), "REFERENCE_BACKEND_SSL_CERT_REQS": "required"}
    started = {wire: start_server("--wire", wire, "--think-delay", "0.01", env=env, ready=False)
               for wire in ("netra", "ag-ui")}
    return {wire: server.wait_ready(timeout=60) for wire, server in started.items()}


@pytest.mark.parametrize("wire", ["netra", "ag-ui"])
def test_mutual_tls_serves_a_client_with_a_certificate_from_the_ca(mtls_servers, pki, wire):
    server = mtls_servers[wire]
    response = requests.get(server.url + "/health", verify=str(pki["ca"]),
                            cert=(str(pki["client_cert"]), str(pki["client_key"])), timeout=10)
    assert response.status_code == 200
    user = "user_mtls"
    if wire == "netra":
        with open_ws(server, subprotocols=[f"jwt.{b64url(make_token(user))}"], ssl=client_context(pki, "client")) as ws:
            assert recv(ws)["type"] == "connection_established"
            events, thread_id, run_id = netra_run(ws)
            assert netra_violations(events, run_id, thread_id, user) == {}
    else:
        with open_ws(server, headers=bearer(make_token(user)), ssl=client_context(pki, "client")) as ws:
            events, run_input = agui_run(ws)
            assert agui_violations(events, run_input["threadId"], run_input["runId"]) == {}


@pytest.mark.parametrize("cert", [None, "stranger"], ids=["no-certificate", "certificate-of-another-ca"])
def test_mutual_tls_refuses_a_client_without_a_certificate_from_the_ca(mtls_servers, pki, cert):
    server = mtls_servers["netra"]
    kwargs = {"cert": (str(pki[f"{cert}_cert"]), str(pki[f"{cert}_key"]))} if cert else {}
    with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
        requests.get(server.url + "/health", verify=str(pki["ca"]), timeout=10, **kwargs)
    # With TLS 1.3 the server judges the client's certificate after the client's side of the
    # handshake: the refusal shows as a connection closed before the upgrade's answer.
    with pytest.raises((ssl.SSLError, OSError, WebSocketException)):
        with open_ws(server, subprotocols=[f"jwt.{b64url(make_token('user_x'))}"], ssl=client_context(pki, cert)):
            pass


# --- bad options ------------------------------------------------------------------------

def _run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reference_backend", "--port", "0", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("case", ["missing-cert", "missing-key", "key-of-another-cert", "not-a-cert", "missing-ca",
                                  "ca-not-a-cert", "required-without-ca", "key-without-cert", "bad-cert-reqs"])
def test_bad_tls_options_exit_2_with_one_message(pki, tmp_path, case):
    cert, key = str(pki["server_cert"]), str(pki["server_key"])
    nowhere = str(tmp_path / "nowhere.pem")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    args, expected = {
        "missing-cert": (["--ssl-certfile", nowhere, "--ssl-keyfile", key], f"--ssl-certfile {nowhere}: no such file"),
        "missing-key": (["--ssl-certfile", cert, "--ssl-keyfile", nowhere], f"--ssl-keyfile {nowhere}: no such file"),
        "key-of-another-cert": (["--ssl-certfile", cert, "--ssl-keyfile", str(pki["other_key"])],
                                f"--ssl-certfile {cert} with --ssl-keyfile {pki['other_key']}: not a usable"),
        "not-a-cert": (["--ssl-certfile", str(junk)], f"--ssl-certfile {junk}: not a usable PEM certificate"),
        "missing-ca": (["--ssl-certfile", cert, "--ssl-keyfile", key, "--ssl-ca-certs", nowhere],
                       f"--ssl-ca-certs {nowhere}: no such file"),
        "ca-not-a-cert": (["--ssl-certfile", cert, "--ssl-keyfile", key, "--ssl-ca-certs", str(junk)],
                          f"--ssl-ca-certs {junk}: not a usable PEM CA bundle"),
        "required-without-ca": (["--ssl-certfile", cert, "--ssl-keyfile", key, "--ssl-cert-reqs", "required"],
                                "--ssl-cert-reqs required needs --ssl-ca-certs"),
        "key-without-cert": (["--ssl-keyfile", key], "--ssl-keyfile need(s) --ssl-certfile"),
        "bad-cert-reqs": (["--ssl-certfile", cert, "--ssl-cert-reqs", "maybe"], "invalid choice: 'maybe'"),
    }[case]
    result = _run_cli(*args)
    assert result.returncode == 2 and result.stdout == ""
    assert expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_cert_reqs_value_from_the_environment_exits_2(pki):
    env = dict(os.environ, REFERENCE_BACKEND_SSL_CERTFILE=str(pki["server_combined"]),
               REFERENCE_BACKEND_SSL_CERT_REQS="maybe")
    result = _run_cli(env=env)
    assert result.returncode == 2 and "REFERENCE_BACKEND_SSL_CERT_REQS: 'maybe' is not one of none, optional, required" in result.stderr
