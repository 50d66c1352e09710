"""Authenticated HTTP calls to the backend's agent API, with the token masked in the log.

The library documentation (what libdoc shows) is the docstring of :class:`AgentApi`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import requests
from robot.api import logger
from robot.api.deco import keyword, library
from robot.api.types import Secret

from agentkit import target as targets
from agentkit.masking import mask, reveal


@library(scope="GLOBAL", auto_keywords=False)
class AgentApi:
    """Authenticated HTTP calls to the backend's agent API, with the token masked in the log.

    Unauthenticated calls (health) are plain RequestsLibrary calls in the suites. Calls that
    carry a bearer token go through this library because RequestsLibrary logs request
    headers in full, and a token must never appear in the log. Each request and response is
    logged in full otherwise (method, URL, masked headers, status, body).
    """

    def __init__(self) -> None:
        self._session = requests.Session()

    def close(self) -> None:  # end of the library's scope
        self._session.close()

    def _url(self, path: str, base_url: str | None) -> str:
        if path.startswith(("http://", "https://")):
            return path
        base = base_url or (targets.current().backend_url if targets.current() else None)
        if not base:
            raise ValueError("No backend URL: pass base_url=... or resolve a target first.")
        return base.rstrip("/") + "/" + path.lstrip("/")

    @keyword
    def get_agent_api(self, path: str, token: Secret | str | None = None, expected_status: int | None = 200,
                      base_url: str | None = None, timeout: timedelta = timedelta(seconds=10)) -> Any:
        """GETs ``path`` (e.g. ``/api/mcp/servers``) with ``Authorization: Bearer <token>`` and
        returns the JSON body. Fails unless the status is ``expected_status`` (``None``: any).

        Example:
        | ${servers}=    Get Agent Api    /api/mcp/servers    ${token}
        | Should Not Be Empty    ${servers}[data]
        """
        url = self._url(path, base_url)
        headers = {"Authorization": f"Bearer {reveal(token)}"} if token is not None else {}
        try:
            resp = self._session.get(url, headers=headers, timeout=timeout.total_seconds())
        except requests.RequestException as err:
            raise AssertionError(f"GET {url} failed before any answer: {err}") from None
        try:
            body = resp.json()
        except ValueError:
            body = resp.text
        shown = f"Bearer {mask(token)}" if token is not None else "(none)"
        logger.info(f"GET {url}\nAuthorization: {shown}\n-> HTTP {resp.status_code} "
                    f"{resp.headers.get('content-type', '')}\n{str(body)[:2000]}")
        if expected_status is not None and resp.status_code != expected_status:
            raise AssertionError(f"GET {url} answered HTTP {resp.status_code}, expected {expected_status}: {str(body)[:300]}")
        return body

    @keyword
    def agent_api_should_require_authentication(self, path: str, base_url: str | None = None,
                                                expected_status: list[int] | None = None) -> int:
        """GETs ``path`` without a token; it must be refused (default 401 or 403). Returns the status."""
        expected = expected_status or [401, 403]
        url = self._url(path, base_url)
        resp = self._session.get(url, timeout=10)
        logger.info(f"GET {url} without a token -> HTTP {resp.status_code}")
        if resp.status_code not in expected:
            raise AssertionError(f"GET {url} without a token answered HTTP {resp.status_code}, expected a refusal "
                                 f"({'/'.join(map(str, expected))}).")
        return resp.status_code
