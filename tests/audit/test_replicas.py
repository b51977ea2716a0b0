"""Two replicas of `mlgate serve` (real HTTPS) sharing one PostgreSQL journal under load;
one is SIGKILLed (issue 12, point 8).

The other keeps answering, with no error, and every decision answered by either more
than one flush interval before the kill is in the journal, once. The answered uids are
recorded client-side with the time of their answer.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from tests import factories
from tests.audit import conftest, records
from tests.server import RunningServer, running_server

pytestmark = pytest.mark.integration

FLUSH = 0.2  # the default journal.flushInterval
THREADS = 2  # client threads per replica


class Load:
    """Threads posting reviews with uids of their own to one replica; errors are counted
    until `expect_gone()` (the replica is about to be killed)."""

    def __init__(self, server: RunningServer, name: str) -> None:
        self.server = server
        self.name = name
        self.answered: dict[str, float] = {}  # uid -> monotonic time of the answer
        self.errors: list[str] = []
        self.gone = False
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(THREADS)]

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


def journal_rows(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [str(row[0]) for row in conn.execute("SELECT uid FROM decisions ORDER BY id")]


def test_two_replicas_on_one_postgresql_one_killed_under_load(
        postgres: conftest.Postgres, tmp_path: Path) -> None:
    url = postgres.create_database()
    config = tmp_path / "mlgate.yaml"
    config.write_text(f"journal:\n  url: {url}\n")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with running_server(tmp_path / "a", "--data-dir", str(tmp_path / "a" / "data"),
                        config=config) as victim, \
            running_server(tmp_path / "b", "--data-dir", str(tmp_path / "b" / "data"),
                           config=config) as survivor:
        with Load(victim, "a") as killed, Load(survivor, "b") as kept:
            killed.wait_for(800)
            kept.wait_for(800)
            killed.gone = True
            killed_at = time.monotonic()
            os.kill(victim.process.pid, signal.SIGKILL)
            victim.process.wait(10)
            after_kill = kept.count()
            kept.wait_for(after_kill + 800)  # the survivor goes on answering
        assert not kept.errors, f"{len(kept.errors)} errors on the replica left: " \
                                f"{kept.errors[:3]}"
        assert not killed.errors, killed.errors[:3]
    # The survivor has been stopped (SIGTERM: it drains its queue); the victim never was.
    answered = {**killed.answered, **kept.answered}
    settled = {uid for uid, at in answered.items() if at < killed_at - FLUSH}
    assert len(settled) > 1000
    rows = journal_rows(url)
    assert len(rows) == len(set(rows)), f"{len(rows) - len(set(rows))} decisions journaled twice"
    missing = settled - set(rows)
    assert not missing, (f"{len(missing)} of {len(settled)} decisions answered more than "
                         f"{FLUSH} s before the kill are not in the journal: "
                         f"{sorted(missing)[:5]}")
    assert set(kept.answered) <= set(rows), "the survivor journals everything it answered"
