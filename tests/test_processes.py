"""Finding and stopping a local cluster's processes by their environment marker (psutil), on
real processes: those that ignore SIGTERM are killed, late children are caught, other
processes are left alone."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from raykube.backends.local.processes import (
    MARKER_ENV,
    NODE_ID_VARIABLE,
    find_head_processes,
    find_node_processes,
    find_processes,
    is_alive,
    processes_mentioning,
    stop_processes,
    worker_node_ids,
)
from raykube.waiting import wait_for

pytestmark = pytest.mark.unit

STUBBORN = ("import os, signal, subprocess, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)\n")


def test_marked_processes_and_their_children_are_stopped_others_kept() -> None:
    marker = f"test-{os.getpid()}"
    marked = subprocess.Popen([sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE,
                              text=True, env={**os.environ, MARKER_ENV: marker})
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert marked.stdout is not None and marked.stdout.readline() == "ready\n"
        found = wait_for(lambda: len(find_processes(marker)) == 2 and find_processes(marker),
                         timeout=10, what="the marked process and its child")
        assert marked.pid in found and other.pid not in found
        assert processes_mentioning("signal.SIG_IGN") == [marked.pid]

        assert stop_processes(marker, grace=0.5, timeout=10) == 2
        marked.wait(timeout=5)  # reaped: it ignored SIGTERM, so SIGKILL ended it
        assert marked.returncode == -9
        assert find_processes(marker) == [] and not any(is_alive(p) for p in found)
        assert is_alive(other.pid), "a process without the marker is left alone"
        assert stop_processes(marker) == 0
    finally:
        for process in (marked, other):
            process.kill()
            process.wait()


AGENT = ("import os, subprocess, sys, time\n"
         "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], env={})\n"
         "print('ready', flush=True)\n"
         "time.sleep(60)\n")


def test_a_child_whose_environment_reads_empty_belongs_to_its_parents_node() -> None:
    """Ray's agents retitle themselves over their environment; before this was handled,
    every worker node's two agents outlived `raykube down`."""
    marker = f"test-agent-{os.getpid()}"
    node = "f" * 51 + "00007"
    raylet = subprocess.Popen([sys.executable, "-c", AGENT], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, MARKER_ENV: marker, NODE_ID_VARIABLE: node})
    try:
        assert raylet.stdout is not None and raylet.stdout.readline() == "ready\n"
        found = wait_for(lambda: len(find_processes(marker)) == 2 and find_processes(marker),
                         timeout=10, what="the node's process and its environment-less child")
        assert sorted(find_node_processes(marker, node)) == sorted(found)
        assert find_head_processes(marker) == []
        assert worker_node_ids(marker) == {node}
        assert stop_processes(marker, node=node, timeout=10) == 2
        assert find_processes(marker) == []
    finally:
        raylet.kill()
        raylet.wait()
