"""Root cause of a failed (or skipped) test, read from its failure message.

The kit's messages are diagnoses with a known shape: a broken protocol rule is named
``Rule N (name) violated: ...``, a bad configuration starts with ``Configuration
invalid``, a refused or unreachable connection says so. This module maps a message to
one primary class (and any others it also shows), the rules it names, and the line
that explains it; a message it cannot read is ``unclassified``, never guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .metrics import first_line

#: (key, label, meaning), in the order the summary lists them.
CLASSES: tuple[tuple[str, str, str], ...] = (
    ("configuration", "Configuration", "the kit's target configuration is missing or malformed: nothing was tested"),
    ("connectivity", "Connectivity", "the target could not be reached (refused, DNS, TLS, handshake timeout)"),
    ("authentication", "Authentication", "a bad credential was accepted, or a valid one refused"),
    ("isolation", "Isolation", "a user received another user's events (rule 5)"),
    ("timing", "Timing / performance", "a time budget or threshold was exceeded (rule 6, p95 limits, timeouts)"),
    ("protocol", "Protocol violation", "the backend broke the wire contract (rules 1-4, 7, welcome frame, errors)"),
    ("health", "Service health", "the backend answered but reported itself unhealthy or failed (HTTP 5xx)"),
    ("unclassified", "Unclassified", "the message does not name a known cause: read it"),
)
LABELS = {key: label for key, label, _ in CLASSES}
ORDER = {key: i for i, (key, _, _) in enumerate(CLASSES)}

RULE_NAMES = {1: "start and end", 2: "thinking", 3: "pairing", 4: "ids", 5: "isolation", 6: "timing",
              7: "schema"}

_RULE = re.compile(r"Rule (\d+) \(([^)]*)\) violated")
_CONFIG = re.compile(r"Configuration invalid|No WebSocket URL given and no target resolved|"
                     r"no target resolved|is not a known profile|\bE2E_[A-Z_]+ (?:and/or [A-Z_]+ )?is not set|"
                     r"^Target '[^']+': ", re.M)
_CONNECT = re.compile(r"[Cc]annot connect to|Cannot reach|could not be attempted|did not complete within|"
                      r"no connection to .* within|sent no answer within|closed the connection right after the handshake|"
                      r"TLS handshake|ConnectionRefusedError|Connection refused|NewConnectionError|"
                      r"Max retries exceeded|failed before any answer|Name or service not known|"
                      r"Temporary failure in name resolution|getaddrinfo|nodename nor servname|"
                      r"Connect call failed|No route to host|Network is unreachable|ConnectTimeout")
_AUTH = re.compile(r"Expected the handshake to be REFUSED|but the server ACCEPTED it|"
                   r"was refused with HTTP (?:401|403)|to refuse the simulation key|"
                   r"without a token answered HTTP|Expected 200 with an access token|answered 200 without access_token|"
                   r"is not valid: Signature|refused with HTTP (?:401|403)|"
                   r"answered HTTP 2\d\d, expected (?:401|403)|answered HTTP (?:401|403), expected 2\d\d")
_TIMING = re.compile(r"p95 [\d.]+ ms, expected at most|(?:Test|Keyword) timeout .* exceeded|budget \d")
_HEALTH = re.compile(r"Expected status: 5\d\d|answered HTTP 5\d\d|answered status '[^']*', expected 'healthy'|"
                     r"HTTP 5\d\d")
_PROTOCOL = re.compile(r"Expected connection_established|Expected the welcome frame|the welcome frame names|"
                       r"selected subprotocol|selected no subprotocol|refused a setup command|"
                       r"No agent event of run .* but frames did arrive|before the welcome frame|in this order|"
                       r"error_code|Expected close code|Expected the server to close|required event|"
                       r"No tool_completed|Expected '[^']+' to be open")
_BREACH = re.compile(r"^Concurrent sessions breached")
_BREACH_COUNTS = re.compile(r"\(auth rejected (\d+), timeouts (\d+), errors (\d+), (?:agent errors (\d+), )?"
                            r"rule violations (\d+), isolation violations (\d+)\)")
_SETUP = re.compile(r"^(Parent suite setup failed|Setup failed|Suite setup failed):\s*\n?", re.I)
_SEVERAL = re.compile(r"^Several failures occurred:\s*", re.I)


@dataclass
class Cause:
    """Why one test failed: ``cls`` (a key of :data:`CLASSES`), every class it shows,
    the rules it names, the explaining line, and whether it came from a suite setup."""

    cls: str
    classes: list[str] = field(default_factory=list)
    rules: list[int] = field(default_factory=list)
    line: str = ""
    via_setup: bool = False

    @property
    def label(self) -> str:
        return LABELS[self.cls]

    @property
    def rule_text(self) -> str:
        return ", ".join(f"Rule {n} ({RULE_NAMES.get(n, '?')})" for n in self.rules)


def _rules(text: str) -> list[int]:
    seen: list[int] = []
    for match in _RULE.finditer(text):
        n = int(match.group(1))
        if n not in seen:
            seen.append(n)
    return seen


def _by_rules(rules: list[int]) -> str:
    if 5 in rules:
        return "isolation"
    if rules and set(rules) == {6}:
        return "timing"
    return "protocol"


def _classes_of(text: str, first: str) -> list[str]:
    """Every class a message shows, most fundamental first."""
    found: list[str] = []
    rules = _rules(text)
    if _CONFIG.search(first):
        found.append("configuration")
    if _CONNECT.search(first) and "Expected the handshake to be REFUSED" not in first:
        found.append("connectivity")
    if _AUTH.search(first):
        found.append("authentication")
    if rules:
        found.append(_by_rules(rules))
        if 6 in rules and "timing" not in found:
            found.append("timing")
    if _TIMING.search(text) and "timing" not in found:
        found.append("timing")
    if _PROTOCOL.search(first) and "protocol" not in found:
        found.append("protocol")
    if _HEALTH.search(first):
        found.append("health")
    return sorted(set(found), key=found.index)


def _breach(text: str) -> tuple[list[str], list[int]]:
    """A ``Concurrent Sessions Should Meet Thresholds`` failure: its counts and first errors."""
    classes: list[str] = []
    counts = _BREACH_COUNTS.search(text)
    auth = timeouts = errors = rules_n = iso = 0
    if counts:
        auth, timeouts, errors = int(counts.group(1)), int(counts.group(2)), int(counts.group(3))
        rules_n, iso = int(counts.group(5)), int(counts.group(6))
    errors_part = text.split("First errors:", 1)[1] if "First errors:" in text else ""
    first_errors = [ln.split("): ", 1)[-1] for ln in errors_part.splitlines() if ln.strip()]
    rules = _rules(errors_part)
    if iso or re.search(r"^- isolation violations \d+", text, re.M):
        classes.append("isolation")
    if auth:
        classes.append("authentication")
    if errors and any(_CONNECT.search(e) for e in first_errors):
        classes.append("connectivity")
    for e in first_errors:
        for c in _classes_of(e, e):
            if c not in classes:
                classes.append(c)
    if rules_n and rules and _by_rules(rules) not in classes:
        classes.append(_by_rules(rules))
    if (timeouts or _TIMING.search(text)) and "timing" not in classes and "protocol" not in classes:
        classes.append("timing")
    order = ("configuration", "connectivity", "authentication", "isolation", "protocol", "timing", "health")
    classes.sort(key=lambda c: order.index(c) if c in order else 99)
    return classes, rules


def classify(message: str | None) -> Cause:
    """The root cause a failure message states (see :data:`CLASSES`)."""
    text = (message or "").strip()
    via_setup = False
    match = _SETUP.match(text)
    if match:
        via_setup = True
        text = text[match.end():]
    text = text.split("\n\nAlso parent suite teardown failed", 1)[0]
    several = _SEVERAL.match(text)
    if several:
        parts = [p for p in re.split(r"\n\s*\d+\) ", "\n" + text[several.end():]) if p.strip()]
        causes = [classify(p) for p in parts] or [Cause("unclassified")]
        best = min(causes, key=lambda c: ORDER[c.cls])
        rules = [r for c in causes for r in c.rules]
        classes = [k for c in causes for k in c.classes]
        return Cause(best.cls, sorted(set(classes), key=classes.index), sorted(set(rules), key=rules.index),
                     best.line, via_setup)
    first = first_line(text).lstrip("- ").strip()
    if _BREACH.match(text):
        classes, rules = _breach(text)
        detail = next((ln.strip().lstrip("- ") for ln in text.splitlines()[1:] if ln.strip().startswith("- ")), "")
        line = f"{first} {detail}".strip()
    else:
        classes, rules, line = _classes_of(text, first), _rules(text), first
        if first.endswith(":"):  # a heading: the list under it says what is wrong
            bullets = [ln.strip()[2:] for ln in text.splitlines()[1:] if ln.strip().startswith("- ")]
            if bullets:
                line = f"{first} " + "; ".join(bullets[:4]) + ("; …" if len(bullets) > 4 else "")
    if not classes:
        classes = ["unclassified"]
    return Cause(classes[0], classes, rules, line, via_setup)


# A check the target's wire cannot support: nothing that could be checked was left out.
_NOT_APPLICABLE = re.compile(r"dialect '[^']+'(?:s events)? (?:has no|defines no|does not require|ties events|"
                             r"carry no ids|switches schema|does not accept|names no)|has none\)|"
                             r"has no agent API endpoints|does not play the kit's scenario file|offered no subprotocol|"
                             r"not with a token in a subprotocol|carries no token usage|"
                             r"the run called no tool")


def skip_reason(message: str | None) -> str:
    """The reason of a skip, also for a test skipped by its suite's setup."""
    text = re.sub(r"^Skipped in (?:parent )?suite setup:\s*", "", (message or "").strip(), flags=re.I)
    return first_line(text) or "-"


def classify_skip(message: str | None) -> str:
    """Why a test was skipped: ``not applicable`` (the target's wire has no such thing),
    ``configuration`` (the target lacks a setting it could have), else ``other``."""
    text = message or ""
    if _NOT_APPLICABLE.search(text):
        return "not applicable"
    if _CONFIG.search(text) or re.search(r"\bis not set\b|not configured|no secret|needs? a ", text, re.I):
        return "configuration"
    return "other"
