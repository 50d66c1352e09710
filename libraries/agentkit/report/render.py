"""Render a :class:`~agentkit.summary.Summary` as one self-contained HTML page and as Markdown."""

from __future__ import annotations

from .summary import Summary, esc, timeline_run, verdict_line
from .charts import connect_histogram, run_timeline, suite_bars
from .classify import CLASSES, skip_reason

COLOURS = {"pass": ("#e8f5e9", "#2e7d32"), "incomplete": ("#fff8e1", "#b26a00"),
           "fail": ("#ffebee", "#c62828"), "not-tested": ("#ffebee", "#8e0000")}
CSS = """
*{box-sizing:border-box}body{font-family:system-ui,"Segoe UI",Helvetica,Arial,sans-serif;color:#1f2933;
margin:0;background:#f5f7f9;font-size:14px;line-height:1.45}main{max-width:1180px;margin:0 auto;padding:20px}
h1{font-size:20px;margin:0 0 12px}h2{font-size:17px;margin:0 0 10px}section{background:#fff;border:1px solid #d9dee3;
border-radius:6px;padding:14px 16px;margin:14px 0}.verdict{border-radius:6px;padding:16px 20px;border:2px solid}
.verdict .label{font-size:28px;font-weight:700;letter-spacing:.5px}.verdict .line{font-size:16px;margin-top:4px}
.verdict .target{margin-top:6px}.warnings{margin:10px 0 0;padding-left:20px}.warnings li{margin:3px 0}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(205px,1fr));gap:10px}
.card{background:#fff;border:1px solid #d9dee3;border-radius:6px;padding:10px 12px}
.card .k{color:#5f6b76;font-size:12px;text-transform:uppercase;letter-spacing:.4px}
.card .v{font-size:22px;font-weight:650;margin:2px 0}.card .d{color:#5f6b76;font-size:12px}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{border-bottom:1px solid #e4e8ec;padding:5px 8px;
text-align:left;vertical-align:top}th{background:#f0f3f6;font-weight:600}td.n,th.n{text-align:right;
font-variant-numeric:tabular-nums}.PASS{color:#2e7d32;font-weight:600}.FAIL{color:#c62828;font-weight:600}
.SKIP{color:#b26a00;font-weight:600}.muted{color:#5f6b76}.cls{display:inline-block;padding:1px 7px;border-radius:10px;
background:#eef1f4;font-size:12px;white-space:nowrap}.cls-configuration,.cls-connectivity{background:#fde2e1}
.cls-authentication{background:#ffe0b2}.cls-isolation{background:#f3d1f4}.cls-timing{background:#fff3c4}
.cls-protocol{background:#dbe7fb}.cls-health{background:#e0f2f1}code,.mono{font-family:ui-monospace,Menlo,Consolas,
monospace;font-size:12px}.grid2{display:grid;grid-template-columns:1fr 1fr;gap:14px}@media(max-width:900px){
.grid2{grid-template-columns:1fr}}details summary{cursor:pointer;font-weight:600}.chart{max-width:100%;height:auto}
footer{color:#5f6b76;font-size:12px;margin:16px 0 30px}
"""


def _ms(v) -> str:
    if v is None:
        return "-"
    v = float(v)
    return f"{v:.1f} ms" if v < 1000 else f"{v / 1000:.2f} s"


def _s(v: float) -> str:
    return f"{v:.2f} s" if v < 100 else f"{v / 60:.1f} min"


def _pct(v) -> str:
    return "-" if v is None else f"{v:g}%"


def _mb(v) -> str:
    return "-" if v is None else f"{v:.1f} MB"


