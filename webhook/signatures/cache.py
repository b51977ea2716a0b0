"""Bounded TTL caches and coalescing of identical lookups.

Registry answers are cached so that a warm /validate never leaves the process: tag ->
digest for a short while (tags move), verified (digest, rule) results longer (a digest
never changes), failures briefly (a flood of pods with one unsigned image must not
hammer the registry). Identical lookups in flight at the same time share one task.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")
T = TypeVar("T")
MISSING = object()


class TTLCache(Generic[V]):
    """A mapping whose entries expire after `ttl` seconds; the least recently used go
    first when it holds `max_entries`."""

    def __init__(self, max_entries: int, ttl: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries <= 0:
            raise ValueError("max_entries must be positive")
        self.max_entries = max_entries
        self.ttl = ttl
        self.clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()

    def get(self, key: Hashable) -> V | object:
        """The value, or MISSING when absent or expired."""
        entry = self._entries.get(key)
        if entry is None:
            return MISSING
        expires, value = entry
        if expires <= self.clock():
            del self._entries[key]
            return MISSING
        self._entries.move_to_end(key)
        return value

    def put(self, key: Hashable, value: V, ttl: float | None = None) -> None:
        self._entries[key] = (self.clock() + (self.ttl if ttl is None else ttl), value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def pop(self, key: Hashable) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class Coalescer:
    """Runs one task per key at a time; callers that arrive meanwhile await the same task.

    Each caller waits at most its own `timeout`; the task itself is shielded, so a caller
    giving up does not cancel the work others wait for.
    """

    def __init__(self) -> None:
        self._running: dict[Hashable, asyncio.Task[object]] = {}
        self.joined = 0  # how many callers shared a task started by another (for tests)

    async def run(self, key: Hashable, work: Callable[[], Awaitable[T]],
                  timeout: float) -> T:
        loop = asyncio.get_running_loop()
        task = self._running.get(key)
        if task is not None and (task.done() or task.get_loop() is not loop):
            task = None
        if task is None:
            task = loop.create_task(work())  # type: ignore[arg-type]
            self._running[key] = task
            task.add_done_callback(functools.partial(self._forget, key))
        else:
            self.joined += 1
        result = await asyncio.wait_for(asyncio.shield(task), timeout)
        return result  # type: ignore[return-value]

    async def settle(self, cancel: bool = False) -> None:
        """Await (or cancel) the tasks of the running loop: shutdown, tests."""
        loop = asyncio.get_running_loop()
        tasks = [t for t in self._running.values() if t.get_loop() is loop]
        for task in tasks if cancel else ():
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _forget(self, key: Hashable, task: asyncio.Task[object]) -> None:
        if self._running.get(key) is task:
            del self._running[key]
        if not task.cancelled():
            task.exception()  # retrieved: a failure nobody awaited is not logged as lost

    def __len__(self) -> int:
        return len(self._running)
