"""gpu-tolerations: accelerator pods tolerate the accelerator taint, nothing else changes."""

from __future__ import annotations

from typing import Any

from policies import gpu_tolerations
from tests.factories import container, pod, pod_spec
from webhook import kind_table


def apply(obj: dict[str, Any], **params: Any) -> dict[str, Any]:
    policy = gpu_tolerations.GpuTolerations(gpu_tolerations.Params(**params))
    policy.mutate(kind_table.view(obj))
    return obj


def tolerations(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return obj["spec"].get("tolerations", [])


def test_adds_one_toleration_per_requested_accelerator() -> None:
    obj = apply(pod(pod_spec(container(limits={"nvidia.com/mig-1g.5gb": 1}),
                             container("b", requests={"amd.com/gpu": "1"}))))
    assert tolerations(obj) == [
        {"key": "amd.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "nvidia.com/mig-1g.5gb", "operator": "Exists", "effect": "NoSchedule"},
    ]


def test_never_duplicates_and_keeps_existing_tolerations() -> None:
    existing = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}]
    obj = apply(pod(pod_spec(container(limits={"nvidia.com/gpu": 1}), tolerations=existing)))
    assert tolerations(obj) == existing


def test_a_toleration_without_effect_or_a_wildcard_counts() -> None:
    for existing in ({"key": "nvidia.com/gpu", "operator": "Exists"}, {"operator": "Exists"}):
        obj = apply(pod(pod_spec(container(limits={"nvidia.com/gpu": 1}),
                                 tolerations=[existing])))
        assert tolerations(obj) == [existing]


def test_an_equal_toleration_with_a_value_does_not_count() -> None:
    existing = {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present",
                "effect": "NoSchedule"}
    obj = apply(pod(pod_spec(container(limits={"nvidia.com/gpu": 1}), tolerations=[existing])))
    assert len(tolerations(obj)) == 2


def test_init_container_accelerators_count() -> None:
    spec = pod_spec(container(), initContainers=[container("warmup", limits={"google.com/tpu": 4})])
    assert tolerations(apply(pod(spec)))[0]["key"] == "google.com/tpu"


def test_pods_without_accelerators_are_untouched() -> None:
    obj = pod(pod_spec(container(limits={"example.com/dongle": 1, "cpu": "1"})))
    before = repr(obj)
    assert repr(apply(obj)) == before


def test_configurable_resources_and_extra_tolerations() -> None:
    extra = {"key": "pool", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}
    obj = apply(pod(pod_spec(container(limits={"example.com/fpga": 1}))),
                resources=["example.com/*"], extraTolerations=[extra])
    assert tolerations(obj) == [
        {"key": "example.com/fpga", "operator": "Exists", "effect": "NoSchedule"}, extra]
    assert tolerations(apply(obj, resources=["example.com/*"], extraTolerations=[extra])) == \
        tolerations(obj), "idempotent"


def test_default_resource_list_covers_the_documented_vendors() -> None:
    for resource in ("nvidia.com/gpu", "amd.com/gpu", "gpu.intel.com/i915", "habana.ai/gaudi",
                     "aws.amazon.com/neuroncore", "google.com/tpu", "nvidia.com/mig-3g.20gb"):
        obj = apply(pod(pod_spec(container(limits={resource: 1}))))
        assert tolerations(obj)[0]["key"] == resource
