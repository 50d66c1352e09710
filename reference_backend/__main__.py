"""Command line: ``python -m reference_backend --port 0 [options]``.

Prints ``reference backend listening on http://<host>:<port>`` (``https://`` with
``--ssl-certfile``) on stdout once serving, logs connections and runs to stderr,
exits 0 on SIGTERM/SIGINT and 2 on a bad option (an unknown fault or wire name, a
scenario file that does not fit the format, an unusable certificate). See ``--help``
and :mod:`reference_backend.config` for the environment variables.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time

from . import tls
from .config import (
    DEFAULT_NETRA_HEARTBEAT,
    DEFAULT_SLOW_FIRST_DELAY,
    DEFAULT_THINK_DELAY,
    DEFAULT_TOOLS,
    DEV_JWT_SECRET,
    DEV_SIMULATION_KEY,
    WIRES,
    BackendConfig,
    env_defaults,
)
from .faults import help_text as fault_help_text
from .faults import parse_faults


def _non_negative(kind):
    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {kind.__name__} value: {text!r}") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
        return value

    convert.__name__ = kind.__name__
    return convert


def _fault_name(text: str) -> str:
    try:
        parse_faults([text])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text.strip()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m reference_backend",
        description="Reference agent chat backend (docs/protocol.md) with fault modes for testing the suites.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="fault modes (each breaks one rule; its effect per wire below it):\n" + fault_help_text() + "\n\n"
        "environment: E2E_JWT_SECRET, E2E_OAUTH_SIMULATION_KEY (dev defaults when unset),\n"
        "REFERENCE_BACKEND_THINK_DELAY, REFERENCE_BACKEND_TOOLS, REFERENCE_BACKEND_FAULTS (comma-separated),\n"
        "REFERENCE_BACKEND_SLOW_FIRST_DELAY, REFERENCE_BACKEND_WIRE, REFERENCE_BACKEND_HEARTBEAT,\n"
        "REFERENCE_BACKEND_SCENARIOS, REFERENCE_BACKEND_SSL_CERTFILE, REFERENCE_BACKEND_SSL_KEYFILE,\n"
        "REFERENCE_BACKEND_SSL_CA_CERTS, REFERENCE_BACKEND_SSL_CERT_REQS; options override them.\n"
        "Scenario file format: resources/scenarios/README.md.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=_non_negative(int), default=0,
                        help="port to bind; 0 picks a free one (default 0)")
    parser.add_argument("--wire", choices=WIRES,
                        help="what /ws speaks: default (docs/protocol.md), netra (its variants table), "
                             "ag-ui (AG-UI events) (default: default)")
    parser.add_argument("--think-delay", type=_non_negative(float), metavar="SECONDS",
                        help=f"delay between a run's events (default {DEFAULT_THINK_DELAY})")
    parser.add_argument("--tools", type=_non_negative(int), metavar="N",
                        help=f"tool calls of the built-in run (default {DEFAULT_TOOLS})")
    parser.add_argument("--scenarios", metavar="FILE",
                        help="play scripted agent behaviour from FILE (JSON, or YAML by its .yaml/.yml name); "
                             "messages no scenario matches get the built-in run")
    parser.add_argument("--heartbeat", type=_non_negative(float), metavar="SECONDS",
                        help=f"netra wire: send {{\"type\": \"ping\"}} every SECONDS and close 1008 after 3 "
                             f"unanswered (default {DEFAULT_NETRA_HEARTBEAT:g}; 0 = no heartbeat)")
    parser.add_argument("--fault", action="append", type=_fault_name, metavar="NAME",
                        help="enable a fault mode (repeatable); replaces REFERENCE_BACKEND_FAULTS")
    parser.add_argument("--slow-first-delay", type=_non_negative(float), metavar="SECONDS",
                        help=f"first-event delay of the slow-first-event fault (default {DEFAULT_SLOW_FIRST_DELAY})")
    parser.add_argument("--ssl-certfile", metavar="FILE", help="serve HTTPS/WSS with this PEM certificate")
    parser.add_argument("--ssl-keyfile", metavar="FILE", help="its PEM private key (when not in the certificate file)")
    parser.add_argument("--ssl-ca-certs", metavar="FILE", help="PEM CA bundle that client certificates must chain to")
    parser.add_argument("--ssl-cert-reqs", choices=list(tls.CERT_REQS),
                        help="client certificate: none (default), optional, required (mutual TLS)")
    parser.add_argument("--exit-with-pid", type=_non_negative(int), metavar="PID",
                        help="stop (as on SIGTERM) when process PID ends: a backend shared by several test "
                             "processes lives as long as the run that started them (e.g. pabot)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser


def _exit_with(pid: int, log: logging.Logger) -> None:
    """Send ourselves SIGTERM once ``pid`` is gone: told at once through a pidfd where Linux
    has one, else polled every 0.2 s (nothing else reports another process's end)."""
    import select
    import threading

    def stop() -> None:
        log.info("process %d ended: stopping", pid)
        os.kill(os.getpid(), signal.SIGTERM)

    def watch() -> None:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return stop()
        except (AttributeError, OSError):
            fd = None
        if fd is not None:
            select.select([fd], [], [])  # readable when the process ends
            os.close(fd)
            return stop()
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return stop()
            except PermissionError:
                pass  # alive, just not ours to signal
            time.sleep(0.2)

    threading.Thread(target=watch, name="exit-with-pid", daemon=True).start()


def config_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> BackendConfig:
    """Merge options over environment over defaults; bad environment values are CLI errors too."""
    env = env_defaults()

    def pick(option, env_key, kind, default):
        if option is not None:
            return option
        if env[env_key] is None:
            return default
        try:
            return _non_negative(kind)(env[env_key])
        except argparse.ArgumentTypeError as exc:
            parser.error(f"environment {_env_name(env_key)}: {exc}")

    def text(option, env_key):
        return option if option is not None else env[env_key]

    try:
        faults = parse_faults(args.fault if args.fault else (env["faults"] or "").split(","))
    except ValueError as exc:
        parser.error(f"REFERENCE_BACKEND_FAULTS: {exc}")

    wire = text(args.wire, "wire") or "default"
    if wire not in WIRES:
        parser.error(f"environment REFERENCE_BACKEND_WIRE: {wire!r} is not one of {', '.join(WIRES)}")
    heartbeat = pick(args.heartbeat, "heartbeat", float, None)
    if wire == "netra":
        heartbeat = DEFAULT_NETRA_HEARTBEAT if heartbeat is None else heartbeat
    elif heartbeat:
        source = "--heartbeat" if args.heartbeat is not None else "environment REFERENCE_BACKEND_HEARTBEAT"
        parser.error(f"{source} {heartbeat:g}: only the netra wire has a server heartbeat (the wire is {wire})")

    scenarios = None
    scenario_file = text(args.scenarios, "scenarios")
    if scenario_file:
        from .scenarios import ScenarioFileError, load_scenarios

        try:
            scenarios = load_scenarios(scenario_file)
        except ScenarioFileError as exc:
            source = "--scenarios" if args.scenarios is not None else "environment REFERENCE_BACKEND_SCENARIOS"
            parser.error(f"{source}: {exc}")

    settings = ("certfile", "keyfile", "ca_certs", "cert_reqs")
    # A message names a setting as the user gave it: by its environment variable if it came from there.
    names = {key: _env_name("ssl_" + key) if getattr(args, "ssl_" + key) is None and env["ssl_" + key] is not None
             else tls.OPTION_NAMES[key] for key in settings}
    try:
        tls_options = tls.check(*(text(getattr(args, "ssl_" + key), "ssl_" + key) for key in settings), names=names)
    except tls.TlsError as exc:
        parser.error(str(exc))

    return BackendConfig(
        jwt_secret=env["jwt_secret"] or DEV_JWT_SECRET,
        simulation_key=env["simulation_key"] or DEV_SIMULATION_KEY,
        think_delay=pick(args.think_delay, "think_delay", float, DEFAULT_THINK_DELAY),
        tools=pick(args.tools, "tools", int, DEFAULT_TOOLS),
        faults=faults,
        slow_first_delay=pick(args.slow_first_delay, "slow_first_delay", float, DEFAULT_SLOW_FIRST_DELAY),
        wire=wire,
        heartbeat=heartbeat or 0.0,
        scenarios=scenarios,
        tls=tls_options,
    )


def _env_name(env_key: str) -> str:
    return {"jwt_secret": "E2E_JWT_SECRET", "simulation_key": "E2E_OAUTH_SIMULATION_KEY"}.get(
        env_key, "REFERENCE_BACKEND_" + env_key.upper())


def main(argv: list[str] | None = None) -> int:
    # Until uvicorn takes over the signals, a stop request simply ends the process quietly.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    parser = build_parser()
    args = parser.parse_args(argv)
    config = config_from_args(args, parser)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    log = logging.getLogger("reference_backend")
    if config.jwt_secret == DEV_JWT_SECRET or config.simulation_key == DEV_SIMULATION_KEY:
        log.info("using development secrets (set E2E_JWT_SECRET / E2E_OAUTH_SIMULATION_KEY for shared use)")
    log.info(
        "wire=%s think_delay=%ss tools=%d faults=%s heartbeat=%s scenarios=%s tls=%s",
        config.wire,
        config.think_delay,
        config.tools,
        ",".join(sorted(config.faults)) or "none",
        f"{config.heartbeat:g}s" if config.heartbeat else "off",
        f"{config.scenarios.path} ({len(config.scenarios)})" if config.scenarios else "none",
        f"client certificates {config.tls.cert_reqs}" if config.tls else "off",
    )

    if args.exit_with_pid:
        _exit_with(args.exit_with_pid, log)

    from .app import create_asgi_app  # imported late so --help and option errors stay fast
    from .server import serve

    try:
        serve(create_asgi_app(config), args.host, args.port, args.log_level, config.tls)
    except OSError as exc:
        log.error("cannot bind %s:%s: %s", args.host, args.port, exc)
        return 1
    return 0


def _exit_now(code: int) -> None:
    """Exit without the interpreter's teardown of the web framework's module graph (about 50 ms that a
    test run waits for). Everything is closed by then; only the streams need flushing."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    try:
        code = main()
    except KeyboardInterrupt:  # Ctrl+C before the server took over the signal
        code = 0
    _exit_now(code)
