"""The pod runner: plays the kubelet for the kwok nodes of ``../shared/k8s``, so the pods KubeRay
creates run their real commands (Ray's included) on this machine.

Test support, not part of raykube. For every pod bound to a node in the namespaces it watches:
``pod-net add`` with the pod's IP; its volumes made (``kubelet.prepare_volume``); init containers
run to completion in order (sidecars, ``restartPolicy: Always``, kept running), then every
container with its ``command``/``args`` and environment as a kubelet resolves them
(``kubelet.container_env``), each in the pod's sandbox through ``container_entry.py``; its own
``/tmp/ray`` (a container's writable layer, where Ray keeps its sockets); output written as CRI
log lines and served by the pod's kwok Logs object, with Exec and PortForward objects beside it.
The project's own Python environment is the image: its ``bin`` leads ``PATH``.

When a container exits, Kubernetes sees it: with ``restartPolicy: Always`` (or ``OnFailure`` and
a non-zero code) it is restarted and ``restartCount``/``lastState`` go to the pod's status;
otherwise the pod ends ``Succeeded`` or ``Failed`` with each container's exit code, which is how
a Job (a RayJob's submitter) completes. A deleted pod's processes are killed and its sandbox
removed. The cluster hosts file follows the EndpointSlices: each Service name resolves to a ready
endpoint's pod IP.

By hand: ``python tests/support/kube_dev.py`` starts the control plane with this runner.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from kubernetes import client, config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kubelet import (  # noqa: E402 - test support run as a script
    KubeletError,
    Mount,
    container_argv,
    container_env,
    container_mounts,
    prepare_volume,
)

POD_NET = Path(__file__).resolve().parents[3] / "shared" / "k8s" / "pod-net"
ENTRY = Path(__file__).resolve().parent / "container_entry.py"
HOSTS_MARKER = "# raykube-k8s: in-cluster names"
KWOK = ("kwok.x-k8s.io", "v1alpha1")
IMAGE_HOME = "/home/ray"
"""HOME in the pods, as in rayproject/ray images; each container gets its own."""
RAY_PORTS = (6379, 8265, 10001, 8000, 8080, 52365)
"""Ports forwarded for every pod besides its declared ones (Ray's well-known ports)."""


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _log(message: str) -> None:
    print(f"[podrunner {time.strftime('%H:%M:%S')}] {message}", flush=True)


class ApiLookup:
    """:class:`kubelet.Lookup` over the API server."""

    def __init__(self, core: client.CoreV1Api) -> None:
        self._core = core

    def config_map(self, namespace: str, name: str) -> dict[str, str] | None:
        try:
            return dict(self._core.read_namespaced_config_map(name, namespace).data or {})
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def secret(self, namespace: str, name: str) -> dict[str, str] | None:
        try:
            data = self._core.read_namespaced_secret(name, namespace).data or {}
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    def token(self, pod: dict[str, Any], audience: str | None, seconds: int) -> str:
        metadata = pod["metadata"]
        body: dict[str, Any] = {"spec": {
            "expirationSeconds": max(seconds, 600),
            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": metadata["name"],
                               "uid": metadata["uid"]},
        }}
        if audience:
            body["spec"]["audiences"] = [audience]
        answer = self._core.create_namespaced_service_account_token(
            pod["spec"].get("serviceAccountName") or "default", metadata["namespace"], body)
        return str(answer.status.token)

    def claim_path(self, namespace: str, claim: str) -> str:
        pvc = self._core.read_namespaced_persistent_volume_claim(claim, namespace)
        if not pvc.spec.volume_name:
            raise KubeletError(f"PersistentVolumeClaim {namespace}/{claim} is not bound")
        volume = self._core.read_persistent_volume(pvc.spec.volume_name)
        source = volume.spec.host_path or volume.spec.local
        if source is None:
            raise KubeletError(f"PersistentVolume {volume.metadata.name} has no host path")
        Path(source.path).mkdir(parents=True, exist_ok=True)
        return str(source.path)


