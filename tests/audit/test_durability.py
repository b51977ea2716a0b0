"""The journal under load when the real server is killed (SIGKILL) or stopped (SIGTERM).

SIGKILL: the database opens cleanly afterwards and every decision answered more than
one flush interval before the kill is in it. SIGTERM: nothing answered is missing.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests import factories
from tests.audit import records
from tests.audit.load import Load
from tests.server import running_server
from webhook.audit import store

pytestmark = pytest.mark.integration

FLUSH = 0.2  # the default journal.flushInterval


def journal_uids(data_dir: Path) -> set[str]:
    db = store.open_store(f"sqlite:///{data_dir / 'journal.db'}")
    try:
        assert isinstance(db, store.SqliteStore)
        assert db.integrity() == "ok"
        return db.uids()
    finally:
        db.close()


def test_sigkill_under_load_loses_at_most_the_last_flush_interval(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running_server(tmp_path, "--data-dir", str(data)) as server:
        with Load(server, threads=3) as load:
            load.wait_for(1500)
            load.gone = True
            killed_at = time.monotonic()
            os.kill(server.process.pid, signal.SIGKILL)
            server.process.wait(10)
        answered = dict(load.answered)
    settled = {uid for uid, at in answered.items() if at < killed_at - FLUSH}
    assert len(settled) > 500, "the load did not run long enough before the kill"
    journaled = journal_uids(data)
    missing = settled - journaled
    assert not missing, f"{len(missing)} of {len(settled)} settled decisions lost: " \
                        f"{sorted(missing)[:5]}"
    # The same data directory serves again, and keeps what was there.
    with running_server(tmp_path, "--data-dir", str(data)) as server, server.client() as client:
        review = factories.admission_review(records.gpu_pod("after"), uid="after-restart")
        assert client.post("/validate", json=review).status_code == 200
    after = journal_uids(data)
    assert "after-restart" in after and settled <= after


def test_sigterm_under_load_journals_every_answered_decision(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running_server(tmp_path, "--data-dir", str(data)) as server:
        with Load(server, threads=3) as load:
            load.wait_for(1500)
            load.gone = True
            server.process.send_signal(signal.SIGTERM)
            # uvicorn re-raises the signal once its graceful shutdown is complete
            assert server.process.wait(30) in (0, -signal.SIGTERM), server.output()
        assert "journal closed" in server.output()
        answered = set(load.answered)
    journaled = journal_uids(data)
    missing = answered - journaled
    assert not missing, f"{len(missing)} of {len(answered)} answered decisions lost"
    assert len(answered) >= 1500
