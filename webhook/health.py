"""Health and metrics on their own plain-HTTP listener (`mlgate serve --health-port`).

Probes and scrapes must answer whatever admission is doing: on the admission port they
wait behind its TLS handshakes, its accept queue and its connection cap, and a readiness
probe that times out takes the pod out of the Service, so that every admission then
fails by failure policy (a cascading outage made by the health check). This listener has
its own socket, thread and event loop and no TLS, answers only `GET /healthz`, `/readyz` and (when
`audit.metricsPublic`) `/metrics`, one request per connection, with a small header cap
and a short deadline. Gatekeeper and Kyverno expose probes and metrics on a second port
the same way. With `--workers N` every worker binds it (SO_REUSEPORT).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading

from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from webhook import app as app_module
from webhook import metrics

log = logging.getLogger("mlgate.health")

MAX_REQUEST_BYTES = 8192  # request line + headers
READ_TIMEOUT = 2.0  # seconds for the whole request


class Listener:
    """A service of the app: serves `app`'s health and metrics on `host:port`."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.app: FastAPI | None = None  # set by the composition root once the app exists
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None

    async def start(self) -> None:
        """Serve from a thread with its own event loop: the admission loop can be saturated
        (TLS handshakes, evaluation) and a probe must still get its answer in time."""
        started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(started),),
                                        name="mlgate-health", daemon=True)
        self._thread.start()
        await asyncio.wrap_future(started)  # a port in use fails the start, loudly
        log.info("health and metrics on http://%s:%d (/healthz, /readyz, /metrics)",
                 self.host, self.port)

    async def _serve(self, started: concurrent.futures.Future[None]) -> None:
        try:
            server = await asyncio.start_server(self._handle, self.host, self.port,
                                                reuse_port=True, limit=MAX_REQUEST_BYTES)
        except OSError as exc:
            started.set_exception(exc)
            return
        self._loop, self._stopped = asyncio.get_running_loop(), asyncio.Event()
        started.set_result(None)
        async with server:
            await self._stopped.wait()

    async def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5)

    def answer(self, method: str, path: str) -> tuple[int, bytes, str]:
        """(status, body, content type) for one request."""
        if self.app is None:
            return 503, b'{"status":"starting"}', "application/json"
        state = app_module.state_of(self.app)
        if method != "GET":
            return 405, b'{"error":"only GET"}', "application/json"
        if path == "/healthz":
            return 200, b'{"status":"ok"}', "application/json"
        if path == "/readyz":
            status, body = app_module.readiness(state)
            return status, body, "application/json"
        if path == "/metrics" and state.runtime.engine.config.audit.metricsPublic:
            return 200, generate_latest(metrics.REGISTRY), CONTENT_TYPE_LATEST
        return 404, b'{"error":"not found: /healthz, /readyz or /metrics"}', "application/json"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            method, path, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            status, body, content_type = self.answer(method, path.split("?", 1)[0])
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                ValueError, ConnectionError):
            status, body, content_type = 400, b'{"error":"bad request"}', "application/json"
        with contextlib.suppress(ConnectionError):
            writer.write(f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\n"
                         f"content-type: {content_type}\r\ncontent-length: {len(body)}\r\n"
                         f"connection: close\r\n\r\n".encode() + body)
            await writer.drain()
        writer.close()


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            503: "Service Unavailable"}
