"""One real ``robot`` run against the field's scripted servers, shared by the modules that
judge what reaches the outputs (``output.xml``, ``log.html``, ``report.html``, the console,
``summary.html``/``summary.md``): tokens (``test_tokens_in_output.py``), binary frames in
the summary (``test_binary_frames.py``), the load generator's warning in the summary
(``test_load_generator.py``).

The suite is a small ``.robot`` file written to a temporary folder; it imports the kit's
libraries by absolute path, with the target ``staging`` pointed at the scripted servers
(``E2E_TARGET``, ``E2E_BACKEND_URL``, ``E2E_WS_URL``, ``E2E_JWT_SECRET``), and runs at
``--loglevel TRACE`` so every message the kit can write is written. One run, so Robot's
start-up is paid once.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import forked
from field_servers import SECRET, Peer, ScriptedServer, slow_run

ROOT = Path(__file__).resolve().parents[2]
LIBRARIES = ROOT / "libraries"
sys.path.insert(0, str(ROOT / "tools"))
import secrets_scan  # noqa: E402

ENV_PREFIXES = ("E2E_", "REFERENCE_BACKEND_", "ROBOT_", "PABOT")
BLOB = b"\x89PNG\r\n\x1a\n not an event"


def _b64url(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


# --- the servers' scripts ----------------------------------------------------------------
async def blob_mid_run(peer: Peer) -> None:
    """A correct run with one binary frame (not JSON) in it."""
    await peer.welcome()
    while True:
        run_id, thread_id = await peer.next_start()
        events = peer.run_events(run_id, thread_id)
        await peer.play(events[:2] + [BLOB] + events[2:])


async def error_quoting_the_token(peer: Peer) -> None:
    """Accepts, then answers the message with an error frame that quotes the token (raw
    and as the base64url subprotocol) and closes with a policy code."""
    await peer.welcome()
    await peer.next_start()
    token = peer.token or ""
    await peer.send({"type": "error", "data": {"code": "token_rejected",
                                               "message": f"token {token} was revoked",
                                               "offered": f"jwt.{_b64url(token)}"}})
    await peer.ws.close(1008, "revoked")


def body_quoting_the_token(token: str | None) -> tuple[int, str]:
    return 403, f"Forbidden: the token {token} is not valid here (subprotocol jwt.{_b64url(token or '')})"


SERVERS = {  # variable name in the suite -> ScriptedServer arguments
    "NOSEL": dict(select=None),
    "NOTOFFERED": dict(select="graphql-ws"),
    "ECHO": dict(select="token"),
    "BODY": dict(refuse=body_quoting_the_token),
    "ERRFRAME": dict(script=error_quoting_the_token),
    "BLOB": dict(script=blob_mid_run),
    "SLOW": dict(script=slow_run(1.0)),
}

SUITE = """\
*** Settings ***
Library         {lib}/TargetConfig.py
Library         {lib}/AgentAuth.py
Library         {lib}/AgentSessions.py
Library         {lib}/AgentEvents.py
Library         {lib}/AgentConcurrency.py
Library         {lib}/AgentReport.py
Library         {here}/FieldLoopBlocker.py
Suite Setup     Resolve Target
Suite Teardown  Close All Connections

*** Variables ***
${{COUNT}}    2

*** Keywords ***
Step By Step Against
    [Arguments]    ${{url}}
    ${{token}}=    Get Token For User    field-robot-user
    Connect To Agent WebSocket    ${{token}}    url=${{url}}    alias=field
    ${{run}}=    Send User Message    What does the documentation say about retries?    alias=field
    ${{result}}=    Collect Agent Run    ${{run}}
    Agent Run Should Complete With All Required Events    ${{result}}
    Connection Should Not Receive Foreign Events    field

Engine Against
    [Arguments]    ${{url}}
    ${{stats}}=    Run Concurrent Sessions    ${{COUNT}}    concurrency=${{COUNT}}    ws_url=${{url}}
    Concurrent Sessions Should Meet Thresholds    ${{stats}}
    RETURN    ${{stats}}

