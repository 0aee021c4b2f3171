"""Judging a canary (pure): the router's per-version counters over one step -> a verdict.

The router keeps, per version, cumulative counts (requests, 5xx answers, judged and right
feedback) and a latency histogram (the buckets of the exported metric). A rollout step reads
them at its start and its end; the difference is what happened during the step, for the new
version and the stable one alike, and :func:`judge_step` compares it with the policy and with
the stable version over the same window. Nothing here talks to Ray: the figures are data, the
decision is data, and the rollout driver (:mod:`raykube.serving.rollout`) acts on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from raykube.serving.metrics import DURATION_BUCKETS_S


@dataclass(frozen=True)
class VersionCounts:
    """One version's cumulative counters, as the router reports them."""

    requests: int = 0
    errors: int = 0
    judged: int = 0
    correct: int = 0
    buckets: tuple[int, ...] = (0,) * (len(DURATION_BUCKETS_S) + 1)
    """Requests per duration bucket (the last: over the largest bound)."""

    @classmethod
    def of(cls, data: dict[str, Any]) -> VersionCounts:
        return cls(int(data.get("requests", 0)), int(data.get("errors", 0)),
                   int(data.get("judged", 0)), int(data.get("correct", 0)),
                   tuple(int(b) for b in data.get("buckets") or cls().buckets))

    def since(self, earlier: VersionCounts) -> VersionCounts:
        """What happened between ``earlier`` and this reading (a restarted router starts
        again from zero: then all of this reading)."""
        if self.requests < earlier.requests:
            return self
        return VersionCounts(
            self.requests - earlier.requests, self.errors - earlier.errors,
            self.judged - earlier.judged, self.correct - earlier.correct,
            tuple(a - b for a, b in zip(self.buckets, earlier.buckets, strict=True)))


@dataclass(frozen=True)
class Figures:
    """What one version did during a step."""

    requests: int
    error_rate: float
    p99_ms: float | None
    accuracy: float | None
    judged: int

    @classmethod
    def of(cls, counts: VersionCounts) -> Figures:
        return cls(counts.requests,
                   counts.errors / counts.requests if counts.requests else 0.0,
                   quantile_ms(counts.buckets, 0.99),
                   counts.correct / counts.judged if counts.judged else None,
                   counts.judged)

    def shown(self) -> str:
        parts = [f"{self.requests} requests", f"errors {self.error_rate:.1%}"]
        if self.p99_ms is not None:
            parts.append(f"p99 {self.p99_ms:.0f} ms")
        if self.accuracy is not None:
            parts.append(f"accuracy {self.accuracy:.1%} of {self.judged}")
        return ", ".join(parts)


def quantile_ms(buckets: tuple[int, ...], q: float) -> float | None:
    """The ``q`` quantile of a bucketed duration, in ms, interpolated inside its bucket as
    Prometheus's ``histogram_quantile`` does; None without requests."""
    total = sum(buckets)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    lower = 0.0
    for count, upper in zip(buckets, [*DURATION_BUCKETS_S, math.inf], strict=True):
        if seen + count >= rank and count:
            if math.isinf(upper):
                return lower * 1000  # beyond the largest bound: its lower edge, as Prometheus
            return (lower + (upper - lower) * (rank - seen) / count) * 1000
        seen += count
        lower = upper if not math.isinf(upper) else lower
    return lower * 1000


@dataclass(frozen=True)
class Policy:
    """The thresholds a canary step is held to (see ``rollout:`` in the serve spec)."""

    min_requests: int = 50
    max_error_rate: float = 0.01
    max_latency_p99_ms: float | None = None
    min_accuracy: float | None = None
    max_accuracy_drop: float | None = None
    min_judged: int = 20
    """Feedback needed before accuracy is judged (fewer answers say too little)."""


@dataclass(frozen=True)
class Verdict:
    """A step's outcome: passed, or the reasons it failed."""

    passed: bool
    reasons: list[str] = field(default_factory=list)


def judge_step(policy: Policy, new: Figures, stable: Figures | None) -> Verdict:
    """Hold the new version's figures for one step to ``policy`` and to the stable version
    over the same window. Error rate and latency are judged on the new version's own
    requests; accuracy only once enough feedback came back for both."""
    reasons = []
    if new.error_rate > policy.max_error_rate:
        reasons.append(f"error rate {new.error_rate:.1%} over {policy.max_error_rate:.1%}")
    if (policy.max_latency_p99_ms is not None and new.p99_ms is not None
            and new.p99_ms > policy.max_latency_p99_ms):
        reasons.append(f"p99 {new.p99_ms:.0f} ms over {policy.max_latency_p99_ms:.0f} ms")
    if new.accuracy is not None and new.judged >= policy.min_judged:
        if policy.min_accuracy is not None and new.accuracy < policy.min_accuracy:
            reasons.append(f"accuracy {new.accuracy:.1%} under {policy.min_accuracy:.1%}")
        if (policy.max_accuracy_drop is not None and stable is not None
                and stable.accuracy is not None and stable.judged >= policy.min_judged
                and new.accuracy < stable.accuracy - policy.max_accuracy_drop):
            reasons.append(f"accuracy {new.accuracy:.1%} is more than "
                           f"{policy.max_accuracy_drop:.0%} under the stable version's "
                           f"{stable.accuracy:.1%}")
    return Verdict(not reasons, reasons)
