"""Kubernetes resource quantities ("500m", "2Gi", "1e3", 4) as numbers.

Specs use Kubernetes' quantity syntax so the same file renders into pod resources unchanged;
the local backend needs the numbers behind them (Ray counts CPUs and bytes).

The number comes from the official client's ``kubernetes.utils.parse_quantity``. That parser is
laxer than the API server (it takes ``inf``, ``1_000``, ``1K`` and non-ASCII digits, which the
server refuses with a 422), so a value is first held to the server's own grammar, the pattern the
RayCluster CRD validates quantities with, and then to raykube's rule for resources: finite, not
negative, and no larger than the server's int64.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
QUANTITY_PATTERN = (
    rf"^[+-]?{_NUMBER}(?:[KMGTPE]i|[numkMGTPE]|[eE][+-]?{_NUMBER})?$"
)
"""Kubernetes' quantity grammar (apimachinery ``resource.Quantity``; the pattern KubeRay's CRDs
carry), ASCII only."""

_QUANTITY = re.compile(QUANTITY_PATTERN, re.ASCII)
_LARGEST = Decimal(2**63 - 1)
_EXAMPLES = "e.g. 2, '500m', '1.5', '4Gi', '512Mi', '1e3'"


def parse_quantity(value: str | int | float) -> Decimal:
    """Return the number a Kubernetes quantity stands for.

    Raises:
        ValueError: when ``value`` is not a quantity the API server takes, or is negative,
            infinite or too large; the message says what a quantity looks like.

    >>> parse_quantity("500m"), parse_quantity("1Gi"), parse_quantity(".5")
    (Decimal('0.500'), Decimal('1073741824'), Decimal('0.5'))
    """
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"{value!r} is not a quantity: write a number, {_EXAMPLES}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value!r} is not a quantity: it must be a finite number >= 0")
    text = str(value) if isinstance(value, int) else repr(value) if isinstance(value, float) \
        else value
    if not _QUANTITY.match(text):
        raise ValueError(
            f"{value!r} is not a Kubernetes quantity: write a number with an optional suffix, "
            f"{_EXAMPLES}"
        )
    from kubernetes.utils.quantity import parse_quantity as client_parse  # heavy: on use only

    number = Decimal(client_parse(text))
    if number < 0:
        raise ValueError(f"{value!r} is negative: a resource amount must be >= 0")
    if number > _LARGEST:
        raise ValueError(f"{value!r} is too large: Kubernetes takes at most 2^63-1")
    return number


def cpu_count(value: str | int | float) -> int:
    """Ray's logical CPU count for a CPU quantity, rounded up as KubeRay does for ``num-cpus``."""
    return math.ceil(parse_quantity(value))


def byte_count(value: str | int | float) -> int:
    """Bytes in a memory quantity (a fraction of a byte rounds up, as Kubernetes rounds)."""
    return math.ceil(parse_quantity(value))
