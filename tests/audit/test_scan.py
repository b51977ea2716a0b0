"""The cluster scan with the real `kubernetes` client against a stand-in API server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.audit import apiserver, records
from webhook.audit import kube, scan, settings, store


def run_scan(state: apiserver.ApiState, tmp_path: Path, db: store.Store,
             page_size: int = 2) -> scan.ScanSummary:
    eng = records.default_engine()
    with apiserver.running_apiserver(state, tmp_path) as (_, kubeconfig):
        scanner = scan.Scanner(kube.api_client(str(kubeconfig)), lambda: eng, db,
                               settings.ScanSettings(pageSize=page_size))
        return asyncio.run(scanner.run_once())


def test_scan_pages_discovers_and_reports_violations(tmp_path: Path) -> None:
    state = apiserver.load_state()
    db = store.open_store(f"sqlite:///{tmp_path / 'j.db'}")
    summary = run_scan(state, tmp_path, db)

    # Discovery: CRDs that are not installed are skipped, the rest listed.
    assert "kubeflow.org/TFJob" in summary.missing and "ray.io/RayCluster" in summary.missing
    assert "jobset.x-k8s.io/JobSet" in summary.missing
    assert {"core/Pod", "apps/Deployment", "kubeflow.org/PyTorchJob"} <= set(summary.kinds)
    assert not summary.failed
    # Pagination: 5 pods in pages of 2 -> 3 requests, the 2nd and 3rd with `continue`.
    pod_lists = [q for method, path, q in state.requests if path == "/api/v1/pods"]
    assert [q["limit"] for q in pod_lists] == [["2"]] * 3
    assert ["continue" in q for q in pod_lists] == [False, True, True]
    # Every list request is bounded by the page size.
    lists = [q for method, path, q in state.requests if path in state.lists]
    assert lists and all(q.get("limit") == ["2"] for q in lists)

    results = {(r["kind"], r["namespace"], r["name"]): r for r in db.scan_results()}
    # Exempt (kube-system) and controlled objects (RS of a Deployment, its Pods) skipped.
    assert ("Pod", "kube-system", "coredns-1") not in results
    assert ("Pod", "team-b", "web-7d9f-abcde") not in results
    assert ("ReplicaSet", "team-b", "web-7d9f") not in results
    assert summary.skipped == 3
    assert results[("Pod", "team-a", "good-gpu")]["violations"] == []
    assert {v["policy"] for v in results[("Pod", "team-a", "no-limits")]["violations"]} == {
        "require-limits"}
    job = results[("PyTorchJob", "ml", "bert")]
    assert job["api_version"] == "kubeflow.org/v1"
    assert any("Worker" in v["message"] for v in job["violations"])
    assert results[("Deployment", "team-b", "web")]["violations"]
    assert results[("Pod", "team-a", "good-gpu")]["api_version"] == "v1"
    assert "require-limits" in results[("Pod", "team-a", "good-gpu")]["policies"]
    assert summary.objects == 5 and summary.failing == 4

    # The next scan: a pod was deleted and the PyTorchJob fixed.
    state.requests.clear()
    state.lists["/api/v1/pods"]["items"] = [
        p for p in state.lists["/api/v1/pods"]["items"] if p["metadata"]["name"] != "notebook"]
    worker = state.lists["/apis/kubeflow.org/v1/pytorchjobs"]["items"][0]["spec"][
        "pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]
    worker["resources"]["limits"] = dict(worker["resources"]["requests"])
    second = run_scan(state, tmp_path, db)
    results = {(r["kind"], r["namespace"], r["name"]): r for r in db.scan_results()}
    assert ("Pod", "team-b", "notebook") not in results
    assert second.removed == 1
    assert results[("PyTorchJob", "ml", "bert")]["violations"] == []
    db.close()


def test_a_failing_list_keeps_the_previous_results_of_that_kind(tmp_path: Path) -> None:
    state = apiserver.load_state()
    db = store.open_store(f"sqlite:///{tmp_path / 'j.db'}")
    run_scan(state, tmp_path, db)
    before = {r["name"] for r in db.scan_results(kind="PyTorchJob")}
    del state.lists["/apis/kubeflow.org/v1/pytorchjobs"]  # now answers 404
    summary = run_scan(state, tmp_path, db)
    assert "kubeflow.org/PyTorchJob" in summary.failed
    assert {r["name"] for r in db.scan_results(kind="PyTorchJob")} == before == {"bert"}
    db.close()


def test_a_kind_no_longer_served_loses_its_results(tmp_path: Path) -> None:
    """A deleted CRD takes its objects with it: once discovery no longer lists the kind,
    the scan forgets its results (not kept as if the objects still ran)."""
    state = apiserver.load_state()
    db = store.open_store(f"sqlite:///{tmp_path / 'j.db'}")
    run_scan(state, tmp_path, db)
    assert {r["name"] for r in db.scan_results(kind="PyTorchJob")} == {"bert"}
    groups = state.discovery["/apis"]["groups"]
    state.discovery["/apis"]["groups"] = [g for g in groups if g["name"] != "kubeflow.org"]
    del state.discovery["/apis/kubeflow.org/v1"]
    summary = run_scan(state, tmp_path, db)
    assert "kubeflow.org/PyTorchJob" in summary.missing and not summary.failed
    assert db.scan_results(kind="PyTorchJob") == []
    assert summary.removed == 1
    assert db.scan_results(kind="Pod")  # other kinds keep theirs
    db.close()


# The wgpolicyk8s.io/v1alpha2 CRD's openAPIV3Schema (PolicyReport; ClusterPolicyReport is the
# same without a namespace), written from the fields the CRD documents.
_OBJECT_REFERENCE = {"type": "object", "properties": {
    "apiVersion": {"type": "string"}, "fieldPath": {"type": "string"},
    "kind": {"type": "string"}, "name": {"type": "string"}, "namespace": {"type": "string"},
    "resourceVersion": {"type": "string"}, "uid": {"type": "string"}},
    "additionalProperties": False}
_RESULT = {"type": "object", "required": ["policy"], "additionalProperties": False,
           "properties": {
               "category": {"type": "string"}, "message": {"type": "string"},
               "policy": {"type": "string"},
               "properties": {"type": "object", "additionalProperties": {"type": "string"}},
               "resourceSelector": {"type": "object"},
               "resources": {"type": "array", "items": _OBJECT_REFERENCE},
               "result": {"type": "string", "enum": ["pass", "fail", "warn", "error", "skip"]},
               "rule": {"type": "string"}, "scored": {"type": "boolean"},
               "severity": {"type": "string",
                            "enum": ["critical", "high", "low", "medium", "info"]},
               "source": {"type": "string"},
               "timestamp": {"type": "object", "required": ["nanos", "seconds"],
                             "additionalProperties": False,
                             "properties": {"nanos": {"type": "integer", "minimum": 0,
                                                      "maximum": 999_999_999},
                                            "seconds": {"type": "integer"}}}}}
_SUMMARY = {"type": "object", "additionalProperties": False,
            "properties": {k: {"type": "integer"} for k in ("error", "fail", "pass", "skip",
                                                             "warn")}}
POLICY_REPORT_SCHEMA = {
    "type": "object", "required": ["apiVersion", "kind", "metadata"],
    "additionalProperties": False,
    "properties": {"apiVersion": {"const": "wgpolicyk8s.io/v1alpha2"},
                   "kind": {"enum": ["PolicyReport", "ClusterPolicyReport"]},
                   "metadata": {"type": "object", "required": ["name"]},
                   "results": {"type": "array", "items": _RESULT},
                   "scope": _OBJECT_REFERENCE, "scopeSelector": {"type": "object"},
                   "summary": _SUMMARY}}


def test_policy_reports_validate_against_the_crd_schema(tmp_path: Path) -> None:
    import jsonschema

    from webhook.audit import report

    db = store.open_store(f"sqlite:///{tmp_path / 'j.db'}")
    run_scan(apiserver.load_state(), tmp_path, db)
    listing = report.policy_reports(db)
    db.close()
    assert listing["kind"] == "List"
    by_namespace = {item["metadata"].get("namespace"): item for item in listing["items"]}
    assert set(by_namespace) == {"team-a", "team-b", "ml"}
    for item in listing["items"]:
        jsonschema.validate(item, POLICY_REPORT_SCHEMA)
        assert item["kind"] == "PolicyReport"
        assert sum(item["summary"].values()) == len(item["results"])
    team_a = by_namespace["team-a"]
    failing = [r for r in team_a["results"] if r["result"] == "fail"]
    assert [r["resources"][0]["name"] for r in failing] == ["no-limits"]
    assert failing[0]["policy"] == "require-limits" and failing[0]["severity"] == "high"
    passing = {(r["resources"][0]["name"], r["policy"]) for r in team_a["results"]
               if r["result"] == "pass"}
    assert ("good-gpu", "require-limits") in passing
    assert team_a["summary"]["fail"] == 1
    # A wrong result value is caught by the schema (the check can fail).
    broken = {**team_a, "results": [{**failing[0], "result": "failed"}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, POLICY_REPORT_SCHEMA)
