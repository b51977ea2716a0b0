"""PolicyReports written by the cluster scan into the real API server, read with kubectl.

The module installs the wgpolicyk8s.io CRDs from ../shared/crds/policy-reports, gives the
session release's ClusterRole the rules the chart renders with `policyReports.enabled=true`
(`helm template ... | kubectl apply`: the Service swap of the release stays untouched), and
restarts `mlgate serve` with the scan every 2 s and the reports on. At the end the default
RBAC and configuration are put back and the CRDs (with every report) deleted.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e import cluster
from tests.e2e.cluster import Mlgate
from tests.e2e.conftest import base_config
from tests.e2e.controlplane import ROOT, binary
from tests.e2e.test_apply import LIMITED_GPU, NO_LIMITS, apply, pod
from tests.e2e.test_events import events, wait_for

REPORT = "mlgate-policyreport"
# The version Policy Reporter reads (the CRD's preferred version, which plain `policyreports`
# gets, is v1beta1: same schema, so the API server serves either).
V1ALPHA2 = "policyreports.v1alpha2.wgpolicyk8s.io"


def chart_rbac(gate: Mlgate, *sets: str) -> None:
    """Apply the chart's RBAC objects for this release, rendered with `sets`."""
    rendered = subprocess.run(
        [str(binary("helm")), "template", gate.release, str(cluster.CHART), "--namespace",
         gate.namespace, "--show-only", "templates/rbac.yaml", "--set",
         f"service.port={gate.port}", *sets],
        text=True, capture_output=True, env=gate.plane.env, timeout=60, check=True).stdout
    gate.plane.kubectl("apply", "-f", "-", input=rendered)


def scan_config(gate: Mlgate, mode: str = "enforce", max_results: int = 1000) -> dict[str, Any]:
    config = base_config(gate)
    config["audit"]["scan"] |= {"enabled": True, "interval": "2s"}
    config["audit"]["policyReports"] = {"enabled": True, "maxResults": max_results}
    config.setdefault("policies", {}).setdefault("require-limits", {})["mode"] = mode
    return config


RUNTIME = "trainer/trainer.kubeflow.org_clustertrainingruntimes.yaml"  # a cluster-scoped kind


@pytest.fixture(scope="module")
def scanning(release: Mlgate, shared: Path) -> Iterator[Mlgate]:
    before = set(release.plane.kubectl("get", "crd", "-o", "name").stdout.split())
    files = [*sorted((shared / "crds" / "policy-reports").glob("*.yaml")),
             shared / "crds" / RUNTIME]
    names = [n for n in cluster.install_crds(release.plane, files)
             if f"customresourcedefinition.apiextensions.k8s.io/{n}" not in before]
    chart_rbac(release, "--set", "policyReports.enabled=true")
    release.stop()
    release.config_file.write_text(yaml.safe_dump(scan_config(release)))
    release.start()
    try:
        yield release
    finally:
        release.stop()
        release.config_file.write_text(yaml.safe_dump(base_config(release)))
        chart_rbac(release)
        release.start()
        if names:  # only the CRDs this module added
            release.plane.kubectl("delete", "crd", *names, "--wait=false")


def admitted(gate: Mlgate, namespace: str, pods: dict[str, dict[str, Any]],
             max_results: int = 1000) -> None:
    """Create pods that enforce mode would deny (require-limits in warn meanwhile), then
    enforce again so that the scan reports them as failing."""
    gate.configure(scan_config(gate, "warn", max_results))
    for name, resources in pods.items():
        apply(gate, namespace, pod(name, resources), check=True)
    gate.configure(scan_config(gate, "enforce", max_results))


def reports(gate: Mlgate) -> list[dict[str, Any]]:
    out = gate.plane.kubectl("get", V1ALPHA2, "-A", "-o", "yaml", "--show-managed-fields").stdout
    items: list[dict[str, Any]] = yaml.safe_load(out)["items"]
    return items


def report_in(gate: Mlgate, namespace: str) -> dict[str, Any] | None:
    found = [r for r in reports(gate) if r["metadata"]["namespace"] == namespace]
    assert len(found) <= 1, found
    return found[0] if found else None


