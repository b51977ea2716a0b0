"""The audit endpoints' queries: a small pool of their own, with a limit that answers at once.

A report is read from the journal database, which may be slow, locked by another session
or down. Each query runs in a pool of `audit.maxQueries` threads that nothing else uses
(admission has its own, the journal writer its own), so a slow journal only ever holds
those threads. A reader who finds them all taken is refused at once (`Busy`, a 503 with
Retry-After) rather than queued behind the others, and a query still running after
`audit.queryTimeout` is answered 503 too; its thread stays counted until the query
returns, so the readers a slow database holds never exceed the limit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import TypeVar

from webhook.audit import store

T = TypeVar("T")


class Busy(store.Unavailable):
    """Every query thread is taken: the reader is refused at once (503 with Retry-After)."""


class Queries:
    """Runs journal reads in `limit` threads of their own; `run()` never waits for a thread."""

    def __init__(self, limit: int, timeout: float) -> None:
        self.limit = limit
        self.timeout = timeout
        self._slots = threading.BoundedSemaphore(limit)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            limit, thread_name_prefix="mlgate-audit-query")

    async def run(self, function: Callable[..., T], *args: object) -> T:
        """`function(*args)` in a query thread. Raises `Busy` when all `limit` are taken,
        `store.Unavailable` when it has not returned within `timeout`."""
        if not self._slots.acquire(blocking=False):
            raise Busy(f"audit.maxQueries ({self.limit}) report queries are already running "
                       f"(the journal database is slow to answer)")
        try:
            future = self._executor.submit(function, *args)
        except RuntimeError:  # shut down: the server is stopping
            self._slots.release()
            raise store.Unavailable("the server is stopping") from None
        # the slot is free when the query returns, not when its reader stops waiting
        future.add_done_callback(lambda _: self._slots.release())
        try:
            # on timeout, cancelling the wrapper leaves a running query alone
            return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout)
        except TimeoutError:
            raise store.Unavailable(
                f"the journal database did not answer within audit.queryTimeout "
                f"({self.timeout:g}s)") from None

    def close(self) -> None:
        """Stop taking queries; do not wait for those a stuck database holds."""
        self._executor.shutdown(wait=False, cancel_futures=True)
