"""The journal's SQL: one schema, one set of queries, for SQLite (WAL) and PostgreSQL.

Queries are written once with `?` placeholders and the subset of SQL both engines share;
the only dialect differences are in the DDL (auto-increment key, float type) and the
placeholder. Booleans are stored as 0/1 integers so every query reads the same on both.
Times are UNIX seconds (float); `minute` (integer) is there so that charts can bucket
with integer division, which both engines do alike.

The schema is migrated on open, under a lock (an advisory lock on PostgreSQL, so that
several replicas starting together migrate once).

Writes are idempotent per decision: the journal gives every decision a `record_key`
(unique per decision, not the request uid, which the mutate and the validate phase
share), a unique index holds it (migration 4), and `insert()` skips a row whose key is
there already (`ON CONFLICT DO NOTHING`), with its policy rows. A batch that may or may
not have been committed (the connection lost during COMMIT, a replay after a crash) can
therefore be written again without being journaled twice.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import orjson

from webhook import decisions, errors

DECISIONS: tuple[str, ...] = typing.get_args(decisions.Verdict)
OUTCOMES = ("violation", "excepted", "error", "mutation")

# Each migration: (version, statements). `{id}` and `{float}` are the dialect's types.
MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (1, (
        """CREATE TABLE decisions (
            id {id}, time {float} NOT NULL, minute BIGINT NOT NULL, uid TEXT NOT NULL,
            phase TEXT NOT NULL, operation TEXT NOT NULL, grp TEXT NOT NULL, kind TEXT NOT NULL,
            namespace TEXT NOT NULL, name TEXT NOT NULL, username TEXT NOT NULL,
            decision TEXT NOT NULL, allowed INTEGER NOT NULL, dry_run INTEGER NOT NULL,
            duration_ms {float} NOT NULL, record TEXT NOT NULL)""",
        "CREATE INDEX decisions_time ON decisions (time)",
        "CREATE INDEX decisions_namespace ON decisions (namespace, time)",
        """CREATE TABLE policy_results (
            decision_id BIGINT NOT NULL, time {float} NOT NULL, policy TEXT NOT NULL,
            outcome TEXT NOT NULL, mode TEXT NOT NULL)""",
        "CREATE INDEX policy_results_decision ON policy_results (decision_id)",
        "CREATE INDEX policy_results_policy ON policy_results (policy, time)",
    )),
    (2, (
        """CREATE TABLE scan_results (
            grp TEXT NOT NULL, kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
            api_version TEXT NOT NULL, scanned_at {float} NOT NULL, policies TEXT NOT NULL,
            violations TEXT NOT NULL,
            failing INTEGER NOT NULL, PRIMARY KEY (grp, kind, namespace, name))""",
        "CREATE INDEX scan_results_failing ON scan_results (failing, namespace)",
    )),
    (3, (
        """CREATE TABLE exception_results (
            decision_id BIGINT NOT NULL, time {float} NOT NULL, exception TEXT NOT NULL,
            policy TEXT NOT NULL)""",
        "CREATE INDEX exception_results_decision ON exception_results (decision_id)",
        "CREATE INDEX exception_results_time ON exception_results (time)",
    )),
    (4, (
        # The journal's key of a decision, unique per decision; NULL for rows written
        # before (a unique index allows any number of NULLs on both engines).
        "ALTER TABLE decisions ADD COLUMN record_key TEXT",
        "CREATE UNIQUE INDEX decisions_record_key ON decisions (record_key)",
    )),
)
LATEST = MIGRATIONS[-1][0]
DECISION_COLUMNS = ("id", "time", "minute", "uid", "phase", "operation", "grp", "kind",
                    "namespace", "name", "username", "decision", "allowed", "dry_run",
                    "duration_ms", "record", "record_key")
RESULT_COLUMNS = ("decision_id", "time", "policy", "outcome", "mode")
EXCEPTION_COLUMNS = ("decision_id", "time", "exception", "policy")
MAX_PARAMETERS = 30_000  # per statement; SQLite allows 32766, PostgreSQL 65535
MAX_ROWS_PER_INSERT = 256


def _chunks(rows: list[tuple[Any, ...]], columns: int) -> Iterator[list[tuple[Any, ...]]]:
    """`rows` in chunks whose sizes are powers of two, largest first.

    A multi-row INSERT's text depends on its row count, and the drivers keep every
    statement they prepare (SQLite 128 of them): with a statement per batch size the server
    held some 70 MB of prepared 500-row INSERTs after a few minutes under load. Powers of
    two up to MAX_ROWS_PER_INSERT make at most nine distinct statements per table.
    """
    most = min(MAX_ROWS_PER_INSERT, max(MAX_PARAMETERS // columns, 1))
    size = 1 << (most.bit_length() - 1)
    start = 0
    while start < len(rows):
        while size > len(rows) - start:
            size //= 2
        yield rows[start:start + size]
        start += size


@dataclass(frozen=True)
class Filters:
    """The report's filters; empty strings and None mean "any"."""

    since: float | None = None
    until: float | None = None
    namespace: str = ""
    policy: str = ""
    kind: str = ""
    user: str = ""
    decision: str = ""

    def where(self, alias: str = "d") -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if self.since is not None:
            clauses.append(f"{alias}.time >= ?")
            params.append(self.since)
        if self.until is not None:
            clauses.append(f"{alias}.time < ?")
            params.append(self.until)
        for column, value in (("namespace", self.namespace), ("kind", self.kind),
                              ("username", self.user), ("decision", self.decision)):
            if value:
                clauses.append(f"{alias}.{column} = ?")
                params.append(value)
        if self.policy:
            clauses.append(f"EXISTS (SELECT 1 FROM policy_results p WHERE p.decision_id = "
                           f"{alias}.id AND p.policy = ?)")
            params.append(self.policy)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _outcome(finding: decisions.FindingRecord) -> str:
    if finding.get("error"):
        return "error"
    return "excepted" if finding.get("exception") else "violation"


