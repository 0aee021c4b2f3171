"""Holding a local cluster's raylets at a chosen moment, through Ray's own hook for wrapping
the raylet: with ``RAY_RAYLET_VALGRIND=1`` Ray runs ``valgrind ARGS raylet ...``, and the
``valgrind`` these helpers put first on PATH is a script that stops itself (SIGSTOP) before it
runs the raylet, or runs it at once. A stopped raylet stands for one a busy machine starves, or
a node still on its way; SIGKILL still ends it.

Test support, not part of raykube.
"""

from __future__ import annotations

import os
from pathlib import Path


def raylet_wrapper(folder: Path, *, hold: str) -> dict[str, str]:
    """The environment that routes every raylet through a wrapper in ``folder``.

    ``hold``: ``"first"`` stops the first raylet (the head's) and runs every later one;
    ``"later"`` runs the first and stops every later one (the worker nodes). Either way the
    first raylet's wrapper PID is written to ``folder/first.pid``.
    """
    first = folder / "first.pid"
    wrapper = folder / "bin" / "valgrind"
    wrapper.parent.mkdir(parents=True, exist_ok=True)
    stop_first = "kill -STOP $$; " if hold == "first" else ""
    stop_later = "kill -STOP $$; " if hold == "later" else ""
    wrapper.write_text(
        "#!/bin/sh\n"
        "while [ \"${1#--}\" != \"$1\" ]; do shift; done\n"  # valgrind's own --flags
        f"if [ ! -e {first} ]; then echo $$ > {first}; {stop_first}"
        f"else {stop_later}:; fi\n"
        'exec "$@"\n'
    )
    wrapper.chmod(0o755)
    return {"PATH": f"{wrapper.parent}:{os.environ['PATH']}", "RAY_RAYLET_VALGRIND": "1"}
