"""Two replicas of `mlgate serve` (real HTTPS) sharing one PostgreSQL journal under load;
one is SIGKILLed (issue 12, point 8).

The other keeps answering, with no error, and every decision answered by either more
than one flush interval before the kill is in the journal, once. The answered uids are
recorded client-side with the time of their answer.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psycopg
import pytest

from tests.audit import conftest
from tests.audit.load import Load
from tests.server import running_server

pytestmark = pytest.mark.integration

FLUSH = 0.2  # the default journal.flushInterval


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
