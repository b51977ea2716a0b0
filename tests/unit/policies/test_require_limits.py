"""require-limits: every container has limits; accelerators whole and request = limit."""

from __future__ import annotations

from typing import Any

import pytest

from policies import require_limits
from tests.factories import container, pod, pod_spec
from webhook import config, engine, errors, kind_table

OK = {"cpu": "1", "memory": "1Gi"}


def violations(spec: dict[str, Any], **params: Any) -> list[tuple[str | None, str, str]]:
    policy = require_limits.RequireLimits(require_limits.Params(**params))
    found = policy.validate(kind_table.view(pod(spec)))
    return [(v.container, v.what, v.path) for v in found]


def test_limited_containers_pass() -> None:
    assert violations(pod_spec(container(limits=OK))) == []


def test_init_and_sidecar_containers_are_checked_ephemeral_are_not() -> None:
    spec = pod_spec(container(limits=OK),
                    initContainers=[container("init"),
                                    container("proxy", restartPolicy="Always", limits=OK)],
                    ephemeralContainers=[{"name": "debug", "image": "busybox"}])
    assert violations(spec) == [
        ("init", "no cpu limit", "/spec/initContainers/0/resources/limits/cpu"),
        ("init", "no memory limit", "/spec/initContainers/0/resources/limits/memory"),
    ]


def test_configurable_resources() -> None:
    assert violations(pod_spec(container(limits={"memory": "1Gi"})), resources=["memory"]) == []


def test_gpu_request_must_equal_limit() -> None:
    spec = pod_spec(container(limits={**OK, "nvidia.com/gpu": "2"},
                              requests={"nvidia.com/gpu": "1"}))
    assert violations(spec) == [("main", "nvidia.com/gpu request '1' differs from limit '2'",
                                 "/spec/containers/0/resources/requests/nvidia.com~1gpu")]


def test_equal_quantities_in_other_spellings_are_equal() -> None:
    spec = pod_spec(container(limits={**OK, "nvidia.com/gpu": 1},
                              requests={"nvidia.com/gpu": "1"}))
    assert violations(spec) == []


def test_gpu_request_without_limit() -> None:
    spec = pod_spec(container(limits=OK, requests={"amd.com/gpu": "1"}))
    assert violations(spec)[0][1] == "amd.com/gpu is requested ('1') without a limit"


def test_fractional_accelerators_are_rejected() -> None:
    spec = pod_spec(container(limits={**OK, "nvidia.com/gpu": "0.5"}))
    assert violations(spec) == [("main", "nvidia.com/gpu limit is '0.5', not a whole number",
                                 "/spec/containers/0/resources/limits/nvidia.com~1gpu")]


@pytest.mark.parametrize("policy_name", [
    "require-limits", "allowed-registries", "image-signatures", "disallow-latest-tag",
    "pin-image-digests", "default-resources", "shm-volume"])
def test_a_misspelt_container_type_is_refused_at_load_with_its_key_path(
        policy_name: str) -> None:
    # `container` misspelt: before, require-limits loaded and then checked nothing at all.
    cfg = config.from_mapping({"policies": {policy_name: {
        "params": {"containerKinds": ["containers"]}}}}, environ={})
    with pytest.raises(errors.ConfigError) as caught:
        engine.Engine.build(cfg)
    message = str(caught.value)
    assert f"policies.{policy_name}.params.containerKinds.0" in message
    assert "'container', 'init', 'sidecar' or 'ephemeral'" in message
