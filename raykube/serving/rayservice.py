"""Services on Kubernetes as KubeRay RayServices: apply one from a serve spec, wait until it
serves, roll out a changed spec, delete it.

KubeRay owns the rollout: a change to ``serveConfigV2`` alone is applied in place to the running
cluster (Serve starts the new version's replicas before it moves traffic), a change to the
cluster makes a new cluster first (``upgradeStrategy: NewCluster``) and switches the serve
service over once it is ready. raykube applies the objects with server-side apply (a second
``apply`` is the rollout) and waits on KubeRay's status: the ``Ready`` condition, serve
endpoints, and every Serve application of the spec RUNNING on the active cluster with no
pending one, so "deployed" means requests are answered by the new config.

Example::

    status = raykube.apply_rayservice("jobs/digits.rayservice.yaml", namespace="prod")
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from raykube.backends.kuberay.backend import KubeRayBackend
from raykube.backends.kuberay.client import KubeClient, condition
from raykube.errors import ServeError
from raykube.progress import Progress
from raykube.render.cluster import render_storage_claim
from raykube.render.rayservice import (
    check_for_kubernetes,
    render_disruption_budget,
    render_rayservice,
)
from raykube.render.serve_config import render_applications, rollout_steps
from raykube.serving.rollout import RolloutResult, RouterReading, canary_of, run_rollout
from raykube.serving.service import get_json, router_user_config_of, weights_of
from raykube.specs.serve import ServeSpec, load_serve_spec
from raykube.waiting import wait_for


@dataclass(frozen=True)
class RayServiceStatus:
    """A RayService as KubeRay reports it."""

    namespace: str
    name: str
    ready: bool
    serve_endpoints: int
    cluster: str
    pending_cluster: str
    applications: dict[str, str]
    message: str
    last_rollout: RolloutResult | None = None
    """The service's last judged rollout, as its router's config keeps it."""

    def serves(self, applications: list[str]) -> bool:
        """Whether ``applications`` all run on the active cluster and nothing is pending."""
        return (self.ready and self.serve_endpoints > 0 and not self.pending_cluster
                and all(self.applications.get(a) == "RUNNING" for a in applications))


class RayServices:
    """Applies and follows RayServices in one namespace."""

    def __init__(self, kube: KubeClient, namespace: str | None = None) -> None:
        self.kube = kube
        self.namespace = namespace or kube.namespace

    def status(self, name: str) -> RayServiceStatus:
        """KubeRay's view of RayService ``name`` now."""
        raw = self.kube.get("RayService", name, self.namespace)
        status: dict[str, Any] = raw.get("status") or {}
        active = status.get("activeServiceStatus") or {}
        pending = status.get("pendingServiceStatus") or {}
        ready = condition(raw, "Ready") or {}
        return RayServiceStatus(
            namespace=self.namespace, name=name, ready=ready.get("status") == "True",
            serve_endpoints=int(status.get("numServeEndpoints") or 0),
            cluster=active.get("rayClusterName", ""),
            pending_cluster=pending.get("rayClusterName", ""),
            applications={app: str(info.get("status", "")) for app, info in
                          (active.get("applicationStatuses") or {}).items()},
            message=str(ready.get("message") or ready.get("reason") or ""),
            last_rollout=self._last_rollout(raw, name),
        )

    @staticmethod
    def _last_rollout(raw: dict[str, Any], name: str) -> RolloutResult | None:
        config = yaml.safe_load((raw.get("spec") or {}).get("serveConfigV2") or "{}") or {}
        router = next((a for a in config.get("applications") or [] if a.get("name") == name),
                      None)
        record = router_user_config_of(router).get("rollout")
        return RolloutResult.of(record) if record else None

    def _applications(self, name: str) -> list[dict[str, Any]]:
        """The Serve applications the RayService runs now (none when it does not exist)."""
        raw = self.kube.get("RayService", name, self.namespace, missing_ok=True)
        config = yaml.safe_load((raw.get("spec") or {}).get("serveConfigV2") or "{}") or {}
        return list(config.get("applications") or [])

    def apply(self, spec: ServeSpec, *, timeout: float) -> RayServiceStatus:
        """Create the RayService (and its PodDisruptionBudget) for ``spec``, or roll the running
        one out to it; return once every application of ``spec`` runs on the active cluster.

        A rollout goes through :func:`~raykube.serving.config.rollout_steps` (start the new
        versions, shift traffic, retire the old), one ``serveConfigV2`` per step, each awaited,
        so no request reaches a version that is not up.

        Raises:
            SpecError: a local workingDir or no cluster spec; BackendError/SpecError: the API
            refused an object; ServeError: an application failed to deploy;
            ReadyTimeout: a step did not finish in ``timeout``.
        """
        cluster = check_for_kubernetes(spec)
        claim = render_storage_claim(cluster)  # the checkpoint volume every pod mounts
        for body in (render_disruption_budget(spec, cluster), claim):
            if body:
                body["metadata"]["namespace"] = self.namespace
                self.kube.apply(body)
        running = self._applications(spec.name)
        router = next((a for a in running if a["name"] == spec.name), None)
        pair = canary_of(spec, weights_of(router))
        if pair:
            target = _RayServiceTarget(self, spec, timeout)
            try:
                run_rollout(target, spec, *pair)
            finally:
                target.close()
            return self.status(spec.name)
        return self._apply_state(spec, router_user_config_of(router).get("rollout"),
                                 timeout=timeout)

    def _apply_state(self, spec: ServeSpec, record: dict[str, Any] | None, *,
                     timeout: float) -> RayServiceStatus:
        """Run exactly ``spec``'s applications (with ``record`` kept in its router's config),
        through :func:`~raykube.render.serve_config.rollout_steps`, one ``serveConfigV2``
        per step, each awaited."""
        cluster = check_for_kubernetes(spec)
        status: RayServiceStatus | None = None
        steps = rollout_steps(self._applications(spec.name),
                              render_applications(
                                  spec, rollout=record,
                                  router_off_head=cluster.survives_head_loss), spec.name)
        for applications in steps:
            service = render_rayservice(spec, cluster, applications)
            service["metadata"]["namespace"] = self.namespace
            self.kube.apply(service)
            status = self.wait(spec.name, [a["name"] for a in applications], timeout=timeout)
        assert status is not None
        return status

    def dry_run(self, spec: ServeSpec) -> list[str]:
        """Have the API server check every object :meth:`apply` would make for ``spec`` (the
        RayService as its rollout ends, its PodDisruptionBudget and storage claim) and store
        nothing. Returns ``Kind namespace/name`` of each."""
        cluster = check_for_kubernetes(spec)
        bodies = [b for b in (render_disruption_budget(spec, cluster),
                              render_storage_claim(cluster)) if b]
        bodies.append(render_rayservice(spec, cluster, render_applications(
            spec, router_off_head=cluster.survives_head_loss)))
        for body in bodies:
            body["metadata"]["namespace"] = self.namespace
            self.kube.apply(body, dry_run=True)
        return [f"{b['kind']} {self.namespace}/{b['metadata']['name']}" for b in bodies]

    def wait(self, name: str, wanted: list[str], *, timeout: float) -> RayServiceStatus:
        """Wait until RayService ``name`` runs the Serve applications ``wanted``, and only
        those, on its active cluster."""
        progress = Progress()

        def serving() -> RayServiceStatus | None:
            status = self.status(name)
            apps = ", ".join(f"{a} {s}" for a, s in sorted(status.applications.items()))
            pending = f" (pending {status.pending_cluster})" if status.pending_cluster else ""
            progress.say(f"RayService {self.namespace}/{name}: "
                         f"{'ready' if status.ready else 'not ready'}, cluster "
                         f"{status.cluster or '-'}{pending}, {status.serve_endpoints} serve "
                         f"endpoints; apps: {apps or '-'}")
            return status if status.serves(wanted) and set(status.applications) == set(wanted) \
                else None

        def failed() -> ServeError | None:
            status = self.status(name)
            broken = {a: s for a, s in status.applications.items() if s == "DEPLOY_FAILED"}
            if broken and not status.pending_cluster:
                return ServeError(f"RayService {self.namespace}/{name}: application "
                                  f"{', '.join(broken)} failed to deploy: {status.message}",
                                  f"`kubectl -n {self.namespace} describe rayservice "
                                  f"{name}`; the Serve logs are on the head pod")
            return None

        return wait_for(serving, timeout=timeout, fail_on=failed, interval=1.0,
                        what=f"RayService {self.namespace}/{name} to serve {wanted}")

    def delete(self, name: str) -> None:
        """Delete the RayService (KubeRay deletes its clusters) and its disruption budget."""
        self.kube.delete("RayService", name, self.namespace)
        self.kube.delete("PodDisruptionBudget", f"{name}-workers", self.namespace,
                         missing_ok=True)


