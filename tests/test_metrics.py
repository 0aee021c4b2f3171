"""Metrics end to end, checked by a real Prometheus (Debian's `prometheus`, which .ci/run
installs): the configuration `raykube metrics` writes scrapes the session cluster; a training
run and a service under a known load of requests (some bad, some failing, some with feedback)
show up as raykube's series with exactly the counts sent; Ray's own node and Serve series are
there too; every query of raykube's Grafana dashboards and alert rules returns data over the
test's time range; and the error-rate alert fires for a version that fails."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import raykube
from conftest import free_port, run_cli
from raykube.render.dashboards import ALERTS, DASHBOARDS
from raykube.serving.service import Service, deploy
from raykube.specs.serve import parse_serve_spec
from raykube.waiting import wait_for

pytestmark = pytest.mark.local

PREDICTORS = Path(__file__).resolve().parent / "predictors"
RUN = "metered-run"


@dataclass
class Prometheus:
    """A Prometheus server on loopback, and the moment the test began."""

    url: str
    started: float

    def get(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=30) as answer:
            body = json.loads(answer.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self.get("/api/v1/query", query=expr)["result"])

    def latest(self, expr: str) -> float | None:
        """The newest value any series of ``expr`` had since the test began."""
        samples = [(float(t), float(v)) for series in self.ever(expr)
                   for t, v in series["values"]]
        return max(samples)[1] if samples else None

    def ever(self, expr: str) -> list[dict[str, Any]]:
        """The series ``expr`` had at any second since the test began (a Grafana panel's
        range query)."""
        return list(self.get("/api/v1/query_range", query=expr, start=self.started,
                             end=time.time(), step="2s")["result"])


@pytest.fixture(scope="module")
def prometheus(local_cluster: raykube.Cluster, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Prometheus]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("Debian's prometheus is not installed (.ci/run installs it)")
    out = tmp_path_factory.mktemp("monitoring")
    written = run_cli("metrics", local_cluster.name, "--out", str(out), "--scrape-interval",
                      "1s", "--alert-for", "0s")
    assert written.returncode == 0, written.stderr
    port = free_port()
    server = subprocess.Popen(
        [binary, f"--config.file={out / 'prometheus.yml'}", f"--web.listen-address=127.0.0.1:{port}",
         f"--storage.tsdb.path={out / 'data'}"],
        stdout=subprocess.DEVNULL, stderr=(out / "prometheus.log").open("w"))
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=5) as answer:
                return answer.status == 200
        except OSError:
            return server.poll() is not None  # exited: the assertion below says so

    wait_for(ready, timeout=60, what="Prometheus to be ready")
    assert server.poll() is None, (out / "prometheus.log").read_text()[-3000:]
    yield Prometheus(url, time.time())
    server.terminate()
    server.wait(timeout=30)


def loop(config: dict[str, Any]) -> None:
    from raykube import worker

    state = worker.restore()
    start = state["epoch"] + 1 if state else 0
    for epoch in range(start, config["epochs"]):
        worker.report({"epoch": epoch, "loss": 1.0 / (epoch + 1),
                       "test_accuracy": 0.5 + epoch / 10, "samples": 128},
                      state={"epoch": epoch})
        time.sleep(0.2)


@pytest.fixture(scope="module")
def trained(local_cluster: raykube.Cluster, prometheus: Prometheus) -> raykube.TrainResult:
    """A run that resumes once: 2 epochs, then started again under its name to 4 (on the
    GPU group, so Ray's GPU series exist while it runs)."""
    raykube.train(loop, cluster=local_cluster, num_workers=1, name=RUN, gpus_per_worker=1,
                  config={"epochs": 2})
    return raykube.train(loop, cluster=local_cluster, num_workers=1, name=RUN,
                         gpus_per_worker=1, config={"epochs": 4})


def classifier(tmp_path: Path, version: str, **faults: float) -> dict[str, Any]:
    checkpoint = tmp_path / f"{version}.json"
    checkpoint.write_text(json.dumps(faults))
    return {"version": version, "checkpoint": str(checkpoint), "weight": 50}


def post(url: str, body: Any) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@dataclass
class Sent:
    """What the test sent and what came back."""

    codes: Counter[tuple[str, str]]
    feedback: Counter[tuple[str, str]]
    url: str


@pytest.fixture(scope="module")
def served(local_cluster: raykube.Cluster, prometheus: Prometheus,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sent]:
    """A service of two versions (v2 fails every request) under a known load: good requests,
    bad ones, and feedback on some answers; plus a poisoned service whose one request is
    retried after its replica dies."""
    folder = tmp_path_factory.mktemp("classifier")
    spec = parse_serve_spec({
        "kind": "Serve", "name": "metered", "framework": "torch",
        "predictor": "probes:Classifier", "workingDir": str(PREDICTORS), "replicas": 1,
        "resources": {"cpus": 0.25},
        "versions": [classifier(folder, "v1", wrong=0.3),
                     classifier(folder, "v2", fail=1.0)]})
    deaths = folder / "deaths"
    deaths.write_text("")
    poisoned = parse_serve_spec({
        "kind": "Serve", "name": "poisoned", "framework": "torch",
        "predictor": "probes:Poison", "workingDir": str(PREDICTORS), "replicas": 1,
        "resources": {"cpus": 0.25}, "versions": [{"version": "v1",
                                                   "checkpoint": str(deaths)}]})
    services: list[Service] = [deploy(spec, local_cluster), deploy(poisoned, local_cluster)]
    try:
        url = services[0].url
        codes: Counter[tuple[str, str]] = Counter()
        feedback: Counter[tuple[str, str]] = Counter()
        for i in range(60):
            row = [float(i % 10), 1.0, 2.0, 3.0]
            code, answer = post(url, {"instances": [row]})
            codes[(answer.get("version", "none"), str(code))] += 1
            if code == 200 and i % 2 == 0:
                judged = post(url + "/feedback", {"id": answer["id"], "label": i % 10})[1]
                right = answer["predictions"][0] == i % 10
                assert judged["correct"] == int(right)
                feedback[(answer["version"], "true" if right else "false")] += 1
        for bad in (b"not json", b'{"instances": [[1, 2]]}', b'{"instances": []}'):
            code, answer = post(url, bad)
            codes[(answer.get("version", "none"), str(code))] += 1
        assert post(url + "/feedback", {"id": "nope", "label": 1})[0] == 404
        post(services[1].url, {"instances": [[666.0, 0.0, 0.0, 0.0]]})
        assert {k for k in codes if k[1] == "200"} == {("v1", "200")}
        assert codes[("v2", "500")] > 0 and codes[("none", "400")] == 2
        yield Sent(codes, feedback, url)
    finally:
        for service in services:
            service.delete()


def sums(prometheus: Prometheus, expr: str, keys: tuple[str, ...]) -> dict[tuple[str, ...], int]:
    return {tuple(s["metric"].get(k, "") for k in keys): round(float(s["value"][1]))
            for s in prometheus.query(expr)}


def test_requests_and_feedback_are_counted_exactly(prometheus: Prometheus, served: Sent) -> None:
    expected = {k: v for k, v in served.codes.items()}
    wait_for(lambda: sums(prometheus, 'sum by (version, code) '
                          '(raykube_serve_requests_total{service="metered"})',
                          ("version", "code")) == expected,
             timeout=120, what=f"Prometheus to count {expected}")
    expected_feedback = {k: v for k, v in served.feedback.items()}
    wait_for(lambda: sums(prometheus, 'sum by (version, correct) '
                          '(raykube_serve_feedback_total{service="metered"})',
                          ("version", "correct")) == expected_feedback,
             timeout=60, what=f"Prometheus to count feedback {expected_feedback}")
    right = expected_feedback.get(("v1", "true"), 0)
    accuracy = prometheus.query(
        'sum(raykube_serve_feedback_total{service="metered",correct="true"}) / '
        'sum(raykube_serve_feedback_total{service="metered"})')
    assert float(accuracy[0]["value"][1]) == pytest.approx(right / sum(served.feedback.values()))
    wait_for(lambda: prometheus.query('raykube_serve_retries_total{service="poisoned"}') or None,
             timeout=60, what="the re-sent request whose replica died counted")


def test_the_last_reported_accuracy_and_the_restart(
        prometheus: Prometheus, trained: raykube.TrainResult) -> None:
    # The run's workers (and, once idle, their node) are gone by now: the last value they
    # exported is in Prometheus' history, where a dashboard reads it.
    last = trained.metrics["test_accuracy"]
    query = f'raykube_train_metric{{run="{RUN}",metric="test_accuracy"}}'
    wait_for(lambda: prometheus.latest(query) == last,
             timeout=120, what=f"raykube_train_metric test_accuracy = {last}",
             describe=lambda: f"latest value: {prometheus.latest(query)}")
    wait_for(lambda: sums(prometheus, 'sum(last_over_time('
                          f'raykube_train_restarts_total{{run="{RUN}"}}[10m]))', ()) == {(): 1},
             timeout=60, what="one restart from a checkpoint")
    assert prometheus.query(f'last_over_time(raykube_train_samples_per_second{{run="{RUN}"}}[10m])')


def test_rays_own_series_are_scraped(prometheus: Prometheus, served: Sent) -> None:
    for series in ("ray_node_cpu_utilization", "ray_node_mem_used",
                   "ray_serve_num_http_requests_total", "autoscaler_active_nodes"):
        wait_for(lambda s=series: prometheus.query(s) or None, timeout=60,
                 what=f"{series} scraped")
    clusters = {s["metric"].get("ray_io_cluster") for s in prometheus.query(
        "ray_node_cpu_utilization")}
    assert clusters == {"rk-session"}


def test_every_dashboard_and_alert_query_returns_data(
        prometheus: Prometheus, served: Sent, trained: raykube.TrainResult) -> None:
    queries = {f"{uid}: {panel.title}": expr
               for uid, (_, panels) in DASHBOARDS.items() for panel in panels
               for expr, _ in panel.queries if expr not in panel.device_only}
    queries.update({f"alert {a.name}": a.quantity for a in ALERTS})
    empty: dict[str, str] = {}

    def all_have_data() -> bool:
        empty.clear()
        empty.update({name: expr for name, expr in queries.items() if not prometheus.ever(expr)})
        return not empty

    wait_for(all_have_data, timeout=120, what="data for every panel and alert query",
             describe=lambda: f"no data for {sorted(empty)}")


def test_the_error_rate_alert_fires_for_the_failing_version(
        prometheus: Prometheus, served: Sent) -> None:
    # Requests now, so the rule's 2-minute rate sees them (the counted ones may be older).
    for i in range(30):
        post(served.url, {"instances": [[float(i % 10), 1.0, 2.0, 3.0]]})

    def firing() -> list[dict[str, Any]] | None:
        return [a for a in prometheus.get("/api/v1/alerts")["alerts"]
                if a["labels"]["alertname"] == "RaykubeServeErrorRate"
                and a["state"] == "firing"] or None

    alerts = wait_for(firing, timeout=120, what="RaykubeServeErrorRate to fire")
    assert {(a["labels"]["service"], a["labels"]["version"]) for a in alerts} == {
        ("metered", "v2")}, "only the failing version"
