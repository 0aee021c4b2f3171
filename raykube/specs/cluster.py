"""The cluster spec: one typed, validated description of a Ray cluster, loaded from YAML.

Users describe a cluster once; the local backend runs it on this machine and the KubeRay
backend renders it into a ``ray.io/v1`` RayCluster. Field names in YAML are KubeRay's own
(``headGroupSpec``, ``workerGroupSpecs``, ``groupName``, ``replicas``, ``minReplicas``,
``maxReplicas``, ``rayStartParams``, ``enableInTreeAutoscaling``, ``autoscalerOptions``) and mean
what they mean there; Python uses the snake_case names. Unknown keys are refused, and every rule
that involves several fields (bounds, unique names, GPUs and accelerators) lives in the model, so
a spec that loads is a spec every backend can run.

Example::

    spec = load_spec("clusters/local.yaml")
    spec.worker_group("cpu").max_replicas
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, field_validator, model_validator

from raykube.errors import ScaleError
from raykube.quantity import byte_count, cpu_count, parse_quantity
from raykube.specs.base import SpecModel, check_dns_label, load, parse
from raykube.specs.start_params import (
    ACCELERATOR,
    check_env,
    check_labels,
    check_start_param,
    parse_resources_param,
    shown,
)

MAX_REPLICAS = 10_000
"""The most replicas a worker group may name: far above any real cluster, far below what
would make arithmetic on it (capacity checks, autoscaler configs) misbehave."""

RAY_VERSION = "2.60.0"
"""The Ray version raykube is built and tested against; specs default to it."""

GROUP_LABEL = "raykube.io/group"
"""Ray node label naming a node's worker group, set by both backends. Ray's own
``ray.io/node-group`` is reserved for Ray and is not set on locally simulated nodes."""

GROUP_RESOURCE_PREFIX = "group:"
"""Every node of worker group G advertises the custom resource ``group:G`` (like Ray's own
``accelerator_type:X``), so work can be placed on a group in a way every Ray autoscaler
understands; label selectors are not seen by Ray's v1 autoscaler."""

GROUP_RESOURCE_AMOUNT = 1000
"""How much of ``group:G`` a node has: placement asks for a sliver (0.001) per worker."""


def group_resource(name: str) -> str:
    """The custom resource that marks the nodes of worker group ``name``."""
    return f"{GROUP_RESOURCE_PREFIX}{name}"


def check_scale(cluster: str, group: str, replicas: int, bounds: tuple[int, int]) -> None:
    """Refuse a replica count outside a group's ``(minReplicas, maxReplicas)``; the one check
    both backends' ``scale`` make.

    Raises:
        ScaleError: naming the bounds and the fix.
    """
    low, high = bounds
    if not low <= replicas <= high:
        raise ScaleError(
            f"cluster {cluster!r}: group {group!r} scales between minReplicas {low} and "
            f"maxReplicas {high}; {replicas} is outside",
            "pick a count inside the bounds, or change them in the spec and `raykube up` again",
        )


SPEC_ENV = "RAYKUBE_SPEC"
"""Environment variable holding the cluster spec (YAML) on every node of a raykube cluster, so
a job's driver can check requests against the cluster it runs on."""

GPU_RESOURCE = "nvidia.com/gpu"
"""The extended resource NVIDIA's device plugin advertises, and the taint key of GPU node pools."""

def _check_quantity(value: Any) -> Any:
    """Checked before pydantic's coercion, so YAML ``true`` is not taken as 1."""
    parse_quantity(value)
    return value


Quantity = Annotated[str | int | float, Field(union_mode="left_to_right")]
RayStartParams = dict[str, str]


def _coerce_start_params(value: Any) -> Any:
    """KubeRay wants ``rayStartParams`` values as strings; accept YAML scalars and say so."""
    if isinstance(value, dict):
        coerced: dict[str, str] = {}
        for key, item in value.items():
            if isinstance(item, (dict, list)) or item is None:
                raise ValueError(
                    f"rayStartParams[{key!r}] must be a string, number or boolean, "
                    f"not {type(item).__name__}"
                )
            text = str(item).lower() if isinstance(item, bool) else str(item)
            coerced[str(key)] = check_start_param(str(key), text)
        return coerced
    return value


