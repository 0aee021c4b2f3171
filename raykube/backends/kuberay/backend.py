"""The KubeRay backend: the spec as a ``ray.io/v1`` RayCluster on a Kubernetes cluster.

``up`` applies the rendered objects with server-side apply (a second ``up`` with a changed spec
patches them), then waits until Ray itself is ready (head answers, every worker's pod is an
alive Ray node), failing fast on ``RayClusterReplicaFailure`` and, when time runs out, saying
why from the pods and their events (unschedulable for lack of GPUs, image pulls, quota).
``scale`` patches one group's replicas (and, with the autoscaler on, names the pods to remove
in ``scaleStrategy.workersToDelete``, as the autoscaler does); ``down`` deletes the RayCluster
and waits until its pods are gone. The checkpoint PVC is kept across ``down``.

The objects are read through :class:`~raykube.backends.kuberay.client.KubeClient`; what they
mean is worked out by the pure functions of :mod:`~raykube.backends.kuberay.state`.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import os
import secrets
import shutil
import threading
from pathlib import Path
from typing import Any

import psutil
import yaml

from raykube.backends.base import (
    CLIENT_ROLES,
    Capabilities,
    ClusterStatus,
    ClusterSummary,
    DriverKind,
    Endpoints,
    ScrapeTargets,
    node_matches,
)
from raykube.backends.kuberay import state
from raykube.backends.kuberay.client import KubeClient
from raykube.backends.kuberay.portforward import PortForward
from raykube.dashboard import DashboardClient
from raykube.errors import BackendError, ClusterNotFound, RaykubeError, SpecError
from raykube.private import make_private_dir, raykube_home, write_private
from raykube.progress import Progress
from raykube.render.cluster import (
    TOKEN_KEY,
    render_network_policy,
    render_raycluster,
    render_storage_claim,
)
from raykube.render.meta import HEAD_PORTS, MANAGED_BY, metadata
from raykube.render.monitoring import CLUSTER_OWNER_LABEL, MONITORING_KINDS, render_monitoring
from raykube.specs.cluster import SPEC_ENV, ClusterSpec, parse_spec
from raykube.waiting import wait_for

CAPABILITIES = Capabilities(
    shares_driver_filesystem=False,
    runs_host_python_envs=False,
    single_node_ip=False,
    serve_proxy_location="EveryNode",
    serve_host="0.0.0.0",
    direct_ports=False,
    service_clusters=True,
)
"""Pods have their own filesystems, images and IPs."""

_FORWARDS: dict[tuple[str, str, str], tuple[str, PortForward, Endpoints]] = {}
_FORWARDS_LOCK = threading.Lock()
"""This process's port-forwards to head pods, by (API server, namespace, cluster): opened by
the first workload that needs one, reused while the head pod is the same, closed at exit."""


_TOKEN_FILES: set[Path] = set()
"""Token files this process wrote for its clients of KubeRay clusters; removed at exit."""


def _close_forwards() -> None:
    with _FORWARDS_LOCK:
        for _, forward, _ in _FORWARDS.values():
            forward.close()
        _FORWARDS.clear()
    for token in _TOKEN_FILES:
        token.unlink(missing_ok=True)


def auth_secret(cluster: dict[str, Any]) -> tuple[str, str] | None:
    """``(Secret, key)`` holding a RayCluster's Ray token, read from its head container's
    ``RAY_AUTH_TOKEN`` (any RayCluster with token auth in that form, raykube's or not); None
    also for a RayCluster that is not there (``{}``)."""
    head = ((cluster.get("spec") or {}).get("headGroupSpec") or {}).get("template") or {}
    containers = (head.get("spec") or {}).get("containers") or [{}]
    for var in containers[0].get("env") or []:
        ref = (var.get("valueFrom") or {}).get("secretKeyRef")
        if var.get("name") == "RAY_AUTH_TOKEN" and ref:
            return str(ref["name"]), str(ref.get("key", TOKEN_KEY))
    return None


def token_secret_body(name: str, namespace: str) -> dict[str, Any]:
    """A new Secret with a random Ray token (never printed, never in a manifest)."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": metadata(name, namespace),
            "stringData": {TOKEN_KEY: secrets.token_hex(32)}}


atexit.register(_close_forwards)


def in_cluster() -> bool:
    """Whether this process runs in a pod, where the head service's DNS name resolves."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and os.path.exists(
        "/var/run/secrets/kubernetes.io/serviceaccount/token")


def service_endpoints(name: str, namespace: str) -> Endpoints:
    """The head service's in-cluster addresses (what pods of the cluster use)."""
    return Endpoints.at(f"{name}-head-svc.{namespace}.svc.cluster.local", HEAD_PORTS)


