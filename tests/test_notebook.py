"""The example notebook, executed by a real Jupyter kernel against the session cluster."""

from __future__ import annotations

import os

import pytest

import raykube
from conftest import ROOT

pytestmark = pytest.mark.local


def outputs(cell: dict) -> str:  # type: ignore[type-arg]
    return "".join(o.get("text", "") for o in cell.get("outputs", []))


def test_example_notebook_runs_against_the_cluster(local_cluster: raykube.Cluster) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(ROOT / "examples" / "notebook.ipynb", as_version=4)
    os.environ["RAYKUBE_CLUSTER"] = local_cluster.name
    try:
        nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(ROOT)}}).execute()
    finally:
        os.environ.pop("RAYKUBE_CLUSTER", None)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert f"connected to {local_cluster.name}" in outputs(code[0])
    assert "squares: [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]" in outputs(code[1])
    accuracy = float(outputs(code[2]).split("final test accuracy: ")[1].split()[0])
    assert accuracy >= 0.9
    images = [o for o in code[3].outputs if "image/png" in o.get("data", {})]
    assert images, "the accuracy plot is shown"
    assert "disconnected: True" in outputs(code[4])


@pytest.mark.unit
def test_version_mismatch_is_explained() -> None:
    from types import SimpleNamespace

    from raykube.connection import _check_versions

    with pytest.raises(raykube.RaykubeError, match="cluster runs Ray 2.9.0") as caught:
        _check_versions(SimpleNamespace(ray_version="2.9.0", python_version="3.11.7"))
    assert "ray[default]==2.9.0" in caught.value.hint
    with pytest.raises(raykube.RaykubeError, match="cluster runs Python 3.10.4"):
        import ray

        _check_versions(SimpleNamespace(ray_version=ray.__version__, python_version="3.10.4"))
