"""A real Pydantic AI agent, scripted (no language model), served over AG-UI on a WebSocket.

Run: ``python server.py --host 127.0.0.1 --port 8123 [--failing-tool]`` (in the venv built
from ``requirements.txt``; ``E2E_JWT_SECRET`` in the environment).

The agent: a ``FunctionModel`` that, for every prompt, streams a short reasoning, then ONE
tool call ``get_weather(city)`` (city from ``in <Capitalised>`` in the prompt, else Paris);
after the tool's result it streams the answer ``"The weather in <city>: 18°C and sunny."``,
built from that result. ``--failing-tool``: the tool raises ``RuntimeError("weather service
unavailable")`` and nothing handles it.

The transport is ours, the events are theirs. Pydantic AI's ``AGUIAdapter`` streams AG-UI
events over HTTP SSE; AG-UI defines no WebSocket binding. Here ``/ws`` takes one text frame
per run, a ``RunAgentInput`` JSON object (threadId, runId, messages, tools, context, state,
forwardedProps), runs the agent through the adapter, and sends each event the adapter
produces as one JSON text frame, serialized exactly as the adapter's own encoder does
(``model_dump_json(by_alias=True)``: camelCase, absent fields omitted). Runs on one
connection follow each other. A frame that is not a valid ``RunAgentInput`` is answered with
one AG-UI ``RUN_ERROR`` event (ag-ui-protocol's own model, code ``invalid_run_input``) and the
connection stays open.

Auth: a JWT (HS256, ``E2E_JWT_SECRET``, ``sub`` and ``exp`` required) from
``Authorization: Bearer`` or ``?token=``; a missing, malformed, expired or wrongly signed
token refuses the upgrade with HTTP 403 before the WebSocket is accepted.
``GET /health`` answers ``{"status": "healthy"}`` without a token.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import time
import uuid
from collections.abc import AsyncIterator

import jwt
import uvicorn
from ag_ui.core import RunErrorEvent
from pydantic import ValidationError
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelRequest, ToolReturnPart, UserPromptPart
from pydantic_ai.models.function import AgentInfo, DeltaThinkingPart, DeltaToolCall, DeltaToolCalls, FunctionModel
from pydantic_ai.ui.ag_ui import AGUIAdapter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

log = logging.getLogger("pydantic_ai_server")

CITY = re.compile(r"\bin ([A-Z][a-zA-Z-]+)")
DEFAULT_CITY = "Paris"
TOOL_NAME = "get_weather"


def city_of(prompt: str) -> str:
    """The city a prompt names (``... in Lyon ...``), else Paris."""
    match = CITY.search(prompt)
    return match.group(1) if match else DEFAULT_CITY


def _words(text: str) -> list[str]:
    return re.findall(r"\S+\s*", text)


def _prompt_text(part: UserPromptPart) -> str:
    if isinstance(part.content, str):
        return part.content
    return " ".join(item for item in part.content if isinstance(item, str))


async def scripted_model(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str | DeltaToolCalls]:
    """The script: tool result in the last request? answer from it. Otherwise call the tool."""
    last = messages[-1]
    parts = last.parts if isinstance(last, ModelRequest) else []
    result = next((p for p in reversed(parts) if isinstance(p, ToolReturnPart)), None)
    if result is not None:
        found = re.fullmatch(r"(.*) in (\S+)", str(result.content).strip())
        answer = (f"The weather in {found.group(2)}: {found.group(1)}." if found
                  else f"The weather service said: {result.content}.")
        for piece in _words(answer):
            yield piece
        return
    prompt = next((_prompt_text(p) for p in reversed(parts) if isinstance(p, UserPromptPart)), "")
    city = city_of(prompt)
    for piece in _words(f"The user asks about the weather. The city is {city}. I will call {TOOL_NAME}."):
        yield {0: DeltaThinkingPart(content=piece)}
    args = json.dumps({"city": city})
    half = len(args) // 2
    call_id = f"call_{uuid.uuid4().hex[:12]}"
    yield {1: DeltaToolCall(name=TOOL_NAME, json_args=args[:half], tool_call_id=call_id)}
    yield {1: DeltaToolCall(json_args=args[half:])}


def build_agent(failing_tool: bool) -> Agent:
    agent = Agent(FunctionModel(stream_function=scripted_model, model_name="scripted"), name="weather")

    if failing_tool:
        @agent.tool_plain(name=TOOL_NAME)
        def get_weather_failing(city: str) -> str:
            """The current weather in a city (the service is down: always raises)."""
            raise RuntimeError("weather service unavailable")
    else:
        @agent.tool_plain(name=TOOL_NAME)
        def get_weather(city: str) -> str:
            """The current weather in a city."""
            return f"18°C and sunny in {city}"

    return agent


# -- auth -------------------------------------------------------------------------------

def _token(headers, query_params) -> str | None:
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return query_params.get("token") or None


def authenticate(websocket: WebSocket, secret: str) -> str | None:
    """The token's subject, or None when the token is missing or not valid."""
    token = _token(websocket.headers, websocket.query_params)
    if not token or not secret:
        return None
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["sub", "exp"]})
    except jwt.InvalidTokenError:
        return None
    return str(claims["sub"])


# -- app --------------------------------------------------------------------------------

def _encode(event) -> str:
    """One AG-UI event as JSON, as the adapter's SSE encoder writes it (after ``data: ``)."""
    return event.model_dump_json(by_alias=True)


def build_app(agent: Agent, secret: str) -> Starlette:
    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "healthy"})

    async def ws_endpoint(websocket: WebSocket) -> None:
        user = authenticate(websocket, secret)
        if user is None:
            await websocket.close(code=1008)  # before accept: the server answers HTTP 403
            return
        await websocket.accept()
        try:
            while True:
                frame = await websocket.receive_text()
                try:
                    run_input = AGUIAdapter.build_run_input(frame.encode())
                except (ValidationError, ValueError) as exc:
                    error = RunErrorEvent(message=f"invalid RunAgentInput: {exc}"[:2000], code="invalid_run_input",
                                          timestamp=int(time.time() * 1000))
                    await websocket.send_text(_encode(error))
                    continue
                log.info("run %s on thread %s for %s", run_input.run_id, run_input.thread_id, user)
                adapter = AGUIAdapter(agent=agent, run_input=run_input)
                stream = adapter.run_stream()
                try:
                    async for event in stream:
                        await websocket.send_text(_encode(event))
                finally:
                    close = getattr(stream, "aclose", None)
                    if close is not None:  # a client gone mid-run: stop the agent run too
                        await close()
        except WebSocketDisconnect:
            return

    return Starlette(routes=[Route("/health", health), WebSocketRoute("/ws", ws_endpoint)])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--failing-tool", action="store_true", help="the tool raises RuntimeError")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    secret = os.environ.get("E2E_JWT_SECRET", "")
    if not secret:
        log.warning("E2E_JWT_SECRET is not set: every WebSocket is refused")
    app = build_app(build_agent(args.failing_tool), secret)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", ws="websockets-sansio", lifespan="off")


if __name__ == "__main__":
    main()
