"""Run the app under uvicorn on a socket we bind ourselves, and stop cleanly on a signal.

Binding first is how ``--port 0`` learns its real port before serving. Once
uvicorn serves, exactly one line goes to stdout: ``READY_LINE`` with the URL
(``https://`` when serving TLS: uvicorn's own SSL options, :mod:`.tls`).
SIGTERM and SIGINT both trigger uvicorn's graceful shutdown, after which the
process exits 0 (uvicorn would otherwise re-raise the signal on the way out).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys

import uvicorn

from .tls import TlsOptions

log = logging.getLogger("reference_backend")

READY_LINE = "reference backend listening on {url}"

_LEVELS = ["debug", "info", "warning", "error"]

# Seconds the graceful shutdown may wait for open connections before cancelling them.
SHUTDOWN_TIMEOUT = 3.0


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on (host, port); port 0 picks a free one."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def public_url(sock: socket.socket, scheme: str = "http") -> str:
    host, port = sock.getsockname()[:2]
    # A wildcard bind is reachable on loopback; print an address a client can dial.
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


class _Server(uvicorn.Server):
    """uvicorn.Server that announces readiness and does not re-raise the stop signal."""

    def __init__(self, config: uvicorn.Config, url: str) -> None:
        super().__init__(config)
        self._url = url
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()  # set by a stop signal; binds to the loop on first wait

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.started and not self.should_exit:
            sys.stdout.write(READY_LINE.format(url=self._url) + "\n")
            sys.stdout.flush()
            log.info("serving on %s (WebSocket %s/ws)", self._url, "ws" + self._url[len("http"):])

    def capture_signals(self):  # noqa: D401 - same contract as the parent, minus the re-raise
        return _StopSignals(self)

    # uvicorn notices a stop request on a 0.1 s tick and then sleeps another 0.1 s before
    # waiting for connections, polling them every 0.1 s; a test run waits for our exit, so
    # all of it is on its critical path. Here the signal wakes the loop, and the shutdown
    # is uvicorn's own (same steps, same graceful timeout) with those sleeps made short.
    async def main_loop(self) -> None:
        self._loop = asyncio.get_running_loop()
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864000
            try:
                await asyncio.wait_for(self._wake.wait(), 0.1)  # the tick keeps the Date header fresh
            except asyncio.TimeoutError:
                pass

    def handle_exit(self, sig, frame) -> None:
        super().handle_exit(sig, frame)
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    async def shutdown(self, sockets=None) -> None:
        state = self.server_state
        log.info("shutting down: %d connection(s) open", len(state.connections))
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(state.connections):
            connection.shutdown()
        try:
            await asyncio.wait_for(self._connections_closed(), timeout=self.config.timeout_graceful_shutdown)
        except asyncio.TimeoutError:
            log.warning("cancelling %d task(s) still running after the %gs graceful shutdown timeout",
                        len(state.tasks), self.config.timeout_graceful_shutdown)
            for task in list(state.tasks):
                task.cancel()
        if not self.force_exit:
            await self.lifespan.shutdown()

    async def _connections_closed(self) -> None:
        state = self.server_state
        while (state.connections or state.tasks) and not self.force_exit:
            await asyncio.sleep(0.002)  # uvicorn signals no event when the last connection ends
        for server in self.servers:
            await server.wait_closed()


class _StopSignals:
    def __init__(self, server: uvicorn.Server) -> None:
        self._server = server
        self._previous: dict[int, object] = {}

    def __enter__(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._server.handle_exit)

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def serve(app, host: str, port: int, log_level: str, tls: TlsOptions | None = None) -> None:
    """Serve ``app`` until SIGTERM/SIGINT; raises OSError if the address can't be bound."""
    sock = bind_socket(host, port)
    config = uvicorn.Config(
        app,
        log_config=None,  # logging is set up by the CLI; keeps stdout for the ready line only
        # uvicorn logs three lines per WebSocket that repeat ours; keep only its warnings.
        log_level="debug" if log_level == "debug" else max(log_level, "warning", key=_LEVELS.index),
        access_log=False,  # one log line per HTTP request costs more than the request
        lifespan="off",
        http="h11",
        ws="websockets-sansio",
        ws_per_message_deflate=False,  # frames are tiny; compression only costs CPU
        timeout_graceful_shutdown=SHUTDOWN_TIMEOUT,
        server_header=False,
        **(tls.uvicorn_kwargs() if tls else {}),
    )
    server = _Server(config, public_url(sock, "https" if tls else "http"))
    asyncio.run(server.serve(sockets=[sock]))
    log.info("stopped")
