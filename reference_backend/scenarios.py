"""Scripted agent behaviour: what a run does, played from a scenario file, on every wire.

Without a file every run plays the built-in default (:func:`default_beats`):
``agent_started``, a thought, ``--tools`` tool calls (search_docs, summarize, ...),
another thought, ``agent_completed``, ``--think-delay`` seconds between events.

With ``--scenarios FILE`` (JSON, or YAML when the name ends in ``.yaml``/``.yml``)
the first scenario whose ``match`` is found in the user's message is played
instead; when none matches, the built-in default plays. The format::

    scenarios:
      - name: weather                    # unique
        match: '(?i)\\bweather\\b.*\\bin\\s+(?P<city>[A-Z][a-zA-Z-]+)'   # re.search in the message
        select: cycle                    # how a variant is picked: cycle (default) or random
        seed: 7                          # random only: a seed makes the picks repeatable
        variants:                        # either variants ...
          - weight: 7                    #   (integer >= 1, default 1)
            steps: [...]
          - weight: 3
            steps: [...]
        steps:                           # ... or steps (then the one variant); not both
          - think: "Looking up the weather for {city}"
          - tool: get_weather
            arguments: {city: "{city}"}  # default {}
            result: {city: "{city}", temperature_c: 18}   # any JSON value; or
            # error: "weather service unavailable"        # the call fails with this text
            duration: 0.02               # seconds between the call's start and end events
          - delay: 0.05                  # extra seconds before the next event
          - answer: ["It is 18°C ", "in {city}."]   # chunks (a string is one chunk)
          - fail: "model overloaded"     # ends the run with an error (must be the last step)

Variables, written ``{name}`` in any string of a step (``{{``/``}}`` for literal braces):
the named groups of ``match`` (an optional group that did not take part is empty),
``{content}`` (the whole message), and ``{thread.<name>}``: the last value captured under
that name by an earlier turn of the same user in the same thread. A scenario that uses
``{thread.<name>}`` only matches in a thread where that value was captured.

Selection: ``cycle`` is a smooth weighted round-robin, so any N consecutive plays of a
scenario whose weights add up to N play each variant exactly ``weight`` times; ``random``
draws by weight. The state is per scenario and per process.

Timing: a run's first event is sent at once, every other one ``--think-delay`` after the
one before it; a tool's ``duration`` (default: the think delay) is the gap between its
start and end events; answer chunks are one think delay apart and the terminal event
follows the last chunk at once (on wires without a chunk event the time still passes).
The terminal event carries the concatenated answer. How steps become events is each
wire's business (``reference_backend/wires/``).

A file that does not fit the format is refused at start-up with one message naming the
file, the place and the problem (:class:`ScenarioFileError`); the structure is checked
against :data:`SCHEMA` (JSON Schema), the rest (regexes, names, variables) by code.
"""

from __future__ import annotations

import json
import random
import re
import secrets
import sys
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from .config import TOOL_NAMES

AGENT_NAME = "reference_agent"

# --- what a run does, independent of the wire ------------------------------------------

START, THINK, TOOL_START, TOOL_END, ANSWER, FINISH, FAIL = (
    "start", "think", "tool_start", "tool_end", "answer", "finish", "fail")


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: dict
    result: Any = None
    error: str | None = None     # set when the call failed; result is then None
    duration_ms: float = 0.0


class Beat(NamedTuple):
    """One moment of a run; a wire renders it as zero or more frames."""

    kind: str                    # START, THINK, TOOL_START, TOOL_END, ANSWER, FINISH or FAIL
    delay: float                 # seconds after the previous beat
    text: str = ""               # the thought, answer chunk, final answer or failure message
    tool: ToolCall | None = None


def new_call_id() -> str:
    return "call_" + secrets.token_hex(8)


