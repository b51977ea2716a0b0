"""Admission isolated from the audit side (issue 12, point 2): with the journal's PostgreSQL
table locked by another session and 12 audit report readers waiting on it, normal pods
are still admitted; the readers past `audit.maxQueries` get a 503 at once, and the others
answer once the lock is released. Real server over TLS, real PostgreSQL, the `cel` policy
and a blocking third-party-style policy. Then the parts: the query pool's limit and
timeout, and the journal writer's own thread."""

from __future__ import annotations

import asyncio
import concurrent.futures
import textwrap
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import psycopg
import pytest
import yaml

from tests import factories
from tests.audit import records
from tests.audit.conftest import Postgres
from tests.server import RunningServer, running_server
from webhook import decisions
from webhook.audit import journal, queries, settings, store
from webhook.audit.settings import AuditSettings

pytestmark = pytest.mark.integration

READER = "reader-token"
AUTH = {"Authorization": f"Bearer {READER}"}
READERS = 12  # report readers waiting on the locked table, as in the issue
MAX_QUERIES = AuditSettings().maxQueries  # the server under test keeps the default
PODS = 10
# A third-party policy as most are written: a sync method, `blocking` left at its default
# (True), so that the engine runs it in a worker thread.
THIRD_PARTY = textwrap.dedent('''
    from webhook import policy

    class TeamLabel(policy.ValidatingPolicy[policy.Params]):
        """Asks for a team label (a sync policy that keeps the default blocking = True)."""
        name = "team-label"

        def validate(self, workload):
            if "team" not in (workload.obj.get("metadata", {}).get("labels") or {}):
                yield policy.Violation(what="no team label", fix="add metadata.labels.team")
''')


@pytest.fixture
def server(tmp_path: Path, postgres: Postgres) -> Iterator[tuple[RunningServer, str]]:
    database = postgres.create_database()
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "team_label.py").write_text(THIRD_PARTY)
    (tmp_path / "tokens.csv").write_text(f'{READER},rita,u1,"mlgate:audit-readers"\n')
    cfg = tmp_path / "mlgate.yaml"
    cfg.write_text(yaml.safe_dump({
        "policyPaths": [str(tmp_path / "policies")],
        "policies": {
            "team-label": {"mode": "enforce"},
            "cel": {"mode": "enforce", "params": {"rules": [{
                "name": "no-host-network", "expression":
                    "!has(object.spec.hostNetwork) || !object.spec.hostNetwork"}]}}},
        "audit": {"tokenFile": str(tmp_path / "tokens.csv")},
        "journal": {"url": database, "flushInterval": "50ms"}}))
    with running_server(tmp_path, "--data-dir", str(tmp_path / "data"),
                        config=cfg) as running:
        yield running, database


def _pod(name: str) -> dict[str, object]:
    pod = records.gpu_pod(name, limits=True)
    pod["metadata"]["labels"] = {"team": "vision"}  # type: ignore[index]
    return pod


def _lock_waits(database: str) -> int:
    """Backends of the journal's database waiting for a lock."""
    with psycopg.connect(database, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                           "current_database() AND wait_event_type = 'Lock'").fetchone()
    return int(row[0]) if row else 0