class Toleration(SpecModel):
    """A Kubernetes toleration, as in a pod spec."""

    key: str | None = Field(None, description="Taint key to tolerate, e.g. 'nvidia.com/gpu'.")
    operator: str = Field("Exists", description="'Exists' or 'Equal'.")
    value: str | None = Field(None, description="Taint value, with operator 'Equal'.")
    effect: str | None = Field(
        None, description="'NoSchedule', 'PreferNoSchedule' or 'NoExecute'; empty for all."
    )
    toleration_seconds: int | None = Field(
        None, alias="tolerationSeconds", description="How long a NoExecute taint is tolerated."
    )

    @field_validator("operator")
    @classmethod
    def _operator(cls, value: str) -> str:
        if value not in ("Exists", "Equal"):
            raise ValueError(f"operator {value!r} is not 'Exists' or 'Equal'")
        return value

    @field_validator("effect")
    @classmethod
    def _effect(cls, value: str | None) -> str | None:
        if value not in (None, "NoSchedule", "PreferNoSchedule", "NoExecute"):
            raise ValueError(
                f"effect {value!r} is not 'NoSchedule', 'PreferNoSchedule' or 'NoExecute'"
            )
        return value


class KeyRef(SpecModel):
    """A key of a Kubernetes Secret or ConfigMap."""

    name: str = Field(..., description="The Secret's or ConfigMap's name.")
    key: str = Field(..., description="The key inside it.")

    _name = field_validator("name")(classmethod(lambda cls, v: check_dns_label(v, "name")))


class EnvSource(SpecModel):
    """Where a variable's value comes from, instead of a literal (Kubernetes' ``valueFrom``).
    On Kubernetes from the Secret or ConfigMap; on the local backend from the variable of the
    same name in your environment (how a secret is forwarded to a local cluster)."""

    secret_key_ref: KeyRef | None = Field(None, alias="secretKeyRef",
                                          description="A key of a Secret.")
    config_map_key_ref: KeyRef | None = Field(None, alias="configMapKeyRef",
                                              description="A key of a ConfigMap.")

    @model_validator(mode="after")
    def _one(self) -> EnvSource:
        if (self.secret_key_ref is None) == (self.config_map_key_ref is None):
            raise ValueError("give exactly one of secretKeyRef and configMapKeyRef")
        return self


class EnvFrom(SpecModel):
    """Every key of a Secret or ConfigMap as variables (Kubernetes' ``envFrom``; Kubernetes
    only)."""

    secret_ref: str | None = Field(None, alias="secretRef", description="A Secret's name.")
    config_map_ref: str | None = Field(None, alias="configMapRef",
                                       description="A ConfigMap's name.")

    @model_validator(mode="after")
    def _one(self) -> EnvFrom:
        names = [n for n in (self.secret_ref, self.config_map_ref) if n is not None]
        if len(names) != 1:
            raise ValueError("give exactly one of secretRef and configMapRef")
        check_dns_label(names[0], "envFrom name")
        return self


EnvValue = str | EnvSource


class _PodGroup(SpecModel):
    """Fields every group of pods has, the head's and the workers'."""

    cpu: Quantity = Field(1, description="CPU request and limit per pod (quantity).")
    memory: Quantity = Field("2Gi", description="Memory request and limit per pod (quantity).")
    image: str | None = Field(None, description="Image of these pods; default: the spec's.")
    env: dict[str, EnvValue] = Field(
        default_factory=dict,
        description="Environment variables: a literal value, or {secretKeyRef: {name, key}} / "
        "{configMapKeyRef: {name, key}} for a secret (never written into the spec raykube "
        "passes to pods, its state or logs).",
    )
    env_from: list[EnvFrom] = Field(
        default_factory=list, alias="envFrom",
        description="Secrets and ConfigMaps whose every key becomes a variable (Kubernetes).",
    )
    ray_start_params: RayStartParams = Field(
        default_factory=dict, alias="rayStartParams", description="Flags for `ray start`."
    )

    _start_params = field_validator("ray_start_params", mode="before")(
        classmethod(lambda cls, v: _coerce_start_params(v))
    )
    _env = field_validator("env")(classmethod(lambda cls, v: check_env(v)))
    _quantities = field_validator("cpu", "memory", mode="before")(
        classmethod(lambda cls, v: _check_quantity(v)))

    @property
    def ray_memory(self) -> int:
        """Bytes of memory Ray advertises on one node of the group, for memory-based
        scheduling: rayStartParams ``memory`` wins, else the pod's memory, as KubeRay passes a
        container's limit to ``ray start --memory``."""
        return int(self.ray_start_params.get("memory") or byte_count(self.memory))


