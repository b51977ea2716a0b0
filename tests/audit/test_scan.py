"""The cluster scan with the real `kubernetes` client against a real kube-apiserver of its
own (tests/audit/cluster.py), and through a proxy that fails some lists on purpose.

tests/e2e/test_scan.py runs the scan inside `mlgate serve` as the chart's ServiceAccount;
here the Scanner runs in the test, so each request and each summary can be checked.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from tests.audit import apiserver, cluster, records
from tests.e2e.controlplane import ControlPlane
from tests.kube import Sent, Spy
from webhook.audit import kube, scan, settings, store


def run_scan(kubeconfig: Path, db: store.Store, page_size: int = 2,
             spy: Spy | None = None) -> scan.ScanSummary:
    eng = records.default_engine()
    client = (spy or Spy()).wrap(kube.api_client(str(kubeconfig)))
    with client:
        scanner = scan.Scanner(client, lambda: eng, db,
                               settings.ScanSettings(pageSize=page_size))
        return asyncio.run(scanner.run_once())


def is_list(sent: Sent) -> bool:
    """/api/v1/<resource> or /apis/<group>/<version>/<resource> (not discovery)."""
    return sent.path.count("/") == (3 if sent.path.startswith("/api/") else 4)


def test_scan_pages_discovers_and_reports_violations(scan_cluster: ControlPlane,
                                                     tmp_path: Path) -> None:
    plane = scan_cluster
    db = store.open_store(f"sqlite:///{tmp_path / 'j.db'}")
    spy = Spy()
    summary = run_scan(plane.kubeconfig, db, spy=spy)

    # Discovery: CRDs that are not installed are skipped, the rest listed.
    assert "kubeflow.org/TFJob" in summary.missing and "ray.io/RayCluster" in summary.missing
    assert "jobset.x-k8s.io/JobSet" in summary.missing
    assert {"core/Pod", "apps/Deployment", "kubeflow.org/PyTorchJob"} <= set(summary.kinds)
    assert not summary.failed
    assert all(sent.status == 200 for sent in spy.requests)
    # Pagination: 5 pods in pages of 2 -> 3 requests, the 2nd and 3rd with `continue`.
    pod_lists = [sent.query for sent in spy.sent("GET") if sent.path == "/api/v1/pods"]
    assert [q["limit"] for q in pod_lists] == [["2"]] * 3
    assert ["continue" in q for q in pod_lists] == [False, True, True]
    # Every list request is bounded by the page size.
    lists = [sent.query for sent in spy.sent("GET") if is_list(sent)]
    assert lists and all(q.get("limit") == ["2"] for q in lists)
    assert summary.pages == len(lists)

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
    plane.kubectl("delete", "pod", "notebook", "-n", "team-b", "--wait=false")
    limits = {"cpu": "1", "memory": "2Gi", "nvidia.com/gpu": "1"}
    plane.kubectl("patch", "pytorchjob", "bert", "-n", "ml", "--type=json", "-p", json.dumps([{
        "op": "replace", "value": limits,
        "path": "/spec/pytorchReplicaSpecs/Worker/template/spec/containers/0/resources/limits"}]))
    second = run_scan(plane.kubeconfig, db)
    results = {(r["kind"], r["namespace"], r["name"]): r for r in db.scan_results()}
    assert ("Pod", "team-b", "notebook") not in results
    assert second.removed == 1
    assert results[("PyTorchJob", "ml", "bert")]["violations"] == []
    assert second.objects == 4 and second.failing == 2
    db.close()


@pytest.mark.parametrize(("fault", "label", "message"), [
    ("fail", "kubeflow.org/PyTorchJob", "etcdserver: request timed out"),
    ("expire", "core/Pod", "the continue token expired (410 Gone)"),
])
def test_a_failing_list_keeps_the_previous_results_of_that_kind(
        scan_cluster: ControlPlane, tmp_path: Path, fault: str, label: str,
        message: str) -> None:
    """A list the API server fails (500 for one kind while discovery still serves it, or
    a `continue` token expired between two pages): that kind keeps its previous results,
    the other kinds are scanned as usual."""
    db = store.open_store(f"sqlite:///{tmp_path / 'j.db'}")
    run_scan(scan_cluster.kubeconfig, db)
    kind = label.split("/")[1]
    before = {r["name"] for r in db.scan_results(kind=kind)}
    faults = apiserver.Faults()
    if fault == "fail":
        faults.fail["/apis/kubeflow.org/v1/pytorchjobs"] = 500
    else:
        faults.expire_continue.add("/api/v1/pods")
    with apiserver.misbehaving(scan_cluster, tmp_path, faults) as kubeconfig:
        summary = run_scan(kubeconfig, db)
    assert faults.failed, "the fault was never hit"
    assert list(summary.failed) == [label]
    assert message in summary.failed[label]
    assert {r["name"] for r in db.scan_results(kind=kind)} == before and before
    assert "apps/Deployment" in summary.kinds and summary.removed == 0
    db.close()


def test_a_kind_no_longer_served_loses_its_results(scan_cluster: ControlPlane,
                                                   tmp_path: Path) -> None:
    """A deleted CRD takes its objects with it: once discovery no longer lists the kind,
    the scan forgets its results (not kept as if the objects still ran). Last in this
    module: the CRD does not come back."""
    db = store.open_store(f"sqlite:///{tmp_path / 'j.db'}")
    run_scan(scan_cluster.kubeconfig, db)
    assert {r["name"] for r in db.scan_results(kind="PyTorchJob")} == {"bert"}
    scan_cluster.kubectl("delete", "crd", cluster.PYTORCHJOBS, "--timeout=60s", timeout=90)
    deadline = time.monotonic() + 30
    while True:  # discovery may serve the group a moment longer: the list fails meanwhile
        summary = run_scan(scan_cluster.kubeconfig, db)
        if "kubeflow.org/PyTorchJob" in summary.missing or time.monotonic() > deadline:
            break
        assert db.scan_results(kind="PyTorchJob"), "forgotten while still served"
        time.sleep(0.5)
    assert "kubeflow.org/PyTorchJob" in summary.missing and not summary.failed
    assert db.scan_results(kind="PyTorchJob") == []
    assert summary.removed == 1
    assert db.scan_results(kind="Pod")  # other kinds keep theirs
    db.close()
