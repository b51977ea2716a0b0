"""Kubernetes Events (`events.k8s.io/v1`) for denials and scan findings, off the admission path.

- `AdmissionDenied` (Warning): a request mlgate denied. The denied object does not exist, so
  the Event regards the Namespace it was sent to and lives there (`kubectl get events -n
  <ns>`); the object's kind and name are in the note and in `related`. The API server
  refuses an Event in a namespace that regards a cluster-scoped object with an empty
  namespace, so `regarding.namespace` carries the namespace's own name. Dry-run requests
  emit nothing.
- `PolicyViolation` (Warning): an object the cluster scan found violating policies, on the
  object itself (with its uid, so `kubectl describe` shows it).

`observe` (a decision observer) and `found` (a scan hook) only put an item on a bounded
queue; one task writes. A repeat of the same event (same namespace, object, reason and
note) within `dedupWindow` is folded into the first Event's `series.count`, written at most
every `SERIES_EVERY` seconds; new Events are limited per namespace by a token bucket
(`burst`, then `perMinute`). So a crash-looping controller whose pods are denied makes one
Event whose count grows, and many distinct denials in one namespace cannot flood the API
server. What is limited or dropped is counted in `mlgate_events_total`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import secrets
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from webhook import decisions, metrics
from webhook.audit import settings as audit_settings
from webhook.audit.kube import ApiError

log = logging.getLogger("mlgate.events")

DENIED = "AdmissionDenied"
VIOLATION = "PolicyViolation"
CONTROLLER = "mlgate.io/webhook"
NOTE_LIMIT = 1024  # bytes, the API server's limit
SERIES_EVERY = 10.0  # seconds between two writes of one Event's series
REMEMBERED = 4096  # distinct events kept for dedup
LOG_EVERY = 60.0


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _note(text: str) -> str:
    data = text.encode()
    if len(data) <= NOTE_LIMIT:
        return text
    return data[:NOTE_LIMIT - 3].decode(errors="ignore") + "..."


@dataclass(frozen=True)
class Item:
    """One event to emit: where it lives, what it regards, why."""

    namespace: str
    regarding: tuple[tuple[str, str], ...]  # an ObjectReference as sorted pairs
    reason: str
    action: str
    note: str
    related: tuple[tuple[str, str], ...] = ()

    def key(self) -> tuple[str, tuple[tuple[str, str], ...], str, str]:
        return self.namespace, self.regarding, self.reason, self.note


def _reference(**fields: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in fields.items() if v))


def denial(decision: decisions.Decision) -> Item | None:
    """The AdmissionDenied item of a decision, or None (allowed, dry run)."""
    if decision.allowed or decision.dry_run:
        return None
    name = decision.name or "(unnamed)"
    where = f"{decision.namespace}/{name}" if decision.namespace else name
    policies = sorted({f.policy for f in decision.findings
                       if f.mode == "enforce" and not f.exception})
    note = _note(f"{decision.kind} {where} {decision.operation} by {decision.user} denied"
                 f"{' by ' + ', '.join(policies) if policies else ''}: {decision.message}")
    # The decision has no version: the core group's is v1, other groups' stay unset.
    related = _reference(apiVersion="" if decision.group else "v1", kind=decision.kind,
                         name=decision.name, namespace=decision.namespace)
    if not decision.namespace:  # a cluster-scoped object: the Event regards it, in default
        return Item("default", related, DENIED, "Admit", note)
    return Item(decision.namespace,
                _reference(apiVersion="v1", kind="Namespace", name=decision.namespace,
                           namespace=decision.namespace),
                DENIED, "Admit", note, related)


def violation(row: dict[str, Any]) -> Item:
    """The PolicyViolation item of a failing scan row."""
    policies = sorted({v["policy"] for v in row["violations"]})
    note = _note(f"violates {', '.join(policies)}: "
                 + "\n".join(v["message"] for v in row["violations"]))
    return Item(row["namespace"] or "default",
                _reference(apiVersion=row["api_version"], kind=row["kind"], name=row["name"],
                           namespace=row["namespace"], uid=row.get("uid", "")),
                VIOLATION, "Scan", note)


@dataclass
class Seen:
    name: str  # the Event's metadata.name
    item: Item
    first: float
    count: int = 1
    written: int = 1  # the count the API server has
    last_write: float = 0.0
    last_seen: str = ""


class Bucket:
    def __init__(self, burst: int, per_minute: float, now: float) -> None:
        self.tokens = float(burst)
        self.stamp = now

    def take(self, burst: int, per_minute: float, now: float) -> bool:
        self.tokens = min(float(burst), self.tokens + (now - self.stamp) * per_minute / 60)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class Recorder:
    """Queues event items and writes them from one task (`start`/`close`)."""

    def __init__(self, settings: Callable[[], audit_settings.EventSettings],
                 api: Callable[[], Any], instance: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings  # follows config reloads
        self.api_factory = api  # -> kube.Api (or a stand-in), or None: no cluster to write to
        self.api: Any = None
        self.instance = (instance or os.environ.get("POD_NAME") or socket.gethostname())[:128]
        self.clock = clock
        cfg = settings()
        self.queue: asyncio.Queue[Item] = asyncio.Queue(cfg.queueSize)
        self.seen: OrderedDict[tuple[Any, ...], Seen] = OrderedDict()
        self.buckets: dict[str, Bucket] = {}
        self.task: asyncio.Task[None] | None = None
        self._last_log = -LOG_EVERY

    # -- producers (never wait) ---------------------------------------------------
    def put(self, item: Item | None) -> None:
        if item is None:
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            metrics.EVENTS.labels("dropped").inc()
            self._warn("event queue full (%d): dropped %s for %s", self.queue.maxsize,
                       item.reason, item.namespace)

    def observe(self, decision: decisions.Decision) -> None:
        """The decision observer: queue an AdmissionDenied for a denial."""
        cfg = self.settings()
        if cfg.enabled and cfg.denials:
            self.put(denial(decision))

    def found(self, row: dict[str, Any]) -> None:
        """The scan hook: queue a PolicyViolation for a failing object."""
        cfg = self.settings()
        if cfg.enabled and cfg.scanFindings:
            self.put(violation(row))

    def _warn(self, message: str, *args: Any) -> None:
        now = self.clock()
        if now - self._last_log >= LOG_EVERY:
            self._last_log = now
            log.warning(message, *args)

    # -- the writer ---------------------------------------------------------------
    def start(self) -> None:
        self.task = asyncio.create_task(self.run(), name="mlgate-events")

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def run(self) -> None:
        while True:
            try:
                item: Item | None = await asyncio.wait_for(self.queue.get(), SERIES_EVERY / 2)
            except TimeoutError:
                item = None
            try:
                if item is not None:
                    await self.handle(item)
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let one bad answer stop the writer
                metrics.EVENTS.labels("failed").inc()
                self._warn("writing an event failed: %s", exc)

    async def _call(self, *args: Any) -> dict[str, Any]:
        result: dict[str, Any] = await asyncio.to_thread(self.api.request, *args)
        return result

    async def _connected(self) -> bool:
        """Whether there is a cluster to write to (a client is made on first use)."""
        if self.api is None:
            self.api = await asyncio.to_thread(self.api_factory) or False
            if self.api is False:
                log.info("events off: not in a pod and no audit.scan.kubeconfig, so there "
                         "is no cluster to write Events to")
        return self.api is not False

    async def handle(self, item: Item) -> None:
        if not await self._connected():
            return
        cfg = self.settings()
        now = self.clock()
        key = item.key()
        seen = self.seen.get(key)
        if seen is not None and now - seen.first <= cfg.dedupWindow:
            seen.count += 1
            seen.last_seen = _now()
            self.seen.move_to_end(key)
            metrics.EVENTS.labels("repeated").inc()
            return
        bucket = self.buckets.setdefault(item.namespace, Bucket(cfg.burst, cfg.perMinute, now))
        if not bucket.take(cfg.burst, cfg.perMinute, now):
            metrics.EVENTS.labels("limited").inc()
            self._warn("events for namespace %s over audit.events.perMinute: %s not emitted",
                       item.namespace, item.reason)
            return
        name = await self.create(item)
        self.seen[key] = Seen(name, item, now, last_write=now)
        self.seen.move_to_end(key)
        while len(self.seen) > REMEMBERED:
            self.seen.popitem(last=False)
        metrics.EVENTS.labels("created").inc()

    async def create(self, item: Item, count: int = 1) -> str:
        base = dict(item.regarding).get("name", "mlgate").strip("-.")[:200] or "mlgate"
        name = f"{base}.{time.time_ns():x}{secrets.token_hex(2)}"
        body: dict[str, Any] = {
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": name, "namespace": item.namespace,
                         "labels": {"app.kubernetes.io/managed-by": "mlgate"}},
            "eventTime": _now(), "type": "Warning", "reason": item.reason,
            "action": item.action, "note": item.note, "regarding": dict(item.regarding),
            "reportingController": CONTROLLER, "reportingInstance": self.instance}
        if item.related:
            body["related"] = dict(item.related)
        if count > 1:
            body["series"] = {"count": count, "lastObservedTime": _now()}
        await self._call("POST", f"/apis/events.k8s.io/v1/namespaces/{item.namespace}/events",
                         body)
        return name

    async def flush(self) -> None:
        """Write the series of Events that were repeated since their last write."""
        cfg = self.settings()
        now = self.clock()
        for key, seen in list(self.seen.items()):
            if now - seen.first > cfg.dedupWindow and seen.count == seen.written:
                del self.seen[key]
                continue
            if seen.count == seen.written or now - seen.last_write < SERIES_EVERY:
                continue
            path = f"/apis/events.k8s.io/v1/namespaces/{seen.item.namespace}/events/{seen.name}"
            patch = {"series": {"count": seen.count, "lastObservedTime": seen.last_seen}}
            try:
                await self._call("PATCH", path, patch, None, "application/merge-patch+json")
            except ApiError as exc:
                if exc.status != 404:
                    raise
                # the Event expired (the API server's --event-ttl): start it again
                seen.name = await self.create(seen.item, seen.count)
            seen.written = seen.count
            seen.last_write = now
