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

    services = RayServices(load_clients(None, "prod"))
    status = services.apply(load_serve_spec("jobs/digits.rayservice.yaml"), timeout=600)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from raykube.backends.kuberay.kube import (
    RAY_GROUP,
    RAY_VERSION,
    KubeClients,
    get_ray_object,
    translate,
)
from raykube.errors import ServeError
from raykube.progress import Progress
from raykube.render import render_storage_claim
from raykube.serving.config import render_applications, rollout_steps
from raykube.serving.rayservice import (
    check_for_kubernetes,
    render_disruption_budget,
    render_rayservice,
)
from raykube.serving.spec import ServeSpec
from raykube.waiting import wait_for

_APPLY = {"field_manager": "raykube", "force": True,
          "_content_type": "application/apply-patch+yaml"}
"""Server-side apply: a second apply with a changed spec patches what the first made."""


@dataclass(frozen=True)
class RayServiceStatus:
    """A RayService as KubeRay reports it."""

    name: str
    ready: bool
    serve_endpoints: int
    cluster: str
    pending_cluster: str
    applications: dict[str, str]
    message: str

    def serves(self, applications: list[str]) -> bool:
        """Whether ``applications`` all run on the active cluster and nothing is pending."""
        return (self.ready and self.serve_endpoints > 0 and not self.pending_cluster
                and all(self.applications.get(a) == "RUNNING" for a in applications))


class RayServices:
    """Applies and follows RayServices in one namespace."""

    def __init__(self, kube: KubeClients, namespace: str | None = None) -> None:
        self.kube = kube
        self.namespace = namespace or kube.namespace

    def status(self, name: str) -> RayServiceStatus:
        """KubeRay's view of RayService ``name`` now."""
        raw = get_ray_object(self.kube, self.namespace, "rayservices", name)
        status: dict[str, Any] = raw.get("status") or {}
        active = status.get("activeServiceStatus") or {}
        pending = status.get("pendingServiceStatus") or {}
        conditions = {c.get("type"): c for c in status.get("conditions") or []}
        ready = conditions.get("Ready", {})
        return RayServiceStatus(
            name=name, ready=ready.get("status") == "True",
            serve_endpoints=int(status.get("numServeEndpoints") or 0),
            cluster=active.get("rayClusterName", ""),
            pending_cluster=pending.get("rayClusterName", ""),
            applications={app: str(info.get("status", "")) for app, info in
                          (active.get("applicationStatuses") or {}).items()},
            message=str(ready.get("message") or ready.get("reason") or ""),
        )

    def _applications(self, name: str) -> list[dict[str, Any]]:
        """The Serve applications the RayService runs now (none when it does not exist)."""
        raw = get_ray_object(self.kube, self.namespace, "rayservices", name, missing_ok=True)
        config = yaml.safe_load((raw.get("spec") or {}).get("serveConfigV2") or "{}") or {}
        return list(config.get("applications") or [])

    def _send(self, body: dict[str, Any], what: str, send: Any) -> None:
        body["metadata"]["namespace"] = self.namespace
        try:
            send(body)
        except Exception as exc:  # noqa: BLE001 - translated
            raise translate(exc, what) from exc

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
        from kubernetes import client

        cluster = check_for_kubernetes(spec)
        budget = render_disruption_budget(spec, cluster)
        policy = client.PolicyV1Api(self.kube.core.api_client)
        self._send(budget, f"PodDisruptionBudget {self.namespace}/{budget['metadata']['name']}",
                   lambda body: policy.patch_namespaced_pod_disruption_budget(
                       body["metadata"]["name"], self.namespace, body, **_APPLY))
        claim = render_storage_claim(cluster)
        if claim:  # the checkpoint volume every pod of the service's clusters mounts
            self._send(claim, f"PersistentVolumeClaim {self.namespace}/{claim['metadata']['name']}",
                       lambda body: self.kube.core.patch_namespaced_persistent_volume_claim(
                           body["metadata"]["name"], self.namespace, body, **_APPLY))
        status: RayServiceStatus | None = None
        steps = rollout_steps(self._applications(spec.name), render_applications(spec),
                              spec.name)
        for applications in steps:
            service = render_rayservice(spec, cluster, applications)
            self._send(service, f"RayService {self.namespace}/{spec.name}",
                       lambda body: self.kube.custom.patch_namespaced_custom_object(
                           RAY_GROUP, RAY_VERSION, self.namespace, "rayservices", spec.name,
                           body, **_APPLY))
            status = self.wait(spec.name, [a["name"] for a in applications], timeout=timeout)
        assert status is not None
        return status

    def wait(self, name: str, wanted: list[str], *, timeout: float) -> RayServiceStatus:
        """Wait until RayService ``name`` runs the Serve applications ``wanted``, and only
        those, on its active cluster."""
        progress = Progress()
        said: list[str] = []

        def serving() -> RayServiceStatus | None:
            status = self.status(name)
            apps = ", ".join(f"{a} {s}" for a, s in sorted(status.applications.items()))
            line = (f"RayService {self.namespace}/{name}: "
                    f"{'ready' if status.ready else 'not ready'}, cluster "
                    f"{status.cluster or '-'}{' (pending ' + status.pending_cluster + ')' if status.pending_cluster else ''}"
                    f", {status.serve_endpoints} serve endpoints; apps: {apps or '-'}")
            if not said or said[-1] != line:
                said.append(line)
                progress.say(line)
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
        try:
            self.kube.custom.delete_namespaced_custom_object(
                RAY_GROUP, RAY_VERSION, self.namespace, "rayservices", name)
        except Exception as exc:  # noqa: BLE001 - translated
            raise translate(exc, f"RayService {self.namespace}/{name}") from exc
