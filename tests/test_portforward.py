"""raykube's port-forward under load and faults: descriptors past select()'s 1024, a connection
cap, accept errors retried, everything closed on close(). The API server's stream is stood in
for by a socket to a local echo server (the real stream is tested on the control plane in
tests/test_kuberay.py)."""

from __future__ import annotations

import errno
import os
import socket
import socketserver
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from raykube.backends.kuberay.portforward import PortForward
from raykube.waiting import wait_for

pytestmark = pytest.mark.unit


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.request.sendall(data)


class FakeStream:
    """What the client's portforward returns: error() and close()."""

    def error(self, port: int) -> None:
        return None

    def close(self) -> None:
        pass


class EchoKube:
    """A KubeClient whose port streams reach a local echo server (the 'pod')."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.streams = 0

    def port_stream(self, namespace: str, pod: str, port: int) -> tuple[Any, socket.socket]:
        self.streams += 1
        return FakeStream(), socket.create_connection(("127.0.0.1", self.port))


@pytest.fixture()
def kube() -> Iterator[EchoKube]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield EchoKube(server.server_address[1])
    server.shutdown()
    server.server_close()


def connect(forward: PortForward) -> socket.socket:
    client = socket.create_connection(("127.0.0.1", forward.local_port(8265)), timeout=10)
    return client


def echoed(client: socket.socket, data: bytes) -> bytes:
    client.sendall(data)
    return client.recv(4096)


def test_descriptors_past_1024_are_served(kube: EchoKube) -> None:
    spare = [os.dup(0) for _ in range(1100)]  # push new sockets past select()'s limit
    try:
        with PortForward(kube, "ns", "head", [8265]) as forward:  # type: ignore[arg-type]
            client = connect(forward)
            assert client.fileno() > 1024
            assert echoed(client, b"ping") == b"ping"
            client.close()
    finally:
        for fd in spare:
            os.close(fd)


def test_connections_beyond_the_cap_wait_for_a_free_slot(kube: EchoKube) -> None:
    with PortForward(kube, "ns", "head", [8265], max_connections=2) as forward:  # type: ignore[arg-type]
        first, second = connect(forward), connect(forward)
        assert echoed(first, b"1") == b"1" and echoed(second, b"2") == b"2"
        third = connect(forward)  # accepted by the kernel's backlog, not served yet
        third.sendall(b"3")
        third.settimeout(0.5)
        with pytest.raises(TimeoutError):
            third.recv(1)
        assert forward.connections == 2
        first.close()
        third.settimeout(10)
        assert third.recv(1) == b"3", "served once a slot was free"
        second.close()
        third.close()


def test_a_failed_accept_is_retried(kube: EchoKube) -> None:
    class Flaky(PortForward):
        failures = 2

        def _accept_one(self, listener: socket.socket) -> socket.socket:
            if self.failures:
                self.failures -= 1
                raise OSError(errno.EMFILE, "Too many open files")
            return super()._accept_one(listener)

    with Flaky(kube, "ns", "head", [8265]) as forward:  # type: ignore[arg-type]
        client = connect(forward)
        client.settimeout(10)
        assert echoed(client, b"still here") == b"still here"
        assert forward.accept_errors == 2
        client.close()


def test_close_ends_every_connection_and_stops_listening(kube: EchoKube) -> None:
    forward = PortForward(kube, "ns", "head", [8265]).start()  # type: ignore[arg-type]
    port = forward.local_port(8265)
    clients = [connect(forward) for _ in range(3)]
    for client in clients:
        assert echoed(client, b"x") == b"x"
    wait_for(lambda: forward.connections == 3, timeout=10, what="3 connections served")
    forward.close()
    for client in clients:
        client.settimeout(10)
        assert client.recv(1) == b"", "closed by the forward"
        client.close()
    assert forward.connections == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
