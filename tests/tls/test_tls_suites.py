"""``suites/staging`` over HTTPS/WSS, as the ``staging`` profile against a reference backend
that serves TLS with a throwaway private CA.

The issue's acceptance: with the CA file every test passes; with verification off every
test passes and the console, the report metadata and the summary say so; with neither the
run stops in the suite setup with one diagnosis naming the host, the reason and
``E2E_CA_FILE``; mutual TLS works with a client certificate and is one diagnosis without.
Every HTTP failure is a diagnosis in the kit's words, never requests' raw exception.
"""

from __future__ import annotations

import html
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from tls_support import OWN_SUITES, RAW_HTTP_ERRORS, TRUST_SETTINGS, not_passed, run_robot, staging_env, trusted

pytestmark = pytest.mark.slow

# What the staging profile with the default dialect cannot do: these skips are the suites'
# own (Target Should Support), not a TLS problem.
EXPECTED_SKIPS = re.compile(r"dialect 'default' has no thread another connection could join"
                            r"|does not play the kit's scenario file")
SETUP_FAILED = "Parent suite setup failed"
# A run that stops in its setup does no network work: it costs Robot's start and the
# report, a few seconds on a loaded 2-core machine, never a timeout per test.
QUICK_RUN_S = 30.0
VERIFICATION_OFF = re.compile(r"verification\s+(was\s+)?off", re.I)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_all_pass(run) -> None:
    assert run.result_error is None, f"{run.result_error}\n{run.stdout[-3000:]}\n{run.stderr[-2000:]}"
    assert run.suite_setup_message == "", f"the suite setup failed: {run.suite_setup_message}"
    assert run.tests, f"no tests ran:\n{run.stdout[-3000:]}"
    assert not run.failed, f"{run.counts()}; not passed:\n{not_passed(run)}"
    unexpected = [t for t in run.tests.values() if t.status == "SKIP" and not EXPECTED_SKIPS.search(t.message)]
    assert not unexpected, "skipped for a reason other than what the default dialect cannot do:\n" + "\n".join(
        f"{t.longname}: {t.message[:300]}" for t in unexpected)
    assert run.rc == 0, f"robot exit code {run.rc} ({run.counts()})"


def assert_stopped_in_setup(run, *needles: str) -> str:
    """The run stopped in the top suite's setup with one message holding every needle; every
    test failed with that message, and the run was quick. Returns the message."""
    assert run.result_error is None, f"{run.result_error}\n{run.stdout[-3000:]}"
    message = run.suite_setup_message
    assert message, (f"the suite setup passed; the failures came one by one instead ({run.counts()}):\n"
                     f"{not_passed(run)[:4000]}")
    missing = [n for n in needles if n.lower() not in message.lower()]
    assert not missing, f"the setup message does not name {missing}: {message}"
    for raw in RAW_HTTP_ERRORS:
        assert raw not in message, f"the setup message is requests' raw exception ({raw}): {message}"
    assert len(run.tests) > 1 and len(run.failed) == len(run.tests), f"{run.counts()}:\n{not_passed(run)}"
    others = [t for t in run.tests.values() if SETUP_FAILED not in t.message or message not in t.message]
    assert not others, "tests that failed with another message than the setup's:\n" + "\n".join(
        f"{t.longname}: {t.message[:300]}" for t in others)
    assert run.wall < QUICK_RUN_S, f"the run took {run.wall:.1f}s: it should stop in its setup"
    assert max(t.elapsed for t in run.tests.values()) < 1.0, "a test spent time although the setup failed"
    return message


def _summary_text(outdir: Path) -> tuple[str, str]:
    md = (outdir / "summary.md").read_text(encoding="utf-8")
    page = (outdir / "summary.html").read_text(encoding="utf-8")
    return md, html.unescape(re.sub(r"<[^>]+>", " ", page))


# --- (1) the CA file ------------------------------------------------------------------------
def test_with_the_ca_file_every_suite_passes_over_https_and_wss(tls_backend, pki, tmp_path):
    run = run_robot(tmp_path, staging_env(tls_backend.url, E2E_CA_FILE=str(pki["ca"])))
    assert_all_pass(run)
    assert run.metadata.get("Target") == "staging"
    assert run.metadata.get("Target ws url") == f"wss://{tls_backend.hostport}/ws"
    assert run.metadata.get("Target tls") == f"CA {pki['ca']}", run.metadata
    concurrency = [t for t in run.tests.values() if ".09 Concurrency." in t.longname]
    assert concurrency and all(t.status == "PASS" for t in concurrency), not_passed(run)
    assert any(f"against wss://{tls_backend.hostport}/ws" in m for m in run.messages), \
        "the concurrency engine did not log a run against the wss:// URL"
    assert not VERIFICATION_OFF.search(run.stdout), "the console says verification was off"
    md, page = _summary_text(tmp_path)
    assert not VERIFICATION_OFF.search(md) and not VERIFICATION_OFF.search(page)


