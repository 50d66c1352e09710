"""One trust configuration for every connection the kit makes.

A target's TLS settings (``E2E_CA_FILE``, ``E2E_VERIFY_TLS``, ``E2E_CLIENT_CERT``,
``E2E_CLIENT_KEY``) become one :class:`TLSConfig`; each client library gets it in its
own form: an :class:`ssl.SSLContext` for websocket-client and ``websockets``, and the
``verify``/``cert`` arguments for requests (RequestsLibrary, the auth service, the agent
API). :func:`diagnose` turns a certificate failure into one sentence naming the host,
the reason and the setting that fixes it.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit


@dataclass(frozen=True)
class TLSConfig:
    """``ca`` is a CA bundle file or a directory of hashed certificates (``c_rehash``);
    ``verify=False`` switches certificate and host name checks off (test systems only);
    ``client_cert``/``client_key`` (PEM) answer a server that requires mutual TLS."""

    verify: bool = True
    ca: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    _context: list = field(default_factory=list, compare=False, repr=False, hash=False)

    def problems(self, prefix: str = "E2E_") -> list[str]:
        """Every setting that cannot work, named (files exist and parse)."""
        out: list[str] = []
        if self.ca:
            path = Path(self.ca)
            if not path.exists():
                out.append(f"{prefix}CA_FILE '{self.ca}' does not exist: expected a PEM CA bundle or a folder of CA certificates")
            else:
                try:
                    ctx = ssl.create_default_context()
                    if path.is_dir():
                        # OpenSSL reads a CA folder lazily, by hash-named file: look for one now.
                        hashed = [f for f in path.iterdir() if re.fullmatch(r"[0-9a-f]{8}\.\d+", f.name)]
                        if not hashed:
                            out.append(f"{prefix}CA_FILE '{self.ca}' is a folder with no hash-named CA certificate "
                                       f"(<hash>.0, made by 'openssl rehash' or c_rehash): expected a PEM CA bundle "
                                       f"or such a folder")
                        for f in hashed:
                            ctx.load_verify_locations(cafile=str(f))
                    else:
                        ctx.load_verify_locations(cafile=str(path))
                except (ssl.SSLError, OSError, ValueError) as err:
                    out.append(f"{prefix}CA_FILE '{self.ca}' is not a readable PEM CA bundle: {_reason(err)}")
        if self.client_key and not self.client_cert:
            out.append(f"{prefix}CLIENT_KEY is set without {prefix}CLIENT_CERT: expected both for mutual TLS")
        if self.client_cert:
            missing = [(name, value) for name, value in ((f"{prefix}CLIENT_CERT", self.client_cert),
                                                         (f"{prefix}CLIENT_KEY", self.client_key))
                       if value and not Path(value).is_file()]
            for name, value in missing:
                out.append(f"{name} '{value}' does not exist or is not a file")
            if not missing:
                try:
                    ssl.create_default_context().load_cert_chain(self.client_cert, self.client_key)
                except (ssl.SSLError, OSError, ValueError) as err:
                    out.append(f"{prefix}CLIENT_CERT '{self.client_cert}'"
                               + (f" with {prefix}CLIENT_KEY '{self.client_key}'" if self.client_key else "")
                               + f" cannot be loaded as a PEM certificate and key: {_reason(err)}")
        return out

    def ssl_context(self) -> ssl.SSLContext:
        """The client context every TLS connection uses (built once)."""
        if self._context:
            return self._context[0]
        ctx = ssl.create_default_context()
        if self.ca:
            if Path(self.ca).is_dir():
                ctx.load_verify_locations(capath=self.ca)
            else:
                ctx.load_verify_locations(cafile=self.ca)
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.client_cert:
            ctx.load_cert_chain(self.client_cert, self.client_key)
        self._context.append(ctx)
        return ctx

    def requests_options(self) -> dict:
        """``verify`` and ``cert`` for requests / RequestsLibrary."""
        options: dict = {"verify": (self.ca or True) if self.verify else False}
        if self.client_cert:
            options["cert"] = (self.client_cert, self.client_key) if self.client_key else self.client_cert
        return options

    def describe(self) -> str:
        if not self.verify:
            return "verification OFF"
        parts = [f"CA {self.ca}" if self.ca else "system CAs"]
        if self.client_cert:
            parts.append(f"client certificate {self.client_cert}")
        return ", ".join(parts)


def _reason(err: BaseException) -> str:
    if isinstance(err, ssl.SSLError):
        return err.reason or str(err)
    return getattr(err, "strerror", None) or str(err)


def diagnose(err: BaseException | None, url: str, tls: TLSConfig, after_handshake: bool = False) -> str:
    """One diagnosis of a failed TLS connection: which host, why, and which setting fixes it.

    ``after_handshake``: the server closed the connection right after the handshake, without
    an alert (a server that checks the client certificate after a TLS 1.3 handshake)."""
    host = urlsplit(url).hostname or url
    port = urlsplit(url).port
    where = f"{host}:{port}" if port else host
    text = str(err or "")
    verify = getattr(err, "verify_message", None) or ""
    lower = (verify + " " + text).lower().replace("_", " ")
    client = f"the client certificate {tls.client_cert}" if tls.client_cert else "no client certificate"
    if after_handshake or "eof occurred" in lower and "alert" not in lower:
        if tls.client_cert:
            why = f"the server closed the connection right after the handshake: it did not accept {client}"
            fix = "use a client certificate (E2E_CLIENT_CERT, E2E_CLIENT_KEY) issued by a CA the server trusts"
        else:
            why = ("the server closed the connection right after the handshake: it requires a client certificate "
                   "(mutual TLS) and none was offered")
            fix = "set E2E_CLIENT_CERT and E2E_CLIENT_KEY to a certificate the server trusts"
    elif "alert" in lower and ("certificate required" in lower or (not tls.client_cert and "handshake failure" in lower)):
        why = "the server requires a client certificate (mutual TLS) and none was offered"
        fix = "set E2E_CLIENT_CERT and E2E_CLIENT_KEY to a certificate the server trusts"
    elif "alert" in lower and any(w in lower for w in ("unknown ca", "bad certificate", "certificate unknown",
                                                       "handshake failure", "access denied", "decrypt error")):
        # An alert is the server's verdict on us: on the client certificate.
        why = f"the server refused {client} (alert: {text.split(']')[-1].strip() or text})"
        fix = "use a client certificate (E2E_CLIENT_CERT, E2E_CLIENT_KEY) issued by a CA the server trusts"
    elif "self-signed" in lower or "self signed" in lower:
        why = "its certificate is self-signed (no CA you trust issued it)"
        fix = "trust that certificate or its CA with E2E_CA_FILE=<PEM file> (test systems only: E2E_VERIFY_TLS=false)"
    elif "expired" in lower:
        why = "its certificate has expired"
        fix = "renew the server's certificate (test systems only: E2E_VERIFY_TLS=false)"
    elif "hostname mismatch" in lower or "doesn't match" in lower or "not valid for" in lower or "ip address mismatch" in lower:
        why = f"its certificate is not issued for the name '{host}'"
        fix = "use the host name the certificate names in the URL, or issue a certificate with that name"
    elif "unable to get local issuer" in lower or "unable to get issuer" in lower or "unknown ca" in lower:
        why = "its certificate was issued by a CA you do not trust"
        fix = "trust that CA with E2E_CA_FILE=<PEM file or folder> (test systems only: E2E_VERIFY_TLS=false)"
    elif "wrong version number" in lower or "record layer failure" in lower or "packet length too long" in lower:
        why = "it does not speak TLS on that port"
        fix = "use http:// and ws:// for that port, or the port that serves TLS"
    else:
        why = f"TLS failed: {verify or _reason(err) if err else 'no answer'}"
        fix = "check E2E_CA_FILE, E2E_CLIENT_CERT/E2E_CLIENT_KEY and the URL"
    return f"TLS handshake with {where} failed: {why}. Fix: {fix}."
