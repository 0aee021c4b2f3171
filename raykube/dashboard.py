"""Clients of the Ray dashboard: a small JSON client (State API, Serve REST API) and Ray's own
Jobs SDK client, both sending the cluster's auth token.

raykube reads cluster state over the dashboard's HTTP API instead of starting a Ray driver, so
`raykube status` is quick and works the same through a Kubernetes port-forward.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from raykube.auth import read_token
from raykube.errors import BackendError


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Answer a redirect with its own HTTP error: a request carrying a cluster's token is never
    re-sent to wherever a ``Location`` header points."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


TRANSIENT_EXCEPTIONS = frozenset({
    "TimeoutError", "GetTimeoutError", "RayActorError", "ActorDiedError",
    "ActorUnavailableError"})
"""Exceptions a dashboard handler answers HTTP 500 with while Ray is still starting or
restarting the actor it asks (Serve's controller and proxies): the same request may succeed a
moment later. Serve's ``PUT /api/serve/applications/`` answers ``TimeoutError: HTTP proxies not
available after 60s.`` on a loaded machine, for one."""


def error_of(body: str) -> str:
    """The part of a dashboard's error answer a user needs: the exception line of a Python
    traceback (its last line; the frames before it are the dashboard's own), else the answer's
    start."""
    if "Traceback (most recent call last)" in body:
        lines = [line.strip() for line in body.splitlines() if line.strip()]
        return lines[-1][:500]
    return body[:500]


def is_transient_answer(status: int, error: str) -> bool:
    """Whether an HTTP error from a dashboard may go away unchanged: a gateway or availability
    error, or a 500 raised by one of :data:`TRANSIENT_EXCEPTIONS`."""
    if status in (502, 503, 504):
        return True
    name = error.split(":", 1)[0].rsplit(".", 1)[-1]
    return status == 500 and name in TRANSIENT_EXCEPTIONS


class DashboardClient:
    """Authenticated JSON calls to one dashboard (redirects are refused, not followed)."""

    def __init__(self, url: str, token_path: str | None, *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._token_path = token_path
        self._timeout = timeout

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self._token_path:
            headers["Authorization"] = f"Bearer {read_token(self._token_path)}"
        return headers

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """Send one request and return the decoded JSON answer.

        Raises:
            BackendError: the dashboard is unreachable or answered an HTTP error (retryable
                where :func:`is_transient_answer` says so).
        """
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.url + path, data=data, method=method, headers=self._headers()
        )
        try:
            with _OPENER.open(req, timeout=self._timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            if 300 <= exc.code < 400:
                raise BackendError(
                    f"dashboard {self.url}{path} answered with a redirect (HTTP {exc.code}) to "
                    f"{str(exc.headers.get('Location', '?'))[:200]}; raykube does not follow "
                    "redirects with a cluster's token",
                    "use the dashboard's own URL (`raykube address NAME`)",
                ) from exc
            detail = error_of(exc.read().decode(errors="replace"))
            hint = (
                "the cluster uses Ray token auth: check RAY_AUTH_TOKEN_PATH / ~/.ray/auth_token"
                if exc.code in (401, 403)
                else ""
            )
            raise BackendError(
                f"dashboard {self.url}{path} answered HTTP {exc.code}: {detail}", hint,
                retryable=is_transient_answer(exc.code, detail),
            ) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise BackendError(
                f"dashboard {self.url} is not reachable: {exc}",
                "is the cluster up? `raykube list` shows running clusters",
                retryable=True,
            ) from exc
        return json.loads(raw) if raw else None

    def nodes(self) -> list[dict[str, Any]]:
        """Every node the GCS knows (alive and dead), from the State API."""
        answer = self.request("GET", "/api/v0/nodes?limit=10000&detail=true")
        return list(answer["data"]["result"]["result"])


def jobs_client(url: str, token_path: str | None) -> Any:
    """Ray's ``JobSubmissionClient`` for the dashboard at ``url``, with the cluster's token.

    Raises:
        BackendError: the token was refused, or the Jobs API is unreachable (retryable).
    """
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    headers = {"Authorization": f"Bearer {read_token(token_path)}"} if token_path else None
    try:
        return JobSubmissionClient(url, headers=headers)
    except AuthenticationError as exc:
        raise BackendError(
            f"the Jobs API at {url} rejected this client's auth token",
            "use the cluster's token: `eval \"$(raykube env NAME)\"` sets RAY_AUTH_TOKEN_PATH",
        ) from exc
    except (ConnectionError, RuntimeError) as exc:
        text = str(exc)
        raise BackendError(f"cannot reach the Jobs API at {url}: {text.splitlines()[0]}",
                           "is the cluster running? `raykube list`", retryable=True) from exc