*** Test Cases ***
No Subprotocol Step By Step
    Step By Step Against    ${{NOSEL}}
No Subprotocol Engine
    Engine Against    ${{NOSEL}}
Not Offered Subprotocol Step By Step
    Step By Step Against    ${{NOTOFFERED}}
Not Offered Subprotocol Engine
    Engine Against    ${{NOTOFFERED}}
Echoed Token Subprotocol Step By Step
    Step By Step Against    ${{ECHO}}
Echoed Token Subprotocol Engine
    Engine Against    ${{ECHO}}
Error Body Quoting The Token Step By Step
    Step By Step Against    ${{BODY}}
Error Body Quoting The Token Engine
    Engine Against    ${{BODY}}
Error Body Quoting The Token Is A Refusal
    ${{token}}=    Get Token For User    field-robot-user
    Handshake Should Be Refused    ${{token}}    url=${{BODY}}
Error Frame Quoting The Token Step By Step
    Step By Step Against    ${{ERRFRAME}}
Error Frame Quoting The Token Engine
    Engine Against    ${{ERRFRAME}}
Binary Frame Mid Run Step By Step
    Step By Step Against    ${{BLOB}}
Binary Frame Mid Run Engine
    Engine Against    ${{BLOB}}
Websocket Client Used Directly Logs The Offered Subprotocols Masked
    ${{token}}=    Get Token For User    field-robot-user
    Connect With Websocket Client Directly    ${{token}}    ${{NOSEL}}

Saturated Load Generator
    Start Blocking The Engine Loop
    TRY
        ${{stats}}=    Run Concurrent Sessions    4    concurrency=4    ws_url=${{SLOW}}
    FINALLY
        Stop Blocking The Engine Loop
    END
    Should Be True    ${{stats}}[generator_saturated]    msg=the blocked loop was not noticed: ${{stats}}
    Should Be True    ${{stats}}[successful] == 4    msg=${{stats}}
"""

BLOCKER = '''\
"""Blocks the kit's engine loop on purpose (0.4 s every 0.45 s) while it runs: a saturated generator."""
import gc
import threading
import time

from agentkit.transports.fanout import SessionRun


class FieldLoopBlocker:
    def connect_with_websocket_client_directly(self, token, url):
        """websocket-client itself, given the token-bearing subprotocols: against a server that
        selects none it logs them (logger 'websocket', ERROR) and raises Invalid WebSocket Header."""
        import websocket
        from agentkit.wire.masking import b64url, reveal

        plain = reveal(token)
        try:
            websocket.create_connection(url, subprotocols=["jwt-auth", f"jwt.{plain}", f"jwt.{b64url(plain)}"],
                                        timeout=5).close()
        except websocket.WebSocketException:
            return
        raise AssertionError("the server was expected to select no subprotocol")

    def __init__(self):
        self._stop = threading.Event()
        self._thread = None

    def start_blocking_the_engine_loop(self):
        self._stop.clear()

        def main():
            while not self._stop.is_set():
                for run in [o for o in gc.get_objects() if type(o) is SessionRun]:  # noqa: E721 - no weakproxy
                    loop = run._loop
                    if loop is not None and not loop.is_closed() and not run._future.done():
                        try:
                            loop.call_soon_threadsafe(time.sleep, 0.4)
                        except RuntimeError:
                            pass
                self._stop.wait(0.45)

        self._thread = threading.Thread(target=main, daemon=True)
        self._thread.start()

    def stop_blocking_the_engine_loop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
