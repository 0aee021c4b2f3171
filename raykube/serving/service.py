"""Deploy, inspect and delete services on a cluster, through its Serve REST API.

Serve's REST API takes the whole cluster's config at once, so :func:`deploy` reads what runs,
replaces only this service's applications and keeps every other one as it is. A change of
versions is applied in three steps, each awaited, so that no request fails during a rollout:

1. *start*: every version of the new spec runs (old ones too), traffic shares unchanged;
2. *shift*: the router takes the new traffic shares (in place: Serve ``user_config``);
3. *retire*: versions no longer in the spec are deleted.

A first deploy that fails is deleted again; a rollout that fails puts the previous
applications back, so nothing half-deployed is left behind.
"""

from __future__ import annotations

import copy
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raykube import frameworks
from raykube.cluster import Cluster
from raykube.dashboard import DashboardClient
from raykube.errors import BackendError, RaykubeError, ServeError, SpecError
from raykube.output import html_table
from raykube.progress import Progress
from raykube.serving.rollout import RUNNING as RUNNING_ROLLOUT
from raykube.serving.rollout import STOPPED as STOPPED_ROLLOUT
from raykube.serving.rollout import RolloutResult, RouterReading, canary_of, run_rollout
from raykube.render.serve_config import (
    MODEL_DEPLOYMENT,
    HA_PROXY_LOCATION,
    ROUTER_IMPORT_PATH,
    belongs_to,
    render_applications,
    rollout_steps,
)
from raykube.specs.serve import ServeSpec, load_serve_spec, model_app_name
from raykube.target import ClusterRef, resolve
from raykube.waiting import wait_for

APPLICATIONS_PATH = "/api/serve/applications/"
REQUEST_TIMEOUT_S = 90.0
"""Longer than the 60 s the dashboard gives Serve's proxies to start inside the first PUT."""
PUT_TIMEOUT_S = 240.0
"""How long a PUT is re-sent while the dashboard answers a transient error."""
RUNNING = "RUNNING"
FAILED_STATES = ("DEPLOY_FAILED", "UNHEALTHY")


@dataclass(frozen=True)
class Replica:
    """One Serve replica of a version."""

    replica_id: str
    state: str
    pid: int | None
    node_id: str | None
    actor_id: str | None


@dataclass(frozen=True)
class VersionStatus:
    """One version of a service: its traffic share and its replicas."""

    version: str
    weight: int
    status: str
    replicas: list[Replica] = field(default_factory=list)

    @property
    def running(self) -> int:
        """How many replicas serve requests now."""
        return sum(1 for r in self.replicas if r.state == RUNNING)


@dataclass(frozen=True)
class ServiceStatus:
    """A service as Serve reports it."""

    name: str
    status: str
    url: str
    versions: list[VersionStatus]
    message: str = ""
    last_rollout: RolloutResult | None = None
    """The service's last judged rollout (running, promoted, rolled back or stopped)."""
    proxies: dict[str, str] = field(default_factory=dict)
    """Serve's HTTP proxies, shared by every service of the cluster: node id to state
    (``HEALTHY``, ``STARTING``, ``DRAINING``, ...). A node's replicas answer through its own
    proxy, so requests keep being served there while another node (the head) is down."""

    @property
    def is_running(self) -> bool:
        """Router and every version RUNNING."""
        return self.status == RUNNING and all(v.status == RUNNING for v in self.versions)

    def version(self, name: str) -> VersionStatus:
        """The status of version ``name``."""
        for version in self.versions:
            if version.version == name:
                return version
        raise KeyError(name)


