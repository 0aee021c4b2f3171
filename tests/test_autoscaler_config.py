"""Spec -> Ray autoscaler config for the local backend (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from raykube.backends.local.autoscaler_config import (
    HEAD_NODE_TYPE,
    build_autoscaler_config,
    unsupported_worker_params,
)
from raykube.specs.cluster import GROUP_LABEL, load_spec

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parent.parent


def config(targets: dict[str, int | None]) -> dict:  # type: ignore[type-arg]
    spec = load_spec(ROOT / "clusters" / "gpu.yaml")
    return build_autoscaler_config(
        spec, gcs_address="10.0.0.1:6379", head_node_id="0" * 56, head_resources={"CPU": 0},
        targets=targets,
        nodes_dir="/tmp/rk-x/nodes",
    )


def test_one_node_type_per_group_with_its_resources_and_label() -> None:
    types = config({"cpu": None, "gpu-a100": None})["available_node_types"]
    assert set(types) == {HEAD_NODE_TYPE, "cpu", "gpu-a100"}
    gpu = types["gpu-a100"]
    assert gpu["resources"]["GPU"] == 1 and gpu["resources"]["CPU"] == 1
    assert gpu["resources"]["accelerator_type:A100"] == 1
    assert gpu["labels"][GROUP_LABEL] == "gpu-a100"
    assert gpu["resources"]["group:gpu-a100"] == 1000
    assert "GPU" not in types["cpu"]["resources"]
    spec = load_spec(ROOT / "clusters" / "gpu.yaml")
    assert types["cpu"]["resources"]["memory"] == spec.worker_group("cpu").ray_memory


def test_memory_is_the_groups_and_a_ray_start_param_wins() -> None:
    spec = load_spec(ROOT / "clusters" / "local.yaml")
    group = spec.worker_group_specs[0]
    assert group.ray_memory == 2 * 2**30  # memory: 2Gi
    pinned = group.model_copy(update={"ray_start_params": {"memory": "123456789"}})
    assert pinned.ray_memory == 123456789


def test_autoscaled_groups_get_their_spec_bounds() -> None:
    cfg = config({"cpu": None, "gpu-a100": None})
    assert (cfg["available_node_types"]["cpu"]["min_workers"],
            cfg["available_node_types"]["cpu"]["max_workers"]) == (1, 2)
    assert cfg["max_workers"] == 4
    assert cfg["idle_timeout_minutes"] == pytest.approx(0.5)
    assert cfg["provider"]["type"] == "external"
    assert cfg["provider"]["module"].endswith("node_provider.PodFolderNodeProvider")
    assert cfg["provider"]["raykube_nodes_dir"] == "/tmp/rk-x/nodes"
    assert cfg["provider"]["gcs_address"] == "10.0.0.1:6379"


def test_pinned_target_fixes_both_bounds() -> None:
    node = config({"cpu": 2, "gpu-a100": 0})["available_node_types"]
    assert (node["cpu"]["min_workers"], node["cpu"]["max_workers"]) == (2, 2)
    assert (node["gpu-a100"]["min_workers"], node["gpu-a100"]["max_workers"]) == (0, 0)


def test_kubernetes_only_params_are_reported() -> None:
    spec = load_spec(ROOT / "clusters" / "local.yaml")
    group = spec.worker_group_specs[0].model_copy(
        update={"ray_start_params": {"num-cpus": "1", "metrics-export-port": "8080"}}
    )
    assert unsupported_worker_params(group) == ["metrics-export-port"]
