"""Serve specs -> Serve config and RayService: valid against Ray's and KubeRay's own schemas,
right field by field, and bad specs refused with the field and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from conftest import ROOT, run_cli
from raykube.errors import SpecError
from raykube.render.serve_config import HA_ROUTER_CPUS, render_serve_config
from raykube.render.rayservice import SERVICE_LABEL, render_service_manifests
from raykube.specs.serve import load_serve_spec, parse_serve_spec
from test_render import CRDS, crd_schema, needs_crds

pytestmark = pytest.mark.unit

BASE: dict[str, Any] = {
    "kind": "Serve", "name": "digits", "framework": "torch",
    "predictor": "digits_serving:TorchDigits",
    "versions": [{"version": "v1", "checkpoint": "/ckpt/1", "weight": 100}],
    "replicas": 2,
}


def test_example_serve_spec_renders_a_config_serve_accepts() -> None:
    from ray.serve.schema import ServeDeploySchema

    spec = load_serve_spec(ROOT / "jobs" / "digits.serve.yaml")
    config = render_serve_config(spec)
    ServeDeploySchema.model_validate(config)  # Serve's own schema (serve deploy, RayService)
    router, model = config["applications"]
    assert router["route_prefix"] == "/digits" and model["route_prefix"] is None
    assert router["deployments"][0]["user_config"] == {"weights": {"v1": 100}}
    deployment = model["deployments"][0]
    assert deployment["autoscaling_config"]["max_replicas"] == 2
    assert deployment["user_config"] == {"max_batch_size": 16, "batch_wait_timeout_s": 0.005}
    assert deployment["ray_actor_options"] == {"num_cpus": 0.5}
    assert "working_dir" not in model["runtime_env"]  # local: uploaded at deploy, not rendered
    assert router["deployments"][0]["ray_actor_options"] == {"num_cpus": 0}


def test_a_cluster_that_survives_head_loss_gets_its_router_off_the_head() -> None:
    """With GCS fault tolerance the router reserves a sliver of CPU (heads have none), so it
    runs on a worker and keeps answering while the head is down; without, it reserves none."""
    spec = load_serve_spec(ROOT / "jobs" / "digits.serve.yaml")
    router = render_serve_config(spec, survives_head_loss=True)["applications"][0]
    assert router["deployments"][0]["ray_actor_options"] == {"num_cpus": HA_ROUTER_CPUS}
    assert 0 < HA_ROUTER_CPUS < 0.05


def test_gpu_replicas_and_fixed_count() -> None:
    spec = parse_serve_spec({**BASE, "resources": {"cpus": 1, "gpus": 1,
                                                   "acceleratorType": "A100"}})
    model = render_serve_config(spec)["applications"][1]
    deployment = model["deployments"][0]
    assert deployment["ray_actor_options"] == {"num_cpus": 1, "num_gpus": 1,
                                               "accelerator_type": "A100"}
    assert deployment["num_replicas"] == 2 and "autoscaling_config" not in deployment
    assert model["args"]["checkpoint"] == "/ckpt/1"


def test_each_version_is_its_own_application() -> None:
    spec = parse_serve_spec({**BASE, "versions": [
        {"version": "v1", "checkpoint": "/ckpt/1", "weight": 90},
        {"version": "v2", "checkpoint": "/ckpt/2", "weight": 10}]})
    apps = render_serve_config(spec)["applications"]
    assert [a["name"] for a in apps] == ["digits", "digits--v1", "digits--v2"]
    assert apps[0]["deployments"][0]["user_config"]["weights"] == {"v1": 90, "v2": 10}
    assert spec.with_weights(v2=100).weights == {"v1": 0, "v2": 100}
    with pytest.raises(SpecError, match="no version named v3"):
        spec.with_weights(v3=100)


@pytest.mark.parametrize("change, words", [
    ({"versions": [{"version": "v1", "checkpoint": "/c", "weight": 60}]},
     "weights sum to 60 (v1=60); make them sum to 100"),
    ({"autoscaling": {"minReplicas": 1, "maxReplicas": 2}}, "exactly one of replicas"),
    ({"replicas": None, "autoscaling": {"minReplicas": 3, "maxReplicas": 2}},
     "minReplicas (3) is above maxReplicas (2)"),
    ({"resources": {"acceleratorType": "A100"}}, "acceleratorType 'A100' without gpus"),
    ({"predictor": "digits_serving.TorchDigits"}, "is not module:Class"),
    ({"routePrefix": "digits"}, "must start with '/'"),
    ({"framework": "jax"}, "framework"),
    ({"versions": [{"version": "v1", "checkpoint": "/a", "weight": 50},
                   {"version": "v1", "checkpoint": "/b", "weight": 50}]}, "version names repeat"),
    ({"replica": 2}, "replica"),
])
def test_bad_serve_specs_name_the_field_and_fix(change: dict[str, Any], words: str) -> None:
    data = {**BASE, **change}
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(SpecError) as caught:
        parse_serve_spec(data, source="bad.serve.yaml")
    assert "invalid serve spec" in caught.value.message
    assert words in caught.value.message


@needs_crds
def test_rayservice_is_valid_and_carries_the_serve_config() -> None:
    service, budget = render_service_manifests(
        load_serve_spec(ROOT / "jobs" / "digits.rayservice.yaml"))
    jsonschema.validate(service, crd_schema(CRDS / "ray.io_rayservices.yaml"))
    spec = service["spec"]
    config = yaml.safe_load(spec["serveConfigV2"])
    assert config["proxy_location"] == "EveryNode" and config["http_options"]["port"] == 8000
    assert [a["name"] for a in config["applications"]] == ["digits", "digits--v1"]
    assert spec["upgradeStrategy"] == {"type": "NewCluster"}
    workers = spec["rayClusterConfig"]["workerGroupSpecs"]
    assert all(g["template"]["metadata"]["labels"][SERVICE_LABEL] == "digits" for g in workers)
    assert budget["kind"] == "PodDisruptionBudget" and budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"] == {SERVICE_LABEL: "digits",
                                                         "ray.io/node-type": "worker"}


def test_rayservice_refuses_a_local_working_dir() -> None:
    with pytest.raises(SpecError, match="KubeRay pods cannot read") as caught:
        render_service_manifests(load_serve_spec(ROOT / "jobs" / "digits.serve.yaml"))
    assert "URI" in caught.value.hint


def test_manifest_and_serve_build_commands(tmp_path: Path) -> None:
    manifest = run_cli("manifest", "jobs/digits.rayservice.yaml")
    assert manifest.returncode == 0, manifest.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(manifest.stdout)]
    assert kinds == ["RayService", "PodDisruptionBudget"]
    built = run_cli("serve", "build", "jobs/digits.serve.yaml")
    assert built.returncode == 0 and "local folder and is left out" in built.stderr
    assert yaml.safe_load(built.stdout)["applications"][0]["name"] == "digits"
    local = run_cli("manifest", "jobs/digits.serve.yaml")
    assert local.returncode == 2 and "error: service digits: workingDir" in local.stderr