def _policy_rows(record: decisions.DecisionRecord) -> list[tuple[str, str, str]]:
    rows = [(str(v.get("policy", "")), _outcome(v), str(v.get("mode", "")))
            for v in record.get("violations", [])]
    rows += [(str(name), "mutation", "enforce") for name in record.get("mutated_by", [])]
    return rows


def _exception_rows(record: decisions.DecisionRecord) -> set[tuple[str, str]]:
    """(exception, policy) pairs: which exception let which policy's findings through."""
    return {(str(v["exception"]), str(v.get("policy", "")))
            for v in record.get("violations", []) if v.get("exception")}


class Unavailable(errors.MlgateError):
    """The journal database did not answer a read (stopped, unreachable, locked, full)."""


class Store:
    """A connection to the journal database; every method is safe across threads."""

    dialect = ""
    types: dict[str, str] = {}
    where = "the journal"  # for messages: which database

    def __init__(self) -> None:
        self._lock = threading.Lock()

    # -- dialect hooks ---------------------------------------------------------
    def _sql(self, query: str) -> str:
        return query

    def _execute(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _transaction(self) -> contextlib.AbstractContextManager[None]:
        raise NotImplementedError

    def _migration_lock(self) -> None:
        """Taken inside the migration transaction."""

    def _reserve_ids(self, count: int) -> list[int]:
        """`count` fresh decision ids, ascending (inside the write transaction)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    # -- schema ----------------------------------------------------------------
    def migrate(self) -> int:
        """Bring the schema to `LATEST`; returns the version found before."""
        with self._lock, self._transaction():
            self._migration_lock()
            self._execute("CREATE TABLE IF NOT EXISTS mlgate_schema (version INTEGER NOT NULL)")
            rows = self._execute("SELECT MAX(version) FROM mlgate_schema")
            found = int(rows[0][0] or 0)
            if found > LATEST:
                raise errors.ConfigError(
                    f"the journal schema is version {found}, newer than this mlgate "
                    f"({LATEST}); upgrade mlgate or point journal.url at another database")
            for version, statements in MIGRATIONS:
                if version <= found:
                    continue
                for statement in statements:
                    self._execute(statement.format(**self.types))
                self._execute("INSERT INTO mlgate_schema (version) VALUES (?)", (version,))
            return found

    def version(self) -> int:
        with self._lock:
            return int(self._execute("SELECT MAX(version) FROM mlgate_schema")[0][0] or 0)

    # -- writing ---------------------------------------------------------------
    def insert(self, records: Sequence[decisions.DecisionRecord],
               keys: Sequence[str | None] | None = None) -> int:
        """Write a batch of `Decision.record()` dicts in one transaction; returns how many
        were new. `keys` (one per record): a record whose key is in the journal already is
        skipped, with its policy and exception rows (see the module docstring).

        A handful of statements per batch (ids reserved at once, multi-row VALUES), never
        one per row: each statement hands the GIL back and forth with a busy event loop,
        and per-row statements would make a batch take longer than the flush interval.
        """
        if not records:
            return 0
        if keys is None:
            keys = [None] * len(records)
        rows: list[tuple[Any, ...]] = []
        with self._lock, self._transaction():
            ids = self._reserve_ids(len(records))
            for decision_id, record, key in zip(ids, records, keys, strict=True):
                when = float(record["time"])
                rows.append((
                    decision_id, when, int(when // 60), record["uid"], record["phase"],
                    record["operation"], record["group"], record["kind"], record["namespace"],
                    record["name"], record["user"], record["decision"], int(record["allowed"]),
                    int(record["dry_run"]), float(record["duration_ms"]),
                    orjson.dumps(record, default=str).decode(), key))
            new = self._insert_decisions(rows)
            results: list[tuple[Any, ...]] = []
            excepted: list[tuple[Any, ...]] = []
            for decision_id, record in zip(ids, records, strict=True):
                if decision_id not in new:
                    continue
                when = float(record["time"])
                results += [(decision_id, when, policy, outcome, mode)
                            for policy, outcome, mode in _policy_rows(record)]
                excepted += [(decision_id, when, exception, policy)
                             for exception, policy in sorted(_exception_rows(record))]
            self._insert_rows("policy_results", RESULT_COLUMNS, results)
            self._insert_rows("exception_results", EXCEPTION_COLUMNS, excepted)
            return len(new)

    def _insert_decisions(self, rows: list[tuple[Any, ...]]) -> set[int]:
        """Insert decision rows, skipping keys already there; the ids inserted."""
        row_marks = "(" + ", ".join("?" for _ in DECISION_COLUMNS) + ")"
        inserted: set[int] = set()
        for chunk in _chunks(rows, len(DECISION_COLUMNS)):
            found = self._execute(
                f"INSERT INTO decisions ({', '.join(DECISION_COLUMNS)}) VALUES "
                + ", ".join(row_marks for _ in chunk)
                + " ON CONFLICT (record_key) DO NOTHING RETURNING id",
                [value for row in chunk for value in row])
            inserted.update(int(row[0]) for row in found)
        return inserted

    def _insert_rows(self, table: str, columns: tuple[str, ...],
                     rows: list[tuple[Any, ...]]) -> None:
        row_marks = "(" + ", ".join("?" for _ in columns) + ")"
        for chunk in _chunks(rows, len(columns)):
            self._execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
                          + ", ".join(row_marks for _ in chunk),
                          [value for row in chunk for value in row])

    def prune(self, older_than: float, max_rows: int) -> int:
        """Delete decisions before `older_than` and beyond the newest `max_rows`."""
        with self._lock, self._transaction():
            rows = self._execute("SELECT id FROM decisions ORDER BY id DESC LIMIT 1 OFFSET ?",
                                 (max_rows,))
            floor_id = int(rows[0][0]) if rows else 0
            old = self._execute("SELECT MAX(id) FROM decisions WHERE time < ?", (older_than,))
            floor_id = max(floor_id, int(old[0][0] or 0))
            if not floor_id:
                return 0
            count = int(self._execute("SELECT COUNT(*) FROM decisions WHERE id <= ?",
                                      (floor_id,))[0][0])
            self._execute("DELETE FROM policy_results WHERE decision_id <= ?", (floor_id,))
            self._execute("DELETE FROM exception_results WHERE decision_id <= ?", (floor_id,))
            self._execute("DELETE FROM decisions WHERE id <= ?", (floor_id,))
            return count

    # -- reading decisions -----------------------------------------------------
    def _errors(self) -> tuple[type[Exception], ...]:
        """The driver's exceptions, translated to `Unavailable` by the readers."""
        return (sqlite3.Error,)

    def _query(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            with self._lock:
                return self._execute(query, params)
        except self._errors() as exc:
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise Unavailable(f"{self.where} did not answer: {first_line}") from exc

    def count(self, filters: Filters | None = None) -> int:
        where, params = (filters or Filters()).where()
        return int(self._query(f"SELECT COUNT(*) FROM decisions d{where}", params)[0][0])

    def uids(self) -> set[str]:
        return {str(row[0]) for row in self._query("SELECT uid FROM decisions")}

    def totals(self, filters: Filters) -> dict[str, int]:
        where, params = filters.where()
        rows = self._query(f"SELECT d.decision, COUNT(*) FROM decisions d{where} "
                           f"GROUP BY d.decision", params)
        totals = dict.fromkeys(DECISIONS, 0)
        totals.update({str(k): int(v) for k, v in rows})
        totals["total"] = sum(totals[k] for k in DECISIONS)
        return totals

    def per_policy(self, filters: Filters) -> list[dict[str, Any]]:
        """Per policy, how many decisions it denied, warned, audited, mutated, failed."""
        where, params = filters.where()
        rows = self._query(
            f"SELECT p.policy, p.outcome, p.mode, COUNT(DISTINCT p.decision_id), "
            f"COUNT(DISTINCT CASE WHEN d.allowed = 0 THEN p.decision_id END) "
            f"FROM policy_results p JOIN decisions d ON d.id = p.decision_id"
            f"{where} GROUP BY p.policy, p.outcome, p.mode", params)
        by_policy: dict[str, dict[str, Any]] = {}
        for policy, outcome, mode, count, in_denied in rows:
            if filters.policy and policy != filters.policy:
                continue
            entry = by_policy.setdefault(str(policy), {
                "policy": str(policy), "denied": 0, "warned": 0, "audited": 0, "errors": 0,
                "mutated": 0, "excepted": 0})
            count = int(count)
            if outcome == "mutation":
                entry["mutated"] += count
            elif outcome == "excepted":
                entry["excepted"] += count
            elif outcome == "error":
                entry["errors"] += count
            elif mode == "enforce":
                entry["denied"] += int(in_denied or 0)
                entry["warned"] += count - int(in_denied or 0)  # pre-existing: warned
            elif mode == "warn":
                entry["warned"] += count
            else:
                entry["audited"] += count
        return sorted(by_policy.values(), key=lambda e: (-e["denied"], -e["warned"],
                                                         e["policy"]))

    def grouped(self, column: str, filters: Filters, limit: int = 50) -> list[dict[str, Any]]:
        """Counts per decision for each value of `namespace` or `username`."""
        assert column in ("namespace", "username", "kind")
        where, params = filters.where()
        cases = ", ".join(f"SUM(CASE WHEN d.decision = '{name}' THEN 1 ELSE 0 END)"
                          for name in DECISIONS)
        rows = self._query(
            f"SELECT d.{column}, COUNT(*), {cases} FROM decisions d{where} GROUP BY d.{column} "
            f"ORDER BY 3 DESC, 2 DESC, 1 LIMIT ?", [*params, limit])
        key = "user" if column == "username" else column
        return [{key: str(row[0]), "total": int(row[1]),
                 **{name: int(row[2 + i] or 0) for i, name in enumerate(DECISIONS)}}
                for row in rows]

    def series(self, filters: Filters, bucket_minutes: int) -> list[dict[str, Any]]:
        """Decisions per time bucket (bucket start in UNIX seconds), oldest first."""
        where, params = filters.where()
        bucket = max(int(bucket_minutes), 1)
        cases = ", ".join(f"SUM(CASE WHEN d.decision = '{name}' THEN 1 ELSE 0 END)"
                          for name in DECISIONS)
        rows = self._query(f"SELECT d.minute / {bucket}, {cases} FROM decisions d{where} "
                           f"GROUP BY d.minute / {bucket} ORDER BY 1", params)
        return [{"start": int(row[0]) * bucket * 60,
                 **{name: int(row[1 + i] or 0) for i, name in enumerate(DECISIONS)}}
                for row in rows]

    def records(self, filters: Filters, limit: int, before_id: int | None = None,
                ) -> list[tuple[int, dict[str, Any]]]:
        """Newest first, with their ids (the cursor of `/audit/decisions`)."""
        where, params = filters.where()
        if before_id is not None:
            where += (" AND" if where else " WHERE") + " d.id < ?"
            params.append(before_id)
        rows = self._query(f"SELECT d.id, d.record FROM decisions d{where} "
                           f"ORDER BY d.id DESC LIMIT ?", [*params, limit])
        return [(int(row[0]), json.loads(row[1])) for row in rows]

    def exceptions_applied(self, filters: Filters) -> list[dict[str, Any]]:
        """Per exception and policy: the decisions it let through, and the latest one."""
        where, params = filters.where()
        rows = self._query(
            f"SELECT e.exception, e.policy, COUNT(DISTINCT e.decision_id), MAX(e.time) "
            f"FROM exception_results e JOIN decisions d ON d.id = e.decision_id{where} "
            f"GROUP BY e.exception, e.policy ORDER BY 3 DESC, 1, 2", params)
        return [{"exception": str(name), "policy": str(policy), "decisions": int(count),
                 "last": float(last)} for name, policy, count, last in rows]

    def excepted_records(self, filters: Filters, limit: int) -> list[dict[str, Any]]:
        """The newest decisions an exception changed, newest first."""
        where, params = filters.where()
        where += (" AND" if where else " WHERE") + (
            " EXISTS (SELECT 1 FROM exception_results e WHERE e.decision_id = d.id)")
        rows = self._query(f"SELECT d.record FROM decisions d{where} "
                           f"ORDER BY d.id DESC LIMIT ?", [*params, limit])
        return [json.loads(row[0]) for row in rows]

    # -- scan results ----------------------------------------------------------
    def upsert_scan(self, rows: Sequence[dict[str, Any]]) -> None:
        """Store the latest result per object (one page of a scan at a time)."""
        with self._lock, self._transaction():
            for row in rows:
                self._execute(
                    "INSERT INTO scan_results (grp, kind, namespace, name, api_version, "
                    "scanned_at, policies, violations, failing) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (grp, kind, namespace, name) DO UPDATE SET "
                    "api_version = excluded.api_version, scanned_at = excluded.scanned_at, "
                    "policies = excluded.policies, "
                    "violations = excluded.violations, failing = excluded.failing",
                    (row["group"], row["kind"], row["namespace"], row["name"],
                     row["api_version"], float(row["scanned_at"]), json.dumps(row["policies"]),
                     json.dumps(row["violations"]), int(bool(row["violations"]))))

    def forget_scan(self, group: str, kind: str, before: float) -> int:
        """Objects of a fully listed kind that the latest scan did not see are gone."""
        with self._lock, self._transaction():
            rows = self._execute("SELECT COUNT(*) FROM scan_results WHERE grp = ? AND kind = ? "
                                 "AND scanned_at < ?", (group, kind, before))
            self._execute("DELETE FROM scan_results WHERE grp = ? AND kind = ? AND "
                          "scanned_at < ?", (group, kind, before))
            return int(rows[0][0])

    def scan_results(self, namespace: str = "", kind: str = "", policy: str = "",
                     failing_only: bool = False, limit: int = 10_000) -> list[dict[str, Any]]:
        clauses, params = [], []
        for column, value in (("namespace", namespace), ("kind", kind)):
            if value:
                clauses.append(f"{column} = ?")
                params.append(value)
        if failing_only:
            clauses.append("failing = 1")
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = self._query(f"SELECT grp, kind, namespace, name, api_version, scanned_at, "
                           f"policies, violations FROM scan_results{where} "
                           f"ORDER BY namespace, kind, name LIMIT ?",
                           [*params, limit])
        results = []
        for grp, kind_, ns, name, api_version, scanned_at, policies, violations in rows:
            found = json.loads(violations)
            if policy:
                found = [v for v in found if v.get("policy") == policy]
                if failing_only and not found:
                    continue
            results.append({"group": grp, "kind": kind_, "namespace": ns, "name": name,
                            "api_version": api_version,
                            "scanned_at": float(scanned_at), "policies": json.loads(policies),
                            "violations": found})
        return results


class SqliteStore(Store):
    """SQLite in WAL mode: a committed batch survives the process being killed."""

    dialect = "sqlite"
    types = {"id": "INTEGER PRIMARY KEY AUTOINCREMENT", "float": "REAL"}

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.where = f"the journal (SQLite {self.path})"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(str(self.path), check_same_thread=False,
                                         isolation_level=None, timeout=10)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes
            self._conn.execute("PRAGMA busy_timeout=10000")
        except (OSError, sqlite3.Error) as exc:
            raise errors.ConfigError(f"journal: cannot open SQLite database {self.path}: {exc} "
                                     f"(check --data-dir or journal.url)") from exc

    def _execute(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(query, tuple(params)).fetchall()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _reserve_ids(self, count: int) -> list[int]:
        # BEGIN IMMEDIATE holds the write lock: no other writer can take these ids.
        rows = self._execute("SELECT seq FROM sqlite_sequence WHERE name = 'decisions'")
        top = int(rows[0][0]) if rows else 0
        top = max(top, int(self._execute("SELECT COALESCE(MAX(id), 0) FROM decisions")[0][0]))
        return list(range(top + 1, top + 1 + count))

    def journal_mode(self) -> str:
        with self._lock:
            return str(self._execute("PRAGMA journal_mode")[0][0])

    def integrity(self) -> str:
        with self._lock:
            return str(self._execute("PRAGMA integrity_check")[0][0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class PostgresStore(Store):
    """PostgreSQL, for several replicas writing one journal."""

    dialect = "postgresql"
    types = {"id": "BIGSERIAL PRIMARY KEY", "float": "DOUBLE PRECISION"}

    def __init__(self, url: str) -> None:
        super().__init__()
        import psycopg

        self._psycopg = psycopg
        self.url = url
        found = urlparse(url)
        self.where = (f"the journal (PostgreSQL at {found.hostname or 'localhost'}:"
                      f"{found.port or 5432})")
        try:
            self._conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            where = urlparse(url)
            raise errors.ConfigError(
                f"journal: cannot connect to PostgreSQL at {where.hostname or 'localhost'}:"
                f"{where.port or 5432}/{where.path.lstrip('/')}: {str(exc).strip()} "
                f"(check journal.url)") from exc

    def _sql(self, query: str) -> str:
        return query.replace("?", "%s")

    def _errors(self) -> tuple[type[Exception], ...]:
        return (self._psycopg.Error,)

    def _execute(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self._conn.closed:  # the server restarted: one fresh connection, then fail loudly
            self._conn = self._psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        cursor = self._conn.execute(self._sql(query), tuple(params))
        return list(cursor.fetchall()) if cursor.description else []

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        if self._conn.closed:
            self._conn = self._psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        with self._conn.transaction():
            yield

    def _migration_lock(self) -> None:
        self._execute("SELECT pg_advisory_xact_lock(7715301)")  # "mlgate" migrations

    def _reserve_ids(self, count: int) -> list[int]:
        # One round trip; replicas writing at once get distinct (interleaved) ids.
        rows = self._execute("SELECT nextval(pg_get_serial_sequence('decisions', 'id')) "
                             "FROM generate_series(1, ?)", (count,))
        return sorted(int(row[0]) for row in rows)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def open_store(url: str) -> Store:
    """`sqlite:///abs/path.db`, `sqlite:relative.db` or `postgresql://...`; migrated."""
    parsed = urlparse(url)
    store: Store
    if parsed.scheme == "sqlite":
        path = url[len("sqlite:"):]
        if path.startswith("///"):
            path = path[2:]
        elif path.startswith("//"):
            raise errors.ConfigError(f"journal.url {url!r}: write sqlite:///absolute/path.db "
                                     f"or sqlite:relative/path.db")
        if not path or path == "/":
            raise errors.ConfigError(f"journal.url {url!r} names no database file")
        store = SqliteStore(path)
    elif parsed.scheme in ("postgresql", "postgres"):
        store = PostgresStore(url)
    else:
        raise errors.ConfigError(f"journal.url {url!r}: the scheme must be sqlite or postgresql")
    try:
        store.migrate()
    except (sqlite3.Error, errors.ConfigError) as exc:
        store.close()
        if isinstance(exc, errors.ConfigError):
            raise
        raise errors.ConfigError(f"journal: cannot migrate the schema: {exc}") from exc
    except Exception as exc:  # psycopg errors
        store.close()
        raise errors.ConfigError(f"journal: cannot migrate the schema: {exc}") from exc
    return store
