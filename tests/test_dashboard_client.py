"""How the dashboard client reports a dashboard's HTTP errors: the exception line of the
traceback Ray's handlers answer with, and whether the same request may be sent again.

The server here is a stand-in for a dashboard (a loopback HTTP server answering what Ray's
dashboard answered in a CI run): a real dashboard answers a 500 only when Serve fails to start
in time, which cannot be provoked on demand.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from raykube.dashboard import DashboardClient, error_of, is_transient_answer
from raykube.errors import BackendError
from raykube.waiting import wait_for

pytestmark = pytest.mark.unit

TRACEBACK = """Traceback (most recent call last):
  File "/venv/lib/python3.11/site-packages/ray/dashboard/optional_utils.py", line 241, in decorator
    return await f(self, *args, **kwargs)
  File "/venv/lib/python3.11/site-packages/ray/serve/_private/api.py", line 222, in serve_start_async
    raise TimeoutError(
{last}
"""


class _Scripted(http.server.BaseHTTPRequestHandler):
    """Answers each PUT with the next (status, body) of ``answers``; counts the PUTs."""

    answers: list[tuple[int, str]] = []
    puts = 0

    def do_PUT(self) -> None:  # noqa: N802 - the stdlib's name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).puts += 1
        status, body = type(self).answers.pop(0)
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def dashboard() -> Iterator[tuple[DashboardClient, type[_Scripted]]]:
    handler = type("Handler", (_Scripted,), {"answers": [], "puts": 0})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield DashboardClient(f"http://127.0.0.1:{httpd.server_address[1]}", None), handler
    httpd.shutdown()


def test_a_500_names_the_exception_and_a_start_timeout_may_be_retried(dashboard: Any) -> None:
    client, handler = dashboard
    last = "TimeoutError: HTTP proxies not available after 60s."
    handler.answers = [(500, TRACEBACK.format(last=last)), (200, "")]
    with pytest.raises(BackendError) as caught:
        client.request("PUT", "/api/serve/applications/", {"applications": []})
    assert caught.value.message.endswith(f"answered HTTP 500: {last}"), caught.value.message
    assert "File " not in caught.value.message, "the dashboard's frames are left out"
    assert caught.value.retryable
    # What _ServeApi.put does with it: the same PUT again, which now succeeds.
    assert wait_for(lambda: client.request("PUT", "/api/serve/applications/", {}) or True,
                    timeout=10, what="the PUT", interval=0.01)
    assert handler.puts == 2


def test_a_500_from_a_bug_and_a_400_are_not_retried(dashboard: Any) -> None:
    client, handler = dashboard
    handler.answers = [(500, TRACEBACK.format(last="KeyError: 'applications'")),
                       (400, "ValidationError: 1 validation error for ServeDeploySchema")]
    for expected in ("KeyError: 'applications'", "ValidationError: 1 validation error"):
        with pytest.raises(BackendError, match=expected) as caught:
            wait_for(lambda: client.request("PUT", "/api/serve/applications/", {}),
                     timeout=10, what="the PUT", interval=0.01)
        assert not caught.value.retryable
    assert handler.puts == 2, "each error ended its wait at once"


@pytest.mark.parametrize(("status", "error", "transient"), [
    (503, "Service Unavailable", True),
    (502, "", True),
    (500, "ray.exceptions.GetTimeoutError: Get timed out", True),
    (500, "ray.exceptions.ActorUnavailableError: The actor is temporarily unavailable", True),
    (500, "ValueError: bad config", False),
    (404, "TimeoutError: not a 500", False),
])
def test_which_answers_are_transient(status: int, error: str, transient: bool) -> None:
    assert is_transient_answer(status, error) is transient


def test_a_plain_error_answer_is_kept_short() -> None:
    assert error_of("x" * 2000) == "x" * 500
    assert error_of(TRACEBACK.format(last="RuntimeError: " + "y" * 900)) == (
        "RuntimeError: " + "y" * 486)