class KubeRayBackend:
    """Runs clusters as KubeRay RayClusters. See the module docstring."""

    name = "kuberay"
    capabilities = CAPABILITIES

    def __init__(self, context: str | None = None, namespace: str | None = None, *,
                 kube: KubeClient | None = None) -> None:
        self._context = context
        self._namespace = namespace
        self._kube = kube

    @property
    def kube(self) -> KubeClient:
        """The API client, loaded on first use."""
        if self._kube is None:
            self._kube = KubeClient.load(self._context, self._namespace)
        return self._kube

    def _ns(self, spec: ClusterSpec | None = None) -> str:
        return self._namespace or (spec.namespace if spec else None) or self.kube.namespace

    def _get(self, name: str, namespace: str) -> dict[str, Any]:
        return self.kube.get("RayCluster", name, namespace)

    def _pods(self, name: str, namespace: str) -> list[dict[str, Any]]:
        return self.kube.list("Pod", namespace, labels=f"{state.CLUSTER_LABEL}={name}")

    # ---- diagnosis -----------------------------------------------------------------------

    def _why_stuck(self, name: str, namespace: str) -> str:
        pods = self._pods(name, namespace)
        joined = self._ray_nodes(name, namespace, pods)
        failures: dict[str, str] = {}
        last_lines: dict[str, str] = {}
        for pod in pods:
            pod_name = pod["metadata"]["name"]
            phase = (pod.get("status") or {}).get("phase")
            if phase == "Pending":
                events = self.kube.list("Event", namespace,
                                        fields=f"involvedObject.name={pod_name}")
                messages = [e.get("message", "") for e in events
                            if e.get("reason") == "FailedScheduling"]
                if messages:
                    failures[pod_name] = messages[-1]
            elif phase == "Running" and state.pod_ip(pod) not in (joined or {}):
                last_lines[pod_name] = self._last_log_line(pod, namespace)
        return state.why_stuck(self._get(name, namespace), pods, joined, failures, last_lines)

    def _last_log_line(self, pod: dict[str, Any], namespace: str) -> str:
        try:
            return self.kube.log(pod["metadata"]["name"], namespace,
                                 container=pod["spec"]["containers"][0]["name"], tail_lines=1)
        except RaykubeError:  # logs are a courtesy here
            return ""

    # ---- Backend interface ---------------------------------------------------------------

    def up(self, spec: ClusterSpec, *, timeout: float = 300.0) -> Endpoints:
        """Create or update the RayCluster (and its storage claim) and wait until it is ready.

        Raises:
            BackendError: no KubeRay, RBAC, unreachable API; SpecError: the server refused a
            field (422). ReadyTimeout: not ready in time, with the reason from pods/events.
        """
        progress = Progress()
        namespace = self._ns(spec)
        self._require_kuberay()
        created: list[tuple[str, str]] = []  # what this up made, to take back if it fails
        try:
            for body, made_here in self._objects(spec, namespace):
                if body["kind"] == "RayCluster":
                    progress.say(f"RayCluster {namespace}/{spec.name}: applying")
                self.kube.apply(body)
                if made_here:
                    created.append((body["kind"], body["metadata"]["name"]))
        except (RaykubeError, KeyboardInterrupt):
            for kind, name in reversed(created):  # leave nothing half-created
                self.kube.delete(kind, name, namespace, missing_ok=True)
            raise
        self._wait_ready(spec.name, namespace, timeout=timeout, progress=progress)
        progress.say(f"RayCluster {namespace}/{spec.name} is ready: every worker joined Ray")
        return service_endpoints(spec.name, namespace)

    def _objects(self, spec: ClusterSpec, namespace: str
                 ) -> list[tuple[dict[str, Any], bool]]:
        """Every object ``up`` applies, in order, in ``namespace``, each with whether applying
        it makes it (so a failed ``up`` takes it back): the token Secret when it is missing,
        the storage claim, the RayCluster, the NetworkPolicy.

        Raises:
            SpecError: ``authOptions.secretName`` names a Secret that does not exist.
        """
        objects: list[tuple[dict[str, Any], bool]] = []
        secret = spec.token_secret
        if secret and not self.kube.get("Secret", secret, namespace, missing_ok=True):
            if spec.auth_options.secret_name:
                raise SpecError(
                    f"authOptions.secretName {secret}: no such Secret in {namespace}",
                    f"create it: kubectl create secret generic {secret} -n {namespace} "
                    f"--from-literal={TOKEN_KEY}=\"$(openssl rand -hex 32)\"",
                )
            objects.append((token_secret_body(secret, namespace), True))
        claim = render_storage_claim(spec)
        if claim:
            exists = self.kube.get("PersistentVolumeClaim", claim["metadata"]["name"],
                                   namespace, missing_ok=True)
            objects.append((claim, not exists))
        objects.append((render_raycluster(spec), False))
        if spec.network_policy:
            objects.append((render_network_policy(spec), False))
        objects += [(body, False) for body in render_monitoring(spec)]
        for body, _ in objects:
            body["metadata"]["namespace"] = namespace
        return objects

    def dry_run(self, spec: ClusterSpec) -> list[str]:
        """Send every object ``up`` would apply as a server-side dry run: the API server
        validates, defaults and admits each (CRD schemas, webhooks, RBAC, quotas) and stores
        nothing. Returns ``Kind namespace/name`` of each.

        Raises:
            SpecError: the server refused a field (422); BackendError: RBAC, no KubeRay,
            unreachable API.
        """
        namespace = self._ns(spec)
        self._require_kuberay()
        checked = []
        for body, _ in self._objects(spec, namespace):
            self.kube.apply(body, dry_run=True)
            checked.append(f"{body['kind']} {namespace}/{body['metadata']['name']}")
        return checked

    def _require_kuberay(self) -> None:
        if not self.kube.has_api("RayCluster"):
            raise BackendError(
                "this Kubernetes cluster has no ray.io/v1 RayCluster API: the KubeRay "
                "operator is not installed",
                "install it: helm install kuberay-operator kuberay/kuberay-operator "
                "(v1.5 or newer)",
            )

    def _wait_ready(self, name: str, namespace: str, *, timeout: float,
                    progress: Progress) -> ClusterStatus:
        latest: dict[str, Any] = {}  # the RayCluster each poll read, shared by both checks

        def probe() -> ClusterStatus | None:
            latest["cluster"] = self._get(name, namespace)
            status = self._status(name, namespace, latest["cluster"])
            groups = ", ".join(f"{g.name} {g.ready}/{g.replicas}" for g in status.groups)
            progress.say(f"RayCluster {namespace}/{name}: Ray head "
                         f"{'up' if status.head_ready else 'starting'}; workers joined: {groups}",
                         step=(sum(min(g.ready, g.replicas) for g in status.groups),
                               sum(g.replicas for g in status.groups)))
            return status if status.is_ready else None

        def fail_on() -> RaykubeError | None:
            failure = state.condition(latest["cluster"], "RayClusterReplicaFailure")
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
        joined = (self._ray_nodes(name, namespace, pods)
                  if state.condition_true(cluster, "HeadPodReady") else None)
        return state.cluster_status(name, cluster, pods, joined,
                                    service_endpoints(name, namespace))

    def status(self, name: str) -> ClusterStatus:
        """Groups (replicas and pods that joined Ray), pods and head readiness."""
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
        patch = state.scale_patch(name, self._get(name, namespace), group, replicas,
                                  self._pods(name, namespace))
        self.kube.json_patch("RayCluster", name, patch, namespace)
        Progress().say(f"RayCluster {namespace}/{name}: scaling {group!r} to {replicas}")
        return wait_for(
            lambda: (lambda s: s if s.group(group).ready == replicas else None)(
                self._status(name, namespace)),
            timeout=timeout, what=f"group {group!r} at {replicas} pods", interval=0.5,
            describe=lambda: self._why_stuck(name, namespace))

    def down(self, name: str, *, timeout: float = 120.0, purge: bool = False) -> None:
        """Delete the RayCluster and wait until it and its pods are gone (with foreground
        deletion the RayCluster goes last; the storage claim stays). The pods' logs are kept
        on this machine first (:meth:`logs` reads them after), unless ``purge``."""
        namespace = self._ns()
        kept = self._kept_logs(name, namespace)
        if purge:
            shutil.rmtree(kept, ignore_errors=True)
        else:
            self._write_pod_logs(name, namespace, make_private_dir(kept))
        secret = auth_secret(self.kube.get("RayCluster", name, namespace, missing_ok=True))
        self.kube.delete("RayCluster", name, namespace, propagation="Foreground")
        Progress().say(f"RayCluster {namespace}/{name}: deleting; waiting for its pods")
        wait_for(lambda: not self._pods(name, namespace) and not self.kube.get(
                     "RayCluster", name, namespace, missing_ok=True),
                 timeout=timeout, what=f"RayCluster {namespace}/{name} and its pods to go",
                 interval=0.5)
        # What raykube made beside it (a Secret a user named is theirs, and stays).
        for kind, other in (("Secret", secret[0] if secret else None),
                            ("NetworkPolicy", f"{name}-ray")):
            found = self.kube.get(kind, other, namespace, missing_ok=True) if other else {}
            labels = (found.get("metadata") or {}).get("labels") or {}
            if other and all(labels.get(k) == v for k, v in MANAGED_BY.items()):
                self.kube.delete(kind, other, namespace, missing_ok=True)
        self._delete_monitoring(name, namespace)

    def _delete_monitoring(self, name: str, namespace: str) -> None:
        """The monitors, rules and dashboards raykube made for cluster ``name`` (by label;
        a kind whose CRD this Kubernetes lacks has none)."""
        selector = ",".join([*(f"{k}={v}" for k, v in MANAGED_BY.items()),
                             f"{CLUSTER_OWNER_LABEL}={name}"])
        for kind in MONITORING_KINDS:
            try:
                found = self.kube.list(kind, namespace, labels=selector)
            except BackendError as exc:
                if "(404)" in exc.message:  # no Prometheus operator here: none were made
                    continue
                raise
            for item in found:
                self.kube.delete(kind, item["metadata"]["name"], namespace, missing_ok=True)

    @staticmethod
    def _kept_logs(name: str, namespace: str) -> Path:
        """Where ``down`` keeps a RayCluster's pod logs: ``$RAYKUBE_HOME/kube-logs/NS/NAME``."""
        root = make_private_dir(make_private_dir(raykube_home() / "kube-logs") / namespace)
        return root / name

    def _write_pod_logs(self, name: str, namespace: str, out_dir: Path,
                        node: str = "all") -> dict[str, Path]:
        """Each pod's Ray container log into ``out_dir/<head|worker-POD>.log``."""
        written = {}
        for pod in self._pods(name, namespace):
            pod_name = pod["metadata"]["name"]
            node_name = "head" if state.is_head(pod) else f"worker-{pod_name}"
            if not node_matches(node_name, node):
                continue
            containers = [c["name"] for c in pod["spec"]["containers"]]
            try:
                text = self.kube.log(pod_name, namespace, container=containers[0])
            except BackendError as exc:
                text = f"(no log: {exc.message})\n"
            target = out_dir / f"{node_name}.log"
            write_private(target, text)
            written[node_name] = target
        return written

    def logs(self, name: str, out_dir: Path, *, node: str = "all") -> dict[str, Path]:
        """The pods' logs of running RayCluster ``name``, else those ``down`` kept (see
        :meth:`Backend.logs`)."""
        namespace = self._ns()
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if self.kube.get("RayCluster", name, namespace, missing_ok=True):
            return self._write_pod_logs(name, namespace, out, node)
        kept = self._kept_logs(name, namespace)
        found = sorted(kept.glob("*.log")) if kept.is_dir() else []
        if not found:
            raise ClusterNotFound(
                f"RayCluster {namespace}/{name} neither exists nor left logs here",
                "`raykube list --kube` shows the RayClusters of the namespace",
            )
        copied = {}
        for source in found:
            if node_matches(source.stem, node):
                copied[source.stem] = Path(shutil.copy2(source, out / source.name))
        return copied

    def endpoints(self, name: str) -> Endpoints:
        """How this process reaches the cluster: the head service's DNS names from inside the
        Kubernetes cluster; from anywhere else (a laptop, a notebook, CI) 127.0.0.1 ports of a
        port-forward raykube opens through the API server, kept for this process and closed
        when it exits. There a driver attaches through the Ray Client server
        (``driver_address`` is ``ray://``): it is outside the pod network.

        Raises:
            ClusterNotFound: no such RayCluster; BackendError: no running head pod.
        """
        namespace = self._ns()
        self._get(name, namespace)
        if in_cluster():
            return service_endpoints(name, namespace)
        return self._shared_forward(name, namespace)

    def scrape_targets(self, name: str) -> ScrapeTargets:
        """Prometheus in the Kubernetes cluster finds the pods itself, through monitors."""
        raise SpecError(
            f"RayCluster {name}: on Kubernetes Prometheus finds the pods through the Prometheus "
            "operator's monitors, not a scrape file",
            "`raykube up --kube --pod-monitor` (or `raykube manifest --pod-monitor SPEC`), "
            "with monitoring.release set to your Prometheus release",
        )

    def _head_pod(self, name: str, namespace: str,
                  pods: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        heads = [p for p in (pods if pods is not None else self._pods(name, namespace))
                 if state.is_head(p) and state.is_live(p)]
        if not heads:
            raise BackendError(f"RayCluster {namespace}/{name} has no running head pod",
                               f"wait for it: `raykube status --kube {name}`")
        return heads[0]

    def _shared_forward(self, name: str, namespace: str,
                        pods: list[dict[str, Any]] | None = None) -> Endpoints:
        """This process's forward to the head (see :meth:`endpoints`), reopened when the head
        pod was replaced."""
        head = self._head_pod(name, namespace, pods)["metadata"]["name"]
        key = (self.kube.host, namespace, name)
        with _FORWARDS_LOCK:
            known = _FORWARDS.get(key)
            if known and known[0] == head:
                return known[2]
            if known:
                known[1].close()
            forward, endpoints = self._open_forward(namespace, head,
                                                    token=self._token_file(name, namespace))
            _FORWARDS[key] = (head, forward, endpoints)
            return endpoints

    def _token_file(self, name: str, namespace: str) -> str | None:
        """A file holding the cluster's Ray token for this process's clients (Ray's CLI and
        Ray Client take a token file), 0600 in this user's raykube folder, removed when the
        process exits; None when the cluster has no token auth.

        Raises:
            BackendError: the token's Secret cannot be read (RBAC: get on secrets).
        """
        ref = auth_secret(self._get(name, namespace))
        if ref is None:
            return None
        data = (self.kube.get("Secret", ref[0], namespace).get("data") or {}).get(ref[1])
        if not data:
            raise BackendError(f"Secret {namespace}/{ref[0]} holds no {ref[1]!r}: the cluster's "
                               "Ray token", f"put the token there under {ref[1]!r}")
        folder = make_private_dir(raykube_home() / "tokens")
        for stale in folder.glob("*-*"):  # left by processes that did not exit cleanly
            pid = stale.name.rsplit("-", 1)[1]
            if pid.isdigit() and not psutil.pid_exists(int(pid)):
                stale.unlink(missing_ok=True)
        digest = hashlib.sha256(f"{self.kube.host}|{namespace}|{name}".encode()).hexdigest()
        path = folder / f"{digest[:16]}-{os.getpid()}"  # this process's: others remove theirs
        write_private(path, base64.b64decode(data).decode())
        _TOKEN_FILES.add(path)
        return str(path)

    def _open_forward(self, namespace: str, head: str,
                      local_ports: dict[str, int] | None = None, *,
                      token: str | None = None) -> tuple[PortForward, Endpoints]:
        remote = {role: HEAD_PORTS[role] for role in CLIENT_ROLES}
        fixed = {remote[role]: port for role, port in (local_ports or {}).items()}
        forward = PortForward(self.kube, namespace, head, list(remote.values()), fixed)
        forward.check(remote["dashboard"])
        forward.start()
        local = {role: forward.local_port(port) for role, port in remote.items()}
        return forward, Endpoints.at("127.0.0.1", local, driver=DriverKind.RAY_CLIENT,
                                     auth_token_path=token)

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
        return self._open_forward(namespace, self._head_pod(name, namespace)["metadata"]["name"],
                                  local_ports, token=self._token_file(name, namespace))

    def _ray_nodes(self, name: str, namespace: str, pods: list[dict[str, Any]]) -> state.Joined:
        """The alive Ray nodes' resources by node IP, from the head's dashboard; None while it
        does not answer."""
        try:
            endpoints = (service_endpoints(name, namespace) if in_cluster()
                         else self._shared_forward(name, namespace, pods))
            nodes = DashboardClient(endpoints.dashboard_url, endpoints.auth_token_path,
                                    timeout=5).nodes()
        except RaykubeError:
            return None
        return {str(n["node_ip"]): dict(n.get("resources_total") or {})
                for n in nodes if n.get("state") == "ALIVE"}

    def list(self, *, all_namespaces: bool = False) -> list[ClusterSummary]:
        """Every RayCluster in the namespace (or in all), whoever made it: raykube, Helm,
        kubectl-ray, a GitOps tool, or KubeRay itself for a RayJob or RayService."""
        found = self.kube.list("RayCluster", None if all_namespaces else self._ns(),
                               all_namespaces=all_namespaces)
        return [
            ClusterSummary(name=i["metadata"]["name"], backend=self.name,
                           state=state.summary_state(i), dashboard_url=None,
                           namespace=i["metadata"].get("namespace"))
            for i in found
        ]

    def spec_of(self, name: str) -> ClusterSpec | None:
        """The spec the RayCluster was rendered from (carried in the head's environment);
        None for a RayCluster raykube did not make."""
        cluster = self._get(name, self._ns())
        container = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
        text = next((e.get("value") for e in container.get("env", [])
                     if e.get("name") == SPEC_ENV), None)
        if text is None:
            return None
        return parse_spec(yaml.safe_load(text), source=f"RayCluster {name}")
