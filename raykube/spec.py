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

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from raykube.errors import SpecError
from raykube.quantity import byte_count, cpu_count, parse_quantity

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


def parse_resources_param(value: str) -> dict[str, float]:
    """The custom resources of a ``resources`` rayStartParam: plain JSON, or quoted the way
    KubeRay's docs write it for the shell (``'"{\\"Custom1\\": 1}"'``).

    Raises:
        ValueError: the value is not a JSON object.
    """
    import json

    text = value.strip().strip("'")
    if len(text) > 1 and text[0] == text[-1] == '"':
        text = text[1:-1].replace('\\"', '"')
    parsed = json.loads(text)
    if not isinstance(parsed, dict):
        raise ValueError(f"{value!r} is not a JSON object of resource amounts")
    return {str(k): float(v) for k, v in parsed.items()}


def format_resources_param(resources: dict[str, float]) -> str:
    """A ``resources`` rayStartParam that survives the shell: KubeRay pastes rayStartParams
    into the container's ``bash -c`` line unquoted, so a space in the JSON would split it."""
    import json

    compact = json.dumps({k: (int(v) if float(v).is_integer() else v)
                          for k, v in resources.items()}, sort_keys=True, separators=(",", ":"))
    return f"'{compact}'"


SPEC_ENV = "RAYKUBE_SPEC"
"""Environment variable holding the cluster spec (YAML) on every node of a raykube cluster, so
a job's driver can check requests against the cluster it runs on."""

GPU_RESOURCE = "nvidia.com/gpu"
"""The extended resource NVIDIA's device plugin advertises, and the taint key of GPU node pools."""

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _check_dns_label(value: str, what: str) -> str:
    if len(value) > 63 or not _DNS_LABEL.match(value):
        raise ValueError(
            f"{what} {value!r} is not a valid Kubernetes name: use at most 63 lower-case "
            "letters, digits and '-', starting and ending with a letter or digit (e.g. 'gpu-a100')"
        )
    return value


def _check_quantity(value: str | int | float) -> str | int | float:
    parse_quantity(value)
    return value


Quantity = Annotated[str | int | float, Field(union_mode="left_to_right")]
RayStartParams = dict[str, str]


class _Model(BaseModel):
    """Shared model settings: unknown keys refused, camelCase aliases, assignment validated."""

    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, validate_assignment=True, frozen=False
    )


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
            coerced[str(key)] = str(item).lower() if isinstance(item, bool) else str(item)
        return coerced
    return value


class Toleration(_Model):
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


class _PodGroup(_Model):
    """Fields every group of pods has, the head's and the workers'."""

    cpu: Quantity = Field(1, description="CPU request and limit per pod (quantity).")
    memory: Quantity = Field("2Gi", description="Memory request and limit per pod (quantity).")
    image: str | None = Field(None, description="Image of these pods; default: the spec's.")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables.")
    ray_start_params: RayStartParams = Field(
        default_factory=dict, alias="rayStartParams", description="Flags for `ray start`."
    )

    _start_params = field_validator("ray_start_params", mode="before")(
        classmethod(lambda cls, v: _coerce_start_params(v))
    )
    _quantities = field_validator("cpu", "memory")(classmethod(lambda cls, v: _check_quantity(v)))


class HeadGroupSpec(_PodGroup):
    """The head pod: GCS, dashboard (Jobs API), Ray Client server and the autoscaler."""

    ray_start_params: RayStartParams = Field(
        default_factory=lambda: {"num-cpus": "0"},
        alias="rayStartParams",
        description="Flags for `ray start --head`, as KubeRay takes them. Default num-cpus: '0' "
        "keeps work off the head, as KubeRay recommends.",
    )
    service_type: str = Field(
        "ClusterIP", alias="serviceType", description="Kubernetes Service type of the head."
    )

    @field_validator("ray_start_params")
    @classmethod
    def _no_head_gpus(cls, value: RayStartParams) -> RayStartParams:
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
        None, ge=0, description="Workers to start with. Default: minReplicas."
    )
    min_replicas: int = Field(0, ge=0, alias="minReplicas", description="Fewest workers kept.")
    max_replicas: int | None = Field(
        None, ge=0, alias="maxReplicas",
        description="Most workers the autoscaler may run. Default: replicas (a fixed-size group).",
    )
    gpu: int = Field(0, ge=0, description="GPUs per worker (nvidia.com/gpu limit; Ray num-gpus).")
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
        return _check_dns_label(value, "groupName")

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
    def memory_bytes(self) -> int:
        """Memory of one worker in bytes."""
        return byte_count(self.memory)


class UpscalingMode(StrEnum):
    """How fast the autoscaler adds workers (KubeRay's autoscalerOptions.upscalingMode)."""

    CONSERVATIVE = "Conservative"
    DEFAULT = "Default"
    AGGRESSIVE = "Aggressive"

    @property
    def upscaling_speed(self) -> float:
        """The Ray autoscaler's ``upscaling_speed`` that this mode stands for in KubeRay."""
        return {"Conservative": 1.0, "Default": 1.0, "Aggressive": 1000.0}[self.value]


class AutoscalerOptions(_Model):
    """Options of Ray's autoscaler, as KubeRay names them."""

    idle_timeout_seconds: int = Field(
        60, ge=0, alias="idleTimeoutSeconds",
        description="Seconds a worker stays idle before the autoscaler removes it (default 60).",
    )
    upscaling_mode: UpscalingMode = Field(
        UpscalingMode.DEFAULT, alias="upscalingMode",
        description="Conservative, Default or Aggressive.",
    )


