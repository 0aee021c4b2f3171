"""Progress of long operations (cluster coming up, workers joining, training epochs), through
the ``raykube`` logger.

A library must let its caller silence or route what it says, so raykube says everything through
:mod:`logging` (logger ``raykube``), as Ray does through ``ray``: by default one handler writes
``[raykube 3.2s] message`` lines to stderr (stdout stays for results a script parses), and the
logger does not propagate to the root logger. To silence it,
``logging.getLogger("raykube").setLevel(logging.WARNING)`` (or ``RAYKUBE_QUIET=1``); to route it,
replace its handlers or set ``propagate = True``; at ``DEBUG`` (``raykube -v``) raykube also lets
Ray Train's own INFO lines through.

A step with a count (``workers joined: cpu 1/2``, ``epoch 3/15``) also gets a bar and redraws its
line on a terminal; anywhere else it is a plain line (CI, files, pipes). A message equal to the
previous one of the same :class:`Progress` is said once, so polling loops can report on every
poll without flooding.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import TextIO

LOGGER_NAME = "raykube"
logger = logging.getLogger(LOGGER_NAME)

BAR_WIDTH = 24


def _quiet() -> bool:
    return os.environ.get("RAYKUBE_QUIET", "") not in ("", "0")


def _on_terminal(stream: TextIO) -> bool:
    """Whether ``stream`` is a person's terminal (not CI, a file or a pipe)."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and not os.environ.get("CI") \
        and os.environ.get("TERM", "") != "dumb"


def bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    """``█████░░░░░``: ``done`` out of ``total`` as a text bar (the message says the count)."""
    filled = round(width * min(done, total) / total) if total > 0 else width
    return "█" * filled + "░" * (width - filled)


class ProgressHandler(logging.Handler):
    """Writes raykube's records to stderr (as it is when each record comes, so a redirected or
    captured stderr gets them): a record with a ``step`` (done, total) redraws one line on a
    terminal, and is a plain line elsewhere."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()
        self._stream = stream
        self._line_open = False
        self.setFormatter(logging.Formatter("[raykube %(elapsed)5.1fs] %(message)s"))

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stderr

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING and _quiet():
            return False
        if not hasattr(record, "elapsed"):
            record.elapsed = record.relativeCreated / 1000
        return super().filter(record)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            step = getattr(record, "step", None)
            stream = self.stream
            if step and _on_terminal(stream):
                done, total = step
                stream.write(f"\r\x1b[2K{line}  {bar(done, total)}")
                self._line_open = done < total
                if not self._line_open:
                    stream.write("\n")
            else:
                if self._line_open:
                    stream.write("\n")
                    self._line_open = False
                stream.write(line + "\n")
            stream.flush()
        except Exception:  # logging's contract: a handler never raises into the caller
            self.handleError(record)


def _install_default_handler() -> None:
    """The default handler, once per process, unless the application configured the logger."""
    if not logger.handlers:
        logger.addHandler(ProgressHandler())
        logger.setLevel(logging.INFO)
        logger.propagate = False


_install_default_handler()


def verbose() -> bool:
    """Whether the caller asked for detail (``raykube -v``, or the logger at DEBUG)."""
    return logger.isEnabledFor(logging.DEBUG)


class Progress:
    """Says the steps of one operation, with the seconds since it began; each distinct message
    once."""

    def __init__(self) -> None:
        self._start = time.monotonic()
        self._last: str | None = None

    def say(self, message: str, step: tuple[int, int] | None = None) -> None:
        """Log ``message`` unless it repeats the previous one; ``step`` (done, total) makes it a
        bar on a terminal."""
        key = message + (f" {step}" if step else "")
        if key == self._last:
            return
        self._last = key
        extra: dict[str, object] = {"elapsed": time.monotonic() - self._start}
        if step:
            extra["step"] = step
        logger.info(message, extra=extra)
