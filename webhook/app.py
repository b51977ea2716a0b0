"""The FastAPI application: parse, ask the engine, answer. Nothing else lives here.

`/mutate` and `/validate` are served by a bare ASGI handler that `MlgateApp` calls before
FastAPI's middleware, routing and dependency solving (a third of the time per request on
the hot path); everything else (health, audit, metrics) is ordinary FastAPI. The answer
is sent before the decision observers run, so logging, metrics and the journal queue
never delay it.

Everything besides the admission routes is handed to `create_app` by its caller:
decision observers (metrics, the log line, the journal), services that run as long as the
server (the journal writer, the cluster scan, certificate renewal) and extra routers (the
audit endpoints). `webhook.server.application` is the composition root that assembles
them for `mlgate serve`; tests and embedders pass what they need.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import orjson
from fastapi import APIRouter, FastAPI
from fastapi.responses import Response
from starlette.types import Message, Receive, Scope, Send

from webhook import admission, decisions, engine, metrics, schema, tls
from webhook.runtime import Runtime

log = logging.getLogger("mlgate.app")
OVERLOAD_LOG_EVERY = 10.0  # seconds between two "overloaded" log lines
GC_THRESHOLD = 10_000  # allocations between two young-generation collections (default 700)

DecisionObserver = Callable[[decisions.Decision], None]
"""Called with every decision after it is made; must not block, must not raise."""


class Service(Protocol):
    """Something that runs as long as the server: started in order, stopped in reverse."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class AppState:
    """What the routes read, set once by `create_app` (`app.state.mlgate`)."""

    runtime: Runtime
    tls: tls.ReloadingContext | None
    observers: Sequence[DecisionObserver]
    services: Sequence[Service]
    started: bool = False  # every service is up; False again as soon as shutdown begins
    in_flight: int = 0  # admission requests being evaluated now
    overload_logged: float = 0.0  # monotonic time of the last "overloaded" log line


def state_of(app: FastAPI) -> AppState:
    return cast(AppState, app.state.mlgate)


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _problem_body(reason: str, status: int) -> bytes:
    return orjson.dumps({"error": reason, "code": status})