def default_beats(content: str, tools: int, think_delay: float) -> list[Beat]:
    """The built-in run: the one every message gets when no scenario matches."""
    preview = content[:80]
    beats = [Beat(START, 0.0), Beat(THINK, think_delay, f"Planning an answer to: {preview}")]
    duration_ms = round(think_delay * 1000, 3)
    for i in range(tools):
        name = TOOL_NAMES[i % len(TOOL_NAMES)]
        call = ToolCall(new_call_id(), name, {"query": preview, "call": i + 1},
                        {"summary": f"{name} result {i + 1} for: {preview}"}, None, duration_ms)
        beats.append(Beat(TOOL_START, think_delay, tool=call))
        beats.append(Beat(TOOL_END, think_delay, tool=call))
    beats.append(Beat(THINK, think_delay, f"Composing the answer from {tools} tool result(s)"))
    answer = f"Reference answer to: {preview}"
    beats.append(Beat(ANSWER, think_delay, answer))
    beats.append(Beat(FINISH, 0.0, answer))
    return beats


# --- the file format --------------------------------------------------------------------

_STEP_KINDS = ("think", "tool", "delay", "answer", "fail")

# "x-messages" is ours (validators ignore unknown keywords): per keyword of that node, the
# message shown when it fails, where the validator's own would list sub-schemas.
_STEP = {
    "type": "object",
    "properties": {
        "think": {"type": "string", "minLength": 1},
        "tool": {"type": "string", "minLength": 1},
        "arguments": {"type": "object"},
        "result": {},
        "error": {"type": "string", "minLength": 1},
        "duration": {"type": "number", "minimum": 0},
        "delay": {"type": "number", "minimum": 0},
        "answer": {
            "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}],
            "x-messages": {"oneOf": "answer must be a string or a non-empty list of strings"},
        },
        "fail": {"type": "string", "minLength": 1},
    },
    "additionalProperties": False,
    "dependentRequired": {key: ["tool"] for key in ("arguments", "result", "error", "duration")},
    "oneOf": [{"required": [kind]} for kind in _STEP_KINDS],
    "not": {"required": ["result", "error"]},
    "x-messages": {
        "oneOf": "a step has exactly one of: " + ", ".join(_STEP_KINDS),
        "not": "a tool step has result or error, not both",
    },
}
_STEPS = {"type": "array", "minItems": 1, "items": _STEP}

#: JSON Schema of a scenario file (draft 2020-12).
SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["scenarios"],
    "additionalProperties": False,
    "properties": {
        "scenarios": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["name", "match"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "match": {"type": "string", "minLength": 1},
                    "select": {"enum": ["cycle", "random"]},
                    "seed": {"type": "integer"},
                    "variants": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["steps"],
                            "additionalProperties": False,
                            "properties": {"weight": {"type": "integer", "minimum": 1}, "steps": _STEPS},
                        },
                    },
                    "steps": _STEPS,
                },
                "oneOf": [{"required": ["steps"]}, {"required": ["variants"]}],
                "x-messages": {"oneOf": "a scenario has either steps or variants (a list of {weight, steps}), not both"},
            },
        }
    },
}


class ScenarioFileError(ValueError):
    """A scenario file that can't be used; the message names the file, the place and the problem."""


# {{ and }} are literal braces; {name} and {thread.name} are variables.
_VARIABLE = re.compile(r"\{\{|\}\}|\{(thread\.)?([A-Za-z_][A-Za-z0-9_]*)\}")


def _strings(value: Any):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _render(value: Any, variables: dict[str, str], thread: dict[str, str]) -> Any:
    """``value`` with every ``{name}`` / ``{thread.name}`` in its strings replaced."""
    if isinstance(value, str):
        def sub(m: re.Match) -> str:
            if m.group(2) is None:
                return m.group(0)[0]
            return (thread if m.group(1) else variables)[m.group(2)]
        return _VARIABLE.sub(sub, value)
    if isinstance(value, dict):
        return {key: _render(item, variables, thread) for key, item in value.items()}
    if isinstance(value, list):
        return [_render(item, variables, thread) for item in value]
    return value


class _Cycle:
    """Smooth weighted round-robin: deterministic, and each period of sum(weights) plays
    every variant exactly its weight, spread out rather than in runs."""

    def __init__(self, weights: list[int]) -> None:
        self.weights = weights
        self.total = sum(weights)
        self.current = [0] * len(weights)

    def __call__(self) -> int:
        for i, weight in enumerate(self.weights):
            self.current[i] += weight
        best = max(range(len(self.current)), key=self.current.__getitem__)
        self.current[best] -= self.total
        return best


