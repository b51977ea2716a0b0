"""PolicyReports in the cluster: the scan's results where Policy Reporter and `kubectl get polr`
read them.

The bodies are exactly what `/audit/report?format=policyreport` serves (`report.policy_reports`):
one PolicyReport per namespace, one ClusterPolicyReport. After every scan each is written
with server-side apply (field manager `mlgate`, so the same object is updated in place and
fields mlgate stopped setting go away), and reports of mlgate that no longer have a result
are deleted. Each report holds at most `maxResults` results, failures first; its summary
still counts every result and the annotation `mlgate.io/results-truncated` says what was cut
(Kyverno's unbounded reports are a known way to fill etcd).

The CRD (wgpolicyk8s.io, served by Kyverno's, Policy Reporter's or wg-policy's CRDs) must
already be installed; mlgate never installs it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from webhook import metrics
from webhook.audit import report
from webhook.audit import settings as audit_settings
from webhook.audit import store as store_module
from webhook.audit.kube import ApiError

log = logging.getLogger("mlgate.policyreports")

FIELD_MANAGER = "mlgate"
BASE = "/apis/wgpolicyk8s.io/v1alpha2"
SELECTOR = "app.kubernetes.io/managed-by=mlgate"
NAMES = {"PolicyReport": "mlgate-policyreport", "ClusterPolicyReport": "mlgate-clusterpolicyreport"}
TRUNCATED = "mlgate.io/results-truncated"
ORDER = {"error": 0, "fail": 1, "warn": 2, "skip": 3, "pass": 4}  # kept first when capped
PAGE = 500


class Api(Protocol):
    def request(self, method: str, path: str, body: Any = None,
                query: list[tuple[str, Any]] | None = None,
                content_type: str = "application/json") -> dict[str, Any]: ...


def cap(report: dict[str, Any], max_results: int) -> dict[str, Any]:
    """The report with at most `max_results` results (failures first) and a note if cut."""
    results = report["results"]
    if len(results) <= max_results:
        return report
    kept = sorted(results, key=lambda r: ORDER.get(r.get("result"), len(ORDER)))[:max_results]
    note = (f"{max_results} of {len(results)} results kept (audit.policyReports.maxResults), "
            f"failures first; the summary counts all {len(results)}")
    metadata = {**report["metadata"],
                "annotations": {**report["metadata"].get("annotations", {}), TRUNCATED: note}}
    return {**report, "metadata": metadata, "results": kept}


def path(kind: str, name: str, namespace: str = "") -> str:
    if kind == "PolicyReport":
        return f"{BASE}/namespaces/{namespace}/policyreports/{name}"
    return f"{BASE}/clusterpolicyreports/{name}"


@dataclass
class Synced:
    applied: int = 0
    deleted: int = 0
    truncated: int = 0


class Writer:
    """Makes the cluster's mlgate PolicyReports equal to a list of report bodies."""

    def __init__(self, api: Api) -> None:
        self.api = api

    def existing(self) -> set[str]:
        """API paths of the reports mlgate wrote before (by label and name)."""
        found: set[str] = set()
        for kind, plural in (("PolicyReport", "policyreports"),
                             ("ClusterPolicyReport", "clusterpolicyreports")):
            token = ""
            while True:
                query: list[tuple[str, Any]] = [("labelSelector", SELECTOR), ("limit", PAGE)]
                if token:
                    query.append(("continue", token))
                page = self.api.request("GET", f"{BASE}/{plural}", query=query)
                for item in page.get("items") or []:
                    meta = item.get("metadata") or {}
                    if meta.get("name") == NAMES[kind]:
                        found.add(path(kind, meta["name"], meta.get("namespace", "")))
                token = str((page.get("metadata") or {}).get("continue") or "")
                if not token:
                    break
        return found

    def sync(self, reports: list[dict[str, Any]], max_results: int) -> Synced:
        """Apply every report (capped), then delete mlgate's reports that are not among them."""
        done = Synced()
        try:
            before = self.existing()
        except ApiError as exc:
            if exc.status == 404:
                raise ApiError(404, "the PolicyReport CRDs (wgpolicyk8s.io/v1alpha2) are not "
                                    "installed in this cluster; install them (Kyverno, "
                                    "Policy Reporter or kubernetes-sigs/wg-policy-prototypes "
                                    "ship them) or turn audit.policyReports off") from exc
            raise
        wanted = set()
        for full in reports:
            body = cap(full, max_results)
            done.truncated += body is not full
            meta = body["metadata"]
            target = path(body["kind"], meta["name"], meta.get("namespace", ""))
            self.api.request("PATCH", target, body,
                             [("fieldManager", FIELD_MANAGER), ("force", "true")],
                             "application/apply-patch+yaml")
            wanted.add(target)
            done.applied += 1
        for stale in sorted(before - wanted):
            try:
                self.api.request("DELETE", stale)
            except ApiError as exc:
                if exc.status != 404:  # already gone is what we wanted
                    raise
            done.deleted += 1
        return done


def after_scan(store: store_module.Store,
               settings: Callable[[], audit_settings.PolicyReportSettings],
               api: Callable[[], Api]) -> Callable[[Any], Awaitable[None]]:
    """The scan hook: when enabled (read at each scan), write the reports of the store."""
    writers: list[Writer] = []

    async def write_policy_reports(_summary: Any) -> None:
        cfg = settings()
        if not cfg.enabled:
            return
        if not writers:
            writers.append(Writer(await asyncio.to_thread(api)))
        bodies = await asyncio.to_thread(report.policy_reports, store)
        done = await asyncio.to_thread(writers[0].sync, bodies["items"], cfg.maxResults)
        metrics.POLICY_REPORTS.set(done.applied)
        log.info("policy reports: %d applied (%d capped at %d results), %d deleted",
                 done.applied, done.truncated, cfg.maxResults, done.deleted)

    return write_policy_reports
