"""Scripted agents for the LangGraph Agent Server: a real graph, a real tool, no language model.

Two graphs (named in ``langgraph.json``):

* ``agent``: for EVERY prompt the model first streams its reasoning, a short text, then ONE
  tool call ``get_weather(city)``; the city is taken from the prompt (``in <Capitalised>``),
  else Paris. The tool answers ``"18°C and sunny in <city>"``; the model then streams a final
  answer built from that result: ``"The weather in <city>: 18°C and sunny."``.
* ``agent_failing``: the same, but the tool raises ``RuntimeError("weather service
  unavailable")``; nothing handles it, so the run ends ``failed``.

Both graphs are compiled with ``ToolCallTransformer``: without it the server's ``tools``
channel stays silent (no tool-started / tool-finished frames).

The model is stateless: its reply depends only on the last message (a human message: call
the tool; a tool message: answer from it). Its reply is streamed from ``_stream`` chunk by
chunk, because the server's event stream bridges ``_stream``; the model never sleeps.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel, generate_from_stream
from langchain_core.messages import AIMessageChunk, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.tools import tool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolCallTransformer, ToolNode, ToolRuntime, tools_condition

CITY = re.compile(r"\bin ([A-Z][a-zA-Z-]+)")
DEFAULT_CITY = "Paris"
TOOL_NAME = "get_weather"


def city_of(prompt: str) -> str:
    """The city a prompt names (``... in Lyon ...``), else Paris."""
    match = CITY.search(prompt)
    return match.group(1) if match else DEFAULT_CITY


def _text(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return "".join(block.get("text", "") if isinstance(block, dict) else str(block) for block in content)


def _words(text: str) -> list[str]:
    """Split into word-sized chunks that join back to the text exactly."""
    return re.findall(r"\S+\s*", text)


class ScriptedChatModel(BaseChatModel):
    """A chat model that plays a fixed script: reason, say a little, call the tool, then answer."""

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedChatModel:
        return self  # the script knows its one tool

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: Any = None, **kwargs: Any) -> ChatResult:
        return generate_from_stream(self._stream(messages, stop=stop, **kwargs))

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: Any = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        # The base class reports every chunk to the callbacks (and so to the server's stream).
        last = messages[-1]
        if isinstance(last, ToolMessage):
            yield from self._answer(last)
        else:
            yield from self._call_tool(_text(last))

    def _call_tool(self, prompt: str) -> Iterator[ChatGenerationChunk]:
        city = city_of(prompt)
        reasoning = f"The user asks about the weather. The city is {city}. I will call {TOOL_NAME}."
        for piece in _words(reasoning):
            yield _chunk(content=[{"type": "reasoning", "reasoning": piece, "index": 0}])
        yield _chunk(content=[{"type": "text", "text": f"Checking the weather in {city}.", "index": 1}])
        call_id = f"call_{uuid.uuid4().hex[:12]}"
        args = json.dumps({"city": city})
        half = len(args) // 2
        yield _chunk(tool_call_chunks=[{"name": TOOL_NAME, "args": args[:half], "id": call_id, "index": 2}])
        yield _chunk(tool_call_chunks=[{"name": None, "args": args[half:], "id": None, "index": 2}])
        yield _chunk(chunk_position="last", response_metadata={"finish_reason": "tool_calls", "model_name": "scripted"})

    def _answer(self, result: ToolMessage) -> Iterator[ChatGenerationChunk]:
        found = re.fullmatch(r"(.*) in (\S+)", _text(result).strip())
        answer = (f"The weather in {found.group(2)}: {found.group(1)}." if found
                  else f"The weather service said: {_text(result)}.")
        for piece in _words(answer):
            yield _chunk(content=piece)
        yield _chunk(chunk_position="last", response_metadata={"finish_reason": "stop", "model_name": "scripted"})


def _chunk(content: Any = "", **fields: Any) -> ChatGenerationChunk:
    return ChatGenerationChunk(message=AIMessageChunk(content=content, **fields))


@tool(TOOL_NAME)
def get_weather(city: str, runtime: ToolRuntime) -> str:
    """The current weather in a city."""
    runtime.emit_output_delta({"progress": f"looking up {city}"})
    return f"18°C and sunny in {city}"


@tool(TOOL_NAME)
def get_weather_failing(city: str) -> str:
    """The current weather in a city (the service is down: always raises)."""
    raise RuntimeError("weather service unavailable")


def build_graph(weather_tool: Any) -> Any:
    """model -> (tool call?) -> tools -> model -> end, with the tools channel switched on."""
    model = ScriptedChatModel()

    def call_model(state: MessagesState) -> dict:
        return {"messages": [model.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("model", call_model)
    builder.add_node("tools", ToolNode([weather_tool]))
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", tools_condition)
    builder.add_edge("tools", "model")
    return builder.compile(transformers=[ToolCallTransformer])


agent = build_graph(get_weather)
agent_failing = build_graph(get_weather_failing)
