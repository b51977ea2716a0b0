"""The cluster scan: which running workloads violate the validating policies today.

On an interval, every kind of the workload table that the cluster serves (found by API
discovery; ML CRDs that are not installed are skipped) is listed page by page with
`limit`/`continue`, each object is evaluated by the validating policies as an audit (no
one is denied), and the latest result per object is stored. Memory stays bounded: one
page is held at a time, results go to the store page by page, and objects that vanished
are removed by comparing scan times in SQL, never by holding a set of names (all of a
kind's results, when the cluster stopped serving the kind: its CRD was deleted).

Objects controlled by another workload kind of the table (a Deployment's ReplicaSets and
their Pods, a CronJob's Jobs, a JobSet's Jobs) are skipped: their owner is reported, as
admission would have checked the owner's template. The same holds for the ResourceClaims
the API server makes for a pod from a ResourceClaimTemplate (controlled by the Pod): the
template is reported.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from webhook import admission, engine, kind_table, metrics
from webhook.audit import settings as audit_settings
from webhook.audit import store as store_module

log = logging.getLogger("mlgate.scan")

SCAN_USER = "system:serviceaccount:mlgate:scan"


class ListExpired(Exception):
    """The API server answered 410 Gone to a `continue` token (the list is incomplete)."""


@dataclass
class ScanSummary:
    started: float
    kinds: list[str] = field(default_factory=list)  # group/kind listed completely
    missing: list[str] = field(default_factory=list)  # not served by this cluster
    failed: dict[str, str] = field(default_factory=dict)
    objects: int = 0
    failing: int = 0
    skipped: int = 0  # exempt, or controlled by another workload
    pages: int = 0
    removed: int = 0

    def record(self) -> dict[str, Any]:
        return {"started": self.started, "kinds": self.kinds, "missing": self.missing,
                "failed": self.failed, "objects": self.objects, "failing": self.failing,
                "skipped": self.skipped, "pages": self.pages, "removed": self.removed}


def controlled_by_workload(obj: dict[str, Any]) -> bool:
    meta: dict[str, Any] = obj["metadata"] if isinstance(obj.get("metadata"), dict) else {}
    for owner in meta.get("ownerReferences") or []:
        if not isinstance(owner, dict) or not owner.get("controller"):
            continue
        group = kind_table.group_of(str(owner.get("apiVersion") or ""))
        if kind_table.lookup(group, str(owner.get("kind") or "")) is not None:
            return True
    return False


class Scanner:
    """Lists the cluster through the real `kubernetes` client and stores the results."""

    def __init__(self, api_client: Any, current_engine: Any, store: store_module.Store,
                 cfg: audit_settings.ScanSettings) -> None:
        self.api_client = api_client
        self.current_engine = current_engine  # callable -> engine.Engine (follows reloads)
        self.store = store
        self.settings = cfg
        self.last: ScanSummary | None = None
        # Hooks (PolicyReports, Events): each failing row as it is found, then the summary.
        self.on_failing: list[Callable[[dict[str, Any]], None]] = []
        self.after: list[Callable[[ScanSummary], Awaitable[None]]] = []

    # -- the API ---------------------------------------------------------------
    def _get(self, path: str, query: list[tuple[str, Any]] | None = None) -> dict[str, Any]:
        """GET through the client's own request path (auth, TLS, proxies of the kubeconfig)."""
        from kubernetes.client.exceptions import ApiException

        request = self.api_client.param_serialize(
            "GET", path, query_params=query or [], header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"])
        response = self.api_client.call_api(*request, _request_timeout=self.settings.timeout)
        data = response.read()
        if not 200 <= response.status < 300:
            raise ApiException(status=response.status, reason=response.reason, body=data)
        body: dict[str, Any] = json.loads(data)
        return body

    def discover(self) -> tuple[list[tuple[kind_table.KindSpec, str]], list[str]]:
        """(served kinds with the version to list, group/kinds this cluster lacks)."""
        from kubernetes.client.exceptions import ApiException

        served: dict[str, tuple[str, set[str]]] = {}  # group -> (version, resources)
        core = self._get("/api/v1")
        served[""] = ("v1", {r.get("name") for r in core.get("resources", [])})
        groups = {g.get("name"): g for g in self._get("/apis").get("groups", [])}
        wanted = {spec.group for spec in kind_table.KINDS if spec.group}
        for name in sorted(wanted & set(groups)):
            preferred = (groups[name].get("preferredVersion") or {}).get("version")
            if not preferred:
                continue
            try:
                listing = self._get(f"/apis/{name}/{preferred}")
            except ApiException as exc:
                if exc.status == 404:
                    continue
                raise
            served[name] = (preferred, {r.get("name") for r in listing.get("resources", [])})
        found, missing = [], []
        for spec in kind_table.KINDS:
            entry = served.get(spec.group)
            if entry is not None and spec.resource in entry[1]:
                found.append((spec, entry[0]))
            else:
                missing.append(f"{spec.group or 'core'}/{spec.kind}")
        return found, missing

    def pages(self, spec: kind_table.KindSpec, version: str) -> Iterator[list[dict[str, Any]]]:
        """Every object of a kind, cluster-wide, one page (`limit`) at a time."""
        from kubernetes.client.exceptions import ApiException

        base = f"/api/{version}" if not spec.group else f"/apis/{spec.group}/{version}"
        path = f"{base}/{spec.resource}"
        token = ""
        while True:
            query: list[tuple[str, Any]] = [("limit", self.settings.pageSize)]
            if token:
                query.append(("continue", token))
            try:
                page = self._get(path, query)
            except ApiException as exc:
                if exc.status == 410:
                    raise ListExpired(f"{path}: the continue token expired (410 Gone)") from exc
                raise
            items = [item for item in page.get("items") or [] if isinstance(item, dict)]
            api_version = f"{spec.group}/{version}" if spec.group else version
            for item in items:  # list items of built-in kinds omit apiVersion and kind
                item.setdefault("apiVersion", api_version)
                item.setdefault("kind", spec.kind)
            yield items
            token = str((page.get("metadata") or {}).get("continue") or "")
            if not token:
                return

    # -- one pass --------------------------------------------------------------
    async def _evaluate(self, obj: dict[str, Any], spec: kind_table.KindSpec, version: str,
                        now: float) -> dict[str, Any] | None:
        eng = self.current_engine()
        meta = obj.get("metadata")
        meta = meta if isinstance(meta, dict) else {}
        request = admission.synthetic_request(
            obj, user=SCAN_USER, uid=f"scan:{meta.get('uid') or meta.get('name') or ''}")
        decision = await eng.evaluate(request, engine.VALIDATE)
        if decision.skipped:
            return None
        policies = [name for name, _mode in decision.evaluated]
        violations = [{"policy": f.policy, "mode": f.mode, "message": f.message, "path": f.path,
                       "container": f.container, "error": f.error}
                      for f in decision.findings if not f.exception]  # excepted: not failing
        return {"group": spec.group, "kind": spec.kind, "namespace": request.namespace,
                "name": request.name, "api_version": str(obj.get("apiVersion")),
                "uid": str((obj.get("metadata") or {}).get("uid") or ""),
                "scanned_at": now, "policies": policies,
                "violations": violations}

    async def run_once(self) -> ScanSummary:
        summary = ScanSummary(started=time.time())
        kinds, summary.missing = await asyncio.to_thread(self.discover)
        if summary.missing:
            log.info("scan: not served by this cluster, skipped: %s", ", ".join(summary.missing))
        for spec, version in kinds:
            label = f"{spec.group or 'core'}/{spec.kind}"
            started = time.time()
            pages = self.pages(spec, version)
            try:
                while True:
                    page = await asyncio.to_thread(next, pages, None)
                    if page is None:
                        break
                    summary.pages += 1
                    rows = []
                    for obj in page:
                        if controlled_by_workload(obj):
                            summary.skipped += 1
                            continue
                        row = await self._evaluate(obj, spec, version, started)
                        if row is None:
                            summary.skipped += 1
                            continue
                        rows.append(row)
                        summary.objects += 1
                        summary.failing += bool(row["violations"])
                        for hook in self.on_failing if row["violations"] else ():
                            hook(row)
                    if rows:
                        await asyncio.to_thread(self.store.upsert_scan, rows)
            except Exception as exc:  # one kind failing must not stop the others
                log.error("scan: listing %s failed, keeping its previous results: %s", label, exc)
                summary.failed[label] = str(exc)
                continue
            summary.kinds.append(label)
            summary.removed += await asyncio.to_thread(self.store.forget_scan, spec.group,
                                                       spec.kind, started)
        # A kind the cluster no longer serves (its CRD was deleted, and with it every
        # object of the kind) has no objects left: its earlier results are gone too.
        served = {(spec.group, spec.kind) for spec, _version in kinds}
        for spec in kind_table.KINDS:
            if (spec.group, spec.kind) not in served:
                summary.removed += await asyncio.to_thread(self.store.forget_scan, spec.group,
                                                           spec.kind, summary.started)
        metrics.SCAN_OBJECTS.labels("fail").set(summary.failing)
        metrics.SCAN_OBJECTS.labels("pass").set(summary.objects - summary.failing)
        log.info("scan: %d objects in %d kinds, %d failing, %d skipped, %d removed",
                 summary.objects, len(summary.kinds), summary.failing, summary.skipped,
                 summary.removed)
        self.last = summary
        for after in self.after:
            try:
                await after(summary)
            except Exception as exc:  # a hook failing must not fail the scan
                log.error("scan: %s failed: %s", getattr(after, "__qualname__", after), exc)
        return summary

    async def loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("scan failed, next try in %.0fs: %s", self.settings.interval, exc)
            await asyncio.sleep(self.settings.interval)
