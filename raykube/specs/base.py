"""What every spec kind shares: the strict model base, and the one loader that reads a YAML
file, checks it is a mapping, validates it, and turns every problem into one
:class:`~raykube.errors.SpecError` naming the field path and the fix.

Example::

    spec = load(path, ClusterSpec, "cluster spec")
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from raykube.errors import SpecError

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

KIND_NAMES = {"RayCluster": "cluster spec", "RayJob": "job spec", "Serve": "serve spec",
              "BatchPredict": "batch spec"}
"""A spec file's ``kind`` -> what messages call it (a file without ``kind`` is a cluster spec)."""

MAX_SPEC_BYTES = 1 << 20
"""The largest spec file read (1 MiB: specs are a few hundred lines)."""

MAX_NODES = 20_000
"""The most YAML nodes a spec may hold once aliases are expanded: a "billion laughs" file of a
few hundred bytes expands to millions, which validation and its messages would walk."""

MAX_DEPTH = 64
"""The deepest nesting a spec may have."""

MAX_PROBLEMS = 20
"""Problems listed in one error; the rest are counted."""

M = TypeVar("M", bound=BaseModel)


class SpecModel(BaseModel):
    """Base of every spec model: unknown keys refused, camelCase aliases, assignment validated."""

    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, validate_assignment=True, frozen=False
    )


def check_dns_label(value: str, what: str) -> str:
    """``value`` when it is a valid Kubernetes name (RFC 1123 label), else ValueError."""
    if len(value) > 63 or not _DNS_LABEL.match(value):
        raise ValueError(
            f"{what} {value!r} is not a valid Kubernetes name: use at most 63 lower-case "
            "letters, digits and '-', starting and ending with a letter or digit (e.g. 'gpu-a100')"
        )
    return value


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not part.startswith("function-") and part not in ("str", "int", "float"):
            path += f".{part}" if path else part
    return path or "(top level)"


