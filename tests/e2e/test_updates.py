"""UPDATE and delete through the real API server (issue 9, points 5 and 6).

What the API server sends on UPDATE is the merged new object with the stored one as
`oldObject`; mlgate must mutate only what may change (a Deployment's template, never a
Pod's spec), deny only violations the update brings in and warn about older ones, and
never stand in the way of a finalizer's removal.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.cluster import Mlgate, install_crds
from tests.e2e.test_apply import GPU, LIMITED_GPU, NO_LIMITS, apply, pod, stored

OPT_OUT = "mlgate.io/ignore"
TOLERATION = {"key": GPU, "operator": "Exists", "effect": "NoSchedule"}
LIMITED = {"limits": {"cpu": "1", "memory": "1Gi"}}
PREEXISTING = "[already present before this update]"


def deployment(name: str, containers: list[dict[str, Any]], replicas: int = 1,
               ) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": containers}}}}


def container(name: str, resources: dict[str, Any],
              image: str = "pytorch/pytorch:2.3.0-cuda12.1") -> dict[str, Any]:
    return {"name": name, "image": image, "resources": resources}


def warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Warning:")]


def opted_out(gate: Mlgate, namespace: str) -> None:
    gate.plane.kubectl("label", "namespace", namespace, f"{OPT_OUT}=true")


def opted_in(gate: Mlgate, namespace: str) -> None:
    gate.plane.kubectl("label", "namespace", namespace, f"{OPT_OUT}-")


def decisions(gate: Mlgate, namespace: str, name: str, count: int,
              timeout: float = 10) -> list[dict[str, Any]]:
    """The journal's decisions on one object (oldest first), once at least `count` are in
    (the journal writes off the hot path)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in reversed(gate.journaled(namespace=namespace)) if r["name"] == name]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


# -- Deployment --------------------------------------------------------------------------

def test_a_changed_deployment_is_mutated_and_a_new_violation_denied(gate: Mlgate,
                                                                     namespace: str) -> None:
    first = deployment("train", [container("trainer", LIMITED_GPU)])
    apply(gate, namespace, first, check=True)
    created = stored(gate, namespace, "deployment", "train")

    # The change adds a container with limits only: mlgate gives it requests on UPDATE.
    changed = copy.deepcopy(first)
    changed["spec"]["replicas"] = 2
    changed["spec"]["template"]["spec"]["containers"].append(
        container("exporter", LIMITED, image="prom/node-exporter:v1.8.0"))
    result = apply(gate, namespace, changed, check=True)
    assert "deployment.apps/train configured" in result.stdout
    assert not warnings(result.stderr), result.stderr
    updated = stored(gate, namespace, "deployment", "train")
    spec = updated["spec"]["template"]["spec"]
    assert updated["spec"]["replicas"] == 2
    assert spec["tolerations"].count(TOLERATION) == 1  # kept from CREATE, not added twice
    exporter = spec["containers"][1]
    assert exporter["name"] == "exporter"
    assert exporter["resources"]["requests"] == {"cpu": "1", "memory": "1Gi"}
    assert spec["containers"][0]["resources"]["requests"][GPU] == "1"
    assert updated["metadata"]["generation"] == created["metadata"]["generation"] + 1

    # A change that brings in a container without limits is refused, naming that container.
    broken = copy.deepcopy(changed)
    broken["spec"]["template"]["spec"]["containers"].append(
        container("debug", NO_LIMITS, image="busybox:1.36"))
    result = apply(gate, namespace, broken)
    assert result.returncode == 1
    assert 'admission webhook "validate.mlgate.io" denied the request' in result.stderr
    assert f'[require-limits] Deployment {namespace}/train' in result.stderr
    assert 'container "debug": no memory limit' in result.stderr
    assert 'container "trainer"' not in result.stderr
    after = stored(gate, namespace, "deployment", "train")
    assert after["metadata"]["generation"] == updated["metadata"]["generation"]
    assert [c["name"] for c in after["spec"]["template"]["spec"]["containers"]] == \
        ["trainer", "exporter"]


