"""The Serve deployments a service runs, in the cluster: a router and one model per version.

``Router`` (the service's HTTP ingress) checks a request's JSON, picks a version by the
configured traffic shares, calls that version's ``Model`` and answers
``{"predictions": [...], "version": "v2", "id": "..."}``; ``POST <route>/feedback`` with
``{"id": ..., "label": ...}`` tells it the true label of an earlier answer, and its metrics
(:mod:`raykube.serving.metrics`) count requests, durations, retries, class labels and feedback
per version. Bad input is a 400 with the reason, a body over
:data:`MAX_BODY_BYTES` a 413, and a request that takes longer than :data:`REQUEST_TIMEOUT_S` a
504: one request cannot take the service down. A request whose replica was lost holding it is
retried once on another (predictions are idempotent; Serve itself re-routes one that no replica
took), so a killed replica costs no failed request while a request that kills replicas kills
at most two. ``Model`` loads the user's predictor from a checkpoint, checks
each request's shape against the predictor's ``input_shape``, batches concurrent requests
(``@serve.batch``), and asks the predictor's optional ``check_health()`` on every health check.

A predictor is any class with::

    input_shape: tuple[int, ...]            # one instance's shape, e.g. (64,)
    def __init__(self, checkpoint: str)     # load weights from a raykube checkpoint folder
    def predict(self, batch: numpy.ndarray) -> Sequence   # one prediction per row
    def check_health(self) -> None          # optional: raise when unusable

Imported by Serve on the cluster (``raykube.serving.app:router_app`` / ``:model_app``).
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from typing import Any

from ray import serve
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
from starlette.requests import Request
from starlette.responses import JSONResponse

from raykube import frameworks
from raykube.serving.metrics import RecentAnswers, ServeMetrics
from raykube.specs.serve import model_app_name

LOST_RETRIES = 1
"""How often the router re-sends a request whose replica was lost holding it: once saves the
requests of a replica killed for another reason; more would let one poisonous request kill
replica after replica."""

REPLICA_LOST = (ActorUnavailableError, ActorDiedError, RayActorError)
"""What a version's handle raises for a replica lost after it took the request. Over gRPC a
replica that dies mid-request is unavailable rather than dead, and one that could not be
reached before it took the request never gets here: Serve's own router picks another."""

MAX_BODY_BYTES = 8 * 2**20
"""The largest request body (413 beyond): thousands of instances of the digits model."""

MAX_INSTANCES = 4096
"""The most instances in one request (400 beyond)."""

MAX_DEPTH = 8
"""The deepest nesting of a request's JSON (an image batch is 4 deep; 400 beyond)."""

REQUEST_TIMEOUT_S = 60.0
"""How long a prediction may take before the router answers 504."""

INLINE_PARSE_BYTES = 64 * 2**10
"""Bodies up to this size are parsed on the router's event loop; larger ones in a thread, so
a big request does not stall every other request the router holds."""

FLOAT32_MAX = 3.4028234663852886e38
"""Instances become float32: a larger magnitude would silently be infinity."""

SHOWN = 40
"""How much of a bad value an error message echoes."""

FEEDBACK_PATH = "feedback"
"""``POST <route>/feedback`` takes the true labels of an earlier answer."""


class InvalidInput(ValueError):
    """A request the model cannot take (wrong shape or types): answered with HTTP 400."""


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= SHOWN else text[:SHOWN] + "..."


