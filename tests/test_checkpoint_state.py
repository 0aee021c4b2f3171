"""Checkpoint state on disk: what a resumed run or a replica reads back, and never half of it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from raykube.frameworks.state import ARRAYS, STATE_JSON, StateError, read_state, write_state
from raykube.waiting import wait_for

pytestmark = pytest.mark.unit


def test_state_round_trips_with_its_types(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    state = {"epoch": 3, "shape": (2, 3), 7: "int key", "w": np.arange(6.0).reshape(2, 3),
             "t": torch.ones(2, dtype=torch.bfloat16), "lr": np.float32(0.5), "none": None}
    write_state(tmp_path, state)
    back = read_state(tmp_path)
    assert back["epoch"] == 3 and back["shape"] == (2, 3) and back[7] == "int key"
    assert np.array_equal(back["w"], state["w"]) and back["lr"] == np.float32(0.5)
    assert back["t"].dtype == torch.bfloat16 and back["t"].sum().item() == 2


def test_altered_or_cut_short_arrays_are_refused(tmp_path: Path) -> None:
    write_state(tmp_path, {"w": np.ones(1000)})
    data = (tmp_path / ARRAYS).read_bytes()
    (tmp_path / ARRAYS).write_bytes(data[: len(data) // 2])
    with pytest.raises(StateError, match="half-written or altered"):
        read_state(tmp_path)
    (tmp_path / STATE_JSON).unlink()
    with pytest.raises(StateError, match="no readable raykube state"):
        read_state(tmp_path)


WRITER = """
import sys, numpy as np
from raykube.frameworks.state import write_state
folder = sys.argv[1]
print("writing", flush=True)
for i in range(10**6):
    write_state(folder, {"version": i, "w": np.full(300_000, i, dtype=np.int64)})
"""


def test_a_writer_killed_at_any_moment_leaves_a_whole_state_or_a_refused_one(
        tmp_path: Path) -> None:
    """SIGKILL a process rewriting a 2.4 MB state in a loop, at 12 different moments: each read
    afterwards is either one whole version (its arrays are its own) or refused; never a mix."""
    outcomes = {"whole": 0, "refused": 0}
    for attempt in range(12):
        folder = tmp_path / f"f{attempt}"
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(folder)],
                                  stdout=subprocess.PIPE, text=True)
        assert writer.stdout is not None and writer.stdout.readline() == "writing\n"
        wait_for(lambda f=folder: (f / STATE_JSON).exists(), timeout=30,
                 what="the writer's first state", interval=0.01)
        time.sleep(0.005 * attempt)  # fault injection, not a wait: a new moment each time
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
        try:
            state = read_state(folder)
        except StateError:
            outcomes["refused"] += 1
            continue
        assert (state["w"] == state["version"]).all(), "arrays of one version, JSON of another"
        outcomes["whole"] += 1
    assert outcomes["whole"] > 0, outcomes
