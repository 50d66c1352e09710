"""What the report shows of a run's records: a metrics record in output.xml is a collapsed
line a reader understands in log.html with the JSON the summary reads inside it (older
outputs' plain form still read); the summary's target table masks secrets, not names."""

from __future__ import annotations

import json

from agentkit.report import metrics


def _scope(name: str) -> dict:
    return {"v": metrics.VERSION, "kind": "scope", "scope": "test", "name": name,
            "connections": [{"alias": "a"}], "runs": [{}, {}], "connect_failures": [], "refusal_checks": [],
            "tokens": {"valid": 2, "expired": 1}, "concurrency": None}


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
                   "0 refusal check(s), 3 token(s)"


def test_the_plain_form_of_older_outputs_is_still_read():
    record = _scope("old")
    assert metrics.loads(metrics.PREFIX + json.dumps(record)) == record
    assert metrics.loads("E2E-METRICS not json") is None
    assert metrics.loads(metrics.MARK + "<summary>x</summary><code>{broken</code></details>") is None
    assert metrics.loads("an ordinary log message") is None


def test_the_summary_masks_secrets_but_not_a_header_name():
    from agentkit.report import summary

    rows, _ = summary._target({"Target": "staging", "Target jwt secret": "s3cr3t-value-0123456789",
                               "Target simulation key": "key-value-0123456789",
                               "Target simulation key header": "X-E2E-OAuth-Simulation-Key"}, {})
    values = dict(rows)
    assert "s3cr3t" not in values["jwt secret"] and "key-value" not in values["simulation key"]
    assert values["simulation key header"] == "X-E2E-OAuth-Simulation-Key"