class _ServeApi:
    """The Serve REST API of one cluster, and how it runs there."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        endpoints = cluster.endpoints
        self.client = DashboardClient(endpoints.dashboard_url, endpoints.auth_token_path,
                                      timeout=REQUEST_TIMEOUT_S)
        self.serve_url = endpoints.serve_url.rstrip("/")
        self.serve_host = cluster.capabilities.serve_host
        self.http_port = endpoints.serve_head_port or int(self.serve_url.rsplit(":", 1)[1])
        self.survives_head_loss = cluster.spec is not None and cluster.spec.survives_head_loss
        self.proxy_location = (HA_PROXY_LOCATION if self.survives_head_loss
                               else cluster.capabilities.serve_proxy_location)

    def details(self) -> dict[str, Any]:
        return self.client.request("GET", APPLICATIONS_PATH) or {}

    def app_configs(self) -> dict[str, dict[str, Any]]:
        apps = self.details().get("applications") or {}
        return {name: app["deployed_app_config"] for name, app in apps.items()
                if app.get("deployed_app_config")}

    def app_names(self) -> list[str]:
        """Every application Serve still has, deleting ones included."""
        return list(self.details().get("applications") or {})

    def put(self, applications: list[dict[str, Any]]) -> None:
        details = self.details()
        http = details.get("http_options") or {}
        config = {
            "proxy_location": details.get("proxy_location") or self.proxy_location,
            "http_options": {"host": http.get("host") or self.serve_host,
                             "port": http.get("port") or self.http_port},
            "applications": applications,
        }
        # The PUT is declarative (the whole config), so re-sending it is safe. The first one
        # on a cluster starts Serve; on a loaded machine Serve's proxies can miss the
        # dashboard's 60 s start deadline (HTTP 500, TimeoutError), and the next PUT finds
        # them started.
        wait_for(lambda: self.client.request("PUT", APPLICATIONS_PATH, config) or True,
                 timeout=PUT_TIMEOUT_S, what="Serve to take the applications' config")


def _replicas(app: dict[str, Any], deployment: str) -> list[Replica]:
    replicas = (app.get("deployments") or {}).get(deployment, {}).get("replicas") or []
    return [Replica(r.get("replica_id", ""), r.get("state", ""), r.get("pid"),
                    r.get("node_id"), r.get("actor_id")) for r in replicas]


def _status(api: _ServeApi, name: str, route: str | None = None) -> ServiceStatus | None:
    details = api.details()
    apps = details.get("applications") or {}
    router = apps.get(name)
    if router is None:
        return None
    config = router.get("deployed_app_config") or {}
    user_config = router_user_config_of(config)
    weights = user_config.get("weights", {})
    versions = []
    for app_name, app in sorted(apps.items()):
        if app_name != name and belongs_to(app_name, name):
            version = app_name.split("--", 1)[1]
            versions.append(VersionStatus(version, int(weights.get(version, 0)),
                                          app.get("status", ""), _replicas(app, MODEL_DEPLOYMENT)))
    route = route or config.get("route_prefix") or f"/{name}"
    messages = [a.get("message", "") for n, a in apps.items() if belongs_to(n, name)]
    record = user_config.get("rollout")
    proxies = {node: proxy.get("status", "") for node, proxy in
               (details.get("proxies") or {}).items()}
    return ServiceStatus(name, router.get("status", ""), api.serve_url + route, versions,
                         "\n".join(m for m in messages if m),
                         RolloutResult.of(record) if record else None, proxies)


def _failure_text(app: dict[str, Any]) -> str:
    """Why an app failed: its message and the end of each failed deployment's (the
    exception the user's code raised, without Serve's traceback)."""
    parts = [app.get("message", "").strip()]
    for name, deployment in (app.get("deployments") or {}).items():
        lines = [ln for ln in (deployment.get("message") or "").splitlines() if ln.strip()]
        if lines:
            parts.append(f"{name}: " + "\n".join(lines[-3:]))
    return "\n".join(p for p in parts if p)[-2000:]


def _wait_applied(api: _ServeApi, service: str, wanted: list[dict[str, Any]],
                  progress: Progress, timeout: float) -> ServiceStatus:
    """Wait until every app of ``wanted`` runs with exactly that config, and no other app of
    ``service`` is left; raise ServeError as soon as one fails."""
    mine = {a["name"]: a for a in wanted if belongs_to(a["name"], service)}
    failure: list[str] = []

    def probe() -> ServiceStatus | None:
        apps = api.details().get("applications") or {}
        pending = []
        for name, app in apps.items():
            if not belongs_to(name, service):
                continue
            status = app.get("status", "")
            if status in FAILED_STATES:
                failure.append(f"{name}: {status}: {_failure_text(app)}")
                return None
            if name not in mine:
                pending.append(f"{name} deleting")
            elif app.get("deployed_app_config") != mine[name] or status != RUNNING:
                running = sum(r.state == RUNNING for d in (app.get("deployments") or {})
                              for r in _replicas(app, d))
                pending.append(f"{name} {status} ({running} replicas running)")
        pending += [f"{name} not yet known" for name in mine if name not in apps]
        progress.say(f"service {service}: " + ("; ".join(pending) or "running"))
        return None if pending else _status(api, service, mine[service].get("route_prefix"))

    def failed() -> ServeError | None:
        if not failure:
            return None
        return ServeError(f"service {service} failed to deploy: {failure[0]}",
                          "fix the predictor or checkpoint named above; "
                          "`raykube serve status` shows every version")

    return wait_for(probe, timeout=timeout, what=f"service {service} running",
                    interval=0.5, fail_on=failed,
                    hint="`raykube serve status NAME` shows what Serve is waiting for")


def _check_before_deploy(spec: ServeSpec, cluster: Cluster) -> None:
    """Refuse what cannot work before anything is sent: code or checkpoints that are missing."""
    spec.check_predictor_code(f"service {spec.name}")
    if cluster.capabilities.shares_driver_filesystem:  # else the path is the nodes' to check
        for version in spec.versions:
            if "://" not in version.checkpoint and not Path(version.checkpoint).exists():
                raise SpecError(
                    f"service {spec.name}: version {version.version}'s checkpoint "
                    f"{version.checkpoint} does not exist",
                    "use a checkpoint a training run wrote (TrainResult.checkpoint); on the CLI: "
                    "--checkpoint VERSION=PATH",
                )


class Service:
    """A handle on a deployed service."""

    def __init__(self, name: str, cluster: Cluster) -> None:
        self.name = name
        self.cluster = cluster
        self._api = _ServeApi(cluster)
        self._url: str | None = None  # the route does not change while the service runs
        self.last_rollout: RolloutResult | None = None
        """The judged rollout the deploy that returned this handle ran, if it ran one."""

    def __repr__(self) -> str:
        return f"Service({self.name!r}, cluster={self.cluster.name!r})"

    def _repr_html_(self) -> str:
        """A notebook's view: the endpoint and each version's share and replicas."""
        try:
            status = self.status()
        except RaykubeError as exc:
            return html_table(f"service {self.name}", [("state", f"unknown: {exc.message}")])
        return html_table(
            f"service {self.name}", [("state", status.status), ("url", status.url),
                                     ("cluster", self.cluster.name)],
            (["version", "weight %", "state", "replicas running"],
             [[v.version, v.weight, v.status, v.running] for v in status.versions]))

    def status(self) -> ServiceStatus:
        """What Serve reports about the router and every version.

        Raises:
            ServeError: the service is not deployed on this cluster.
        """
        status = _status(self._api, self.name)
        if status is None:
            raise ServeError(f"no service {self.name!r} on cluster {self.cluster.name!r}",
                             "`raykube serve status` lists the services there")
        self._url = status.url
        return status

    @property
    def url(self) -> str:
        """The HTTP endpoint: POST ``{"instances": [...]}`` here (read from Serve once, not
        on every prediction)."""
        return self._url or self.status().url

    def predict(self, instances: list[Any], *, timeout: float = 30.0) -> dict[str, Any]:
        """POST ``instances`` and return the JSON answer (``predictions`` and ``version``).

        Raises:
            ServeError: the service answered with an error (its message included).
        """
        return post_json(self.url, {"instances": instances}, timeout=timeout)

    def delete(self, *, timeout: float = 120.0) -> None:
        """Delete the router and every version; other services keep running."""
        configs = self._api.app_configs()
        if self.name not in configs:
            raise ServeError(f"no service {self.name!r} on cluster {self.cluster.name!r}",
                             "`raykube serve status` lists the services there")
        self._api.put([c for n, c in configs.items() if not belongs_to(n, self.name)])
        wait_for(lambda: not any(belongs_to(n, self.name) for n in self._api.app_names()),
                 timeout=timeout, what=f"service {self.name} deleted")


def post_json(url: str, body: Any, *, timeout: float = 30.0) -> dict[str, Any]:
    """POST JSON and decode the answer; an HTTP error becomes ServeError with its text."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:500]
        raise ServeError(f"{url} answered HTTP {exc.code}: {detail}") from exc


