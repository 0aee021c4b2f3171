"""A load generator for services: client threads POSTing until stopped, every answer and every
failure counted (test support, shared by the local and the Kubernetes serving tests)."""

from __future__ import annotations

import collections
import threading
from typing import Any

from raykube.errors import ServeError
from raykube.serving.service import post_json
from raykube.waiting import wait_for


class Load:
    """Client threads POSTing to a service until stopped; every answer or failure counted."""

    def __init__(self, url: str, clients: int, body: Any) -> None:
        self.url, self.body = url, body
        self.answers: collections.Counter[str] = collections.Counter()
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                answer = post_json(self.url, self.body, timeout=30)
                with self._lock:
                    self.answers[answer["version"]] += 1
            except (ServeError, OSError) as exc:
                with self._lock:
                    self.failures.append(str(exc)[:300])

    @property
    def count(self) -> int:
        with self._lock:
            return sum(self.answers.values()) + len(self.failures)

    def reset(self) -> None:
        with self._lock:
            self.answers.clear()
            self.failures.clear()

    def wait_for_requests(self, n: int, timeout: float = 120) -> None:
        start = self.count
        wait_for(lambda: self.count >= start + n, timeout=timeout, what=f"{n} more requests")

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
