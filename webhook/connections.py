"""Connection limits, as a front proxy would set them: no client can hold the server with
an endless header, a body that never ends, a connection that never sends a request, or
more connections than the process has file descriptors for.

uvicorn's httptools protocol has no cap on the request line and headers and no time limit
until a request is complete (its keep-alive timeout only runs between requests), so
`protocol()` subclasses it with one deadline per phase of a connection:

    connected --firstRequestTimeout--> first byte --headerTimeout--> headers complete
      --bodyTimeout--> body complete --(the app answers)--> idle --idleTimeout--> ...

The protocol also joins the writes of one event-loop pass into one (`_CoalescingTransport`):
uvicorn writes a response's head and body separately, and over TLS each write is its own
record and its own send() system call.

A phase's deadline is a time on the connection, checked by one sweep over the open
connections every SWEEP_EVERY seconds while any deadline is pending: arming and cancelling a
loop timer per phase cost more than the rest of the limits on every request.

A header past `maxHeaderBytes` is a 431, a deadline missed while reading a request a 408
(both then close the connection); a connection that never sends a request is closed, and a
connection past `maxConnections` is closed at once, with a log line. Settings are the
`connections:` section of mlgate.yaml (`config.ConnectionSettings`), read when the
server starts.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from typing import Any, Literal

from prometheus_client import Counter, Gauge
from uvicorn.protocols.http import httptools_impl

from webhook import config, metrics

log = logging.getLogger("mlgate.connections")

Phase = Literal["first", "headers", "body", "app"]
LOG_EVERY = 10.0  # seconds between two log lines of the same kind under attack
SWEEP_EVERY = 0.1  # seconds: a missed deadline is acted on at most this late


CLOSED = Counter(
    "mlgate_connections_closed", "Client connections mlgate closed on a limit, by reason "
    "(header_too_large, header_timeout, body_timeout, first_request_timeout, over_limit).",
    ["reason"], registry=metrics.REGISTRY)
OPEN = Gauge("mlgate_connections_open", "Client connections open now.",
             registry=metrics.REGISTRY)


class _Throttle:
    """One log line per reason every LOG_EVERY seconds, with the count since the last."""

    def __init__(self) -> None:
        self.last: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def __call__(self, reason: str, message: str, *args: Any) -> None:
        CLOSED.labels(reason).inc()
        self.counts[reason] = self.counts.get(reason, 0) + 1
        now = time.monotonic()
        if now - self.last.get(reason, -LOG_EVERY) >= LOG_EVERY:
            self.last[reason] = now
            count, self.counts[reason] = self.counts[reason], 0
            log.warning(message + " (%d such in the last %.0f s)", *args, count, LOG_EVERY)


_throttle = _Throttle()


class _CoalescingTransport:
    """A transport whose writes in one pass of the event loop leave as one write."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:  # everything else is the transport's own
        return getattr(self._transport, name)


