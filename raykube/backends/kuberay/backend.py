"""The KubeRay backend: the spec as a ``ray.io/v1`` RayCluster on a Kubernetes cluster.

``up`` applies the rendered objects with server-side apply (a second ``up`` with a changed spec
patches them), then waits on the operator's own status conditions (``HeadPodReady``,
``RayClusterProvisioned``), failing fast on ``RayClusterReplicaFailure`` and, when time runs
out, saying why from the pods and their events (unschedulable for lack of GPUs, image pulls,
quota). ``scale`` patches one group's replicas (and, with the autoscaler on, names the pods to
remove in ``scaleStrategy.workersToDelete``, as the autoscaler does); ``down`` deletes the
RayCluster and waits until its pods are gone. The checkpoint PVC is kept across ``down``.
"""

from __future__ import annotations

import atexit
import os
import threading
from typing import Any

from raykube.backends.base import ClusterStatus, ClusterSummary, Endpoints, GroupStatus, NodeStatus
from raykube.backends.kuberay.kube import (
    RAY_GROUP,
    RAY_VERSION,
    KubeClients,
    get_ray_object,
    load_clients,
    translate,
)
from raykube.backends.kuberay.portforward import PortForward
from raykube.dashboard import DashboardClient
from raykube.errors import BackendError, RaykubeError, ScaleError
from raykube.progress import Progress
from raykube.render import MANAGED_BY, render_raycluster, render_storage_claim
from raykube.spec import SPEC_ENV, ClusterSpec, parse_spec
from raykube.waiting import wait_for

FIELD_MANAGER = "raykube"
CLUSTER_LABEL = "ray.io/cluster"
GROUP_POD_LABEL = "ray.io/group"
HEAD_PORTS = {"gcs": 6379, "dashboard": 8265, "client": 10001, "serve": 8000}
"""Ports of the head pod that clients use, by role (KubeRay's defaults)."""

_FORWARDS: dict[tuple[str, str, str], tuple[str, PortForward, Endpoints]] = {}
_FORWARDS_LOCK = threading.Lock()
"""This process's port-forwards to head pods, by (API server, namespace, cluster): opened by
the first workload that needs one, reused while the head pod is the same, closed at exit."""


def _close_forwards() -> None:
    with _FORWARDS_LOCK:
        for _, forward, _ in _FORWARDS.values():
            forward.close()
        _FORWARDS.clear()


atexit.register(_close_forwards)


