"""The example notebook, executed by a real Jupyter kernel against the session cluster."""

from __future__ import annotations

import os

import pytest

import raykube
from conftest import ROOT

pytestmark = pytest.mark.local


def outputs(cell: dict) -> str:  # type: ignore[type-arg]
    return "".join(o.get("text", "") for o in cell.get("outputs", []))


def html_of(cell: dict) -> str:  # type: ignore[type-arg]
    return "".join(o.get("data", {}).get("text/html", "") for o in cell.get("outputs", []))


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
    connection = html_of(code[0])
    assert "raykube connection" in connection and local_cluster.dashboard_url in connection
    shown = html_of(code[3])
    assert f"cluster {local_cluster.name}" in shown and ">ready<" in shown
    assert f'<a href="{local_cluster.dashboard_url}"' in shown, "the dashboard is a link"
    assert "training result" in shown and "metrics.test_accuracy" in shown
    images = [o for o in code[4].outputs if "image/png" in o.get("data", {})]
    assert images, "the accuracy plot is shown"
    assert "disconnected: True" in outputs(code[5])


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


@pytest.mark.unit
def test_notebook_tables_escape_values_and_link_only_http() -> None:
    from raykube.output import html_table

    shown = html_table("<b>x</b>", [("a", "<script>alert(1)</script>"),
                                     ("b", "javascript:alert(1)"), ("c", "https://ok/?a=1&b=2")])
    assert "<script>" not in shown and "&lt;script&gt;" in shown and "<b>x" not in shown
    assert 'href="javascript' not in shown
    assert '<a href="https://ok/?a=1&amp;b=2"' in shown
