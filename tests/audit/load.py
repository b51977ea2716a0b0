"""A steady /validate load on a real server, for the tests that kill or stop it."""

from __future__ import annotations

import json
import threading
import time

import httpx

from tests import factories
from tests.audit import records
from tests.server import RunningServer


class Load:
    """Threads posting reviews with uids of their own to one server, recording when each
    was answered; errors are recorded until `gone` is set (the server is about to be
    killed or stopped), after which a thread ends at its first transport error."""

    def __init__(self, server: RunningServer, name: str = "load", threads: int = 2) -> None:
        self.server = server
        self.name = name
        self.answered: dict[str, float] = {}  # uid -> monotonic time of the answer
        self.errors: list[str] = []
        self.gone = False
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def _run(self, index: int) -> None:
        count = 0
        with self.server.client() as client:
            while not self.stop.is_set():
                uid = f"{self.name}-{index}-{count}"
                count += 1
                review = factories.admission_review(records.gpu_pod(f"p{count}"), uid=uid)
                try:
                    response = client.post("/validate", content=json.dumps(review),
                                           headers={"content-type": "application/json"})
                except httpx.TransportError as exc:
                    if self.gone:
                        return
                    with self.lock:
                        self.errors.append(f"{uid}: {exc!r}")
                    continue
                with self.lock:
                    if response.status_code == 200 and \
                            response.json()["response"]["uid"] == uid:
                        self.answered[uid] = time.monotonic()
                    elif not self.gone:
                        self.errors.append(f"{uid}: HTTP {response.status_code}")

    def count(self) -> int:
        with self.lock:
            return len(self.answered)

    def wait_for(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.count() < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.count() >= count, f"{self.name}: only {self.count()} answers under load"

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)
