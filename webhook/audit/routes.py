"""The audit endpoints, as a router the composition root adds to the app.

`GET /metrics` (Prometheus text), `GET /audit/report` (json, html, policyreport) and
`GET /audit/decisions` (raw decisions, cursor pagination). Each reads the running `Audit`
service; none is on the admission path.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from webhook import metrics
from webhook.audit import access, report, service

MAX_PAGE = 1000
DEFAULT_PAGE = 100


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body, separators=(",", ":"), default=str).encode(),
                    status_code=status, media_type="application/json", headers=headers)


def _problem(reason: str, status: int, headers: dict[str, str] | None = None) -> Response:
    return _json({"error": reason, "code": status}, status, headers)


class Endpoints:
    """The handlers, bound to one `Audit` service."""

    def __init__(self, audit: service.Audit) -> None:
        self.audit = audit

    def router(self) -> APIRouter:
        routes = APIRouter()
        routes.add_api_route("/metrics", self.metrics, methods=["GET"])
        routes.add_api_route("/audit/report", self.report, methods=["GET"])
        routes.add_api_route("/audit/decisions", self.decisions, methods=["GET"])
        return routes

    async def guard(self, request: Request) -> Response | None:
        """None when the caller may read this path; else the 401/403 answer."""
        try:
            token = access.bearer_token(request.headers.get("authorization"))
            if self.audit.authority is None:
                raise access.Denied(401, "the server is still starting; try again")
            await self.audit.authority.check(token, request.url.path)
        except access.Denied as exc:
            headers = {"WWW-Authenticate": access.REALM} if exc.status == 401 else None
            return _problem(exc.reason, exc.status, headers)
        return None

    async def metrics(self, request: Request) -> Response:
        if not self.audit.runtime.engine.config.audit.metricsPublic:
            denied = await self.guard(request)
            if denied is not None:
                return denied
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    async def report(self, request: Request) -> Response:
        denied = await self.guard(request)
        if denied is not None:
            return denied
        query = dict(request.query_params)
        shape = query.get("format", "json")
        if shape not in ("json", "html", "policyreport"):
            return _problem(f"format={shape!r}: must be json, html or policyreport", 400)
        db = self.audit.store
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
        scanner = self.audit.scanner
        last = scanner.last.record() if scanner and scanner.last else None
        built = await asyncio.to_thread(report.build, db, filters, last, None,
                                        self.audit.runtime.engine.config.exceptions)
        if shape == "json":
            return _json(built)
        page, csp = report.render_html(built, query)
        return Response(page, media_type="text/html; charset=utf-8", headers={
            "Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store"})

    async def decisions(self, request: Request) -> Response:
        denied = await self.guard(request)
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
        db = self.audit.store
        if db is None:
            return _problem("the journal is not open yet; try again", 503)
        rows = await asyncio.to_thread(db.records, filters, int(limit_text),
                                       int(cursor_text) if cursor_text else None)
        following = str(rows[-1][0]) if len(rows) == int(limit_text) else None
        return _json({"items": [record for _, record in rows], "next": following})


def router(audit: service.Audit) -> APIRouter:
    """/metrics, /audit/report and /audit/decisions, reading `audit`."""
    return Endpoints(audit).router()
