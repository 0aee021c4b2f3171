"""Could a service drop its router hop? What a killed replica costs when it is the ingress.

    python -m benchmarks.ingress_kill --out bench-results/ingress-kill [--kills 4]   # ~7 min

A raykube service answers HTTP in its router, which calls the version's model replica: a second
call per request (see ``benchmarks/serving.py``). The hop-free design would have the request
land on the replica that holds the model, as the bare Serve deployment of the serving benchmark
does. Then a replica killed under load takes the requests it holds with it unless the front
re-sends them, and raykube promises that a killed replica costs no request
(``tests/test_serving.py``). This measures, in one run, that design's bare deployment (two
replicas of the digits MLP) behind each front Ray 2.60 offers, against a raykube service (two
model replicas behind its router) on the first cluster:

- ``serve-proxy``: Serve's HTTP proxy calling the replica over gRPC (raykube's fast path);
- ``serve-proxy-actor-calls``: the same over Ray actor calls (Ray's default);
- ``haproxy``: Serve's HAProxy ingress, HAProxy re-sending on connection failures only
  (Serve's ``RAY_SERVE_HAPROXY_RETRY_ON`` default);
- ``haproxy-l7-retries``: the same re-sending on empty responses, timeouts and 502-504 too.

Four client threads send requests back to back; each kill is one of the two replicas SIGKILLed,
and its requests are those from the kill until 3 s after a new replica runs. Reported per
front: kills, requests, failed requests, and kills that cost any. Not part of ``python -m
benchmarks``: it answers one design question, on clusters of its own.
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks.cluster_ops import fixed_spec
from benchmarks.faults import Scenario, TimedLoad, measure
from benchmarks.serving import (
    _answers,
    _code_folder,
    _haproxy_spec,
    bare_app,
    digits_service,
    make_checkpoint,
)
from raykube.waiting import wait_for

L7_RETRIES = {"RAY_SERVE_HAPROXY_RETRY_ON": "conn-failure empty-response response-timeout "
                                            "502 503 504",
              "RAY_SERVE_HAPROXY_RETRIES": "3"}


def _fronts() -> dict[str, Any]:
    """Each front's cluster spec (the HAProxy ones only where ``haproxy`` is installed)."""
    actor_calls = fixed_spec("rk-kill-actor")
    actor_calls.head_group_spec.env["RAY_SERVE_USE_GRPC_BY_DEFAULT"] = "0"
    fronts = {"serve-proxy": fixed_spec("rk-kill-proxy"), "serve-proxy-actor-calls": actor_calls}
    haproxy = _haproxy_spec("rk-kill-haproxy")
    if haproxy is not None:
        fronts["haproxy"] = haproxy
        retrying = _haproxy_spec("rk-kill-l7")
        retrying.head_group_spec.env.update(L7_RETRIES)
        fronts["haproxy-l7-retries"] = retrying
    return fronts


def _deploy_bare(cluster: Any, checkpoint: str) -> tuple[str, Callable[[], set[int]]]:
    """The bare deployment with two replicas: its URL, and its running replicas' pids."""
    from raykube.serving.service import _ServeApi

    api = _ServeApi(cluster)
    api.put([bare_app(cluster, checkpoint, _code_folder(), replicas=2)])
    url = f"{api.serve_url}/bare"

    def pids() -> set[int]:
        replicas = api.details()["applications"]["bare"]["deployments"]["Bare"]["replicas"]
        return {r["pid"] for r in replicas if r["state"] == "RUNNING" and r.get("pid")}

    wait_for(lambda: _answers(url) and len(pids()) == 2, timeout=180,
             what="the bare deployment's two replicas")
    return url, pids


def _deploy_service(cluster: Any, checkpoint: str) -> tuple[str, Callable[[], set[int]]]:
    """A raykube service with two model replicas: its URL, and its model replicas' pids."""
    from raykube.serving.service import deploy

    service = deploy(digits_service("kill", checkpoint, replicas=2), cluster)

    def pids() -> set[int]:
        return {r.pid for r in service.status().version("v1").replicas
                if r.state == "RUNNING" and r.pid}

    return service.url, pids


def kills(url: str, pids: Callable[[], set[int]], times: int,
          progress: Callable[[str], None]) -> dict[str, Any]:
    """``times`` replicas SIGKILLed in turn under load; what they cost in requests."""
    def kill() -> int:
        victim = min(pids())
        os.kill(victim, signal.SIGKILL)
        return victim

    def whole(victim: int) -> bool:
        running = pids()
        return len(running) == 2 and victim not in running

    scenario = Scenario("replica killed", "SIGKILL to one of 2 replicas", kill, whole)
    with TimedLoad(url, clients=4) as load:
        rows = [measure(load, scenario, progress) for _ in range(times)]
    return {"kills": times, "requests": sum(r["requests"] for r in rows),
            "failed": sum(r["failed"] for r in rows),
            "kills_with_failures": sum(1 for r in rows if r["failed"]),
            "failed_per_kill": [r["failed"] for r in rows]}


def bench_ingress_kill(times: int, progress: Callable[[str], None]) -> list[dict[str, Any]]:
    """Every front's row, then the raykube service's (on the first front's cluster)."""
    import raykube

    checkpoint = make_checkpoint(Path(tempfile.mkdtemp(prefix="rk-kill-ckpt-")))
    rows = []
    for front, spec in _fronts().items():
        progress(f"ingress kill: {front}")
        cluster = raykube.up(spec, timeout=180)
        try:
            url, pids = _deploy_bare(cluster, checkpoint)
            rows.append({"server": "replica as ingress", "front": front,
                         **kills(url, pids, times, progress)})
            if front == "serve-proxy":
                from raykube.serving.service import _ServeApi

                _ServeApi(cluster).put([])
                url, pids = _deploy_service(cluster, checkpoint)
                rows.append({"server": "raykube service (router hop)", "front": front,
                             **kills(url, pids, times, progress)})
        finally:
            cluster.down()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench-results/ingress-kill", help="results folder")
    parser.add_argument("--kills", type=int, default=4, help="kills per front")
    args = parser.parse_args()
    rows = bench_ingress_kill(args.kills, report.progress_printer())
    print(report.write_rows("A killed replica as the ingress, behind each front", rows,
                            ["server", "front", "kills", "requests", "failed",
                             "kills_with_failures", "failed_per_kill"], Path(args.out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