def test_an_old_violation_of_a_deployment_warns_and_a_new_one_denies(gate: Mlgate,
                                                                      namespace: str) -> None:
    opted_out(gate, namespace)
    legacy = deployment("legacy", [container("trainer", NO_LIMITS)])
    apply(gate, namespace, legacy, check=True)  # mlgate never saw it: no limits
    opted_in(gate, namespace)

    # A label changes no pod template: mlgate leaves the template alone (changing it would
    # roll out every pod of the Deployment), the old violation is a warning.
    before = stored(gate, namespace, "deployment", "legacy")
    result = gate.plane.kubectl("label", "deployment", "legacy", "-n", namespace, "team=ml")
    assert "deployment.apps/legacy labeled" in result.stdout
    assert any('container "trainer": no cpu limit' in line and PREEXISTING in line
               for line in warnings(result.stderr)), result.stderr
    labelled = stored(gate, namespace, "deployment", "legacy")
    assert labelled["metadata"]["generation"] == before["metadata"]["generation"]
    assert labelled["spec"]["template"] == before["spec"]["template"]

    changed = copy.deepcopy(legacy)
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = \
        "pytorch/pytorch:2.4.0-cuda12.1"
    result = apply(gate, namespace, changed, check=True)
    assert "deployment.apps/legacy configured" in result.stdout
    lines = warnings(result.stderr)
    assert any(f"[require-limits] Deployment {namespace}/legacy" in line
               and 'container "trainer": no memory limit' in line and PREEXISTING in line
               for line in lines), result.stderr
    stored_spec = stored(gate, namespace, "deployment", "legacy")["spec"]["template"]["spec"]
    assert stored_spec["containers"][0]["image"] == "pytorch/pytorch:2.4.0-cuda12.1"
    # default-resources still fills the memory request the template lacked
    assert stored_spec["containers"][0]["resources"]["requests"]["memory"] == "256Mi"

    broken = copy.deepcopy(changed)
    broken["spec"]["template"]["spec"]["containers"].append(
        container("sidecar", NO_LIMITS, image="busybox:1.36"))
    result = apply(gate, namespace, broken)
    assert result.returncode == 1
    denial = result.stderr[result.stderr.index("denied the request"):]
    assert 'container "sidecar": no cpu limit' in denial
    assert 'container "trainer"' not in denial  # the old one stays a warning


# -- PyTorchJob ----------------------------------------------------------------------------

def pytorchjob(name: str, worker: dict[str, Any], workers: int = 2) -> dict[str, Any]:
    def replica(count: int, resources: dict[str, Any]) -> dict[str, Any]:
        return {"replicas": count, "restartPolicy": "OnFailure", "template": {"spec": {
            "containers": [container("pytorch", resources)]}}}
    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": name},
            "spec": {"pytorchReplicaSpecs": {"Master": replica(1, LIMITED_GPU),
                                             "Worker": replica(workers, worker)}}}


@pytest.fixture(scope="module")
def pytorchjobs(release: Mlgate, shared: Path) -> None:
    install_crds(release.plane, [shared / "crds" / "training-operator" /
                                 "kubeflow.org_pytorchjobs.yaml"])


