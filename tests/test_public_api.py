"""The public surface is what __all__ names, and each name is documented."""

from __future__ import annotations

import pytest

import raykube

pytestmark = pytest.mark.unit


def test_all_names_exist_and_are_documented() -> None:
    for name in raykube.__all__:
        obj = getattr(raykube, name)
        assert obj.__doc__, f"raykube.{name} has no docstring"


def test_all_is_exactly_the_public_names() -> None:
    public = {n for n in vars(raykube) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(raykube, n)).__name__ == "module"}
    assert public - modules == set(raykube.__all__)


def test_importing_raykube_does_not_import_frameworks() -> None:
    import subprocess
    import sys

    code = ("import sys, raykube; bad = [m for m in ('torch', 'tensorflow', 'mxnet', "
            "'kubernetes') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
