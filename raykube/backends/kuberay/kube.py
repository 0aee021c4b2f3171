"""The only module that talks to the ``kubernetes`` client: loading credentials, and turning
API errors into raykube errors that name the object and the fix.

Error mapping (the original ``ApiException`` stays as ``__cause__``):

- 401 -> BackendError: credentials rejected or expired;
- 403 -> BackendError: RBAC denies the verb on the resource in the namespace;
- 404 -> ClusterNotFound for a RayCluster, BackendError naming a missing CRD/API otherwise;
- 409 -> BackendError (retryable): conflict, the object changed or exists;
- 422 -> SpecError: the API server's validation causes, field by field;
- connection refused / timeout -> BackendError (retryable): the API server is unreachable.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from raykube.errors import BackendError, ClusterNotFound, RaykubeError, SpecError

RAY_GROUP, RAY_VERSION = "ray.io", "v1"
# The ray.io/v1 kinds raykube reads, by their resource (plural) name.
RAY_KINDS = {"rayclusters": "RayCluster", "rayjobs": "RayJob", "rayservices": "RayService"}


@dataclass
class KubeClients:
    """The typed API objects raykube uses, sharing one ApiClient."""

    api: Any
    core: Any
    custom: Any
    namespace: str


def load_clients(context: str | None = None, namespace: str | None = None) -> KubeClients:
    """Clients from the kubeconfig (``$KUBECONFIG``, ``~/.kube/config``; ``context`` chosen),
    or the in-cluster service account when running in a pod.

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
            default_ns = "default"
    except config.ConfigException as exc:
        raise BackendError(
            f"no Kubernetes configuration found: {exc}",
            "set KUBECONFIG (or ~/.kube/config), pass --context, or run inside a pod",
        ) from exc
    api = client.ApiClient()
    return KubeClients(api, client.CoreV1Api(api), client.CustomObjectsApi(api),
                       namespace or default_ns)


def _causes(body: str) -> list[tuple[str, str]]:
    try:
        details = json.loads(body).get("details", {})
    except (ValueError, AttributeError):
        return []
    return [(c.get("field", "?"), c.get("message", "")) for c in details.get("causes", [])]


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
                                "is the KubeRay operator installed? (its CRDs define ray.io/v1)")
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


def get_ray_object(kube: KubeClients, namespace: str, plural: str, name: str, *,
                   missing_ok: bool = False) -> dict[str, Any]:
    """The ``ray.io/v1`` object ``plural``/``name`` as a dict, its API errors translated.

    With ``missing_ok`` an object that does not exist reads as ``{}`` (a RayService not yet
    applied, say) instead of an error.
    """
    try:
        return dict(kube.custom.get_namespaced_custom_object(
            RAY_GROUP, RAY_VERSION, namespace, plural, name))
    except Exception as exc:  # noqa: BLE001 - translated
        if missing_ok and getattr(exc, "status", None) == 404:
            return {}
        raise translate(exc, f"{RAY_KINDS[plural]} {namespace}/{name}") from exc
