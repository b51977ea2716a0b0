"""GPUs through DRA against the real API server (resource.k8s.io/v1): the claim cache with
the chart's RBAC, the policies seeing a claim template's GPUs at `kubectl apply`, and
dra-claims judging the claims themselves."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import yaml

from tests.e2e import controlplane
from tests.e2e.cluster import Mlgate
from tests.e2e.test_apply import stored
from webhook import claimcache, dra

GPU = "nvidia.com/gpu"
TOLERATION = {"key": GPU, "operator": "Exists", "effect": "NoSchedule"}


def template(name: str, count: int = 2) -> dict[str, Any]:
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
            "metadata": {"name": name},
            "spec": {"spec": {"devices": {"requests": [
                {"name": "gpu", "exactly": {"deviceClassName": "gpu.nvidia.com",
                                            "count": count}}]}}}}


def dra_pod(name: str, claim_template: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"resourceClaims": [{"name": "gpus",
                                         "resourceClaimTemplateName": claim_template}],
                     "containers": [{"name": "trainer", "image": "pytorch/pytorch:2.3.0",
                                     "resources": {"limits": {"cpu": "1", "memory": "1Gi"},
                                                   "claims": [{"name": "gpus"}]}}]}}


DEVICE_CLASS = {"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass",
                "metadata": {"name": "gpu.nvidia.com"},
                "spec": {"selectors": [{"cel": {"expression":
                                                "device.driver == 'gpu.nvidia.com'"}}]}}


def apply(plane: controlplane.ControlPlane, namespace: str, *objects: dict[str, Any],
          check: bool = True) -> Any:
    return plane.kubectl("apply", "-n", namespace, "-f", "-",
                         input=yaml.safe_dump_all(objects), check=check)


def wait_for(condition: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_the_claim_cache_lists_and_watches_the_cluster(plane: controlplane.ControlPlane,
                                                       namespace: str) -> None:
    apply(plane, namespace, DEVICE_CLASS, template("before"))
    settings = dra.CacheSettings(enabled=True, kubeconfig=str(plane.kubeconfig), resync=2)
    cache = claimcache.ClaimCache(settings)

    async def run() -> None:
        await cache.start()
        try:
            assert await cache.wait_synced(15)
            assert cache.get(dra.TEMPLATE, namespace, "before") is not None  # listed
            assert cache.get(dra.DEVICE_CLASS, "", "gpu.nvidia.com") is not None
            apply(plane, namespace, template("after", 3))  # watched
            await asyncio.to_thread(wait_for, lambda: cache.get(dra.TEMPLATE, namespace,
                                                                "after") is not None)
            found = cache.get(dra.TEMPLATE, namespace, "after")
            assert found is not None
            assert [r.choices[0].count for r in dra.requests(dra.claim_spec(found))] == [3]
            assert set(found["metadata"]) == {"name", "namespace"}  # only what is needed
            plane.kubectl("delete", "resourceclaimtemplate", "before", "-n", namespace)
            await asyncio.to_thread(wait_for, lambda: cache.get(dra.TEMPLATE, namespace,
                                                                "before") is None)
            await asyncio.sleep(2.5)  # past a resync: relisted, still there
            assert cache.get(dra.TEMPLATE, namespace, "after") is not None
            assert cache.describe() == "the cluster (mlgate's claim cache)"
        finally:
            await cache.stop()

    asyncio.run(run())


def _mutated_with_toleration(gate: Mlgate, namespace: str, name: str) -> bool:
    result = gate.plane.kubectl("apply", "-n", namespace, "-f", "-", "--dry-run=server",
                                "-o", "yaml", input=yaml.safe_dump(dra_pod("probe", name)),
                                check=False)
    shown = yaml.safe_load(result.stdout or "{}") or {}
    return TOLERATION in ((shown.get("spec") or {}).get("tolerations") or [])


def test_a_dra_pod_gets_the_toleration_and_meets_the_gpu_cap(gate: Mlgate,
                                                             namespace: str) -> None:
    apply(gate.plane, namespace, DEVICE_CLASS, template("double-gpu"))
    # the server's cache (the chart's ServiceAccount and RBAC) sees the template
    wait_for(lambda: _mutated_with_toleration(gate, namespace, "double-gpu"))
    apply(gate.plane, namespace, dra_pod("train", "double-gpu"))
    assert TOLERATION in stored(gate, namespace, "pod", "train")["spec"]["tolerations"]

    config = yaml.safe_load(gate.config_file.read_text())
    config.setdefault("policies", {})["gpu-limits"] = {"params": {"maxPerPod": 1}}
    gate.configure(config)
    result = apply(gate.plane, namespace, dra_pod("greedy", "double-gpu"), check=False)
    assert result.returncode == 1
    assert (f"[gpu-limits] Pod {namespace}/greedy /spec: the pod (pod) asks for 2 "
            f"accelerators (through pod claim 'gpus' (claim template double-gpu), request "
            f"'gpu': 2 x gpu.nvidia.com); at most 1 are allowed per pod") in result.stderr


def test_an_unresolved_template_follows_the_failure_mode(gate: Mlgate, namespace: str) -> None:
    result = apply(gate.plane, namespace, dra_pod("early", "not-yet"))
    assert "pod claim 'gpus' (claim template not-yet) is not in the cluster" in result.stderr
    config = yaml.safe_load(gate.config_file.read_text())
    config["dra"]["unresolved"] = "deny"
    gate.configure(config)
    result = apply(gate.plane, namespace, dra_pod("denied", "not-yet"), check=False)
    assert result.returncode == 1
    assert "[dra]" in result.stderr and "claim template not-yet" in result.stderr


ADMIN_ACCESS_LABEL = "resource.kubernetes.io/admin-access"  # the API server's own gate


def admin_claim(name: str) -> dict[str, Any]:
    """A claim for admin access to a GPU other pods may be using (a monitoring agent's)."""
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
            "metadata": {"name": name},
            "spec": {"devices": {"requests": [
                {"name": "gpus", "exactly": {"deviceClassName": "gpu.nvidia.com",
                                             "adminAccess": True}}]}}}