def _figures(s: Summary) -> list[tuple[str, str, str]]:
    """(label, value, detail) for the key-figure cards and the Markdown list."""
    t, c, r = s.totals, s.connections, s.refusals
    out = [
        ("Tests", str(t["total"]), f"{t['passed']} passed, {t['failed']} failed, {t['skipped']} skipped"),
        ("Pass rate", _pct(t["pass_rate"]), "passed / all tests (skipped count as not passed)"),
        ("Duration", _s(s.durations["wall_s"]), f"wall time; tests add up to {_s(s.durations['tests_s'])}"),
        ("Peak memory", _mb(s.memory["peak_mb"]),
         "Robot process (client side)" + (f", largest of {len(s.memory['per_process'])} processes"
                                          if len(s.memory["per_process"]) > 1 else "")),
    ]
    if c["attempts"]:
        out.append(("Connections", f"{c['established']}/{c['attempts']}",
                    f"{_pct(c['success_rate'])} of attempts connected; expected refusals not counted"))
        out.append(("Avg connect time", _ms(c["avg_connect_ms"]),
                    f"handshake {_ms(c['avg_handshake_ms'])} + welcome {_ms(c['avg_welcome_ms'])}; "
                    f"p95 {_ms(c['p95_connect_ms'])}"))
    else:
        out.append(("Connections", "-", "no WebSocket connection was attempted" if s.metrics_found
                    else "no metrics in this output"))
    if r["total"]:
        detail = "bad credentials refused as required"
        if r["accepted"] or r["unchecked"]:
            detail += f"; {r['accepted']} ACCEPTED (security failure), {r['unchecked']} could not be checked"
        out.append(("Refusal checks", f"{r['ok']}/{r['total']}", detail))
    n_events = sum(s.events.values())
    if n_events:
        binary = c.get("binary") or 0
        out.append(("Frames received", str(n_events),
                    f"on step-by-step connections, in {s.runs['count']} agent runs"
                    + (f"; {binary} binary frame(s)" if binary else "")))
    if s.concurrency:
        tot = sum(int(x["stats"].get("total") or 0) for x in s.concurrency)
        ok = sum(int(x["stats"].get("successful") or 0) for x in s.concurrency)
        out.append(("Concurrent sessions", f"{ok}/{tot}",
                    f"{len(s.concurrency)} batch(es); auth rejected "
                    f"{sum(int(x['stats'].get('auth_rejected') or 0) for x in s.concurrency)}"))
    return out


def _outcomes(counts: dict[str, int]) -> str:
    words = {"refused": "refused as required", "accepted": "ACCEPTED (must be refused)",
             "unreachable": "could not be checked (unreachable)", "failed": "check failed"}
    return ", ".join(f"{n} {words.get(k, k)}" for k, n in counts.items())


def _test_link(s: Summary, t) -> str:
    """The test's name, linked to it in log.html when the log is written."""
    if s.log and t.test_id:
        return f'<a href="{esc(s.log)}#{esc(t.test_id)}">{esc(t.name)}</a>'
    return esc(t.name)


def _process_label(p: str) -> str:
    host, _, pid = p.rpartition(":")
    return f"Robot process {pid} on {host}" if host and pid.isdigit() else f"Robot process {p}"


def _stat(key: str, value) -> str:
    """A concurrency statistic with its unit."""
    if value is None:
        return "-"
    if key.endswith("_ms"):
        return _ms(value)
    if key == "success_rate":
        return f"{value:g}%"
    if key == "duration_s" or key == "ramp_up_s":
        return f"{value:g} s"
    if key == "sessions_per_second":
        return f"{value:g}/s"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items()) or "none"
    return str(value)


def _cls(cause) -> str:
    return f'<span class="cls cls-{esc(cause.cls)}">{esc(cause.label)}</span>'


# --- HTML --------------------------------------------------------------------------------
def render_html(s: Summary) -> str:
    bg, fg = COLOURS[s.verdict["key"]]
    parts: list[str] = [
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>{esc(s.verdict['label'])}: {esc(s.title)} E2E summary</title><style>{CSS}</style></head><body><main>",
        f"<h1>E2E summary: {esc(s.title)}</h1>",
        f'<div class="verdict v-{esc(s.verdict["key"])}" id="verdict" style="background:{bg};border-color:{fg}">'
        f'<div class="label" style="color:{fg}">{esc(s.verdict["label"])}</div>'
        f'<div class="line">{esc(s.verdict["line"])}</div>'
        f'<div class="target"><b>Target:</b> {esc(s.verdict.get("target"))}</div>',
    ]
    if s.log:
        parts.append(f'<div class="target"><a href="{esc(s.log)}">Full log (log.html)</a>: every frame, run table '
                     f'and failure message; each test below links to its place in it.</div>')
    if s.warnings:
        parts.append('<ul class="warnings">' + "".join(f"<li>{esc(w)}</li>" for w in s.warnings) + "</ul>")
    parts.append("</div>")
    parts.append('<section id="figures"><h2>Key figures</h2><div class="cards">' + "".join(
        f'<div class="card"><div class="k">{esc(k)}</div><div class="v">{esc(v)}</div><div class="d">{esc(d)}</div>'
        f"</div>" for k, v, d in _figures(s)) + "</div></section>")
    parts.append(_html_failures(s))
    parts.append(_html_suites(s))
    parts.append(_html_connections(s))
    parts.append(_html_runs(s))
    if s.concurrency:
        parts.append(_html_concurrency(s))
    if s.repeated:
        parts.append(_html_repeated(s))
    parts.append(_html_target_and_durations(s))
    parts.append(_html_tests(s))
    parts.append(f"<footer>Source: <span class=\"mono\">{esc(s.source or '-')}</span> ({esc(s.note or 'on demand')}); "
                 f"generated {esc(s.generated)} in {s.build_ms:.0f} ms; processes: {len(s.processes) or '-'}. "
                 "Root-cause classes are read from the failure messages (rules named as 'Rule N (name) violated', "
                 "configuration failures as 'Configuration invalid'); connection figures count the kit's "
                 "step-by-step connections, not the concurrent sessions, which are shown apart.</footer>")
    parts.append("</main></body></html>")
    return "".join(parts)


