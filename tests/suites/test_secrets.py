"""No secret and no token reaches the run's output.

A reference backend is started here with a known JWT secret and simulation key, and the
suites are pointed at it as ``E2E_TARGET=staging``: a passing run signing tokens with the
secret, a passing run fetching real tokens from the auth service (``--loglevel TRACE``),
a failing run (``accept-expired``: an auth test fails and reports the accepted token),
a pabot run, and a local run. ``tools/secrets_scan.py`` then scans every file each run
wrote (``output.xml``, ``log.html`` and ``report.html`` decoded, summaries, backend log)
and its console: neither secret in any encoding, and no JWT at all (tokens are random,
so any signed JWT in the output is a leak).

The scanner is first shown to find what it looks for, also in Robot's compressed log.
"""

from __future__ import annotations

import base64
import secrets
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import forked
import jwt
import pytest

from suite_runs import ROOT, OwnBackend, RobotRun, clean_env, report, run_robot

sys.path.insert(0, str(ROOT / "tools"))
import secrets_scan  # noqa: E402

pytestmark = pytest.mark.slow

JWT_SECRET = "known-jwt-secret-" + secrets.token_urlsafe(32)
SIMULATION_KEY = "known-sim-key-" + secrets.token_urlsafe(24)
KNOWN = [JWT_SECRET, SIMULATION_KEY]
SUMMARY_TOOL = ROOT / "tools" / "summary.py"


def _kinds(findings) -> set[str]:
    return {f.kind for f in findings}


# --- the scanner finds what it looks for ------------------------------------------
@pytest.mark.parametrize("prefix", ["", "a", "ab"], ids=["aligned", "offset1", "offset2"])
def test_scanner_finds_a_secret_in_every_encoding(prefix):
    plain = f"header {prefix}{JWT_SECRET} trailer"
    as_b64 = base64.b64encode(f"{prefix}{{\"key\": \"{JWT_SECRET}\"}}".encode()).decode()
    as_b64url = base64.urlsafe_b64encode(f"{prefix}{JWT_SECRET}".encode()).decode().rstrip("=")
    assert "secret #1 as raw" in _kinds(secrets_scan.scan_text(plain, KNOWN))
    assert any("base64" in k for k in _kinds(secrets_scan.scan_text(f"blob={as_b64};", KNOWN)))
    assert any("base64" in k for k in _kinds(secrets_scan.scan_text(f"x {as_b64url} y", KNOWN)))
    assert "secret #2 as hex" in _kinds(secrets_scan.scan_text(SIMULATION_KEY.encode().hex(), KNOWN))


def test_scanner_finds_any_signed_jwt_and_nothing_in_clean_text():
    token = jwt.encode({"sub": "someone", "exp": 2_000_000_000}, secrets.token_urlsafe(32), algorithm="HS256")
    assert _kinds(secrets_scan.scan_text(f"Authorization: Bearer {token}", KNOWN)) == {"JWT-shaped token"}
    hidden = base64.b64encode(f"token={token}".encode()).decode()
    assert "JWT-shaped token" in _kinds(secrets_scan.scan_text(hidden, KNOWN))
    # masked forms, as the kit logs them, are not leaks
    clean = f"token {token[:4]}…{token[-4:]} ({len(token)} chars), secret •••• ({len(JWT_SECRET)} chars)"
    assert secrets_scan.scan_text(clean, KNOWN) == []


