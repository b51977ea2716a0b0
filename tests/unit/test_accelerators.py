"""The accelerator model: extended resources and DRA claims, in every served API shape."""

from __future__ import annotations

from typing import Any

import pytest

from tests import factories as f
from tests.fixtures.policies import kinds
from webhook import accelerators, dra, kind_table, workloads

JSON = dict[str, Any]
PATTERNS = accelerators.DEFAULT_ACCELERATORS


def device(version: str, device_class: str, count: int | None = None,
           mode: str | None = None, admin: bool = False) -> JSON:
    """One device request's fields, nested as `version` nests them."""
    fields: JSON = {"deviceClassName": device_class}
    if count is not None:
        fields["count"] = count
    if mode is not None:
        fields["allocationMode"] = mode
    if admin:
        fields["adminAccess"] = True
    return {"exactly": fields} if version in ("v1", "v1beta2") else fields


def claim_spec(*requests: JSON) -> JSON:
    return {"devices": {"requests": list(requests)}}


def template(name: str, *requests: JSON, version: str = "v1", namespace: str = "ml") -> JSON:
    return {"apiVersion": f"resource.k8s.io/{version}", "kind": "ResourceClaimTemplate",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"spec": claim_spec(*requests)}}


def claim(name: str, *requests: JSON, version: str = "v1", namespace: str = "ml") -> JSON:
    return {"apiVersion": f"resource.k8s.io/{version}", "kind": "ResourceClaim",
            "metadata": {"name": name, "namespace": namespace}, "spec": claim_spec(*requests)}


def dra_pod(*containers: JSON, claims: list[JSON]) -> JSON:
    return f.pod_spec(*containers, resourceClaims=claims)


def using(name: str, *claim_names: str, **extra: Any) -> JSON:
    c = f.container(name, **extra)
    c.setdefault("resources", {})["claims"] = [{"name": n} for n in claim_names]
    return c


def pod_view(spec: JSON, objects: list[JSON], settings: JSON | None = None,
             ) -> workloads.PodSpecView:
    """The pod of a bare Pod with `spec`, its claims looked up among `objects`."""
    return kinds.view(f.pod(spec=spec), claims=objects, dra_settings=settings).pods[0]


@pytest.mark.parametrize("version", ["v1", "v1beta2", "v1beta1", "v1alpha3"])
def test_a_template_of_every_version_counts_its_devices(version: str) -> None:
    objects = [template("two", {"name": "gpu", **device(version, "gpu.nvidia.com", 2)},
                        version=version)]
    spec = dra_pod(using("train", "gpus"),
                   claims=[{"name": "gpus", "resourceClaimTemplateName": "two"}])
    pod = pod_view(spec, objects)
    assert accelerators.pod_accelerators(pod, PATTERNS) == ["nvidia.com/gpu"]
    assert accelerators.pod_total(pod, PATTERNS) == 2
    assert accelerators.pod_resources(pod, PATTERNS) == {"nvidia.com/gpu": 2}
    asks = accelerators.container_asks(pod, pod.containers[0], PATTERNS)
    assert [(a.resource, a.count, a.via) for a in asks] == [("nvidia.com/gpu", 2, "claim")]
    assert "request 'gpu': 2 x gpu.nvidia.com" in asks[0].where
    assert "claim template two" in asks[0].where


@pytest.mark.parametrize("version", ["v1", "v1beta1"])
def test_a_claim_by_name_counts_and_count_defaults_to_one(version: str) -> None:
    objects = [claim("shared", {"name": "gpu", **device(version, "gpu.amd.com")},
                     version=version)]
    spec = dra_pod(using("infer", "g"), claims=[{"name": "g", "resourceClaimName": "shared"}])
    pod = pod_view(spec, objects)
    assert accelerators.pod_resources(pod, PATTERNS) == {"amd.com/gpu": 1}


def test_first_available_counts_its_largest_alternative_and_names_every_resource() -> None:
    request = {"name": "gpu", "firstAvailable": [
        {"name": "big", "deviceClassName": "gpu.nvidia.com", "count": 1},
        {"name": "small", "deviceClassName": "mig.nvidia.com", "count": 3}]}
    objects = [template("either", request)]
    spec = dra_pod(using("c", "x"), claims=[{"name": "x", "resourceClaimTemplateName": "either"}])
    pod = pod_view(spec, objects)
    assert accelerators.pod_accelerators(pod, PATTERNS) == [
        "nvidia.com/gpu", "nvidia.com/mig"]
    assert accelerators.pod_total(pod, PATTERNS) == 3


def test_allocation_mode_all_is_unbounded_unless_count_all_is_set() -> None:
    objects = [template("all", {"name": "gpu", **device("v1", "gpu.nvidia.com", mode="All")})]
    spec = dra_pod(using("c", "x"), claims=[{"name": "x", "resourceClaimTemplateName": "all"}])
    pod = pod_view(spec, objects)
    assert accelerators.pod_resources(pod, PATTERNS) == {"nvidia.com/gpu": None}
    pod = pod_view(spec, objects, {"countAll": 8})
    assert accelerators.pod_total(pod, PATTERNS) == 8


def test_a_claim_shared_by_two_containers_is_one_allocation_per_pod() -> None:
    objects = [template("two", {"name": "gpu", **device("v1", "gpu.nvidia.com", 2)})]
    spec = dra_pod(using("a", "gpus"), using("b", "gpus", limits={"nvidia.com/gpu": 1}),
                   claims=[{"name": "gpus", "resourceClaimTemplateName": "two"}])
    pod = pod_view(spec, objects)
    assert accelerators.pod_total(pod, PATTERNS) == 3  # 2 shared + 1 extended
    both = accelerators.container_asks(pod, pod.containers[1], PATTERNS)
    assert accelerators.total(both) == 3