class HeadGroupSpec(_PodGroup):
    """The head pod: GCS, dashboard (Jobs API), Ray Client server and the autoscaler."""

    ray_start_params: RayStartParams = Field(
        default_factory=lambda: {"num-cpus": "0"},
        alias="rayStartParams",
        description="Flags for `ray start --head`, as KubeRay takes them. Default num-cpus: '0' "
        "keeps work off the head, as KubeRay recommends.",
    )
    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        "ClusterIP", alias="serviceType",
        description="Kubernetes Service type of the head: ClusterIP (in the cluster only), "
        "NodePort or LoadBalancer (reachable from outside: token auth required).",
    )

    @field_validator("ray_start_params")
    @classmethod
    def _no_head_gpus(cls, value: RayStartParams) -> RayStartParams:
        if "redis-password" in value:
            raise ValueError(
                "rayStartParams redis-password would put the password in the pod's command "
                "line: give it as gcsFaultToleranceOptions.redisPassword.secretName"
            )
        if value.get("num-gpus", "0") not in ("0", ""):
            raise ValueError(
                f"num-gpus {value['num-gpus']!r} on the head: the head pod gets no GPU, so Ray "
                "would schedule GPU work where there is none; put GPUs in a worker group (gpu: N)"
            )
        return value


class WorkerGroupSpec(_PodGroup):
    """A group of identical worker pods (raylets), scaled between minReplicas and maxReplicas."""

    group_name: str = Field(
        ..., alias="groupName", description="Unique name of the group; its Ray nodes carry the label "
        "raykube.io/group=<groupName>."
    )
    replicas: int | None = Field(
        None, ge=0, le=MAX_REPLICAS, description="Workers to start with. Default: minReplicas."
    )
    min_replicas: int = Field(0, ge=0, le=MAX_REPLICAS, alias="minReplicas",
                              description="Fewest workers kept.")
    max_replicas: int | None = Field(
        None, ge=0, le=MAX_REPLICAS, alias="maxReplicas",
        description="Most workers the autoscaler may run. Default: replicas (a fixed-size group).",
    )
    gpu: int = Field(0, ge=0, le=1024,
                     description="GPUs per worker (nvidia.com/gpu limit; Ray num-gpus).")
    accelerator_type: str | None = Field(
        None, alias="acceleratorType",
        description="GPU model, e.g. 'A100': Ray's accelerator_type:<X> resource and the "
        "ray.io/accelerator-type label. Needs gpu >= 1.",
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict, alias="nodeSelector", description="Kubernetes node selector."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list,
        description="Kubernetes tolerations. GPU groups get the nvidia.com/gpu toleration added.",
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Ray node labels for this group's nodes."
    )

    @field_validator("group_name")
    @classmethod
    def _group_name(cls, value: str) -> str:
        return check_dns_label(value, "groupName")

    @field_validator("accelerator_type")
    @classmethod
    def _accelerator(cls, value: str | None) -> str | None:
        if value is not None and not ACCELERATOR.match(value):
            raise ValueError(f"acceleratorType {shown(value)} is not a GPU model name: use "
                             "letters, digits and _ . - (e.g. A100, H100)")
        return value

    _labels = field_validator("labels")(classmethod(lambda cls, v: check_labels(v)))

    @model_validator(mode="after")
    def _bounds_and_gpus(self) -> WorkerGroupSpec:
        if self.replicas is None:
            self.replicas = self.min_replicas
        if self.max_replicas is None:
            self.max_replicas = max(self.replicas, self.min_replicas)
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"minReplicas ({self.min_replicas}) is greater than maxReplicas "
                f"({self.max_replicas}): raise maxReplicas or lower minReplicas"
            )
        if not self.min_replicas <= self.replicas <= self.max_replicas:
            raise ValueError(
                f"replicas ({self.replicas}) is outside [minReplicas, maxReplicas] = "
                f"[{self.min_replicas}, {self.max_replicas}]: pick a value inside the bounds"
            )
        if self.accelerator_type and self.gpu == 0:
            raise ValueError(
                f"acceleratorType {self.accelerator_type!r} is set but gpu is 0: an accelerator "
                "type describes GPUs, so set gpu: 1 (or more), or remove acceleratorType"
            )
        start_gpus = self.ray_start_params.get("num-gpus")
        if start_gpus is not None and start_gpus != str(self.gpu):
            raise ValueError(
                f"rayStartParams num-gpus ({start_gpus!r}) disagrees with gpu ({self.gpu}): "
                "Ray could schedule GPU work where the pod has no GPU; set gpu only"
            )
        return self

    @property
    def ray_cpus(self) -> int:
        """Logical CPUs Ray advertises on one worker (rayStartParams num-cpus wins)."""
        return int(self.ray_start_params.get("num-cpus", cpu_count(self.cpu)))

    @property
    def replica_bounds(self) -> tuple[int, int]:
        """``(minReplicas, maxReplicas)``: what the autoscaler and ``scale`` stay within."""
        return self.min_replicas, int(self.max_replicas or 0)

    def placement_resources(self) -> dict[str, float]:
        """The custom Ray resources every node of this group advertises, on either backend:
        ``group:<name>`` (so work can be placed on the group), ``accelerator_type:<X>``, and
        those of a ``resources`` rayStartParam."""
        resources: dict[str, float] = {group_resource(self.group_name): GROUP_RESOURCE_AMOUNT}
        if self.accelerator_type:
            resources[f"accelerator_type:{self.accelerator_type}"] = 1
        if "resources" in self.ray_start_params:
            resources.update(parse_resources_param(self.ray_start_params["resources"]))
        return resources

    def ray_labels(self) -> dict[str, str]:
        """The Ray node labels of this group's nodes: its own, and raykube.io/group naming it."""
        return {**self.labels, GROUP_LABEL: self.group_name}


