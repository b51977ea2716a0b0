"""The decision journal: a bounded queue in front of the database, written off the hot path.

`record()` is called on the event loop for every decision and never waits: it puts the
flat record on a bounded queue, or, when the queue is full, counts and logs the drop (the
admission answer is never slowed down by the database). One writer task takes what is
queued every half flush interval (at once when a full batch waits) and commits it in a
worker thread; a decision is therefore durable within about one flush interval of its answer, and
a crash loses at most that. `close()` (at shutdown, after uvicorn has finished the
in-flight requests) drains the whole queue before closing the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from webhook import decisions, metrics
from webhook.audit import settings as audit_settings
from webhook.audit import store as store_module

log = logging.getLogger("mlgate.journal")

PRUNE_EVERY = 60.0  # seconds between retention passes
DROP_LOG_EVERY = 10.0  # at most one "dropped" log line per this many seconds


class Journal:
    """Bounded async writer of `Decision.record()` dicts into a `Store`."""

    def __init__(self, store: store_module.Store, cfg: audit_settings.JournalSettings) -> None:
        self.store = store
        self.settings = cfg
        self.queue: asyncio.Queue[decisions.DecisionRecord] = asyncio.Queue(cfg.queueSize)
        self.dropped = 0
        self.written = 0
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._wake = asyncio.Event()
        self._last_drop_log = 0.0
        self._last_prune = 0.0

    # -- the hot path ----------------------------------------------------------
    def record(self, record: decisions.DecisionRecord) -> bool:
        """Queue one decision; False (counted and logged) when the queue is full."""
        try:
            self.queue.put_nowait(record)
        except asyncio.QueueFull:
            self.dropped += 1
            metrics.JOURNAL_DROPS.inc()
            now = time.monotonic()
            if now - self._last_drop_log >= DROP_LOG_EVERY:
                self._last_drop_log = now
                log.warning("journal queue full (%d): dropped decision %s; %d dropped so far. "
                            "The database is slower than the admission rate: raise "
                            "journal.queueSize or use a faster journal.url",
                            self.settings.queueSize, record.get("uid"), self.dropped)
            return False
        metrics.JOURNAL_QUEUE_DEPTH.set(self.queue.qsize())
        return True

    # -- the writer ------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="mlgate-journal-writer")

    def _take(self, limit: int) -> list[decisions.DecisionRecord]:
        batch: list[decisions.DecisionRecord] = []
        while len(batch) < limit:
            try:
                batch.append(self.queue.get_nowait())
            except asyncio.QueueEmpty:
                break
        return batch

    async def _write(self, batch: list[decisions.DecisionRecord]) -> None:
        attempts = 0
        while True:
            try:
                await asyncio.to_thread(self.store.insert, batch)
                self.written += len(batch)
                return
            except Exception as exc:
                attempts += 1
                if self._stopping and attempts >= 3:
                    log.error("journal: giving up on %d decisions at shutdown: %s",
                              len(batch), exc)
                    metrics.JOURNAL_DROPS.inc(len(batch))
                    self.dropped += len(batch)
                    return
                log.error("journal: writing %d decisions failed (attempt %d), retrying: %s",
                          len(batch), attempts, exc)
                await asyncio.sleep(min(self.settings.flushInterval * attempts, 5.0))

    async def _run(self) -> None:
        gather = self.settings.flushInterval / 2
        while True:
            if not self._stopping and self.queue.qsize() < self.settings.batchSize:
                with contextlib.suppress(TimeoutError):  # let a batch form, or wake to stop
                    await asyncio.wait_for(self._wake.wait(), gather)
            batch = self._take(self.settings.batchSize)
            metrics.JOURNAL_QUEUE_DEPTH.set(self.queue.qsize())
            if batch:
                await self._write(batch)
                await self._maybe_prune()
            elif self._stopping:
                return

    async def _maybe_prune(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_prune < PRUNE_EVERY:
            return
        self._last_prune = now
        try:
            removed = await asyncio.to_thread(self.store.prune,
                                              time.time() - self.settings.retention,
                                              self.settings.maxRows)
        except Exception as exc:
            log.error("journal: retention pass failed: %s", exc)
            return
        if removed:
            log.info("journal: retention removed %d decisions", removed)

    async def flush(self) -> None:
        """Write everything queued now (tests and shutdown)."""
        while not self.queue.empty():
            await self._write(self._take(self.settings.batchSize))
        metrics.JOURNAL_QUEUE_DEPTH.set(0)

    async def close(self) -> None:
        """Stop the writer once it has written everything queued; close the database."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
        await self.flush()  # when the writer never started
        await asyncio.to_thread(self.store.close)
        log.info("journal closed: %d decisions written, %d dropped", self.written, self.dropped)


def open_journal(cfg: audit_settings.JournalSettings, data_dir: str | None) -> Journal:
    """Open (and migrate) the configured database; a `ConfigError` names the problem."""
    journal = Journal(store_module.open_store(cfg.resolved_url(data_dir)), cfg)
    return journal