def test_a_locked_journal_and_waiting_readers_do_not_stall_admission(
        server: tuple[RunningServer, str]) -> None:
    running, database = server
    with running.client() as client:
        review = factories.admission_review(_pod("before"), uid="before")
        answer = client.post("/validate", json=review).json()["response"]
        assert answer["allowed"], answer  # a normal pod passes both policies
    locker = psycopg.connect(database)  # a transaction of its own, held until rollback
    try:
        locker.execute("LOCK TABLE decisions IN ACCESS EXCLUSIVE MODE")

        def read(_: int) -> httpx.Response:
            with httpx.Client(base_url=running.url, verify=running.ssl_context(),
                              timeout=120) as reader:
                return reader.get("/audit/report", headers=AUTH)

        pool = concurrent.futures.ThreadPoolExecutor(READERS)
        readers = [pool.submit(read, index) for index in range(READERS)]
        deadline = time.monotonic() + 30
        while _lock_waits(database) == 0:  # a report query is waiting on the lock
            assert time.monotonic() < deadline, "no report query reached the locked table"
            time.sleep(0.05)
        deadline = time.monotonic() + 10  # the excess readers answer at once (fixed code)
        while (sum(r.done() for r in readers) < READERS - MAX_QUERIES
               and time.monotonic() < deadline):
            time.sleep(0.05)

        denied = []
        with running.client() as client:
            for index in range(PODS):
                review = factories.admission_review(_pod(f"p{index}"), uid=f"p{index}")
                answer = client.post("/validate", json=review)
                assert answer.status_code == 200, answer.text
                if not answer.json()["response"]["allowed"]:
                    denied.append(answer.json()["response"]["status"]["message"])
        print(f"pods denied with a locked journal and {READERS} waiting readers: "
              f"{len(denied)} of {PODS}")
        assert denied == [], denied

        answered = [r for r in readers if r.done()]
        busy = [r.result() for r in answered]
        assert len(busy) == READERS - MAX_QUERIES, [r.status_code for r in busy]
        for answer in busy:
            assert answer.status_code == 503, answer.text
            assert answer.headers["Retry-After"].isdigit()
            assert "audit.maxQueries" in answer.json()["error"], answer.text
    finally:
        locker.rollback()
        locker.close()
    waited = [r.result(timeout=60) for r in readers if r not in answered]
    pool.shutdown()
    assert [r.status_code for r in waited] == [200] * MAX_QUERIES, [r.text for r in waited]
    with running.client() as client:  # and the report answers as before
        assert client.get("/audit/report", headers=AUTH).status_code == 200


async def test_a_reader_past_max_queries_is_refused_at_once() -> None:
    pool = queries.Queries(limit=2, timeout=60)
    release = threading.Event()
    try:
        held = [asyncio.ensure_future(pool.run(release.wait)) for _ in range(2)]
        await asyncio.sleep(0)  # both take their slot
        with pytest.raises(queries.Busy, match=r"audit.maxQueries \(2\)"):
            await pool.run(lambda: "never run")
        release.set()
        assert await asyncio.gather(*held) == [True, True]
        assert await pool.run(lambda: "served") == "served"  # the slots came back
    finally:
        release.set()
        pool.close()


async def test_a_query_past_query_timeout_is_a_503_and_keeps_its_slot() -> None:
    """Its reader is answered; the thread the stuck query holds still counts, so the readers a
    stuck database can hold never exceed the limit."""
    pool = queries.Queries(limit=1, timeout=0.05)
    release = threading.Event()
    finished = threading.Event()

    def stuck() -> None:
        release.wait()
        finished.set()

    try:
        with pytest.raises(store.Unavailable, match=r"audit.queryTimeout \(0.05s\)"):
            await pool.run(stuck)
        with pytest.raises(queries.Busy):
            await pool.run(lambda: "never run")
        release.set()
        await asyncio.to_thread(finished.wait, 30)
        deadline = time.monotonic() + 30
        while True:  # the slot is released by the query's thread as it returns
            try:
                assert await pool.run(lambda: "served") == "served"
                break
            except queries.Busy:
                assert time.monotonic() < deadline, "the slot never came back"
                await asyncio.sleep(0.01)
    finally:
        release.set()
        pool.close()


async def test_the_journal_writes_on_a_thread_of_its_own(tmp_path: Path) -> None:
    threads: list[str] = []

    class Recording(store.SqliteStore):
        def insert(self, records: Sequence[decisions.DecisionRecord],
                   keys: Sequence[str | None] | None = None) -> int:
            threads.append(threading.current_thread().name)
            return super().insert(records, keys)

    loop = asyncio.get_running_loop()
    taken = threading.Event()  # the loop's default executor: every thread taken
    loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(1))
    held = loop.run_in_executor(None, taken.wait)
    db = Recording(tmp_path / "journal.db")
    db.migrate()
    writer = journal.Journal(db, settings.JournalSettings(flushInterval=0.05))
    decision = await records.decide(records.default_engine(), records.gpu_pod("one"))
    try:
        assert writer.record(decision.record())
        await asyncio.wait_for(writer.flush(), 30)  # bounded: it waited forever before
        assert writer.written == 1
    finally:
        taken.set()
        await held
        await writer.close()
    assert threads and {name.split("_")[0] for name in threads} == {"mlgate-journal"}
