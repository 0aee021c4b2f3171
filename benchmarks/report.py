"""Results -> results.json, a Markdown table (printed too) and PNG plots."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A Markdown table of ``rows`` with ``columns``."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def markdown(results: dict[str, Any]) -> str:
    """Every section of ``results`` as Markdown."""
    machine = results["machine"]
    parts = [f"# raykube benchmarks ({results['mode']})",
             f"{machine['date']}: {machine['cpus']} CPUs, {machine.get('memory_gib')} GiB, "
             f"GPU {machine.get('gpu')}, Python {machine['python']}, Ray {machine['ray']}, "
             f"torch {machine.get('torch')}; medians of {results['repeats']} runs."]
    if results.get("training"):
        ceiling = next((r for r in results["training"] if r["scaling"] == "ceiling"), None)
        if ceiling:
            parts.append(f"Hardware ceiling of two workers here: {ceiling['efficiency']:.2f} "
                         "(two unsynchronised single-thread processes vs one).")
        parts += ["## Training throughput (samples/s, steady state)",
                  table([r for r in results["training"] if r["scaling"] != "ceiling"], ["framework", "launcher", "scaling", "workers",
                                              "batch_per_worker", "samples_per_s", "startup_s"]),
                  "## Scaling efficiency and raykube/native",
                  table(results["training_summary"], ["framework", "scaling",
                                                      "efficiency_raykube", "efficiency_native",
                                                      "raykube_over_native_2w"])]
    if results.get("serving"):
        parts += ["## Serving (one-instance requests)",
                  table(results["serving"], ["server", "client", "concurrency", "p50_ms",
                                             "p95_ms", "p99_ms", "req_per_s", "failures"]),
                  "## Serving decomposed (ratios: raykube over plain, raykube over the bare "
                  "deployment, bare over plain, raykube's Serve settings over Ray's, metrics)",
                  table(results["serving_summary"], [
                      "client", "concurrency", "p50_ratio", "throughput_ratio",
                      "router_p50_ratio", "router_throughput_ratio", "serve_p50_ratio",
                      "serve_throughput_ratio", "fast_path_p50_ratio",
                      "fast_path_throughput_ratio", "metrics_p50_ratio",
                      "metrics_throughput_ratio"])]
        if any("haproxy_p50_ratio" in r for r in results["serving_summary"]):
            parts += ["## Serving behind Serve's HAProxy ingress (ratios: raykube over plain, "
                      "raykube over the bare deployment, bare over plain)",
                      table(results["serving_summary"], [
                          "client", "concurrency", "haproxy_p50_ratio",
                          "haproxy_throughput_ratio", "haproxy_router_p50_ratio",
                          "haproxy_router_throughput_ratio", "haproxy_serve_p50_ratio"])]
    if results.get("faults"):
        parts += ["## Serving through faults and changes (4 clients, requests back to back)",
                  table(results["faults"], ["scenario", "injected", "requests", "failed",
                                            "p50_before_ms", "p50_during_ms", "p99_before_ms",
                                            "p99_during_ms", "p99_ratio", "recover_s"])]
    if results.get("data"):
        data = results["data"]
        parts += [f"## Ray Data ({data['rows']:,} digits-derived rows, rows/s and ratios)",
                  table([data], [k for k in data if k != "rows"])]
    for key, title in (("cluster_ops", "Cluster operations"),
                       ("kubernetes", "Kubernetes (KubeRay, pods run by the pod runner)")):
        if results.get(key):
            parts += [f"## {title} (seconds, ratios)", table([results[key]], list(results[key]))]
    return "\n\n".join(parts) + "\n"


def plots(results: dict[str, Any], folder: Path) -> list[str]:
    """training.png (throughput by workers) and serving.png (latency by concurrency)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    if results.get("training"):
        fig, ax = plt.subplots(figsize=(7, 4))
        trained = [r for r in results["training"] if r["scaling"] != "ceiling"]
        for row_key in sorted({(r["framework"], r["launcher"]) for r in trained}):
            rows = [r for r in trained if (r["framework"], r["launcher"]) == row_key
                    and r["scaling"] in ("baseline", "weak")]
            ax.plot([r["workers"] for r in rows], [r["samples_per_s"] for r in rows], marker="o",
                    label=f"{row_key[0]} ({row_key[1]})")
        ax.set_xlabel("workers (weak scaling)")
        ax.set_ylabel("samples/s")
        ax.set_xticks([1, 2])
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(folder / "training.png", dpi=100)
        written.append("training.png")
    if results.get("serving"):
        fig, ax = plt.subplots(figsize=(7, 4))
        for server in ("raykube", "serve-bare-fast", "plain"):
            rows = [r for r in results["serving"]
                    if r["server"] == server and r["client"] == "new-connection"]
            ax.plot([r["concurrency"] for r in rows], [r["p50_ms"] for r in rows], marker="o",
                    label=f"{server} p50")
            ax.plot([r["concurrency"] for r in rows], [r["p99_ms"] for r in rows], marker="x",
                    linestyle="--", label=f"{server} p99")
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel("latency (ms)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(folder / "serving.png", dpi=100)
        written.append("serving.png")
    return written


def write(results: dict[str, Any], folder: Path) -> str:
    """Write every output into ``folder``; return the Markdown."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results, indent=2, default=str))
    text = markdown(results)
    (folder / "results.md").write_text(text)
    results["plots"] = plots(results, folder)
    return text


def progress_printer() -> Callable[[str], None]:
    """A progress line writer to stderr, each line stamped with seconds since this call."""
    started = time.monotonic()

    def progress(message: str) -> None:
        print(f"[bench {time.monotonic() - started:6.1f}s] {message}", file=sys.stderr,
              flush=True)

    return progress


def write_rows(title: str, rows: list[dict[str, Any]], columns: list[str], folder: Path
               ) -> str:
    """One question's results (the stand-alone benchmarks): ``rows`` with the machine into
    ``folder``/results.json, and ``title``, the machine and a table into results.md; returns
    the Markdown."""
    from benchmarks import machine

    described = machine.describe()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(
        json.dumps({"machine": described, "rows": rows}, indent=2, default=str) + "\n")
    text = (f"# {title}\n\n{described['date']}: {described['cpus']} CPUs, Python "
            f"{described['python']}, Ray {described['ray']}\n\n{table(rows, columns)}\n")
    (folder / "results.md").write_text(text)
    return text
