"""Command-line handling shared by the example jobs."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

ACCURACY_BAR = 0.90
"""The held-out accuracy every example must reach with 2 workers."""


def parse_args(description: str, epochs: int) -> argparse.Namespace:
    """The options every example job takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--cluster", default=None,
        help="cluster name or host:port; default: the cluster of the Ray job this runs in",
    )
    parser.add_argument("--workers", type=int, default=2, help="training workers (default 2)")
    parser.add_argument("--epochs", type=int, default=epochs, help=f"epochs (default {epochs})")
    parser.add_argument("--gpus", type=float, default=0, help="GPUs per worker (default 0)")
    parser.add_argument("--storage", default=None, help="checkpoint folder (default: spec's)")
    parser.add_argument("--name", default=None, help="run name: the same name resumes a run")
    return parser.parse_args()


def finish(summary: dict[str, Any]) -> None:
    """Print the run's summary as one JSON line and exit non-zero below the accuracy bar."""
    print(json.dumps(summary, sort_keys=True))
    if summary["test_accuracy"] < ACCURACY_BAR:
        print(f"test accuracy {summary['test_accuracy']:.3f} is below {ACCURACY_BAR}",
              file=sys.stderr)
        sys.exit(1)
