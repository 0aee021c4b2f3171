"""The package as a user installs it: the wheel carries its type marker and the example
specs, `raykube init` and `python -m raykube` work from it, and the metadata declares ranges
(CI's exact versions live in constraints.txt)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, run_cli

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True, timeout=300)
    return next(out.glob("raykube-*.whl"))


def test_the_wheel_carries_py_typed_and_the_example_specs(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "raykube/py.typed" in names
    for kind in ("local", "gpu"):
        text = zipfile.ZipFile(wheel).read(f"raykube/examples/{kind}.yaml").decode()
        assert text == (ROOT / "clusters" / f"{kind}.yaml").read_text(), \
            "the shipped example is the repository's spec, not a stale copy"
    metadata = next(n for n in names if n.endswith("METADATA"))
    assert "License-Expression: Apache-2.0" in zipfile.ZipFile(wheel).read(metadata).decode()


def test_init_runs_from_the_installed_wheel(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(site), str(wheel)], check=True, capture_output=True, timeout=300)
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run([sys.executable, "-c", "import raykube; print(raykube.__file__)"],
                           cwd=work, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.startswith(str(site)), "the test must run the installed wheel"
    made = subprocess.run([sys.executable, "-m", "raykube", "init", "gpu"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    assert yaml.safe_load((work / "gpu.yaml").read_text())["name"] == "gpu"
    again = subprocess.run([sys.executable, "-m", "raykube", "init", "gpu"], cwd=work, env=env,
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "--force" in again.stderr


def test_init_writes_a_spec_that_validates(tmp_path: Path) -> None:
    out = tmp_path / "mine.yaml"
    assert run_cli("init", "local", str(out)).returncode == 0
    checked = run_cli("spec", str(out))
    assert checked.returncode == 0 and "valid cluster spec 'local'" in checked.stdout


def test_runtime_dependencies_are_ranges_and_ci_pins_them() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [
        r for extra in project["optional-dependencies"].values() for r in extra]
    assert not [r for r in requirements if "==" in r], "ranges in the package, pins in CI"
    pinned = {line.split("==")[0].lower().replace("_", "-")
              for line in (ROOT / "constraints.txt").read_text().splitlines()
              if "==" in line and not line.startswith("#")}
    for requirement in requirements:
        name = requirement.split("[")[0].split(">")[0].split("<")[0].strip().lower()
        assert name.replace("_", "-") in pinned, f"{name} is not pinned in constraints.txt"
