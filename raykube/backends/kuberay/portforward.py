"""Local ports forwarded to a pod's ports through the Kubernetes API server, with no ``kubectl``.

Each accepted local TCP connection opens its own port-forward stream (the API server's
``pods/portforward`` subresource, over the official client's websocket ``portforward``) and a
thread copies bytes both ways until either side closes. Sockets are watched with ``selectors``
(no ``select()`` limit on descriptor numbers), a failed ``accept`` is retried with backoff
rather than ending the forward, at most :data:`MAX_CONNECTIONS` connections are served at once
(the next wait in the listen backlog), and ``close`` ends every listener, connection and
stream. A laptop or a notebook reaches the head's
dashboard (Jobs API, Serve REST API), Ray Client and Serve ports this way, exactly as
``kubectl port-forward`` would give them.

Example::

    with PortForward(kube, "default", "demo-head-x7k2p", [8265]) as forward:
        url = f"http://127.0.0.1:{forward.local_port(8265)}"
"""

from __future__ import annotations

import selectors
import socket
import threading
from types import TracebackType
from typing import Any

from raykube.backends.kuberay.client import KubeClient
from raykube.errors import BackendError

_CHUNK = 65536

MAX_CONNECTIONS = 64
"""Connections served at once across the forward's ports (each holds a stream to the API
server); more wait in the listen backlog until one ends."""

ACCEPT_BACKOFF_S = (0.05, 2.0)
"""First and longest pause after a failed ``accept`` (out of descriptors, say) before trying
again."""


class PortForward:
    """Forward local ports to ``remote_ports`` of one pod: free ones, or ``local_ports``
    (remote -> local) where given."""

    def __init__(self, kube: KubeClient, namespace: str, pod: str, remote_ports: list[int],
                 local_ports: dict[int, int] | None = None, *,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        self._kube = kube
        self._fixed = dict(local_ports or {})
        self.namespace = namespace
        self.pod = pod
        self._listeners: dict[int, socket.socket] = {}
        self._remote_ports = list(remote_ports)
        self._closed = threading.Event()
        self._slots = threading.BoundedSemaphore(max_connections)
        self._open: dict[socket.socket, list[Any]] = {}
        """Each local connection being served -> what it holds to the pod (socket, stream)."""
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.accept_errors = 0
        """How many accepts failed and were retried (for tests and diagnosis)."""

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
            listener.setblocking(False)
            self._listeners[remote] = listener
        thread = threading.Thread(target=self._accept_loop, daemon=True,
                                  name=f"portforward-{self.pod}")
        thread.start()
        self._threads.append(thread)
        return self

    def _accept_one(self, listener: socket.socket) -> socket.socket:
        """One pending connection (a seam: tests make it fail)."""
        return listener.accept()[0]

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as selector:
            for remote, listener in self._listeners.items():
                selector.register(listener, selectors.EVENT_READ, remote)
            pause = ACCEPT_BACKOFF_S[0]
            while not self._closed.is_set():
                if not self._slots.acquire(timeout=0.2):
                    continue  # at the cap: the next connection waits in the backlog
                try:
                    events = selector.select(timeout=0.2)
                except (OSError, ValueError):  # a listener closed under us: close() runs
                    self._slots.release()
                    return
                if not events:
                    self._slots.release()
                    continue
                key = events[0][0]
                try:
                    client = self._accept_one(key.fileobj)  # type: ignore[arg-type]
                except BlockingIOError:
                    self._slots.release()
                    continue
                except OSError:
                    self._slots.release()
                    if self._closed.is_set():
                        return
                    self.accept_errors += 1
                    self._closed.wait(pause)  # out of descriptors, a reset: try again
                    pause = min(pause * 2, ACCEPT_BACKOFF_S[1])
                    continue
                pause = ACCEPT_BACKOFF_S[0]
                client.setblocking(True)
                worker = threading.Thread(target=self._serve, args=(client, key.data),
                                          daemon=True)
                worker.start()

    def _end(self, client: socket.socket) -> None:
        """Close ``client`` and what it held to the pod."""
        with self._lock:
            held = self._open.pop(client, [])
        for item in (client, *held):
            try:
                item.close()
            except Exception:  # noqa: BLE001 - closing what may be closed already
                pass

    def _serve(self, client: socket.socket, remote: int) -> None:
        """Copy bytes between one local connection and its own stream to the pod."""
        with self._lock:
            self._open[client] = []
        try:
            forward, upstream = self._kube.port_stream(self.namespace, self.pod, remote)
            with self._lock:
                if client not in self._open:  # closed while connecting
                    forward.close()
                    return
                self._open[client] = [upstream, forward]
            upstream.setblocking(True)
            with selectors.DefaultSelector() as selector:
                selector.register(client, selectors.EVENT_READ, upstream)
                selector.register(upstream, selectors.EVENT_READ, client)
                while not self._closed.is_set():
                    for key, _ in selector.select(timeout=0.2):
                        data = key.fileobj.recv(_CHUNK)  # type: ignore[union-attr]
                        if not data:
                            return
                        key.data.sendall(data)
        except Exception:  # noqa: BLE001 - the client sees its connection closed
            return
        finally:
            self._end(client)
            self._slots.release()

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

    @property
    def connections(self) -> int:
        """Local connections being served now."""
        with self._lock:
            return len(self._open)

    def close(self) -> None:
        """Stop listening and end every forwarded connection and its stream."""
        self._closed.set()
        for listener in self._listeners.values():
            listener.close()
        with self._lock:
            clients = list(self._open)
        for client in clients:
            self._end(client)
        for thread in self._threads:
            thread.join(timeout=2)

    def __enter__(self) -> PortForward:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
