"""The real CLI on bad input: a specific message, a hint, a non-zero code, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import assert_clean_error, run_cli

pytestmark = pytest.mark.unit


def test_invalid_spec_is_refused_before_anything_starts(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: bad\nworkerGroupSpecs:\n  - groupName: g\n    minReplicas: 3\n"
                    "    maxReplicas: 1\n")
    result = run_cli("up", str(spec))
    assert_clean_error(result, 2, str(spec), "workerGroupSpecs[0]", "maxReplicas")
    assert "starting the head" not in result.stderr
    assert "bad" not in run_cli("list").stdout


def test_missing_spec_file() -> None:
    assert_clean_error(run_cli("up", "clusters/nope.yaml"), 2, "no such spec file")


def test_malformed_yaml(tmp_path: Path) -> None:
    spec = tmp_path / "tabs.yaml"
    spec.write_text("name: x\n\tworkerGroupSpecs: []\n")
    assert_clean_error(run_cli("spec", str(spec)), 2, "not valid YAML", "line 2")


@pytest.mark.parametrize(
    "args", [("down", "ghost"), ("status", "ghost"), ("scale", "ghost", "--group", "g",
                                                     "--replicas", "1"), ("env", "ghost")]
)
def test_unknown_cluster(args: tuple[str, ...]) -> None:
    assert_clean_error(run_cli(*args), 3, "ghost")


def test_spec_command_validates_and_explains() -> None:
    ok = run_cli("spec", "clusters/gpu.yaml")
    assert ok.returncode == 0 and "gpu-a100 (0..2, 1 GPU)" in ok.stdout
    fields = run_cli("spec", "--explain").stdout
    assert "workerGroupSpecs[].maxReplicas:" in fields
    assert "autoscalerOptions.idleTimeoutSeconds:" in fields


def test_debug_shows_traceback() -> None:
    result = run_cli("down", "ghost", env={"RAYKUBE_DEBUG": "1"})
    assert result.returncode == 3 and "Traceback" in result.stderr


def test_train_target_must_exist() -> None:
    assert_clean_error(run_cli("train", "jobs/nope.py:loop"), 1, "FILE.py:FUNCTION")
    assert_clean_error(run_cli("train", "jobs/train_torch.py:missing"), 1,
                       "has no function 'missing'")
    assert_clean_error(run_cli("train", "jobs/train_torch.py:train_loop", "--framework", "jax"),
                       1, "unknown framework 'jax'")