def in_cluster() -> bool:
    """Whether this process runs in a pod, where the head service's DNS name resolves."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and os.path.exists(
        "/var/run/secrets/kubernetes.io/serviceaccount/token")


def _condition(cluster: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for condition in cluster.get("status", {}).get("conditions", []) or []:
        if condition.get("type") == kind:
            return dict(condition)
    return None


class KubeRayBackend:
    """Runs clusters as KubeRay RayClusters. See the module docstring."""

    name = "kuberay"

    def __init__(self, context: str | None = None, namespace: str | None = None) -> None:
        self._context = context
        self._namespace = namespace
        self._clients: KubeClients | None = None

    @property
    def kube(self) -> KubeClients:
        """API clients, loaded on first use."""
        if self._clients is None:
            self._clients = load_clients(self._context, self._namespace)
        return self._clients

    def _ns(self, spec: ClusterSpec | None = None) -> str:
        return self._namespace or (spec.namespace if spec else None) or self.kube.namespace

    # ---- raw objects ---------------------------------------------------------------------

    def _get(self, name: str, namespace: str) -> dict[str, Any]:
        return get_ray_object(self.kube, namespace, "rayclusters", name)

    def _pods(self, name: str, namespace: str) -> list[Any]:
        try:
            return list(self.kube.core.list_namespaced_pod(
                namespace, label_selector=f"{CLUSTER_LABEL}={name}").items)
        except Exception as exc:  # noqa: BLE001 - translated
            raise translate(exc, f"pods of RayCluster {namespace}/{name}") from exc

    def _apply(self, body: dict[str, Any], what: str) -> None:
        namespace = body["metadata"]["namespace"]
        name = body["metadata"]["name"]
        try:
            if body["kind"] == "RayCluster":
                self.kube.custom.patch_namespaced_custom_object(
                    RAY_GROUP, RAY_VERSION, namespace, "rayclusters", name, body,
                    field_manager=FIELD_MANAGER, force=True,
                    _content_type="application/apply-patch+yaml",
                )
            else:
                self.kube.core.patch_namespaced_persistent_volume_claim(
                    name, namespace, body, field_manager=FIELD_MANAGER, force=True,
                    _content_type="application/apply-patch+yaml",
                )
        except Exception as exc:  # noqa: BLE001 - translated
            raise translate(exc, what) from exc

    def _check_crd(self) -> None:
        try:
            self.kube.custom.list_cluster_custom_object(RAY_GROUP, RAY_VERSION, "rayclusters",
                                                        limit=1)
        except Exception as exc:  # noqa: BLE001 - translated
            error = translate(exc, "the ray.io/v1 RayCluster API")
            if "404" in error.message:
                raise BackendError(
                    "this Kubernetes cluster has no ray.io/v1 RayCluster API: the KubeRay "
                    "operator is not installed",
                    "install it: helm install kuberay-operator kuberay/kuberay-operator "
                    "(v1.5 or newer)",
                ) from exc
            raise error from exc

    # ---- diagnosis -----------------------------------------------------------------------

    def _why_stuck(self, name: str, namespace: str) -> str:
        reasons: list[str] = []
        pods = self._pods(name, namespace)
        joined = self._ray_nodes(name, namespace, pods)
        for pod in pods:
            pod_name = pod.metadata.name
            if pod.status.phase == "Running" and pod.status.pod_ip not in (joined or {}):
                reasons.append(self._not_joined(pod, namespace, head_answers=joined is not None))
            for status in (pod.status.container_statuses or []):
                waiting = status.state.waiting if status.state else None
                if waiting and waiting.reason in ("ErrImagePull", "ImagePullBackOff",
                                                  "CrashLoopBackOff", "CreateContainerError"):
                    reasons.append(f"pod {pod_name}: {waiting.reason}: {waiting.message or ''}")
            if pod.status.phase == "Pending":
                events = self.kube.core.list_namespaced_event(
                    namespace, field_selector=f"involvedObject.name={pod_name}").items
                failed = [e.message for e in events if e.reason == "FailedScheduling"]
                reasons.append(f"pod {pod_name} is Pending: {failed[-1] if failed else 'waiting'}")
        cluster = self._get(name, namespace)
        failure = _condition(cluster, "RayClusterReplicaFailure")
        if failure and failure.get("status") == "True":
            reasons.append(f"{failure.get('reason')}: {failure.get('message')}")
        return "; ".join(reasons) or "no pod reports a problem yet"

    def _not_joined(self, pod: Any, namespace: str, *, head_answers: bool) -> str:
        """Why a Running pod is not a Ray node: its container's restarts and last log line."""
        labels = pod.metadata.labels or {}
        role = "the head" if labels.get("ray.io/node-type") == "head" else \
            f"group {labels.get(GROUP_POD_LABEL, '?')!r}"
        what = "has not joined Ray" if head_answers else "runs, but the Ray dashboard on the " \
            "head does not answer"
        text = f"pod {pod.metadata.name} ({role}) {what}"
        container = pod.spec.containers[0].name
        for status in pod.status.container_statuses or []:
            last = status.last_state.terminated if status.last_state else None
            if status.name == container and status.restart_count:
                text += f"; container {container} restarted {status.restart_count} times" + (
                    f" (last exit code {last.exit_code})" if last else "")
        try:
            tail = self.kube.core.read_namespaced_pod_log(
                pod.metadata.name, namespace, container=container, tail_lines=1)
        except Exception:  # noqa: BLE001 - logs are a courtesy here
            tail = ""
        return text + (f"; last log line: {tail.strip()[:300]}" if tail.strip() else "")

    # ---- Backend interface ---------------------------------------------------------------

    def up(self, spec: ClusterSpec, *, timeout: float = 300.0) -> Endpoints:
        """Create or update the RayCluster (and its storage claim) and wait until it is ready.

        Raises:
            BackendError: no KubeRay, RBAC, unreachable API; SpecError: the server refused a
            field (422). ReadyTimeout: not ready in time, with the reason from pods/events.
        """
        progress = Progress()
        namespace = self._ns(spec)
        self._check_crd()
        claim = render_storage_claim(spec)
        cluster = render_raycluster(spec)
        cluster["metadata"]["namespace"] = namespace
        created_claim = False
        if claim:
            claim["metadata"]["namespace"] = namespace
            try:
                self.kube.core.read_namespaced_persistent_volume_claim(
                    claim["metadata"]["name"], namespace)
            except Exception:  # noqa: BLE001 - absent: this up creates it
                created_claim = True
            self._apply(claim, f"PersistentVolumeClaim {namespace}/{claim['metadata']['name']}")
        try:
            progress.say(f"RayCluster {namespace}/{spec.name}: applying")
            self._apply(cluster, f"RayCluster {namespace}/{spec.name}")
        except RaykubeError:
            if claim and created_claim:  # leave nothing half-created
                self.kube.core.delete_namespaced_persistent_volume_claim(
                    claim["metadata"]["name"], namespace)
            raise
        self._wait_ready(spec.name, namespace, timeout=timeout, progress=progress)
        progress.say(f"RayCluster {namespace}/{spec.name} is ready: every worker joined Ray")
        return self._service_endpoints(spec.name, namespace)

    def _wait_ready(self, name: str, namespace: str, *, timeout: float,
                    progress: Progress) -> ClusterStatus:
        latest: dict[str, Any] = {}  # the RayCluster each poll read, shared by both checks

        def probe() -> ClusterStatus | None:
            latest["cluster"] = self._get(name, namespace)
            status = self._status(name, namespace, latest["cluster"])
            groups = ", ".join(f"{g.name} {g.ready}/{g.replicas}" for g in status.groups)
            progress.say(f"RayCluster {namespace}/{name}: Ray head "
                         f"{'up' if status.head_ready else 'starting'}; workers joined: {groups}")
            return status if status.is_ready else None

        def fail_on() -> RaykubeError | None:
            failure = _condition(latest["cluster"], "RayClusterReplicaFailure")
            if failure and failure.get("status") == "True":
                return BackendError(
                    f"RayCluster {namespace}/{name}: {failure.get('reason')}: "
                    f"{failure.get('message')}",
                    "check resource quotas and the operator's log",
                )
            return None

        return wait_for(probe, timeout=timeout, what=f"RayCluster {namespace}/{name}",
                        fail_on=fail_on, describe=lambda: self._why_stuck(name, namespace),
                        interval=0.5,
                        hint="`raykube status --backend kuberay NAME` shows groups and pods")

    def _status(self, name: str, namespace: str,
                cluster: dict[str, Any] | None = None) -> ClusterStatus:
        cluster = cluster if cluster is not None else self._get(name, namespace)
        pods = self._pods(name, namespace)
        head_pod_ready = (_condition(cluster, "HeadPodReady") or {}).get("status") == "True"
        joined = self._ray_nodes(name, namespace, pods) if head_pod_ready else None

        def running(pod: Any) -> bool:
            """Running and joined Ray: its pod IP is an alive Ray node's."""
            return bool(pod.status.phase == "Running" and pod.metadata.deletion_timestamp is None
                        and joined is not None and pod.status.pod_ip in joined)

        head_ready = any(running(p) for p in pods
                         if (p.metadata.labels or {}).get("ray.io/node-type") == "head")
        groups = []
        for group in cluster["spec"].get("workerGroupSpecs", []):
            ready = sum(1 for p in pods if running(p)
                        and p.metadata.labels.get(GROUP_POD_LABEL) == group["groupName"])
            groups.append(GroupStatus(
                name=group["groupName"], replicas=int(group.get("replicas", 0)),
                min_replicas=int(group.get("minReplicas", 0)),
                max_replicas=int(group.get("maxReplicas", 0)), ready=ready,
            ))
        nodes = [
            NodeStatus(
                node_id=p.metadata.name,
                group="head" if p.metadata.labels.get("ray.io/node-type") == "head"
                else p.metadata.labels.get(GROUP_POD_LABEL, "?"),
                alive=running(p),
                resources=(joined or {}).get(p.status.pod_ip, {}),
            )
            for p in pods
        ]
        state = cluster.get("status", {}).get("state", "")
        return ClusterStatus(
            name=name, backend=self.name, head_ready=head_ready, groups=groups, nodes=nodes,
            endpoints=self._service_endpoints(name, namespace), message=state,
        )

    def status(self, name: str) -> ClusterStatus:
        """Groups (replicas and running pods), pods and head readiness from the RayCluster."""
        return self._status(name, self._ns())

    def wait(self, name: str, *, timeout: float = 300.0) -> ClusterStatus:
        """Wait until the head is ready and every group has its replicas running."""
        return self._wait_ready(name, self._ns(), timeout=timeout, progress=Progress())

    def scale(self, name: str, group: str, replicas: int, *, timeout: float = 300.0
              ) -> ClusterStatus:
        """Patch ``group``'s replicas (within its bounds) and wait until that many pods run.

        Raises:
            ScaleError: no such group, or ``replicas`` outside [minReplicas, maxReplicas].
        """
        namespace = self._ns()
        cluster = self._get(name, namespace)
        groups = cluster["spec"].get("workerGroupSpecs", [])
        index = next((i for i, g in enumerate(groups) if g["groupName"] == group), None)
        if index is None:
            known = ", ".join(g["groupName"] for g in groups) or "none"
            raise ScaleError(f"RayCluster {namespace}/{name} has no worker group {group!r} "
                             f"(groups: {known})", "pass one of those groups")
        low, high = int(groups[index].get("minReplicas", 0)), int(groups[index]["maxReplicas"])
        if not low <= replicas <= high:
            raise ScaleError(
                f"group {group!r} scales between minReplicas {low} and maxReplicas {high}; "
                f"{replicas} is outside", "pick a count inside the bounds")
        patch: list[dict[str, Any]] = [
            {"op": "test", "path": f"/spec/workerGroupSpecs/{index}/groupName", "value": group},
            {"op": "replace", "path": f"/spec/workerGroupSpecs/{index}/replicas",
             "value": replicas},
        ]
        running = sorted(
            (p for p in self._pods(name, namespace)
             if p.metadata.labels.get(GROUP_POD_LABEL) == group
             and p.metadata.deletion_timestamp is None),
            key=lambda p: p.metadata.creation_timestamp, reverse=True)
        if cluster["spec"].get("enableInTreeAutoscaling") and replicas < len(running):
            # With the autoscaler on, KubeRay removes only the pods named here, as Ray's
            # autoscaler names them; lowering replicas alone removes nothing.
            victims = [p.metadata.name for p in running[: len(running) - replicas]]
            patch.append({"op": "add", "path": f"/spec/workerGroupSpecs/{index}/scaleStrategy",
                          "value": {"workersToDelete": victims}})
        try:
            self.kube.custom.patch_namespaced_custom_object(
                RAY_GROUP, RAY_VERSION, namespace, "rayclusters", name, patch,
                _content_type="application/json-patch+json")
        except Exception as exc:  # noqa: BLE001 - translated
            raise translate(exc, f"RayCluster {namespace}/{name}") from exc
        progress = Progress()
        progress.say(f"RayCluster {namespace}/{name}: scaling {group!r} to {replicas}")
        return wait_for(
            lambda: (lambda s: s if s.group(group).ready == replicas else None)(
                self._status(name, namespace)),
            timeout=timeout, what=f"group {group!r} at {replicas} pods", interval=0.5,
            describe=lambda: self._why_stuck(name, namespace))

    def down(self, name: str, *, timeout: float = 120.0) -> None:
        """Delete the RayCluster and wait until its pods are gone (the storage claim stays)."""
        namespace = self._ns()
        try:
            self.kube.custom.delete_namespaced_custom_object(
                RAY_GROUP, RAY_VERSION, namespace, "rayclusters", name,
                propagation_policy="Foreground")
        except Exception as exc:  # noqa: BLE001 - translated
            raise translate(exc, f"RayCluster {namespace}/{name}") from exc
        Progress().say(f"RayCluster {namespace}/{name}: deleting; waiting for its pods")
        wait_for(lambda: not self._pods(name, namespace), timeout=timeout,
                 what=f"the pods of RayCluster {namespace}/{name} to go", interval=0.5)

    def _service_endpoints(self, name: str, namespace: str) -> Endpoints:
        """The head service's in-cluster addresses (what pods of the cluster use)."""
        service = f"{name}-head-svc.{namespace}.svc.cluster.local"
        return Endpoints(
            gcs_address=f"{service}:{HEAD_PORTS['gcs']}",
            dashboard_url=f"http://{service}:{HEAD_PORTS['dashboard']}",
            client_address=f"ray://{service}:{HEAD_PORTS['client']}",
            serve_url=f"http://{service}:{HEAD_PORTS['serve']}",
            auth_token_path=None,
        )

    def endpoints(self, name: str) -> Endpoints:
        """How this process reaches the cluster: the head service's DNS names from inside the
        Kubernetes cluster; from anywhere else (a laptop, a notebook, CI) 127.0.0.1 ports of a
        port-forward raykube opens through the API server, kept for this process and closed
        when it exits. There ``gcs_address`` is the Ray Client address (``ray://``): a driver
        outside the pod network attaches through the Ray Client server.

        Raises:
            ClusterNotFound: no such RayCluster; BackendError: no running head pod.
        """
        namespace = self._ns()
        self._get(name, namespace)
        if in_cluster():
            return self._service_endpoints(name, namespace)
        return self._shared_forward(name, namespace)

    def _head_pod(self, name: str, namespace: str, pods: list[Any] | None = None) -> Any:
        heads = [p for p in (pods if pods is not None else self._pods(name, namespace))
                 if (p.metadata.labels or {}).get("ray.io/node-type") == "head"
                 and p.status.phase == "Running" and p.metadata.deletion_timestamp is None]
        if not heads:
            raise BackendError(f"RayCluster {namespace}/{name} has no running head pod",
                               f"wait for it: `raykube status --kube {name}`")
        return heads[0]

    def _shared_forward(self, name: str, namespace: str, pods: list[Any] | None = None
                        ) -> Endpoints:
        """This process's forward to the head (see :meth:`endpoints`), reopened when the head
        pod was replaced."""
        head = self._head_pod(name, namespace, pods).metadata.name
        key = (str(self.kube.core.api_client.configuration.host), namespace, name)
        with _FORWARDS_LOCK:
            known = _FORWARDS.get(key)
            if known and known[0] == head:
                return known[2]
            if known:
                known[1].close()
            forward, endpoints = self._open_forward(namespace, head)
            _FORWARDS[key] = (head, forward, endpoints)
            return endpoints

    def _open_forward(self, namespace: str, head: str,
                      local_ports: dict[str, int] | None = None) -> tuple[PortForward, Endpoints]:
        fixed = {HEAD_PORTS[role]: port for role, port in (local_ports or {}).items()}
        forward = PortForward(self.kube.core, namespace, head, list(HEAD_PORTS.values()), fixed)
        forward.check(HEAD_PORTS["dashboard"])
        forward.start()
        local = {role: forward.local_port(port) for role, port in HEAD_PORTS.items()}
        return forward, Endpoints(
            gcs_address=f"ray://127.0.0.1:{local['client']}",
            dashboard_url=f"http://127.0.0.1:{local['dashboard']}",
            client_address=f"ray://127.0.0.1:{local['client']}",
            serve_url=f"http://127.0.0.1:{local['serve']}",
            auth_token_path=None,
        )

    def port_forward(self, name: str, local_ports: dict[str, int] | None = None
                     ) -> tuple[PortForward, Endpoints]:
        """Forward the head pod's GCS, dashboard, Ray Client and Serve ports to this machine.

        Args:
            local_ports: fixed local ports by role ('dashboard', 'client', 'serve', 'gcs');
                the rest are picked free.

        Returns:
            The started forward (close it when done) and endpoints on 127.0.0.1.

        Raises:
            ClusterNotFound: no such RayCluster; BackendError: no running head pod, a local
            port in use, or the API server refuses the port-forward.
        """
        namespace = self._ns()
        self._get(name, namespace)
        return self._open_forward(namespace, self._head_pod(name, namespace).metadata.name,
                                  local_ports)

    def _ray_nodes(self, name: str, namespace: str, pods: list[Any]
                   ) -> dict[str, dict[str, float]] | None:
        """The alive Ray nodes' resources by node IP, from the head's dashboard; None while it
        does not answer."""
        try:
            endpoints = (self._service_endpoints(name, namespace) if in_cluster()
                         else self._shared_forward(name, namespace, pods))
            nodes = DashboardClient(endpoints.dashboard_url, None, timeout=5).nodes()
        except RaykubeError:
            return None
        return {str(n["node_ip"]): dict(n.get("resources_total") or {})
                for n in nodes if n.get("state") == "ALIVE"}

    def list(self) -> list[ClusterSummary]:
        """RayClusters raykube manages in the namespace."""
        namespace = self._ns()
        selector = ",".join(f"{k}={v}" for k, v in MANAGED_BY.items())
        try:
            items = self.kube.custom.list_namespaced_custom_object(
                RAY_GROUP, RAY_VERSION, namespace, "rayclusters", label_selector=selector)
        except Exception as exc:  # noqa: BLE001 - translated
            raise translate(exc, f"RayClusters in {namespace}") from exc
        return [
            ClusterSummary(name=i["metadata"]["name"], backend=self.name,
                           state=i.get("status", {}).get("state", "pending") or "pending",
                           dashboard_url=None)
            for i in items.get("items", [])
        ]

    def spec_of(self, name: str) -> ClusterSpec:
        """The spec the RayCluster was rendered from (carried in the head's environment)."""
        import yaml

        cluster = self._get(name, self._ns())
        container = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
        text = next((e["value"] for e in container.get("env", []) if e["name"] == SPEC_ENV),
                    None)
        if text is None:
            raise BackendError(f"RayCluster {name} was not made by raykube (no {SPEC_ENV})")
        return parse_spec(yaml.safe_load(text), source=f"RayCluster {name}")
