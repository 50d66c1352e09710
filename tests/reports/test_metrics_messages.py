"""How a metrics record travels in output.xml: a collapsed line a reader understands in
log.html, the JSON the summary reads inside it; older outputs' plain form still read."""

from __future__ import annotations

import json

from agentkit.report import metrics


def _scope(name: str) -> dict:
    return {"v": metrics.VERSION, "kind": "scope", "scope": "test", "name": name,
            "connections": [{"alias": "a"}], "runs": [{}, {}], "connect_failures": [], "refusal_checks": [],
            "tokens": [], "concurrency": None}


def test_a_record_round_trips_whatever_its_text_holds():
    record = _scope("Suite.<script>alert(1)</script> & 'quotes' </code></details>")
    message = metrics.dumps(record)
    assert message.startswith(metrics.MARK)
    assert "<script>" not in message and "</code></details>" not in message[:-len("</code></details>")]
    assert metrics.loads(message) == record


def test_the_line_in_log_html_says_what_the_record_holds():
    message = metrics.dumps(_scope("Staging.Chat"))
    gist = message[message.index("<summary>") + len("<summary>"):message.index("</summary>")]
    assert gist == "E2E metrics: test 'Staging.Chat': 1 connection(s), 2 agent run(s), 0 failed connect(s), " \
                   "0 refusal check(s), 0 token(s)"


def test_the_plain_form_of_older_outputs_is_still_read():
    record = _scope("old")
    assert metrics.loads(metrics.PREFIX + json.dumps(record)) == record
    assert metrics.loads("E2E-METRICS not json") is None
    assert metrics.loads(metrics.MARK + "<summary>x</summary><code>{broken</code></details>") is None
    assert metrics.loads("an ordinary log message") is None
