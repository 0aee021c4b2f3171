"""What raykube shows a machine or a person: ``-o json|yaml`` of its status records,
tables whose columns fit their contents (and the terminal), and small HTML tables for
notebooks (``_repr_html_``).

A record's machine form is its fields and its plain properties (``is_ready``, ``running``),
recursively, with enums as their values, so a script reads exactly what the Python API returns.
"""

from __future__ import annotations

import dataclasses
import enum
import html
import json
import shutil
import sys
from pathlib import PurePath
from typing import Any

import yaml

FORMATS = ("table", "json", "yaml")
"""What ``-o`` takes; ``table`` is for people."""


def to_data(value: Any) -> Any:
    """``value`` as JSON-ready data: a dataclass becomes its fields and plain properties."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        data = {f.name: to_data(getattr(value, f.name)) for f in dataclasses.fields(value)}
        for name, member in vars(type(value)).items():
            if isinstance(member, property) and not name.startswith("_"):
                data[name] = to_data(getattr(value, name))
        return data
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, dict):
        return {str(k): to_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_data(v) for v in value]
    return value


def dump(value: Any, fmt: str) -> str:
    """``value`` (a record or a list of them) as ``json`` or ``yaml`` text."""
    data = to_data(value)
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=False) + "\n"
    return yaml.safe_dump(data, sort_keys=False)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """Columns as wide as their widest cell, two spaces apart; on a terminal the last column
    is cut to the terminal's width (with ``…``) instead of wrapping."""
    cells = [[str(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    limit = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
    lines = []
    for row in cells:
        line = "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        if limit and len(line) > limit:
            line = line[: max(limit - 1, 0)] + "…"
        lines.append(line)
    return "\n".join(lines) + "\n"


def html_table(title: str, rows: list[tuple[str, Any]],
               columns: tuple[list[str], list[list[Any]]] | None = None) -> str:
    """A small HTML table for a notebook (``_repr_html_``): ``title``, one row per
    ``(label, value)``, and optionally a second table (headers, rows) below. Every value is
    escaped; a value is a link only when it is an http(s) URL."""
    def cell(value: Any) -> str:
        text = "-" if value is None else str(value)
        if text.startswith(("http://", "https://")):
            return f'<a href="{html.escape(text, quote=True)}" target="_blank">' \
                   f"{html.escape(text)}</a>"
        return html.escape(text)

    parts = [f"<div><strong>{html.escape(title)}</strong><table>"]
    parts += [f"<tr><th style='text-align:left'>{html.escape(label)}</th><td "
              f"style='text-align:left'>{cell(value)}</td></tr>" for label, value in rows]
    parts.append("</table>")
    if columns:
        headers, body = columns
        parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in headers)
                     + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>"
                  for row in body]
        parts.append("</table>")
    return "".join(parts) + "</div>"
