"""`install(app)`: the audit side of the server, added to the app in one call.

Routes: `GET /metrics` (Prometheus text), `GET /audit/report` (json, html, policyreport),
`GET /audit/decisions` (raw decisions, cursor pagination). Hooks: decision observers
(metrics, one log line, the journal queue; the Events queue), a reload listener (metrics),
startup (open and migrate the journal, build the token checker, start the scan, its
PolicyReports and the Events writer) and shutdown (stop them, flush the journal).
Everything here is off the admission path except the observers, which never wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from webhook import engine, logs, metrics
from webhook.audit import access, events, journal, kube, policyreports, report, scan
from webhook.audit import store as store_module

log = logging.getLogger("mlgate.audit")

MAX_PAGE = 1000
DEFAULT_PAGE = 100


@dataclass
class AuditState:
    """What the audit side holds while the server runs (`app.state.audit`)."""

    journal: journal.Journal | None = None
    authority: access.Authority | None = None
    scanner: scan.Scanner | None = None
    scan_task: asyncio.Task[None] | None = None
    events: events.Recorder | None = None


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body, separators=(",", ":"), default=str).encode(),
                    status_code=status, media_type="application/json", headers=headers)


def _problem(reason: str, status: int, headers: dict[str, str] | None = None) -> Response:
    return _json({"error": reason, "code": status}, status, headers)


def certificate_expiry(cert_file: str | Path) -> float:
    """notAfter of the first certificate in a PEM file, in UNIX seconds (0 if unreadable)."""
    try:
        cert = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
    except (OSError, ValueError):
        return 0.0
    return cert.not_valid_after_utc.timestamp()


def install(app: FastAPI, data_dir: str | Path | None = None) -> AuditState:
    """Add the audit routes and hooks to an app made by `webhook.app.create_app`.

    Without `data_dir` (an app embedded in tests or another program) the journal is off
    unless `journal.url` names a database; `mlgate serve` always passes its --data-dir.
    """
    state = AuditState()
    app.state.audit = state
    runtime = app.state.runtime
    runtime.listeners.append(metrics.reload_result)
    tls_context = app.state.tls
    if tls_context is not None:
        metrics.CERT_EXPIRY.set_function(lambda: certificate_expiry(tls_context.cert_file))

    def observe(decision: engine.Decision) -> None:
        metrics.observe(decision, decision.evaluated)
        logs.log_decision(decision)
        if state.journal is not None:
            state.journal.record(decision.record())

    app.state.observers.append(observe)

    def cluster_api() -> kube.Api | None:
        """A client for writing Events and PolicyReports: in a pod, or audit.scan.kubeconfig
        (never the user's default kubeconfig, which may be any cluster)."""
        scan_cfg = runtime.engine.config.audit.scan
        if not (scan_cfg.kubeconfig or kube.in_cluster()):
            return None
        return kube.Api(kube.api_client(scan_cfg.kubeconfig), scan_cfg.timeout)

    state.events = events.Recorder(lambda: runtime.engine.config.audit.events, cluster_api)
    app.state.observers.append(state.events.observe)

    async def startup(_app: FastAPI) -> None:
        cfg = runtime.engine.config
        state.authority = access.authority(cfg.audit)
        assert state.events is not None
        state.events.start()
        if data_dir is None and not cfg.journal.url:
            log.info("journal off: no data directory and no journal.url (embedded app)")
            return
        state.journal = await asyncio.to_thread(
            journal.open_journal, cfg.journal, str(data_dir) if data_dir else None)
        state.journal.start()
        if cfg.audit.scan.enabled:
            from webhook.audit import kube

            scanner = scan.Scanner(kube.api_client(cfg.audit.scan.kubeconfig),
                                   lambda: runtime.engine, state.journal.store, cfg.audit.scan)
            scanner.on_failing.append(state.events.found)
            scanner.after.append(policyreports.after_scan(
                state.journal.store, lambda: runtime.engine.config.audit.policyReports,
                lambda: kube.Api(scanner.api_client, cfg.audit.scan.timeout)))
            state.scanner = scanner
            state.scan_task = asyncio.create_task(scanner.loop(), name="mlgate-scan")

    async def shutdown(_app: FastAPI) -> None:
        if state.scan_task is not None:
            state.scan_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await state.scan_task
        if state.events is not None:
            await state.events.close()
        if state.journal is not None:
            await state.journal.close()

    app.state.startup.append(startup)
    app.state.shutdown.append(shutdown)

    async def guard(request: Request) -> Response | None:
        """None when the caller may read this path; else the 401/403 answer."""
        try:
            token = access.bearer_token(request.headers.get("authorization"))
            if state.authority is None:
                raise access.Denied(401, "the server is still starting; try again")
            await state.authority.check(token, request.url.path)
        except access.Denied as exc:
            headers = {"WWW-Authenticate": access.REALM} if exc.status == 401 else None
            return _problem(exc.reason, exc.status, headers)
        return None

    def store() -> store_module.Store | None:
        return state.journal.store if state.journal is not None else None

    @app.get("/metrics")
    async def metrics_endpoint(request: Request) -> Response:
        if not runtime.engine.config.audit.metricsPublic:
            denied = await guard(request)
            if denied is not None:
                return denied
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    @app.get("/audit/report")
    async def audit_report(request: Request) -> Response:
        denied = await guard(request)
        if denied is not None:
            return denied
        query = dict(request.query_params)
        shape = query.get("format", "json")
        if shape not in ("json", "html", "policyreport"):
            return _problem(f"format={shape!r}: must be json, html or policyreport", 400)
        db = store()
        if db is None:
            return _problem("the journal is not open yet; try again", 503)
        if shape == "policyreport":
            body = await asyncio.to_thread(report.policy_reports, db, query.get("namespace", ""),
                                           query.get("kind", ""), query.get("policy", ""))
            return _json(body)
        try:
            filters = report.parse_filters(query)
        except report.BadFilter as exc:
            return _problem(str(exc), 400)
        last = state.scanner.last.record() if state.scanner and state.scanner.last else None
        built = await asyncio.to_thread(report.build, db, filters, last)
        if shape == "json":
            return _json(built)
        page, csp = report.render_html(built, query)
        return Response(page, media_type="text/html; charset=utf-8", headers={
            "Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store"})

    @app.get("/audit/decisions")
    async def audit_decisions(request: Request) -> Response:
        denied = await guard(request)
        if denied is not None:
            return denied
        query = dict(request.query_params)
        try:
            filters = report.parse_filters(query, default_since="")
        except report.BadFilter as exc:
            return _problem(str(exc), 400)
        limit_text, cursor_text = query.get("limit", str(DEFAULT_PAGE)), query.get("cursor", "")
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_PAGE:
            return _problem(f"limit={limit_text!r}: must be a number from 1 to {MAX_PAGE}", 400)
        if cursor_text and not cursor_text.isdigit():
            return _problem(f"cursor={cursor_text!r}: pass back the `next` value of the "
                            f"previous page", 400)
        db = store()
        if db is None:
            return _problem("the journal is not open yet; try again", 503)
        rows = await asyncio.to_thread(db.records, filters, int(limit_text),
                                       int(cursor_text) if cursor_text else None)
        following = str(rows[-1][0]) if len(rows) == int(limit_text) else None
        return _json({"items": [record for _, record in rows], "next": following})

    return state