def test_scanner_reads_robots_compressed_log(tmp_path):
    """Positive control on real Robot output: a suite that logs the secret and a token."""
    token = jwt.encode({"sub": "leaky", "exp": 2_000_000_000}, JWT_SECRET, algorithm="HS256")
    suite = tmp_path / "leaky.robot"
    suite.write_text(
        "*** Test Cases ***\nLeak\n"
        "    Log    %{LEAK_ME}\n"
        f"    Log    {'padding-so-robot-compresses-this-message-' * 40}%{{LEAK_TOKEN}}\n", encoding="utf-8")
    out = tmp_path / "out"
    proc = forked.run([sys.executable, "-m", "robot", "--outputdir", str(out), "--console", "none", str(suite)],
                      env=clean_env(LEAK_ME=JWT_SECRET, LEAK_TOKEN=token), capture_output=True, text=True,
                      timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    log_findings = secrets_scan.scan_file(out / "log.html", KNOWN)
    assert {"secret #1 as raw", "JWT-shaped token"} <= _kinds(log_findings)
    compressed = [f for f in log_findings if f.kind == "JWT-shaped token" and "robot log string" in f.where]
    assert compressed, f"the token in the compressed log string was not found: {log_findings}"
    assert "raw" not in {f.where for f in log_findings if f.kind == "JWT-shaped token"}, \
        "the long message should only be readable after decompression (else this control proves nothing)"
    assert {"secret #1 as raw", "JWT-shaped token"} <= _kinds(secrets_scan.scan_file(out / "output.xml", KNOWN))


def test_scanner_command_line(tmp_path):
    clean, leaky = tmp_path / "clean", tmp_path / "leaky"
    clean.mkdir()
    leaky.mkdir()
    (clean / "output.xml").write_text("<robot>nothing to see</robot>", encoding="utf-8")
    (leaky / "console.txt").write_text(f"oops {base64.b64encode(SIMULATION_KEY.encode()).decode()}", encoding="utf-8")
    env = clean_env(SCAN_A=JWT_SECRET, SCAN_B=SIMULATION_KEY)
    cmd = [sys.executable, str(ROOT / "tools" / "secrets_scan.py"), "--secret-env", "SCAN_A", "--secret-env", "SCAN_B"]
    ok = subprocess.run([*cmd, str(clean)], env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "clean" in ok.stdout, ok.stdout + ok.stderr
    bad = subprocess.run([*cmd, str(leaky)], env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "secret #2 as base64" in bad.stdout, bad.stdout + bad.stderr
    assert SIMULATION_KEY not in bad.stdout + bad.stderr, "the scanner's own report leaked the secret"
    unset = subprocess.run([*cmd, "--secret-env", "NOT_SET_ANYWHERE", str(clean)], env=env, capture_output=True,
                           text=True, timeout=60)
    assert unset.returncode == 2 and "NOT_SET_ANYWHERE" in unset.stderr


# --- real runs ----------------------------------------------------------------------
RUNS = ["signed-tokens", "auth-service-tokens-trace", "failing-accept-expired", "pabot", "local"]


@pytest.fixture(scope="module")
def leak_runs(tmp_path_factory):
    logs = tmp_path_factory.mktemp("backends")
    with OwnBackend(JWT_SECRET, SIMULATION_KEY, log=logs / "healthy.log") as healthy, \
            OwnBackend(JWT_SECRET, SIMULATION_KEY, "--fault", "accept-expired", log=logs / "faulty.log") as faulty:
        def staging(url: str, **extra: str) -> dict[str, str]:
            return clean_env(E2E_TARGET="staging", E2E_BACKEND_URL=url, E2E_AUTH_URL=url,
                             E2E_CONCURRENT_USERS="3", E2E_RUN_TIMEOUT="5s", **extra)

        both = {"E2E_JWT_SECRET": JWT_SECRET, "E2E_OAUTH_SIMULATION_KEY": SIMULATION_KEY}
        jobs = {
            "signed-tokens": (staging(healthy.url, **both), (), None),
            "auth-service-tokens-trace": (staging(healthy.url, E2E_OAUTH_SIMULATION_KEY=SIMULATION_KEY),
                                          ("--loglevel", "TRACE"), None),
            "failing-accept-expired": (staging(faulty.url, **both), ("--loglevel", "TRACE"), None),
            # pabot's own files (pabot_results/, the merged output) over the suites that handle tokens
            "pabot": (staging(healthy.url, **both), ("--include", "connection", "--include", "auth",
                                                     "--include", "api", "--include", "isolation"), 2),
            "local": (clean_env(E2E_CONCURRENT_USERS="3"), (), None),
        }

        def one(item):
            name, (env, args, pabot) = item
            out = tmp_path_factory.mktemp(name)
            run = run_robot(out, env, args, timeout=120, pabot=pabot)
            (out / "console-stdout.txt").write_text(run.stdout, encoding="utf-8")
            (out / "console-stderr.txt").write_text(run.stderr, encoding="utf-8")
            return name, run

        with ThreadPoolExecutor(max_workers=2) as pool:
            runs = dict(pool.map(one, jobs.items()))
        summaries = {name: _summarise(run) for name, run in runs.items()}
        backend_output = {"healthy": "".join(healthy.lines), "accept-expired": "".join(faulty.lines)}
    for name, run in runs.items():
        files = sum(1 for _ in secrets_scan.iter_files([run.outdir]))
        findings = secrets_scan.scan_paths([run.outdir], KNOWN)
        report("secret scan (tools/secrets_scan.py)",
               f"{name:<28} {run.counts():<45} {files:>3} files scanned: "
               + (f"{len(findings)} LEAK(S)" if findings else "clean"))
    return runs, backend_output, summaries


def _summarise(run: RobotRun) -> subprocess.CompletedProcess | None:
    """Writes summary.html/summary.md next to the run's output.xml with tools/summary.py,
    when the kit has it, so the summary files are scanned too."""
    if not SUMMARY_TOOL.is_file():
        return None
    return subprocess.run([sys.executable, str(SUMMARY_TOOL), str(run.outdir)], cwd=ROOT, env=clean_env(),
                          capture_output=True, text=True, timeout=60)


# Tests that fail on a target with a simulation key but no JWT secret (pinned below).
AUTH_SERVICE_ONLY_GAPS = {"Connection Is Established With A Welcome Frame", "Concurrent Users Connect Within Thresholds",
                          "Concurrent Users Chat Within Thresholds"}


def test_runs_did_what_the_scan_relies_on(leak_runs):
    runs, _, _ = leak_runs
    for name in ("signed-tokens", "pabot", "local"):
        run: RobotRun = runs[name]
        assert run.tests and not run.failed, f"{name}: {run.counts()}: " + "; ".join(t.name for t in run.failed)
    service = runs["auth-service-tokens-trace"]
    assert service.metadata.get("Target token source") == "auth-service", service.metadata
    assert len(service.passed) >= 30, service.counts()
    unexpected = {t.name for t in service.failed} - AUTH_SERVICE_ONLY_GAPS
    assert not unexpected, f"auth-service run: unexpected failures {unexpected}"
    failing = runs["failing-accept-expired"]
    assert failing.test("Expired Token Is Refused").status == "FAIL"
    assert "ACCEPTED" in failing.test("Expired Token Is Refused").message
    # the secrets really were in play: the report says so, masked
    assert runs["signed-tokens"].metadata.get("Target jwt secret") == f"•••• ({len(JWT_SECRET)} chars)"


@pytest.mark.parametrize("name", RUNS)
def test_no_secret_or_token_in_run_output(leak_runs, name):
    runs, _, _ = leak_runs
    run = runs[name]
    names = {p.name for p in secrets_scan.iter_files([run.outdir])}
    assert {"output.xml", "log.html", "report.html", "console-stdout.txt"} <= names, names
    findings = secrets_scan.scan_paths([run.outdir], KNOWN)
    assert not findings, f"{name}: leaks in the run's output:\n" + "\n".join(map(str, findings))


@pytest.mark.parametrize("name", RUNS)
def test_no_secret_or_token_in_generated_summary(leak_runs, name):
    runs, _, summaries = leak_runs
    proc = summaries[name]
    if proc is None:
        pytest.skip(f"{SUMMARY_TOOL} is not in the kit (yet)")
    assert proc.returncode == 0, f"tools/summary.py failed on the {name} run:\n{proc.stdout}\n{proc.stderr}"
    written = [runs[name].outdir / f for f in ("summary.html", "summary.md")]
    assert all(p.is_file() for p in written), f"no summary written: {proc.stdout}"
    findings = secrets_scan.scan_paths(written, KNOWN) + secrets_scan.scan_text(proc.stdout + proc.stderr, KNOWN,
                                                                                  "tools/summary.py console")
    assert not findings, "\n".join(map(str, findings))


def test_reference_backend_output_has_no_secret_or_token(leak_runs):
    _, backend_output, _ = leak_runs
    for name, text in backend_output.items():
        findings = secrets_scan.scan_text(text, KNOWN, f"reference backend ({name}) stdout")
        assert not findings, "\n".join(map(str, findings))


# --- gaps found by the auth-service-only run (simulation key, no JWT secret) -----------
def test_welcome_test_passes_with_auth_service_tokens(leak_runs):
    runs, _, _ = leak_runs
    info = runs["auth-service-tokens-trace"].test("Connection Is Established With A Welcome Frame")
    assert info.status == "PASS", info.message


def test_concurrency_suite_skips_without_a_jwt_secret(leak_runs):
    runs, _, _ = leak_runs
    for name in ("Concurrent Users Connect Within Thresholds", "Concurrent Users Chat Within Thresholds"):
        info = runs["auth-service-tokens-trace"].test(name)
        assert info.status in ("PASS", "SKIP"), f"{name}: {info.status}: {info.message}"
