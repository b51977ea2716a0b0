"""The FastAPI application: parse, ask the engine, answer. Nothing else lives here."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from webhook import admission, engine, tls
from webhook.audit import routes as audit_routes
from webhook.runtime import Runtime

log = logging.getLogger("mlgate.app")

DecisionObserver = Callable[[engine.Decision], None]


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


def create_app(runtime: Runtime, tls_context: tls.ReloadingContext | None = None,
               watch_interval: float = 1.0, data_dir: str | None = None) -> FastAPI:
    """The app. `app.state.observers` get every decision (journal, metrics, logs)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(runtime.watch(watch_interval))]
        if tls_context is not None:
            tasks.append(asyncio.create_task(tls_context.watch(watch_interval)))
        for hook in app.state.startup:
            await hook(app)
        # Everything loaded so far (modules, policies, clients) lives as long as the
        # process: keep it out of the collector's full passes, which otherwise stall the
        # event loop for tens of milliseconds under load.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for hook in reversed(app.state.shutdown):
                await hook(app)

    app = FastAPI(title="mlgate", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.runtime = runtime
    app.state.tls = tls_context
    observers: list[DecisionObserver] = []
    app.state.observers = observers
    app.state.startup = []  # async callables(app), run in order at startup
    app.state.shutdown = []  # run in reverse order at shutdown

    async def review(request: Request, phase: str) -> Response:
        limit = runtime.engine.config.maxRequestBytes
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return _problem(f"request body is {length} bytes, over the limit of {limit}", 413)
        body = await _read_limited(request, limit)
        if body is None:
            return _problem(f"request body is over the limit of {limit} bytes", 413)
        try:
            parsed = admission.parse(body, request.headers.get("content-type"), limit)
        except admission.BadReview as exc:
            log.warning("rejected %s request: %s", phase, exc.reason)
            return _problem(exc.reason, exc.status)
        decision = await runtime.engine.evaluate(parsed, phase)
        for observer in app.state.observers:
            try:
                observer(decision)
            except Exception:  # an observer must never change the answer
                log.exception("decision observer failed")
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
        problems = []
        if not runtime.ready:
            problems.append("policies are not loaded")
        if tls_context is None and app.state.require_tls:
            problems.append("TLS is not up")
        if problems:
            return _json({"status": "not ready", "problems": problems}, 503)
        return _json({"status": "ready", "policies": [p.name for p in runtime.engine.active]})

    app.state.require_tls = False
    audit_routes.install(app, data_dir)  # /metrics, /audit/*, journal, scan
    return app