def _html_failures(s: Summary) -> str:
    fails, skips = s.failures, s.skipped
    if not fails and not skips:
        return '<section id="failures"><h2>Failures</h2><p>None: every test passed.</p></section>'
    out = ['<section id="failures">']
    if fails:
        out.append(f"<h2>Failures by root cause ({len(fails)})</h2><table><tr><th>root cause</th><th>rule</th>"
                   "<th class=\"n\">tests</th><th>first line of the message</th></tr>")
        for g in s.root_causes:
            where = f" (suite setup of {esc(g['via_setup'])})" if g["via_setup"] else ""
            out.append(f'<tr><td><span class="cls cls-{esc(g["cls"])}">{esc(g["label"])}</span></td>'
                       f'<td>{esc(g["rules"] or "-")}</td><td class="n">{g["count"]}</td>'
                       f'<td class="mono">{esc(g["line"])}{where}</td></tr>')
        out.append(f"</table><details{' open' if len(fails) <= 15 else ''} style=\"margin-top:14px\"><summary>"
                   f"Every failure ({len(fails)})</summary><table><tr><th>suite</th><th>test</th>"
                   "<th>root cause</th><th>rule</th><th>first line of the message</th><th>evidence</th></tr>")
        for t in fails:
            setup = "suite setup failed: " if t.cause.via_setup else ""
            out.append(f"<tr><td>{esc(t.suite)}</td><td>{_test_link(s, t)}</td><td>{_cls(t.cause)}</td>"
                       f"<td>{esc(t.cause.rule_text or '-')}</td><td class=\"mono\">{esc(setup + t.cause.line)}</td>"
                       f"<td class=\"mono\">{'<br>'.join(esc(e) for e in t.evidence[:6]) or '-'}</td></tr>")
        out.append("</table></details>")
    if skips:
        out.append(f"<h2 style=\"margin-top:16px\">Skipped ({len(skips)}): not run, not passed</h2><table><tr>"
                   "<th>suite</th><th>test</th><th>reason</th><th>why</th></tr>")
        for t in skips:
            out.append(f"<tr><td>{esc(t.suite)}</td><td>{_test_link(s, t)}</td><td>{esc(t.skip_class)}</td>"
                       f"<td class=\"mono\">{esc(skip_reason(t.message))}</td></tr>")
        out.append("</table>")
    out.append("</section>")
    return "".join(out)


def _html_suites(s: Summary) -> str:
    rows = "".join(
        f"<tr><td>{esc(x['name'])}</td><td class=\"n\">{x['total']}</td><td class=\"n PASS\">{x['passed']}</td>"
        f"<td class=\"n FAIL\">{x['failed'] or ''}</td><td class=\"n SKIP\">{x['skipped'] or ''}</td>"
        f"<td class=\"n\">{_pct(x['pass_rate'])}</td><td class=\"n\">{_s(x['elapsed_s'])}</td></tr>" for x in s.suites)
    return (f'<section id="suites"><h2>Suites</h2><div class="grid2"><div><table><tr><th>suite</th>'
            f'<th class="n">tests</th><th class="n">passed</th><th class="n">failed</th><th class="n">skipped</th>'
            f'<th class="n">pass rate</th><th class="n">duration</th></tr>{rows}</table></div>'
            f"<div>{suite_bars(s.suites, 560)}</div></div></section>")


