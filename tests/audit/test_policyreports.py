"""The PolicyReport writer against an in-memory API (the e2e tests use the real one)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests.audit import records
from tests.e2e.controlplane import ControlPlane
from webhook import config, errors
from webhook.audit import kube, policyreports, report, scan, settings, store
from webhook.audit.kube import ApiError


class FakeApi:
    """Stores what is applied; lists by label; 404 for what is missing."""

    def __init__(self, crds: bool = True) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str, str, dict[str, Any]]] = []
        self.crds = crds

    def request(self, method: str, path: str, body: Any = None,
                query: list[tuple[str, Any]] | None = None,
                content_type: str = "application/json") -> dict[str, Any]:
        self.calls.append((method, path, content_type, dict(query or [])))
        if not self.crds:
            raise ApiError(404, "the server could not find the requested resource")
        if method == "GET":
            plural = path.rsplit("/", 1)[1]
            key, value = dict(query or [])["labelSelector"].split("=")
            return {"items": [o for p, o in self.objects.items() if f"/{plural}/" in p
                              and o["metadata"].get("labels", {}).get(key) == value]}
        if method == "PATCH":
            self.objects[path] = body
            return dict(body)
        if method == "DELETE":
            if path not in self.objects:
                raise ApiError(404, "not found")
            del self.objects[path]
            return {}
        raise AssertionError(method)


def body(kind: str, namespace: str, results: list[str]) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": policyreports.NAMES[kind],
                            "labels": {"app.kubernetes.io/managed-by": "mlgate"}}
    if namespace:
        meta["namespace"] = namespace
    entries = [{"policy": "p", "result": r, "resources": [{"name": f"o{i}"}]}
               for i, r in enumerate(results)]
    return {"apiVersion": report.REPORT_API_VERSION, "kind": kind, "metadata": meta,
            "results": entries, "summary": report._summary(entries)}


NS = "/apis/wgpolicyk8s.io/v1alpha2/namespaces"
CLUSTER = "/apis/wgpolicyk8s.io/v1alpha2/clusterpolicyreports/mlgate-clusterpolicyreport"


def test_reports_are_server_side_applied_and_stale_ones_deleted() -> None:
    api = FakeApi()
    foreign = {"metadata": {"name": "kyverno-report", "namespace": "a",
                            "labels": {"app.kubernetes.io/managed-by": "kyverno"}}}
    api.objects[f"{NS}/a/policyreports/kyverno-report"] = foreign
    writer = policyreports.Writer(api)
    done = writer.sync([body("PolicyReport", "a", ["fail"]), body("PolicyReport", "b", ["pass"]),
                        body("ClusterPolicyReport", "", ["warn"])], 100)
    assert (done.applied, done.deleted, done.truncated) == (3, 0, 0)
    patches = [c for c in api.calls if c[0] == "PATCH"]
    assert [c[1] for c in patches] == [f"{NS}/a/policyreports/mlgate-policyreport",
                                       f"{NS}/b/policyreports/mlgate-policyreport", CLUSTER]
    for _, _, content_type, query in patches:
        assert content_type == "application/apply-patch+yaml"
        assert query == {"fieldManager": "mlgate", "force": "true"}

    # Namespace b has no results any more, nor has the cluster: their reports go.
    done = writer.sync([body("PolicyReport", "a", ["fail", "pass"])], 100)
    assert (done.applied, done.deleted) == (1, 2)
    assert set(api.objects) == {f"{NS}/a/policyreports/mlgate-policyreport",
                                f"{NS}/a/policyreports/kyverno-report"}  # not ours: kept
    assert len(api.objects[f"{NS}/a/policyreports/mlgate-policyreport"]["results"]) == 2


def test_a_report_is_capped_failures_first_and_says_so() -> None:
    full = body("PolicyReport", "a", ["pass", "warn", "fail", "pass", "error", "fail"])
    capped = policyreports.cap(full, 3)
    assert [r["result"] for r in capped["results"]] == ["error", "fail", "fail"]
    assert capped["summary"] == {"pass": 2, "fail": 2, "warn": 1, "error": 1, "skip": 0}
    assert capped["metadata"]["annotations"][policyreports.TRUNCATED] == (
        "3 of 6 results kept (audit.policyReports.maxResults), failures first; the summary "
        "counts all 6")
    assert "annotations" not in full["metadata"]  # the input is left alone
    assert policyreports.cap(full, 6) is full
    api = FakeApi()
    assert policyreports.Writer(api).sync([full], 3).truncated == 1


def test_missing_crds_are_named() -> None:
    with pytest.raises(ApiError, match="PolicyReport CRDs .* are not installed"):
        policyreports.Writer(FakeApi(crds=False)).sync([], 10)


def test_the_scan_hook_writes_the_store_s_reports_when_enabled(tmp_path: Path) -> None:
    db = store.open_store(f"sqlite:///{tmp_path / 'j.db'}")
    row = {"group": "", "kind": "Pod", "namespace": "team-a", "name": "x", "api_version": "v1",
           "scanned_at": 1.5, "policies": ["require-limits"], "violations": []}
    db.upsert_scan([row])
    api = FakeApi()
    cfg = settings.PolicyReportSettings(enabled=False)
    hook = policyreports.after_scan(db, lambda: cfg, lambda: api)
    asyncio.run(hook(None))
    assert api.calls == []  # off: nothing written
    cfg = settings.PolicyReportSettings(enabled=True, maxResults=5)
    asyncio.run(hook(None))
    (written,) = api.objects.values()
    # exactly what /audit/report?format=policyreport serves
    assert written == report.policy_reports(db)["items"][0]
    db.close()


def test_reports_need_the_scan() -> None:
    with pytest.raises(errors.ConfigError, match="policyReports.enabled needs audit.scan"):
        config.from_mapping({"audit": {"policyReports": {"enabled": True}}}, environ={})
    cfg = config.from_mapping({"audit": {"policyReports": {"enabled": True, "maxResults": 7},
                                         "scan": {"enabled": True}}}, environ={})
    assert cfg.audit.policyReports.maxResults == 7
    assert cfg.audit.events.enabled  # Events are on unless switched off


def test_the_scanner_calls_its_hooks(scan_cluster: ControlPlane, tmp_path: Path) -> None:
    """A scan of a real kube-apiserver (tests/audit/cluster.py) calls every hook."""
    db = store.open_store(f"sqlite:///{tmp_path / 'j.db'}")
    eng = records.default_engine()
    failing: list[dict[str, Any]] = []
    summaries: list[scan.ScanSummary] = []

    async def after(summary: scan.ScanSummary) -> None:
        summaries.append(summary)

    async def broken(_summary: scan.ScanSummary) -> None:
        raise RuntimeError("the reports could not be written")

    with kube.api_client(str(scan_cluster.kubeconfig)) as client:
        scanner = scan.Scanner(client, lambda: eng, db, settings.ScanSettings())
        scanner.on_failing.append(failing.append)
        scanner.after += [broken, after]  # one hook failing does not stop the next
        summary = asyncio.run(scanner.run_once())
    assert summaries == [summary]
    assert len(failing) == summary.failing == 4
    no_limits = next(r for r in failing if r["name"] == "no-limits")
    stored = json.loads(scan_cluster.kubectl("get", "pod", "no-limits", "-n", "team-a",
                                             "-o", "json").stdout)
    assert no_limits["uid"] == stored["metadata"]["uid"]  # Events regard the object by uid
    db.close()
