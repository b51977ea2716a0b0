"""default-resources: LimitRanger semantics for defaults, GPU request = limit."""

from __future__ import annotations

from typing import Any

import pytest

from policies import default_resources
from tests.factories import container, pod, pod_spec
from webhook import kind_table


def resources(c: dict[str, Any], **params: Any) -> dict[str, Any]:
    obj = pod(pod_spec(c))
    policy = default_resources.DefaultResources(default_resources.Params.model_validate(params))
    policy.mutate(kind_table.view(obj))
    return obj["spec"]["containers"][0].get("resources", {})


def test_neither_request_nor_limit_gets_default_requests_only() -> None:
    assert resources(container()) == {"requests": {"cpu": "100m", "memory": "256Mi"}}


def test_limit_without_request_gets_request_equal_to_limit() -> None:
    assert resources(container(limits={"cpu": "2", "memory": "1Gi"})) == {
        "limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "2", "memory": "1Gi"}}


def test_existing_requests_are_kept() -> None:
    assert resources(container(requests={"cpu": "3"}))["requests"] == {"cpu": "3",
                                                                       "memory": "256Mi"}


def test_default_limit_never_below_the_request() -> None:
    params = {"default": {"requests": {"memory": "256Mi"}, "limits": {"memory": "1Gi"}}}
    assert resources(container(requests={"memory": "4Gi"}), **params) == {
        "requests": {"memory": "4Gi"}, "limits": {"memory": "4Gi"}}
    assert resources(container(requests={"memory": "512Mi"}), **params)["limits"] == {
        "memory": "1Gi"}
    assert resources(container(), **params) == {"requests": {"memory": "256Mi"},
                                                "limits": {"memory": "1Gi"}}


def test_accelerator_pods_get_their_own_defaults() -> None:
    params = {"accelerator": {"requests": {"cpu": "4", "memory": "32Gi"},
                              "limits": {"memory": "64Gi"}}}
    gpu = resources(container(limits={"nvidia.com/gpu": "1"}), **params)
    assert gpu == {"limits": {"nvidia.com/gpu": "1", "memory": "64Gi"},
                   "requests": {"cpu": "4", "memory": "32Gi", "nvidia.com/gpu": "1"}}
    assert resources(container(), **params) == {"requests": {"cpu": "100m", "memory": "256Mi"}}


@pytest.mark.parametrize(("given", "expected"), [
    ({"requests": {"nvidia.com/gpu": "2"}}, {"nvidia.com/gpu": "2"}),
    ({"limits": {"nvidia.com/gpu": 2}}, {"nvidia.com/gpu": "2"}),
])
def test_gpu_request_and_limit_are_made_equal(given: dict[str, Any],
                                              expected: dict[str, Any]) -> None:
    result = resources(container(**given))
    assert {k: v for k, v in result["requests"].items() if "gpu" in k} == expected
    assert {k: str(v) for k, v in result["limits"].items() if "gpu" in k} == expected


def test_ephemeral_containers_are_left_alone() -> None:
    obj = pod(pod_spec(container(), ephemeralContainers=[{"name": "debug", "image": "busybox"}]))
    default_resources.DefaultResources(default_resources.Params()).mutate(kind_table.view(obj))
    assert "resources" not in obj["spec"]["ephemeralContainers"][0]


@pytest.mark.parametrize(("params", "message"), [
    ({"default": {"requests": {"cpu": "fast"}}}, "not a Kubernetes quantity"),
    ({"default": {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}}, "above the limit"),
])
def test_bad_defaults_are_rejected(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        default_resources.DefaultResources(default_resources.Params.model_validate(params))