@pytest.mark.usefixtures("pytorchjobs")
def test_a_changed_pytorchjob_is_validated_and_mutated_only_when_configured(
        gate: Mlgate, namespace: str) -> None:
    """kubectl sends a JSON merge patch for a custom resource: a list in the manifest
    (containers) replaces the stored one whole, so the requests mlgate added at CREATE are
    gone from the job after the next apply. By default mlgate does not mutate a PyTorchJob
    on UPDATE (its pods get the defaults when the operator creates them); with the kind
    in `mutateOnUpdate` an update that changes a pod template gets them back."""
    first = pytorchjob("resnet", LIMITED_GPU)
    apply(gate, namespace, first, check=True)
    worker = "/spec/pytorchReplicaSpecs/Worker/template/spec"

    def roles() -> dict[str, Any]:
        return stored(gate, namespace, "pytorchjob", "resnet")["spec"]["pytorchReplicaSpecs"]

    for role, replica in roles().items():
        assert replica["template"]["spec"]["containers"][0]["resources"]["requests"][GPU] == \
            "1", role

    changed = copy.deepcopy(first)
    changed["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] = 4
    changed["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0][
        "image"] = "pytorch/pytorch:2.4.0-cuda12.1"
    result = apply(gate, namespace, changed, check=True)
    assert "pytorchjob.kubeflow.org/resnet configured" in result.stdout
    assert not warnings(result.stderr), result.stderr
    job = roles()
    assert job["Worker"]["replicas"] == 4
    worker_spec = job["Worker"]["template"]["spec"]
    assert worker_spec["containers"][0]["image"] == "pytorch/pytorch:2.4.0-cuda12.1"
    for role in ("Master", "Worker"):
        spec = job[role]["template"]["spec"]
        # the manifest has no tolerations list, so the patch left mlgate's alone; it has
        # containers lists, and kubectl's three-way patch sets every one that differs from
        # the live object: the requests mlgate added at CREATE are gone from both roles
        assert spec["tolerations"].count(TOLERATION) == 1, role
        assert "requests" not in spec["containers"][0]["resources"], role
    update = [r for r in decisions(gate, namespace, "resnet", 4)
              if r["operation"] == "UPDATE" and r["phase"] == "mutate"]
    assert update[0]["skipped"] == "the pod spec of a PyTorchJob cannot change on UPDATE"

    config = yaml.safe_load(gate.config_file.read_text())
    config["mutateOnUpdate"] = ["PyTorchJob"]
    gate.configure(config)
    changed["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] = 3
    apply(gate, namespace, changed, check=True)  # no template change: nothing mutated
    assert "requests" not in roles()["Worker"]["template"]["spec"]["containers"][0][
        "resources"]
    changed["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0][
        "image"] = "pytorch/pytorch:2.5.0-cuda12.1"
    apply(gate, namespace, changed, check=True)
    for role, replica in roles().items():
        spec = replica["template"]["spec"]
        assert spec["containers"][0]["resources"]["requests"] == \
            {"cpu": "4", "memory": "16Gi", GPU: "1"}, role
        assert spec["tolerations"].count(TOLERATION) == 1, role

    broken = copy.deepcopy(changed)
    broken["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0][
        "resources"] = {"limits": {"cpu": "4", GPU: "1"}}
    result = apply(gate, namespace, broken)
    assert result.returncode == 1
    assert (f'[require-limits] PyTorchJob {namespace}/resnet {worker} container "pytorch": '
            f"no memory limit") in result.stderr
    limits = roles()["Worker"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["memory"] == "16Gi"


@pytest.mark.usefixtures("pytorchjobs")
def test_an_old_violation_of_a_pytorchjob_comes_back_as_a_warning(gate: Mlgate,
                                                                  namespace: str) -> None:
    opted_out(gate, namespace)
    legacy = pytorchjob("legacy", {"limits": {"cpu": "4", GPU: "1"}})
    apply(gate, namespace, legacy, check=True)
    opted_in(gate, namespace)
    changed = copy.deepcopy(legacy)
    changed["metadata"]["labels"] = {"team": "vision"}
    result = apply(gate, namespace, changed, check=True)
    assert "pytorchjob.kubeflow.org/legacy configured" in result.stdout
    assert any('[require-limits] PyTorchJob' in line and 'container "pytorch": no memory limit'
               in line and PREEXISTING in line for line in warnings(result.stderr)), \
        result.stderr
    assert stored(gate, namespace, "pytorchjob", "legacy")["metadata"]["labels"] == \
        {"team": "vision"}


# -- a Pod mlgate never saw ------------------------------------------------------------------

def test_labelling_a_pod_mlgate_never_saw_works_and_warns(gate: Mlgate,
                                                          namespace: str) -> None:
    """The Pod has neither the GPU toleration nor requests mlgate would add; its spec is
    immutable, so mlgate must not try to mutate it on UPDATE (the API server would refuse
    the whole request), only warn about what it would deny today."""
    opted_out(gate, namespace)
    apply(gate, namespace, pod("legacy", {"limits": {GPU: "1"}}), check=True)
    opted_in(gate, namespace)
    before = stored(gate, namespace, "pod", "legacy")
    assert TOLERATION not in before["spec"].get("tolerations", [])

    result = gate.plane.kubectl("label", "pod", "legacy", "-n", namespace, "team=vision",
                                check=False)
    assert result.returncode == 0, result.stderr
    assert "pod/legacy labeled" in result.stdout
    assert "immutable" not in result.stderr and "Forbidden" not in result.stderr
    assert any(f"[require-limits] Pod {namespace}/legacy" in line and "no cpu limit" in line
               and PREEXISTING in line for line in warnings(result.stderr)), result.stderr
    after = stored(gate, namespace, "pod", "legacy")
    assert after["metadata"]["labels"] == {"team": "vision"}
    assert after["spec"] == before["spec"]

    # Both webhooks were asked; the mutating one skipped the immutable spec on purpose.
    journal = decisions(gate, namespace, "legacy", 2)
    updates = {r["phase"]: r for r in journal if r["operation"] == "UPDATE"}
    assert updates["mutate"]["skipped"] == "the pod spec of a Pod cannot change on UPDATE"
    assert updates["mutate"]["decision"] == "allowed"
    assert updates["validate"]["decision"] == "warned"


def test_a_new_violation_on_a_pod_update_is_denied(gate: Mlgate, namespace: str) -> None:
    """A Pod's image may change on UPDATE: a `:latest` image brought in by the update is
    denied while the Pod's older violation (no limits) only warns."""
    config = yaml.safe_load(gate.config_file.read_text())
    config["policies"]["disallow-latest-tag"] = {"mode": "enforce"}
    gate.configure(config)
    opted_out(gate, namespace)
    apply(gate, namespace, pod("legacy", NO_LIMITS, image="busybox:1.36"), check=True)
    opted_in(gate, namespace)

    result = gate.plane.kubectl("set", "image", "pod/legacy", "-n", namespace,
                                "trainer=busybox:latest", check=False)
    assert result.returncode == 1, result.stderr
    denial = result.stderr[result.stderr.index("denied the request"):]
    assert f'[disallow-latest-tag] Pod {namespace}/legacy' in denial
    assert "require-limits" not in denial
    image = stored(gate, namespace, "pod", "legacy")["spec"]["containers"][0]["image"]
    assert image == "busybox:1.36"

    result = gate.plane.kubectl("set", "image", "pod/legacy", "-n", namespace,
                                "trainer=busybox:1.37", check=False)
    assert result.returncode == 0, result.stderr
    assert any("[require-limits]" in line and PREEXISTING in line
               for line in warnings(result.stderr)), result.stderr


# -- deleting ------------------------------------------------------------------------------

FINALIZER = "e2e.mlgate.io/hold"


def finalizers_removed(gate: Mlgate, namespace: str, kind: str, name: str):
    return gate.plane.kubectl("patch", kind, name, "-n", namespace, "--type=json",
                              "-p", json.dumps([{"op": "remove",
                                                 "path": "/metadata/finalizers"}]),
                              check=False)


def gone(gate: Mlgate, namespace: str, kind: str, name: str, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = gate.plane.kubectl("get", kind, name, "-n", namespace, check=False)
        if result.returncode == 1 and "NotFound" in result.stderr:
            return True
        time.sleep(0.2)
    return False


def test_a_violating_pod_created_while_exempt_can_lose_its_finalizer(gate: Mlgate,
                                                                     namespace: str) -> None:
    opted_out(gate, namespace)
    held = pod("held", NO_LIMITS)
    held["metadata"]["finalizers"] = [FINALIZER]
    apply(gate, namespace, held, check=True)
    opted_in(gate, namespace)

    result = gate.plane.kubectl("delete", "pod", "held", "-n", namespace, "--wait=false")
    assert 'pod "held" deleted' in result.stdout
    assert stored(gate, namespace, "pod", "held")["metadata"]["deletionTimestamp"]
    result = finalizers_removed(gate, namespace, "pod", "held")
    assert result.returncode == 0, result.stderr
    assert "pod/held patched" in result.stdout
    assert gone(gate, namespace, "pod", "held")
    # The chart's matchCondition keeps objects being deleted from mlgate altogether: once a
    # later request is journaled, there is still nothing about this Pod.
    apply(gate, namespace, pod("marker", LIMITED_GPU), check=True)
    assert len(decisions(gate, namespace, "marker", 2)) == 2
    assert decisions(gate, namespace, "held", 0) == []


def test_a_deployment_created_in_audit_mode_can_lose_its_finalizer(gate: Mlgate,
                                                                   namespace: str) -> None:
    config = yaml.safe_load(gate.config_file.read_text())
    config["policies"]["require-limits"]["mode"] = "audit"
    gate.configure(config)
    held = deployment("held", [container("trainer", NO_LIMITS)])
    held["metadata"]["finalizers"] = [FINALIZER]
    apply(gate, namespace, held, check=True)
    config["policies"]["require-limits"]["mode"] = "enforce"
    gate.configure(config)

    # Removing the finalizer of a live object is an UPDATE mlgate sees: allowed, with the
    # old violation as a warning.
    result = finalizers_removed(gate, namespace, "deployment", "held")
    assert result.returncode == 0, result.stderr
    assert any("[require-limits]" in line and PREEXISTING in line
               for line in warnings(result.stderr)), result.stderr
    gate.plane.kubectl("patch", "deployment", "held", "-n", namespace, "--type=merge",
                       "-p", json.dumps({"metadata": {"finalizers": [FINALIZER]}}))

    gate.plane.kubectl("delete", "deployment", "held", "-n", namespace, "--wait=false")
    result = finalizers_removed(gate, namespace, "deployment", "held")
    assert result.returncode == 0, result.stderr
    assert "deployment.apps/held patched" in result.stdout
    assert gone(gate, namespace, "deployment", "held")
    journal = decisions(gate, namespace, "held", 4)
    assert [(r["phase"], r["operation"], r["decision"]) for r in journal] == [
        ("mutate", "CREATE", "mutated"), ("validate", "CREATE", "allowed"),
        ("mutate", "UPDATE", "allowed"), ("validate", "UPDATE", "warned"),
        ("mutate", "UPDATE", "allowed"), ("validate", "UPDATE", "warned"),
    ], journal