def parse_instances(body: bytes) -> list[list[Any]]:
    """The ``instances`` of a request body, or :class:`InvalidInput` saying what is wrong."""
    try:
        payload = json.loads(body)
    except RecursionError:
        raise InvalidInput(f"body is nested deeper than {MAX_DEPTH} levels") from None
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError, or an int too long
        raise InvalidInput(f"body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(payload, dict) or "instances" not in payload:
        raise InvalidInput('body must be a JSON object {"instances": [[...], ...]}')
    instances = payload["instances"]
    if not isinstance(instances, list) or not instances:
        raise InvalidInput('"instances" must be a non-empty list of instances')
    if len(instances) > MAX_INSTANCES:
        raise InvalidInput(f"{len(instances)} instances; one request takes at most "
                           f"{MAX_INSTANCES}: split it")
    for index, instance in enumerate(instances):
        _check_numbers(instance, f"instances[{index}]", 2)
    return instances


def _check_numbers(value: Any, where: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise InvalidInput(f"{where} is nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check_numbers(item, f"{where}[{index}]", depth + 1)
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{where} is {_shown(value)}, not a number")
    elif not math.isfinite(value) or abs(value) > FLOAT32_MAX:
        raise InvalidInput(f"{where} is not a finite float32 number")


def as_batch(instances: list[Any], input_shape: tuple[int, ...]) -> Any:
    """``instances`` as one float32 array of shape ``(n, *input_shape)``, or InvalidInput."""
    import numpy as np

    for index, instance in enumerate(instances):
        try:
            shape = np.shape(instance)
        except ValueError:
            shape = None
        if shape != tuple(input_shape):
            raise InvalidInput(
                f"instances[{index}] has shape {list(shape) if shape else 'ragged'}; "
                f"the model takes {list(input_shape)}"
            )
    return np.asarray(instances, dtype=np.float32)


def _json_ready(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else value


@serve.deployment
class Model:
    """One version's replicas: the predictor behind request batching."""

    def __init__(self, predictor: str, checkpoint: str, version: str, framework: str) -> None:
        self.version = version
        self.predictor = frameworks.get(framework).load_predictor(predictor, checkpoint)
        self.input_shape = tuple(self.predictor.input_shape)

    def reconfigure(self, config: dict[str, Any]) -> None:
        """Batching settings, applied in place when the service is redeployed."""
        self._predict_batch.set_max_batch_size(int(config.get("max_batch_size", 8)))
        self._predict_batch.set_batch_wait_timeout_s(float(config.get("batch_wait_timeout_s", 0)))

    async def predict(self, instances: list[Any]) -> list[Any]:
        """Predictions for one request's instances (checked here, batched with others)."""
        return await self._predict_batch(as_batch(instances, self.input_shape))

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0)
    async def _predict_batch(self, batches: list[Any]) -> list[list[Any]]:
        import numpy as np

        sizes = [len(batch) for batch in batches]
        outputs = _json_ready(self.predictor.predict(np.concatenate(batches)))
        answers, start = [], 0
        for size in sizes:
            answers.append(list(outputs[start:start + size]))
            start += size
        return answers

    def describe(self) -> dict[str, Any]:
        """What the router reports about this version."""
        return {"version": self.version, "input_shape": list(self.input_shape)}

    def check_health(self) -> None:
        """Serve calls this every healthCheckPeriodS; raising makes Serve replace the replica."""
        check = getattr(self.predictor, "check_health", None)
        if check is not None:
            check()


@serve.deployment
class Router:
    """The service's ingress: input checks, traffic shares, retries on lost replicas."""

    def __init__(self, service: str, metrics: bool = True) -> None:
        self.service = service
        self.weights: dict[str, int] = {}
        self.handles: dict[str, Any] = {}
        self.metrics = ServeMetrics(service, export=metrics)
        self.rollout_verdict: str | None = None
        self.answers = RecentAnswers()

    async def reconfigure(self, config: dict[str, Any]) -> None:
        """New traffic shares, applied in place (canary, promote, roll back). A coroutine: a
        handle whose routing runs on its caller's loop is made on the replica's loop."""
        weights = {v: int(w) for v, w in config["weights"].items() if int(w) > 0}
        self.handles = {
            v: self.handles.get(v) or version_handle(model_app_name(self.service, v))
            for v in weights
        }
        self.weights = weights
        self.rollout_verdict = (config.get("rollout") or {}).get("verdict")

    def pick_version(self) -> str:
        """A version drawn by the traffic shares."""
        versions = list(self.weights)
        return random.choices(versions, weights=[self.weights[v] for v in versions])[0]

    async def __call__(self, request: Request) -> JSONResponse:
        if request.method == "GET":
            return JSONResponse({"service": self.service, "weights": self.weights,
                                 "counts": self.metrics.counts(),
                                 "rollout": self.rollout_verdict})
        body = await _read_body(request)
        if request.url.path.rstrip("/").endswith("/" + FEEDBACK_PATH):
            return self._feedback(body)
        started = time.perf_counter()
        version, answer = await self._answer(body)
        self.metrics.answered(version, answer.status_code, time.perf_counter() - started)
        return answer

    async def _answer(self, body: bytes | None) -> tuple[str | None, JSONResponse]:
        """The version that answered (None when none was picked) and the answer."""
        if body is None:
            return None, _error(413, f"body over {MAX_BODY_BYTES} bytes")
        try:
            if len(body) <= INLINE_PARSE_BYTES:
                instances = parse_instances(body)
            else:
                instances = await asyncio.to_thread(parse_instances, body)
        except InvalidInput as exc:
            return None, _error(400, str(exc))
        version = self.pick_version()
        # Taken now, with no await since the pick: a rollout's reconfigure may drop the
        # version from the shares while this request is in flight.
        handle = self.handles[version]
        try:
            predictions = await asyncio.wait_for(self._predict(version, handle, instances),
                                                 REQUEST_TIMEOUT_S)
        except InvalidInput as exc:
            return version, _error(400, str(exc), version)
        except TimeoutError:
            return version, _error(504, f"no answer within {REQUEST_TIMEOUT_S:g} s", version)
        except REPLICA_LOST:
            return version, _error(502, "the model's replicas died answering this request; "
                                   "it is not retried again", version)
        except Exception as exc:  # the predictor raised, or no replica could be reached
            cause = getattr(exc, "cause", None) or exc
            return version, _error(500, f"the model failed: {type(cause).__name__}: "
                                   f"{str(cause)[:200]}", version)
        self.metrics.predicted(version, predictions)
        answer_id = self.answers.remember(version, predictions)
        return version, JSONResponse({"predictions": predictions, "version": version,
                                      "id": answer_id})

    def _feedback(self, body: bytes | None) -> JSONResponse:
        """``{"id": ..., "label": ...}`` (or ``"labels": [...]``, one per instance): the true
        labels of an earlier answer, counted once per answer."""
        try:
            answer_id, labels = parse_feedback(body)
        except InvalidInput as exc:
            return _error(400, str(exc))
        answer = self.answers.take(answer_id)
        if answer is None:
            return _error(404, f"no recent answer {answer_id[:SHOWN]!r} (unknown, already "
                          "judged, or too old)")
        version, predictions = answer
        if len(labels) != len(predictions):
            self.answers.restore(answer_id, answer)
            return _error(400, f"{len(labels)} labels for {len(predictions)} predictions")
        correct = sum(self.metrics.judged(version, p, label)
                      for p, label in zip(predictions, labels, strict=True))
        return JSONResponse({"version": version, "judged": len(labels), "correct": correct})

    async def _predict(self, version: str, handle: Any, instances: list[Any]) -> list[Any]:
        """The version's answer, re-sent (up to :data:`LOST_RETRIES`) where its replica was
        lost holding it."""
        lost = 0
        while True:
            try:
                return list(await handle.predict.remote(instances))
            except REPLICA_LOST:
                lost += 1
                if lost > LOST_RETRIES:
                    raise
                self.metrics.retried(version)
                await asyncio.sleep(0.1)  # while Serve routes around it


def version_handle(app_name: str) -> Any:
    """The router's handle to a version's application: over gRPC whatever the cluster's
    default, one transport with one meaning for each error (:data:`REPLICA_LOST`), and the
    cheaper hop (a service's p50 0.75-0.94x of Ray actor calls in a one-off run; the
    README's Serving models section)."""
    return serve.get_app_handle(app_name).options(_by_reference=False)


def _error(code: int, message: str, version: str | None = None) -> JSONResponse:
    """An error answer; it names the version that gave it, where one was picked."""
    body = {"error": message} | ({"version": version} if version else {})
    return JSONResponse(body, status_code=code)


def parse_feedback(body: bytes | None) -> tuple[str, list[Any]]:
    """The answer id and true labels of a feedback body, or :class:`InvalidInput`."""
    try:
        payload = json.loads(body or b"")
    except (RecursionError, UnicodeDecodeError, ValueError):
        raise InvalidInput('feedback must be JSON {"id": "...", "label": ...}') from None
    if not isinstance(payload, dict) or not isinstance(payload.get("id"), str):
        raise InvalidInput('feedback must be a JSON object {"id": "...", "label": ...} with '
                           "the id an answer carried")
    if "labels" in payload:
        labels = payload["labels"]
        if not isinstance(labels, list) or not labels or len(labels) > MAX_INSTANCES:
            raise InvalidInput('"labels" must be a non-empty list, one label per instance')
    elif "label" in payload:
        labels = [payload["label"]]
    else:
        raise InvalidInput('feedback needs "label" (or "labels", one per instance)')
    for label in labels:
        if isinstance(label, (dict, list)):
            raise InvalidInput(f"a label is a class, not {_shown(label)}")
    return payload["id"], labels


async def _read_body(request: Request) -> bytes | None:
    """The request's body, or None once it passes :data:`MAX_BODY_BYTES` (read no further)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def router_app(args: dict[str, Any]) -> Any:
    """Serve application builder of a service's router (``import_path`` target)."""
    return Router.bind(args["service"], bool(args.get("metrics", True)))


def model_app(args: dict[str, Any]) -> Any:
    """Serve application builder of one version (``import_path`` target)."""
    return Model.bind(args["predictor"], args["checkpoint"], args["version"], args["framework"])
