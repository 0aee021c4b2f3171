"""The architecture's rules that a linter cannot state: workloads never ask which backend or
framework they run with (README "Architecture"); the import layers themselves are checked by
import-linter (`lint-imports`, in the test command)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from raykube import frameworks
from raykube.backends import BACKENDS

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parent.parent / "raykube"


def name_comparisons(names: set[str], allowed: tuple[str, ...], root: Path = PACKAGE
                     ) -> list[str]:
    """``file:line`` of every comparison with one of ``names`` (``==``, ``!=``, ``in``) in a
    module under ``root`` outside ``allowed`` (paths relative to ``root``)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if relative.startswith(allowed):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Compare):
                continue
            operands = [node.left, *node.comparators]
            constants = [c for o in operands for c in ast.walk(o)
                         if isinstance(c, ast.Constant) and isinstance(c.value, str)]
            if any(c.value in names for c in constants):
                found.append(f"{relative}:{node.lineno}")
    return found


def test_no_module_outside_the_backends_compares_a_backend_name() -> None:
    # The resolver is where a reference (``kuberay:NS/NAME``, --kube) becomes a backend.
    assert name_comparisons(set(BACKENDS), ("backends/", "target.py")) == []


def test_no_module_outside_the_registry_compares_a_framework_name() -> None:
    assert name_comparisons(set(frameworks.names()), ("frameworks/",)) == []


def test_the_scan_finds_a_comparison_outside_the_allowed_modules(tmp_path: Path) -> None:
    (tmp_path / "frameworks").mkdir()
    (tmp_path / "frameworks" / "ok.py").write_text('if name == "torch":\n    pass\n')
    (tmp_path / "serve.py").write_text('x = 1\nok = spec.framework in ("mxnet", "jax")\n')
    assert name_comparisons(set(frameworks.names()), ("frameworks/",), tmp_path) == [
        "serve.py:2"]