def _html_connections(s: Summary) -> str:
    c, r = s.connections, s.refusals
    out = ['<section id="connections"><h2>Connections and events</h2><div class="grid2"><div>']
    if c["attempts"]:
        outcomes = ", ".join(f"{k} {v}" for k, v in c["by_outcome"].items()) or "none"
        out.append(f"<p><b>{c['established']} of {c['attempts']}</b> connection attempts reached the welcome frame "
                   f"(success rate {_pct(c['success_rate'])}); failed attempts: {esc(outcomes)}. Connect time "
                   f"avg {_ms(c['avg_connect_ms'])}, p50 {_ms(c['p50_connect_ms'])}, p95 {_ms(c['p95_connect_ms'])}, "
                   f"max {_ms(c['max_connect_ms'])}.</p>")
    else:
        out.append("<p>No step-by-step WebSocket connection was attempted"
                   + ("" if s.metrics_found else " (no metrics in this output)") + ".</p>")
    if r["total"]:
        checks = "".join(f"<li>{esc(k)}: {esc(_outcomes(v))}</li>" for k, v in r["by_check"].items())
        out.append(f"<p>Refusal checks (expected refusals, not counted as connections):</p><ul>{checks}</ul>")
    if s.tokens:
        out.append("<p>Tokens: " + esc(", ".join(f"{k.replace('_', ' ')} {v}" for k, v in s.tokens.items())) + "</p>")
    if s.events:
        out.append("<table><tr><th>frame type</th><th class=\"n\">received</th></tr>" + "".join(
            f"<tr><td class=\"mono\">{esc(k)}</td><td class=\"n\">{v}</td></tr>" for k, v in s.events.items())
            + "</table>")
    out.append("</div><div>" + connect_histogram(c["samples"], c["avg_connect_ms"], c["p95_connect_ms"], 560)
               + "</div></div>")
    if c["list"]:
        out.append(f"<details><summary>Connection evidence ({len(c['list'])} connections: server-assigned ids)"
                   "</summary><table><tr><th>scope</th><th>alias</th><th>user</th><th>connection_id</th>"
                   "<th>url</th><th class=\"n\">connect</th><th class=\"n\">frames</th></tr>")
        for x in c["list"]:
            out.append(f"<tr><td>{esc(x.get('scope', ''))}</td><td>{esc(x.get('alias'))}</td><td>{esc(x.get('user'))}"
                       f"</td><td class=\"mono\">{esc(x.get('connection_id') or '-')}</td><td class=\"mono\">"
                       f"{esc(x.get('url'))}</td><td class=\"n\">{_ms(x.get('connect_ms'))}</td><td class=\"n\">"
                       f"{x.get('frames', 0)}</td></tr>")
        out.append("</table></details>")
    if c["failures"]:
        out.append("<details open><summary>Failed connection attempts</summary><table><tr><th>scope</th>"
                   "<th>outcome</th><th>message</th></tr>" + "".join(
                       f"<tr><td>{esc(f.get('scope', ''))}</td><td>{esc(f.get('outcome'))}</td><td class=\"mono\">"
                       f"{esc(f.get('message'))}</td></tr>" for f in c["failures"][:50]) + "</table></details>")
    out.append("</section>")
    return "".join(out)


def _html_runs(s: Summary) -> str:
    r = s.runs
    run = timeline_run(s)
    head = (f"<p>{r['count']} agent runs recorded, {r['ended']} reached a terminal event. Message to terminal "
            f"event: p50 {_ms(r['p50_ms'])}, p95 {_ms(r['p95_ms'])}, max {_ms(r['max_ms'])}; message to first "
            f"event: p50 {_ms(r['first_p50_ms'])}, p95 {_ms(r['first_p95_ms'])}, max {_ms(r['first_max_ms'])}.</p>"
            if r["count"] else "<p>No agent run was recorded.</p>")
    caption = (f"<p class=\"muted\">Timeline of run <span class=\"mono\">{esc(run.get('run_id'))}</span> on "
               f"'{esc(run.get('connection'))}' ({esc(run.get('scope'))}).</p>" if run else "")
    return f'<section id="runs"><h2>Agent runs</h2>{head}{caption}{run_timeline(run, 640)}</section>'


