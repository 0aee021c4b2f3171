"""Wait on a condition with a deadline, never on a fixed sleep.

Every wait in raykube goes through :func:`wait_for`: it polls a probe until it returns a value,
fails fast when a ``fail_on`` check says the goal cannot be reached, keeps polling through an
error the probe raises that is marked retryable (a dropped connection, an API server
restarting, a 409), with jittered backoff, and on timeout raises with the last thing it saw
(that error included), so the user learns what was missing rather than only that time ran out.
"""

from __future__ import annotations

import random
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
        probe: returns the awaited value, or None/False while not there yet; a retryable
            :class:`RaykubeError` it raises counts as "not yet" (any other error ends the wait).
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
    transient: RaykubeError | None = None
    while True:
        try:
            value = probe()
        except RaykubeError as error:
            if not error.retryable:
                raise
            transient, value = error, None  # e.g. the API server restarting: try again
        else:
            transient = None
        if value is not None and value is not False:
            return value
        if fail_on is not None:
            error = fail_on()
            if error is not None:
                raise error
        if time.monotonic() >= deadline:
            state = f": {describe()}" if describe else ""
            if transient is not None:
                state += f" (last error: {transient.message})"
            raise ReadyTimeout(f"timed out after {timeout:.0f} s waiting for {what}{state}",
                               hint) from transient
        pause = delay * random.uniform(0.8, 1.2) if transient is not None else delay
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 1.5, 2.0)
