"""The backend's HTTP side: health, and authenticated calls to its agent API, token masked.

The library documentation (what libdoc shows) is the docstring of :class:`AgentApi`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from robot.api import SkipExecution, logger
from robot.api.deco import keyword, library
from robot.api.types import Secret

from agentkit import target as targets
from agentkit.transports import http
from agentkit.wire.masking import install_log_filter, mask, redact, reveal
from agentkit.wire.paths import Matcher


@library(scope="GLOBAL", auto_keywords=False)
class AgentApi:
    """The backend's HTTP side: health, and authenticated calls to its agent API, token masked.

    Every call uses the target's trust settings (``E2E_CA_FILE``, ``E2E_VERIFY_TLS``,
    ``E2E_CLIENT_CERT``/``E2E_CLIENT_KEY``). A call that gets no answer fails with a
    diagnosis in the kit's words (what was asked, what happened, what to check). Each
    request and response is logged (method, URL, masked headers, status, body); a token
    never appears in the log. Calls to the agent API (``/api/*``, docs/protocol.md)
    skip, saying why, when the target's dialect has none (``E2E_AGENT_API`` overrides).
    """

    def __init__(self) -> None:
        install_log_filter()

    def _url(self, path: str, base_url: str | None) -> str:
        if path.startswith(("http://", "https://")):
            return path
        base = base_url or targets.require().backend_url
        return base.rstrip("/") + "/" + path.lstrip("/")

    def _need_agent_api(self, base_url: str | None, path: str) -> None:
        if base_url is not None or path.startswith(("http://", "https://")):
            return
        tgt = targets.require()
        if not tgt.agent_api:
            raise SkipExecution(f"target '{tgt.profile}' has no agent API endpoints (dialect '{tgt.dialect.name}', "
                                f"http.agent_api: false; set E2E_AGENT_API=true if it has them)")

    def _get(self, url: str, headers: dict, timeout: float, what: str) -> http.Answer:
        tgt = targets.current()
        try:
            return http.request("GET", url, tls=tgt.tls if tgt else None, headers=headers, timeout=timeout, what=what)
        except http.HttpFailure as err:
            raise AssertionError(str(err)) from None

    @keyword
    def get_agent_api(self, path: str, token: Secret | str | None = None, expected_status: int | None = 200,
                      base_url: str | None = None, timeout: timedelta = timedelta(seconds=10)) -> Any:
        """GETs ``path`` (e.g. ``/api/mcp/servers``) with ``Authorization: Bearer <token>`` and
        returns the JSON body. Fails unless the status is ``expected_status`` (``None``: any).

        | =Argument= | =Meaning= |
        | ``path`` | A path on the backend, or a full ``http(s)://`` URL. |
        | ``token`` | Bearer token (``Secret`` recommended); ``None`` sends none. |
        | ``expected_status`` | The status that passes; ``None`` accepts any. Default 200. |
        | ``base_url`` | Default: the target's ``E2E_BACKEND_URL``. |
        | ``timeout`` | e.g. ``10s``. |

        Example:
        | ${servers}=    Get Agent Api    /api/mcp/servers    ${token}
        | Should Not Be Empty    ${servers}[data]
        """
        self._need_agent_api(base_url, path)
        url = self._url(path, base_url)
        headers = {"Authorization": f"Bearer {reveal(token)}"} if token is not None else {}
        answer = self._get(url, headers, timeout.total_seconds(), f"GET {url}")
        shown = f"Bearer {mask(token)}" if token is not None else "(none)"
        logger.info(redact(f"GET {url}\nAuthorization: {shown}\n-> HTTP {answer.status} "
                           f"{answer.headers.get('content-type', '')} ({answer.elapsed_ms:.1f} ms)\n{str(answer.body)[:2000]}"))
        if expected_status is not None and answer.status != expected_status:
            raise AssertionError(redact(f"GET {url} answered HTTP {answer.status}, expected {expected_status}: "
                                        f"{str(answer.body)[:300]}"))
        return answer.body

    @keyword
    def agent_api_should_require_authentication(self, path: str, base_url: str | None = None,
                                                expected_status: list[int] | None = None) -> int:
        """GETs ``path`` without a token; it must be refused (default 401 or 403). Returns the status.

        Example:
        | Agent Api Should Require Authentication    /api/mcp/servers
        """
        self._need_agent_api(base_url, path)
        expected = expected_status or [401, 403]
        url = self._url(path, base_url)
        answer = self._get(url, {}, 10.0, f"GET {url} without a token")
        logger.info(f"GET {url} without a token -> HTTP {answer.status}")
        if answer.status not in expected:
            raise AssertionError(f"GET {url} without a token answered HTTP {answer.status}, expected a refusal "
                                 f"({'/'.join(map(str, expected))}): the endpoint is open to anyone.")
        return answer.status

    @keyword
    def backend_should_be_healthy(self, path: str | None = None, base_url: str | None = None,
                                  token: Secret | str | None = None,
                                  timeout: timedelta = timedelta(seconds=10)) -> Any:
        """GETs the health endpoint and checks it answers 200 with the body the dialect
        expects (``http.health``: ``/health`` with ``{"status": "healthy"}``; ``/ok`` with
        ``{"ok": true}`` for ``langgraph``). Returns the body.

        | =Argument= | =Meaning= |
        | ``path`` | Default: the dialect's health path. |
        | ``base_url`` | Default: the target's backend URL (``E2E_AUTH_URL`` for the auth service's health). |
        | ``token`` | Optional bearer token, for health endpoints behind auth (``/api/health``). |

        Skips, saying why, when the dialect names no health endpoint.

        Example:
        | Backend Should Be Healthy
        | Backend Should Be Healthy    /auth/health    base_url=${AUTH_URL}
        """
        tgt = targets.require()
        health = tgt.dialect.http.get("health")
        if path is None and not health:
            raise SkipExecution(f"dialect '{tgt.dialect.name}' names no health endpoint (http.health)")
        expect = (health or {}).get("expect") if path is None else None
        return self._health(self._url(path or health["path"], base_url), expect or {"status": "healthy"}, token,
                            timeout.total_seconds())

    def _health(self, url: str, expect: dict, token, timeout: float) -> Any:
        headers = {"Authorization": f"Bearer {reveal(token)}"} if token is not None else {}
        answer = self._get(url, headers, timeout, f"GET {url} (health)")
        logger.info(redact(f"GET {url} -> HTTP {answer.status} ({answer.elapsed_ms:.1f} ms): {str(answer.body)[:500]}"))
        if answer.status != 200:
            raise AssertionError(redact(f"{url} answered HTTP {answer.status}, expected 200 with {expect}: "
                                        f"{str(answer.body)[:300]}"))
        if not Matcher(expect)(answer.body):
            raise AssertionError(redact(f"{url} answered 200 but its body is not healthy: expected {expect}, got "
                                        f"{str(answer.body)[:300]}"))
        return answer.body

    @keyword
    def auth_service_should_be_healthy(self) -> Any:
        """GETs the auth service's health endpoint (the dialect's ``auth_service.health``,
        default ``/auth/health``) on ``E2E_AUTH_URL``. Skips, saying why, when the target has
        no auth service.

        Example:
        | Auth Service Should Be Healthy
        """
        tgt = targets.require()
        if not tgt.has_auth_service:
            raise SkipExecution(f"target '{tgt.profile}' has no auth service ("
                                + ("E2E_AUTH_URL is not set" if tgt.auth_service else
                                   f"dialect '{tgt.dialect.name}' has none") + ")")
        path = tgt.dialect.auth_service.get("health", "/auth/health")
        return self._health(self._url(path, tgt.auth_url), {"status": "healthy"}, None, 10.0)
