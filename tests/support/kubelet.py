"""What a kubelet works out for a container before starting it: its environment, its command
and its volumes.

Test support for the pod runner (``podrunner.py``), which plays the kubelet for kwok's
simulated nodes. Everything here is a function of the pod (as the API server's JSON) and of the
objects it refers to, fetched through a :class:`Lookup`, so the rules are unit-tested on their
own: ``$(VAR)`` expansion with ``$$`` escapes, ``fieldRef``, ``resourceFieldRef`` (limits, else
the node's allocatable), ConfigMap and Secret refs (``optional`` honoured), ``envFrom`` with
prefixes, and the volume kinds KubeRay's pods and the tests use (emptyDir, configMap, secret,
downwardAPI, projected service-account token, hostPath, persistentVolumeClaim bound to a
hostPath PV).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from raykube.quantity import parse_quantity

_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class Lookup(Protocol):
    """The API objects a pod refers to (a fake in unit tests, the API server in the runner)."""

    def config_map(self, namespace: str, name: str) -> dict[str, str] | None:
        """``data`` of a ConfigMap, or None when absent."""

    def secret(self, namespace: str, name: str) -> dict[str, str] | None:
        """Decoded ``data`` of a Secret, or None when absent."""

    def token(self, pod: dict[str, Any], audience: str | None, seconds: int) -> str:
        """A service-account token bound to ``pod`` (the TokenRequest API)."""

    def claim_path(self, namespace: str, claim: str) -> str:
        """The host folder behind a bound PersistentVolumeClaim."""


class KubeletError(Exception):
    """A pod that a kubelet could not start (CreateContainerConfigError and the like)."""


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: known names replaced, unknown ones kept, ``$$`` -> ``$``."""
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VAR_REF.sub(replace, text)


def field_value(pod: dict[str, Any], path: str) -> str:
    """The value of a downward-API ``fieldPath`` of ``pod``."""
    metadata, spec, status = pod["metadata"], pod["spec"], pod.get("status", {})
    keyed = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if keyed:
        return str((metadata.get(keyed.group(1)) or {}).get(keyed.group(2), ""))
    simple = {
        "metadata.name": metadata.get("name"), "metadata.namespace": metadata.get("namespace"),
        "metadata.uid": metadata.get("uid"), "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.podIP": status.get("podIP"), "status.hostIP": status.get("hostIP"),
        "status.podIPs": ",".join(i["ip"] for i in status.get("podIPs", [])),
    }
    if path not in simple:
        raise KubeletError(f"unsupported fieldPath {path!r}")
    return str(simple[path] or "")


def resource_value(container: dict[str, Any], ref: dict[str, Any],
                   allocatable: dict[str, str]) -> str:
    """A ``resourceFieldRef``: the container's limit (or request), rounded up by the divisor;
    an unset limit reads the node's allocatable, as the kubelet does."""
    kind, _, name = ref["resource"].partition(".")
    resources = container.get("resources", {})
    value = (resources.get(kind) or {}).get(name)
    if value is None:
        value = allocatable.get(name, "0") if kind == "limits" else "0"
    divisor = parse_quantity(ref.get("divisor", "1"))
    return str(math.ceil(parse_quantity(value) / divisor))


def _referenced(lookup: Lookup, namespace: str, kind: str, ref: dict[str, Any]
                ) -> dict[str, str] | None:
    data = (lookup.config_map if kind == "configMap" else lookup.secret)(namespace, ref["name"])
    if data is None and not ref.get("optional"):
        raise KubeletError(f"{kind} {namespace}/{ref['name']} not found")
    return data