def deploy(
    spec: ServeSpec | str | Path,
    cluster: ClusterRef = None,
    *,
    timeout: float = 300.0,
) -> Service:
    """Deploy (or roll out a new state of) the service ``spec`` describes.

    Args:
        spec: a :class:`ServeSpec` or the path of a serve spec file.
        cluster: a handle, a cluster's name (``kuberay:NAMESPACE/NAME`` on Kubernetes), or
            None for the one local cluster running.
        timeout: seconds for each rollout step.

    Returns:
        A :class:`Service` handle.

    Raises:
        SpecError: invalid spec, missing code or checkpoint (nothing was deployed).
        ServeError: a version failed to start (the previous state is put back, as it is
            when the deploy is interrupted).

    Example::

        service = raykube.deploy("jobs/digits.serve.yaml", "local")
        service.predict([[0.0] * 64])     # {"predictions": [...], "version": "v1"}
    """
    if not isinstance(spec, ServeSpec):
        spec = load_serve_spec(spec)
    handle = resolve(cluster).known("serve deploy")
    _check_before_deploy(spec, handle)
    api = _ServeApi(handle)
    progress = Progress()
    working_dir = None
    if spec.uses_local_working_dir():
        progress.say(f"service {spec.name}: uploading {spec.working_dir}")
        working_dir = handle.upload_working_dir(str(spec.working_dir))
    # A framework with its own environment (MXNet) runs its replicas in it where the nodes
    # can run this machine's interpreters; elsewhere the image provides it.
    py_executable = (frameworks.get(spec.framework).python()
                     if handle.capabilities.runs_host_python_envs else None)

    before = api.app_configs()
    others = [c for n, c in before.items() if not belongs_to(n, spec.name)]
    mine_before = {n: c for n, c in before.items() if belongs_to(n, spec.name)}
    target = _LocalServe(api, handle, working_dir, py_executable, progress, timeout)
    result = None
    try:
        pair = canary_of(spec, weights_of(mine_before.get(spec.name)))
        if pair:
            result = run_rollout(target, spec, *pair, progress=progress)
        else:  # a plain deploy keeps the record of the last judged rollout
            target.apply(spec, router_user_config_of(mine_before.get(spec.name)).get("rollout"))
    except (ServeError, KeyboardInterrupt):  # a failed or an interrupted rollout
        progress.say(f"service {spec.name}: putting back what ran before")
        api.put(others + list(mine_before.values()))
        wait_for(lambda: {n for n in api.app_names() if belongs_to(n, spec.name)}
                 == set(mine_before), timeout=timeout, what=f"service {spec.name} put back")
        raise
    service = Service(spec.name, handle)
    service.last_rollout = result
    return service


