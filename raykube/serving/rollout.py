"""Progressive delivery: a new version earns its traffic step by step, judged by live figures.

When a deploy adds a version to a service whose spec has a ``rollout:`` policy, the new version
(the *canary*) starts beside the running one (the *stable* version) without traffic, then its
share goes through the policy's steps (10%, 50%, 100% by default). Each step lasts at least
``stepSeconds`` and until the canary answered ``minRequests``; then the router's own counts for
the step (:mod:`raykube.serving.judge`) are held to the policy and to the stable version over the
same window. The first step that fails rolls back (the stable version gets all traffic again, the
canary goes); when the last passes the canary is promoted (the stable version goes). Every
change of shares is an in-place router reconfiguration, so the shift itself fails no request.

The same driver runs on a local cluster's Serve and on a KubeRay RayService (each state one
``serveConfigV2`` KubeRay applies in place): a :class:`RolloutTarget` applies states and reads
counts. The outcome is printed as it happens, returned, and kept in the router's config, where
``raykube serve status`` and ``raykube serve rollout status`` read it. A person may step in
(``raykube serve rollout abort|promote``): the driver sees the shares change under it and stops.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from raykube.errors import ReadyTimeout, ServeError
from raykube.progress import Progress
from raykube.serving.judge import Figures, Policy, VersionCounts, judge_step
from raykube.specs.serve import ServeSpec
from raykube.waiting import wait_for

PROMOTED, ROLLED_BACK, STOPPED, RUNNING = "promoted", "rolled back", "stopped", "running"


@dataclass
class StepRecord:
    """One step: the canary's share, what both versions did, and the verdict."""

    percent: int
    seconds: float
    canary: dict[str, Any]
    stable: dict[str, Any] | None
    passed: bool
    reasons: list[str] = field(default_factory=list)


@dataclass
class RolloutResult:
    """What a rollout did: its verdict, why, and every step's figures."""

    service: str
    stable: str
    canary: str
    verdict: str
    reason: str = ""
    steps: list[StepRecord] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    ended: float | None = None

    @property
    def rolled_back(self) -> bool:
        return self.verdict == ROLLED_BACK

    def as_record(self) -> dict[str, Any]:
        """The result as JSON data (kept in the router's config)."""
        return asdict(self)

    @classmethod
    def of(cls, record: dict[str, Any]) -> RolloutResult:
        steps = [StepRecord(**s) for s in record.get("steps") or []]
        return cls(**{**record, "steps": steps})

    def summary(self) -> str:
        """One line: the verdict, why, at which step."""
        where = f" at {self.steps[-1].percent}%" if self.steps and self.verdict == ROLLED_BACK \
            else ""
        why = f": {self.reason}" if self.reason else ""
        return f"rollout of {self.canary} over {self.stable}: {self.verdict}{where}{why}"


class RolloutTarget(Protocol):
    """Where a rollout runs: a local cluster's Serve, or a KubeRay RayService."""

    def apply(self, spec: ServeSpec, record: dict[str, Any] | None) -> None:
        """Run exactly ``spec``'s versions with its weights (new versions up before they get
        traffic, old ones without traffic before they go), keeping ``record`` in the router's
        config; return once it runs."""

    def read(self) -> RouterReading:
        """What the router answers now (``GET <route>``)."""


@dataclass(frozen=True)
class RouterReading:
    """The router's answer to ``GET <route>``: its shares, its cumulative counts per
    version, and the verdict of the rollout its config records (a person who steps in
    writes ``stopped`` there)."""

    weights: dict[str, int]
    counts: dict[str, VersionCounts]
    verdict: str | None

    @classmethod
    def of(cls, answer: dict[str, Any]) -> RouterReading:
        return cls({str(v): int(w) for v, w in (answer.get("weights") or {}).items()},
                   {str(v): VersionCounts.of(c)
                    for v, c in (answer.get("counts") or {}).items()},
                   answer.get("rollout"))


def canary_of(spec: ServeSpec, running: dict[str, int]) -> tuple[str, str] | None:
    """``(stable, canary)`` when ``spec`` adds one version to a service that runs
    ``running`` (version -> weight) and has a rollout policy; None when it is a plain deploy.

    Raises:
        ServeError: the spec drops the running version or adds more than one at once.
    """
    if spec.rollout is None or not running:
        return None
    new = [v for v in spec.weights if v not in running]
    if not new:
        return None
    stable = max((v for v in running if running[v] > 0), key=lambda v: running[v],
                 default=next(iter(running)))
    if len(new) > 1 or stable not in spec.weights:
        raise ServeError(
            f"service {spec.name}: a judged rollout adds one version beside the running "
            f"{stable}; the spec {'adds ' + ', '.join(new) if len(new) > 1 else 'drops ' + stable}",
            f"keep {stable} in versions and add one new version; the rollout moves the traffic",
        )
    return stable, new[0]


def policy_of(spec: ServeSpec) -> Policy:
    rollout = spec.rollout
    assert rollout is not None
    return Policy(min_requests=rollout.min_requests, max_error_rate=rollout.max_error_rate,
                  max_latency_p99_ms=rollout.max_latency_p99_ms,
                  min_accuracy=rollout.min_accuracy,
                  max_accuracy_drop=rollout.max_accuracy_drop,
                  min_judged=rollout.min_feedback)


