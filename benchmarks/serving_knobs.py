"""Serve's per-deployment settings, each measured on a raykube service: replicas, queue depth,
batching.

    python -m benchmarks.serving_knobs --out bench-results/serving-knobs   # ~4 min

One cluster of the benchmarks' shape (a head without CPUs, two 1-CPU workers) runs the digits
service several times over, each a variant of the serving benchmark's service (1 replica of
0.25 CPU here, ``maxOngoingRequests: 32``, batches of up to 8 with no wait) that changes one setting:

- ``replicas-2``: two replicas (Serve spreads them over the two workers, one per core);
- ``max-ongoing-8`` / ``max-ongoing-128``: how many requests a replica holds at once;
- ``no-batching``: ``maxBatchSize: 1``;
- ``batch-wait-10ms``: batches wait up to 10 ms to fill (the spec's default until this
  measured it; now 0).

One-instance requests over a new connection per request at concurrency 1, 4 and 16, the
variants taking turns, medians of 3 rounds; each variant's p50 and throughput as a ratio of the
baseline's in the same round set. Not part of ``python -m benchmarks``: it answers which of
these settings raykube should change (none, where no ratio moves beyond the noise).
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks.cluster_ops import fixed_spec
from benchmarks.serving import digits_service, load_test, make_checkpoint, medians_in_turns

VARIANTS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "replicas-2": {"replicas": 2},
    "max-ongoing-8": {"maxOngoingRequests": 8},
    "max-ongoing-128": {"maxOngoingRequests": 128},
    "no-batching": {"batching": {"maxBatchSize": 1, "batchWaitTimeoutS": 0}},
    "batch-wait-10ms": {"batching": {"maxBatchSize": 8, "batchWaitTimeoutS": 0.01}},
}
"""Each variant's spec fields over :func:`benchmarks.serving.digits_service`'s defaults."""

REPLICA_CPUS = 0.25
"""What each replica reserves, so that all seven fit the two 1-CPU workers (the reservation
only places them: they all share the same two cores)."""


def bench_knobs(rounds: int, requests: int, progress: Callable[[str], None]
                ) -> list[dict[str, Any]]:
    """Every variant at every level: medians of ``rounds`` and ratios to the baseline."""
    import raykube
    from raykube.serving.service import deploy

    checkpoint = make_checkpoint(Path(tempfile.mkdtemp(prefix="rk-knobs-ckpt-")))
    cluster = raykube.up(fixed_spec("rk-knobs"), timeout=180)
    rows: list[dict[str, Any]] = []
    try:
        urls = {}
        for name, fields in VARIANTS.items():
            progress(f"knobs: deploying {name}")
            service = deploy(digits_service(f"knob-{name}", checkpoint,
                                            resources={"cpus": REPLICA_CPUS}, **fields), cluster)
            urls[name] = service.url
        for url in urls.values():
            load_test(url, 2, 10)  # warm-up
        for level in (1, 4, 16):
            progress(f"knobs: concurrency {level}, {rounds} round(s)")
            medians = medians_in_turns(urls, level, rounds, requests)
            base = medians["baseline"]
            rows += [{"variant": name, "concurrency": level, **figures,
                      "p50_ratio": figures["p50_ms"] / base["p50_ms"],
                      "throughput_ratio": figures["req_per_s"] / base["req_per_s"]}
                     for name, figures in medians.items()]
    finally:
        cluster.down()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench-results/serving-knobs", help="results folder")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per figure")
    parser.add_argument("--requests", type=int, default=300, help="requests per figure")
    args = parser.parse_args()
    rows = bench_knobs(args.rounds, args.requests, report.progress_printer())
    print(report.write_rows("Serve's per-deployment settings on a raykube service", rows,
                            ["variant", "concurrency", "p50_ms", "p99_ms", "req_per_s",
                             "failures", "p50_ratio", "throughput_ratio"], Path(args.out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
