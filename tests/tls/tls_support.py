"""TLS test support: a throwaway PKI made with ``cryptography``, and reference backends that
serve HTTPS/WSS with it (uvicorn's own SSL options), each on a free loopback port.

The PKI (all in one temporary folder, made once per session):

* ``ca``: the private CA the staging-like target is "behind";
* ``server`` / ``server_key``: issued by ``ca`` for 127.0.0.1 (IP SAN) and localhost (DNS SAN);
* ``expired`` / ``expired_key``: issued by ``ca`` for the same names, expired yesterday;
* ``wrong_host`` / ``wrong_host_key``: issued by ``ca`` for ``staging.example.test`` only;
* ``self_signed`` / ``self_signed_key``: for 127.0.0.1/localhost, signed by itself (no CA);
* ``client_ca``: a second CA that issues client certificates (mutual TLS);
* ``client`` / ``client_key``: issued by ``client_ca`` (clientAuth);
* ``stranger`` / ``stranger_key``: a client certificate from a CA the server does not trust;
* ``not_pem``: a file that exists but holds no PEM certificate.

A unique module name (not ``helpers.py``): test folders share ``sys.path``. Every backend
started here is stopped by its owner (the fixtures in ``conftest.py``), and once more at
interpreter exit or with its parent, as every ``BackendProcess`` is.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

from agentkit.transports.process import BackendProcess
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT = Path(__file__).resolve().parents[2]
JWT_SECRET = "tls-tests-jwt-secret-0123456789abcdef"
SIMULATION_KEY = "tls-tests-simulation-key-0123456789"
# Trust settings a developer's shell may carry; the tests decide trust themselves.
AMBIENT_TRUST = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")
LOOPBACK_NAMES = (x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost"))


# --- PKI --------------------------------------------------------------------------------
def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _cert(common_name: str, key, issuer: x509.Certificate | None = None, issuer_key=None, *, ca: bool = False,
          usage=None, sans=(), not_before: datetime.datetime | None = None,
          not_after: datetime.datetime | None = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (x509.CertificateBuilder()
               .subject_name(name)
               .issuer_name(issuer.subject if issuer is not None else name)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(not_before or now - datetime.timedelta(minutes=5))
               .not_valid_after(not_after or now + datetime.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False),
            critical=True)
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(issuer_key if issuer is not None else key, hashes.SHA256())


def _pem(path: Path, obj) -> Path:
    if isinstance(obj, x509.Certificate):
        path.write_bytes(obj.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return path


def make_pki(folder: Path) -> dict[str, Path]:
    """Writes the throwaway PKI described in this module's docstring into ``folder``."""
    now = datetime.datetime.now(datetime.timezone.utc)
    server_auth = ExtendedKeyUsageOID.SERVER_AUTH
    client_auth = ExtendedKeyUsageOID.CLIENT_AUTH
    ca_key, client_ca_key, other_ca_key = _key(), _key(), _key()
    ca = _cert("tls-tests private CA", ca_key, ca=True)
    client_ca = _cert("tls-tests client CA", client_ca_key, ca=True)
    other_ca = _cert("tls-tests unrelated CA", other_ca_key, ca=True)
    keys = {name: _key() for name in ("server", "expired", "wrong_host", "self_signed", "client", "stranger")}
    certs = {
        "server": _cert("127.0.0.1", keys["server"], ca, ca_key, usage=server_auth, sans=LOOPBACK_NAMES),
        "expired": _cert("127.0.0.1", keys["expired"], ca, ca_key, usage=server_auth, sans=LOOPBACK_NAMES,
                         not_before=now - datetime.timedelta(days=30), not_after=now - datetime.timedelta(days=1)),
        "wrong_host": _cert("staging.example.test", keys["wrong_host"], ca, ca_key, usage=server_auth,
                            sans=(x509.DNSName("staging.example.test"),)),
        "self_signed": _cert("127.0.0.1", keys["self_signed"], usage=server_auth, sans=LOOPBACK_NAMES),
        "client": _cert("qa-client", keys["client"], client_ca, client_ca_key, usage=client_auth),
        "stranger": _cert("stranger", keys["stranger"], other_ca, other_ca_key, usage=client_auth),
    }
    out = {"ca": _pem(folder / "ca.pem", ca), "client_ca": _pem(folder / "client-ca.pem", client_ca)}
    for name, cert in certs.items():
        out[name] = _pem(folder / f"{name}.pem", cert)
        out[f"{name}_key"] = _pem(folder / f"{name}.key", keys[name])
    out["not_pem"] = folder / "not-a-ca.pem"
    out["not_pem"].write_text("this is not a PEM certificate\n")
    out["folder"] = folder
    return out


