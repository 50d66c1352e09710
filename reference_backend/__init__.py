"""The embedded reference backend: the kit's default system under test.

A Starlette + uvicorn service that speaks the agent chat protocol of docs/protocol.md
(health and discovery endpoints, the e2e auth service, the ``/ws`` agent event
stream) and can break one protocol rule at a time on request (fault modes), so
the suites can be shown to fail for the right reason.

``--wire`` picks what ``/ws`` speaks, one wire per process: ``default`` (docs/protocol.md),
``netra`` (docs/protocol.md, "Variants: the netra wire") or ``ag-ui`` (AG-UI events); see
:mod:`reference_backend.wires`. Every fault keeps its meaning on every wire.
``--scenarios FILE`` plays scripted agent behaviour (:mod:`reference_backend.scenarios`,
``resources/scenarios/README.md``); ``--ssl-certfile`` serves HTTPS/WSS (:mod:`reference_backend.tls`).

Module map: ``app`` (HTTP endpoints), ``ws`` (a connection's life), ``wires/`` (one module
per wire), ``runs`` (streaming a run), ``scenarios`` (what a run does), ``faults``,
``auth``, ``heartbeat``, ``connections``, ``server`` and ``tls`` (uvicorn), ``config``.

It shares no code with ``libraries/``: it is the thing under test, written from
docs/protocol.md on its own. Start it with ``python -m reference_backend --port 0``.
"""

__version__ = "1.0.0"