class Container:
    """One running container process and the threads copying its output to its CRI log."""

    def __init__(self, name: str, argv: list[str], log_file: Path) -> None:
        self.name = name
        self.restarts = 0
        self.started_at = _now()
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        for stream, pipe in (("stdout", self.process.stdout), ("stderr", self.process.stderr)):
            threading.Thread(target=self._copy, args=(pipe, stream, log_file), daemon=True,
                             name=f"log-{name}-{stream}").start()

    @staticmethod
    def _copy(pipe: Any, stream: str, log_file: Path) -> None:
        with log_file.open("ab", buffering=0) as out:
            for line in iter(pipe.readline, b""):
                stamp = datetime.datetime.now(datetime.UTC).strftime(
                    "%Y-%m-%dT%H:%M:%S.%f000Z")
                out.write(f"{stamp} {stream} F ".encode() + line.rstrip(b"\n") + b"\n")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class PodSandbox(threading.Thread):
    """Runs one pod from sandbox creation to deletion (see the module docstring)."""

    def __init__(self, runner: PodRunner, pod: dict[str, Any]) -> None:
        metadata = pod["metadata"]
        super().__init__(daemon=True, name=f"pod-{metadata['namespace']}-{metadata['name']}")
        self.runner = runner
        self.pod = pod
        self.key = metadata["uid"].replace("-", "")[:12]
        self.namespace = metadata["namespace"]
        self.name = metadata["name"]
        self.root = runner.state / "pods" / f"{self.namespace}_{self.name}_{self.key}"
        self.stopping = threading.Event()
        self.containers: dict[str, Container] = {}
        self.statuses: dict[str, dict[str, Any]] = {}
        self._last_state: dict[str, Any] = {}

    # ---- set-up --------------------------------------------------------------------------

    def _kwok_objects(self, names: list[str]) -> None:
        ip = self.pod["status"]["podIP"]
        ports = sorted({p["containerPort"] for c in self.pod["spec"]["containers"]
                        for p in c.get("ports", []) or []} | set(RAY_PORTS))
        owner = {"apiVersion": "v1", "kind": "Pod", "name": self.name,
                 "uid": self.pod["metadata"]["uid"]}
        bodies = {
            "logs": {"logs": [{"containers": [n], "logsFile": str(self.root / f"{n}.log"),
                               "follow": True} for n in names]},
            "execs": {"execs": [{"containers": names, "local": {"workDir": str(self.root)}}]},
            "portforwards": {"forwards": [{"ports": [p], "target": {"port": p, "address": ip}}
                                          for p in ports]},
        }
        kinds = {"logs": "Logs", "execs": "Exec", "portforwards": "PortForward"}
        for plural, spec in bodies.items():
            body = {"apiVersion": "/".join(KWOK), "kind": kinds[plural],
                    "metadata": {"name": self.name, "namespace": self.namespace,
                                 "ownerReferences": [owner]},
                    "spec": spec}
            try:
                self.runner.custom.create_namespaced_custom_object(
                    *KWOK, self.namespace, plural, body)
            except client.ApiException as exc:
                if exc.status != 409:
                    raise

    def _container_spec(self, container: dict[str, Any], volumes: dict[str, Mount]) -> Path:
        spec = self.pod["spec"]
        env = container_env(self.pod, container, self.runner.lookup, self.runner.base_env(
            self.name), self.runner.allocatable(spec["nodeName"]))
        mounts = container_mounts(container, volumes)
        # The image's writable layer, where it matters: Ray's session dir (sockets) and HOME
        # (~/.ray/auth_token must not leak in from this machine's own home).
        for target in ("/tmp/ray", IMAGE_HOME):
            if not any(m.target == target for m in mounts):
                writable = self.root / "rootfs" / container["name"] / target.strip("/")
                writable.mkdir(parents=True, exist_ok=True)
                mounts.append(Mount(target, str(writable)))
        path = self.root / f"{container['name']}.json"
        path.write_text(json.dumps({
            "argv": container_argv(container, env), "env": env,
            "workingDir": container.get("workingDir") or "/",
            "mounts": [{"target": m.target, "source": m.source, "readOnly": m.read_only,
                        "tmpfsSize": m.tmpfs_size} for m in mounts],
        }))
        return path

    def _start(self, container: dict[str, Any], volumes: dict[str, Mount]) -> Container:
        spec_file = self._container_spec(container, volumes)
        argv = [str(POD_NET), "exec", self.key, sys.executable, str(ENTRY), str(spec_file)]
        return Container(container["name"], argv, self.root / f"{container['name']}.log")

    # ---- status --------------------------------------------------------------------------

    def _patch_status(self, extra: dict[str, Any] | None = None) -> None:
        """Send every container's status as Kubernetes should see it (the list is atomic)."""
        current = self.runner.core.read_namespaced_pod_status(self.name, self.namespace)
        listed = {s.name: self.runner.api.sanitize_for_serialization(s)
                  for s in current.status.container_statuses or []}
        for name, change in self.statuses.items():
            listed.setdefault(name, {"name": name, "image": "", "imageID": ""}).update(change)
        body = {"status": {"containerStatuses": list(listed.values()), **(extra or {})}}
        self.runner.core.patch_namespaced_pod_status(self.name, self.namespace, body)

    def _exited(self, container: Container, code: int) -> None:
        reason = "Completed" if code == 0 else "Error"
        terminated = {"exitCode": code, "reason": reason, "finishedAt": _now(),
                      "startedAt": container.started_at}
        self.statuses[container.name] = {"state": {"terminated": terminated}, "ready": False,
                                         "restartCount": container.restarts}
        self._last_state = terminated

    # ---- the pod's life ------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # noqa: BLE001 - one bad pod must not stop the runner
            _log(f"{self.namespace}/{self.name}: {type(exc).__name__}: {exc}")
        finally:
            self.kill()

    def kill(self) -> None:
        """Kill every process of the pod and remove its sandbox."""
        for container in list(self.containers.values()):
            container.kill()
        with self.runner.netns_lock:
            subprocess.run([str(POD_NET), "del", self.key], capture_output=True)

    def _run(self) -> None:
        spec = self.pod["spec"]
        self.root.mkdir(parents=True, exist_ok=True)
        with self.runner.netns_lock:  # concurrent `ip netns add` calls race on /run/netns
            added = subprocess.run([str(POD_NET), "add", self.key, self.pod["status"]["podIP"]],
                                   capture_output=True, text=True)
        if added.returncode != 0:
            raise KubeletError(f"pod-net add: {added.stderr.strip()}")
        init = spec.get("initContainers", []) or []
        mains = spec["containers"]
        self._kwok_objects([c["name"] for c in init + mains])
        volumes_root = self.root / "volumes"
        volumes = {v["name"]: prepare_volume(self.pod, v, volumes_root, self.runner.lookup)
                   for v in spec.get("volumes", []) or []}
        policy = spec.get("restartPolicy", "Always")
        for container in init:
            if container.get("restartPolicy") == "Always":  # a sidecar: runs beside the rest
                self.containers[container["name"]] = self._start(container, volumes)
                continue
            while not self.stopping.is_set():
                code = self._wait(self._start(container, volumes))
                if code is None:
                    return
                if code == 0:
                    break
                if policy == "Never":
                    self._end(failed=True, codes={container["name"]: code})
                    return
                if self.stopping.wait(1.0):
                    return
        if self.stopping.is_set():
            return
        for container in mains:
            self.containers[container["name"]] = self._start(container, volumes)
        _log(f"{self.namespace}/{self.name}: started {', '.join(c['name'] for c in mains)} "
             f"at {self.pod['status']['podIP']}")
        self._supervise(mains, volumes, policy)

    def _wait(self, container: Container) -> int | None:
        """The exit code of an init container, or None when the pod is being stopped."""
        self.containers[container.name] = container
        while not self.stopping.wait(0.2):
            code = container.process.poll()
            if code is not None:
                del self.containers[container.name]
                return code
        container.kill()
        return None

    def _supervise(self, mains: list[dict[str, Any]], volumes: dict[str, Mount],
                   policy: str) -> None:
        by_name = {c["name"]: c for c in mains}
        codes: dict[str, int] = {}
        while not self.stopping.wait(0.2):
            for name, container in list(self.containers.items()):
                code = container.process.poll()
                if code is None or name in codes:
                    continue
                if name not in by_name:  # a sidecar: always restarted, with the same backoff
                    if self.stopping.wait(min(8.0, 2.0 ** container.restarts)):
                        return
                    restarted = self._start(self._init_spec(name), volumes)
                    restarted.restarts = container.restarts + 1
                    self.containers[name] = restarted
                    continue
                code = code if code >= 0 else 128 - code
                self._exited(container, code)
                if policy == "Always" or (policy == "OnFailure" and code != 0):
                    _log(f"{self.namespace}/{self.name}: {name} exited {code}; restarting")
                    self._patch_status()
                    # CrashLoopBackOff, compressed: 1 s doubling to 8 s.
                    if self.stopping.wait(min(8.0, 2.0 ** container.restarts)):
                        return
                    restarted = self._start(by_name[name], volumes)
                    restarted.restarts = container.restarts + 1
                    self.containers[name] = restarted
                    self.statuses[name] = {
                        "state": {"running": {"startedAt": _now()}}, "ready": True,
                        "restartCount": restarted.restarts,
                        "lastState": {"terminated": self._last_state}}
                    self._patch_status()
                else:
                    codes[name] = code
            if len(codes) == len(mains):
                self._end(failed=any(codes.values()), codes=codes)
                return

    def _init_spec(self, name: str) -> dict[str, Any]:
        return next(c for c in self.pod["spec"].get("initContainers", []) if c["name"] == name)

    def _end(self, *, failed: bool, codes: dict[str, int]) -> None:
        phase = "Failed" if failed else "Succeeded"
        _log(f"{self.namespace}/{self.name}: {phase} {codes}")
        condition = {"type": "Ready", "status": "False", "reason": "PodCompleted",
                     "lastTransitionTime": _now()}
        self._patch_status({"phase": phase, "conditions": [condition]})
        self.stopping.set()


