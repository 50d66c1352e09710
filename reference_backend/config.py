"""Settings of one backend process: defaults, environment, then command line.

Secrets come from the environment. The defaults below are development values
for local runs only (the kit's embedded target); a shared or remote deployment
must set ``E2E_JWT_SECRET`` and ``E2E_OAUTH_SIMULATION_KEY``.

Environment variables (the command line overrides each one):

===================================  ===========================================
``E2E_JWT_SECRET``                   HS256 secret (dev default ``reference-backend-dev-secret-not-for-shared-use``)
``E2E_OAUTH_SIMULATION_KEY``         e2e auth key (dev default ``reference-backend-dev-simulation-key``)
``REFERENCE_BACKEND_THINK_DELAY``    seconds between a run's events (default 0.02)
``REFERENCE_BACKEND_TOOLS``          tool calls per run (default 1, 0 allowed)
``REFERENCE_BACKEND_FAULTS``         comma-separated fault names (default none)
``REFERENCE_BACKEND_SLOW_FIRST_DELAY``  delay of the first event under ``slow-first-event`` (default 3.0)
``REFERENCE_BACKEND_WIRE``           ``default``, ``netra`` or ``ag-ui`` (default ``default``)
``REFERENCE_BACKEND_HEARTBEAT``      seconds between server pings, netra wire only (default 25, 0 = off)
``REFERENCE_BACKEND_SCENARIOS``      scenario file (JSON, or YAML by its .yaml/.yml name)
``REFERENCE_BACKEND_SSL_CERTFILE``   serve HTTPS/WSS with this certificate (PEM)
``REFERENCE_BACKEND_SSL_KEYFILE``    its private key (PEM), when not in the certificate file
``REFERENCE_BACKEND_SSL_CA_CERTS``   CA bundle that client certificates are checked against
``REFERENCE_BACKEND_SSL_CERT_REQS``  client certificate: ``none`` (default), ``optional``, ``required``
===================================  ===========================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .scenarios import ScenarioBook
    from .tls import TlsOptions

# 32+ bytes: PyJWT warns about shorter HMAC keys.
DEV_JWT_SECRET = "reference-backend-dev-secret-not-for-shared-use"
DEV_SIMULATION_KEY = "reference-backend-dev-simulation-key"

DEFAULT_THINK_DELAY = 0.02
DEFAULT_TOOLS = 1
DEFAULT_SLOW_FIRST_DELAY = 3.0
WIRES = ("default", "netra", "ag-ui")
#: Seconds between server pings on the netra wire (that backend pings every 20-25 s).
DEFAULT_NETRA_HEARTBEAT = 25.0
TOKEN_TTL_SECONDS = 3600

#: Tool names a run calls, cycling when a run has more tools than names.
TOOL_NAMES = ("search_docs", "summarize", "fetch_url", "calculate", "lookup_user")


@dataclass(frozen=True)
class BackendConfig:
    """Everything the app needs; immutable once the process has started."""

    jwt_secret: str = DEV_JWT_SECRET
    simulation_key: str = DEV_SIMULATION_KEY
    think_delay: float = DEFAULT_THINK_DELAY
    tools: int = DEFAULT_TOOLS
    faults: frozenset[str] = field(default_factory=frozenset)
    slow_first_delay: float = DEFAULT_SLOW_FIRST_DELAY
    token_ttl: int = TOKEN_TTL_SECONDS
    wire: str = "default"
    heartbeat: float = 0.0                    # seconds between server pings; 0 = none
    scenarios: ScenarioBook | None = None     # None: every run is the built-in default
    tls: TlsOptions | None = None             # None: plain HTTP/WS

    def has(self, fault: str) -> bool:
        return fault in self.faults


def env_defaults(environ: Mapping[str, str] = os.environ) -> dict[str, str | None]:
    """Raw environment values (None when unset or empty); parsing is the CLI's job."""
    names = {
        "jwt_secret": "E2E_JWT_SECRET",
        "simulation_key": "E2E_OAUTH_SIMULATION_KEY",
        "think_delay": "REFERENCE_BACKEND_THINK_DELAY",
        "tools": "REFERENCE_BACKEND_TOOLS",
        "faults": "REFERENCE_BACKEND_FAULTS",
        "slow_first_delay": "REFERENCE_BACKEND_SLOW_FIRST_DELAY",
        "wire": "REFERENCE_BACKEND_WIRE",
        "heartbeat": "REFERENCE_BACKEND_HEARTBEAT",
        "scenarios": "REFERENCE_BACKEND_SCENARIOS",
        "ssl_certfile": "REFERENCE_BACKEND_SSL_CERTFILE",
        "ssl_keyfile": "REFERENCE_BACKEND_SSL_KEYFILE",
        "ssl_ca_certs": "REFERENCE_BACKEND_SSL_CA_CERTS",
        "ssl_cert_reqs": "REFERENCE_BACKEND_SSL_CERT_REQS",
    }
    return {key: (environ.get(var) or None) for key, var in names.items()}