# --- (2) verification off -------------------------------------------------------------------
def test_with_verification_off_every_suite_passes_and_every_report_says_so(tls_backend, tmp_path):
    run = run_robot(tmp_path, staging_env(tls_backend.url, E2E_VERIFY_TLS="false"))
    assert_all_pass(run)
    console = [line for line in run.stdout.splitlines() if line.startswith("Target:")]
    assert console and VERIFICATION_OFF.search(console[0]) and "E2E_VERIFY_TLS=false" in console[0], console
    assert run.metadata.get("Target tls") == "verification OFF", run.metadata
    md, page = _summary_text(tmp_path)
    assert VERIFICATION_OFF.search(md), "summary.md does not say verification was off"
    assert VERIFICATION_OFF.search(page), "summary.html does not say verification was off"


# --- (3) neither ----------------------------------------------------------------------------
def test_without_ca_or_switch_the_run_stops_in_setup_naming_host_reason_and_setting(tls_backend, tmp_path):
    run = run_robot(tmp_path, staging_env(tls_backend.url))
    message = assert_stopped_in_setup(run, tls_backend.hostport, "E2E_CA_FILE")
    assert re.search(r"self-signed|CA you do not trust|unknown CA", message, re.I), message
    assert run.rc != 0


# --- (4) mutual TLS -------------------------------------------------------------------------
def test_mutual_tls_with_the_client_certificate_every_suite_passes(mtls_backend, pki, tmp_path):
    run = run_robot(tmp_path, staging_env(mtls_backend.url, E2E_CA_FILE=str(pki["ca"]),
                                          E2E_CLIENT_CERT=str(pki["client"]), E2E_CLIENT_KEY=str(pki["client_key"])))
    assert_all_pass(run)
    assert "client certificate" in run.metadata.get("Target tls", ""), run.metadata


def test_mutual_tls_without_a_client_certificate_is_one_diagnosis_in_setup(mtls_backend, pki, tmp_path):
    run = run_robot(tmp_path, staging_env(mtls_backend.url, E2E_CA_FILE=str(pki["ca"])))
    assert_stopped_in_setup(run, mtls_backend.hostport, "E2E_CLIENT_CERT", "E2E_CLIENT_KEY")


def test_mutual_tls_with_a_certificate_the_server_does_not_trust_is_one_diagnosis_in_setup(
        mtls_backend, pki, tmp_path):
    run = run_robot(tmp_path, staging_env(mtls_backend.url, E2E_CA_FILE=str(pki["ca"]),
                                          E2E_CLIENT_CERT=str(pki["stranger"]),
                                          E2E_CLIENT_KEY=str(pki["stranger_key"])))
    message = assert_stopped_in_setup(run, mtls_backend.hostport, "E2E_CLIENT_CERT")
    assert "CA you do not trust" not in message, f"the server's certificate is trusted; the client's is not: {message}"


# --- (5) certificate problems and trust settings that cannot work ------------------------------
def test_an_expired_certificate_stops_the_run_in_setup(expired_backend, pki, tmp_path):
    run = run_robot(tmp_path, staging_env(expired_backend.url, E2E_CA_FILE=str(pki["ca"])))
    assert_stopped_in_setup(run, expired_backend.hostport, "expired")


def test_a_certificate_for_another_host_name_stops_the_run_in_setup(wrong_host_backend, pki, tmp_path):
    run = run_robot(tmp_path, staging_env(wrong_host_backend.url, E2E_CA_FILE=str(pki["ca"])))
    message = assert_stopped_in_setup(run, wrong_host_backend.hostport, "name", "'127.0.0.1'")
    assert not re.search(r"expired|self-signed|CA you do not trust", message, re.I), message


def test_a_certificate_for_another_host_name_via_localhost_stops_the_run_in_setup(wrong_host_backend, pki,
                                                                                   tmp_path):
    run = run_robot(tmp_path, staging_env(wrong_host_backend.url_as("localhost"), E2E_CA_FILE=str(pki["ca"])))
    message = assert_stopped_in_setup(run, f"localhost:{wrong_host_backend.port}", "name", "'localhost'")
    assert not re.search(r"expired|self-signed|CA you do not trust", message, re.I), message


def test_a_self_signed_certificate_stops_the_run_in_setup_naming_the_ca_setting(self_signed_backend, tmp_path):
    run = run_robot(tmp_path, staging_env(self_signed_backend.url))
    assert_stopped_in_setup(run, self_signed_backend.hostport, "self-signed", "E2E_CA_FILE")


def test_a_missing_ca_file_is_named_with_the_other_configuration_problems(tls_backend, pki, tmp_path):
    missing = pki["folder"] / "no-such-ca.pem"
    run = run_robot(tmp_path, staging_env(tls_backend.url, E2E_CA_FILE=str(missing), E2E_VERIFY_TLS="maybe",
                                          E2E_CLIENT_CERT=str(pki["folder"] / "no-such-client.pem"),
                                          E2E_CLIENT_KEY=str(pki["client_key"])))
    message = assert_stopped_in_setup(run, "Configuration invalid", "3 problems", f"E2E_CA_FILE '{missing}'",
                                      "does not exist", "E2E_VERIFY_TLS 'maybe'", "E2E_CLIENT_CERT")
    assert "TLS handshake" not in message, f"nothing should be connected with an invalid configuration: {message}"


