"""Progress through the ``raykube`` logger: a bar on a terminal, plain lines elsewhere, and a
library user can silence or route it."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from raykube.progress import LOGGER_NAME, Progress, ProgressHandler, bar
from raykube.training.feed import progress_step
from raykube.worker import metrics_text

pytestmark = pytest.mark.unit


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture()
def raykube_logger(monkeypatch: pytest.MonkeyPatch) -> Iterator[logging.Logger]:
    """The raykube logger with its handlers as the test sets them, put back afterwards."""
    monkeypatch.delenv("RAYKUBE_QUIET", raising=False)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    logger = logging.getLogger(LOGGER_NAME)
    handlers, level = logger.handlers[:], logger.level
    yield logger
    logger.handlers[:] = handlers
    logger.setLevel(level)


def test_steps_redraw_one_line_with_a_bar_on_a_terminal(raykube_logger: logging.Logger) -> None:
    terminal = Terminal()
    raykube_logger.handlers[:] = [ProgressHandler(terminal)]
    progress = Progress()
    for done in range(4):
        progress.say(f"workers joined: cpu {done}/3", step=(done, 3))
    progress.say("cluster is ready")
    text = terminal.getvalue()
    assert text.count("\n") == 2, "three redraws of one line, then the bar's end, then a line"
    assert text.count("\r\x1b[2K") == 4
    assert bar(3, 3) in text and bar(1, 3) in text
    assert text.rstrip("\n").endswith("cluster is ready")


def test_steps_are_plain_lines_in_ci(raykube_logger: logging.Logger,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    terminal = Terminal()
    raykube_logger.handlers[:] = [ProgressHandler(terminal)]
    progress = Progress()
    for done in (0, 1, 1, 2):
        progress.say(f"workers joined: cpu {done}/2", step=(done, 2))
    lines = terminal.getvalue().splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == [
        "workers joined: cpu 0/2", "workers joined: cpu 1/2", "workers joined: cpu 2/2"]
    assert "\r" not in terminal.getvalue() and "█" not in terminal.getvalue()


def test_a_library_user_silences_or_routes_it(raykube_logger: logging.Logger,
                                              caplog: pytest.LogCaptureFixture) -> None:
    stream = io.StringIO()
    raykube_logger.handlers[:] = [ProgressHandler(stream)]
    raykube_logger.setLevel(logging.WARNING)
    Progress().say("not shown")
    assert stream.getvalue() == ""

    raykube_logger.setLevel(logging.INFO)
    raykube_logger.handlers[:] = [caplog.handler]
    Progress().say("routed")
    assert [r.getMessage() for r in caplog.records] == ["routed"]


def test_raykube_quiet_keeps_warnings(raykube_logger: logging.Logger,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAYKUBE_QUIET", "1")
    stream = io.StringIO()
    raykube_logger.handlers[:] = [ProgressHandler(stream)]
    Progress().say("quiet")
    logging.getLogger(f"{LOGGER_NAME}.train").warning("a checkpoint cannot be read")
    assert stream.getvalue().endswith("a checkpoint cannot be read\n")
    assert "quiet" not in stream.getvalue()


def test_a_report_reads_well_and_counts_epochs() -> None:
    assert metrics_text({"epoch": 2, "loss": 0.0231123, "ok": True}) == \
        "epoch=2, loss=0.02311, ok=True"
    assert progress_step({"epoch": 2}, 15) == (3, 15)
    assert progress_step({"epoch": 2}, None) is None
    assert progress_step({"step": 2}, 15) is None
    assert progress_step({"epoch": True}, 15) is None
