"""The journal's local buffer: decisions the database cannot take now, kept on disk in order.

While the journal's database is down, full or slower than admission, the writer appends
the decisions it holds here instead of dropping them, and replays them from here, oldest
first, once the database answers again (`webhook.audit.journal` decides when). Every
method blocks on the disk: the journal calls them from its own buffer thread, never from
the event loop.

On disk, in `<data dir>/journal-spill/<slot>/`:

- segments `000000000001.jsonl`, `000000000002.jsonl`, ...: one decision per line,
  `orjson.dumps([key, record])` and a newline (JSON never holds a raw newline, so a line
  is a record; `jq` reads them). A segment is rotated at `segment_bytes`, and deleted
  once every record in it has been replayed. The sum of the segments' sizes is capped at
  `cap` bytes (`journal.spillBytes`): what does not fit is refused, and the journal counts
  it as dropped.
- `cursor`: `<segment> <offset>` of the first record not yet replayed, replaced
  atomically (write, then rename) after each replayed batch is committed. The cursor may
  lag behind the database (a crash between the commit and the rename): the next start
  replays those records again, and the database skips them, since every record carries
  a key that is unique per decision (`journal.py` says how).
- `lock`: an exclusive `flock` that the process holding the slot keeps while it runs. With
  `mlgate serve --workers N` (or two processes on one data dir) each process takes the
  first free slot; a process that starts later takes a slot left by a process that is
  gone, and replays what it left there (a slot above those taken, left when fewer
  processes run than before, is only named in a warning).

Durability (the fsync policy): each append is one `write(2)` of whole lines on an
O_APPEND descriptor, done before the writer goes on, so a decision in the buffer survives
the process being killed (SIGKILL, OOM) at once. The segment is `fsync`ed when at least
`SYNC_EVERY` (1 s) has passed since the last one, when it is rotated, and at `close()`:
a crash of the whole machine (power, kernel) loses at most the last second of appends,
as the SQLite journal (`synchronous=NORMAL`) may. A write cut short by a crash leaves a
last line without its newline: `open()` cuts it off (that one decision is lost, and
counted in `torn`). A line that does not parse (a damaged disk) is skipped and counted.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("mlgate.journal")

SYNC_EVERY = 1.0  # seconds between fsyncs of the segment being appended to
MAX_SLOTS = 256
SUFFIX = ".jsonl"

Entry = tuple[str, Any]  # (key, decision record: a `DecisionRecord`)
Position = tuple[int, int]  # (segment number, byte offset)


class AppendFailed(Exception):
    """The disk refused an append (full, read-only): the first `written` entries are in."""

    def __init__(self, written: int, cause: OSError) -> None:
        super().__init__(str(cause))
        self.written = written
        self.cause = cause


class Spill:
    """One slot of the buffer, held by this process (see the module docstring).

    Invariant: every live segment from the cursor's on holds records not yet replayed
    (the segments before the cursor's are deleted), so `segments[0] == cursor[0]`.
    """

    def __init__(self, directory: str | Path, cap: int, segment_bytes: int | None = None) -> None:
        self.root = Path(directory)
        self.cap = cap
        self.segment_bytes = segment_bytes or max(min(16 << 20, cap // 8), 64 << 10)
        self.directory = self.root  # the slot, once open
        self.sizes: dict[int, int] = {}  # live segment -> bytes
        self.cursor: Position = (1, 0)
        self.torn = 0  # decisions cut off by a crash in the middle of a write
        self.damaged = 0  # lines that did not parse
        self._lock_fd: int | None = None
        self._append_fd: int | None = None
        self._append_segment = 0
        self._last_sync = 0.0
        self._dirty = False

    # -- opening -----------------------------------------------------------------
    def open(self) -> None:
        """Take a free slot, cut a torn last line, read the cursor. Raises OSError."""
        self.root.mkdir(parents=True, exist_ok=True)
        for slot in range(MAX_SLOTS):
            directory = self.root / str(slot)
            directory.mkdir(exist_ok=True)
            fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                    continue  # another process holds this slot
                raise
            self._lock_fd = fd
            self.directory = directory
            break
        else:
            raise OSError(f"all {MAX_SLOTS} slots of {self.root} are held by other processes")
        self._warn_of_orphans()
        found = sorted(int(p.name[:-len(SUFFIX)]) for p in self.directory.iterdir()
                       if p.name.endswith(SUFFIX) and p.name[:-len(SUFFIX)].isdigit())
        if found:
            self._cut_torn_tail(found[-1])
        self.sizes = {n: self._path(n).stat().st_size for n in found}
        self.cursor = self._read_cursor()
        for n in [n for n in self.sizes if n < self.cursor[0]]:
            self._remove(n)  # replayed before a crash that left them
        if self.pending:
            log.warning("journal: %s holds %d bytes of decisions not yet in the database "
                        "(left by an earlier run): replaying them", self.directory,
                        self.pending_bytes)
        elif self.sizes:
            self.commit(self.end)

    def _warn_of_orphans(self) -> None:
        """Slots above this one with decisions and no process: left by more processes than
        run now (`--workers` lowered). Only a process that takes the slot replays them."""
        for directory in sorted(self.root.iterdir()):
            if not directory.name.isdigit() or directory == self.directory:
                continue
            if not any(p.name.endswith(SUFFIX) and p.stat().st_size
                       for p in directory.iterdir()):
                continue
            try:
                fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # held: its process replays it
            finally:
                os.close(fd)
            log.warning("journal: %s holds decisions of a process that is gone; they are "
                        "replayed once as many processes run on this data dir as then "
                        "(one slot each)", directory)

    def _path(self, segment: int) -> Path:
        return self.directory / f"{segment:012d}{SUFFIX}"

    def _cut_torn_tail(self, segment: int) -> None:
        path = self._path(segment)
        with open(path, "rb+") as f:
            size = f.seek(0, os.SEEK_END)
            keep = size
            while keep > 0:  # back to the last newline
                start = max(keep - 65536, 0)
                f.seek(start)
                newline = f.read(keep - start).rfind(b"\n")
                if newline >= 0:
                    keep = start + newline + 1
                    break
                keep = start
            if keep != size:
                f.truncate(keep)
                self.torn += 1
                log.error("journal: %s ended in a record cut short by a crash (%d bytes): "
                          "cut off", path, size - keep)

    def _read_cursor(self) -> Position:
        segments = sorted(self.sizes)
        if not segments:
            return (1, 0)
        try:
            segment_text, offset_text = (self.directory / "cursor").read_text().split()
            segment, offset = int(segment_text), int(offset_text)
        except (OSError, ValueError):
            return (segments[0], 0)  # replay all: what is in the database already is skipped
        if segment not in self.sizes:
            return (segments[0], 0)
        return (segment, max(min(offset, self.sizes[segment]), 0))

    # -- state -------------------------------------------------------------------
    @property
    def size(self) -> int:
        """Bytes in the buffer's files (what the cap counts)."""
        return sum(self.sizes.values())

    @property
    def pending_bytes(self) -> int:
        """Bytes of records not replayed yet."""
        return self.size - self.cursor[1] if self.sizes else 0

    @property
    def pending(self) -> bool:
        return self.pending_bytes > 0

    @property
    def end(self) -> Position:
        if not self.sizes:
            return self.cursor
        last = max(self.sizes)
        return (last, self.sizes[last])

    # -- appending ---------------------------------------------------------------
    def append(self, entries: Sequence[Entry]) -> int:
        """Append entries in order, as many as fit under the cap; returns how many (the
        rest did not fit). Raises `AppendFailed` when the disk refuses a write."""
        lines = [orjson.dumps(entry, default=str) + b"\n" for entry in entries]
        accepted = 0
        room = self.cap - self.size
        for line in lines:
            if len(line) > room:
                break
            room -= len(line)
            accepted += 1
        done = 0
        try:
            while done < accepted:
                fd, segment = self._appender()
                room = self.segment_bytes - self.sizes[segment]
                end, taken = done, 0
                while end < accepted and (end == done or taken + len(lines[end]) <= room):
                    taken += len(lines[end])
                    end += 1
                self._write_all(fd, b"".join(lines[done:end]))
                self.sizes[segment] += taken
                self._dirty = True
                done = end
                if self.sizes[segment] >= self.segment_bytes:
                    self._close_appender(sync=True)
        except OSError as exc:
            raise AppendFailed(done, exc) from exc
        try:
            self.sync()
        except OSError as exc:  # written, in the page cache: it survives a process crash
            log.error("journal: fsync of %s failed: %s", self.directory, exc)
        return accepted

    def _appender(self) -> tuple[int, int]:
        if self._append_fd is None:
            if not self.sizes:
                segment = self.cursor[0]  # empty: the cursor waits at the next segment
                self.cursor = (segment, 0)
            else:
                segment = max(self.sizes)
                if self.sizes[segment] >= self.segment_bytes:
                    segment += 1
            self._append_fd = os.open(self._path(segment),
                                      os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._append_segment = segment
            self.sizes.setdefault(segment, 0)
        return self._append_fd, self._append_segment

    def _write_all(self, fd: int, data: bytes) -> None:
        segment = self._append_segment
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except OSError:
            with contextlib.suppress(OSError):  # leave no partial line behind
                os.ftruncate(fd, self.sizes[segment])
            raise

    def _close_appender(self, sync: bool) -> None:
        if self._append_fd is None:
            return
        if sync:
            with contextlib.suppress(OSError):
                os.fsync(self._append_fd)
            self._last_sync = time.monotonic()
        os.close(self._append_fd)
        self._append_fd = None
        self._dirty = False

    def sync(self, force: bool = False) -> None:
        """fsync the segment being appended to, at most every SYNC_EVERY unless forced."""
        if self._append_fd is None or not self._dirty:
            return
        now = time.monotonic()
        if force or now - self._last_sync >= SYNC_EVERY:
            os.fsync(self._append_fd)
            self._dirty = False
            self._last_sync = now

    # -- replaying ---------------------------------------------------------------
    def read(self, limit: int) -> tuple[list[Entry], Position]:
        """Up to `limit` entries from the cursor on, and the position after them."""
        entries: list[Entry] = []
        segment, offset = self.cursor
        while len(entries) < limit and segment in self.sizes:
            if offset < self.sizes[segment]:
                with open(self._path(segment), "rb") as f:
                    f.seek(offset)
                    while len(entries) < limit and offset < self.sizes[segment]:
                        line = f.readline()
                        if not line.endswith(b"\n"):
                            break
                        offset += len(line)
                        try:
                            key, record = orjson.loads(line)
                            entries.append((str(key), record))
                        except (orjson.JSONDecodeError, TypeError, ValueError):
                            self.damaged += 1
                            log.error("journal: skipped a damaged line in %s at byte %d",
                                      self._path(segment), offset - len(line))
            if len(entries) >= limit:
                break
            later = [n for n in sorted(self.sizes) if n > segment]
            if not later:
                break
            segment, offset = later[0], 0
        return entries, (segment, offset)

    def commit(self, position: Position) -> None:
        """Everything before `position` is in the database: move the cursor there, delete
        the segments it has left, and empty the buffer when nothing is left after it."""
        segment, offset = position
        for n in [n for n in self.sizes if n < segment]:
            self._remove(n)
        if list(self.sizes) == [segment] and offset >= self.sizes[segment]:
            self._remove(segment)  # drained: the next append starts a fresh segment
            self.cursor = (segment + 1, 0)
        else:
            self.cursor = (segment, offset)
        self._write_cursor()

    def _remove(self, segment: int) -> None:
        if segment == self._append_segment:
            self._close_appender(sync=False)
        with contextlib.suppress(FileNotFoundError):
            self._path(segment).unlink()
        self.sizes.pop(segment, None)

    def _write_cursor(self) -> None:
        temporary = self.directory / "cursor.tmp"
        temporary.write_text(f"{self.cursor[0]} {self.cursor[1]}\n")
        os.replace(temporary, self.directory / "cursor")

    def close(self) -> None:
        self._close_appender(sync=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None