CONCURRENCY_KEYS = ("scenario", "users", "total", "concurrency", "successful", "failed", "success_rate",
                    "auth_rejected", "timeouts", "errors", "agent_errors", "rule_violations", "isolation_violations",
                    "isolation_sessions", "connect_p50_ms", "connect_p95_ms", "connect_max_ms", "run_p50_ms",
                    "run_p95_ms", "run_max_ms", "sessions_per_second", "events_received", "binary_frames",
                    "peak_open_connections", "duration_s", "ramp_up_s", "max_handshakes", "generator_lag_p95_ms",
                    "generator_lag_max_ms")


def _html_concurrency(s: Summary) -> str:
    """One column per batch, one row per statistic (a batch has ~20 figures)."""
    head = "".join(f"<th class=\"n\">{esc((x['scope'] or '').rsplit('.', 1)[-1])}</th>" for x in s.concurrency)
    rows = []
    for k in CONCURRENCY_KEYS:
        if all(x["stats"].get(k) is None for x in s.concurrency):
            continue
        cells = "".join(f"<td class=\"n\">{esc(_stat(k, x['stats'].get(k)))}</td>" for x in s.concurrency)
        rows.append(f"<tr><th>{esc(k.replace('_', ' '))}</th>{cells}</tr>")
    errors = [e for x in s.concurrency for e in (x["stats"].get("first_errors") or [])]
    more = ("<p>First errors:</p><ul>" + "".join(f"<li class=\"mono\">{esc(e)}</li>" for e in errors[:8]) + "</ul>"
            if errors else "")
    return (f'<section id="concurrency"><h2>Concurrent sessions</h2><table style="width:auto"><tr>'
            f'<th>statistic</th>{head}</tr>'
            f"{''.join(rows)}</table>{more}</section>")


def _html_repeated(s: Summary) -> str:
    """Repeated runs of one prompt (non-deterministic agents): the rate and every failing run."""
    out = ['<section id="repeated"><h2>Repeated runs</h2><table><tr><th>scope</th><th>prompt</th><th>judged by</th>'
           '<th class="n">pass rate</th><th class="n">minimum</th><th>failing runs</th></tr>']
    for r in s.repeated:
        failing = "<br>".join(f"run {esc(f.get('run'))}: {esc((f.get('message') or '').splitlines()[0][:160] if f.get('message') else '')}"
                              for f in r.get("failures", [])) or "none"
        ok = float(r.get("pass_rate") or 0) >= float(r.get("min_pass_rate") or 0)
        out.append(f"<tr><td>{esc((r.get('scope') or '').rsplit('.', 1)[-1])}</td><td>{esc(r.get('prompt'))}</td>"
                   f"<td>{esc(r.get('judge'))}</td><td class=\"n {'PASS' if ok else 'FAIL'}\">"
                   f"{esc(r.get('passed'))}/{esc(r.get('runs'))} = {float(r.get('pass_rate') or 0):g}%</td>"
                   f"<td class=\"n\">{float(r.get('min_pass_rate') or 0):g}%</td><td class=\"mono\">{failing}</td></tr>")
    out.append("</table></section>")
    return "".join(out)


def _html_target_and_durations(s: Summary) -> str:
    target = "".join(f"<tr><th>{esc(k)}</th><td class=\"mono\">{esc(v)}</td></tr>" for k, v in s.target) or \
        "<tr><td>No target metadata in this output.</td></tr>"
    slow = "".join(f"<tr><td>{esc(su)}</td><td>{esc(n)}</td><td class=\"{esc(st)}\">{esc(st)}</td>"
                   f"<td class=\"n\">{_s(e)}</td></tr>" for su, n, e, st in s.durations["slowest"])
    mem = "".join(f"<tr><td>{esc(_process_label(p))}</td><td class=\"n\">{_mb(v)}</td></tr>"
                  for p, v in s.memory["per_process"])
    return (f'<section id="environment"><div class="grid2"><div><h2>Target environment</h2><table>{target}</table>'
            f"</div><div><h2>Slowest tests</h2><table><tr><th>suite</th><th>test</th><th>status</th>"
            f"<th class=\"n\">duration</th></tr>{slow}</table><h2 style=\"margin-top:14px\">Peak memory per process"
            f"</h2><table><tr><th>process</th><th class=\"n\">peak RSS</th></tr>{mem or '<tr><td>-</td></tr>'}"
            "</table></div></div></section>")