def test_dra_claims_allows_admin_access_only_in_the_configured_namespaces(
        gate: Mlgate, namespace: str) -> None:
    plane = gate.plane
    # Both namespaces pass the API server's gate (the label); mlgate's list decides.
    plane.kubectl("label", "namespace", namespace, f"{ADMIN_ACCESS_LABEL}=true")
    monitoring = plane.namespace(f"{namespace}-gpu-monitoring", {ADMIN_ACCESS_LABEL: "true"})
    config = yaml.safe_load(gate.config_file.read_text())
    config.setdefault("policies", {})["dra-claims"] = {
        "params": {"adminAccessNamespaces": ["*-gpu-monitoring"]}}
    gate.configure(config)

    result = apply(plane, namespace, admin_claim("peek"), check=False)
    assert result.returncode == 1
    assert (f'admission webhook "validate.mlgate.io" denied the request: [dra-claims] '
            f"ResourceClaim {namespace}/peek: request 'gpus' "
            f"(spec.devices.requests[0].exactly.adminAccess) asks for admin access to the "
            f"devices (adminAccess: true: access to devices other pods are using), which is "
            f"allowed only in namespaces *-gpu-monitoring, not in namespace {namespace} "
            f"(remove adminAccess: true; monitoring and debugging claims belong in a "
            f"namespace listed in dra-claims adminAccessNamespaces)") in result.stderr
    assert plane.kubectl("get", "resourceclaim", "peek", "-n", namespace,
                         check=False).returncode != 0

    result = apply(plane, monitoring, admin_claim("watch"))
    assert "resourceclaim.resource.k8s.io/watch created" in result.stdout
    stored_claim = stored(gate, monitoring, "resourceclaim", "watch")
    assert stored_claim["spec"]["devices"]["requests"][0]["exactly"]["adminAccess"] is True
    # the validating webhook alone saw it (mutating webhooks run first, so a /mutate
    # decision would be journaled by now too)
    wait_for(lambda: gate.journaled(namespace=monitoring, kind="ResourceClaim") != [])
    decisions = gate.journaled(namespace=monitoring, kind="ResourceClaim")
    assert [(d["phase"], d["allowed"]) for d in decisions] == [("validate", True)], decisions


def test_the_api_server_refuses_admin_access_before_mlgate_without_its_label(
        gate: Mlgate, namespace: str) -> None:
    """Without the namespace label, kube-apiserver refuses the claim itself: mlgate's
    `adminAccessNamespaces` is a second key, not the only one."""
    config = yaml.safe_load(gate.config_file.read_text())
    config.setdefault("policies", {})["dra-claims"] = {
        "params": {"adminAccessNamespaces": ["*"]}}
    gate.configure(config)
    result = apply(gate.plane, namespace, admin_claim("unlabelled"), check=False)
    assert result.returncode == 1
    assert "[dra-claims]" not in result.stderr and ADMIN_ACCESS_LABEL in result.stderr
