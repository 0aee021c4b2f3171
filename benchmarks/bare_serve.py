"""The serving benchmark's middle rung: one bare Serve deployment of the same predictor.

No router, no traffic shares, no metrics, no retries: the request lands on the deployment that
holds the model, which checks it and answers as the plain server does. The gap between this and
plain uvicorn is Serve's own cost; the gap between this and a raykube service is raykube's.

Imported by Serve on the cluster (``bare_serve:app``), from a working dir that also holds
``jobs/digits_serving.py``.
"""

from __future__ import annotations

from typing import Any

from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from raykube.serving.app import InvalidInput, as_batch, parse_instances


@serve.deployment
class Bare:
    """The predictor answering HTTP directly."""

    def __init__(self, checkpoint: str) -> None:
        from digits_serving import TorchDigits

        self.predictor = TorchDigits(checkpoint)

    async def __call__(self, request: Request) -> JSONResponse:
        try:
            batch = as_batch(parse_instances(await request.body()), self.predictor.input_shape)
        except InvalidInput as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"predictions": self.predictor.predict(batch), "version": "bare"})


def app(args: dict[str, Any]) -> Any:
    """Serve application builder (``import_path`` target)."""
    return Bare.bind(args["checkpoint"])
