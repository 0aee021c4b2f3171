"""Kubernetes resource quantities ("500m", "2Gi", 4) as numbers.

Specs use Kubernetes' quantity syntax so the same file renders into pod resources unchanged;
the local backend needs the numbers behind them (Ray counts CPUs and bytes).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

_SUFFIXES: dict[str, Decimal] = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
}
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([a-zA-Z]{0,2})$")


def parse_quantity(value: str | int | float) -> Decimal:
    """Return the number a Kubernetes quantity stands for.

    Raises:
        ValueError: when ``value`` is not a quantity; the message says what a quantity looks like.

    >>> parse_quantity("500m"), parse_quantity("1Gi")
    (Decimal('0.500'), Decimal('1073741824'))
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a quantity")
    if isinstance(value, (int, float)):
        if value < 0 or math.isnan(value) or math.isinf(value):
            raise ValueError(f"{value!r} is not a quantity: it must be a number >= 0")
        return Decimal(str(value))
    match = _QUANTITY.match(value.strip())
    if not match or match.group(2) not in _SUFFIXES:
        raise ValueError(
            f"{value!r} is not a Kubernetes quantity: write a number with an optional "
            "suffix, e.g. 2, '500m', '4Gi', '512Mi'"
        )
    try:
        return Decimal(match.group(1)) * _SUFFIXES[match.group(2)]
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only decimals
        raise ValueError(f"{value!r} is not a quantity") from exc


def cpu_count(value: str | int | float) -> int:
    """Ray's logical CPU count for a CPU quantity, rounded up as KubeRay does for ``num-cpus``."""
    return math.ceil(parse_quantity(value))


def byte_count(value: str | int | float) -> int:
    """Bytes in a memory quantity."""
    return int(parse_quantity(value))
