"""The cluster scan against the real API server (issue 9, point 11).

A control plane of its own: the test removes a CRD, which must not happen to the session
cluster that other tests use. mlgate is installed by the chart and scans as the chart's
ServiceAccount (so the chart's read-only RBAC is what lists the cluster), in pages of two.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e import cluster, controlplane
from tests.e2e.test_apply import GPU, LIMITED_GPU, NO_LIMITS, apply, pod

PAGE_SIZE = 2
PYTORCHJOBS = "pytorchjobs.kubeflow.org"


@pytest.fixture(scope="module")
def scanning(tmp_path_factory: pytest.TempPathFactory,
             shared: Path) -> Iterator[cluster.Mlgate]:
    """Own control plane, the chart installed, require-limits in audit mode, scan on."""
    root = tmp_path_factory.mktemp("scan")
    with controlplane.running(root / "plane") as plane:
        gate = cluster.install(plane, root / "mlgate")
        config = yaml.safe_load(gate.config_file.read_text())
        cluster.token_kubeconfig(plane, gate.workdir / "sa-kubeconfig",
                                 cluster.token(plane, gate.release, gate.namespace))
        config["policies"]["require-limits"]["mode"] = "audit"
        config["audit"] = {"kubernetesAuth": True, "scan": {
            "enabled": True, "interval": "2s", "pageSize": PAGE_SIZE,
            "kubeconfig": str(gate.workdir / "sa-kubeconfig")}}
        gate.config_file.write_text(yaml.safe_dump(config))
        cluster.audit_reader_token(gate)
        cluster.install_crds(plane, [
            shared / "crds" / "training-operator" / "kubeflow.org_pytorchjobs.yaml",
            shared / "crds" / "policy-reports" / "wgpolicyk8s.io_policyreports.yaml"])
        gate.start()
        try:
            yield gate
        finally:
            gate.stop()


def report(gate: cluster.Mlgate, **query: str) -> Any:
    with gate.client() as client:
        response = client.get("/audit/report", params=query, headers=gate.audit_headers())
    assert response.status_code == 200, response.text
    return response.json()


def scan_after(gate: cluster.Mlgate, moment: float, timeout: float = 30) -> dict[str, Any]:
    """The summary of the first complete scan that started after `moment`."""
    deadline = time.monotonic() + timeout
    while True:
        last = report(gate)["scan"]
        if last is not None and last["started"] > moment:
            return last
        assert time.monotonic() < deadline, f"no scan after {moment}: {last}"
        time.sleep(0.3)


def pytorchjob(name: str) -> dict[str, Any]:
    replica = {"replicas": 2, "restartPolicy": "OnFailure", "template": {"spec": {
        "containers": [{"name": "pytorch", "image": "pytorch/pytorch:2.3.0-cuda12.1",
                        "resources": {"limits": {"cpu": "4", GPU: "1"}}}]}}}
    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": name},
            "spec": {"pytorchReplicaSpecs": {"Master": copy.deepcopy(replica),
                                             "Worker": replica}}}


def deployment(name: str) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": labels}, "template": {
                "metadata": {"labels": labels}, "spec": {"containers": [
                    {"name": "web", "image": "nginx:1.27", "resources": NO_LIMITS}]}}}}


def results_of(policy_reports: dict[str, Any], namespace: str) -> dict[tuple[str, str], str]:
    """(kind, name) -> result of require-limits, from the PolicyReport of a namespace."""
    found = {}
    for item in policy_reports["items"]:
        if item["metadata"].get("namespace") != namespace:
            continue
        for result in item["results"]:
            if result["policy"] == "require-limits":
                resource = result["resources"][0]
                found[(resource["kind"], resource["name"])] = result["result"]
    return found


def test_the_scan_reports_what_audit_mode_let_in_and_survives_a_crd_removal(
        scanning: cluster.Mlgate) -> None:
    gate, plane = scanning, scanning.plane
    namespace = plane.namespace("team-a")
    # In audit mode the webhook lets all of these in, each with a journaled finding.
    for index in range(5):
        result = apply(gate, namespace, pod(f"nolimits-{index}", NO_LIMITS))
        assert result.returncode == 0 and not result.stderr, result.stderr
    apply(gate, namespace, pod("limited", LIMITED_GPU), check=True)
    apply(gate, namespace, deployment("web"), check=True)
    apply(gate, namespace, pytorchjob("bert"), check=True)
    created = time.time()

    summary = scan_after(gate, created)
    assert summary["failed"] == {}, summary
    admitted = [r for r in gate.journaled(namespace=namespace, policy="require-limits")
                if r["phase"] == "validate"]
    assert len(admitted) == 7 and all(  # allowed, with the finding recorded as audit
        r["allowed"] and {v["mode"] for v in r["violations"]} == {"audit"}
        for r in admitted), admitted
    assert {"core/Pod", "apps/Deployment", "kubeflow.org/PyTorchJob"} <= set(summary["kinds"])
    # DRA claims are listed too: the chart's RBAC grants them with the workload kinds
    assert {"resource.k8s.io/ResourceClaim", "resource.k8s.io/ResourceClaimTemplate"} <= set(
        summary["kinds"])
    assert "ray.io/RayCluster" in summary["missing"]  # CRD not installed: skipped
    # Six Pods in pages of two: the Pod list took three requests (`continue` twice); every
    # other kind fits in one page (two Deployments with the chart's own, which is exempt).
    assert summary["pages"] == len(summary["kinds"]) + 2, summary
    assert summary["objects"] == 8 and summary["failing"] == 7, summary
    violations = {(v["kind"], v["name"]): v for v in report(gate, namespace=namespace)[
        "violations"]}
    expected = {("Pod", f"nolimits-{i}") for i in range(5)} | {("Deployment", "web"),
                                                               ("PyTorchJob", "bert")}
    assert set(violations) == expected
    job = violations[("PyTorchJob", "bert")]["violations"]
    assert any("/spec/pytorchReplicaSpecs/Worker/template/spec" in v["message"]
               and "no memory limit" in v["message"] for v in job), job
    assert {v["mode"] for v in job} == {"audit"}

    # The PolicyReports: audit findings are warnings; the clean Pod passes.
    reports = report(gate, format="policyreport")
    outcomes = results_of(reports, namespace)
    assert outcomes[("Pod", "limited")] == "pass"
    assert {outcomes[key] for key in expected} == {"warn"}

    # Enforcing the policy again: the next scan calls the same objects failures.
    config = yaml.safe_load(gate.config_file.read_text())
    config["policies"]["require-limits"]["mode"] = "enforce"
    gate.configure(config)
    scan_after(gate, time.time())
    reports = report(gate, format="policyreport")
    outcomes = results_of(reports, namespace)
    assert {outcomes[key] for key in expected} == {"fail"}
    assert outcomes[("Pod", "limited")] == "pass"

    # The real PolicyReport CRD accepts mlgate's reports as they are (nothing pruned).
    ours = next(item for item in reports["items"]
                if item["metadata"].get("namespace") == namespace)
    plane.kubectl("create", "-f", "-", input=json.dumps(ours))
    kept = cluster.get_json(plane, "policyreport", "mlgate-policyreport", "-n", namespace)
    assert kept["results"] == ours["results"] and kept["summary"] == ours["summary"]

    # The CRD goes away between two scans (with its PyTorchJob): the scan goes on.
    plane.kubectl("delete", "crd", PYTORCHJOBS, "--timeout=60s", timeout=90)
    removed = time.time()
    summary = scan_after(gate, removed)
    assert summary["failed"] == {}, summary
    assert "kubeflow.org/PyTorchJob" in summary["missing"]
    assert "core/Pod" in summary["kinds"]
    violations = {(v["kind"], v["name"]) for v in report(gate, namespace=namespace)[
        "violations"]}
    assert violations == expected - {("PyTorchJob", "bert")}
    assert ("PyTorchJob", "bert") not in results_of(report(gate, format="policyreport"),
                                                    namespace)
    assert "scan failed" not in gate.output()
