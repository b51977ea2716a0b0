"""The journal and its queries, the same tests against SQLite and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest

from tests.audit import records
from webhook import config, decisions, engine, errors, metrics
from webhook.audit import client, journal, report, settings, store


def record(uid: str, when: float, decision: str = "allowed", namespace: str = "team-a",
           user: str = "alice", kind: str = "Pod", violations: list[dict[str, Any]] | None = None,
           mutated_by: list[str] | None = None) -> dict[str, Any]:
    return {"time": when, "uid": uid, "phase": "validate", "operation": "CREATE", "group": "",
            "kind": kind, "namespace": namespace, "name": f"obj-{uid}", "user": user,
            "groups": ["system:authenticated"], "dry_run": False,
            "allowed": decision != "denied", "decision": decision, "message": "",
            "violations": violations or [], "mutated_by": mutated_by or [], "warnings": [],
            "skipped": "", "duration_ms": 1.5}


def violation(policy: str, mode: str = "enforce", error: bool = False) -> dict[str, Any]:
    return {"policy": policy, "mode": mode, "path": "/spec/containers/0", "container": "main",
            "message": f"[{policy}] broken", "error": error, "preexisting": False}


@pytest.fixture
def db(journal_url: str):
    opened = store.open_store(journal_url)
    yield opened
    opened.close()


def test_engine_decisions_round_trip_through_the_journal(journal_url: str) -> None:
    eng = records.default_engine()

    async def run() -> list[decisions.Decision]:
        j = journal.Journal(store.open_store(journal_url),
                            settings.JournalSettings(url=journal_url, flushInterval=0.05))
        j.start()
        made = [await records.decide(eng, records.gpu_pod("no-limits")),
                await records.decide(eng, records.gpu_pod("ok", limits=True)),
                await records.decide(eng, records.gpu_pod("m"), phase=engine.MUTATE)]
        for decision in made:
            assert j.record(decision.record())
        await j.close()
        return made

    made = asyncio.run(run())
    db = store.open_store(journal_url)
    try:
        rows = db.records(store.Filters(), 10)
        assert [r for _, r in rows][::-1] == [d.record() for d in made]
        assert [r["decision"] for _, r in rows][::-1] == ["denied", "allowed", "mutated"]
        per_policy = {p["policy"]: p for p in db.per_policy(store.Filters())}
        assert per_policy["require-limits"]["denied"] == 1
        assert per_policy["gpu-tolerations"]["mutated"] == 1
    finally:
        db.close()


def test_totals_groups_and_filters(db: store.Store) -> None:
    now = time.time()
    db.insert([
        record("a", now - 10, "denied", violations=[violation("require-limits")]),
        record("b", now - 9, "denied", namespace="team-b", user="bob",
               violations=[violation("require-limits"), violation("gpu-limits")]),
        record("c", now - 8, "warned", violations=[violation("gpu-limits", "warn")]),
        record("d", now - 7, "mutated", mutated_by=["gpu-tolerations"]),
        record("e", now - 7200, "denied", violations=[violation("require-limits")]),
        record("f", now - 6, "allowed", kind="Deployment"),
    ])
    recent = store.Filters(since=now - 3600)
    assert db.totals(recent) == {"allowed": 1, "denied": 2, "mutated": 1, "warned": 1,
                                 "total": 5}
    assert db.totals(store.Filters())["denied"] == 3
    assert db.count(store.Filters(namespace="team-b")) == 1
    assert db.count(store.Filters(user="bob", since=now - 3600)) == 1
    assert db.count(store.Filters(kind="Deployment")) == 1
    assert db.count(store.Filters(decision="denied", since=now - 3600)) == 2
    assert {r["uid"] for _, r in db.records(store.Filters(policy="gpu-limits"), 10)} == {"b", "c"}
    policies = {p["policy"]: p for p in db.per_policy(recent)}
    assert policies["require-limits"]["denied"] == 2
    assert policies["gpu-limits"] == {"policy": "gpu-limits", "denied": 1, "warned": 1,
                                      "audited": 0, "errors": 0, "mutated": 0, "excepted": 0}
    assert policies["gpu-tolerations"]["mutated"] == 1
    namespaces = {n["namespace"]: n for n in db.grouped("namespace", recent)}
    assert namespaces["team-a"]["total"] == 4 and namespaces["team-b"]["denied"] == 1
    users = db.grouped("username", recent)
    assert users[0] == {"user": "alice", "total": 4, "allowed": 1, "denied": 1, "mutated": 1,
                        "warned": 1}
    series = db.series(store.Filters(since=now - 10_000), 60)
    assert sum(p["denied"] for p in series) == 3
    assert all(p["start"] % 3600 == 0 for p in series)


def test_cursor_pagination_visits_every_decision_once(db: store.Store) -> None:
    now = time.time()
    db.insert([record(f"u{i}", now + i) for i in range(23)])
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        rows = db.records(store.Filters(), 10, cursor)
        pages += 1
        seen += [r["uid"] for _, r in rows]
        if len(rows) < 10:
            break
        cursor = rows[-1][0]
    assert pages == 3
    assert seen == [f"u{i}" for i in reversed(range(23))]


def test_retention_by_age_and_by_row_count(db: store.Store) -> None:
    now = time.time()
    db.insert([record(f"old{i}", now - 86400 * 40) for i in range(3)]
              + [record(f"new{i}", now - 10 + i) for i in range(10)])
    assert db.prune(now - 86400 * 30, 1000) == 3
    assert db.count() == 10
    assert db.prune(now - 86400 * 30, 4) == 6
    kept = {r["uid"] for _, r in db.records(store.Filters(), 100)}
    assert kept == {f"new{i}" for i in range(6, 10)}
    assert db.prune(now - 86400 * 30, 4) == 0


def test_a_full_queue_counts_and_drops_never_blocks(journal_url: str) -> None:
    async def run() -> tuple[list[bool], int, int]:
        j = journal.Journal(store.open_store(journal_url),
                            settings.JournalSettings(queueSize=5, flushInterval=0.05))
        before = metrics.REGISTRY.get_sample_value("mlgate_journal_dropped_total") or 0
        accepted = [j.record(record(f"q{i}", time.time())) for i in range(8)]  # writer not started
        dropped = (metrics.REGISTRY.get_sample_value("mlgate_journal_dropped_total") or 0) - before
        j.start()
        await j.close()
        return accepted, int(dropped), j.written

    accepted, dropped, written = asyncio.run(run())
    assert accepted == [True] * 5 + [False] * 3
    assert dropped == 3
    assert written == 5


def test_migration_from_an_older_schema_keeps_rows(journal_url: str) -> None:
    db = store.open_store(journal_url)
    db.insert([record("kept", time.time())])
    with db._lock, db._transaction():  # wind back to schema 1, as an older mlgate left it
        db._execute("DROP TABLE scan_results")
        db._execute("DROP TABLE exception_results")
        db._execute("DROP INDEX decisions_record_key")
        db._execute("ALTER TABLE decisions DROP COLUMN record_key")
        db._execute("DELETE FROM mlgate_schema WHERE version > 1")
    db.close()
    again = store.open_store(journal_url)
    try:
        assert again.version() == store.LATEST
        assert again.uids() == {"kept"}
        again.upsert_scan([{"group": "", "kind": "Pod", "namespace": "a", "name": "p",
                            "api_version": "v1", "scanned_at": 1.0, "policies": ["x"],
                            "violations": []}])
        assert again.scan_results()[0]["name"] == "p"
        excepted = record("excepted", time.time(), "warned",
                          violations=[{**violation("require-limits"), "exception": "legacy"}])
        again.insert([excepted])
        assert again.exceptions_applied(store.Filters())[0]["exception"] == "legacy"
        # Migration 4: rows from before have no key; keyed rows are written once.
        assert again.insert([record("keyed", time.time())], ["k-1"]) == 1
        assert again.insert([record("keyed", time.time())], ["k-1"]) == 0
        assert again.count() == 3
    finally:
        again.close()


def test_a_newer_schema_is_refused_with_a_clear_error(journal_url: str) -> None:
    db = store.open_store(journal_url)
    with db._lock, db._transaction():
        db._execute("INSERT INTO mlgate_schema (version) VALUES (?)", (store.LATEST + 1,))
    db.close()
    with pytest.raises(errors.ConfigError, match="newer than this mlgate"):
        store.open_store(journal_url)


def test_scan_results_keep_the_latest_per_object_and_forget_vanished(db: store.Store) -> None:
    def row(name: str, at: float, failing: bool) -> dict[str, Any]:
        return {"group": "kubeflow.org", "kind": "PyTorchJob", "namespace": "ml", "name": name,
                "api_version": "kubeflow.org/v1", "scanned_at": at,
                "policies": ["require-limits"],
                "violations": [violation("require-limits")] if failing else []}

    db.upsert_scan([row("a", 1.0, True), row("b", 1.0, True)])
    db.upsert_scan([row("a", 2.0, False)])  # fixed since
    assert db.forget_scan("kubeflow.org", "PyTorchJob", 2.0) == 1  # b is gone
    results = db.scan_results()
    assert [(r["name"], r["violations"]) for r in results] == [("a", [])]
    assert db.scan_results(failing_only=True) == []


def test_report_filters_reject_bad_values_with_the_fix() -> None:
    with pytest.raises(report.BadFilter, match="decision='nope': must be one of"):
        report.parse_filters({"decision": "nope"})
    with pytest.raises(report.BadFilter, match="since='yesterday'"):
        report.parse_filters({"since": "yesterday"})
    now = 1_700_000_000.0
    parsed = report.parse_filters({"since": "2h", "until": "2023-11-14T22:13:20Z"}, now)
    assert parsed.since == now - 7200 and parsed.until == now


@pytest.mark.parametrize("url, problem", [
    ("mysql://x/y", "scheme must be sqlite or postgresql"),
    ("sqlite:", "names no database file"),
    ("postgresql://nobody@127.0.0.1:1/none", "cannot connect to PostgreSQL at 127.0.0.1:1"),
])
def test_bad_journal_urls_are_config_errors(url: str, problem: str) -> None:
    with pytest.raises(errors.ConfigError, match=problem):
        store.open_store(url)


def test_sqlite_journal_is_in_wal_mode(tmp_path) -> None:
    db = store.open_store(f"sqlite:///{tmp_path / 'j.db'}")
    try:
        assert isinstance(db, store.SqliteStore)
        assert db.journal_mode() == "wal"
    finally:
        db.close()


def test_decisions_an_exception_changed_are_journaled_and_reported(journal_url: str) -> None:
    day = 86400.0
    cfg = config.from_mapping({"exceptions": {
        "legacy": {"policies": ["require-limits"], "match": {"names": ["legacy-*"]},
                   "reason": "v2 image brings limits", "owner": "team-a",
                   "expires": time.strftime("%Y-%m-%d", time.gmtime(time.time() + 10 * day))},
        "later": {"policies": ["require-limits"], "match": {"namespaces": ["nowhere"]},
                  "reason": "r", "owner": "team-b",
                  "expires": time.strftime("%Y-%m-%d", time.gmtime(time.time() + 60 * day))},
    }}, environ={})
    eng = engine.Engine.build(cfg)
    made = [asyncio.run(records.decide(eng, records.gpu_pod(name)))
            for name in ("legacy-1", "legacy-2", "fresh")]
    assert [d.verdict for d in made] == ["warned", "warned", "denied"]
    db = store.open_store(journal_url)
    try:
        db.insert([d.record() for d in made])
        window = store.Filters(since=time.time() - 3600)
        built = report.build(db, window, exceptions=cfg.exceptions)
        excepted = built["exceptions"]
        assert excepted["applied"][0]["exception"] == "legacy"
        assert excepted["applied"][0]["policy"] == "require-limits"
        assert excepted["applied"][0]["decisions"] == 2
        assert [r["name"] for r in excepted["recent"]] == ["legacy-2", "legacy-1"]
        assert [r["name"] for r in excepted["expiring"]] == ["legacy"]  # within 14 days
        assert [(r["name"], r["state"]) for r in excepted["configured"]] == [
            ("legacy", "expiring"), ("later", "active")]
        policies = {p["policy"]: p for p in built["per_policy"]}
        assert policies["require-limits"]["excepted"] == 2
        assert policies["require-limits"]["denied"] == 1
        printed = client.table(built)
        assert re.search(r"legacy\s+team-a\s+\S+\s+expiring \(\d+ days left\)\s+2\n", printed)
        assert re.search(r"later\s+team-b\s+\S+\s+active\s+0\n", printed)
        page, _ = report.render_html(built, {})
        assert 'id="exceptions-expiring"' in page and "legacy (team-a) expires" in page
        assert 'id="table-excepted"' in page and "legacy-2" in page
        # Pruning takes the exception rows with their decisions.
        assert db.prune(time.time() + 1, 1000) == 3
        assert db.exceptions_applied(store.Filters()) == []
    finally:
        db.close()


def test_batches_of_every_size_use_a_handful_of_insert_statements(
        db: store.Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The drivers keep every statement they prepare: one INSERT text per batch size held
    some 70 MB of prepared statements after a few minutes under load."""
    texts: set[str] = set()
    execute = db._execute

    def recording(query: str, params: Any = ()) -> Any:
        if query.startswith("INSERT"):
            texts.add(query)
        return execute(query, params)

    monkeypatch.setattr(db, "_execute", recording)
    fed = 0
    for size in range(1, 301):
        db.insert([record(f"u{fed + i}", 1000.0 + fed + i,
                          violations=[violation("require-limits")]) for i in range(size)])
        fed += size
    assert db.count() == fed
    per_table = {table: sum(f"INSERT INTO {table} " in t for t in texts)
                 for table in ("decisions", "policy_results")}
    assert per_table == {"decisions": 9, "policy_results": 9}  # 1, 2, 4, ... 256 rows
