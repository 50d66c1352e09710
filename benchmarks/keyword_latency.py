"""What the step-by-step keywords cost on top of a raw websocket-client loop.

Against the reference backend (a child process), in one run:

1. Wake-up latency: the time from a frame's arrival (the reader thread's receive
   timestamp, ``Event.received``) to the return of the ``Wait For Event`` keyword that
   was already waiting for it. Runs with ``--think-delay`` between events, so the keyword
   is blocked when each event arrives (samples where the frame came first are dropped
   and counted). Also shown: the connection's own wait (reader thread + condition
   wake-up) without the keyword around it. Baseline: a raw loop (``recv()``, ``json.loads``, match type and
   run_id) timed from ``recv()`` returning to the match.
2. Throughput: events per second through the reader into the assertions. ``--runs``
   user messages on one connection (think delay 0), then every run collected
   (``Collect Agent Run``) and checked (``Agent Run Should Complete With All Required
   Events``: rules 1-4, 6 and the JSON Schemas). Baseline: a raw loop that receives,
   ``json.loads``, groups by run_id and checks each finished run by hand for the same
   rules with the same schema validators (jsonschema with its format checker, as rule 7
   judges). Also without schema validation (rules 1-4, 6). The kit's collect keeps
   listening for the grace window after a run's end (``--grace``, default 0.3 s, a
   target's ``E2E_RUN_GRACE``); all messages go out at once, so that window overlaps the
   other runs and costs the batch about one window (``--grace 0`` leaves it out).
   Client CPU time per event (both threads) is shown next to the wall-clock rate.

Keywords are called as Python methods (outside a Robot run their log lines go to the
``logging`` module, which drops INFO by default); inside Robot each keyword also pays
for its log message. Rounds alternate the order; medians over rounds are printed, and
the ratios kit/raw.

Usage: ``python benchmarks/keyword_latency.py [--rounds 3] [--waits 300] [--runs 1000]
[--think-delay 0.005] [--grace 0.3]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "libraries"), str(ROOT)]

import websocket  # noqa: E402

from AgentAuth import AgentAuth  # noqa: E402
from AgentEvents import AgentEvents  # noqa: E402
from AgentSessions import AgentSessions  # noqa: E402
from jsonschema import Draft202012Validator, FormatChecker  # noqa: E402

from agentkit import target as targets  # noqa: E402
from agentkit.transports.process import BackendProcess  # noqa: E402
from agentkit.transports.threaded import REGISTRY  # noqa: E402
from agentkit.wire.dialect import current, schema_dir  # noqa: E402
from agentkit.wire.masking import reveal  # noqa: E402

LATER_EVENTS = ["agent_thinking", "tool_executing", "tool_completed", "agent_thinking", "agent_completed"]
EVENTS_PER_RUN = 6
# All messages go out at once, so the last runs start late: time budgets are not what is measured here.
BUDGET = timedelta(seconds=120)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def token(backend: BackendProcess, user: str) -> str:
    return reveal(AgentAuth().create_test_token(user, secret=backend.jwt_secret))


def raw_socket(backend: BackendProcess, user: str) -> websocket.WebSocket:
    ws = websocket.WebSocket(skip_utf8_validation=True)
    ws.connect(backend.ws_url, subprotocols=["jwt-auth", f"jwt.{token(backend, user)}"], timeout=10,
               suppress_origin=True)
    welcome = json.loads(ws.recv())
    assert welcome["data"]["event"] == "connection_established", welcome
    ws.settimeout(30)
    return ws


def user_message(content: str) -> tuple[str, str, str]:
    run_id, thread_id = f"run_{uuid.uuid4().hex[:12]}", f"thread_{uuid.uuid4().hex[:12]}"
    msg = {"type": "user_message", "payload": {"content": content, "thread_id": thread_id, "run_id": run_id}}
    return json.dumps(msg), run_id, thread_id


# --- 1. wake-up latency -----------------------------------------------------------------------
def kit_latency(backend: BackendProcess, waits: int, bare: bool = False) -> tuple[list[float], int]:
    """``bare``: the connection's own wait (reader thread + condition wake-up), without the keyword around it."""
    use_backend(backend, 0.0)
    sessions = AgentSessions()
    alias = sessions.connect_to_agent_websocket(token(backend, "lat-kit"), url=backend.ws_url, alias="lat-kit")
    conn = REGISTRY.get(alias)  # the connection behind the alias: its log holds each frame's arrival time
    samples, early = [], 0
    try:
        while len(samples) < waits:
            run = sessions.send_user_message("latency")
            for kind in LATER_EVENTS:
                called = time.perf_counter()
                if bare:
                    index, _ = conn.wait_for(lambda e, k=kind, r=run["run_id"]: e.type == k and e.run_id == r, 10.0)
                    conn.cursor = index + 1
                else:
                    sessions.wait_for_event(kind, f"run_id={run['run_id']}", timeout=timedelta(seconds=10),
                                            alias=alias)
                returned = time.perf_counter()
                arrived = conn.events[conn.cursor - 1].received
                if arrived < called:
                    early += 1  # the frame was there before the keyword: not a wake-up
                else:
                    samples.append(returned - arrived)
    finally:
        sessions.close_all_connections()
    return samples[:waits], early


