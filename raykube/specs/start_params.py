"""``rayStartParams`` and the other spec values that reach a shell, checked before anything runs.

KubeRay pastes every rayStartParam into the container's ``bash -c "... ray start --KEY=VALUE"``
line unquoted, and turns a group's Ray labels into a ``--labels`` flag there too. So a value
with a quote, ``;``, ``$`` or a space would be code in the pod. Rather than hoping a quoting
scheme survives two renderers, raykube allows only what needs no quoting: flag names in Ray's
kebab-case, values of letters, digits and ``. , : / @ % + = _ -``, numbers where Ray wants
numbers, ports in 1..65535, and ``resources`` as a JSON object of safe names to amounts (the
one value raykube renders itself, inside single quotes it cannot contain). Each refusal names
the field and the rule.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

SAFE_VALUE = re.compile(r"^[A-Za-z0-9_.,:/@%+=-]*$")
"""A rayStartParam value that a shell neither splits nor expands."""

SAFE_CHARS = "letters, digits and . , : / @ % + = _ -"

FLAG = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
"""A ``ray start`` flag name: kebab-case, as Ray's CLI spells them."""

RESOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$")
"""A custom Ray resource name (``group:cpu``, ``accelerator_type:A100``, ``TPU``)."""

ACCELERATOR = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
"""A GPU model as Ray names them (A100, H100, Intel-GPU-Max-1550, AMD-Instinct-MI300X-OAM)."""

LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?"
                       r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
"""Kubernetes' label syntax, which Ray's node labels follow."""

ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
"""An environment variable name as Kubernetes accepts it (no ``=``, no NUL)."""

NUMBER_PARAMS = {"num-cpus", "num-gpus", "memory", "object-store-memory"}
"""Flags Ray reads as non-negative numbers."""


def is_port_param(key: str) -> bool:
    """Whether flag ``key`` names a port (``port``, ``dashboard-port``, ...)."""
    return key == "port" or key.endswith("-port")


def check_start_param(key: str, value: str) -> str:
    """``value`` when flag ``key`` may carry it to ``ray start`` safely, else ValueError."""
    where = f"rayStartParams[{key!r}]"
    if not FLAG.match(key):
        raise ValueError(f"{where}: {key!r} is not a `ray start` flag name: use Ray's kebab-case "
                         "names without the leading dashes, e.g. num-cpus")
    if key == "resources":
        parse_resources_param(value)
        return value
    if not SAFE_VALUE.match(value):
        raise ValueError(
            f"{where}: {shown(value)} has characters a shell would interpret (KubeRay pastes "
            f"rayStartParams into the pod's bash command): use only {SAFE_CHARS}"
        )
    if is_port_param(key) and not (value.isdigit() and 1 <= int(value) <= 65535):
        raise ValueError(f"{where}: {shown(value)} is not a port: give a number in 1..65535")
    if key in NUMBER_PARAMS and not _non_negative(value):
        raise ValueError(f"{where}: {shown(value)} is not a number >= 0 (e.g. '2')")
    return value


def _non_negative(text: str) -> bool:
    try:
        number = float(text)
    except ValueError:
        return False
    return math.isfinite(number) and number >= 0


def parse_resources_param(value: str) -> dict[str, float]:
    """The custom resources of a ``resources`` rayStartParam: plain JSON, or quoted the way
    KubeRay's docs write it for the shell (``'"{\\"Custom1\\": 1}"'``).

    Raises:
        ValueError: the value is not a JSON object of safe resource names to amounts >= 0.
    """
    text = value.strip().strip("'")
    if len(text) > 1 and text[0] == text[-1] == '"':
        text = text[1:-1].replace('\\"', '"')
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise ValueError(f"rayStartParams['resources']: {shown(value)} is not a JSON object of "
                         'resource amounts, e.g. {"Custom1": 1}')
    resources: dict[str, float] = {}
    for name, amount in parsed.items():
        if not RESOURCE_NAME.match(str(name)):
            raise ValueError(f"rayStartParams['resources']: resource name {shown(str(name))} "
                             "is not letters, digits and _ . : / - (at most 128)")
        if isinstance(amount, bool) or not isinstance(amount, int | float) or not (
                math.isfinite(amount) and amount >= 0):
            raise ValueError(f"rayStartParams['resources']: {name} = {shown(str(amount))} is "
                             "not an amount >= 0")
        resources[str(name)] = float(amount)
    return resources


def check_labels(labels: dict[str, str]) -> dict[str, str]:
    """Ray node labels in Kubernetes' label syntax, else ValueError naming the bad one."""
    for key, value in labels.items():
        if not LABEL_KEY.match(key):
            raise ValueError(f"label key {shown(key)} is not a Kubernetes label key "
                             "(prefix/name, letters, digits, - _ .)")
        if not LABEL_VALUE.match(value):
            raise ValueError(f"label {key}: value {shown(value)} is not a Kubernetes label "
                             "value (at most 63 letters, digits, - _ .)")
    return labels


def check_env(env: dict[str, Any]) -> dict[str, Any]:
    """Environment variable names Kubernetes accepts and values without NUL, else ValueError."""
    for name, value in env.items():
        if not ENV_NAME.match(name):
            raise ValueError(f"env name {shown(name)} is not a valid variable name (letters, "
                             "digits, - . _; no '=' or spaces)")
        if isinstance(value, str) and "\0" in value:
            raise ValueError(f"env {name}: the value holds a NUL character")
    return env


def shown(value: str, limit: int = 60) -> str:
    """``value`` quoted for a message, cut to ``limit`` characters (a message never echoes a
    whole hostile value)."""
    text = value if len(value) <= limit else value[:limit] + "..."
    return repr(text)
