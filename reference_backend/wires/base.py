"""What every wire has: the upgrade's token check, and turning a run's beats into frames.

A wire is how one backend process speaks on ``/ws``: its handshake, its welcome, the
client frames it understands and the shape of its events. One wire per process
(``--wire``). A wire never streams a run itself: it parses a run request out of a
client frame, and renders a run's beats (:mod:`reference_backend.scenarios`) into
:class:`~reference_backend.faults.Frame` objects whose timestamp is filled in at send
time; :mod:`reference_backend.runs` applies the faults and sends them.
"""

from __future__ import annotations

import json
import logging

from ..auth import SUBPROTOCOL_SELECTED, InvalidToken, verify_token, websocket_token
from ..config import BackendConfig
from ..connections import AsgiSend, Connection
from ..faults import Frame
from ..runs import RunRequest
from ..scenarios import Beat

log = logging.getLogger("reference_backend.ws")

# Policy violation; uvicorn answers a close-before-accept with HTTP 403 anyway.
_REFUSE = {"type": "websocket.close", "code": 1008}

Part = tuple[str, "str | None", str, str]   # (role, tool call id, head, tail) of one frame


def split_at_timestamp(event: dict) -> tuple[str, str]:
    """``event``'s JSON text cut where a trailing ``"timestamp"`` value goes."""
    text = json.dumps(event)
    return text[:-1] + ',"timestamp":', "}"


def peer(scope: dict) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "?"


class RunRenderer:
    """Turns one run's beats into frames; each wire implements :meth:`parts`."""

    def render(self, beats: list[Beat]) -> list[Frame]:
        frames: list[Frame] = []
        carried = 0.0  # the time of beats that have no frame on this wire still passes
        for beat in beats:
            parts = self.parts(beat)
            if not parts:
                carried += beat.delay
                continue
            delay, carried = beat.delay + carried, 0.0
            for role, call, head, tail in parts:
                frames.append(Frame(delay, role, call, head, tail))
                delay = 0.0  # a beat's frames go out together
        return frames

    def parts(self, beat: Beat) -> list[Part]:
        raise NotImplementedError


class Wire:
    """The default wire's handshake; subclasses add welcome, messages and events."""

    name = ""
    #: Header of the e2e auth service's simulation key.
    simulation_key_header = "X-E2E-OAuth-Simulation-Key"

    def __init__(self, config: BackendConfig) -> None:
        self.config = config

    @staticmethod
    def stamp() -> str:
        """JSON text of an event's timestamp, now."""
        raise NotImplementedError

    async def open(self, scope: dict, send: AsgiSend) -> Connection | None:
        """Check the upgrade's token: accept (the new connection) or refuse (None).

        Token from subprotocol ``jwt.<t>``, then ``Authorization: Bearer``, then ``?token=``;
        a refusal is a close before the accept, i.e. HTTP 403; ``jwt-auth`` is selected
        when offered."""
        token = websocket_token(scope)
        if token is None:
            log.info("refused upgrade from %s: no token", peer(scope))
            await send(_REFUSE)
            return None
        try:
            claims = verify_token(token, self.config)
        except InvalidToken as exc:
            log.info("refused upgrade from %s: %s", peer(scope), exc)
            await send(_REFUSE)
            return None
        offered = scope.get("subprotocols") or ()
        subprotocol = SUBPROTOCOL_SELECTED if SUBPROTOCOL_SELECTED in offered else None
        await send({"type": "websocket.accept", "subprotocol": subprotocol})
        return Connection(claims["sub"], send)

    def welcome(self, conn: Connection) -> str | None:
        """The first frame of an accepted connection, if the wire has one."""
        return None

    async def on_text(self, conn: Connection, text: str | None) -> RunRequest | None:
        """Answer one client frame (None: a binary frame); a run request when it asks for a run."""
        raise NotImplementedError

    def renderer(self, request: RunRequest, user_id: str) -> RunRenderer:
        raise NotImplementedError

    def test_auth_body(self, access_token: str, claims: dict) -> dict:
        """The e2e auth service's answer for a new token."""
        return {"access_token": access_token, "token_type": "Bearer", "expires_in": self.config.token_ttl}