class HostsFile:
    """The cluster hosts file: kube-up's lines, then one line per Service with a ready endpoint.

    Rewritten in place (never replaced: sandboxes bind-mount this very file), content first and
    truncation after, so a reader never sees it empty.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        text = path.read_text()
        head, marker, _ = text.partition(HOSTS_MARKER)
        self._base = head + (marker or HOSTS_MARKER) + "\n"
        self._written = ""

    def sync(self, names: dict[str, str]) -> None:
        lines = "".join(f"{ip} {name}.svc.cluster.local {name}.svc {name}\n"
                        for name, ip in sorted(names.items()))
        if lines == self._written:
            return
        with self.path.open("r+") as hosts:
            hosts.write(self._base + lines)
            hosts.truncate()
        self._written = lines


class PodRunner:
    """Watches pods and runs those bound to nodes (see the module docstring)."""

    def __init__(self, state: Path, namespace_selector: str | None = None) -> None:
        config.load_kube_config()
        self.api = client.ApiClient()
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.discovery = client.DiscoveryV1Api(self.api)
        self.lookup = ApiLookup(self.core)
        self.state = state
        self.selector = namespace_selector
        self.hosts = HostsFile(Path(os.environ["RAYKUBE_K8S_HOSTS"]))
        self.sandboxes: dict[str, PodSandbox] = {}
        self.netns_lock = threading.Lock()
        self._nodes: dict[str, dict[str, str]] = {}
        api_host, _, api_port = os.environ["RAYKUBE_K8S_API_FROM_PODS"].rpartition(":")
        self._api = (api_host, api_port)
        self._path = f"{Path(sys.executable).parent}:/usr/local/sbin:/usr/local/bin:" \
                     "/usr/sbin:/usr/bin:/sbin:/bin"

    def base_env(self, pod_name: str) -> dict[str, str]:
        """What every container starts with: the image's PATH and a kubelet's service env."""
        host, port = self._api
        return {
            "PATH": self._path, "HOME": IMAGE_HOME, "HOSTNAME": pod_name, "LANG": "C.UTF-8",
            "KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port,
            "KUBERNETES_SERVICE_PORT_HTTPS": port,
            "KUBERNETES_PORT": f"tcp://{host}:{port}",
        }

    def allocatable(self, node: str) -> dict[str, str]:
        if node not in self._nodes:
            self._nodes[node] = dict(self.core.read_node(node).status.allocatable or {})
        return self._nodes[node]

    def _namespaces(self) -> set[str] | None:
        if not self.selector:
            return None
        return {n.metadata.name for n in
                self.core.list_namespace(label_selector=self.selector).items}

    def reconcile(self) -> None:
        """One pass: start sandboxes for new pods, stop those of deleted ones, sync hosts."""
        namespaces = self._namespaces()
        wanted: dict[str, dict[str, Any]] = {}
        for pod in self.core.list_pod_for_all_namespaces().items:
            if namespaces is not None and pod.metadata.namespace not in namespaces:
                continue
            if pod.metadata.deletion_timestamp or not pod.spec.node_name \
                    or not (pod.status and pod.status.pod_ip) or pod.spec.host_network:
                continue
            if pod.status.phase in ("Succeeded", "Failed"):
                continue
            wanted[pod.metadata.uid] = pod
        for uid, sandbox in list(self.sandboxes.items()):
            if uid not in wanted:  # deleted, or ended: its processes go
                sandbox.stopping.set()
                if not sandbox.is_alive():
                    del self.sandboxes[uid]
        for uid, pod in wanted.items():
            if uid not in self.sandboxes:
                sandbox = PodSandbox(self, self.api.sanitize_for_serialization(pod))
                self.sandboxes[uid] = sandbox
                sandbox.start()
        self._sync_hosts(namespaces)

    def _sync_hosts(self, namespaces: set[str] | None) -> None:
        names: dict[str, str] = {}
        for endpoint_slice in self.discovery.list_endpoint_slice_for_all_namespaces().items:
            namespace = endpoint_slice.metadata.namespace
            service = (endpoint_slice.metadata.labels or {}).get("kubernetes.io/service-name")
            if not service or (namespaces is not None and namespace not in namespaces):
                continue
            ready = [e.addresses[0] for e in endpoint_slice.endpoints or []
                     if e.addresses and (e.conditions is None or e.conditions.ready is not False)]
            if ready:
                names[f"{service}.{namespace}"] = sorted(ready)[0]
        self.hosts.sync(names)

    def run(self, stop: threading.Event, ready_file: Path | None = None) -> None:
        """Reconcile every 0.3 s until ``stop``; then kill every pod's processes."""
        _log(f"watching pods ({'namespaces ' + self.selector if self.selector else 'all'})")
        if ready_file:
            ready_file.write_text(str(os.getpid()))
        while not stop.is_set():
            try:
                self.reconcile()
            except Exception as exc:  # noqa: BLE001 - the API server may restart; keep going
                _log(f"reconcile: {type(exc).__name__}: {exc}")
            stop.wait(0.3)
        for sandbox in self.sandboxes.values():
            sandbox.stopping.set()
        for sandbox in self.sandboxes.values():
            sandbox.join(timeout=5)
            sandbox.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespace-selector", default=None,
                        help="run only pods of namespaces with these labels (default: all)")
    parser.add_argument("--ready-file", type=Path, default=None,
                        help="written once the runner watches")
    args = parser.parse_args()
    state = Path(os.environ["RAYKUBE_K8S_STATE"]) / "podrunner"
    state.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    PodRunner(state, args.namespace_selector).run(stop, args.ready_file)


if __name__ == "__main__":
    main()
