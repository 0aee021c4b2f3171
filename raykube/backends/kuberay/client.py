"""The one module that talks to the ``kubernetes`` client: credentials, the few verbs raykube
uses on the few kinds it touches, and API errors turned into raykube errors that name the
object and the fix. Everything else (the KubeRay backend, RayJobs, RayServices, the
port-forward) goes through :class:`KubeClient`, and sees objects as plain dicts in the API's
own JSON form (``metadata.labels``, ``status.podIP``), so a fake client in the unit tests is a
few dicts.

Error mapping (the original ``ApiException`` stays as ``__cause__``):

- 401 -> BackendError: credentials rejected or expired;
- 403 -> BackendError: RBAC denies the verb on the resource in the namespace;
- 404 -> ClusterNotFound for a RayCluster, BackendError naming a missing CRD/API otherwise;
- 409 -> BackendError (retryable): conflict, the object changed or exists;
- 422 -> SpecError: the API server's validation causes, field by field;
- connection refused / timeout -> BackendError (retryable): the API server is unreachable.

Transient failures (unreachable, 429, 5xx) are retried here, with jittered backoff for up to
30 s, before they become errors; creates and JSON patches are not (see ``_call``).
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

from raykube.errors import BackendError, ClusterNotFound, RaykubeError, SpecError


FIELD_MANAGER = "raykube"
"""The field manager of every server-side apply raykube makes."""

CUSTOM_KINDS = {
    "RayCluster": ("ray.io", "v1", "rayclusters"),
    "RayJob": ("ray.io", "v1", "rayjobs"),
    "RayService": ("ray.io", "v1", "rayservices"),
    "PodMonitor": ("monitoring.coreos.com", "v1", "podmonitors"),
    "ServiceMonitor": ("monitoring.coreos.com", "v1", "servicemonitors"),
    "PrometheusRule": ("monitoring.coreos.com", "v1", "prometheusrules"),
}
"""The custom kinds raykube reads and writes: KubeRay's, and the Prometheus operator's that
monitoring uses, each with its API group, version and resource (plural) name."""

_TYPED = {
    "Pod": ("core", "pod"), "Event": ("core", "event"), "Secret": ("core", "secret"),
    "PersistentVolumeClaim": ("core", "persistent_volume_claim"),
    "PodDisruptionBudget": ("policy", "pod_disruption_budget"),
    "NetworkPolicy": ("networking", "network_policy"),
    "ConfigMap": ("core", "config_map"),
}
"""Other kinds raykube touches: their typed API, and the name their methods carry."""


def _group_version(kind: str) -> tuple[str, str]:
    group, version, _ = CUSTOM_KINDS[kind]
    return group, version


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """The status condition of type ``kind`` of an object, or None."""
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item.get("type") == kind:
            return dict(item)
    return None


def condition_true(obj: dict[str, Any], kind: str) -> bool:
    """Whether ``obj`` has condition ``kind`` with status True."""
    return (condition(obj, kind) or {}).get("status") == "True"


SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
"""Where the kubelet tells a pod its namespace (beside its service-account token)."""


def _pod_namespace() -> str:
    """In a pod: its own namespace, as in-cluster clients default to (kubectl does too)."""
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


class KubeClient:
    """A namespace-defaulted client for the kinds raykube uses (see the module docstring)."""

    retry_seconds = 30.0
    """How long a call goes on retrying a transient failure (an API server restart takes a
    few seconds; a control plane's rolling upgrade, some more)."""

    def __init__(self, api: Any, namespace: str) -> None:
        from kubernetes import client

        self.api = api
        self.namespace = namespace
        self._reached = False
        self._core = client.CoreV1Api(api)
        self._custom = client.CustomObjectsApi(api)
        self._apis = {"core": self._core, "policy": client.PolicyV1Api(api),
                      "networking": client.NetworkingV1Api(api)}

    @classmethod
    def load(cls, context: str | None = None, namespace: str | None = None) -> KubeClient:
        """A client from the kubeconfig (``$KUBECONFIG``, ``~/.kube/config``; ``context``
        chosen), or the in-cluster service account when running in a pod.

        Raises:
            BackendError: no usable configuration.
        """
        from kubernetes import client, config

        # $KUBECONFIG read now: the client reads it once, when it is imported.
        files = os.environ.get("KUBECONFIG") or None
        try:
            try:
                config.load_kube_config(config_file=files, context=context)
                _, active = config.list_kube_config_contexts(config_file=files)
                default_ns = (active or {}).get("context", {}).get("namespace") or "default"
            except config.ConfigException:
                config.load_incluster_config()
                default_ns = _pod_namespace()
        except config.ConfigException as exc:
            raise BackendError(
                f"no Kubernetes configuration found: {exc}",
                "set KUBECONFIG (or ~/.kube/config), pass --context, or run inside a pod",
            ) from exc
        return cls(client.ApiClient(), namespace or default_ns)

    @property
    def host(self) -> str:
        """The API server's URL."""
        return str(self.api.configuration.host)

    def _plain(self, obj: Any) -> dict[str, Any]:
        return dict(self.api.sanitize_for_serialization(obj))

    def _method(self, verb: str, kind: str) -> Any:
        """The typed API's method for ``verb`` (read, list, patch, delete) on ``kind``."""
        api, name = _TYPED[kind]
        return getattr(self._apis[api], f"{verb}_namespaced_{name}")

    def _call(self, what: str, call: Any, *args: Any, missing_ok: bool = False,
              retry: bool = True, **kwargs: Any) -> Any:
        """``call(*args, **kwargs)``, its errors translated (:func:`translate`).

        A transient failure (the API server unreachable or restarting, 429, 5xx) of a client
        that has reached the server before is tried again with jittered exponential backoff
        for up to :attr:`retry_seconds`, unless ``retry`` is False (a create, which a lost
        answer could make twice). A client that never reached it fails at once: a wrong
        kubeconfig is said now, not in half a minute. With ``missing_ok`` a 404 returns None.
        """
        deadline = time.monotonic() + self.retry_seconds
        pause = 0.25
        while True:
            try:
                answer = call(*args, **kwargs)
                self._reached = True
                return answer
            except Exception as exc:  # noqa: BLE001 - translated
                if missing_ok and getattr(exc, "status", None) == 404:
                    self._reached = True
                    return None
                wait = pause * (1 + random.random())
                if (not (retry and self._reached and is_transient(exc))
                        or time.monotonic() + wait > deadline):
                    raise translate(exc, what) from exc
            time.sleep(wait)  # backoff before the next attempt, not a wait for a condition
            pause = min(pause * 2, 4.0)

    @staticmethod
    def _what(kind: str, namespace: str, name: str | None = None) -> str:
        return f"{kind} {namespace}/{name}" if name else f"{kind}s in {namespace}"

    def apply(self, body: dict[str, Any], *, dry_run: bool = False) -> None:
        """Create or update ``body`` by server-side apply (a second apply with a changed body
        patches what the first made); its namespace defaults to this client's. ``dry_run``:
        the server validates, defaults and admits it (schemas, webhooks, RBAC) and stores
        nothing."""
        kind, name = body["kind"], body["metadata"]["name"]
        namespace = body["metadata"].setdefault("namespace", self.namespace)
        options: dict[str, Any] = {"field_manager": FIELD_MANAGER, "force": True,
                                   "_content_type": "application/apply-patch+yaml"}
        if dry_run:
            options["dry_run"] = "All"
        what = self._what(kind, namespace, name)
        if kind in CUSTOM_KINDS:
            self._call(what, self._custom.patch_namespaced_custom_object, *_group_version(kind),
                       namespace, CUSTOM_KINDS[kind][2], name, body, **options)
            return
        self._call(what, self._method("patch", kind), name, namespace, body, **options)

    def create(self, body: dict[str, Any], *, dry_run: bool = False) -> None:
        """Create ``body`` (a ``ray.io/v1`` object); 409 when it exists. ``dry_run`` as in
        :meth:`apply`."""
        kind, name = body["kind"], body["metadata"]["name"]
        namespace = body["metadata"].setdefault("namespace", self.namespace)
        self._call(self._what(kind, namespace, name), self._custom.create_namespaced_custom_object,
                   *_group_version(kind), namespace, CUSTOM_KINDS[kind][2], body, retry=False,
                   **({"dry_run": "All"} if dry_run else {}))

    def get(self, kind: str, name: str, namespace: str | None = None, *,
            missing_ok: bool = False) -> dict[str, Any]:
        """The object as a dict; with ``missing_ok`` one that does not exist reads as ``{}``."""
        namespace = namespace or self.namespace
        what = self._what(kind, namespace, name)
        if kind in CUSTOM_KINDS:
            found = self._call(what, self._custom.get_namespaced_custom_object,
                               *_group_version(kind), namespace, CUSTOM_KINDS[kind][2], name,
                               missing_ok=missing_ok)
            return dict(found or {})
        found = self._call(what, self._method("read", kind), name, namespace,
                           missing_ok=missing_ok)
        return self._plain(found) if found is not None else {}

    def list(self, kind: str, namespace: str | None = None, *, labels: str | None = None,
             fields: str | None = None, limit: int | None = None,
             all_namespaces: bool = False) -> list[dict[str, Any]]:
        """Objects of ``kind`` in the namespace (or in every namespace), by label and field
        selector."""
        namespace = namespace or self.namespace
        selectors: dict[str, Any] = {k: v for k, v in (("label_selector", labels),
                                     ("field_selector", fields), ("limit", limit)) if v}
        if all_namespaces:
            what = f"{kind}s in every namespace"
            if kind in CUSTOM_KINDS:
                answer = self._call(what, self._custom.list_cluster_custom_object,
                                    *_group_version(kind), CUSTOM_KINDS[kind][2], **selectors)
                return list(answer.get("items") or [])
            api, name = _TYPED[kind]
            every = getattr(self._apis[api], f"list_{name}_for_all_namespaces")
            return [self._plain(item) for item in self._call(what, every, **selectors).items]
        what = self._what(kind, namespace)
        if kind in CUSTOM_KINDS:
            answer = self._call(what, self._custom.list_namespaced_custom_object,
                                *_group_version(kind), namespace, CUSTOM_KINDS[kind][2],
                                **selectors)
            return list(answer.get("items") or [])
        return [self._plain(item) for item in self._call(what, self._method("list", kind),
                                                          namespace, **selectors).items]

    def has_api(self, kind: str) -> bool:
        """Whether the server serves custom ``kind`` (its CRD is installed)."""
        group, version, plural = CUSTOM_KINDS[kind]
        try:
            self._custom.list_cluster_custom_object(group, version, plural, limit=1)
            return True
        except Exception as exc:  # noqa: BLE001 - translated
            error = translate(exc, f"the {group}/{version} {kind} API")
            if "404" in error.message:
                return False
            raise error from exc

    def json_patch(self, kind: str, name: str, patch: list[dict[str, Any]],
                   namespace: str | None = None) -> None:
        """Apply a JSON patch (RFC 6902; ``test`` ops guard against concurrent changes)."""
        namespace = namespace or self.namespace
        self._call(self._what(kind, namespace, name), self._custom.patch_namespaced_custom_object,
                   *_group_version(kind), namespace, CUSTOM_KINDS[kind][2], name, patch,
                   _content_type="application/json-patch+json", retry=False)

    def delete(self, kind: str, name: str, namespace: str | None = None, *,
               propagation: str | None = None, missing_ok: bool = False) -> None:
        """Delete the object (``propagation``: Kubernetes' propagationPolicy); with
        ``missing_ok`` one that does not exist is no error."""
        namespace = namespace or self.namespace
        options = {"propagation_policy": propagation} if propagation else {}
        what = self._what(kind, namespace, name)
        if kind in CUSTOM_KINDS:
            self._call(what, self._custom.delete_namespaced_custom_object,
                       *_group_version(kind), namespace, CUSTOM_KINDS[kind][2], name,
                       missing_ok=missing_ok, **options)
            return
        self._call(what, self._method("delete", kind), name, namespace, missing_ok=missing_ok,
                   **options)

    def log(self, pod: str, namespace: str | None = None, *, container: str | None = None,
            tail_lines: int | None = None) -> str:
        """A container's log (the last ``tail_lines`` lines)."""
        namespace = namespace or self.namespace
        options = {k: v for k, v in (("container", container), ("tail_lines", tail_lines)) if v}
        return str(self._call(self._what("Pod", namespace, pod),
                              self._core.read_namespaced_pod_log, pod, namespace, **options))

    def port_stream(self, namespace: str, pod: str, port: int) -> tuple[Any, Any]:
        """A port-forward stream to ``port`` of ``pod``: ``(stream, socket)``; close the stream.

        The client's stream helpers swap the ApiClient's request method while they connect, so
        a shared ApiClient would send other threads' plain API calls down a websocket: every
        stream gets its own client over the same configuration.
        """
        from kubernetes import client
        from kubernetes.stream import portforward

        core = client.CoreV1Api(client.ApiClient(self.api.configuration))
        forward = portforward(core.connect_get_namespaced_pod_portforward, pod, namespace,
                              ports=str(port))
        return forward, forward.socket(port)


def _causes(body: str) -> list[tuple[str, str]]:
    try:
        details = json.loads(body).get("details", {})
    except (ValueError, AttributeError):
        return []
    return [(c.get("field", "?"), c.get("message", "")) for c in details.get("causes", [])]


def is_transient(exc: BaseException) -> bool:
    """Whether a failed call may succeed as it is a moment later: the API server unreachable
    (restarting, a dropped connection), throttling (429) or a server error (5xx). A 409 is not:
    the caller must read the object again first."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    if isinstance(exc, ApiException):
        return exc.status in (429, 500, 502, 503, 504) or not exc.status
    return isinstance(exc, (HTTPError, OSError))


def translate(exc: BaseException, what: str) -> RaykubeError:
    """A raykube error for a failed call on ``what`` (e.g. "RayCluster default/demo")."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    if isinstance(exc, ApiException):
        status, body = exc.status, exc.body or ""
        try:
            message = json.loads(body).get("message", body)
        except (ValueError, AttributeError):
            message = body or str(exc.reason)
        if status == 401:
            return BackendError(f"{what}: the API server rejected the credentials (401)",
                                "log in again / refresh the kubeconfig token")
        if status == 403:
            return BackendError(f"{what}: forbidden by RBAC (403): {message}",
                                "ask for a Role granting this verb on ray.io rayclusters and "
                                "pods in the namespace")
        if status == 404 and what.startswith("RayCluster") and "the server could not find the "\
                "requested resource" not in message:
            return ClusterNotFound(f"{what} does not exist", "`raykube list --backend kuberay`")
        if status == 404:
            return BackendError(f"{what}: not found (404): {message}",
                                "is the operator that defines it installed? (KubeRay for "
                                "ray.io/v1; the Prometheus operator for monitors and rules)")
        if status == 409:
            return BackendError(f"{what}: conflict (409): {message}",
                                "someone else changed it; run the command again", retryable=True)
        if status == 422:
            causes = _causes(body)
            lines = "\n".join(f"  {field}: {text}" for field, text in causes) or f"  {message}"
            return SpecError(f"{what}: the API server refused it (422):\n{lines}",
                             "fix the spec fields behind these manifest fields")
        return BackendError(f"{what}: API error {status}: {message}", retryable=status >= 500)
    if isinstance(exc, (HTTPError, OSError)):
        return BackendError(f"{what}: the Kubernetes API server is unreachable: {exc}",
                            "check the cluster is up and KUBECONFIG points at it",
                            retryable=True)
    return BackendError(f"{what}: {exc}")
