"""TLS: serve HTTPS and WSS with uvicorn's own SSL options, checked before the server starts.

uvicorn would only find a missing file or a key that does not fit the certificate
inside its start-up, as a traceback; :func:`check` loads the same files into an
``ssl`` context first, so a bad option ends the process with one clear message.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass

CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


class TlsError(ValueError):
    """A TLS option that can't be used; the message names the option and the problem."""


@dataclass(frozen=True)
class TlsOptions:
    certfile: str
    keyfile: str | None = None
    ca_certs: str | None = None
    cert_reqs: str = "none"      # a key of CERT_REQS

    def uvicorn_kwargs(self) -> dict:
        """The keyword arguments of ``uvicorn.Config`` that turn TLS on."""
        return {
            "ssl_certfile": self.certfile,
            "ssl_keyfile": self.keyfile,
            "ssl_ca_certs": self.ca_certs,
            "ssl_cert_reqs": CERT_REQS[self.cert_reqs],
        }


#: How an error names each setting, unless the caller says where it came from.
OPTION_NAMES = {"certfile": "--ssl-certfile", "keyfile": "--ssl-keyfile", "ca_certs": "--ssl-ca-certs",
                "cert_reqs": "--ssl-cert-reqs"}


def check(certfile: str | None, keyfile: str | None, ca_certs: str | None, cert_reqs: str | None,
          names: dict[str, str] = OPTION_NAMES) -> TlsOptions | None:
    """Settings -> :class:`TlsOptions` (None without a certificate), or raise :class:`TlsError`.

    ``names`` says how a message names each setting (an option, or an environment variable)."""
    if cert_reqs is not None and cert_reqs not in CERT_REQS:
        raise TlsError(f"{names['cert_reqs']}: {cert_reqs!r} is not one of {', '.join(CERT_REQS)}")
    if certfile is None:
        given = [names[key] for key, value in (("keyfile", keyfile), ("ca_certs", ca_certs),
                                               ("cert_reqs", cert_reqs)) if value is not None]
        if given:
            raise TlsError(f"{', '.join(given)} need(s) {names['certfile']} (the server's certificate)")
        return None
    reqs = cert_reqs or "none"
    if reqs != "none" and ca_certs is None:
        raise TlsError(f"{names['cert_reqs']} {reqs} needs {names['ca_certs']} "
                       "(the CA that signs client certificates)")
    for key, path in (("certfile", certfile), ("keyfile", keyfile), ("ca_certs", ca_certs)):
        if path is not None and not os.path.isfile(path):
            raise TlsError(f"{names[key]} {path}: no such file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(certfile, keyfile)
    except (ssl.SSLError, OSError) as exc:
        files = certfile + (f" with {names['keyfile']} {keyfile}" if keyfile else "")
        raise TlsError(f"{names['certfile']} {files}: not a usable PEM certificate and private key ({exc})") from None
    if ca_certs is not None:
        try:
            context.load_verify_locations(ca_certs)
        except (ssl.SSLError, OSError) as exc:
            raise TlsError(f"{names['ca_certs']} {ca_certs}: not a usable PEM CA bundle ({exc})") from None
    return TlsOptions(certfile, keyfile, ca_certs, reqs)
