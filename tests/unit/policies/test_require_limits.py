"""require-limits: every container has limits; accelerators whole and request = limit."""

from __future__ import annotations

from typing import Any

from policies import require_limits
from tests.factories import container, pod, pod_spec
from webhook import workloads

POLICY = require_limits.RequireLimits()
OK = {"cpu": "1", "memory": "1Gi"}


def violations(spec: dict[str, Any], **params: Any) -> list[tuple[str | None, str, str]]:
    found = POLICY.validate(workloads.view(pod(spec)), require_limits.Params(**params))
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
