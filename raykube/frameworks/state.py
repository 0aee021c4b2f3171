"""Model state on disk in a form that runs no code when it is read.

A checkpoint is data a later process trusts: a resumed run, a serving replica. Pickle would run
whatever code a writer put there, so a shared or tampered folder would mean code run in your
replica. raykube writes state as ``state.json`` (numbers, strings, lists, dicts with their key
types, tuples) and ``arrays.npz`` (every NumPy array and framework tensor, read back with
``allow_pickle=False``), and checks on read that the arrays are those the JSON was written
with (a SHA-256), so a half-written or altered checkpoint is refused rather than half-loaded.

PyTorch tensors come back as tensors (on the CPU), NumPy arrays as arrays, NumPy scalars as
scalars; MXNet and TensorFlow state is given as NumPy already (``asnumpy()``,
``get_weights()``).

Example::

    write_state(folder, {"epoch": 3, "model": model.state_dict()})
    read_state(folder)["epoch"]   # 3
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

FORMAT = "raykube-state/1"
STATE_JSON = "state.json"
ARRAYS = "arrays.npz"

SCALARS = (bool, int, float, str, type(None))


class StateError(ValueError):
    """State that cannot be written (an unsupported value) or read (corrupt, or not raykube's)."""


def _is_torch_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def _encode(value: Any, arrays: list[Any], where: str) -> Any:
    import numpy as np

    if isinstance(value, SCALARS):
        return value
    if isinstance(value, dict):
        return {"__dict__": [[_encode(k, arrays, f"{where} key"), _encode(v, arrays,
                                                                          f"{where}[{k!r}]")]
                             for k, v in value.items()]}
    if isinstance(value, list):
        return [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, np.ndarray | np.generic):
        if value.dtype == object:
            raise StateError(f"state{where}: a NumPy array of Python objects cannot be stored")
        arrays.append(np.asarray(value))
        return {"__array__": len(arrays) - 1, "scalar": isinstance(value, np.generic)}
    if _is_torch_tensor(value):
        tensor = value.detach().cpu()
        dtype = str(tensor.dtype).removeprefix("torch.")
        if dtype == "bfloat16":  # NumPy has no bfloat16: kept as float32, cast back on read
            tensor = tensor.float()
        arrays.append(tensor.numpy())
        return {"__array__": len(arrays) - 1, "torch": dtype}
    raise StateError(
        f"state{where} is a {type(value).__module__}.{type(value).__name__}: state holds "
        "numbers, strings, lists, tuples, dicts, NumPy arrays and PyTorch tensors (MXNet: "
        ".asnumpy(); TensorFlow: model.get_weights())"
    )


def _decode(value: Any, arrays: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    if not isinstance(value, dict):
        return value
    if "__dict__" in value:
        return {_decode(k, arrays): _decode(v, arrays) for k, v in value["__dict__"]}
    if "__tuple__" in value:
        return tuple(_decode(v, arrays) for v in value["__tuple__"])
    if "__array__" in value:
        array = arrays[f"a{int(value['__array__'])}"]
        if "torch" in value:
            import torch

            return torch.from_numpy(array.copy()).to(getattr(torch, value["torch"]))
        return array[()] if value.get("scalar") else array
    raise StateError(f"an unknown entry in {STATE_JSON}: {sorted(value)[:5]}")


def write_state(folder: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` into ``folder`` (created): the arrays first, the JSON that names them
    last, each to a temporary name renamed into place, so a reader never sees half of it.

    Raises:
        StateError: a value of a type state cannot hold (named, with its place in ``state``).
    """
    import numpy as np

    arrays: list[Any] = []
    encoded = _encode(state, arrays, "")
    buffer = io.BytesIO()
    np.savez(buffer, **{f"a{i}": a for i, a in enumerate(arrays)})
    data = buffer.getvalue()
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    for name, content in ((ARRAYS, data), (STATE_JSON, json.dumps({
            "format": FORMAT, "arrays_sha256": hashlib.sha256(data).hexdigest(),
            "state": encoded}).encode())):
        tmp = target / f".{name}.tmp"
        with open(tmp, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(target / name)


def read_state(folder: str | Path) -> dict[str, Any]:
    """The state :func:`write_state` wrote into ``folder``; nothing in it can run code.

    Raises:
        StateError: no raykube state there, or it is corrupt or was altered.
    """
    import numpy as np

    source = Path(folder)
    try:
        header = json.loads((source / STATE_JSON).read_text())
        data = (source / ARRAYS).read_bytes()
    except (OSError, ValueError) as exc:
        raise StateError(f"no readable raykube state in {source}: {exc}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise StateError(f"{source / STATE_JSON} is not raykube state ({FORMAT})")
    if hashlib.sha256(data).hexdigest() != header.get("arrays_sha256"):
        raise StateError(f"{source / ARRAYS} is not the one {STATE_JSON} was written with "
                         "(half-written or altered)")
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        state = _decode(header["state"], arrays)
    if not isinstance(state, dict):
        raise StateError(f"{source / STATE_JSON} does not hold a state dict")
    return state