def apply_rayservice(spec: ServeSpec | str | Path, *, namespace: str | None = None,
                     timeout: float = 600.0) -> RayServiceStatus:
    """Deploy a serve spec as a KubeRay RayService on a cluster of its own (the spec's
    ``cluster:``), or roll the running one out to it (see :meth:`RayServices.apply`).

    Raises:
        SpecError: a local workingDir, no cluster spec, or invalid specs (nothing was applied).
        BackendError: the API refused an object; ServeError: an application failed to deploy;
        ReadyTimeout: a step did not finish in ``timeout``.

    Example::

        raykube.apply_rayservice("jobs/digits.rayservice.yaml", namespace="prod")
    """
    if not isinstance(spec, ServeSpec):
        spec = load_serve_spec(spec)
    services = RayServices(KubeClient.load(None, namespace))
    return services.apply(spec, timeout=timeout)


def dry_run_rayservice(spec: ServeSpec | str | Path, *, namespace: str | None = None
                       ) -> list[str]:
    """Have the API server check what :func:`apply_rayservice` would make, storing nothing
    (see :meth:`RayServices.dry_run`).

    Raises:
        SpecError: invalid specs or a field the server refused; BackendError: RBAC, no
        KubeRay, unreachable API.
    """
    if not isinstance(spec, ServeSpec):
        spec = load_serve_spec(spec)
    return RayServices(KubeClient.load(None, namespace)).dry_run(spec)


class _RayServiceTarget:
    """A rollout's target on a RayService: each state a ``serveConfigV2`` KubeRay applies in
    place; the router's counts read through a port-forward to its active cluster's head."""

    def __init__(self, services: RayServices, spec: ServeSpec, timeout: float) -> None:
        self.services, self.spec, self.timeout = services, spec, timeout
        self._forward: Any = None
        self._url: str | None = None

    def apply(self, spec: ServeSpec, record: dict[str, Any] | None) -> None:
        self.services._apply_state(spec, record, timeout=self.timeout)

    def _router(self) -> dict[str, Any]:
        if self._url is None:
            cluster = self.services.status(self.spec.name).cluster
            self._forward, endpoints = KubeRayBackend(
                namespace=self.services.namespace, kube=self.services.kube
            ).port_forward(cluster, {})
            self._url = endpoints.serve_url.rstrip("/") + self.spec.route
        return get_json(self._url)

    def read(self) -> RouterReading:
        return RouterReading.of(self._router())

    def close(self) -> None:
        if self._forward is not None:
            self._forward.close()