class UpscalingMode(StrEnum):
    """How fast the autoscaler adds workers (KubeRay's autoscalerOptions.upscalingMode)."""

    CONSERVATIVE = "Conservative"
    DEFAULT = "Default"
    AGGRESSIVE = "Aggressive"

    @property
    def upscaling_speed(self) -> float:
        """The Ray autoscaler's ``upscaling_speed`` that this mode stands for in KubeRay."""
        return {"Conservative": 1.0, "Default": 1.0, "Aggressive": 1000.0}[self.value]


class AutoscalerOptions(SpecModel):
    """Options of Ray's autoscaler, as KubeRay names them."""

    idle_timeout_seconds: int = Field(
        60, ge=0, alias="idleTimeoutSeconds",
        description="Seconds a worker stays idle before the autoscaler removes it (default 60).",
    )
    upscaling_mode: UpscalingMode = Field(
        UpscalingMode.DEFAULT, alias="upscalingMode",
        description="Conservative, Default or Aggressive.",
    )


class StorageSpec(SpecModel):
    """Shared storage for checkpoints: a folder locally, a PVC mounted at the same path on K8s."""

    path: str | None = Field(
        None, description="Absolute path where checkpoints live, the same on every node. "
        "Default: locally a folder private to you ($RAYKUBE_HOME/storage/<name>); on "
        "Kubernetes /mnt/raykube-storage, where the claim is mounted.",
    )
    claim_name: str | None = Field(
        None, alias="claimName",
        description="PersistentVolumeClaim to mount at path on Kubernetes; default <name>-storage.",
    )
    size: Quantity = Field("10Gi", description="Size of the claim raykube creates (quantity).")
    storage_class_name: str | None = Field(
        None, alias="storageClassName",
        description="Storage class of the claim; it must support ReadWriteMany.",
    )

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(
                f"path {value!r} is relative: give an absolute path (e.g. /mnt/checkpoints), "
                "since every node must find the same folder"
            )
        return value

    _quantities = field_validator("size", mode="before")(
        classmethod(lambda cls, v: _check_quantity(v)))


class RedisPassword(SpecModel):
    """The Redis password, given by a Secret (never inline in a spec file)."""

    secret_name: str = Field(..., alias="secretName", description="Secret holding the password.")
    key: str = Field("password", description="Key of the password in that Secret.")


class GcsFaultToleranceOptions(SpecModel):
    """GCS fault tolerance (KubeRay ``gcsFaultToleranceOptions``): the head keeps its cluster
    state in an external Redis, so a restarted head resumes and workers and Serve keep running."""

    redis_address: str = Field(
        ..., alias="redisAddress", description="host:port of the Redis, e.g. redis:6379.",
    )
    redis_password: RedisPassword | None = Field(
        None, alias="redisPassword", description="Secret with the Redis password.",
    )
    external_storage_namespace: str | None = Field(
        None, alias="externalStorageNamespace",
        description="Key prefix in Redis (default: the RayCluster's UID).",
    )

    @field_validator("redis_address")
    @classmethod
    def _host_port(cls, value: str) -> str:
        if "@" in value or "://" in value:
            raise ValueError(
                f"redisAddress holds credentials or a scheme ({value.split('@')[-1]!r} after "
                "them): give host:port only, and the password as redisPassword.secretName"
            )
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"redisAddress {value!r} is not host:port (e.g. redis:6379)")
        return value


