"""Inside a pod's sandbox (``pod-net exec``), become one container: mount its volumes, enter its
working dir and exec its command with exactly its environment.

Test support, run by the pod runner as ``pod-net exec KEY python container_entry.py SPEC.json``.
The sandbox has its own mount namespace (private propagation), so the bind mounts made here are
seen by this container alone and vanish with it, as a container runtime's would.

SPEC.json: ``{"argv": [...], "env": {...}, "workingDir": "/", "mounts": [{"target", "source",
"readOnly", "tmpfsSize"}]}``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def _mount(mount: dict[str, object]) -> None:
    target = Path(str(mount["target"]))
    source = mount.get("source")
    if source is not None and Path(str(source)).is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch(exist_ok=True)
    else:
        target.mkdir(parents=True, exist_ok=True)
    if source is None:
        size = mount.get("tmpfsSize")
        options = ["-o", f"size={size}"] if size else []
        command = ["mount", "-t", "tmpfs", *options, "tmpfs", str(target)]
    else:
        command = ["mount", "--bind", str(source), str(target)]
    subprocess.run(command, check=True)
    if mount.get("readOnly"):
        subprocess.run(["mount", "-o", "remount,bind,ro", str(target)], check=True)


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    for mount in spec["mounts"]:
        _mount(mount)
    os.chdir(spec.get("workingDir") or "/")
    argv = spec["argv"]
    os.execvpe(argv[0], argv, spec["env"])


if __name__ == "__main__":
    main()