def raw_latency(backend: BackendProcess, waits: int) -> tuple[list[float], int]:
    ws = raw_socket(backend, "lat-raw")
    samples = []
    try:
        while len(samples) < waits:
            text, run_id, _ = user_message("latency")
            ws.send(text)
            for kind in ["agent_started"] + LATER_EVENTS:
                while True:
                    data = ws.recv()
                    arrived = time.perf_counter()
                    msg = json.loads(data)
                    if msg.get("type") == kind and msg.get("run_id") == run_id:
                        matched = time.perf_counter()
                        break
                if kind != "agent_started":
                    samples.append(matched - arrived)
    finally:
        ws.close()
    return samples[:waits], 0


# --- 2. throughput into the assertions -----------------------------------------------------------
def use_backend(backend: BackendProcess, grace: float) -> None:
    """The backend as the resolved target, so the keywords use its run grace window."""
    targets.set_current(targets.Target("benchmark", backend.url, backend.ws_url, backend.url,
                                       jwt_secret=backend.jwt_secret, grace=grace, first_event_timeout=BUDGET.seconds,
                                       run_timeout=BUDGET.seconds))


def kit_throughput(backend: BackendProcess, runs: int, schemas: bool, grace: float) -> tuple[float, float]:
    use_backend(backend, grace)
    sessions, events = AgentSessions(), AgentEvents()
    alias = sessions.connect_to_agent_websocket(token(backend, "tp-kit"), url=backend.ws_url, alias="tp-kit")
    try:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        handles = [sessions.send_user_message(f"message {i}", alias=alias) for i in range(runs)]
        for handle in handles:
            record = sessions.collect_agent_run(handle, timeout=timedelta(seconds=60))
            events.agent_run_should_complete_with_all_required_events(record, first_event=BUDGET, whole_run=BUDGET,
                                                                      check_schemas=schemas)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    finally:
        sessions.close_all_connections()
    return runs * EVENTS_PER_RUN / wall, cpu / (runs * EVENTS_PER_RUN) * 1e6


def raw_check(msgs: list[dict], run_id: str, thread_id: str, user_id: str, sent_at: float, times: list[float],
              validators: dict | None) -> None:
    """Rules 1-4 and 6 (and 7 with validators) by hand over plain dicts; raises on a violation."""
    types = [m["type"] for m in msgs]
    assert types[0] == "agent_started" and types[-1] == "agent_completed", types
    assert types.count("agent_started") == 1 and types.count("agent_completed") + types.count("agent_error") == 1
    assert "agent_thinking" in types, types
    open_calls: list[str] = []
    for m in msgs:
        if m["type"] == "tool_executing":
            open_calls.append(m["data"]["tool_name"])
        elif m["type"] == "tool_completed":
            open_calls.remove(m["data"]["tool_name"])
    assert not open_calls, open_calls
    for m in msgs:
        assert m["run_id"] == run_id and m["thread_id"] == thread_id and m["user_id"] == user_id, m
    budget = BUDGET.total_seconds()
    assert times[0] - sent_at <= budget and times[-1] - sent_at <= budget
    for kind in ("agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed"):
        assert kind in types, types
    if validators:
        for m in msgs:
            validators[m["type"]].validate(m)  # raises on a violation