# --- the reference backend over TLS ------------------------------------------------------
def clean_env(**overrides: str) -> dict[str, str]:
    """This environment without any kit, backend, Robot or ambient trust setting, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("E2E_", "REFERENCE_BACKEND_", "ROBOT_", "PABOT")) and k not in AMBIENT_TRUST}
    env["PYTHONUNBUFFERED"] = "1"
    env.update({k: str(v) for k, v in overrides.items()})
    return env


class TLSBackend(BackendProcess):
    """``python -m reference_backend --port 0 --ssl-certfile ...`` with known secrets; ``url`` is
    the ``https://127.0.0.1:<port>`` of its ready line. Always stopped (``stop`` is idempotent)."""

    def __init__(self, certfile: Path, keyfile: Path, *args: str, ready_timeout: float = 40.0) -> None:
        super().__init__(think_delay=0.005, jwt_secret=JWT_SECRET, simulation_key=SIMULATION_KEY,
                         extra_args=["--ssl-certfile", str(certfile), "--ssl-keyfile", str(keyfile), *args],
                         env=clean_env())
        self.start(ready_timeout)

    @property
    def port(self) -> int:
        return urlsplit(self.url).port

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url_as(self, host: str) -> str:
        return f"https://{host}:{self.port}"


TRUST_SETTINGS = ("ca", "verification-off", "client-certificate")


def trusted(setting: str, tls_backend: "TLSBackend", mtls_backend: "TLSBackend",
            pki: dict[str, Path]) -> tuple["TLSBackend", dict[str, str]]:
    """A backend and the E2E_ trust settings that connect to it: the private CA, verification
    off, or mutual TLS with the client certificate."""
    return {
        "ca": (tls_backend, {"E2E_CA_FILE": str(pki["ca"])}),
        "verification-off": (tls_backend, {"E2E_VERIFY_TLS": "false"}),
        "client-certificate": (mtls_backend, {"E2E_CA_FILE": str(pki["ca"]), "E2E_CLIENT_CERT": str(pki["client"]),
                                              "E2E_CLIENT_KEY": str(pki["client_key"])}),
    }[setting]


def staging_env(backend_url: str, auth_url: str | None = None, **tls: str) -> dict[str, str]:
    """The environment of a run against ``backend_url`` as the ``staging`` profile."""
    return clean_env(E2E_TARGET="staging", E2E_BACKEND_URL=backend_url, E2E_AUTH_URL=auth_url or backend_url,
                     E2E_JWT_SECRET=JWT_SECRET, E2E_OAUTH_SIMULATION_KEY=SIMULATION_KEY, **tls)


# --- robot runs -----------------------------------------------------------------------------
# tests/suites is not a package: its run helpers are imported by path, as other folders do.
sys.path.insert(0, str(ROOT / "tests" / "suites"))
from suite_runs import RobotRun, run_command  # noqa: E402

SUITES = ROOT / "suites" / "staging"
OWN_SUITES = Path(__file__).resolve().parent / "robot"
RAW_HTTP_ERRORS = ("HTTPSConnectionPool", "HTTPConnectionPool", "Max retries exceeded", "NewConnectionError",
                   "urllib3", "Traceback")


def run_robot(outdir: Path, env: dict[str, str], *args: str, suite: Path = SUITES,
              timeout: float = 240.0) -> RobotRun:
    """``robot`` on ``suite``; killed (and reported as a hang) after ``timeout`` seconds."""
    cmd = [sys.executable, "-m", "robot", "--outputdir", str(outdir), "--console", "verbose", *args, str(suite)]
    return run_command(cmd, outdir, env, timeout)


def not_passed(run: RobotRun) -> str:
    """The tests that did not pass, one line each, for assertion messages."""
    return "\n".join(f"{t.status} {t.longname}: {t.message[:300]}" for t in run.tests.values()
                     if t.status != "PASS") or "(none)"
