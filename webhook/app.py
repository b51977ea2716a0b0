"""The FastAPI application: parse, ask the engine, answer. Nothing else lives here.

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
import starlette.requests
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response

from webhook import admission, decisions, engine, metrics, schema, tls
from webhook.runtime import Runtime

log = logging.getLogger("mlgate.app")
OVERLOAD_LOG_EVERY = 10.0  # seconds between two "overloaded" log lines

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


def _problem(reason: str, status: int) -> Response:
    return _json({"error": reason, "code": status}, status)


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it grows past `limit` (chunked bodies have no length)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


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


def _overloaded(state: AppState, limit: int) -> Response:
    """503 at once: the API server applies the webhook's failure policy now, instead of
    after its timeout, and every request already admitted keeps its answer time."""
    metrics.OVERLOADED.inc()
    now = time.monotonic()
    if now - state.overload_logged >= OVERLOAD_LOG_EVERY:
        state.overload_logged = now
        log.warning("overloaded: %d admission requests in flight (maxInFlight); refusing "
                    "the excess with 503 (mlgate_admission_overloaded_total)", limit)
    return _problem(f"mlgate is evaluating {limit} admission requests already (maxInFlight); "
                    f"refused at once so that the webhook's failure policy applies now; add "
                    f"replicas or raise maxInFlight", 503)


def _notify(observers: Sequence[DecisionObserver], decision: decisions.Decision) -> None:
    for observer in observers:
        try:
            observer(decision)
        except Exception:  # an observer must never change the answer
            log.exception("decision observer failed")


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
            state.started = True
            yield
        finally:
            state.started = False
            for task in tasks:
                task.cancel()
            for service in reversed(started):
                await service.stop()

    app = FastAPI(title="mlgate", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.mlgate = state

    async def review(request: Request, phase: schema.Phase) -> Response:
        current = runtime.engine
        limit = current.config.maxRequestBytes
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return _problem(f"request body is {length} bytes, over the limit of {limit}", 413)
        try:
            body = await _read_limited(request, limit)
        except starlette.requests.ClientDisconnect:  # gone, or cut off by a body timeout
            return _problem("the client closed the connection before the body was complete",
                            400)
        if body is None:
            return _problem(f"request body is over the limit of {limit} bytes", 413)
        try:
            parsed = admission.parse(body, request.headers.get("content-type"), limit)
        except admission.BadReview as exc:
            log.warning("rejected %s request: %s", phase, exc.reason)
            return _problem(exc.reason, exc.status)
        if state.in_flight >= current.config.maxInFlight:
            return _overloaded(state, current.config.maxInFlight)
        state.in_flight += 1
        try:
            decision = await current.evaluate(parsed, phase)
        finally:
            state.in_flight -= 1
        _notify(state.observers, decision)
        return _json(admission.respond(
            parsed.api_version, parsed.uid, decision.allowed, message=decision.message,
            patch=decision.patch if phase == engine.MUTATE else None,
            warnings=decision.warnings, audit_annotations=decision.audit_annotations()))

    @app.post("/mutate")
    async def mutate(request: Request) -> Response:
        return await review(request, engine.MUTATE)

    @app.post("/validate")
    async def validate(request: Request) -> Response:
        return await review(request, engine.VALIDATE)

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
