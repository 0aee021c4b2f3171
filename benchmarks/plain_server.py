"""The serving baseline: the same predictor behind a plain Starlette app on uvicorn, one process.

    python benchmarks/plain_server.py --port 8123 --checkpoint CKPT

Same request and answer as a raykube service (``{"instances": [...]}`` ->
``{"predictions": [...], "version": ...}``), same input checks, no Ray.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "jobs"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--checkpoint", required=True)
    args = parser.parse_args()

    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from digits_serving import TorchDigits
    from raykube.serving.app import InvalidInput, as_batch, parse_instances

    predictor = TorchDigits(args.checkpoint)

    async def predict(request: Request) -> JSONResponse:
        try:
            batch = as_batch(parse_instances(await request.body()), predictor.input_shape)
        except InvalidInput as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"predictions": predictor.predict(batch), "version": "plain"})

    app = Starlette(routes=[Route("/digits", predict, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
