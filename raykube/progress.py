"""Progress lines for long operations (cluster coming up, workers joining, training epochs).

Progress goes to stderr so stdout stays for results a script may parse. A line is printed only
when it changes, so polling loops can report on every poll without flooding the terminal.
``RAYKUBE_QUIET=1`` silences it.
"""

from __future__ import annotations

import os
import sys
import time


class Progress:
    """Prints ``[raykube 3.2s] message`` lines to stderr, each distinct message once."""

    def __init__(self, prefix: str = "raykube") -> None:
        self._prefix = prefix
        self._start = time.monotonic()
        self._last: str | None = None
        self._quiet = os.environ.get("RAYKUBE_QUIET", "") not in ("", "0")

    def say(self, message: str) -> None:
        """Print ``message`` unless it repeats the previous one."""
        if message == self._last or self._quiet:
            return
        self._last = message
        elapsed = time.monotonic() - self._start
        print(f"[{self._prefix} {elapsed:5.1f}s] {message}", file=sys.stderr, flush=True)
