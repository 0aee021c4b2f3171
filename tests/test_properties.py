"""Property-based checks (hypothesis) of everything raykube reads from a user: cluster, serve
and job specs (mutations of the shipped ones, and raw YAML text through the real CLI entry
point), and request bodies as the router parses them. Every input either is valid (and then
renders without error) or gets raykube's own clear error: never another exception, never a
long or unbounded message. A fixed, derandomized budget keeps it to seconds in CI."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raykube.backends.local.autoscaler_config import build_autoscaler_config
from raykube.cli import main
from raykube.errors import SpecError
from raykube.quantity import parse_quantity
from raykube.render.cluster import render_all
from raykube.render.rayjob import render_rayjob
from raykube.render.serve_config import render_serve_config
from raykube.specs.cluster import MonitoringSpec, parse_spec
from raykube.specs.job import RayJobSpec
from raykube.specs.serve import parse_serve_spec
from raykube.specs.start_params import SAFE_VALUE

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
BUDGET = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.too_slow])

HOSTILE_TEXT = st.text(alphabet=st.sampled_from(list("aZ09 -_.:/@'\"$`;&|<>(){}[]*?!#~\\\n\t\0=")),
                       max_size=30)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-10**25, max_value=10**25),
                    st.floats(allow_nan=True, allow_infinity=True), HOSTILE_TEXT)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(HOSTILE_TEXT, inner, max_size=3)), max_leaves=10)

CLUSTER = yaml.safe_load((ROOT / "clusters" / "gpu.yaml").read_text())
SERVE = yaml.safe_load((ROOT / "jobs" / "digits.serve.yaml").read_text())
CLUSTER_PATHS = [
    ("name",), ("namespace",), ("rayVersion",), ("image",), ("headGroupSpec", "cpu"),
    ("headGroupSpec", "memory"), ("headGroupSpec", "serviceType"),
    ("headGroupSpec", "rayStartParams"), ("headGroupSpec", "env"),
    ("workerGroupSpecs", 0, "groupName"), ("workerGroupSpecs", 0, "replicas"),
    ("workerGroupSpecs", 0, "minReplicas"), ("workerGroupSpecs", 1, "maxReplicas"),
    ("workerGroupSpecs", 1, "gpu"), ("workerGroupSpecs", 1, "acceleratorType"),
    ("workerGroupSpecs", 1, "rayStartParams"), ("workerGroupSpecs", 0, "labels"),
    ("workerGroupSpecs", 0, "env"), ("workerGroupSpecs", 0, "envFrom"),
    ("workerGroupSpecs", 1, "tolerations"), ("workerGroupSpecs", 1, "nodeSelector"),
    ("autoscalerOptions", "idleTimeoutSeconds"), ("autoscalerOptions", "upscalingMode"),
    ("storage",), ("storage", "path"), ("storage", "size"), ("gcsFaultToleranceOptions",),
    ("enableInTreeAutoscaling",), ("kind",), ("workerGroupSpecs",),
]
SERVE_PATHS = [("name",), ("framework",), ("predictor",), ("routePrefix",), ("versions",),
               ("versions", 0, "version"), ("versions", 0, "weight"), ("replicas",),
               ("autoscaling",), ("resources",), ("maxOngoingRequests",), ("batching",),
               ("runtimeEnv",), ("workingDir",)]


def mutated(base: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(base)
    node: Any = data
    for step in path[:-1]:
        node = node.setdefault(step, {}) if isinstance(step, str) else node[step]
    node[path[-1]] = value
    return data


def refused_clearly(error: SpecError) -> None:
    assert error.message and len(str(error)) < 4000


@BUDGET
@given(path=st.sampled_from(CLUSTER_PATHS), value=VALUES)
def test_a_cluster_spec_is_valid_and_renders_or_is_a_clear_spec_error(path: tuple[Any, ...],
                                                                      value: Any) -> None:
    try:
        spec = parse_spec(mutated(CLUSTER, path, value), source="mutated.yaml")
    except SpecError as error:
        refused_clearly(error)
        return
    spec.monitoring = MonitoringSpec(podMonitor=True, serviceMonitor=True, alerts=True)
    objects = render_all(spec)
    build_autoscaler_config(spec, gcs_address="127.0.0.1:6379", head_node_id="0" * 56,
                            head_resources={"CPU": 0},
                            targets={g.group_name: None for g in spec.worker_group_specs},
                            nodes_dir="/tmp/rk-x/nodes")
    assert parse_spec(yaml.safe_load(spec.to_yaml())) == spec, "the spec survives its YAML"
    cluster = next(o for o in objects if o["kind"] == "RayCluster")["spec"]
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        for key, rendered in group["rayStartParams"].items():
            safe = SAFE_VALUE.match(rendered) or (
                key == "resources" and rendered.startswith("'") and "'" not in rendered[1:-1])
            assert safe, (key, rendered)


@BUDGET
@given(path=st.sampled_from(SERVE_PATHS), value=VALUES)
def test_a_serve_spec_is_valid_and_renders_or_is_a_clear_spec_error(path: tuple[Any, ...],
                                                                    value: Any) -> None:
    try:
        spec = parse_serve_spec(mutated(SERVE, path, value), source="mutated.yaml")
    except SpecError as error:
        refused_clearly(error)
        return
    render_serve_config(spec)


@BUDGET
@given(fields=st.dictionaries(st.sampled_from(
    ["name", "namespace", "entrypoint", "runtimeEnv", "submissionMode", "clusterSelector",
     "ttlSecondsAfterFinished", "activeDeadlineSeconds", "backoffLimit", "entrypointNumCpus"]),
    VALUES, max_size=4))
def test_a_job_spec_is_valid_and_renders_or_is_a_clear_spec_error(fields: dict[str, Any]) -> None:
    from raykube.specs.base import parse

    data = {"kind": "RayJob", "name": "j", "entrypoint": "python x.py",
            "clusterSelector": {"ray.io/cluster": "c"}, **fields}
    try:
        job = parse(RayJobSpec, data, source="job.yaml", what="job spec", example="x")
    except SpecError as error:
        refused_clearly(error)
        return
    render_rayjob(job, None)


YAML_TEXT = st.one_of(
    st.text(alphabet=st.sampled_from(list("abc:-[]{}&*!|>'\"#%@`,? \n\t0123456789")),
            max_size=200),
    VALUES.map(lambda v: yaml.safe_dump(v)),
    st.dictionaries(st.sampled_from(["name", "kind", "workerGroupSpecs", "headGroupSpec"]),
                    VALUES, max_size=4).map(yaml.safe_dump),
)


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(text=YAML_TEXT, command=st.sampled_from(["spec", "manifest", "serve build"]))
def test_the_cli_on_any_spec_file_exits_0_or_2_without_a_traceback(
        tmp_path: Path, text: str, command: str) -> None:
    path = tmp_path / "any.yaml"
    path.write_text(text)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*command.split(), str(path)])
    assert code in (0, 2), (code, err.getvalue()[:500])
    if code == 2:
        assert err.getvalue().startswith("error: ") and len(err.getvalue()) < 4000


BODIES = st.one_of(
    st.binary(max_size=300),
    VALUES.map(lambda v: json.dumps({"instances": v}).encode()),
    st.lists(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                                st.integers(min_value=-10**40, max_value=10**40)),
                      max_size=70), max_size=5).map(
        lambda rows: json.dumps({"instances": rows}).encode()),
)


@BUDGET
@given(body=BODIES)
def test_any_request_body_is_instances_or_a_400_reason(body: bytes) -> None:
    from raykube.serving.app import InvalidInput, as_batch, parse_instances

    try:
        instances = parse_instances(body)
        as_batch(instances, (64,))
    except InvalidInput as reason:
        assert 0 < len(str(reason)) < 300


CRD_QUANTITY = ROOT.parent / "shared" / "k8s" / "crds" / "ray.io_rayclusters.yaml"
QUANTITY_TEXT = st.one_of(
    st.from_regex(r"\A[+-]?[0-9]{0,4}\.?[0-9]{0,3}([KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]{1,2})?\Z"),
    st.text(alphabet=st.sampled_from(list("0123456789.+-eEiKMGTPnumk _\u0663 infINF")),
            max_size=8))


@pytest.mark.skipif(not CRD_QUANTITY.is_file(), reason="../shared/k8s/crds is not present")
@BUDGET
@given(value=QUANTITY_TEXT)
def test_a_quantity_raykube_takes_is_one_the_crd_takes(value: str) -> None:
    pattern = re.search(r"pattern: \^(\(\\\+\|-\)\?.*)\$", CRD_QUANTITY.read_text()).group(1)
    try:
        number = parse_quantity(value)
    except ValueError as exc:
        assert len(str(exc)) < 200
        return
    assert re.fullmatch(pattern, value, re.ASCII), value
    assert 0 <= number < 2**63
