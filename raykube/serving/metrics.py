"""What a service's router counts, per service and version, through Ray's own metrics pipeline.

The router records each answered request (its code and duration), each request re-sent after a
lost replica, each class label it answered, and each piece of feedback on an earlier answer, as
``ray.util.metrics`` counters and a histogram. Each node's Ray metrics agent exports them with
Ray's and Serve's own series, so Prometheus finds them the same way locally and on KubeRay.

Ray names every application metric ``ray_<name>``; raykube's scrape configuration and PodMonitor
rename ``ray_raykube_*`` back to ``raykube_*`` (:data:`raykube.render.monitoring.RENAME`), so the
series are:

- ``raykube_serve_requests_total{service,version,code}``: every answered request, 4xx included
  (``version="none"`` for a request refused before a version was picked);
- ``raykube_serve_request_duration_seconds{service,version}``: router to answer (histogram);
- ``raykube_serve_retries_total{service,version}``: requests re-sent after a lost replica;
- ``raykube_serve_predictions_total{service,version,prediction}``: class labels answered;
- ``raykube_serve_feedback_total{service,version,prediction,label,correct}``: answers whose
  true label came back through ``POST <route>/feedback``.

Label values are bounded: at most :data:`MAX_CLASSES` distinct class labels per router (later
ones count as ``other``), and predictions that are not class labels (floats, vectors) are not
counted by label at all.
"""

from __future__ import annotations

import bisect
import uuid
from collections import OrderedDict
from typing import Any

DURATION_BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                      10.0, 30.0, 60.0]
"""Histogram bounds of a request's duration (seconds), from a cached answer to the timeout."""

MAX_CLASSES = 100
"""Distinct class labels one router counts by name; more would make the series unbounded."""

OTHER = "other"
NO_VERSION = "none"

REMEMBERED_ANSWERS = 100_000
"""Answers a router keeps for feedback (the oldest are forgotten first): at a few hundred
requests per second, minutes of feedback delay."""

def class_label(value: Any) -> str | None:
    """``value`` as a class label (an int or a short string), or None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return str(int(value))
    if isinstance(value, str) and 0 < len(value) <= 64:
        return value
    return None


class ServeMetrics:
    """The router's Ray metrics for one service (see the module docstring); with ``export``
    off (the spec's ``metrics: false``) it records nothing, to measure what metrics cost."""

    def __init__(self, service: str, *, export: bool = True) -> None:
        from ray.util.metrics import Counter, Histogram

        self._service = service
        self._classes: set[str] = set()
        self._export = export
        self.tallies: dict[str, VersionTally] = {}
        self.requests = Counter(
            "raykube_serve_requests_total", "Requests the router answered, by HTTP code.",
            tag_keys=("service", "version", "code"))
        self.duration = Histogram(
            "raykube_serve_request_duration_seconds",
            "Seconds from the router taking a request to its answer.",
            boundaries=DURATION_BUCKETS_S, tag_keys=("service", "version"))
        self.retries = Counter(
            "raykube_serve_retries_total", "Requests re-sent after a lost replica.",
            tag_keys=("service", "version"))
        self.predictions = Counter(
            "raykube_serve_predictions_total", "Class labels answered, by label.",
            tag_keys=("service", "version", "prediction"))
        self.feedback = Counter(
            "raykube_serve_feedback_total",
            "Answers whose true label came back, by predicted and true label.",
            tag_keys=("service", "version", "prediction", "label", "correct"))

    def _tally(self, version: str) -> VersionTally:
        tally = self.tallies.get(version)
        if tally is None:
            tally = self.tallies[version] = VersionTally()
        return tally

    def counts(self) -> dict[str, dict[str, Any]]:
        """Every version's cumulative counts since this router started (what a rollout
        judges a canary by: :mod:`raykube.serving.judge`)."""
        return {version: tally.as_dict() for version, tally in self.tallies.items()}

    def _bounded(self, label: str) -> str:
        if label in self._classes:
            return label
        if len(self._classes) < MAX_CLASSES:
            self._classes.add(label)
            return label
        return OTHER

    def answered(self, version: str | None, code: int, seconds: float) -> None:
        if version is not None:
            self._tally(version).answered(code, seconds)
        if not self._export:
            return
        tags = {"service": self._service, "version": version or NO_VERSION}
        self.requests.inc(tags={**tags, "code": str(code)})
        self.duration.observe(seconds, tags=tags)

    def retried(self, version: str) -> None:
        if not self._export:
            return
        self.retries.inc(tags={"service": self._service, "version": version})

    def predicted(self, version: str, predictions: list[Any]) -> None:
        labels = [class_label(p) for p in predictions]
        if not self._export or not labels or any(label is None for label in labels):
            return  # not class labels: counted by request only
        for label in labels:
            assert label is not None
            self.predictions.inc(tags={"service": self._service, "version": version,
                                       "prediction": self._bounded(label)})

    def judged(self, version: str, prediction: Any, label: Any) -> bool:
        """Count feedback on one answer; return whether it was right."""
        predicted, actual = class_label(prediction), class_label(label)
        correct = predicted is not None and predicted == actual
        self._tally(version).judged(correct)
        if not self._export:
            return correct
        self.feedback.inc(tags={
            "service": self._service, "version": version,
            "prediction": self._bounded(predicted) if predicted is not None else OTHER,
            "label": self._bounded(actual) if actual is not None else OTHER,
            "correct": "true" if correct else "false"})
        return correct


class VersionTally:
    """One version's cumulative counts in this router, kept whether or not metrics are
    exported: answered requests, 5xx answers, feedback judged and right, and requests per
    duration bucket (:data:`DURATION_BUCKETS_S`, then one over the largest bound)."""

    def __init__(self) -> None:
        self.requests = self.errors = self.judged_count = self.correct = 0
        self.buckets = [0] * (len(DURATION_BUCKETS_S) + 1)

    def answered(self, code: int, seconds: float) -> None:
        self.requests += 1
        self.errors += code >= 500
        self.buckets[bisect.bisect_left(DURATION_BUCKETS_S, seconds)] += 1

    def judged(self, correct: bool) -> None:
        self.judged_count += 1
        self.correct += correct

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "errors": self.errors,
                "judged": self.judged_count, "correct": self.correct,
                "buckets": list(self.buckets)}


class RecentAnswers:
    """The router's latest answers by request id, for feedback (bounded, oldest forgotten)."""

    def __init__(self, size: int = REMEMBERED_ANSWERS) -> None:
        self._size = size
        self._answers: OrderedDict[str, tuple[str, list[Any]]] = OrderedDict()

    def remember(self, version: str, predictions: list[Any]) -> str:
        """Keep an answer; return the id it is known by."""
        answer_id = uuid.uuid4().hex
        self._answers[answer_id] = (version, predictions)
        if len(self._answers) > self._size:
            self._answers.popitem(last=False)
        return answer_id

    def take(self, answer_id: str) -> tuple[str, list[Any]] | None:
        """The answer ``answer_id`` (once: feedback counts one time), or None."""
        return self._answers.pop(answer_id, None)

    def restore(self, answer_id: str, answer: tuple[str, list[Any]]) -> None:
        """Put back an answer taken for feedback that was refused (it may come again)."""
        self._answers[answer_id] = answer
