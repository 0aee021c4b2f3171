"""Local ports forwarded to a pod's ports through the Kubernetes API server, with no ``kubectl``.

Each accepted local TCP connection opens its own port-forward stream (the API server's
``pods/portforward`` subresource, over the official client's websocket ``portforward``) and two
threads copy bytes both ways until either side closes. A laptop or a notebook reaches the head's
dashboard (Jobs API, Serve REST API), Ray Client and Serve ports this way, exactly as
``kubectl port-forward`` would give them.

Example::

    with PortForward(kube, "default", "demo-head-x7k2p", [8265]) as forward:
        url = f"http://127.0.0.1:{forward.local_port(8265)}"
"""

from __future__ import annotations

import select
import socket
import threading
from types import TracebackType

from raykube.backends.kuberay.client import KubeClient
from raykube.errors import BackendError

_CHUNK = 65536


class PortForward:
    """Forward local ports to ``remote_ports`` of one pod: free ones, or ``local_ports``
    (remote -> local) where given."""

    def __init__(self, kube: KubeClient, namespace: str, pod: str, remote_ports: list[int],
                 local_ports: dict[int, int] | None = None) -> None:
        self._kube = kube
        self._fixed = dict(local_ports or {})
        self.namespace = namespace
        self.pod = pod
        self._listeners: dict[int, socket.socket] = {}
        self._remote_ports = list(remote_ports)
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []

    def local_port(self, remote_port: int) -> int:
        """The local port that reaches ``remote_port`` of the pod."""
        return int(self._listeners[remote_port].getsockname()[1])

    def start(self) -> PortForward:
        """Listen on 127.0.0.1 for every remote port; return self."""
        for remote in self._remote_ports:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                listener.bind(("127.0.0.1", self._fixed.get(remote, 0)))
            except OSError as exc:
                listener.close()
                self.close()
                raise BackendError(
                    f"cannot listen on 127.0.0.1:{self._fixed.get(remote)} for the pod's port "
                    f"{remote}: {exc.strerror}", "pick another local port, or stop what uses it",
                ) from exc
            listener.listen(64)
            self._listeners[remote] = listener
            thread = threading.Thread(target=self._accept, args=(listener, remote), daemon=True,
                                      name=f"portforward-{self.pod}-{remote}")
            thread.start()
            self._threads.append(thread)
        return self

    def _accept(self, listener: socket.socket, remote: int) -> None:
        while not self._closed.is_set():
            try:
                readable, _, _ = select.select([listener], [], [], 0.2)
            except (OSError, ValueError):  # closed under us (close(), or at exit)
                return
            if not readable:
                continue
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client, remote), daemon=True).start()

    def _serve(self, client: socket.socket, remote: int) -> None:
        """Copy bytes between one local connection and its own stream to the pod."""
        try:
            forward, upstream = self._kube.port_stream(self.namespace, self.pod, remote)
        except Exception:  # noqa: BLE001 - the client sees its connection closed
            client.close()
            return
        upstream.setblocking(True)
        try:
            peers = {client: upstream, upstream: client}
            while not self._closed.is_set():
                readable, _, _ = select.select(list(peers), [], [], 0.2)
                for source in readable:
                    data = source.recv(_CHUNK)
                    if not data:
                        return
                    peers[source].sendall(data)
        except OSError:
            return
        finally:
            client.close()
            upstream.close()
            forward.close()

    def check(self, remote: int) -> None:
        """Open and close one stream to ``remote``: raise BackendError when the API server or
        the pod refuses it (no such pod, RBAC, nothing listening)."""
        try:
            forward, upstream = self._kube.port_stream(self.namespace, self.pod, remote)
        except Exception as exc:  # noqa: BLE001 - translated
            raise BackendError(
                f"cannot port-forward to pod {self.namespace}/{self.pod}:{remote}: {exc}",
                "check that the pod is Running and that you may create pods/portforward",
            ) from exc
        error = forward.error(remote)
        upstream.close()
        forward.close()
        if error:
            raise BackendError(f"port-forward to {self.namespace}/{self.pod}:{remote}: {error}")

    def close(self) -> None:
        """Stop listening and end every forwarded connection."""
        self._closed.set()
        for listener in self._listeners.values():
            listener.close()
        for thread in self._threads:
            thread.join(timeout=2)

    def __enter__(self) -> PortForward:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