def test_a_container_naming_one_request_gets_only_that_request() -> None:
    objects = [template("mixed", {"name": "gpu", **device("v1", "gpu.nvidia.com", 2)},
                        {"name": "nic", **device("v1", "rdma.example.com", 1)},
                        {"name": "slice", **device("v1", "mig.nvidia.com", 1)})]
    c = f.container("c")
    c["resources"] = {"claims": [{"name": "m", "request": "slice"}]}
    spec = dra_pod(c, claims=[{"name": "m", "resourceClaimTemplateName": "mixed"}])
    pod = pod_view(spec, objects)
    assert accelerators.container_accelerators(pod.containers[0], PATTERNS, pod) == [
        "nvidia.com/mig"]
    # the pod takes every request of its claim; the NIC class is no accelerator
    assert accelerators.pod_resources(pod, PATTERNS) == {
        "nvidia.com/gpu": 2, "nvidia.com/mig": 1}


def test_an_unmapped_class_counts_as_its_extended_resource_name_when_the_class_is_known() -> None:
    device_class = {"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass",
                    "metadata": {"name": "mig-1g-12gb.example.com"},
                    "spec": {"extendedResourceName": "nvidia.com/mig-1g.12gb"}}
    request = {"name": "r", **device("v1", "mig-1g-12gb.example.com", 2)}
    spec = dra_pod(using("c", "x"), claims=[{"name": "x", "resourceClaimTemplateName": "t"}])
    pod = pod_view(spec, [template("t", request)])
    assert accelerators.pod_accelerators(pod, PATTERNS) == []
    pod = pod_view(spec, [template("t", request), device_class])
    assert accelerators.pod_resources(pod, PATTERNS) == {"nvidia.com/mig-1g.12gb": 2}


def test_the_configured_map_wins_and_the_policy_globs_filter() -> None:
    request = {"name": "r", **device("v1", "gpu.nvidia.com", 1)}
    spec = dra_pod(using("c", "x"), claims=[{"name": "x", "resourceClaimTemplateName": "t"}])
    pod = pod_view(spec, [template("t", request)],
                             {"deviceClasses": {"*.nvidia.com": "example.com/accel"}})
    assert accelerators.pod_accelerators(pod, ["example.com/*"]) == [
        "example.com/accel"]
    assert accelerators.pod_accelerators(pod, ["nvidia.com/gpu"]) == []


def test_a_missing_template_or_another_namespace_is_reported_missing() -> None:
    spec = dra_pod(using("c", "x"), claims=[{"name": "x", "resourceClaimTemplateName": "t"}])
    other = template("t", {"name": "r", **device("v1", "gpu.nvidia.com", 1)}, namespace="dev")
    pod = pod_view(spec, [other])
    found = accelerators.pod_claims(pod, PATTERNS)
    assert found.asks == {}
    assert [(m.name, m.kind, m.target, m.pointer) for m in found.missing] == [
        ("x", dra.TEMPLATE, "t", "/spec/resourceClaims/0")]


def test_the_source_wrapper_of_older_kubernetes_is_read() -> None:
    objects = [template("two", {"name": "gpu", **device("v1alpha3", "gpu.nvidia.com", 2)},
                        version="v1alpha3")]
    spec = dra_pod(using("c", "g"), claims=[
        {"name": "g", "source": {"resourceClaimTemplateName": "two"}}])
    pod = pod_view(spec, objects)
    assert accelerators.pod_total(pod, PATTERNS) == 2


def test_without_a_resolver_only_extended_resources_count() -> None:
    spec = dra_pod(using("c", "x", limits={"nvidia.com/gpu": 1}),
                   claims=[{"name": "x", "resourceClaimTemplateName": "t"}])
    pod = kind_table.view(f.pod(spec=spec)).pods[0]
    assert pod.claims is None
    assert accelerators.pod_claims(pod, PATTERNS).missing == []
    assert accelerators.pod_total(pod, PATTERNS) == 1
    assert accelerators.pod_accelerators(pod, PATTERNS) == ["nvidia.com/gpu"]


@pytest.mark.parametrize("bad", [
    None, "x", {"devices": None}, {"devices": {"requests": "gpu"}},
    {"devices": {"requests": [None, {"name": "r", "exactly": "x"},
                              {"name": "c", "count": "two", "deviceClassName": 3}]}},
])
def test_malformed_claim_specs_never_raise(bad: Any) -> None:
    for request in dra.requests(bad):
        for choice in request.choices:
            assert choice.count == 1


@pytest.mark.parametrize("kind_id", kinds.KIND_IDS)
def test_templates_are_resolved_from_inside_every_kind(kind_id: str) -> None:
    objects = [template("two", {"name": "gpu", **device("v1", "gpu.nvidia.com", 2)})]
    spec = dra_pod(using("train", "gpus"),
                   claims=[{"name": "gpus", "resourceClaimTemplateName": "two"}])
    workload = kinds.view(kinds.wrap(kinds.kind_spec(kind_id), spec), claims=objects)
    assert workload.pods
    for pod in workload.pods:
        assert accelerators.pod_resources(pod, PATTERNS) == {"nvidia.com/gpu": 2}