'''


@dataclass
class FieldRun:
    outdir: Path
    rc: int
    console: str
    tests: dict[str, tuple[str, str]] = field(default_factory=dict)   # name -> (status, message)
    tokens: list[str] = field(default_factory=list)                    # every token a server saw
    wall: float = 0.0

    def status(self, name: str) -> str:
        assert name in self.tests, f"no test {name!r} in the run: {sorted(self.tests)}"
        return self.tests[name][0]

    def message(self, name: str) -> str:
        assert name in self.tests, f"no test {name!r} in the run: {sorted(self.tests)}"
        return self.tests[name][1]

    def secrets(self) -> list[str]:
        """What must not appear in any output, in any encoding: the signing secret, every
        token a server saw, and 32-character pieces of each token's claims and signature
        (so a token cut short is found too)."""
        out = [SECRET]
        for token in dict.fromkeys(self.tokens):
            out.append(token)
            body = token.split(".", 1)[-1]  # the header is the same in every HS256 token
            out += [body[i:i + 32] for i in range(0, len(body) - 31, 32)]
        return list(dict.fromkeys(out))

    def files(self) -> list[Path]:
        return sorted(p for p in self.outdir.rglob("*") if p.is_file())

    def scan(self) -> list:
        return secrets_scan.scan_paths([self.outdir], self.secrets())


def clean_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIXES)}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


def shared_run(base: Path) -> FieldRun:
    """:func:`run` once per pytest session, also when pytest-xdist spreads the modules that
    read it over several workers: the first one runs robot (under a lock), the others read
    its result from ``base``."""
    import fcntl
    import json

    base.mkdir(parents=True, exist_ok=True)
    saved = base / "field-robot-run.json"
    with open(base / "field-robot-run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if saved.is_file():
                data = json.loads(saved.read_text(encoding="utf-8"))
                return FieldRun(Path(data["outdir"]), data["rc"], data["console"],
                                {k: tuple(v) for k, v in data["tests"].items()}, data["tokens"], data["wall"])
            folder = base / "field-robot"
            folder.mkdir()
            result = run(folder)
            saved.write_text(json.dumps({"outdir": str(result.outdir), "rc": result.rc, "console": result.console,
                                         "tests": result.tests, "tokens": result.tokens, "wall": result.wall}),
                             encoding="utf-8")
            return result
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def run(tmp: Path) -> FieldRun:
    """Start the servers, run the suite, stop the servers; the console goes to files in the
    output folder so the scan reads it too."""
    from robot.api import ExecutionResult

    suite_dir = tmp / "suite"
    suite_dir.mkdir()
    (suite_dir / "FieldLoopBlocker.py").write_text(BLOCKER, encoding="utf-8")
    (suite_dir / "field_outputs.robot").write_text(SUITE.format(lib=LIBRARIES, here=suite_dir), encoding="utf-8")
    outdir = tmp / "out"
    with ExitStack() as stack:
        servers = {name: stack.enter_context(ScriptedServer(**kwargs)) for name, kwargs in SERVERS.items()}
        home = stack.enter_context(ScriptedServer())
        env = clean_env(E2E_TARGET="staging", E2E_BACKEND_URL=home.http_url, E2E_WS_URL=home.ws_url,
                        E2E_JWT_SECRET=SECRET, E2E_RUN_TIMEOUT="3s", E2E_CONNECT_TIMEOUT="2s",
                        E2E_FIRST_EVENT_TIMEOUT="1s")
        cmd = [sys.executable, "-m", "robot", "--outputdir", str(outdir), "--loglevel", "TRACE",
               "--console", "verbose", "--pythonpath", str(LIBRARIES), "--pythonpath", str(suite_dir)]
        cmd += [arg for name, server in servers.items() for arg in ("--variable", f"{name}:{server.ws_url}")]
        cmd.append(str(suite_dir / "field_outputs.robot"))
        started = time.monotonic()
        proc = forked.popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, start_new_session=True)
        out, err = forked.finish(proc, 120)
        wall = time.monotonic() - started
        tokens = [t for s in [*servers.values(), home] for t in s.tokens]
    outdir.mkdir(exist_ok=True)
    (outdir / "console-stdout.txt").write_text(out, encoding="utf-8")
    (outdir / "console-stderr.txt").write_text(err, encoding="utf-8")
    result = FieldRun(outdir, proc.returncode, out + err, tokens=tokens, wall=wall)
    xml = outdir / "output.xml"
    if xml.is_file():
        for test in ExecutionResult(str(xml)).suite.all_tests:
            result.tests[test.name] = (test.status, test.message)
    return result