class LimitedProtocol(httptools_impl.HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of `settings`."""

    settings = config.ConnectionSettings()
    _sweeping = False  # per server: `protocol()` makes a class per server

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase: Phase = "first"
        self._header_bytes = 0
        self._deadline: float | None = None  # loop time by which this phase must end

    # -- deadlines ---------------------------------------------------------------
    def _arm(self, phase: Phase, seconds: float | None) -> None:
        self._phase = phase
        if seconds is None:
            self._deadline = None
            return
        self._deadline = self.loop.time() + seconds
        cls = type(self)
        if not cls._sweeping:
            cls._sweeping = True
            self.loop.call_later(SWEEP_EVERY, cls._sweep, self.loop, self.connections)

    @classmethod
    def _sweep(cls, loop: asyncio.AbstractEventLoop, connections: set[Any]) -> None:
        """Act on the deadlines that have passed; come back while any is pending."""
        now = loop.time()
        pending = False
        for connection in list(connections):
            deadline = getattr(connection, "_deadline", None)
            if deadline is None:
                continue
            if now >= deadline:
                connection._expired(connection._phase)
            else:
                pending = True
        if pending:
            loop.call_later(SWEEP_EVERY, cls._sweep, loop, connections)
        else:
            cls._sweeping = False

    def _expired(self, phase: Phase) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if phase == "first":
            _throttle("first_request_timeout", "closed a connection from %s that sent no "
                      "request within connections.firstRequestTimeout (%ss)",
                      self._peer(), self.settings.firstRequestTimeout)
            self.transport.abort()
        elif phase == "headers":
            _throttle("header_timeout", "answered 408 to %s: headers not complete within "
                      "connections.headerTimeout (%ss)", self._peer(),
                      self.settings.headerTimeout)
            self._refuse(408, f"the request headers did not arrive within "
                              f"connections.headerTimeout ({self.settings.headerTimeout}s)")
        elif phase == "body":
            _throttle("body_timeout", "answered 408 to %s: body not complete within "
                      "connections.bodyTimeout (%ss)", self._peer(), self.settings.bodyTimeout)
            self._refuse(408, f"the request body did not arrive within "
                              f"connections.bodyTimeout ({self.settings.bodyTimeout}s)")

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "a client"

    def _refuse(self, status: int, reason: str) -> None:
        """Answer `status` with `reason` and close, whatever the request was doing."""
        body = reason.encode()
        self.transport.write(b"".join([
            httptools_impl.STATUS_LINE[status],
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: ", str(len(body)).encode(), b"\r\n",
            b"connection: close\r\n\r\n", body]))
        self.transport.close()  # a request still reading its body sees a disconnect

    # -- asyncio protocol --------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        over = len(self.connections) >= self.settings.maxConnections
        super().connection_made(transport)
        self.transport = _CoalescingTransport(transport, self.loop)  # type: ignore[assignment]
        OPEN.set(len(self.connections))
        if over:
            _throttle("over_limit", "refused a connection from %s: %d connections are open, "
                      "the limit of connections.maxConnections", self._peer(),
                      self.settings.maxConnections)
            transport.abort()
            return
        self._arm("first", self.settings.firstRequestTimeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._deadline = None
        super().connection_lost(exc)
        OPEN.set(len(self.connections))

    def data_received(self, data: bytes) -> None:
        if self._phase in ("first", "app"):  # the first bytes of a (next) request
            self._header_bytes = 0
            self._arm("headers", self.settings.headerTimeout)
        if self._phase == "headers":
            self._header_bytes += len(data)
        super().data_received(data)
        if (self._phase == "headers" and self._header_bytes > self.settings.maxHeaderBytes
                and not self.transport.is_closing()):
            _throttle("header_too_large", "answered 431 to %s: request line and headers "
                      "over connections.maxHeaderBytes (%d)", self._peer(),
                      self.settings.maxHeaderBytes)
            self._refuse(431, f"the request line and headers are over "
                              f"connections.maxHeaderBytes ({self.settings.maxHeaderBytes} "
                              f"bytes)")

    # -- parser callbacks --------------------------------------------------------
    def on_headers_complete(self) -> None:
        self._arm("body", self.settings.bodyTimeout)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._arm("app", None)  # the app's own deadline applies; then uvicorn's keep-alive
        super().on_message_complete()


def protocol(settings: config.ConnectionSettings) -> type[LimitedProtocol]:
    """A protocol class for `uvicorn.Config(http=...)` with these limits."""
    return type("LimitedProtocol", (LimitedProtocol,), {"settings": settings})


def fit_file_descriptors(settings: config.ConnectionSettings,
                         spare: int = 128) -> config.ConnectionSettings:
    """Raise the soft open-file limit to fit `maxConnections` plus `spare` (the journal,
    registries, files) if the hard limit allows; else lower the cap to what fits, and say
    so: past the fd limit, accept() fails and every client suffers, not just the excess."""
    needed = settings.maxConnections + spare
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return settings
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target >= needed:
        return settings
    fits = max(target - spare, 1)
    log.warning("the open file limit (hard %d) is below connections.maxConnections (%d) "
                "plus %d spare: at most %d connections at once; raise the limit (ulimit -n) "
                "to allow more", hard, settings.maxConnections, spare, fits)
    return settings.model_copy(update={"maxConnections": fits})