class AuthMode(StrEnum):
    """Ray's authentication mode (KubeRay's ``authOptions.mode``)."""

    TOKEN = "token"
    DISABLED = "disabled"


class AuthOptions(SpecModel):
    """Who may use the cluster: Ray token authentication (Ray 2.52+), on by default."""

    mode: AuthMode = Field(
        AuthMode.TOKEN,
        description="token (every request to the dashboard, Jobs API, GCS and Ray Client needs "
        "the cluster's token) or disabled (only with serviceType ClusterIP).",
    )
    secret_name: str | None = Field(
        None, alias="secretName",
        description="Secret holding the token under key auth_token; default <name>-ray-token, "
        "which `raykube up --kube` creates when it does not exist.",
    )

    _name = field_validator("secret_name")(
        classmethod(lambda cls, v: v if v is None else check_dns_label(v, "secretName")))


class MonitoringSpec(SpecModel):
    """How Prometheus and Grafana see the cluster on Kubernetes (``raykube up --kube`` applies
    these; ``raykube manifest`` prints them). Locally, ``raykube metrics NAME`` writes the
    scrape configuration instead."""

    pod_monitor: bool = Field(
        False, alias="podMonitor",
        description="PodMonitors for the head and the workers (KubeRay's documented shape).")
    service_monitor: bool = Field(
        False, alias="serviceMonitor",
        description="A ServiceMonitor on the head's service, for Prometheus setups that "
        "select ServiceMonitors only.")
    alerts: bool = Field(False, description="raykube's alert rules as a PrometheusRule.")
    grafana: bool = Field(
        False, description="raykube's and Ray's Grafana dashboards as ConfigMaps labelled "
        "grafana_dashboard: '1' for Grafana's dashboard sidecar.")
    release: str = Field(
        "prometheus", description="The release label the Prometheus operator selects "
        "monitors and rules by (its Helm release's name).")

    _release = field_validator("release")(
        classmethod(lambda cls, v: check_dns_label(v, "release")))


