"""Spec -> KubeRay manifests: valid against KubeRay's CRD schemas, right field by field."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from conftest import ROOT
from raykube.errors import SpecError
from raykube.render.cluster import render_all, render_raycluster, to_yaml
from raykube.specs.cluster import MonitoringSpec, load_spec, parse_spec

pytestmark = pytest.mark.unit

CRDS = ROOT.parent / "shared" / "k8s" / "crds"


def crd_schema(path: Path) -> dict[str, Any]:
    crd = yaml.safe_load(path.read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    return version["schema"]["openAPIV3Schema"]


needs_crds = pytest.mark.skipif(not CRDS.is_dir(), reason="../shared/k8s/crds is not present")


@needs_crds
@pytest.mark.parametrize("path", sorted((ROOT / "clusters").glob("*.yaml")), ids=lambda p: p.name)
def test_rendered_raycluster_is_valid_against_the_crd(path: Path) -> None:
    manifest = render_raycluster(load_spec(path))
    jsonschema.validate(manifest, crd_schema(CRDS / "ray.io_rayclusters.yaml"))


def monitored(path: Path = ROOT / "clusters" / "gpu.yaml") -> Any:
    spec = load_spec(path)
    spec.monitoring = MonitoringSpec(podMonitor=True, serviceMonitor=True, alerts=True,
                                     grafana=True, release="kube-prom")
    return spec


@needs_crds
def test_monitoring_objects_are_valid_against_their_crds() -> None:
    objects = render_all(monitored())
    kinds = {"PodMonitor": "podmonitors", "ServiceMonitor": "servicemonitors",
             "PrometheusRule": "prometheusrules"}
    checked = 0
    for body in objects:
        if body["kind"] in kinds:
            schema = CRDS / "monitoring" / f"monitoring.coreos.com_{kinds[body['kind']]}.yaml"
            if schema.is_file():
                jsonschema.validate(body, crd_schema(schema))
                checked += 1
            assert body["metadata"]["labels"]["release"] == "kube-prom"
    assert checked >= 3, "the PodMonitors and ServiceMonitor at least"
    head = next(b for b in objects if b["metadata"]["name"] == "gpu-ray-head"
                and b["kind"] == "PodMonitor")
    assert [e["port"] for e in head["spec"]["podMetricsEndpoints"]] == [
        "metrics", "as-metrics", "dash-metrics"]
    assert head["spec"]["podMetricsEndpoints"][0]["relabelings"][0]["targetLabel"] == \
        "ray_io_cluster"
    cluster = next(b for b in objects if b["kind"] == "RayCluster")
    ports = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"]
    assert {"as-metrics", "dash-metrics", "metrics"} <= {p["name"] for p in ports}, \
        "the head names the ports the PodMonitor scrapes"


def test_grafana_dashboards_are_configmaps_for_the_sidecar() -> None:
    maps = [b for b in render_all(monitored()) if b["kind"] == "ConfigMap"]
    uids = set()
    for config_map in maps:
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert config_map["metadata"]["labels"]["raykube.io/cluster"] == "gpu"
        (name, text), = config_map["data"].items()
        uids.add(json.loads(text)["uid"])
        assert len(text) < 1_000_000, "a ConfigMap holds at most 1 MiB"
    assert {"raykube-training", "raykube-serving", "rayDefaultDashboard"} <= uids


@needs_crds
def test_schema_catches_a_broken_manifest() -> None:
    manifest = render_raycluster(load_spec(ROOT / "clusters" / "gpu.yaml"))
    manifest["spec"]["workerGroupSpecs"][0]["replicas"] = "two"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(manifest, crd_schema(CRDS / "ray.io_rayclusters.yaml"))


def test_gpu_group_fields() -> None:
    manifest = render_raycluster(load_spec(ROOT / "clusters" / "gpu.yaml"))
    groups = {g["groupName"]: g for g in manifest["spec"]["workerGroupSpecs"]}
    gpu = groups["gpu-a100"]
    pod = gpu["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "nvidia.com/gpu" not in container["resources"]["requests"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert (gpu["replicas"], gpu["minReplicas"], gpu["maxReplicas"]) == (1, 0, 2)
    # One shell word: KubeRay pastes rayStartParams into `bash -c` unquoted.
    (word,) = shlex.split(gpu["rayStartParams"]["resources"])
    assert json.loads(word) == {"accelerator_type:A100": 1, "group:gpu-a100": 1000}
    assert gpu["labels"] == {"raykube.io/group": "gpu-a100"}
    cpu_pod = groups["cpu"]["template"]["spec"]
    assert "tolerations" not in cpu_pod and "nodeSelector" not in cpu_pod
    assert "nvidia.com/gpu" not in cpu_pod["containers"][0]["resources"]["limits"]


def test_autoscaling_and_head() -> None:
    manifest = render_raycluster(load_spec(ROOT / "clusters" / "local.yaml"))
    spec = manifest["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    options = {k: v for k, v in spec["autoscalerOptions"].items() if k != "env"}  # env: auth
    assert options == {"idleTimeoutSeconds": 30, "upscalingMode": "Default"}
    head = spec["headGroupSpec"]
    assert head["rayStartParams"] == {"dashboard-host": "0.0.0.0", "num-cpus": "0"}
    container = head["template"]["spec"]["containers"][0]
    assert container["image"] == "rayproject/ray:2.60.0"
    assert {"name": "dashboard", "containerPort": 8265} in container["ports"]
    fixed = render_raycluster(parse_spec({"name": "f", "workerGroupSpecs": [{"groupName": "g"}]}))
    assert "autoscalerOptions" not in fixed["spec"]
    assert fixed["spec"]["enableInTreeAutoscaling"] is False


def test_storage_claim_is_mounted_everywhere() -> None:
    spec = load_spec(ROOT / "clusters" / "gpu.yaml")
    objects = render_all(spec)
    assert [o["kind"] for o in objects] == ["PersistentVolumeClaim", "RayCluster"]
    claim = objects[0]
    assert claim["metadata"]["name"] == "gpu-storage"
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    cluster = objects[1]["spec"]
    pods = [cluster["headGroupSpec"]["template"]["spec"]] + [
        g["template"]["spec"] for g in cluster["workerGroupSpecs"]]
    for pod in pods:
        assert pod["volumes"] == [{"name": "raykube-storage",
                                   "persistentVolumeClaim": {"claimName": "gpu-storage"}}]
        assert pod["containers"][0]["volumeMounts"] == [
            {"name": "raykube-storage", "mountPath": "/tmp/raykube-storage/gpu"}]


def test_existing_claim_is_used_not_created() -> None:
    spec = parse_spec({"name": "c", "storage": {"path": "/mnt/ckpt", "claimName": "shared"}})
    objects = render_all(spec)
    assert [o["kind"] for o in objects] == ["RayCluster"]
    volumes = objects[0]["spec"]["headGroupSpec"]["template"]["spec"]["volumes"]
    assert volumes[0]["persistentVolumeClaim"]["claimName"] == "shared"


def test_spec_travels_to_the_pods_for_jobs() -> None:
    spec = load_spec(ROOT / "clusters" / "gpu.yaml")
    env = render_raycluster(spec)["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0][
        "env"]
    shipped = next(e["value"] for e in env if e["name"] == "RAYKUBE_SPEC")
    assert parse_spec(yaml.safe_load(shipped)) == spec


def test_every_ray_container_starts_with_serves_fast_path_unless_its_group_says() -> None:
    from raykube.render.serve_config import SERVE_FAST_PATH_ENV

    spec = load_spec(ROOT / "clusters" / "gpu.yaml")
    spec.worker_group_specs[0].env["RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE"] = "1"
    cluster = render_raycluster(spec)["spec"]
    pods = [cluster["headGroupSpec"]["template"]["spec"]] + [
        g["template"]["spec"] for g in cluster["workerGroupSpecs"]]
    assert len(pods) >= 3
    for index, pod in enumerate(pods):
        env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
        wanted = dict(SERVE_FAST_PATH_ENV)
        if index == 1:  # the first worker group's own setting wins
            wanted["RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE"] = "1"
        assert {k: env[k] for k in wanted} == wanted


def test_yaml_stream_round_trips() -> None:
    objects = render_all(monitored())
    assert list(yaml.safe_load_all(to_yaml(objects))) == objects


@needs_crds
def test_gcs_fault_tolerance_renders_with_a_secret_password() -> None:
    data = yaml.safe_load((ROOT / "clusters" / "gpu.yaml").read_text())
    data["gcsFaultToleranceOptions"] = {"redisAddress": "redis:6379",
                                        "redisPassword": {"secretName": "redis-auth"}}
    manifest = render_raycluster(parse_spec(data))
    jsonschema.validate(manifest, crd_schema(CRDS / "ray.io_rayclusters.yaml"))
    assert manifest["spec"]["gcsFaultToleranceOptions"] == {
        "redisAddress": "redis:6379",
        "redisPassword": {"valueFrom": {"secretKeyRef": {"name": "redis-auth",
                                                         "key": "password"}}}}
    data["gcsFaultToleranceOptions"] = {"redisAddress": "redis"}
    with pytest.raises(SpecError, match="redisAddress 'redis' is not host:port"):
        parse_spec(data)
