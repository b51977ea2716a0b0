"""Reinvocation through the real API server (issue 9, point 7).

An in-tree MutatingAdmissionPolicy adds a log-shipping sidecar to Pods that carry the GPU
toleration, i.e. only after mlgate has mutated them. mlgate's webhook has
`reinvocationPolicy: IfNeeded`, so the API server calls it once more on the changed
object: the sidecar gets mlgate's defaults, the rest of the Pod is left alone, and the
validating webhook judges the final object.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import yaml

from tests.e2e.cluster import Mlgate
from tests.e2e.test_apply import GPU, LIMITED_GPU, apply, pod, stored
from tests.e2e.test_updates import TOLERATION, decisions

POLICY = "e2e-gpu-log-shipper"
SIDECAR = "log-shipper"
DEFAULTS = {"requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "500m", "memory": "256Mi"}}


def admission_policy(namespace: str) -> str:
    """The policy and its binding (bound to one namespace: nothing else is touched)."""
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingAdmissionPolicy",
        "metadata": {"name": POLICY},
        "spec": {
            "matchConstraints": {"resourceRules": [{
                "apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                "resources": ["pods"]}]},
            "failurePolicy": "Fail",
            "reinvocationPolicy": "IfNeeded",
            # A policy whose matchConditions are false is not "invoked", and only invoked
            # policies are reinvoked: so it always matches, and adds the sidecar only once
            # the Pod carries the GPU toleration (which mlgate adds).
            "variables": [{"name": "tolerated", "expression": (
                "has(object.spec.tolerations) && object.spec.tolerations"
                f".exists(t, has(t.key) && t.key == '{GPU}')")}],
            "mutations": [{"patchType": "ApplyConfiguration", "applyConfiguration": {
                "expression": "variables.tolerated ? Object{spec: Object.spec{containers: ["
                              f"Object.spec.containers{{name: '{SIDECAR}', "
                              "image: 'fluent/fluent-bit:3.0'}]}} : Object{}"}}],
        }}
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingAdmissionPolicyBinding", "metadata": {"name": POLICY},
        "spec": {"policyName": POLICY, "matchResources": {"namespaceSelector": {
            "matchLabels": {"kubernetes.io/metadata.name": namespace}}}}}
    return yaml.safe_dump_all([policy, binding])


@pytest.fixture
def sidecar_policy(gate: Mlgate, namespace: str) -> Iterator[str]:
    """The policy in place for this test's namespace; removed afterwards."""
    try:
        gate.plane.kubectl("apply", "-f", "-", input=admission_policy(namespace))
        # Policies take effect asynchronously: probe with a server dry run until it acts.
        deadline = time.monotonic() + 30
        while True:
            probe = apply(gate, namespace, pod("probe", LIMITED_GPU), "--dry-run=server",
                          "-o", "json")
            if f'container "{SIDECAR}"' in probe.stderr or (probe.returncode == 0 and SIDECAR in [
                    c["name"] for c in json.loads(probe.stdout)["spec"]["containers"]]):
                break
            assert time.monotonic() < deadline, "the MutatingAdmissionPolicy never acted"
            time.sleep(0.5)
        yield namespace
    finally:
        gate.plane.kubectl("delete", "mutatingadmissionpolicybinding,mutatingadmissionpolicy",
                           POLICY, "--ignore-not-found")


def with_default_limits(gate: Mlgate) -> None:
    config = yaml.safe_load(gate.config_file.read_text())
    config["policies"]["default-resources"] = {"mode": "enforce",
                                               "params": {"default": DEFAULTS}}
    gate.configure(config)


def test_mlgate_is_called_again_for_a_container_added_after_it(gate: Mlgate,
                                                               sidecar_policy: str) -> None:
    namespace = sidecar_policy
    with_default_limits(gate)
    apply(gate, namespace, pod("train", LIMITED_GPU), check=True)
    spec = stored(gate, namespace, "pod", "train")["spec"]

    assert [c["name"] for c in spec["containers"]] == ["trainer", SIDECAR]
    trainer, sidecar = spec["containers"]
    assert sidecar["image"] == "fluent/fluent-bit:3.0"
    assert sidecar["resources"] == DEFAULTS  # mlgate's defaults, from the second call
    assert trainer["resources"]["limits"] == LIMITED_GPU["limits"]
    assert trainer["resources"]["requests"] == {"cpu": "4", "memory": "16Gi", GPU: "1"}
    assert spec["tolerations"].count(TOLERATION) == 1

    # Exactly two mutating calls for the Pod that was stored (no loop), the second only
    # completing the sidecar; one validating call, on the final object, allowed.
    journal = [r for r in decisions(gate, namespace, "train", 3) if not r["dry_run"]]
    mutations = [r for r in journal if r["phase"] == "mutate"]
    # (the API server had already defaulted the trainer's requests to its limits)
    assert [r["mutated_by"] for r in mutations] == [
        ["gpu-tolerations"], ["default-resources"]], journal
    assert [r["decision"] for r in journal if r["phase"] == "validate"] == ["allowed"]

    # A third pass over what was stored changes nothing.
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "third-pass", "operation": "CREATE", "namespace": namespace, "name": "train",
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "userInfo": {"username": "e2e"}, "object": stored(gate, namespace, "pod", "train")}}
    with gate.client() as client:
        answer = client.post("/mutate", json=review).json()["response"]
    assert answer["allowed"] and "patch" not in answer, answer


def test_the_validating_webhook_judges_the_container_added_after_mlgate(
        gate: Mlgate, sidecar_policy: str) -> None:
    """Without default limits the sidecar gets only requests from mlgate's second call,
    and the validating webhook, which sees the final object, refuses it by name."""
    namespace = sidecar_policy
    result = apply(gate, namespace, pod("train", LIMITED_GPU))
    assert result.returncode == 1, result.stdout
    assert (f'[require-limits] Pod {namespace}/train /spec container "{SIDECAR}": '
            f"no cpu limit") in result.stderr
    assert 'container "trainer"' not in result.stderr
    assert json.loads(gate.plane.kubectl("get", "pods", "-n", namespace, "-o", "json")
                      .stdout)["items"] == []