def container_env(pod: dict[str, Any], container: dict[str, Any], lookup: Lookup,
                  base: dict[str, str], allocatable: dict[str, str]) -> dict[str, str]:
    """The environment of ``container``: ``base`` (PATH, KUBERNETES_SERVICE_*...), then
    ``envFrom``, then ``env`` in order, each value expanded against what came before it."""
    namespace = pod["metadata"]["namespace"]
    env = dict(base)
    for source in container.get("envFrom", []) or []:
        kind = "configMap" if "configMapRef" in source else "secret"
        data = _referenced(lookup, namespace, kind, source[f"{kind}Ref"]) or {}
        for key, value in data.items():
            env[source.get("prefix", "") + key] = value
    for var in container.get("env", []) or []:
        name = var["name"]
        if "valueFrom" not in var:
            env[name] = expand(var.get("value", ""), env)
            continue
        source = var["valueFrom"]
        if "fieldRef" in source:
            env[name] = field_value(pod, source["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in source:
            env[name] = resource_value(container, source["resourceFieldRef"], allocatable)
        else:
            kind = "configMap" if "configMapKeyRef" in source else "secret"
            ref = source[f"{kind}KeyRef"]
            data = _referenced(lookup, namespace, kind, ref)
            if data is None:
                continue
            if ref["key"] not in data:
                if ref.get("optional"):
                    continue
                raise KubeletError(f"{kind} {namespace}/{ref['name']} has no key {ref['key']!r}")
            env[name] = data[ref["key"]]
    return env


def container_argv(container: dict[str, Any], env: dict[str, str]) -> list[str]:
    """``command`` + ``args`` with ``$(VAR)`` expanded: what the container runs."""
    argv = [expand(word, env) for word in
            (container.get("command") or []) + (container.get("args") or [])]
    if not argv:
        raise KubeletError(f"container {container['name']!r} has no command: the image's "
                           "entrypoint cannot be known without the image")
    return argv


@dataclass(frozen=True)
class Mount:
    """One mount inside the sandbox: a host path (or a fresh tmpfs) at ``target``."""

    target: str
    source: str | None
    read_only: bool = False
    tmpfs_size: str | None = None


def _write_items(folder: Path, data: dict[str, str], items: list[dict[str, Any]] | None) -> None:
    chosen = {i["key"]: i.get("path", i["key"]) for i in items} if items else \
        {key: key for key in data}
    for key, relative in chosen.items():
        if key not in data:
            raise KubeletError(f"no key {key!r} for volume file {relative!r}")
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(data[key])


def _projected(pod: dict[str, Any], folder: Path, sources: list[dict[str, Any]],
               lookup: Lookup) -> None:
    namespace = pod["metadata"]["namespace"]
    for source in sources:
        if "serviceAccountToken" in source:
            token = source["serviceAccountToken"]
            (folder / token["path"]).write_text(lookup.token(
                pod, token.get("audience"), int(token.get("expirationSeconds", 3607))))
        elif "downwardAPI" in source:
            _write_items(folder, {i["path"]: field_value(pod, i["fieldRef"]["fieldPath"])
                                  for i in source["downwardAPI"]["items"]},
                         None)
        else:
            kind = "configMap" if "configMap" in source else "secret"
            data = _referenced(lookup, namespace, kind, source[kind])
            if data is not None:
                _write_items(folder, data, source[kind].get("items"))


def prepare_volume(pod: dict[str, Any], volume: dict[str, Any], root: Path,
                   lookup: Lookup) -> Mount:
    """Materialise ``volume`` under ``root`` (or find its host path); ``target`` left empty."""
    namespace = pod["metadata"]["namespace"]
    folder = root / volume["name"]
    if "emptyDir" in volume:
        empty = volume["emptyDir"] or {}
        if empty.get("medium") == "Memory":
            size = empty.get("sizeLimit")
            return Mount("", None, tmpfs_size=str(int(parse_quantity(size))) if size else None)
        folder.mkdir(parents=True, exist_ok=True)
    elif "hostPath" in volume:
        return Mount("", volume["hostPath"]["path"])
    elif "persistentVolumeClaim" in volume:
        return Mount("", lookup.claim_path(namespace, volume["persistentVolumeClaim"]["claimName"]),
                     read_only=bool(volume["persistentVolumeClaim"].get("readOnly")))
    elif "projected" in volume:
        folder.mkdir(parents=True, exist_ok=True)
        _projected(pod, folder, volume["projected"]["sources"], lookup)
    elif "downwardAPI" in volume:
        folder.mkdir(parents=True, exist_ok=True)
        _projected(pod, folder, [{"downwardAPI": volume["downwardAPI"]}], lookup)
    elif "configMap" in volume or "secret" in volume:
        kind = "configMap" if "configMap" in volume else "secret"
        ref = dict(volume[kind])
        ref.setdefault("name", ref.pop("secretName", None))
        data = _referenced(lookup, namespace, kind, ref) or {}
        folder.mkdir(parents=True, exist_ok=True)
        _write_items(folder, data, ref.get("items"))
    else:
        raise KubeletError(f"volume {volume['name']!r}: unsupported kind {sorted(volume)}")
    return Mount("", str(folder))


def container_mounts(container: dict[str, Any], volumes: dict[str, Mount]) -> list[Mount]:
    """The container's ``volumeMounts`` as mounts (``subPath`` joined to the source)."""
    mounts = []
    for mount in container.get("volumeMounts", []) or []:
        volume = volumes[mount["name"]]
        source = volume.source
        if source is not None and mount.get("subPath"):
            source = str(Path(source) / mount["subPath"])
        mounts.append(Mount(mount["mountPath"], source,
                            read_only=bool(mount.get("readOnly")) or volume.read_only,
                            tmpfs_size=volume.tmpfs_size))
    return mounts