def router_user_config_of(router: dict[str, Any] | None) -> dict[str, Any]:
    """The user_config of a service's router app config (its shares and its last rollout's
    record; empty when there is no router)."""
    deployments = (router or {}).get("deployments") or [{}]
    return dict(deployments[0].get("user_config") or {})


def weights_of(router: dict[str, Any] | None) -> dict[str, int]:
    """The traffic shares a router app config runs with (none when there is no router)."""
    weights = router_user_config_of(router).get("weights") or {}
    return {str(v): int(w) for v, w in weights.items()}


class _LocalServe:
    """A rollout's target on a cluster raykube reaches over Serve's REST API (see
    :class:`~raykube.serving.rollout.RolloutTarget`)."""

    def __init__(self, api: _ServeApi, cluster: Cluster, working_dir: str | None,
                 py_executable: str | None, progress: Progress, timeout: float) -> None:
        self.api, self.cluster = api, cluster
        self.working_dir, self.py_executable = working_dir, py_executable
        self.progress, self.timeout = progress, timeout
        self._url: str | None = None

    def apply(self, spec: ServeSpec, record: dict[str, Any] | None) -> None:
        before = self.api.app_configs()
        new_apps = render_applications(spec, working_dir=self.working_dir,
                                       py_executable=self.py_executable, rollout=record,
                                       router_off_head=self.api.survives_head_loss)
        for applications in rollout_steps(list(before.values()), new_apps, spec.name):
            self.api.put(applications)
            status = _wait_applied(self.api, spec.name, applications, self.progress,
                                   self.timeout)
            self._url = status.url

    def _router(self) -> dict[str, Any]:
        assert self._url is not None, "applied before it is read"
        return get_json(self._url)

    def read(self) -> RouterReading:
        return RouterReading.of(self._router())


