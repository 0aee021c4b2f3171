"""Job specs -> KubeRay RayJobs: valid against the CRD, one cluster source, clear errors."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from conftest import ROOT, run_cli
from raykube.errors import SpecError
from raykube.render.rayjob import render_rayjob
from raykube.specs.job import load_job_spec
from test_render import CRDS, crd_schema, needs_crds

pytestmark = pytest.mark.unit
EXAMPLE = ROOT / "jobs" / "train-digits.rayjob.yaml"


@needs_crds
def test_example_rayjob_is_valid_against_the_crd() -> None:
    job, cluster = load_job_spec(EXAMPLE)
    manifest = render_rayjob(job, cluster)
    jsonschema.validate(manifest, crd_schema(CRDS / "ray.io_rayjobs.yaml"))
    spec = manifest["spec"]
    assert spec["entrypoint"].startswith("python jobs/train_torch.py")
    assert spec["rayClusterSpec"]["workerGroupSpecs"][1]["groupName"] == "gpu-a100"
    assert (spec["shutdownAfterJobFinishes"], spec["ttlSecondsAfterFinished"]) == (True, 300)
    assert (spec["activeDeadlineSeconds"], spec["backoffLimit"]) == (3600, 1)


@needs_crds
def test_existing_cluster_by_selector(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({
        "kind": "RayJob", "name": "on-gpu", "entrypoint": "python -c 'print(1)'",
        "clusterSelector": {"ray.io/cluster": "gpu"}, "submissionMode": "HTTPMode",
        "runtimeEnv": {"env_vars": {"A": "1"}},
    }))
    job, cluster = load_job_spec(path)
    assert cluster is None
    manifest = render_rayjob(job, cluster)
    jsonschema.validate(manifest, crd_schema(CRDS / "ray.io_rayjobs.yaml"))
    assert manifest["spec"]["clusterSelector"] == {"ray.io/cluster": "gpu"}
    assert "shutdownAfterJobFinishes" not in manifest["spec"]
    assert yaml.safe_load(manifest["spec"]["runtimeEnvYAML"]) == {"env_vars": {"A": "1"}}


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({}, "exactly one of cluster"),
        ({"cluster": "c.yaml", "clusterSelector": {"a": "b"}}, "exactly one of cluster"),
        ({"clusterSelector": {"a": "b"}, "submissionMode": "Fast"}, "submissionMode"),
        ({"clusterSelector": {"a": "b"}, "backoffLimit": -1}, "backoffLimit"),
    ],
)
def test_bad_job_specs(tmp_path: Path, extra: dict, words: str) -> None:  # type: ignore[type-arg]
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({"kind": "RayJob", "name": "j", "entrypoint": "true", **extra}))
    with pytest.raises(SpecError, match="invalid job spec") as caught:
        load_job_spec(path)
    assert words in caught.value.message


def test_manifest_command_renders_jobs() -> None:
    result = run_cli("manifest", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["kind"] == "RayJob"


@needs_crds
def test_a_batch_spec_renders_as_a_valid_rayjob_on_an_ephemeral_cluster(tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "jobs" / "digits.batch.yaml").read_text())
    data.update(workingDir="https://example.com/jobs.zip", cluster=str(ROOT / "clusters" /
                                                                          "local.yaml"))
    path = tmp_path / "digits.batch.yaml"
    path.write_text(yaml.safe_dump(data))
    job, cluster = load_job_spec(path)
    assert cluster is not None and cluster.name == "local"
    manifest = render_rayjob(job, cluster)
    jsonschema.validate(manifest, crd_schema(CRDS / "ray.io_rayjobs.yaml"))
    assert manifest["spec"]["entrypoint"].startswith("python -m raykube batch run --spec-json ")
    assert yaml.safe_load(manifest["spec"]["runtimeEnvYAML"]) == {
        "working_dir": "https://example.com/jobs.zip"}
    shown = run_cli("manifest", str(path))
    assert shown.returncode == 0 and "kind: RayJob" in shown.stdout, shown.stderr