def _shown_input(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _describe(error: dict[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown field: remove it or check its spelling (field names are KubeRay's, camelCase)"
    if kind == "missing":
        return "required field is missing"
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if "input" in error and kind not in ("value_error", "assertion_error"):
        message = f"{message} (got {_shown_input(error['input'])})"
    return message[:400]


def _group_name_at(data: Any, loc: tuple[int | str, ...]) -> str | None:
    """The groupName of the worker group an error points into, to name it in the message."""
    if len(loc) >= 2 and loc[0] == "workerGroupSpecs" and isinstance(loc[1], int):
        try:
            name = data["workerGroupSpecs"][loc[1]].get("groupName")
            return str(name) if name is not None else None
        except (KeyError, IndexError, TypeError, AttributeError):
            return None
    return None


def format_problems(exc: ValidationError, data: Any, source: str, what: str) -> SpecError:
    """One :class:`SpecError` listing every problem of ``exc`` with its field path and fix."""
    problems: list[tuple[str, str]] = []
    for error in exc.errors():
        path = _field_path(error["loc"])
        group = _group_name_at(data, error["loc"])
        where = f"{path} (group {group!r})" if group else path
        problems.append((where, _describe(error)))
    lines = "\n".join(f"  {path}: {message}" for path, message in problems[:MAX_PROBLEMS])
    if len(problems) > MAX_PROBLEMS:
        lines += f"\n  ... and {len(problems) - MAX_PROBLEMS} more"
    return SpecError(
        f"{source}: invalid {what} ({len(problems)} problem"
        f"{'s' if len(problems) != 1 else ''}):\n{lines}",
        "fix the fields named above; `raykube spec --explain` lists every field",
        file=source,
        problems=problems,
    )


def _check_size(node: yaml.Node, source: str) -> None:
    """Refuse a node graph whose aliases expand past :data:`MAX_NODES` or that nests deeper
    than :data:`MAX_DEPTH` (counted on the composed graph, before anything is built)."""
    sizes: dict[int, int] = {}

    def size(current: yaml.Node, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise SpecError(f"{source}: nested deeper than {MAX_DEPTH} levels",
                            "a spec is a few levels deep: check the indentation", file=source)
        if id(current) in sizes:
            return sizes[id(current)]
        total = 1
        if isinstance(current, yaml.SequenceNode):
            total += sum(size(item, depth + 1) for item in current.value)
        elif isinstance(current, yaml.MappingNode):
            total += sum(size(k, depth + 1) + size(v, depth + 1) for k, v in current.value)
        if total > MAX_NODES:
            raise SpecError(
                f"{source}: expands to more than {MAX_NODES} YAML values (anchors and aliases "
                "repeated inside each other)",
                "write the values out; a spec needs no alias expansion of this size",
                file=source,
            )
        sizes[id(current)] = total
        return total

    size(node, 0)


def load_yaml_text(text: str, source: str) -> Any:
    """Parsed YAML of ``text``, refusing alias bombs and deep nesting (see :func:`_check_size`).

    Raises:
        SpecError: not YAML (with the line and column), or too large once expanded.
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is None:
            return None
        _check_size(node, source)
        loader = yaml.SafeLoader(text)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(
            f"{source}: not valid YAML{where}: {str(problem)[:200]}",
            "fix the indentation or quoting there (YAML uses spaces, not tabs)",
            file=source,
        ) from None
    except RecursionError:
        raise SpecError(f"{source}: nested deeper than {MAX_DEPTH} levels",
                        "a spec is a few levels deep: check the indentation", file=source
                        ) from None


def read_yaml(path: str | Path) -> Any:
    """The parsed YAML of ``path`` (UTF-8, at most :data:`MAX_SPEC_BYTES`).

    Raises:
        SpecError: the file is missing, too large, not UTF-8, or not YAML.
    """
    file = Path(path)
    if not file.is_file():
        hint = "check the path; the shipped specs are in clusters/ and jobs/"
        raise SpecError(f"{file}: no such spec file", hint, file=str(file))
    if file.stat().st_size > MAX_SPEC_BYTES:
        raise SpecError(f"{file}: {file.stat().st_size} bytes; a spec file is at most "
                        f"{MAX_SPEC_BYTES} bytes", "is this the spec file?", file=str(file))
    raw = file.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{file}: not UTF-8 text (byte {exc.start})",
                        "save the spec as UTF-8", file=str(file)) from None
    return load_yaml_text(text, str(file))


def parse(model: type[M], data: Any, *, source: str, what: str, example: str) -> M:
    """Validate ``data`` (parsed YAML) as a ``model``.

    Args:
        what: what messages call the spec ("cluster spec").
        example: a shipped spec file to start from, for the hint when ``data`` is no mapping.

    Raises:
        SpecError: ``data`` is not a mapping, or every problem the model found.
    """
    if not isinstance(data, dict):
        raise SpecError(
            f"{source}: a {what} is a YAML mapping of its fields, not {type(data).__name__}",
            f"start from {example}",
            file=source,
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise format_problems(exc, data, source, what) from None


def load(path: str | Path, model: type[M], what: str, example: str) -> M:
    """Read and validate the spec file ``path`` as a ``model`` (see :func:`parse`).

    Raises:
        SpecError: missing file, malformed YAML, not a mapping, or invalid fields.
    """
    return parse(model, read_yaml(path), source=str(path), what=what, example=example)


def spec_kind(path: str | Path) -> str:
    """What a spec file describes: its ``kind`` (RayJob, Serve, BatchPredict), else RayCluster.

    Raises:
        SpecError: the file is missing or is not YAML.
    """
    data = read_yaml(path)
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind is None:
        return "RayCluster"
    if not isinstance(kind, str) or kind not in KIND_NAMES:
        raise SpecError(f"{path}: kind {_shown_input(kind)} is not one raykube reads",
                        "use kind: RayJob, Serve or BatchPredict, or leave kind out for a cluster "
                        "spec",
                        file=str(path))
    return str(kind)


def explain(model: type[BaseModel]) -> str:
    """Every field of ``model`` with its YAML name and description, for `raykube spec`."""
    lines: list[str] = []

    def walk(node: type[BaseModel], prefix: str) -> None:
        for name, field in node.model_fields.items():
            key = f"{prefix}{field.alias or name}"
            lines.append(f"{key}: {field.description or ''}")
            annotation = field.annotation
            inner = getattr(annotation, "__args__", (annotation,))
            for candidate in inner:
                if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                    suffix = "[]." if "list" in str(annotation) else "."
                    walk(candidate, key + suffix)

    walk(model, "")
    return "\n".join(lines)