class StorageSpec(_Model):
    """Shared storage for checkpoints: a folder locally, a PVC mounted at the same path on K8s."""

    path: str = Field(
        ..., description="Absolute path where checkpoints live, the same on every node."
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
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(
                f"path {value!r} is relative: give an absolute path (e.g. /mnt/checkpoints), "
                "since every node must find the same folder"
            )
        return value

    _quantities = field_validator("size")(classmethod(lambda cls, v: _check_quantity(v)))


class RedisPassword(_Model):
    """The Redis password, given by a Secret (never inline in a spec file)."""

    secret_name: str = Field(..., alias="secretName", description="Secret holding the password.")
    key: str = Field("password", description="Key of the password in that Secret.")


class GcsFaultToleranceOptions(_Model):
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
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"redisAddress {value!r} is not host:port (e.g. redis:6379)")
        return value


class ClusterSpec(_Model):
    """A Ray cluster: a head, any number of worker groups, autoscaling and storage."""

    name: str = Field(..., description="Cluster name: the RayCluster's metadata.name.")
    namespace: str = Field("default", description="Kubernetes namespace.")
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
        description="External Redis for GCS fault tolerance (Kubernetes only).",
    )

    @field_validator("name", "namespace")
    @classmethod
    def _names(cls, value: str) -> str:
        return _check_dns_label(value, "name")

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

    def to_yaml(self) -> str:
        """The spec as YAML with KubeRay's field names, loadable by :func:`load_spec`."""
        data = self.model_dump(by_alias=True, exclude_none=True, mode="json")
        return yaml.safe_dump(data, sort_keys=False)


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not part.startswith("function-") and part not in ("str", "int", "float"):
            path += f".{part}" if path else part
    return path or "(top level)"


def _describe(error: dict[str, Any], data: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown field: remove it or check its spelling (field names are KubeRay's, camelCase)"
    if kind == "missing":
        return "required field is missing"
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if "input" in error and kind not in ("value_error", "assertion_error"):
        message = f"{message} (got {error['input']!r})"
    return message


def _group_name_at(data: Any, loc: tuple[int | str, ...]) -> str | None:
    """The groupName of the worker group an error points into, to name it in the message."""
    if len(loc) >= 2 and loc[0] == "workerGroupSpecs" and isinstance(loc[1], int):
        try:
            name = data["workerGroupSpecs"][loc[1]].get("groupName")
            return str(name) if name is not None else None
        except (KeyError, IndexError, TypeError, AttributeError):
            return None
    return None


def parse_spec(data: Any, *, source: str = "<spec>") -> ClusterSpec:
    """Validate a spec given as a mapping (YAML already parsed).

    Raises:
        SpecError: listing every problem with its field path and how to fix it.
    """
    if not isinstance(data, dict):
        raise SpecError(
            f"{source}: a cluster spec is a YAML mapping (name:, workerGroupSpecs:, ...), "
            f"not {type(data).__name__}",
            "start from clusters/local.yaml",
            file=source,
        )
    try:
        return ClusterSpec.model_validate(data)
    except ValidationError as exc:
        raise format_problems(exc, data, source) from None


def format_problems(exc: ValidationError, data: Any, source: str) -> SpecError:
    """One :class:`SpecError` listing every problem of ``exc`` with its field path and fix."""
    problems: list[tuple[str, str]] = []
    for error in exc.errors():
        path = _field_path(error["loc"])
        group = _group_name_at(data, error["loc"])
        where = f"{path} (group {group!r})" if group else path
        problems.append((where, _describe(error, data)))
    lines = "\n".join(f"  {path}: {message}" for path, message in problems)
    kinds = {"RayJob": "job spec", "Serve": "serve spec"}
    kind = kinds.get(data.get("kind"), "cluster spec") if isinstance(data, dict) else "cluster spec"
    return SpecError(
        f"{source}: invalid {kind} ({len(problems)} problem"
        f"{'s' if len(problems) != 1 else ''}):\n{lines}",
        "fix the fields named above; `raykube spec --explain` lists every field",
        file=source,
        problems=problems,
    )


def read_yaml(path: str | Path, what: str = "spec") -> Any:
    """The parsed YAML of ``path``; every spec kind (cluster, job, serve) is read through here.

    Raises:
        SpecError: the file is missing or is not YAML (with the line and column).
    """
    file = Path(path)
    if not file.is_file():
        hint = "check the path; the shipped specs are in clusters/ and jobs/"
        raise SpecError(f"{file}: no such {what} file", hint, file=str(file))
    try:
        return yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(
            f"{file}: not valid YAML{where}: {problem}",
            "fix the indentation or quoting there (YAML uses spaces, not tabs)",
            file=str(file),
        ) from None


def spec_kind(path: str | Path) -> str:
    """What a spec file describes: its ``kind`` (RayJob, Serve), else RayCluster.

    Raises:
        SpecError: the file is missing or is not YAML.
    """
    data = read_yaml(path)
    kind = data.get("kind") if isinstance(data, dict) else None
    return str(kind) if kind else "RayCluster"


def load_spec(path: str | Path) -> ClusterSpec:
    """Read and validate a cluster spec file.

    Raises:
        SpecError: the file is missing, is not YAML, or is not a valid spec.

    >>> load_spec("clusters/local.yaml").name
    'local'
    """
    return parse_spec(read_yaml(path), source=str(path))


def explain() -> str:
    """Every field of the spec with its YAML name, type and description, for `raykube spec`."""
    lines: list[str] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            key = f"{prefix}{field.alias or name}"
            lines.append(f"{key}: {field.description or ''}")
            annotation = field.annotation
            inner = getattr(annotation, "__args__", (annotation,))
            for candidate in inner:
                if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                    suffix = "[]." if "list" in str(annotation) else "."
                    walk(candidate, key + suffix)

    walk(ClusterSpec, "")
    return "\n".join(lines)
