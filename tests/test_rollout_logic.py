"""The pure parts of judged rollouts: a step's figures from the router's counts, the verdict
against the policy and the stable version, which deploy is a canary, and the policy's rules."""

from __future__ import annotations

from typing import Any

import pytest

from raykube.errors import ServeError, SpecError
from raykube.serving.judge import Figures, Policy, VersionCounts, judge_step, quantile_ms
from raykube.serving.metrics import DURATION_BUCKETS_S, VersionTally
from raykube.serving.rollout import canary_of
from raykube.specs.serve import parse_serve_spec

pytestmark = pytest.mark.unit


def counts(requests: int, errors: int = 0, seconds: float = 0.02, judged: int = 0,
           correct: int = 0) -> VersionCounts:
    tally = VersionTally()
    for i in range(requests):
        tally.answered(500 if i < errors else 200, seconds)
    for i in range(judged):
        tally.judged(i < correct)
    return VersionCounts.of(tally.as_dict())


def test_the_window_is_the_difference_and_a_restarted_router_counts_from_zero() -> None:
    before, after = counts(10, errors=1), counts(30, errors=4)
    window = after.since(before)
    assert (window.requests, window.errors, sum(window.buckets)) == (20, 3, 20)
    assert counts(5).since(before) == counts(5), "fewer than before: the router restarted"


def test_p99_is_interpolated_in_its_bucket_as_prometheus_does() -> None:
    assert quantile_ms(counts(100, seconds=0.02).buckets, 0.99) == pytest.approx(24.85)
    assert quantile_ms(VersionCounts().buckets, 0.99) is None
    slow = counts(100, seconds=100.0)  # beyond the largest bound
    assert quantile_ms(slow.buckets, 0.99) == DURATION_BUCKETS_S[-1] * 1000


POLICY = Policy(min_requests=10, max_error_rate=0.01, max_latency_p99_ms=100,
                min_accuracy=0.8, max_accuracy_drop=0.05, min_judged=10)


@pytest.mark.parametrize(("new", "stable", "words"), [
    (counts(100), counts(100), []),
    (counts(100, errors=20), counts(100), ["error rate 20.0% over 1.0%"]),
    (counts(100, seconds=0.3), counts(100), ["p99 "]),
    (counts(100, judged=50, correct=35), counts(100, judged=50, correct=48),
     ["under 80.0%", "under the stable version's 96.0%"]),
    (counts(100, judged=50, correct=44), counts(100, judged=50, correct=48),
     ["more than 5% under the stable version's 96.0%"]),
    (counts(100, judged=5, correct=0), counts(100, judged=50, correct=50), []),
])
def test_a_step_is_judged_against_the_policy_and_the_stable_version(
        new: VersionCounts, stable: VersionCounts, words: list[str]) -> None:
    verdict = judge_step(POLICY, Figures.of(new), Figures.of(stable))
    assert verdict.passed == (not words)
    for word in words:
        assert any(word in reason for reason in verdict.reasons), verdict.reasons


def serve(versions: list[tuple[str, int]], rollout: dict[str, Any] | None = None) -> Any:
    data: dict[str, Any] = {"kind": "Serve", "name": "s", "framework": "torch",
                            "predictor": "m:P", "replicas": 1,
                            "versions": [{"version": v, "checkpoint": "/c", "weight": w}
                                         for v, w in versions]}
    if rollout is not None:
        data["rollout"] = rollout
    return parse_serve_spec(data)


def test_a_deploy_that_adds_one_version_with_a_policy_is_a_canary() -> None:
    spec = serve([("v1", 100), ("v2", 0)], {"steps": [10, 100]})
    assert canary_of(spec, {"v1": 100}) == ("v1", "v2")
    assert canary_of(spec, {}) is None, "a first deploy is not a rollout"
    assert canary_of(spec, {"v1": 100, "v2": 0}) is None, "nothing new"
    assert canary_of(serve([("v1", 100), ("v2", 0)]), {"v1": 100}) is None, "no policy"
    with pytest.raises(ServeError, match="drops v1"):
        canary_of(serve([("v2", 100)], {}), {"v1": 100})
    with pytest.raises(ServeError, match="adds v2, v3"):
        canary_of(serve([("v1", 100), ("v2", 0), ("v3", 0)], {}), {"v1": 100})


@pytest.mark.parametrize("steps", [[10, 50], [50, 10, 100], [0, 100], [10, 10, 100], []])
def test_steps_must_rise_to_100(steps: list[int]) -> None:
    with pytest.raises(SpecError, match="must rise from above 0 to 100"):
        serve([("v1", 100)], {"steps": steps})
