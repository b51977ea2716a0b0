"""The audit endpoints, as a router the composition root adds to the app.

`GET /metrics` (Prometheus text), `GET /audit/report` (json, html, policyreport) and
`GET /audit/decisions` (raw decisions, cursor pagination). Each reads the running `Audit`
service; none is on the admission path. Journal reads run in the service's own query pool
(`webhook.audit.queries`): a reader past `audit.maxQueries` is a 503 at once.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from webhook import metrics
from webhook.audit import access, report, service, store

MAX_PAGE = 1000
DEFAULT_PAGE = 100
MAX_CURSOR = 2**63 - 1  # decision ids are 64-bit signed integers in both databases
DIGITS = re.compile(r"[0-9]{1,19}")
RETRY_AFTER = 5  # seconds, in the 503 answer of a journal that is down


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
            return _problem(f"format={shape[:40]!r}: must be json, html or policyreport", 400)
        try:
            filters = report.parse_filters(query)
        except report.BadFilter as exc:
            return _problem(str(exc), 400)
        db = self.audit.store
        if db is None:
            return _unavailable("the journal is not open yet")
        try:
            if shape == "policyreport":
                return _json(await self.audit.queries.run(
                    report.policy_reports, db, filters.namespace, filters.kind, filters.policy))
            scanner = self.audit.scanner
            last = scanner.last.record() if scanner and scanner.last else None
            built = await self.audit.queries.run(report.build, db, filters, last, None,
                                                 self.audit.runtime.engine.config.exceptions)
        except store.Unavailable as exc:
            return _unavailable(str(exc))
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
            limit = _number(query, "limit", DEFAULT_PAGE, MAX_PAGE,
                            f"must be a number from 1 to {MAX_PAGE}") or DEFAULT_PAGE
            cursor = _number(query, "cursor", None, MAX_CURSOR,
                             "pass back the `next` value of the previous page")
        except report.BadFilter as exc:
            return _problem(str(exc), 400)
        db = self.audit.store
        if db is None:
            return _unavailable("the journal is not open yet")
        try:
            rows = await self.audit.queries.run(db.records, filters, limit, cursor)
        except store.Unavailable as exc:
            return _unavailable(str(exc))
        following = str(rows[-1][0]) if len(rows) == limit else None
        return _json({"items": [record for _, record in rows], "next": following})


def _number(query: dict[str, str], name: str, default: int | None, highest: int,
            fix: str) -> int | None:
    """A positive whole number of ASCII digits up to `highest` (`str.isdigit()` would take
    '²' and other Unicode digits, which `int()` then refuses or reads as another number)."""
    text = query.get(name)
    if text is None or (not text and default is None):
        return default
    if not DIGITS.fullmatch(text) or not 1 <= int(text) <= highest:
        shown = repr(text) if len(text) <= 40 else repr(text[:40]) + "..."
        raise report.BadFilter(f"{name}={shown}: {fix}")
    return int(text)


def _unavailable(reason: str) -> Response:
    """503 with Retry-After: the journal cannot answer now; admission is not affected."""
    return _problem(f"{reason}; admission is not affected; try again in a few seconds",
                    503, {"Retry-After": str(RETRY_AFTER)})


def router(audit: service.Audit) -> APIRouter:
    """/metrics, /audit/report and /audit/decisions, reading `audit`."""
    return Endpoints(audit).router()
