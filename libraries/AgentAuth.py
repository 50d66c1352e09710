"""JWT test tokens (PyJWT) and the auth service's test-auth endpoint.

The library documentation (what libdoc shows) is the docstring of :class:`AgentAuth`.
"""

from __future__ import annotations

import hmac
import secrets
import time
from datetime import timedelta
from typing import Any

import jwt
from assertionengine import AssertionOperator
from robot.api import logger
from robot.api.deco import keyword, library
from robot.api.types import Secret

from agentkit import target as targets
from agentkit import tokens
from agentkit.assertions import verify
from agentkit.transports.http import HttpFailure
from agentkit.wire.masking import REDACTOR, as_secret, install_log_filter, mask, redact, reveal


def _secs(value: timedelta) -> float:
    return value.total_seconds()


@library(scope="GLOBAL", auto_keywords=False)
class AgentAuth:
    """JWT test tokens (PyJWT) and the auth service's test-auth endpoint.

    Tokens are returned as Robot's ``Secret`` so they show masked in every log; keywords
    that take a token or secret accept a ``Secret`` (recommended) or a plain string. With a
    resolved target (``Resolve Target``), the signing secret, auth URL and simulation key
    come from it; otherwise pass them.

    Claims follow docs/protocol.md: ``sub`` (user id), ``email``, ``iat``, ``exp``, ``type=access``
    and optional ``permissions``. HS256 by default; RS256/ES256 with a private key file.
    """

    def __init__(self) -> None:
        install_log_filter()

    def _secret(self, secret: Secret | str | None, algorithm: str) -> str | None:
        plain = reveal(secret)
        if plain is None and algorithm.startswith("HS"):
            tgt = targets.require()
            plain = tgt.jwt_secret if tgt else None
            if not plain:
                raise ValueError("No JWT secret: pass secret=... (a Secret) or resolve a target whose "
                                 "E2E_JWT_SECRET is set.")
        return plain

    def _issue(self, claims: dict, algorithm: str, secret: Secret | str | None, key_file: str | None,
               what: str) -> Secret:
        try:
            token = tokens.encode(claims, algorithm, self._secret(secret, algorithm), key_file)
        except tokens.TokenError as err:
            raise ValueError(str(err)) from None
        shown = {k: v for k, v in claims.items() if k != "jti"}
        logger.info(f"{what}: {algorithm}, claims {shown}, token {mask(token)}")
        return as_secret(token)

    @keyword
    def create_test_token(self, user_id: str, email: str | None = None, lifetime: timedelta = timedelta(hours=1),
                          permissions: list[str] | None = None, algorithm: str = "HS256",
                          secret: Secret | str | None = None, key_file: str | None = None) -> Secret:
        """Creates a valid access token for ``user_id`` and returns it as a ``Secret``.

        | =Argument= | =Meaning= |
        | ``user_id`` | The ``sub`` claim. |
        | ``email`` | Default ``<user_id>@e2e.test``. |
        | ``lifetime`` | Robot time string, e.g. ``1h`` or ``90 s``. |
        | ``permissions`` | Optional list for the ``permissions`` claim. |
        | ``algorithm`` | ``HS256`` (default) or an asymmetric one such as ``RS256`` with ``key_file``. |
        | ``secret`` | HS* signing secret. Default: the target's ``E2E_JWT_SECRET``. |
        | ``key_file`` | PEM private key for RS*/ES*. |

        Example:
        | ${token}=    Create Test Token    alice    lifetime=10 min
        | Connect To Agent WebSocket    ${token}
        """
        if not user_id:
            raise ValueError("user_id must be a non-empty string.")
        claims = tokens.build_claims(user_id, email, _secs(lifetime), permissions)
        return self._issue(claims, algorithm, secret, key_file, f"Created token for {user_id}")

    @keyword
    def get_token_for_user(self, user_id: str) -> Secret:
        """A valid access token for ``user_id`` from the target: signed with its JWT secret
        when it has one (``E2E_JWT_SECRET``), else fetched from its auth service with the
        simulation key (the token's ``sub`` is then the service's id for
        ``<user_id>@e2e.test``). Returns a ``Secret``.

        Example:
        | ${token}=    Get Token For User    alice
        | Connect To Agent WebSocket    ${token}    alias=alice
        """
        tgt = targets.require()
        if tgt.jwt_secret:
            return self.create_test_token(user_id)
        return self.get_token_from_auth_service(f"{user_id}@e2e.test")

    @keyword
    def create_expired_token(self, user_id: str, expired_for: timedelta = timedelta(minutes=5),
                             secret: Secret | str | None = None) -> Secret:
        """Creates a correctly signed token whose ``exp`` lies ``expired_for`` in the past.

        Example:
        | ${expired}=    Create Expired Token    mallory
        | Handshake Should Be Refused    ${expired}
        """
        now = time.time()
        claims = tokens.build_claims(user_id, lifetime=3600, issued_at=now - 3600 - _secs(expired_for))
        return self._issue(claims, "HS256", secret, None, f"Created token for {user_id} expired {_secs(expired_for):g}s ago")

    @keyword
    def create_wrongly_signed_token(self, user_id: str) -> Secret:
        """Creates a token with valid claims signed by a random secret the server does not know."""
        claims = tokens.build_claims(user_id)
        return self._issue(claims, "HS256", secrets.token_urlsafe(32), None, f"Created wrongly signed token for {user_id}")

    @keyword
    def create_malformed_token(self, kind: str = "garbage") -> Secret:
        """Returns a token that is not a valid JWT.

        ``kind``: ``garbage`` (not three segments), ``truncated`` (signature cut off),
        ``bad-base64`` (three segments that do not decode) or ``none-alg`` (unsigned, ``alg: none``)."""
        kinds = {
            "garbage": "not-a-jwt",
            "truncated": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.",
            # HTTP token characters only, so it travels in a subprotocol and reaches the JWT check
            "bad-base64": "!!!!.****.~~~~",
            "none-alg": jwt.encode(tokens.build_claims("mallory"), key=None, algorithm="none"),
        }
        if kind not in kinds:
            raise ValueError(f"Malformed token kind '{kind}' is not known: expected one of {', '.join(kinds)}.")
        logger.info(f"Created malformed token ({kind})")
        return as_secret(kinds[kind])

    @keyword
    def create_token_without_claims(self, user_id: str, *claims: str, secret: Secret | str | None = None) -> Secret:
        """Creates a correctly signed token lacking the named claims (e.g. ``sub``, ``exp``).

        Example:
        | ${no_sub}=    Create Token Without Claims    mallory    sub
        """
        if not claims:
            raise ValueError("Name at least one claim to leave out, e.g. sub or exp.")
        body = tokens.build_claims(user_id)
        unknown = [c for c in claims if c not in body]
        if unknown:
            raise ValueError(f"Claim(s) {unknown} are not in a test token: expected some of {sorted(body)}.")
        for claim in claims:
            body.pop(claim)
        return self._issue(body, "HS256", secret, None, f"Created token without {list(claims)}")

    @keyword
    def get_token_from_auth_service(self, email: str, name: str | None = None, auth_url: str | None = None,
                                    simulation_key: Secret | str | None = None, header: str | None = None,
                                    timeout: timedelta = timedelta(seconds=10)) -> Secret:
        """Gets an access token from the auth service's test-auth endpoint with the simulation key.

        | =Argument= | =Meaning= |
        | ``email`` | The user's email address; the service derives the user from it. |
        | ``name`` | Display name; default the part of ``email`` before ``@``. |
        | ``auth_url`` | Default: the target's ``E2E_AUTH_URL``. |
        | ``simulation_key`` | Default: the target's ``E2E_OAUTH_SIMULATION_KEY``. |
        | ``header`` | Default: the dialect's (``X-E2E-OAuth-Simulation-Key``; ``X-E2E-Bypass-Key`` for ``netra``) or ``E2E_SIMULATION_KEY_HEADER``. |
        | ``timeout`` | Seconds to wait for the answer, e.g. ``10s``. |

        Fails unless the answer is 200 with a token; skips, saying why, when the target
        has no auth service. Every token in the answer is masked wherever it appears.

        Example:
        | ${token}=    Get Token From Auth Service    qa@example.com
        """
        status, body, url = self._post_test_auth(email, name, auth_url, simulation_key, header, _secs(timeout))
        if status != 200:
            raise AssertionError(redact(f"Expected 200 with an access token from {url}, got HTTP {status}: {str(body)[:200]}"))
        tgt = targets.current()
        field = tgt.dialect.auth_service.get("token_field", "access_token") if tgt else "access_token"
        token = body.get(field) if isinstance(body, dict) else None
        if not token:
            keys = sorted(body) if isinstance(body, dict) else type(body).__name__
            raise AssertionError(f"Auth service {url} answered 200 without {field}: keys {keys}")
        REDACTOR.add(token)
        logger.info(f"Got token {mask(token)} for {email} from {url} (expires_in "
                    f"{body.get('expires_in') if isinstance(body, dict) else None})")
        return as_secret(token)

    @keyword
    def auth_service_should_refuse_simulation_key(self, simulation_key: Secret | str | None, email: str = "mallory@e2e.test",
                                                  expected_status: list[int] | None = None,
                                                  auth_url: str | None = None, header: str | None = None) -> int:
        """Posts to the test-auth endpoint with a wrong (or ``None``: no) key; it must be refused.

        ``expected_status`` defaults to ``[401, 403]``. A 200 fails: the key was accepted.
        Skips, saying why, when the target has no auth service.

        Example:
        | Auth Service Should Refuse Simulation Key    wrong-key
        """
        expected = expected_status or [401, 403]
        status, body, url = self._post_test_auth(email, None, auth_url, simulation_key, header, 10.0,
                                                 send_key=simulation_key is not None)
        if status not in expected:
            raise AssertionError(redact(f"Expected {url} to refuse the simulation key {mask(simulation_key, keep=0)} "
                                        f"with HTTP {'/'.join(map(str, expected))}, got HTTP {status}"
                                        + (": the key was ACCEPTED and a token issued" if status == 200
                                           else f": {str(body)[:200]}")))
        return status

    def _post_test_auth(self, email, name, auth_url, key, header, timeout, send_key=True):
        tgt = targets.require() if auth_url is None else targets.current()
        if auth_url is None and not tgt.has_auth_service:
            from robot.api import SkipExecution

            raise SkipExecution(f"target '{tgt.profile}' has no auth service ("
                                + ("E2E_AUTH_URL is not set" if tgt.auth_service else
                                   f"dialect '{tgt.dialect.name}' has none") + ")")
        plain_key = reveal(key) if key is not None else (tgt.simulation_key if tgt and send_key else None)
        if send_key and not plain_key:
            raise ValueError("No simulation key: pass simulation_key=... or set E2E_OAUTH_SIMULATION_KEY.")
        try:
            status, body, url = tokens.request_test_token(tgt, email, plain_key if send_key else None, header,
                                                          name, timeout, auth_url=auth_url)
        except HttpFailure as err:
            raise AssertionError(str(err)) from None
        used = header or (tgt.key_header if tgt else "X-E2E-OAuth-Simulation-Key")
        logger.info(redact(f"POST {url} with {used}: {mask(plain_key, keep=0) if send_key else '(no key)'} -> "
                           f"HTTP {status} {str(body)[:300]}"))
        return status, body, url

    @keyword
    def decode_token(self, token: Secret | str, verify: bool = True, secret: Secret | str | None = None,
                     algorithm: str = "HS256", key_file: str | None = None) -> dict:
        """Decodes a token and returns its claims; with ``verify`` (default) the signature and
        expiry are checked too (HS* with the target's secret, or a public ``key_file``).

        Example:
        | ${claims}=    Decode Token    ${token}
        | Should Be Equal    ${claims}[sub]    alice
        """
        plain = reveal(token)
        try:
            if not verify:
                return jwt.decode(plain, options={"verify_signature": False})
            if algorithm.startswith("HS"):
                key: Any = self._secret(secret, algorithm)
            elif key_file:
                key = open(key_file, encoding="utf-8").read()
            else:
                raise ValueError(f"{algorithm} verification needs a public key_file.")
            return jwt.decode(plain, key, algorithms=[algorithm], options={"require": ["exp", "sub"]})
        except jwt.PyJWTError as err:
            raise AssertionError(f"Token {mask(plain)} is not valid: {err}.") from None
        except OSError as err:
            raise ValueError(f"Key file '{key_file}' cannot be read: {err.strerror}.") from None

    @keyword
    def get_token_claim(self, token: Secret | str, claim: str, assertion_operator: AssertionOperator | None = None,
                        expected: Any = None) -> Any:
        """Returns one claim (unverified), with an optional inline assertion.

        Example:
        | Get Token Claim    ${token}    sub    ==    alice
        | Get Token Claim    ${token}    type    ==    access
        """
        claims = self.decode_token(token, verify=False)
        if claim not in claims and assertion_operator is None:
            raise AssertionError(f"Token has no claim '{claim}'; it has {sorted(claims)}.")
        return verify(claims.get(claim), assertion_operator, expected, f"Claim '{claim}'")

    @keyword
    def secrets_should_be_equal(self, first: Secret | str, second: Secret | str) -> None:
        """Compares two secrets in constant time without showing either."""
        if not hmac.compare_digest(reveal(first) or "", reveal(second) or ""):
            raise AssertionError(f"Secrets differ: {mask(first)} != {mask(second)}.")
