"""TLS fixtures: the throwaway PKI (``tls_support.make_pki``) once per session, and reference
backends serving HTTPS/WSS with it, each on a free loopback port. Every backend started
here is stopped at the end of the session, also when a test fails or is interrupted."""

from __future__ import annotations

from pathlib import Path

import pytest

from tls_support import TLSBackend, make_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> dict[str, Path]:
    """The throwaway PKI (see ``tls_support``), in a temporary folder."""
    return make_pki(tmp_path_factory.mktemp("tls-pki"))


@pytest.fixture(scope="session")
def start_tls_backend():
    """Factory: ``start_tls_backend(cert, key, *extra_args)``; all are stopped at session end."""
    started: list[TLSBackend] = []

    def start(certfile: Path, keyfile: Path, *args: str) -> TLSBackend:
        backend = TLSBackend(certfile, keyfile, *args)
        started.append(backend)
        return backend

    try:
        yield start
    finally:
        for backend in started:
            backend.stop()


@pytest.fixture(scope="session")
def tls_backend(start_tls_backend, pki) -> TLSBackend:
    """Serves a certificate from the private CA for 127.0.0.1/localhost."""
    return start_tls_backend(pki["server"], pki["server_key"])


@pytest.fixture(scope="session")
def mtls_backend(start_tls_backend, pki) -> TLSBackend:
    """As ``tls_backend``, and requires a client certificate from the client CA (mutual TLS)."""
    return start_tls_backend(pki["server"], pki["server_key"], "--ssl-ca-certs", str(pki["client_ca"]),
                             "--ssl-cert-reqs", "required")


@pytest.fixture(scope="session")
def expired_backend(start_tls_backend, pki) -> TLSBackend:
    return start_tls_backend(pki["expired"], pki["expired_key"])


@pytest.fixture(scope="session")
def wrong_host_backend(start_tls_backend, pki) -> TLSBackend:
    return start_tls_backend(pki["wrong_host"], pki["wrong_host_key"])


@pytest.fixture(scope="session")
def self_signed_backend(start_tls_backend, pki) -> TLSBackend:
    return start_tls_backend(pki["self_signed"], pki["self_signed_key"])
