"""The fan-out engine against a minimal raw ``websockets`` client, in one run.

Both clients do the same work per session: sign a token for a distinct user, connect
with the token as subprotocol, wait for the welcome frame, send one user message, read
to ``agent_completed``, close. The engine additionally turns every frame into an
``Event``, feeds it to its agent session and judges the run with the protocol rules
(that is its job); the baseline does nothing it does not need. The engine's grace window
after a run's end (listening for a second terminal event) is off by default here
(``--grace 0``), since the baseline stops at ``agent_completed`` too.

For each target (the embedded reference backend, and ``--ws-url``/``--jwt-secret`` when
given) and each concurrency level, the two clients run alternately, ``--rounds`` times,
after a warm-up (the order flips every round). Printed: the medians of each client, and
the median of the per-round ratios (engine / raw for sessions/s; raw / engine for
connect p95, so higher is better for both). Target: sessions/s ratio >= 0.85.

    python benchmarks/concurrency_bench.py                      # reference backend only
    python benchmarks/concurrency_bench.py --ws-url wss://staging.example/ws --jwt-secret "$E2E_JWT_SECRET"
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "libraries"))

from websockets.asyncio.client import connect  # noqa: E402

from agentkit.stats import percentile  # noqa: E402
from agentkit.tokens import make_token  # noqa: E402
from agentkit.transports.fanout import EngineSettings, run_sessions  # noqa: E402
from agentkit.transports.process import BackendProcess  # noqa: E402


# --- the raw baseline: as little as the work needs ----------------------------------
async def _raw_session(url: str, secret: str, user: str, connect_ms: list[float]) -> bool:
    token = make_token(secret, user)
    t0 = time.perf_counter()
    async with connect(url, subprotocols=["jwt-auth", f"jwt.{token}"], compression=None) as ws:
        await ws.recv()  # welcome
        connect_ms.append((time.perf_counter() - t0) * 1000.0)
        tag = uuid.uuid4().hex[:12]
        await ws.send(json.dumps({"type": "user_message", "payload": {
            "content": "benchmark", "thread_id": f"t-{tag}", "run_id": f"r-{tag}"}}))
        while True:
            message = json.loads(await ws.recv())
            if message.get("type") in ("agent_completed", "agent_error"):
                return message["type"] == "agent_completed"


async def _raw_batch(url: str, secret: str, count: int, concurrency: int) -> dict:
    sem = asyncio.Semaphore(concurrency)
    connect_ms: list[float] = []
    failures = 0

    async def one(i: int) -> None:
        nonlocal failures
        async with sem:
            try:
                if not await asyncio.wait_for(_raw_session(url, secret, f"raw-user-{i}", connect_ms), 60):
                    failures += 1
            except Exception:  # noqa: BLE001
                failures += 1

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    duration = time.perf_counter() - started
    return {"sessions_per_second": count / duration, "connect_p95_ms": percentile(connect_ms, 95),
            "failed": failures, "duration_s": duration}


def raw_batch(url: str, secret: str, count: int, concurrency: int) -> dict:
    return asyncio.run(_raw_batch(url, secret, count, concurrency))


def engine_batch(url: str, secret: str, count: int, concurrency: int, schemas: bool, grace: float = 0.0) -> dict:
    stats = run_sessions(EngineSettings(ws_url=url, jwt_secret=secret, count=count, concurrency=concurrency,
                                        scenario="chat", session_timeout=60, run_timeout=60,
                                        first_event_timeout=60, check_schemas=schemas, grace=grace))
    return stats


# --- the comparison -----------------------------------------------------------------
def compare(label: str, url: str, secret: str, levels: list[int], sessions: int, rounds: int,
            schemas: bool, grace: float = 0.0) -> list[dict]:
    rows = []
    engine_batch(url, secret, min(200, sessions), 50, schemas, grace)  # warm-up: imports, caches, server paths
    raw_batch(url, secret, min(200, sessions), 50)
    for level in levels:
        eng, raw = [], []
        for r in range(rounds):
            order = ("engine", "raw") if r % 2 == 0 else ("raw", "engine")
            for who in order:
                if who == "engine":
                    s = engine_batch(url, secret, sessions, level, schemas, grace)
                    eng.append(s)
                    print(f"  [{label}] c={level:<5} round {r + 1} engine: {s['sessions_per_second']:8.1f} sessions/s, "
                          f"connect p95 {s['connect_p95_ms']} ms, failed {s['failed']}", flush=True)
                else:
                    s = raw_batch(url, secret, sessions, level)
                    raw.append(s)
                    print(f"  [{label}] c={level:<5} round {r + 1} raw   : {s['sessions_per_second']:8.1f} sessions/s, "
                          f"connect p95 {s['connect_p95_ms']:.1f} ms, failed {s['failed']}", flush=True)
        e_sps = statistics.median(s["sessions_per_second"] for s in eng)
        r_sps = statistics.median(s["sessions_per_second"] for s in raw)
        e_p95 = statistics.median(s["connect_p95_ms"] or float("nan") for s in eng)
        r_p95 = statistics.median(s["connect_p95_ms"] or float("nan") for s in raw)
        # Ratios per round (the two batches of a round ran back to back, so drift in the machine's
        # load hits both alike), then their median.
        sps_ratio = statistics.median(e["sessions_per_second"] / r["sessions_per_second"] for e, r in zip(eng, raw))
        p95_ratio = statistics.median((r["connect_p95_ms"] or float("nan")) / (e["connect_p95_ms"] or float("nan"))
                                      for e, r in zip(eng, raw))
        rows.append({"target": label, "concurrency": level, "sessions": sessions, "rounds": rounds,
                     "engine_sps": e_sps, "raw_sps": r_sps, "sps_ratio": sps_ratio,
                     "engine_connect_p95_ms": e_p95, "raw_connect_p95_ms": r_p95, "p95_ratio": p95_ratio,
                     "engine_failed": sum(s["failed"] for s in eng), "raw_failed": sum(s["failed"] for s in raw)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # 2,000 sessions x 5 rounds: a 1,000-session batch lasts under a second on 2 cores,
    # short enough that scheduling noise swung single-round ratios from 0.72 to 1.0.
    parser.add_argument("--sessions", type=int, default=2000, help="chat sessions per batch (default 2000)")
    parser.add_argument("--concurrency", default="100,1000", help="comma-separated levels (default 100,1000)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per level (default 5)")
    parser.add_argument("--think-delay", type=float, default=0.0, help="reference backend think delay (default 0)")
    parser.add_argument("--ws-url", default=os.environ.get("E2E_WS_URL"), help="also measure this backend")
    parser.add_argument("--jwt-secret", default=os.environ.get("E2E_JWT_SECRET"), help="its JWT secret")
    parser.add_argument("--no-reference", action="store_true", help="skip the embedded reference backend")
    parser.add_argument("--no-schemas", action="store_true", help="engine skips JSON Schema checks (rule 7)")
    parser.add_argument("--grace", type=float, default=0.0,
                        help="engine: seconds a run keeps listening after its end (default 0, as the baseline)")
    parser.add_argument("--json", help="also write the result rows to this file")
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.concurrency.split(",") if x.strip()]

    print(f"concurrency benchmark: {args.sessions} chat sessions per batch, levels {levels}, {args.rounds} rounds; "
          f"python {platform.python_version()}, {os.cpu_count()} cores, {platform.platform()}, "
          f"{datetime.date.today()}; load average {os.getloadavg()[0]:.2f}", flush=True)
    rows: list[dict] = []
    if not args.no_reference:
        with BackendProcess(think_delay=args.think_delay, tools=1) as backend:
            rows += compare("reference", backend.ws_url, backend.jwt_secret, levels, args.sessions, args.rounds,
                            not args.no_schemas, args.grace)
    if args.ws_url:
        if not args.jwt_secret:
            parser.error("--ws-url needs --jwt-secret (or E2E_JWT_SECRET)")
        rows += compare("given", args.ws_url, args.jwt_secret, levels, args.sessions, args.rounds,
                        not args.no_schemas, args.grace)

    print()
    print("medians over the rounds; ratio = median of the per-round ratios")
    print(f"{'target':<10} {'conc':>5} {'engine s/s':>11} {'raw s/s':>9} {'ratio':>6}   "
          f"{'engine p95':>11} {'raw p95':>9} {'ratio':>6}  failures e/r")
    ok = True
    for r in rows:
        print(f"{r['target']:<10} {r['concurrency']:>5} {r['engine_sps']:>11.1f} {r['raw_sps']:>9.1f} "
              f"{r['sps_ratio']:>6.2f}   {r['engine_connect_p95_ms']:>8.1f} ms {r['raw_connect_p95_ms']:>6.1f} ms "
              f"{r['p95_ratio']:>6.2f}  {r['engine_failed']}/{r['raw_failed']}")
        ok &= r["sps_ratio"] >= 0.85
    print(f"\nsessions/s ratio target >= 0.85: {'met' if ok else 'NOT met'} "
          f"(load average now {os.getloadavg()[0]:.2f})")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
