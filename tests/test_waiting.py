"""wait_for waits through errors marked retryable and stops at once on the others."""

from __future__ import annotations

import pytest

from raykube.errors import BackendError, ReadyTimeout, SpecError
from raykube.waiting import wait_for

pytestmark = pytest.mark.unit


def test_a_retryable_error_is_waited_through() -> None:
    calls = iter([BackendError("API server restarting", retryable=True),
                  BackendError("connection refused", retryable=True), None, "ready"])

    def probe() -> str | None:
        item = next(calls)
        if isinstance(item, BaseException):
            raise item
        return item

    assert wait_for(probe, timeout=10, what="x", interval=0.01) == "ready"


def test_a_permanent_error_ends_the_wait_at_once() -> None:
    def probe() -> None:
        raise SpecError("a field is wrong")

    with pytest.raises(SpecError):
        wait_for(probe, timeout=30, what="x", interval=0.01)


def test_the_timeout_names_the_last_transient_error() -> None:
    def probe() -> None:
        raise BackendError("dashboard unreachable", retryable=True)

    with pytest.raises(ReadyTimeout, match=r"last error: dashboard unreachable") as caught:
        wait_for(probe, timeout=0.2, what="the head", interval=0.01)
    assert isinstance(caught.value.__cause__, BackendError)
