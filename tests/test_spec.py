"""The cluster spec: the shipped files load, and every kind of bad input is refused clearly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from raykube.errors import SpecError
from raykube.quantity import parse_quantity
from raykube.specs.cluster import load_spec, parse_spec

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("path", sorted((ROOT / "clusters").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_specs_load(path: Path) -> None:
    spec = load_spec(path)
    assert spec.worker_group_specs, "every shipped spec has a worker group"
    assert parse_spec(yaml.safe_load(spec.to_yaml())) == spec, "to_yaml round-trips"


def test_gpu_spec_has_a_gpu_and_a_cpu_group() -> None:
    spec = load_spec(ROOT / "clusters" / "gpu.yaml")
    assert spec.worker_group("gpu-a100").gpu == 1
    assert spec.worker_group("gpu-a100").accelerator_type == "A100"
    assert spec.worker_group("cpu").gpu == 0
    assert spec.has_gpus


def test_defaults_follow_kuberay() -> None:
    spec = parse_spec({"name": "d", "workerGroupSpecs": [{"groupName": "g", "minReplicas": 1}]})
    group = spec.worker_group("g")
    assert (group.replicas, group.min_replicas, group.max_replicas) == (1, 1, 1)
    assert spec.head_group_spec.ray_start_params == {"num-cpus": "0"}
    assert spec.namespace is None and spec.resolved_image == "rayproject/ray:2.60.0"


def test_ray_start_params_become_strings() -> None:
    spec = parse_spec(
        {"name": "s", "workerGroupSpecs": [{"groupName": "g", "rayStartParams": {"num-cpus": 2,
                                                                                 "block": True}}]}
    )
    assert spec.worker_group("g").ray_start_params == {"num-cpus": "2", "block": "true"}
    assert spec.worker_group("g").ray_cpus == 2


def _problems(data: Any) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as caught:
        parse_spec(data, source="bad.yaml")
    assert "bad.yaml" in caught.value.message
    assert caught.value.hint
    return caught.value.problems


def group(**fields: Any) -> dict[str, Any]:
    return {"name": "c", "workerGroupSpecs": [{"groupName": "g", **fields}]}


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"name": "c", "workerGroupSpec": []}, "workerGroupSpec", "unknown field"),
        (group(replica=2), "workerGroupSpecs[0].replica", "unknown field"),
        (group(cpu="lots"), "workerGroupSpecs[0].cpu", "Kubernetes quantity"),
        (group(gpu="two"), "workerGroupSpecs[0].gpu", "integer"),
        (group(minReplicas=3, maxReplicas=1), "workerGroupSpecs[0]", "raise maxReplicas"),
        (group(replicas=5, maxReplicas=2), "workerGroupSpecs[0]", "inside the bounds"),
        (group(replicas=-1), "workerGroupSpecs[0].replicas", "greater than or equal"),
        (group(acceleratorType="A100"), "workerGroupSpecs[0]", "set gpu: 1"),
        (group(gpu=1, rayStartParams={"num-gpus": "0"}), "workerGroupSpecs[0]", "set gpu only"),
        ({"name": "c", "headGroupSpec": {"rayStartParams": {"num-gpus": 1}}},
         "headGroupSpec.rayStartParams", "put GPUs in a worker group"),
        ({"name": "c", "workerGroupSpecs": [{"groupName": "g"}, {"groupName": "g"}]},
         "(top level)", "used twice"),
        ({"name": "Bad_Name"}, "name", "valid Kubernetes name"),
        (group(groupName="GPU"), "workerGroupSpecs[0].groupName", "valid Kubernetes name"),
        ({"workerGroupSpecs": []}, "name", "required"),
        ({"name": "c", "storage": {"path": "relative/dir"}}, "storage.path", "absolute path"),
        ({"name": "c", "autoscalerOptions": {"upscalingMode": "Fast"}},
         "autoscalerOptions.upscalingMode", "Conservative"),
        (group(tolerations=[{"key": "k", "operator": "Maybe"}]),
         "workerGroupSpecs[0].tolerations[0].operator", "'Exists' or 'Equal'"),
    ],
)
def test_bad_spec_names_field_and_fix(data: Any, field: str, words: str) -> None:
    problems = _problems(data)
    fields = [path for path, _ in problems]
    assert any(path.startswith(field) for path in fields), problems
    assert any(words in message for _, message in problems), problems


def test_error_names_the_group() -> None:
    problems = _problems(group(minReplicas=3, maxReplicas=1))
    assert "(group 'g')" in problems[0][0]


def test_every_problem_is_listed_at_once() -> None:
    problems = _problems(
        {"name": "c", "workerGroupSpecs": [{"groupName": "a", "cpu": "x"},
                                           {"groupName": "b", "gpu": -1}], "extra": 1}
    )
    assert len(problems) == 3


def test_not_a_mapping() -> None:
    with pytest.raises(SpecError, match="YAML mapping"):
        parse_spec(["a", "list"], source="x.yaml")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such spec file"):
        load_spec(tmp_path / "nope.yaml")


def test_malformed_yaml_gives_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nworkerGroupSpecs:\n  - groupName: a\n\tcpu: 1\n")
    with pytest.raises(SpecError, match=r"line 4, column 1") as caught:
        load_spec(path)
    assert str(path) in caught.value.message and "tabs" in caught.value.hint


@pytest.mark.parametrize(
    ("value", "number"),
    [("1e3", 1000), (".5", 0.5), ("5.", 5), ("+1", 1), ("100n", 1e-7), ("10u", 1e-5),
     ("1Ei", 2**60), ("500m", 0.5), ("1.5Gi", 1.5 * 2**30), (4, 4), (0.25, 0.25), ("2E-3", 0.002)],
)
def test_every_quantity_kubernetes_takes_is_taken(value: Any, number: float) -> None:
    spec = parse_spec(group(cpu=value, memory=value))
    assert float(parse_quantity(spec.worker_group("g").cpu)) == pytest.approx(number)


@pytest.mark.parametrize(
    ("value", "words"),
    [(True, "not a quantity"), ("inf", "Kubernetes quantity"), ("1_000", "Kubernetes quantity"),
     ("1K", "Kubernetes quantity"), ("\u0663", "Kubernetes quantity"), ("-1", "negative"),
     (-2, "negative"), (float("inf"), "finite"), ("1e30", "too large"), ("", "quantity"),
     (" 1", "Kubernetes quantity"), ([1], "not a quantity")],
)
def test_a_quantity_the_api_server_refuses_is_refused(value: Any, words: str) -> None:
    problems = _problems(group(cpu=value))
    assert any(path.startswith("workerGroupSpecs[0].cpu") and words in message
               for path, message in problems), problems