def raw_throughput(backend: BackendProcess, runs: int, schemas: bool) -> tuple[float, float]:
    # The same validators the kit's rule 7 takes its verdict from: jsonschema, formats checked.
    dialect = current()
    validators = {name: Draft202012Validator(json.loads((schema_dir(dialect) / file).read_text(encoding="utf-8")),
                                             format_checker=FormatChecker())
                  for name, file in dialect.schemas["by_type"].items()} if schemas else None
    ws = raw_socket(backend, "tp-raw")
    try:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        pending: dict[str, tuple[str, float]] = {}
        for i in range(runs):
            text, run_id, thread_id = user_message(f"message {i}")
            sent_at = time.perf_counter()
            ws.send(text)
            pending[run_id] = (thread_id, sent_at)
        got: dict[str, list[dict]] = {}
        at: dict[str, list[float]] = {}
        done = 0
        while done < runs:
            data = ws.recv()
            now = time.perf_counter()
            msg = json.loads(data)
            run_id = msg.get("run_id")
            if run_id not in pending:
                continue
            got.setdefault(run_id, []).append(msg)
            at.setdefault(run_id, []).append(now)
            if msg["type"] in ("agent_completed", "agent_error"):
                thread_id, sent_at = pending[run_id]
                raw_check(got[run_id], run_id, thread_id, "tp-raw", sent_at, at[run_id], validators)
                done += 1
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    finally:
        ws.close()
    return runs * EVENTS_PER_RUN / wall, cpu / (runs * EVENTS_PER_RUN) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--waits", type=int, default=300, help="latency samples per client and round")
    parser.add_argument("--runs", type=int, default=1000, help="agent runs per throughput measurement")
    parser.add_argument("--think-delay", type=float, default=0.005, help="seconds between events for the latency part")
    parser.add_argument("--grace", type=float, default=0.3,
                        help="seconds the kit's collect keeps listening after a run's end (E2E_RUN_GRACE; default 0.3)")
    args = parser.parse_args()

    lat = {"kit": [], "bare": [], "raw": []}
    early_total = 0
    tp = {(client, schemas): [] for client in ("kit", "raw") for schemas in (True, False)}
    with BackendProcess(think_delay=args.think_delay) as slow, BackendProcess(think_delay=0.0) as fast:
        # warm-up: imports, schema validators, first connections
        kit_throughput(fast, 50, True, args.grace)
        raw_throughput(fast, 50, True)
        for rnd in range(args.rounds):
            order = ("kit", "raw") if rnd % 2 == 0 else ("raw", "kit")
            for client in ("kit", "bare", "raw") if rnd % 2 == 0 else ("raw", "bare", "kit"):
                if client == "raw":
                    samples, early = raw_latency(slow, args.waits)
                else:
                    samples, early = kit_latency(slow, args.waits, bare=client == "bare")
                lat[client].append(samples)
                early_total += early
            for schemas in (True, False):
                for client in order:
                    if client == "kit":
                        tp[(client, schemas)].append(kit_throughput(fast, args.runs, schemas, args.grace))
                    else:
                        tp[(client, schemas)].append(raw_throughput(fast, args.runs, schemas))

    print(f"keyword_latency: {args.rounds} round(s); latency: {args.waits} waits per client per round, think delay "
          f"{args.think_delay:g}s; throughput: {args.runs} runs x {EVENTS_PER_RUN} events on one connection, "
          f"think delay 0, run grace {args.grace:g}s")
    print()
    print("1. Frame arrival -> return of the waiting call (microseconds; median over rounds of each round's value)")
    med = {c: statistics.median(statistics.median(s) for s in lat[c]) * 1e6 for c in lat}
    p95 = {c: statistics.median(pct(s, 0.95) for s in lat[c]) * 1e6 for c in lat}
    print(f"   {'client':<36}{'median':>10}{'p95':>10}")
    print(f"   {'Wait For Event (reader thread)':<36}{med['kit']:>10.1f}{p95['kit']:>10.1f}")
    print(f"   {'  of which Connection.wait_for':<36}{med['bare']:>10.1f}{p95['bare']:>10.1f}")
    print(f"   {'raw recv loop (same thread)':<36}{med['raw']:>10.1f}{p95['raw']:>10.1f}")
    print(f"   ratio kit/raw: median {med['kit'] / med['raw']:.1f}x, p95 {p95['kit'] / p95['raw']:.1f}x "
          f"(frames that arrived before the keyword was called, dropped: {early_total})")
    print()
    print("2. Events per second through the reader into the assertions (median over rounds)")
    print(f"   {'client':<62}{'events/s':>10}{'CPU us/event':>14}")
    for schemas in (True, False):
        label = "all rules + JSON Schemas" if schemas else "rules 1-4, 6 (no schemas)"
        rows = {}
        for client in ("kit", "raw"):
            values = tp[(client, schemas)]
            rows[client] = (statistics.median(v[0] for v in values), statistics.median(v[1] for v in values))
            name = "Collect Agent Run + rule keyword" if client == "kit" else "raw recv loop + same checks"
            print(f"   {name + ', ' + label:<62}{rows[client][0]:>10.0f}{rows[client][1]:>14.1f}")
        print(f"   ratio kit/raw ({label}): throughput {rows['kit'][0] / rows['raw'][0]:.2f}, "
              f"CPU per event {rows['kit'][1] / rows['raw'][1]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
