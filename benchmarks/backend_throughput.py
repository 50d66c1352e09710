"""Sessions per second of the reference backend against a raw ``websockets`` baseline.

Starts ``python -m reference_backend`` and ``benchmarks/raw_protocol_server.py``
as child processes (same think delay and tool count), then drives each from this
process with the same asyncio ``websockets`` client: N sessions at C concurrent,
each = connect with the ``jwt-auth, jwt.<token>`` subprotocols, wait for
``connection_established``, send one ``user_message``, read until
``agent_completed``, close. Every session is checked (event count, ids), so a
fast but wrong server can't score. Rounds alternate the order; medians are
reported, and the ratio reference/raw (target >= 0.7).

Usage: ``python benchmarks/backend_throughput.py [--sessions 1000] [--concurrency 100]
[--rounds 3] [--think-delay 0] [--tools 1]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import jwt
import psutil
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parents[1]
READY = re.compile(r"listening on (http://\S+)")
TARGET_RATIO = 0.7


class Server:
    """A server child process announced by its ready line."""

    def __init__(self, name: str, command: list[str], env: dict) -> None:
        self.name = name
        self.proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        match = READY.search(line)
        if not match:
            self.stop()
            raise SystemExit(f"{name} did not start: {line!r}")
        self.ws_url = match.group(1).replace("http://", "ws://") + "/ws"
        self.ps = psutil.Process(self.proc.pid)

    def cpu_seconds(self) -> float:
        times = self.ps.cpu_times()
        return times.user + times.system

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def session(url: str, token: str, expected_events: int) -> None:
    async with connect(url, subprotocols=["jwt-auth", "jwt." + token], compression=None,
                       open_timeout=30, close_timeout=10) as ws:
        welcome = json.loads(await ws.recv())
        assert welcome["data"]["event"] == "connection_established", welcome
        run_id = "run_" + secrets.token_hex(6)
        await ws.send(json.dumps({"type": "user_message", "payload": {"content": "benchmark", "run_id": run_id}}))
        count = 0
        while True:
            event = json.loads(await ws.recv())
            count += 1
            assert event["run_id"] == run_id, event
            if event["type"] == "agent_completed":
                break
        assert count == expected_events, f"{count} events, expected {expected_events}"


async def drive(url: str, tokens: list[str], concurrency: int, expected_events: int) -> tuple[float, int]:
    """Run len(tokens) sessions, ``concurrency`` at a time; returns (seconds, failures)."""
    pending = iter(tokens)
    failures = 0

    async def worker() -> None:
        nonlocal failures
        for token in pending:
            try:
                await session(url, token, expected_events)
            except Exception:
                failures += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start, failures


def make_tokens(secret: str, count: int, users: int) -> list[str]:
    now = int(time.time())
    return [jwt.encode({"sub": f"bench_user_{i % users}", "email": f"u{i % users}@bench.test", "iat": now,
                        "exp": now + 3600, "type": "access"}, secret, algorithm="HS256") for i in range(count)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--think-delay", type=float, default=0.0)
    parser.add_argument("--tools", type=int, default=1)
    parser.add_argument("--log-level", default="info", help="reference backend log level (default info, as shipped)")
    args = parser.parse_args()

    secret = secrets.token_urlsafe(32)
    env = dict(os.environ, E2E_JWT_SECRET=secret, PYTHONUNBUFFERED="1")
    env.pop("REFERENCE_BACKEND_FAULTS", None)
    knobs = ["--port", "0", "--think-delay", str(args.think_delay), "--tools", str(args.tools)]
    servers = {}
    try:
        servers["reference"] = Server("reference", [sys.executable, "-m", "reference_backend", *knobs,
                                                    "--log-level", args.log_level], env)
        servers["raw"] = Server("raw", [sys.executable, "benchmarks/raw_protocol_server.py", *knobs], env)
        tokens = make_tokens(secret, args.sessions, users=args.concurrency)
        expected = 4 + 2 * args.tools
        rates: dict[str, list[float]] = {"reference": [], "raw": []}
        cpu_ms: dict[str, list[float]] = {"reference": [], "raw": []}
        print(f"{args.sessions} sessions, {args.concurrency} concurrent, think delay {args.think_delay}s, "
              f"{args.tools} tool(s), {os.cpu_count()} CPUs")
        for name in servers:  # warm-up: imports, first connections
            asyncio.run(drive(servers[name].ws_url, tokens[:50], min(50, args.concurrency), expected))
        for round_no in range(args.rounds):
            order = ["reference", "raw"] if round_no % 2 == 0 else ["raw", "reference"]
            for name in order:
                cpu_before = servers[name].cpu_seconds()
                seconds, failures = asyncio.run(drive(servers[name].ws_url, tokens, args.concurrency, expected))
                cpu = servers[name].cpu_seconds() - cpu_before
                if failures:
                    raise SystemExit(f"{name}: {failures} of {args.sessions} sessions failed")
                rates[name].append(args.sessions / seconds)
                cpu_ms[name].append(cpu * 1000 / args.sessions)
                print(f"  round {round_no + 1} {name:<9} {args.sessions / seconds:8.1f} sessions/s ({seconds:.2f} s), "
                      f"server CPU {cpu_ms[name][-1]:.3f} ms/session")
        ref, raw = statistics.median(rates["reference"]), statistics.median(rates["raw"])
        ratio = ref / raw
        ref_cpu, raw_cpu = statistics.median(cpu_ms["reference"]), statistics.median(cpu_ms["raw"])
        print(f"median reference {ref:.1f} sessions/s, raw {raw:.1f} sessions/s")
        print(f"median server CPU per session: reference {ref_cpu:.3f} ms, raw {raw_cpu:.3f} ms "
              f"(CPU efficiency raw/reference {raw_cpu / ref_cpu:.2f}; the client shares the machine, so "
              f"sessions/s can be client-bound)")
        verdict = "OK" if ratio >= TARGET_RATIO else "BELOW TARGET"
        print(f"ratio reference/raw {ratio:.2f} (target >= {TARGET_RATIO}) -> {verdict}")
        return 0 if ratio >= TARGET_RATIO else 1
    finally:
        for server in servers.values():
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