def get_json(url: str, *, timeout: float = 30.0) -> dict[str, Any]:
    """GET JSON; an HTTP error becomes ServeError with its text, a refused connection a
    retryable BackendError (a proxy restarting)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        raise ServeError(f"{url} answered HTTP {exc.code}: "
                         f"{exc.read().decode(errors='replace')[:500]}") from exc
    except OSError as exc:
        raise BackendError(f"{url} did not answer: {exc}", retryable=True) from exc


def get_service(name: str, cluster: ClusterRef = None) -> Service:
    """A handle on deployed service ``name``.

    Raises:
        ServeError: no such service on the cluster.
    """
    service = Service(name, resolve(cluster).known("a service"))
    service.status()
    return service


def list_services(cluster: ClusterRef = None) -> list[ServiceStatus]:
    """Every raykube service on the cluster."""
    api = _ServeApi(resolve(cluster).known("serve status"))
    names = [n for n, c in api.app_configs().items()
             if c.get("import_path") == ROUTER_IMPORT_PATH]
    return [s for s in (_status(api, n) for n in names) if s is not None]


def step_in(name: str, cluster: ClusterRef = None, *, action: str) -> RolloutResult:
    """A person stepping into a running judged rollout of service ``name``: ``abort`` gives
    the stable version all traffic and retires the canary; ``promote`` gives the canary all
    traffic and retires the stable version. The rollout driver sees the shares change under
    it and stops. Each change is applied as every rollout step is (shares first, then the
    version goes), so it fails no request.

    Raises:
        ServeError: no such service, or no rollout of it is running.
    """
    if action not in ("abort", "promote"):
        raise ServeError(f"{action!r} is not a rollout action", "use abort or promote")
    handle = resolve(cluster).known("serve rollout")
    api = _ServeApi(handle)
    configs = api.app_configs()
    router = configs.get(name)
    if router is None:
        raise ServeError(f"no service {name!r} on cluster {handle.name!r}",
                         "`raykube serve status` lists the services there")
    record = router_user_config_of(router).get("rollout")
    if not record or record.get("verdict") != RUNNING_ROLLOUT:
        raise ServeError(f"no rollout of service {name!r} is running",
                         f"`raykube serve rollout status {name}` shows the last one")
    result = RolloutResult.of(record)
    keep, drop = ((result.stable, result.canary) if action == "abort"
                  else (result.canary, result.stable))
    result.verdict, result.ended = STOPPED_ROLLOUT, time.time()
    result.reason = f"{action} by a person: {keep} gets all traffic, {drop} goes"
    shifted = copy.deepcopy(router)
    shifted["deployments"][0]["user_config"] = {"weights": {keep: 100},
                                                "rollout": result.as_record()}
    dropped = model_app_name(name, drop)
    others = [c for n, c in configs.items() if n not in (name, dropped)]
    progress = Progress()
    for applications in (others + [shifted, configs[dropped]], others + [shifted]):
        api.put(applications)
        _wait_applied(api, name, applications, progress, timeout=300)
    return result