def _state(spec: ServeSpec, weights: dict[str, int]) -> ServeSpec:
    """``spec`` running exactly the versions of ``weights``, with those shares."""
    versions = [v.model_copy(update={"weight": weights[v.version]}) for v in spec.versions
                if v.version in weights]
    return spec.model_copy(update={"versions": versions}).validated()


def run_rollout(target: RolloutTarget, spec: ServeSpec, stable: str, canary: str, *,
                progress: Progress | None = None) -> RolloutResult:
    """Move ``canary``'s share through ``spec.rollout``'s steps beside ``stable``; promote it
    when every step passes, roll back at the first that fails (see the module docstring)."""
    rollout = spec.rollout
    assert rollout is not None
    progress = progress or Progress()
    policy = policy_of(spec)
    result = RolloutResult(spec.name, stable, canary, RUNNING)

    def say(message: str) -> None:
        progress.say(f"service {spec.name}: {message}")

    def apply(weights: dict[str, int]) -> None:
        """Run ``weights`` and return once the router itself answers with those shares (a
        platform may call a new config running a moment before its router took it)."""
        target.apply(_state(spec, weights), result.as_record())
        wanted = {v: w for v, w in weights.items() if w > 0}

        def taken() -> bool:
            reading = target.read()
            if reading.verdict == STOPPED:
                raise _SteppedIn()
            return reading.weights == wanted

        wait_for(taken, timeout=120, what=f"the router of {spec.name} to take the shares "
                 f"{wanted}")

    def end(verdict: str, reason: str, weights: dict[str, int]) -> RolloutResult:
        result.verdict, result.reason, result.ended = verdict, reason, time.time()
        if weights:
            apply(weights)
        say(result.summary())
        return result

    say(f"rollout: starting {canary} beside {stable}, without traffic")
    try:
        apply({stable: 100, canary: 0})
        for percent in rollout.steps:
            shares = ({canary: 100, stable: 0} if percent == 100  # stable stays up till the end
                      else {stable: 100 - percent, canary: percent})
            apply(shares)
            say(f"rollout: {canary} gets {percent}% for at least {rollout.step_seconds:g} s")
            step = _run_step(target, rollout, policy, stable, canary, percent)
            result.steps.append(step)
            _say_step(say, step, stable, canary)
            if not step.passed:
                return end(ROLLED_BACK, "; ".join(step.reasons), {stable: 100})
    except _SteppedIn:
        return end(STOPPED, "a person stepped in (serve rollout abort|promote): this rollout "
                   "stops", {})
    return end(PROMOTED, f"every step passed ({', '.join(f'{p}%' for p in rollout.steps)})",
               {canary: 100})


def _say_step(say: Any, step: StepRecord, stable: str, canary: str) -> None:
    figures = f"{canary}: {Figures(**step.canary).shown()}" + (
        f"; {stable}: {Figures(**step.stable).shown()}" if step.stable else "")
    say(f"rollout: step {step.percent}%: {'passed' if step.passed else 'FAILED'} ({figures})"
        + ("" if step.passed else f": {'; '.join(step.reasons)}"))


def _run_step(target: RolloutTarget, rollout: Any, policy: Policy, stable: str, canary: str,
              percent: int) -> StepRecord:
    """Wait out one step and judge it on the counts it produced.

    Raises:
        _SteppedIn: a person stopped the rollout meanwhile.
    """
    started = time.monotonic()
    before = target.read().counts
    empty = VersionCounts()

    def window(now: dict[str, VersionCounts]) -> dict[str, VersionCounts]:
        return {v: now.get(v, empty).since(before.get(v, empty)) for v in (stable, canary)}

    def judged_yet() -> dict[str, VersionCounts] | None:
        reading = target.read()
        if reading.verdict == STOPPED:
            raise _SteppedIn()
        counts = window(reading.counts)
        elapsed = time.monotonic() - started
        if elapsed >= rollout.step_seconds and counts[canary].requests >= rollout.min_requests:
            return counts
        return None

    try:
        counts = wait_for(judged_yet, timeout=rollout.step_seconds + rollout.step_timeout_seconds,
                          what=f"{rollout.min_requests} requests to {canary}", interval=0.5)
    except ReadyTimeout:  # too few requests came: judge on what did
        counts = window(target.read().counts)
    new, old = Figures.of(counts[canary]), Figures.of(counts[stable])
    stable_figures = old if old.requests else None
    if new.requests == 0:
        verdict_reasons = ["the new version answered no request in the step"]
        passed = False
    else:
        verdict = judge_step(policy, new, stable_figures)
        passed, verdict_reasons = verdict.passed, verdict.reasons
    return StepRecord(percent, round(time.monotonic() - started, 1), asdict(new),
                      asdict(stable_figures) if stable_figures else None, passed,
                      verdict_reasons)


class _SteppedIn(Exception):
    """The router's config says the rollout stopped: a person stepped in."""