class _Rejected(Exception):
    """A request answered with an error before the engine saw it."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def _read_body(receive: Receive, limit: int) -> bytes:
    """The whole body; `_Rejected` as soon as it grows past `limit` (chunked bodies have no
    length) or the client goes away (gone, or cut off by a body timeout)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Rejected(400, "the client closed the connection before the body was "
                                 "complete")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _Rejected(413, f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _send(send: Send, status: int, body: bytes,
                extra: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    start: Message = {"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()), *extra]}
    await send(start)
    await send({"type": "http.response.body", "body": body})


def readiness(state: AppState) -> tuple[int, bytes]:
    """(HTTP status, JSON body) of /readyz, on the admission port and the health port."""
    problems = []
    if not state.runtime.ready:
        problems.append("policies are not loaded")
    elif not state.started:
        problems.append("the server is starting or shutting down")
    if problems:
        return 503, orjson.dumps({"status": "not ready", "problems": problems})
    return 200, orjson.dumps({"status": "ready",
                              "policies": [p.name for p in state.runtime.engine.active]})


def _overloaded(state: AppState, limit: int) -> _Rejected:
    """503 at once: the API server applies the webhook's failure policy now, instead of
    after its timeout, and every request already admitted keeps its answer time."""
    metrics.OVERLOADED.inc()
    now = time.monotonic()
    if now - state.overload_logged >= OVERLOAD_LOG_EVERY:
        state.overload_logged = now
        log.warning("overloaded: %d admission requests in flight (maxInFlight); refusing "
                    "the excess with 503 (mlgate_admission_overloaded_total)", limit)
    return _Rejected(503, f"mlgate is evaluating {limit} admission requests already "
                          f"(maxInFlight); refused at once so that the webhook's failure "
                          f"policy applies now; add replicas or raise maxInFlight")


def _notify(observers: Sequence[DecisionObserver], decision: decisions.Decision) -> None:
    for observer in observers:
        try:
            observer(decision)
        except Exception:  # an observer must never change the answer
            log.exception("decision observer failed")


class AdmissionHandler:
    """`POST /mutate` and `POST /validate` as a bare ASGI app: read the body within the
    size limit, parse, evaluate within `maxInFlight`, answer, then tell the observers."""

    PHASES: dict[str, schema.Phase] = {"/mutate": engine.MUTATE, "/validate": engine.VALIDATE}

    def __init__(self, state: AppState) -> None:
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        phase = self.PHASES[scope["path"]]
        if scope["method"] != "POST":
            await _send(send, 405, _problem_body(
                f"{scope['method']} {scope['path']}: admission reviews are POSTed", 405),
                ((b"allow", b"POST"),))
            return
        try:
            decision, answer = await self._review(scope, receive, phase)
        except _Rejected as exc:
            await _send(send, exc.status, _problem_body(exc.reason, exc.status))
            return
        try:
            await _send(send, 200, answer)
            # One step back to the loop: the write that carries the answer is queued for
            # the end of this pass (connections._CoalescingTransport), and the observers
            # below would otherwise run before it and delay every answer at low load.
            await asyncio.sleep(0)
        finally:  # a decision made is always observed, even when sending it failed
            _notify(self.state.observers, decision)

    async def _review(self, scope: Scope, receive: Receive, phase: schema.Phase,
                      ) -> tuple[decisions.Decision, bytes]:
        state = self.state
        current = state.runtime.engine
        limit = current.config.maxRequestBytes
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise _Rejected(413, f"request body is {length} bytes, over the limit of {limit}")
        body = await _read_body(receive, limit)
        try:
            parsed = admission.parse(body, _header(scope, b"content-type"), limit)
        except admission.BadReview as exc:
            log.warning("rejected %s request: %s", phase, exc.reason)
            raise _Rejected(exc.status, exc.reason) from exc
        if state.in_flight >= current.config.maxInFlight:
            raise _overloaded(state, current.config.maxInFlight)
        state.in_flight += 1
        try:
            decision = await current.evaluate(parsed, phase)
        finally:
            state.in_flight -= 1
        return decision, orjson.dumps(admission.respond(
            parsed.api_version, parsed.uid, decision.allowed, message=decision.message,
            patch=decision.patch if phase == engine.MUTATE else None,
            warnings=decision.warnings, audit_annotations=decision.audit_annotations()))


class MlgateApp(FastAPI):
    """FastAPI, with the admission paths handed to `admission` before any middleware."""

    admission: AdmissionHandler | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] == "http" and self.admission is not None
                and scope["path"] in AdmissionHandler.PHASES):
            try:
                await self.admission(scope, receive, send)
            except Exception:  # a bug: answer (if nothing was sent yet) and say where
                log.exception("admission request to %s failed", scope["path"])
                with contextlib.suppress(Exception):
                    await _send(send, 500, _problem_body(
                        "internal error in mlgate (see its log); the webhook's failure "
                        "policy applies", 500))
            return
        await super().__call__(scope, receive, send)


def create_app(runtime: Runtime, *, tls_context: tls.ReloadingContext | None = None,
               observers: Sequence[DecisionObserver] = (), services: Sequence[Service] = (),
               routers: Sequence[APIRouter] = (), watch_interval: float = 1.0) -> FastAPI:
    """The app: /mutate, /validate, /healthz, /readyz, and whatever `routers` add."""
    state = AppState(runtime, tls_context, tuple(observers), tuple(services))

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if not runtime.ready:
            runtime.load()
        tasks = [asyncio.create_task(runtime.watch(watch_interval))]
        if tls_context is not None:
            tasks.append(asyncio.create_task(tls_context.watch(watch_interval)))
        started: list[Service] = []
        try:
            for service in state.services:
                await service.start()
                started.append(service)
            # Everything loaded so far (modules, policies, clients) lives as long as the
            # process: keep it out of the collector's full passes, which otherwise stall the
            # event loop for tens of milliseconds under load.
            gc.collect()
            gc.freeze()
            # A big object (a Pod with 300 containers) is some 20,000 dicts and lists: at
            # the default threshold of 700 its parse alone ran the collector dozens of
            # times. Collections every GC_THRESHOLD allocations keep them rare and short.
            gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
            state.started = True
            yield
        finally:
            state.started = False
            for task in tasks:
                task.cancel()
            for service in reversed(started):
                await service.stop()

    app = MlgateApp(title="mlgate", lifespan=lifespan, docs_url=None, redoc_url=None,
                    openapi_url=None)
    app.state.mlgate = state

    app.admission = AdmissionHandler(state)

    @app.get("/healthz")
    async def healthz() -> Response:
        return _json({"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> Response:
        status, body = readiness(state)
        return Response(body, status_code=status, media_type="application/json")

    for router in routers:
        app.include_router(router)
    return app
