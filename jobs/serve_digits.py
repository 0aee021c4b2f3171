"""Train a digit classifier, deploy it with Ray Serve, and query it over HTTP, in one run.

    python jobs/serve_digits.py --cluster local

Trains with PyTorch DDP (``train_torch.py``'s loop), deploys the latest checkpoint as version v1
of the service in ``digits.serve.yaml``, sends the held-out test set over HTTP, and checks that
every answer equals the model's own prediction. Prints a JSON summary; the service keeps
running (``raykube serve status``) unless ``--delete``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import raykube
from raykube.serving.service import deploy
from raykube.specs.serve import load_serve_spec

from common import ACCURACY_BAR
from digits import load_digits_split
from digits_serving import TorchDigits, predict_locally
from train_torch import train_loop

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cluster", default=None, help="cluster name (default: the one running)")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs (default 10)")
    parser.add_argument("--workers", type=int, default=2, help="training workers (default 2)")
    parser.add_argument("--delete", action="store_true", help="delete the service at the end")
    args = parser.parse_args()

    result = raykube.train(train_loop, framework="torch", cluster=args.cluster,
                           num_workers=args.workers, name=f"digits-serve-{int(time.time())}",
                           config={"lr": 0.01, "batch_size": 32, "epochs": args.epochs})
    spec = load_serve_spec(HERE / "digits.serve.yaml")
    v1 = spec.versions[0].model_copy(update={"checkpoint": result.checkpoint})
    service = deploy(spec.model_copy(update={"versions": [v1]}), args.cluster)

    _, _, X_test, y_test = load_digits_split()
    started = time.monotonic()
    answer = service.predict(X_test.tolist())
    seconds = time.monotonic() - started
    expected = predict_locally(TorchDigits, str(result.checkpoint), X_test)
    accuracy = sum(int(p == t) for p, t in zip(answer["predictions"], y_test, strict=True))
    summary = {
        "checkpoint": result.checkpoint,
        "url": service.url,
        "version": answer["version"],
        "test_accuracy": accuracy / len(y_test),
        "matches_model": answer["predictions"] == expected,
        "instances": len(X_test),
        "request_seconds": round(seconds, 3),
    }
    if args.delete:
        service.delete()
    print(json.dumps(summary, sort_keys=True))
    if not summary["matches_model"] or summary["test_accuracy"] < ACCURACY_BAR:
        print("the service's answers differ from the model's, or accuracy is below "
              f"{ACCURACY_BAR}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