class ClusterSpec(SpecModel):
    """A Ray cluster: a head, any number of worker groups, autoscaling and storage."""

    name: str = Field(..., description="Cluster name: the RayCluster's metadata.name.")
    namespace: str | None = Field(
        None, description="Kubernetes namespace; left out of manifests when unset, so "
        "`kubectl apply -n` places them. raykube then uses -n, else the kubeconfig context's, "
        "else (in a pod) its service account's.")
    ray_version: str = Field(RAY_VERSION, alias="rayVersion", description="Ray version.")
    image: str | None = Field(
        None, description="Default image of every pod; default rayproject/ray:<rayVersion>."
    )
    head_group_spec: HeadGroupSpec = Field(
        default_factory=HeadGroupSpec, alias="headGroupSpec", description="The head pod."
    )
    worker_group_specs: list[WorkerGroupSpec] = Field(
        default_factory=list, alias="workerGroupSpecs", description="The worker groups."
    )
    enable_in_tree_autoscaling: bool = Field(
        False, alias="enableInTreeAutoscaling",
        description="Let Ray's autoscaler scale each group between minReplicas and maxReplicas.",
    )
    autoscaler_options: AutoscalerOptions = Field(
        default_factory=AutoscalerOptions, alias="autoscalerOptions",
        description="Idle timeout and upscaling mode of the autoscaler.",
    )
    storage: StorageSpec | None = Field(None, description="Shared checkpoint storage.")
    gcs_fault_tolerance_options: GcsFaultToleranceOptions | None = Field(
        None, alias="gcsFaultToleranceOptions",
        description="External Redis for GCS fault tolerance: a lost head comes back with the "
        "cluster's state (KubeRay recreates the head pod; locally `raykube up` starts it again).",
    )
    auth_options: AuthOptions = Field(
        default_factory=AuthOptions, alias="authOptions",
        description="Ray token authentication (on by default; local clusters always use it).",
    )
    monitoring: MonitoringSpec = Field(
        default_factory=MonitoringSpec,
        description="Prometheus monitors, alert rules and Grafana dashboards (Kubernetes).")
    network_policy: bool = Field(
        False, alias="networkPolicy",
        description="Kubernetes only: also a NetworkPolicy admitting to the cluster's pods only "
        "its own pods (any port), Serve's port from the namespace and the metrics port.",
    )

    @field_validator("name", "namespace")
    @classmethod
    def _names(cls, value: str | None) -> str | None:
        return None if value is None else check_dns_label(value, "name")

    @model_validator(mode="after")
    def _exposed_needs_auth(self) -> ClusterSpec:
        exposed = self.head_group_spec.service_type != "ClusterIP"
        if exposed and self.auth_options.mode is AuthMode.DISABLED:
            raise ValueError(
                f"headGroupSpec.serviceType {self.head_group_spec.service_type} makes the "
                "dashboard and Jobs API reachable from outside the cluster, and authOptions.mode "
                "is disabled: anyone there could run code as the Ray pods; enable token auth "
                "or use ClusterIP"
            )
        return self

    @property
    def token_secret(self) -> str | None:
        """The Secret holding the cluster's Ray token (key ``auth_token``), or None without
        token auth."""
        if self.auth_options.mode is AuthMode.DISABLED:
            return None
        return self.auth_options.secret_name or f"{self.name}-ray-token"

    @model_validator(mode="after")
    def _unique_groups(self) -> ClusterSpec:
        seen: set[str] = set()
        for group in self.worker_group_specs:
            if group.group_name in seen:
                raise ValueError(
                    f"groupName {group.group_name!r} is used twice: every worker group needs "
                    "its own name"
                )
            seen.add(group.group_name)
        return self

    @property
    def resolved_image(self) -> str:
        """The image pods run when neither the group nor the spec names one."""
        return self.image or f"rayproject/ray:{self.ray_version}"

    @property
    def survives_head_loss(self) -> bool:
        """Whether the cluster keeps its state outside the head (GCS fault tolerance), so that
        what runs on the workers, services included, should outlive the head."""
        return self.gcs_fault_tolerance_options is not None

    def worker_group(self, name: str) -> WorkerGroupSpec:
        """The worker group called ``name``.

        Raises:
            KeyError: no such group; the message lists the groups there are.
        """
        for group in self.worker_group_specs:
            if group.group_name == name:
                return group
        known = ", ".join(g.group_name for g in self.worker_group_specs) or "none"
        raise KeyError(f"no worker group {name!r} (groups: {known})")

    @property
    def has_gpus(self) -> bool:
        """Whether any worker group has GPUs."""
        return any(g.gpu for g in self.worker_group_specs)

    def with_storage_path(self, default: str) -> ClusterSpec:
        """A copy whose storage (if any) has a path: its own, else ``default``."""
        if self.storage is None or self.storage.path is not None:
            return self
        storage = self.storage.model_copy(update={"path": default})
        return self.model_copy(update={"storage": storage})

    def to_yaml(self) -> str:
        """The spec as YAML with KubeRay's field names, loadable by :func:`load_spec`."""
        data = self.model_dump(by_alias=True, exclude_none=True, mode="json")
        return yaml.safe_dump(data, sort_keys=False)

    def public(self) -> ClusterSpec:
        """The spec without its environment variables: what raykube hands to pods
        (``RAYKUBE_SPEC``) and keeps in its state, where every job can read it. Scheduling
        checks need the groups, not their secrets."""
        groups = [g.model_copy(update={"env": {}, "env_from": []})
                  for g in self.worker_group_specs]
        head = self.head_group_spec.model_copy(update={"env": {}, "env_from": []})
        return self.model_copy(update={"head_group_spec": head, "worker_group_specs": groups})


def parse_spec(data: Any, *, source: str = "<spec>") -> ClusterSpec:
    """Validate a cluster spec given as a mapping (YAML already parsed).

    Raises:
        SpecError: listing every problem with its field path and how to fix it.
    """
    return parse(ClusterSpec, data, source=source, what="cluster spec",
                 example="clusters/local.yaml")


def load_spec(path: str | Path) -> ClusterSpec:
    """Read and validate a cluster spec file.

    Raises:
        SpecError: the file is missing, is not YAML, or is not a valid spec.

    >>> load_spec("clusters/local.yaml").name
    'local'
    """
    return load(path, ClusterSpec, "cluster spec", "clusters/local.yaml")