def _html_tests(s: Summary) -> str:
    rows = "".join(
        f"<tr><td>{esc(t.suite)}</td><td>{_test_link(s, t)}</td><td class=\"{esc(t.status)}\">{esc(t.status)}</td>"
        f"<td class=\"n\">{_s(t.elapsed_s)}</td><td class=\"mono\">{'<br>'.join(esc(e) for e in t.evidence[:4]) or '-'}"
        f"</td></tr>" for t in s.tests)
    return (f'<section id="tests"><details><summary>All {len(s.tests)} tests with their evidence</summary><table><tr>'
            f"<th>suite</th><th>test</th><th>status</th><th class=\"n\">duration</th><th>evidence</th></tr>{rows}"
            "</table></details></section>")


# --- Markdown ----------------------------------------------------------------------------
def _md(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(s: Summary) -> str:
    v = s.verdict
    lines = [f"# E2E summary: {s.title}", "", f"**Verdict: {v['label']}**: {v['line']}", "",
             f"**Target:** {v.get('target')}", ""]
    if s.log:
        lines += [f"Full log: [{s.log}]({s.log}) (every frame, run table and failure message).", ""]
    lines += [f"- {w}" for w in s.warnings] + ([""] if s.warnings else [])
    lines += ["## Key figures", "", "| figure | value | detail |", "|---|---|---|"]
    lines += [f"| {_md(k)} | {_md(val)} | {_md(d)} |" for k, val, d in _figures(s)]
    lines += [""]
    if s.failures:
        lines += [f"## Failures by root cause ({len(s.failures)})", "", "| root cause | rule | tests | first line |",
                  "|---|---|---:|---|"]
        for g in s.root_causes:
            where = f" (suite setup of {g['via_setup']})" if g["via_setup"] else ""
            lines.append(f"| {g['label']} | {_md(g['rules'] or '-')} | {g['count']} | {_md(g['line'])}{_md(where)} |")
        lines += ["", "### Every failure", "", "| suite | test | root cause | rule | first line | evidence |",
                  "|---|---|---|---|---|---|"]
        for t in s.failures:
            setup = "suite setup failed: " if t.cause.via_setup else ""
            name = f"[{_md(t.name)}]({s.log}#{t.test_id})" if s.log and t.test_id else _md(t.name)
            lines.append(f"| {_md(t.suite)} | {name} | {t.cause.label} | {_md(t.cause.rule_text or '-')} | "
                         f"{_md(setup + t.cause.line)} | {_md('; '.join(t.evidence[:4]) or '-')} |")
        lines.append("")
    else:
        lines += ["## Failures", "", "None: every test passed." if not s.skipped else "None.", ""]
    if s.skipped:
        lines += [f"## Skipped ({len(s.skipped)}): not run, not passed", "", "| suite | test | reason | why |",
                  "|---|---|---|---|"]
        lines += [f"| {_md(t.suite)} | {_md(t.name)} | {t.skip_class} | "
                  f"{_md(skip_reason(t.message))} |" for t in s.skipped]
        lines.append("")
    lines += ["## Suites", "", "| suite | tests | passed | failed | skipped | pass rate | duration |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {_md(x['name'])} | {x['total']} | {x['passed']} | {x['failed']} | {x['skipped']} | "
              f"{_pct(x['pass_rate'])} | {_s(x['elapsed_s'])} |" for x in s.suites]
    c, r = s.connections, s.refusals
    lines += ["", "## Connections and events", ""]
    if c["attempts"]:
        outcomes = ", ".join(f"{k} {n}" for k, n in c["by_outcome"].items()) or "none"
        lines.append(f"- Connections: {c['established']} of {c['attempts']} attempts reached the welcome frame "
                     f"({_pct(c['success_rate'])}); failed attempts: {outcomes}")
        lines.append(f"- Connect time (handshake + welcome): avg {_ms(c['avg_connect_ms'])}, p50 "
                     f"{_ms(c['p50_connect_ms'])}, p95 {_ms(c['p95_connect_ms'])}, max {_ms(c['max_connect_ms'])}")
    else:
        lines.append("- No step-by-step WebSocket connection was attempted"
                     + ("" if s.metrics_found else " (no metrics in this output)"))
    for k, v in r["by_check"].items():
        lines.append(f"- Refusal check, {k}: {_outcomes(v)}")
    if s.tokens:
        lines.append("- Tokens: " + ", ".join(f"{k.replace('_', ' ')} {n}" for k, n in s.tokens.items()))
    if s.events:
        lines.append("- Frames received by type: " + ", ".join(f"{k} {n}" for k, n in s.events.items()))
    ids = [x.get("connection_id") for x in c["list"] if x.get("connection_id")]
    if ids:
        lines.append(f"- Server connection ids (first 5 of {len(ids)}): " + ", ".join(f"`{i}`" for i in ids[:5]))
    rr = s.runs
    lines += ["", "## Agent runs", ""]
    if rr["count"]:
        lines.append(f"- {rr['count']} runs recorded, {rr['ended']} reached a terminal event; message to terminal "
                     f"event p50 {_ms(rr['p50_ms'])}, p95 {_ms(rr['p95_ms'])}, max {_ms(rr['max_ms'])}; to first "
                     f"event p50 {_ms(rr['first_p50_ms'])}, p95 {_ms(rr['first_p95_ms'])}")
        run = timeline_run(s)
        if run:
            lines.append(f"- Timeline of `{run.get('run_id')}` on '{run.get('connection')}': " + ", ".join(
                f"{e[1]} +{float(e[0] or 0):.1f} ms" for e in run.get("events", [])[:12]))
    else:
        lines.append("- No agent run was recorded.")
    if s.concurrency:
        lines += ["", "## Concurrent sessions", "",
                  "| test | scenario | sessions | successful | auth rejected | timeouts | errors | rule viol. | "
                  "isolation viol. | connect p95 | run p95 | events | binary frames |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for x in s.concurrency:
            st = x["stats"]
            lines.append(f"| {_md((x['scope'] or '').rsplit('.', 1)[-1])} | {st.get('scenario')} | {st.get('total')} | "
                         f"{st.get('successful')} | {st.get('auth_rejected')} | {st.get('timeouts')} | "
                         f"{st.get('errors')} | {st.get('rule_violations')} | {st.get('isolation_violations')} | "
                         f"{_ms(st.get('connect_p95_ms'))} | {_ms(st.get('run_p95_ms'))} | "
                         f"{st.get('events_received')} | {st.get('binary_frames', 0)} |")
    if s.repeated:
        lines += ["", "## Repeated runs", "", "| prompt | judged by | pass rate | minimum | failing runs |",
                  "|---|---|---:|---:|---|"]
        for rep in s.repeated:
            failing = "; ".join(f"run {f.get('run')}: {(f.get('message') or '').splitlines()[0][:100] if f.get('message') else ''}"
                                for f in rep.get("failures", [])) or "none"
            lines.append(f"| {_md(rep.get('prompt'))} | {_md(rep.get('judge'))} | {rep.get('passed')}/{rep.get('runs')} = "
                         f"{float(rep.get('pass_rate') or 0):g}% | {float(rep.get('min_pass_rate') or 0):g}% | {_md(failing)} |")
    lines += ["", "## Durations and memory", "",
              f"- Wall time {_s(s.durations['wall_s'])}; tests add up to {_s(s.durations['tests_s'])}",
              "- Slowest: " + ", ".join(f"{n} ({_s(e)}, {st})" for _, n, e, st in s.durations["slowest"]),
              f"- Peak memory of the Robot process: {_mb(s.memory['peak_mb'])}"
              + (" (per process: " + ", ".join(f"{_process_label(p)} {_mb(m)}" for p, m in s.memory["per_process"]) + ")"
                 if len(s.memory["per_process"]) > 1 else "")]
    lines += ["", "## Target environment", "", "| setting | value |", "|---|---|"]
    lines += [f"| {_md(k)} | `{_md(val)}` |" for k, val in s.target] or ["| - | no target metadata |"]
    lines += ["", f"_Source: `{s.source or '-'}` ({s.note or 'on demand'}); generated {s.generated}. "
              f"{verdict_line(s)}. Charts: summary.html._", ""]
    return "\n".join(lines)


__all__ = ["render_html", "render_markdown", "CLASSES"]
