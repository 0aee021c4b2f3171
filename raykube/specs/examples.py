"""The example cluster specs shipped inside the package (``raykube init``), so a user who
installed raykube from a wheel has a spec to start from without the repository."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from raykube.errors import SpecError

EXAMPLES = ("local", "gpu")
"""``local``: a head and an autoscaled CPU group; ``gpu``: adds a GPU group (A100s)."""


def example_text(kind: str) -> str:
    """The YAML of the shipped example ``kind``."""
    if kind not in EXAMPLES:
        raise SpecError(f"no example spec {kind!r}", f"pick one of: {', '.join(EXAMPLES)}")
    return (resources.files("raykube") / "examples" / f"{kind}.yaml").read_text()


def write_example(kind: str, path: str | Path, *, force: bool = False) -> Path:
    """Write the example spec ``kind`` to ``path`` and return it.

    Raises:
        SpecError: unknown ``kind``, or ``path`` exists and ``force`` is not set.
    """
    text = example_text(kind)
    target = Path(path)
    if target.exists() and not force:
        raise SpecError(f"{target} exists already; raykube init does not overwrite a file",
                        f"pick another path (raykube init {kind} OUT.yaml) or pass --force")
    target.write_text(text)
    return target