class _Random:
    def __init__(self, weights: list[int], seed: int | None) -> None:
        self.weights = weights
        self.rng = random.Random(seed)
        self.indexes = range(len(weights))

    def __call__(self) -> int:
        return self.rng.choices(self.indexes, self.weights)[0]


@dataclass
class Scenario:
    name: str
    pattern: re.Pattern
    variants: list[list[dict]]    # each variant's steps
    pick: Any                     # () -> index of the variant to play
    thread_names: frozenset[str]  # {thread.<name>} variables its steps use


class ScenarioBook:
    """The scenarios of one file, in file order."""

    def __init__(self, path: str, scenarios: list[Scenario]) -> None:
        self.path = path
        self.scenarios = scenarios

    def __len__(self) -> int:
        return len(self.scenarios)


def load_scenarios(path: str | Path) -> ScenarioBook:
    """Read and check a scenario file; raise :class:`ScenarioFileError` on any problem."""
    path = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioFileError(f"{path}: cannot read the file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ScenarioFileError(f"{path}: not UTF-8 text: {exc}") from None
    data = _parse(path, text)
    _check_schema(path, data)
    scenarios, names = [], set()
    for index, raw in enumerate(data["scenarios"]):
        where = f"{path}: scenarios[{index}] ({raw['name']})"
        if raw["name"] in names:
            raise ScenarioFileError(f"{where}: the name is used by an earlier scenario; names must be unique")
        names.add(raw["name"])
        scenarios.append(_build(where, raw))
    return ScenarioBook(path, scenarios)


def _parse(path: str, text: str) -> Any:
    if path.lower().endswith((".yaml", ".yml")):
        import yaml  # only when a YAML file is given

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise ScenarioFileError(f"{path}: not valid YAML{at}: {problem}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ScenarioFileError(f"{path}: not valid JSON ({exc}); YAML files must end in .yaml or .yml") from None


# Optional libraries jsonschema imports for format checks when they are installed; this
# schema checks no format, and rfc3987_syntax alone builds a parser for 2 s at import.
_UNUSED_FORMAT_LIBRARIES = ("rfc3987_syntax", "isoduration")


def _import_jsonschema():
    """jsonschema (imported only when a file is given), without its unused format libraries."""
    blocked = [name for name in _UNUSED_FORMAT_LIBRARIES if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # an import of it raises ImportError, which jsonschema expects
    try:
        import jsonschema
    finally:
        for name in blocked:
            if sys.modules.get(name, ...) is None:
                del sys.modules[name]
    return jsonschema


def _check_schema(path: str, data: Any) -> None:
    jsonschema = _import_jsonschema()
    from jsonschema.exceptions import best_match, relevance

    errors = list(jsonschema.Draft202012Validator(SCHEMA).iter_errors(data))
    if not errors:
        return
    error = max(errors, key=relevance)  # the shallowest, strongest error, as best_match ranks them
    ours = error.schema.get("x-messages", {}) if isinstance(error.schema, dict) else {}
    if error.validator in ours:
        message = ours[error.validator]
        if isinstance(error.instance, dict):
            message += f" (it has: {', '.join(map(str, error.instance)) or 'nothing'})"
    else:
        if error.context:
            error = best_match(error.context)
        message = error.message
    raise ScenarioFileError(f"{path}: {_location(data, error.absolute_path)}: {message}")


def _location(data: Any, path) -> str:
    """``scenarios[1] (weather).variants[0].steps[2]`` for a JSON path into the file."""
    text, node = "", data
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if text.startswith("scenarios") and text.count("[") == 1 and isinstance(node, dict) \
                    and isinstance(node.get("name"), str):
                text += f" ({node['name']})"
        else:
            text += ("." if text else "") + str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return text or "top level"


def _build(where: str, raw: dict) -> Scenario:
    try:
        pattern = re.compile(raw["match"])
    except re.error as exc:
        raise ScenarioFileError(f"{where}.match: not a valid regular expression: {exc}") from None
    select = raw.get("select", "cycle")
    if "seed" in raw and select != "random":
        raise ScenarioFileError(f"{where}.seed: a seed applies only to select: random")
    if "variants" in raw:
        variants = [(v.get("weight", 1), v["steps"], f"{where}.variants[{i}]") for i, v in enumerate(raw["variants"])]
    else:
        variants = [(1, raw["steps"], where)]
    known = set(pattern.groupindex) | {"content"}
    thread_names = set()
    for _, steps, place in variants:
        for i, step in enumerate(steps):
            if "fail" in step and i != len(steps) - 1:
                raise ScenarioFileError(f"{place}.steps[{i}]: fail must be the last step (the run ends there)")
            for text in _strings(step):
                for m in _VARIABLE.finditer(text):
                    if m.group(2) is None:
                        continue
                    if m.group(1):
                        thread_names.add(m.group(2))
                    elif m.group(2) not in known:
                        raise ScenarioFileError(
                            f"{place}.steps[{i}]: {{{m.group(2)}}} is neither a named group of match "
                            f"({', '.join(sorted(pattern.groupindex)) or 'none'}) nor content; "
                            f"a value from an earlier turn is written {{thread.{m.group(2)}}}")
    weights = [w for w, _, _ in variants]
    pick = _Random(weights, raw.get("seed")) if select == "random" else _Cycle(weights)
    return Scenario(raw["name"], pattern, [s for _, s, _ in variants], pick, frozenset(thread_names))


# --- playing ----------------------------------------------------------------------------

# Threads whose captured values are remembered; the oldest are forgotten first.
_THREAD_MEMORY = 10_000


class Player:
    """Chooses and plays the run for each message: a matching scenario, else the default."""

    def __init__(self, book: ScenarioBook | None, think_delay: float, tools: int) -> None:
        self.book = book
        self.think_delay = think_delay
        self.tools = tools
        self._threads: OrderedDict[tuple[str, str], dict[str, str]] = OrderedDict()

    def play(self, content: str, user_id: str, thread_id: str) -> tuple[str, list[Beat]]:
        """The name of what is played ("default" for the built-in run) and its beats."""
        if self.book is not None:
            key = (user_id, thread_id)
            thread = self._threads.get(key, {})
            for scenario in self.book.scenarios:
                match = scenario.pattern.search(content)
                if match is None or not scenario.thread_names.issubset(thread):
                    continue
                variables = {name: value or "" for name, value in match.groupdict().items()}
                variables["content"] = content
                steps = _render(scenario.variants[scenario.pick()], variables, thread)
                captured = {k: v for k, v in match.groupdict().items() if v is not None}
                if captured:
                    self._remember(key, captured)
                return scenario.name, self._beats(steps)
        return "default", default_beats(content, self.tools, self.think_delay)

    def _remember(self, key: tuple[str, str], captured: dict[str, str]) -> None:
        self._threads[key] = {**self._threads.get(key, {}), **captured}
        self._threads.move_to_end(key)
        while len(self._threads) > _THREAD_MEMORY:
            self._threads.popitem(last=False)

    def _beats(self, steps: list[dict]) -> list[Beat]:
        gap = self.think_delay
        beats = [Beat(START, 0.0)]
        extra = 0.0      # from delay steps, added before the next event
        answer: list[str] = []
        after_answer = False
        for step in steps:
            if "delay" in step:
                extra += step["delay"]
                continue
            after_answer = False
            if "think" in step:
                beats.append(Beat(THINK, gap + extra, step["think"]))
            elif "tool" in step:
                duration = step.get("duration", gap)
                call = ToolCall(new_call_id(), step["tool"], step.get("arguments", {}), step.get("result"),
                                step.get("error"), round(duration * 1000, 3))
                beats.append(Beat(TOOL_START, gap + extra, tool=call))
                beats.append(Beat(TOOL_END, duration, tool=call))
            elif "answer" in step:
                chunks = [step["answer"]] if isinstance(step["answer"], str) else step["answer"]
                for i, chunk in enumerate(chunks):
                    beats.append(Beat(ANSWER, gap + (extra if i == 0 else 0.0), chunk))
                answer.extend(chunks)
                after_answer = True
            elif "fail" in step:
                beats.append(Beat(FAIL, gap + extra, step["fail"]))
                return beats
            extra = 0.0
        beats.append(Beat(FINISH, (0.0 if after_answer else gap) + extra, "".join(answer)))
        return beats
