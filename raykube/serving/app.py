"""The Serve deployments a service runs, in the cluster: a router and one model per version.

``Router`` (the service's HTTP ingress) checks a request's JSON, picks a version by the
configured traffic shares, calls that version's ``Model`` and answers
``{"predictions": [...], "version": "v2"}``. Bad input is a 400 with the reason; a replica that
dies while holding a request is retried on another (predictions are idempotent), so a killed
replica costs no failed request. ``Model`` loads the user's predictor from a checkpoint, checks
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
import importlib
import json
import math
import random
from typing import Any

from ray import serve
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
from starlette.requests import Request
from starlette.responses import JSONResponse

from raykube import frameworks
from raykube.specs.serve import model_app_name

RETRIES = 3
"""How often the router re-sends a request whose replica died under it."""

REPLICA_LOST = (ActorDiedError, ActorUnavailableError, RayActorError)


class InvalidInput(ValueError):
    """A request the model cannot take (wrong shape or types): answered with HTTP 400."""


def parse_instances(body: bytes) -> list[list[Any]]:
    """The ``instances`` of a request body, or :class:`InvalidInput` saying what is wrong."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict) or "instances" not in payload:
        raise InvalidInput('body must be a JSON object {"instances": [[...], ...]}')
    instances = payload["instances"]
    if not isinstance(instances, list) or not instances:
        raise InvalidInput('"instances" must be a non-empty list of instances')
    for index, instance in enumerate(instances):
        _check_numbers(instance, f"instances[{index}]")
    return instances


def _check_numbers(value: Any, where: str) -> None:
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check_numbers(item, f"{where}[{index}]")
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{where} is {json.dumps(value)}, not a number")
    elif not math.isfinite(value):
        raise InvalidInput(f"{where} is not a finite number")


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


def _load_predictor(import_path: str, checkpoint: str) -> Any:
    module_name, _, class_name = import_path.partition(":")
    predictor_class = getattr(importlib.import_module(module_name), class_name)
    return predictor_class(checkpoint)


def _json_ready(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else value


@serve.deployment
class Model:
    """One version's replicas: the predictor behind request batching."""

    def __init__(self, predictor: str, checkpoint: str, version: str, framework: str) -> None:
        frameworks.get(framework).on_process_start()  # before the predictor imports it
        self.version = version
        self.predictor = _load_predictor(predictor, checkpoint)
        self.input_shape = tuple(self.predictor.input_shape)

    def reconfigure(self, config: dict[str, Any]) -> None:
        """Batching settings, applied in place when the service is redeployed."""
        self._predict_batch.set_max_batch_size(int(config.get("max_batch_size", 8)))
        self._predict_batch.set_batch_wait_timeout_s(float(config.get("batch_wait_timeout_s", 0)))

    async def predict(self, instances: list[Any]) -> list[Any]:
        """Predictions for one request's instances (checked here, batched with others)."""
        return await self._predict_batch(as_batch(instances, self.input_shape))

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
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

    def __init__(self, service: str) -> None:
        self.service = service
        self.weights: dict[str, int] = {}
        self.handles: dict[str, Any] = {}

    def reconfigure(self, config: dict[str, Any]) -> None:
        """New traffic shares, applied in place (canary, promote, roll back)."""
        weights = {v: int(w) for v, w in config["weights"].items() if int(w) > 0}
        self.handles = {
            v: self.handles.get(v) or serve.get_app_handle(model_app_name(self.service, v))
            for v in weights
        }
        self.weights = weights

    def pick_version(self) -> str:
        """A version drawn by the traffic shares."""
        versions = list(self.weights)
        return random.choices(versions, weights=[self.weights[v] for v in versions])[0]

    async def __call__(self, request: Request) -> JSONResponse:
        if request.method == "GET":
            return JSONResponse({"service": self.service, "weights": self.weights})
        try:
            instances = parse_instances(await request.body())
        except InvalidInput as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        version = self.pick_version()
        for attempt in range(RETRIES + 1):
            try:
                predictions = await self.handles[version].predict.remote(instances)
                return JSONResponse({"predictions": predictions, "version": version})
            except InvalidInput as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            except REPLICA_LOST:
                if attempt == RETRIES:
                    raise
                await asyncio.sleep(0.1 * 2**attempt)  # back off while Serve routes around it
        raise AssertionError("unreachable")


def router_app(args: dict[str, Any]) -> Any:
    """Serve application builder of a service's router (``import_path`` target)."""
    return Router.bind(args["service"])


def model_app(args: dict[str, Any]) -> Any:
    """Serve application builder of one version (``import_path`` target)."""
    return Model.bind(args["predictor"], args["checkpoint"], args["version"], args["framework"])