def test_a_ca_file_that_is_not_pem_is_named_at_resolution(tls_backend, pki, tmp_path):
    run = run_robot(tmp_path, staging_env(tls_backend.url, E2E_CA_FILE=str(pki["not_pem"])))
    assert_stopped_in_setup(run, "Configuration invalid", f"E2E_CA_FILE '{pki['not_pem']}'", "PEM")


def test_an_empty_ca_folder_is_named_at_resolution(tls_backend, tmp_path):
    """A folder with no certificate in it cannot trust anything: a configuration problem,
    named with the others, not a handshake that then blames the server's CA."""
    empty = tmp_path / "empty-ca-folder"
    empty.mkdir()
    run = run_robot(tmp_path / "out", staging_env(tls_backend.url, E2E_CA_FILE=str(empty)))
    assert_stopped_in_setup(run, "Configuration invalid", f"E2E_CA_FILE '{empty}'")


def test_a_hashed_ca_folder_is_trusted(tls_backend, pki, tmp_path):
    """``E2E_CA_FILE`` may name a folder of hashed CA certificates (``openssl rehash``)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to name the CA by its subject hash")
    folder = tmp_path / "ca-folder"
    folder.mkdir()
    subject_hash = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in", str(pki["ca"])],
                                  capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    shutil.copy(pki["ca"], folder / f"{subject_hash}.0")
    run = run_robot(tmp_path / "out", staging_env(tls_backend.url, E2E_CA_FILE=str(folder)), "--include", "smoke")
    assert_all_pass(run)


# --- (6) HTTP failures are diagnoses in the kit's words -------------------------------------
def test_an_auth_url_on_a_closed_https_port_stops_the_run_in_setup_in_the_kits_words(tls_backend, pki, tmp_path):
    closed = _free_port()
    run = run_robot(tmp_path, staging_env(tls_backend.url, auth_url=f"https://127.0.0.1:{closed}",
                                          E2E_CA_FILE=str(pki["ca"])))
    message = assert_stopped_in_setup(run, f"127.0.0.1:{closed}", "refused")
    assert re.search(r"E2E_AUTH_URL|\b[Cc]heck (that|the|E2E_)", message), \
        f"the diagnosis says what happened but not what to check (the setting or service behind it): {message}"


def test_a_closed_auth_service_port_fails_each_call_with_a_diagnosis_not_a_raw_exception(tls_backend, tmp_path):
    """Verification off: no certificate check at setup, so each call to the auth service meets
    the closed port itself; each failure is the kit's diagnosis."""
    closed = _free_port()
    run = run_robot(tmp_path, staging_env(tls_backend.url, auth_url=f"https://127.0.0.1:{closed}",
                                          E2E_VERIFY_TLS="false"), "--include", "smoke", "--include", "auth")
    assert run.result_error is None and run.suite_setup_message == "", run.suite_setup_message or run.result_error
    auth_service = [t for t in run.tests.values() if "Auth Service" in t.name or "Simulation Key" in t.name]
    assert auth_service, sorted(run.tests)
    for test in auth_service:
        assert test.status == "FAIL", f"{test.name} {test.status}: {test.message}"
        assert f"127.0.0.1:{closed}" in test.message and "refused" in test.message, test.message
    for test in run.tests.values():
        for raw in RAW_HTTP_ERRORS:
            assert raw not in test.message, f"{test.name}: requests' raw exception ({raw}): {test.message}"
    others = [t for t in run.tests.values() if t not in auth_service and t.status == "FAIL"]
    assert not others, "tests that do not use the auth service failed:\n" + "\n".join(
        f"{t.name}: {t.message[:300]}" for t in others)


# --- RequestsLibrary's session for the target -------------------------------------------------
@pytest.mark.parametrize("setting", TRUST_SETTINGS)
def test_the_requests_library_session_carries_the_trust_settings(setting, tls_backend, mtls_backend, pki,
                                                                 tmp_path):
    backend, tls = trusted(setting, tls_backend, mtls_backend, pki)
    run = run_robot(tmp_path, staging_env(backend.url, **tls), suite=OWN_SUITES / "requests_session.robot")
    assert run.rc == 0 and not run.failed and run.passed, not_passed(run) + run.suite_setup_message


@pytest.mark.parametrize("setting", ["ca", "verification-off"])
def test_the_requests_library_session_keeps_the_trust_settings_when_the_shell_names_a_ca_bundle(
        setting, tls_backend, pki, tmp_path):
    """A developer's shell or a CI image often exports REQUESTS_CA_BUNDLE (this machine's does);
    the target's E2E_CA_FILE / E2E_VERIFY_TLS must still decide for the session the kit made."""
    import certifi

    tls = {"ca": {"E2E_CA_FILE": str(pki["ca"])}, "verification-off": {"E2E_VERIFY_TLS": "false"}}[setting]
    run = run_robot(tmp_path, staging_env(tls_backend.url, REQUESTS_CA_BUNDLE=certifi.where(), **tls),
                    suite=OWN_SUITES / "requests_session.robot")
    assert run.rc == 0 and not run.failed and run.passed, not_passed(run) + run.suite_setup_message
