"""Wait on a condition with a deadline, never on a fixed sleep.

Every wait in raykube goes through :func:`wait_for`: it polls a probe until it returns a value,
fails fast when a ``fail_on`` check says the goal cannot be reached, and on timeout raises with
the last thing it saw, so the user learns what was missing rather than only that time ran out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from raykube.errors import RaykubeError, ReadyTimeout

T = TypeVar("T")


def wait_for(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.25,
    fail_on: Callable[[], RaykubeError | None] | None = None,
    describe: Callable[[], str] | None = None,
    hint: str = "",
) -> T:
    """Poll ``probe`` until it returns something other than None (or False).

    Args:
        probe: returns the awaited value, or None/False while not there yet.
        timeout: seconds before giving up.
        what: what is awaited, for the timeout message ("cluster 'demo' ready").
        interval: seconds between polls; it grows to at most 2 s for long waits.
        fail_on: returns an error when waiting is pointless (a process died); it is raised.
        describe: the current state in words, put into the timeout message.
        hint: the hint of the timeout error.

    Returns:
        The probe's first non-empty value.

    Raises:
        ReadyTimeout: the deadline passed.
    """
    deadline = time.monotonic() + timeout
    delay = interval
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if fail_on is not None:
            error = fail_on()
            if error is not None:
                raise error
        if time.monotonic() >= deadline:
            state = f": {describe()}" if describe else ""
            raise ReadyTimeout(f"timed out after {timeout:.0f} s waiting for {what}{state}", hint)
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 1.5, 2.0)
