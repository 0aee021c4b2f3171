"""A load generator for services: client threads POSTing until stopped, every answer and every
failure counted (test support, shared by the local and the Kubernetes serving tests)."""

from __future__ import annotations

import collections
import re
import threading
from collections.abc import Callable
from typing import Any

from raykube.errors import ServeError
from raykube.serving.service import post_json
from raykube.waiting import wait_for


class Load:
    """Client threads POSTing to a service until stopped; every answer or failure counted."""

    def __init__(self, url: str, clients: int, body: Any, *,
                 feedback: Callable[[Any], Any] | None = None) -> None:
        """``feedback``: the true label of ``body``'s instance; each answer's is then sent
        back to ``<url>/feedback``."""
        self.url, self.body, self.feedback = url, body, feedback
        self.answers: collections.Counter[str] = collections.Counter()
        self.failures: list[str] = []
        self.failed: collections.Counter[str] = collections.Counter()
        """Failures by the version that gave them (``?`` where the answer named none)."""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                answer = post_json(self.url, self.body, timeout=30)
                with self._lock:
                    self.answers[answer["version"]] += 1
                if self.feedback is not None:
                    post_json(f"{self.url}/feedback",
                              {"id": answer["id"], "label": self.feedback(self.body)})
            except (ServeError, OSError) as exc:
                version = re.search(r'"version":\s*"([^"]+)"', str(exc))
                with self._lock:
                    self.failures.append(str(exc)[:300])
                    self.failed[version.group(1) if version else "?"] += 1

    @property
    def count(self) -> int:
        with self._lock:
            return sum(self.answers.values()) + len(self.failures)

    def reset(self) -> None:
        with self._lock:
            self.answers.clear()
            self.failures.clear()
            self.failed.clear()

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