def wait_report(gate: Mlgate, namespace: str,
                ready: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        report = report_in(gate, namespace)
        return report if report is not None and ready(report) else None
    report: dict[str, Any] = wait_for(f"the PolicyReport of {namespace}", probe)
    return report


def names(report: dict[str, Any]) -> dict[str, str]:
    return {r["resources"][0]["name"]: r["result"] for r in report["results"]}


def test_the_scan_writes_a_policy_report_per_namespace(scanning: Mlgate, namespace: str) -> None:
    admitted(scanning, namespace, {"fits": LIMITED_GPU, "nolimits": NO_LIMITS})
    report = wait_report(scanning, namespace, lambda r: r.get("summary", {}).get("fail") == 1)
    print(f"--- kubectl get {V1ALPHA2} {REPORT} -n {namespace} -o yaml\n"
          + scanning.plane.kubectl("get", V1ALPHA2, REPORT, "-n", namespace, "-o", "yaml").stdout)
    assert report["apiVersion"] == "wgpolicyk8s.io/v1alpha2"
    assert report["metadata"]["name"] == REPORT
    assert report["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "mlgate"}
    assert report["summary"] == {"pass": 1, "fail": 1, "warn": 0, "error": 0, "skip": 0}
    assert names(report) == {"fits": "pass", "nolimits": "fail"}
    (failed,) = [r for r in report["results"] if r["result"] == "fail"]
    assert failed["policy"] == "require-limits" and failed["source"] == "mlgate"
    assert failed["severity"] == "high" and "resources.limits.cpu" in failed["message"]
    assert failed["resources"] == [{"apiVersion": "v1", "kind": "Pod", "name": "nolimits",
                                    "namespace": namespace}]
    assert failed["properties"]["containers"] == "trainer"
    managers = {(m["manager"], m["operation"]) for m in report["metadata"]["managedFields"]}
    assert managers == {("mlgate", "Apply")}
    # short name, as Policy Reporter users type it
    listed = scanning.plane.kubectl("get", "polr", "-n", namespace).stdout
    assert REPORT in listed


def test_a_scan_finding_is_an_event_on_the_object(scanning: Mlgate, namespace: str) -> None:
    admitted(scanning, namespace, {"nolimits": NO_LIMITS})
    uid = cluster.get_json(scanning.plane, "pod", "nolimits", "-n", namespace)["metadata"]["uid"]
    selector = "--field-selector=reason=PolicyViolation,involvedObject.name=nolimits"
    (event,) = wait_for("the PolicyViolation event", lambda: events(scanning, namespace,
                                                                   selector))
    assert event["type"] == "Warning" and event["action"] == "Scan"
    assert event["involvedObject"] == {"apiVersion": "v1", "kind": "Pod", "name": "nolimits",
                                       "namespace": namespace, "uid": uid}
    assert event["message"].startswith("violates require-limits: [require-limits] Pod ")
    described = scanning.plane.kubectl("describe", "pod", "nolimits", "-n", namespace).stdout
    assert "PolicyViolation" in described, described


def test_the_report_is_updated_in_place_and_removed_when_empty(scanning: Mlgate,
                                                                namespace: str) -> None:
    admitted(scanning, namespace, {"fits": LIMITED_GPU, "nolimits": NO_LIMITS})
    first = wait_report(scanning, namespace, lambda r: len(r.get("results", [])) == 2)
    scanning.plane.kubectl("delete", "pod", "fits", "-n", namespace, "--grace-period=0",
                           "--force")
    second = wait_report(scanning, namespace, lambda r: len(r.get("results", [])) == 1)
    assert second["metadata"]["uid"] == first["metadata"]["uid"]  # the same object, updated
    assert int(second["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
    assert names(second) == {"nolimits": "fail"}
    assert second["summary"]["pass"] == 0 and second["summary"]["fail"] == 1
    scanning.plane.kubectl("delete", "pod", "nolimits", "-n", namespace, "--grace-period=0",
                           "--force")
    wait_for("the empty report to be deleted", lambda: report_in(scanning, namespace) is None)
    time.sleep(4)  # two more scans: it stays deleted
    assert report_in(scanning, namespace) is None


def test_results_are_capped_and_the_summary_counts_them_all(scanning: Mlgate,
                                                            namespace: str) -> None:
    pods = {"fits": LIMITED_GPU} | {f"nolimits-{i}": NO_LIMITS for i in range(4)}
    admitted(scanning, namespace, pods, max_results=2)
    report = wait_report(scanning, namespace, lambda r: r.get("summary", {}).get("fail") == 4)
    assert report["summary"] == {"pass": 1, "fail": 4, "warn": 0, "error": 0, "skip": 0}
    assert len(report["results"]) == 2
    assert {r["result"] for r in report["results"]} == {"fail"}  # failures kept first
    note = report["metadata"]["annotations"]["mlgate.io/results-truncated"]
    assert note.startswith("2 of 5 results kept (audit.policyReports.maxResults)")
    scanning.configure(scan_config(scanning, "enforce", 1000))
    full = wait_report(scanning, namespace, lambda r: len(r.get("results", [])) == 5)
    assert "annotations" not in full["metadata"]  # the note goes with the cut (apply)


def test_cluster_scoped_objects_go_to_the_cluster_policy_report(scanning: Mlgate) -> None:
    runtime = (ROOT / "tests" / "fixtures" / "workloads" / "clustertrainingruntime.yaml")
    gate, plane = scanning, scanning.plane
    gate.configure(scan_config(gate, "warn"))
    plane.kubectl("apply", "-f", str(runtime))
    gate.configure(scan_config(gate, "enforce"))
    try:
        def probe() -> dict[str, Any] | None:
            out = plane.kubectl("get", "clusterpolicyreports.v1alpha2.wgpolicyk8s.io",
                                "-o", "yaml").stdout
            found = [r for r in yaml.safe_load(out)["items"]
                     if r["metadata"]["name"] == "mlgate-clusterpolicyreport"
                     and r.get("summary", {}).get("fail")]
            return found[0] if found else None
        report = wait_for("the ClusterPolicyReport", probe)
        (result,) = [r for r in report["results"] if r["result"] == "fail"]
        assert result["resources"] == [{"apiVersion": "trainer.kubeflow.org/v1alpha1",
                                        "kind": "ClusterTrainingRuntime",
                                        "name": "deepspeed-distributed"}]
        assert "namespace" not in report["metadata"]
    finally:
        plane.kubectl("delete", "-f", str(runtime), "--ignore-not-found")
    wait_for("the empty ClusterPolicyReport to be deleted", lambda: not yaml.safe_load(
        plane.kubectl("get", "clusterpolicyreports", "-o", "yaml").stdout)["items"])
