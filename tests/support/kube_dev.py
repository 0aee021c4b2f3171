"""A Kubernetes to try raykube on, without containers: the control plane of ``../shared/k8s``
(kube-apiserver, etcd, scheduler, controller-manager, the KubeRay operator, kwok nodes) with the
pod runner (``podrunner.py``) running the pods' own commands, so KubeRay's pods run Ray.

Test support, shared by the pytest fixtures and the benchmarks. By hand (as root)::

    python tests/support/kube_dev.py            # prints the exports, runs until Ctrl-C
    export KUBECONFIG=...                       # as printed
    raykube up --kube clusters/local.yaml
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SHARED_K8S = Path(__file__).resolve().parents[3] / "shared" / "k8s"
RUNNER = Path(__file__).resolve().parent / "podrunner.py"


class HarnessError(RuntimeError):
    """The control plane or the pod runner did not start."""


def available() -> str | None:
    """Why the harness cannot run here, or None when it can."""
    if not (SHARED_K8S / "kube-up").exists():
        return f"{SHARED_K8S}/kube-up is not present: no Kubernetes control plane here"
    if os.geteuid() != 0:
        return "the pod network and sandboxes need root"
    return None


def kube_up(state: Path) -> dict[str, str]:
    """Start the control plane with its state in ``state``; return what kube-up exported."""
    env = {**os.environ, "RAYKUBE_K8S_STATE": str(state)}
    started = subprocess.run([str(SHARED_K8S / "kube-up")], capture_output=True, text=True,
                             env=env, timeout=300)
    if started.returncode != 0:
        raise HarnessError(f"kube-up failed: {started.stderr[-3000:]}")
    return dict(
        word.split("=", 1)
        for line in started.stdout.splitlines() if line.startswith("export ")
        for word in shlex.split(line.removeprefix("export ")) if "=" in word
    )


def kube_down(exported: dict[str, str]) -> None:
    """Stop what :func:`kube_up` started (waits until it is gone)."""
    subprocess.run([str(SHARED_K8S / "kube-down")], env={**os.environ, **exported},
                   capture_output=True, timeout=300)


def start_runner(exported: dict[str, str], state: Path, timeout: float = 60
                 ) -> subprocess.Popen[bytes]:
    """Start the pod runner for the control plane ``exported`` describes; return once it
    watches. Its log is ``state/podrunner.log``."""
    ready = state / "podrunner.ready"
    ready.unlink(missing_ok=True)
    with (state / "podrunner.log").open("ab") as log:
        runner = subprocess.Popen([sys.executable, str(RUNNER), "--ready-file", str(ready)],
                                  env={**os.environ, **exported}, stdout=log,
                                  stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if runner.poll() is not None:
            raise HarnessError(f"the pod runner exited {runner.returncode}: see "
                               f"{state}/podrunner.log")
        if time.monotonic() > deadline:
            runner.kill()
            raise HarnessError(f"the pod runner did not start in {timeout:.0f} s")
        threading.Event().wait(0.1)
    return runner


def stop_runner(runner: subprocess.Popen[bytes]) -> None:
    """Stop the runner; it kills every pod's processes and removes their sandboxes."""
    runner.terminate()
    try:
        runner.wait(timeout=60)
    except subprocess.TimeoutExpired:
        runner.kill()


def runner_alive(state: Path) -> bool:
    """Whether the pod runner of the control plane in ``state`` runs."""
    try:
        os.kill(int((state / "podrunner.ready").read_text()), 0)
    except (OSError, ValueError):
        return False
    return True


@contextmanager
def control_plane(state: Path) -> Iterator[dict[str, str]]:
    """The control plane with the pod runner, for a ``with`` block; yields kube-up's exports.

    Reuses the caller's when ``RAYKUBE_K8S_STATE`` names one whose runner runs (a test session
    that benchmarks inside its own control plane): only one may own the pod network.
    """
    existing = os.environ.get("RAYKUBE_K8S_STATE")
    if existing and runner_alive(Path(existing)):
        yield {key: os.environ[key] for key in os.environ if key.startswith("RAYKUBE_K8S_")
               or key == "KUBECONFIG"}
        return
    exported = kube_up(state)
    try:
        runner = start_runner(exported, state)
    except HarnessError:
        kube_down(exported)
        raise
    try:
        yield exported
    finally:
        stop_runner(runner)
        kube_down(exported)


def main() -> None:
    reason = available()
    if reason:
        sys.exit(f"kube_dev: {reason}")
    state = Path(os.environ.get("RAYKUBE_K8S_STATE", "/tmp/raykube-k8s-dev"))
    state.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with control_plane(state) as exported:
        print("export " + " ".join(f"{k}={v}" for k, v in sorted(exported.items())), flush=True)
        print(f"# control plane + pod runner up (logs in {state}); Ctrl-C stops both",
              file=sys.stderr, flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
