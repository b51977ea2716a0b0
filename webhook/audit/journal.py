"""The decision journal: a bounded queue in front of the database, written off the hot path,
with a local buffer on disk for when the database cannot keep up.

`record()` is called on the event loop for every decision and never waits: it puts the
flat record on a bounded queue (`journal.queueSize`), or, when the queue is full, counts
and logs the drop. Nothing else runs on the event loop but the writer's bookkeeping: one
writer task takes what is queued every half flush interval (at once when a full batch
waits), and hands every database call to the journal's own thread (`mlgate-journal`, a
one-thread executor: the writer never waits in the loop's default executor, and one
database call runs at a time) and every disk operation of the buffer to a second thread
of its own (`mlgate-journal-spill`), so that the buffer takes decisions even while a
database call hangs.

Where a decision goes, oldest first (the order is kept throughout):

- the database is keeping up (the buffer is empty): queue -> one batch insert. A
  decision is durable within about one flush interval of its answer.
- the database refused a batch (down, unreachable, `database or disk is full`), or the
  call in flight has run for max(1 s, 5 flush intervals) (a locked table, a hung
  connection), or the queue is half full while it runs (the database is slower than
  admission): that batch and everything queued after it are appended to the local buffer
  (`webhook.audit.spill`, `<data dir>/journal-spill/`, at most `journal.spillBytes`), and
  from then on every new decision is appended there too, so that none overtakes an older
  one. Appends happen every half flush interval, so a process crash still loses at most
  about one flush interval; the buffer's fsync policy is in `spill`.
- meanwhile the writer replays the buffer into the database, oldest first, one batch at
  a time (retrying with a backoff up to 2 s while it fails); once the buffer is empty,
  decisions go straight to the database again.
- past the buffer's cap (or when the buffer's disk refuses writes and the queue is full
  as well) decisions are dropped, counted in `mlgate_journal_dropped_total` and logged.

No duplicates: each decision gets a key when the writer takes it from the queue
(a random prefix per process and a sequence number: unique per decision, where the
request uid is not, since the mutate and validate phases share it). The key travels with
the decision into the buffer, and the database keeps it under a unique index; an insert
skips keys it has (`store.insert`). So a batch that reached the database and the buffer
both (a call that was slow, not dead), a replay cut short by a crash after its commit,
and a restart that replays from a cursor saved a moment too early are journaled once.

`close()` (at shutdown, after uvicorn has finished the in-flight requests) drains the
queue into the database, or into the buffer when the database does not take it, replays
the buffer for at most `SHUTDOWN_REPLAY` seconds, then closes both; what is left in the
buffer is replayed by the next process that opens it (on start).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from webhook import decisions, metrics
from webhook.audit import settings as audit_settings
from webhook.audit import spill as spill_module
from webhook.audit import store as store_module

log = logging.getLogger("mlgate.journal")

PRUNE_EVERY = 60.0  # seconds between retention passes
LOG_EVERY = 10.0  # at most one line per kind of trouble per this many seconds
MAX_BACKOFF = 2.0  # seconds between attempts while the database refuses writes
SHUTDOWN_REPLAY = 10.0  # seconds of replaying the buffer at shutdown; the rest waits
CLOSE_WAIT = 10.0  # seconds close() waits for a database call that does not return

T = TypeVar("T")
Entry = spill_module.Entry

DIRECT, REPLAY, PRUNE = "direct", "replay", "prune"


class Journal:
    """Bounded async writer of `Decision.record()` dicts into a `Store`, with a buffer."""

    def __init__(self, store: store_module.Store, cfg: audit_settings.JournalSettings,
                 spill: spill_module.Spill | None = None) -> None:
        self.store = store
        self.settings = cfg
        self.spill = spill  # opened; None: no buffer (the queue only)
        self.queue: asyncio.Queue[decisions.DecisionRecord] = asyncio.Queue(cfg.queueSize)
        self.dropped = 0
        self.written = 0  # decisions inserted (each once)
        self.buffered = 0  # decisions that went through the buffer
        self.replayed = 0  # decisions the buffer gave back to the database
        self.stall = max(1.0, 5 * cfg.flushInterval)
        self._db = ThreadPoolExecutor(1, thread_name_prefix="mlgate-journal")
        self._disk = ThreadPoolExecutor(1, thread_name_prefix="mlgate-journal-spill")
        self._key_prefix = secrets.token_hex(8) + "-"
        self._sequence = 0
        # taken from the queue, keyed, in order: in flight (oldest), then held
        self._inflight: list[Entry] = []
        self._inflight_buffered = 0  # how many of those the buffer has too
        self._held: list[Entry] = []
        self._call: asyncio.Future[Any] | None = None
        self._call_kind = ""
        self._call_started = 0.0
        self._replay_to: spill_module.Position = (0, 0)
        self._failures = 0
        self._failed_stopping = False  # a write failed after close() began
        self._retry_at = 0.0
        self._disk_retry_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._stop_deadline = 0.0
        self._nudge = asyncio.Event()
        self._logged: dict[str, float] = {}
        self._last_prune = 0.0

    # -- the hot path ----------------------------------------------------------
    def record(self, record: decisions.DecisionRecord) -> bool:
        """Queue one decision; False (counted and logged) when the queue is full."""
        try:
            self.queue.put_nowait(record)
        except asyncio.QueueFull:
            self._drop(1, f"the journal's queue is full ({self.settings.queueSize}): dropped "
                          f"decision {record.get('uid')}. The writer is behind and "
                          f"{'its buffer refuses writes' if self.spill else 'has no buffer'}: "
                          f"raise journal.queueSize or journal.spillBytes, or use a faster "
                          f"journal.url")
            return False
        metrics.JOURNAL_QUEUE_DEPTH.set(self.queue.qsize())
        return True

    def _drop(self, count: int, why: str) -> None:
        self.dropped += count
        metrics.JOURNAL_DROPS.inc(count)
        if self._may_log("drop"):
            log.warning("%s; %d dropped so far", why, self.dropped)

    def _may_log(self, kind: str) -> bool:
        now = time.monotonic()
        if now - self._logged.get(kind, -LOG_EVERY) < LOG_EVERY:
            return False
        self._logged[kind] = now
        return True

    # -- the writer ------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="mlgate-journal-writer")

    def _take(self, limit: int) -> None:
        """Move up to `limit` queued decisions to `_held`, each with its key."""
        room = min(limit, self.settings.queueSize - len(self._held))
        while room > 0:
            try:
                record = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            self._sequence += 1
            self._held.append((f"{self._key_prefix}{self._sequence}", record))
            room -= 1

    async def _on(self, executor: ThreadPoolExecutor, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)

    def _begin(self, kind: str, fn: Callable[..., Any], *args: Any) -> None:
        self._call = asyncio.get_running_loop().run_in_executor(self._db, fn, *args)
        self._call.add_done_callback(lambda _: self._nudge.set())
        self._call_kind = kind
        self._call_started = time.monotonic()

    def _buffering(self) -> bool:
        """Everything goes through the buffer while it holds anything."""
        return self.spill is not None and self.spill.pending

    async def _run(self) -> None:
        gather = self.settings.flushInterval / 2
        while True:
            try:
                await self._cycle()
            except Exception:  # a bug, or a disk error not foreseen: never stop writing
                log.exception("journal: the writer failed; going on in %.1f s", MAX_BACKOFF)
                self._disk_retry_at = self._retry_at = time.monotonic() + MAX_BACKOFF
            if self._stopping and self._finished():
                return
            if self._ready():
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._nudge.wait(), gather)
            self._nudge.clear()

    def _ready(self) -> bool:
        """Something to do at once (no need to wait for a batch to form)."""
        if self._call is not None:
            return self._call.done()
        if self._stopping:
            waiting = bool(self.queue.qsize() or self._held)
        else:
            waiting = self.queue.qsize() >= self.settings.batchSize
        blocked = self._disk_retry_at if self._buffering() else self._retry_at
        return waiting and time.monotonic() >= blocked

    def _finished(self) -> bool:
        """At shutdown: everything is in the database, or in the buffer and the database
        refuses it, or the replay has had its time."""
        late = time.monotonic() >= self._stop_deadline
        if late and self._call is None and (self.queue.qsize() or self._held):
            # neither the database nor the buffer has taken these in SHUTDOWN_REPLAY
            self._take(self.settings.queueSize)
            self._drop(len(self._held), f"journal: giving up on {len(self._held)} decisions "
                                        f"at shutdown: neither the database nor the buffer "
                                        f"takes them")
            self._held = []
            return not self.queue.qsize()
        if self.queue.qsize() or self._held:
            return False
        if self._call is not None:  # a call that hangs: stop waiting once its batch is safe
            return late and self._inflight_buffered >= len(self._inflight)
        return not self._buffering() or late or self._failed_stopping

    async def _cycle(self) -> None:
        if self._call is not None and self._call.done():
            await self._settle()
        now = time.monotonic()
        if self._buffering():
            self._take(self.settings.queueSize)
            await self._to_buffer()
            if self._call is None and now >= self._retry_at:
                await self._replay()
        elif self._call is None:
            if not self._held:
                self._take(self.settings.batchSize)
            if self._held and now >= self._retry_at:
                if self._stopping and self.spill is None and self._failures >= 3:
                    self._drop(len(self._held), f"journal: giving up on {len(self._held)} "
                                                f"decisions at shutdown: the database does "
                                                f"not take them and there is no buffer")
                    self._held = []
                else:
                    self._inflight, self._held = self._held, []
                    self._inflight_buffered = 0
                    self._begin(DIRECT, self.store.insert, [r for _, r in self._inflight],
                                [k for k, _ in self._inflight])
        elif self.spill is not None and self._behind(now):
            if self._may_log("behind"):
                log.warning("journal: a %s call to %s has run for %.1f s with %d decisions "
                            "queued: buffering decisions in %s until it catches up",
                            self._call_kind, self.store.where, now - self._call_started,
                            self.queue.qsize(), self.spill.directory)
            self._take(self.settings.queueSize)
            await self._to_buffer()
        metrics.JOURNAL_QUEUE_DEPTH.set(self.queue.qsize())

    def _behind(self, now: float) -> bool:
        """The call in flight holds the writer up: buffer rather than wait for it."""
        waiting = (len(self._inflight) > self._inflight_buffered or self._held
                   or self.queue.qsize())
        return bool(waiting) and (now - self._call_started > self.stall
                                  or self.queue.qsize() >= self.settings.queueSize // 2)

    async def _settle(self) -> None:
        """Account for the database call that has just returned."""
        call, kind = self._call, self._call_kind
        assert call is not None
        self._call = None
        error = call.exception()
        if kind == PRUNE:
            if error is not None:
                log.error("journal: retention pass failed: %s", error)
            elif call.result():
                log.info("journal: retention removed %d decisions", call.result())
            return
        if error is None:
            inserted = int(call.result())
            self.written += inserted
            if self._failures:
                log.info("journal: %s answers again", self.store.where)
            self._failures = 0
            self._retry_at = 0.0
            if kind == DIRECT:
                self._inflight, self._inflight_buffered = [], 0
            else:
                self.replayed += inserted
                assert self.spill is not None
                try:
                    await self._disk_call(self.spill.commit, self._replay_to)
                except OSError as exc:  # the cursor stays: the batch is replayed (skipped) again
                    if self._may_log("disk"):
                        log.error("journal: cannot move the cursor of %s: %s",
                                  self.spill.directory, exc)
                    self._disk_retry_at = time.monotonic() + MAX_BACKOFF
                if not self.spill.pending:
                    log.info("journal: the buffer is replayed (%d decisions from it so far)",
                             self.replayed)
            self._maybe_prune()
            return
        self._failures += 1
        self._failed_stopping = self._stopping
        self._retry_at = time.monotonic() + min(
            self.settings.flushInterval * 2 ** min(self._failures - 1, 8), MAX_BACKOFF)
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        if kind == DIRECT:
            # what the buffer does not have yet goes back before what is held
            unbuffered = self._inflight[self._inflight_buffered:]
            self._held = unbuffered + self._held
            self._inflight, self._inflight_buffered = [], 0
            if self.spill is not None:
                if self._may_log("write"):
                    log.error("journal: %s did not take %d decisions (%s): buffering them in "
                              "%s until it does", self.store.where, len(unbuffered),
                              first_line, self.spill.directory)
                await self._to_buffer()
            elif self._may_log("write"):
                log.error("journal: writing %d decisions failed (attempt %d), retrying: %s",
                          len(unbuffered), self._failures, first_line)
        elif self._may_log("write"):
            log.error("journal: replaying the buffer into %s failed (attempt %d, %d bytes "
                      "waiting), retrying: %s", self.store.where, self._failures,
                      self.spill.pending_bytes if self.spill else 0, first_line)

    async def _disk_call(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await self._on(self._disk, fn, *args)
        finally:
            if self.spill is not None:
                metrics.JOURNAL_BUFFER_BYTES.set(self.spill.size)

    async def _to_buffer(self) -> None:
        """Append the batch in flight (if not there yet) and what is held to the buffer."""
        assert self.spill is not None
        if time.monotonic() < self._disk_retry_at:
            return
        pending = self._inflight[self._inflight_buffered:] + self._held
        if not pending:
            return
        try:
            accepted = await self._disk_call(self.spill.append, pending)
        except spill_module.AppendFailed as exc:
            accepted = exc.written
            self._disk_retry_at = time.monotonic() + MAX_BACKOFF
            if self._may_log("disk"):
                log.error("journal: the buffer %s refuses writes (%s): %d decisions wait in "
                          "memory, and are dropped once journal.queueSize is full too",
                          self.spill.directory, exc.cause, len(pending) - accepted)
            self._placed(accepted, over_cap=False)
            return
        self._placed(accepted, over_cap=True)

    def _placed(self, accepted: int, over_cap: bool) -> None:
        """The first `accepted` of (the in-flight batch's rest, then held) are in the
        buffer; with `over_cap`, the rest did not fit: held is dropped (the batch in
        flight is still the database's, and comes back here if its call fails)."""
        self.buffered += accepted
        from_inflight = min(accepted, len(self._inflight) - self._inflight_buffered)
        self._inflight_buffered += from_inflight
        del self._held[:accepted - from_inflight]
        if over_cap and self._held:
            over = len(self._held)
            self._held = []
            assert self.spill is not None
            self._drop(over, f"journal: the buffer {self.spill.directory} is full "
                             f"(journal.spillBytes={self.settings.spillBytes}, the database "
                             f"not answering): dropped {over} decisions")

    async def _replay(self) -> None:
        assert self.spill is not None
        if time.monotonic() < self._disk_retry_at:
            return
        try:
            entries, position = await self._disk_call(self.spill.read, self.settings.batchSize)
            if not entries:  # damaged lines only: step over them
                await self._disk_call(self.spill.commit, position)
                return
        except OSError as exc:
            if self._may_log("disk"):
                log.error("journal: cannot read the buffer %s: %s", self.spill.directory, exc)
            self._disk_retry_at = time.monotonic() + MAX_BACKOFF
            return
        self._replay_to = position
        self._begin(REPLAY, self.store.insert, [r for _, r in entries], [k for k, _ in entries])

    def _maybe_prune(self) -> None:
        now = time.monotonic()
        if self._call is not None or now - self._last_prune < PRUNE_EVERY or self._stopping:
            return
        self._last_prune = now
        self._begin(PRUNE, self.store.prune, time.time() - self.settings.retention,
                    self.settings.maxRows)

    async def flush(self) -> None:
        """Return once everything queued now is in the database or the buffer (tests); with
        no buffer and a database that refuses writes, that is never."""
        running = self._task is not None and not self._task.done()
        while self.queue.qsize() or self._held or self._call is not None:
            if running:  # the writer does the work: wake it and wait
                self._nudge.set()
                await asyncio.sleep(self.settings.flushInterval / 4)
                continue
            await self._cycle()
            if self._call is not None:
                await asyncio.wait({self._call})
            elif self.queue.qsize() or self._held:
                await asyncio.sleep(max(self._retry_at - time.monotonic(), 0.01))
        metrics.JOURNAL_QUEUE_DEPTH.set(self.queue.qsize())

    async def close(self) -> None:
        """Stop the writer once everything queued is in the database (or the buffer);
        close the database and the buffer."""
        self._stopping = True
        self._stop_deadline = time.monotonic() + SHUTDOWN_REPLAY
        self._retry_at = 0.0  # one more attempt at once, whatever the backoff
        self._nudge.set()
        if self._task is None:  # the writer never started
            self._task = asyncio.create_task(self._run(), name="mlgate-journal-writer")
        await self._task
        if self.spill is not None and self.spill.pending:
            log.warning("journal: %d bytes of decisions stay in %s: the next start replays "
                        "them", self.spill.pending_bytes, self.spill.directory)
        await self._shutdown()
        log.info("journal closed: %d decisions written (%d through the buffer), %d dropped",
                 self.written, self.replayed, self.dropped)

    async def _shutdown(self) -> None:
        loop = asyncio.get_running_loop()
        closing = loop.run_in_executor(self._db, self.store.close)
        try:
            await asyncio.wait_for(asyncio.shield(closing), CLOSE_WAIT)
        except TimeoutError:
            log.error("journal: %s did not answer within %.0f s at shutdown; closing "
                      "without it", self.store.where, CLOSE_WAIT)
        if self.spill is not None:
            await self._on(self._disk, self.spill.close)
        self._db.shutdown(wait=False)
        self._disk.shutdown(wait=False)


def open_journal(cfg: audit_settings.JournalSettings, data_dir: str | Path | None) -> Journal:
    """Open (and migrate) the configured database and the buffer; a `ConfigError` names
    the problem. Blocking: call it from a thread."""
    store = store_module.open_store(cfg.resolved_url(data_dir))
    buffer = None
    directory = cfg.spill_dir(data_dir)
    if directory is not None:
        buffer = spill_module.Spill(directory, cfg.spillBytes)
        try:
            buffer.open()
        except OSError as exc:
            log.error("journal: cannot open the buffer in %s (%s): running without it, "
                      "decisions the database cannot take now are dropped once the queue "
                      "is full", directory, exc)
            buffer = None
    return Journal(store, cfg, buffer)
