"""The resolved target: one object every keyword reads, set once by the suite setup."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .masking import mask


@dataclass
class Target:
    """Where the suites point and how they authenticate.

    ``profile`` is ``local`` (the embedded reference backend) or a remote profile name.
    Secrets are plain strings here; only masked forms ever leave this object
    (:meth:`describe`)."""

    profile: str
    backend_url: str
    ws_url: str
    auth_url: str
    jwt_secret: str | None = None
    simulation_key: str | None = None
    auth_mode: str = "subprotocol"
    token_source: str = "jwt"          # "jwt": sign locally; "auth-service": POST the simulation key
    simulation_key_header: str = "X-E2E-OAuth-Simulation-Key"
    token_encoding: str = "raw"
    subprotocol: str = "jwt-auth"
    token_prefix: str = "jwt."
    first_event_timeout: float = 2.0
    run_timeout: float = 30.0
    connect_timeout: float = 10.0
    dialect: str = "default"
    verify_tls: bool = True
    ca_file: str | None = None
    extra: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        """Masked, like :meth:`describe`: Robot logs a keyword's return value at TRACE level."""
        return "Target(" + ", ".join(f"{k}={v!r}" for k, v in self.describe().items()) + ")"

    def describe(self) -> dict[str, str]:
        """Report metadata: every setting, secrets masked."""
        out = {}
        for key, value in asdict(self).items():
            if key in ("jwt_secret", "simulation_key"):
                value = mask(value, keep=0) if value else "(not set)"
            elif key == "extra":
                continue
            elif key in ("first_event_timeout", "run_timeout", "connect_timeout"):
                value = f"{value:g}s"
            out[key] = str(value)
        return out


_current: Target | None = None


def current() -> Target | None:
    return _current


def set_current(target: Target | None) -> None:
    global _current
    _current = target
