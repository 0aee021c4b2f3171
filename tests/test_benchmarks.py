"""The benchmark harness in quick mode: it runs end to end and writes well-formed results.

Numbers are never asserted here (speed goals live in benchmarks/, reported as ratios); what is
checked is that every section produced finite, positive figures, the table and the plots.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.local


def positive(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_quick_benchmarks_write_json_table_and_plots(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["mode"] == "quick" and results["machine"]["cpus"] >= 1
    ceiling, *training = results["training"]
    assert ceiling["scaling"] == "ceiling" and positive(ceiling["efficiency"])
    assert {(r["launcher"], r["workers"]) for r in training} == {
        ("raykube", 1), ("raykube", 2), ("native", 1), ("native", 2)}
    assert all(positive(r["samples_per_s"]) and positive(r["startup_s"]) for r in training)
    summary = results["training_summary"][0]
    assert positive(summary["efficiency_raykube"]) and positive(summary["raykube_over_native_2w"])
    serving = results["serving"]
    # The HAProxy ingress figures need Debian's haproxy (CI installs it); without, they are
    # left out, and said so.
    haproxy = shutil.which("haproxy") is not None
    assert {r["server"] for r in serving} == {
        "plain", "serve-bare", "serve-bare-fast", "raykube", "raykube-no-metrics",
        "raykube-ray-defaults"} | ({"serve-bare-haproxy", "raykube-haproxy"} if haproxy else set())
    assert haproxy or "no haproxy installed" in done.stderr
    assert {r["client"] for r in serving} == {"new-connection", "keep-alive"}
    assert all(r["failures"] == 0 and positive(r["p50_ms"]) and r["p99_ms"] >= r["p50_ms"]
               for r in serving)
    assert all(positive(r[key]) for r in results["serving_summary"] for key in (
        "router_p50_ratio", "router_throughput_ratio", "serve_p50_ratio",
        "fast_path_p50_ratio", "metrics_p50_ratio", "metrics_throughput_ratio",
        *(("haproxy_p50_ratio", "haproxy_router_p50_ratio") if haproxy else ())))
    faults = {r["scenario"]: r for r in results["faults"]}
    assert set(faults) == {"replica killed", "rollout"}
    assert all(r["requests"] > 0 and positive(r["recover_s"]) and positive(r["p99_ratio"])
               for r in faults.values())
    assert positive(results["cluster_ops"]["submit_ratio"])
    data = results["data"]
    assert all(positive(data[key]) for key in (
        "plain_batch_rows_per_s", "batch_1a_rows_per_s", "batch_2a_rows_per_s",
        "in_memory_train_rows_per_s", "streamed_1w_train_rows_per_s",
        "streamed_2w_train_rows_per_s", "batch_2a_over_plain", "streamed_2w_over_in_memory"))
    table = (tmp_path / "results.md").read_text()
    assert "| torch | raykube | weak | 2 |" in table
    assert "## Ray Data" in table
    assert table in done.stdout
    for plot in ("training.png", "serving.png"):
        assert (tmp_path / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
