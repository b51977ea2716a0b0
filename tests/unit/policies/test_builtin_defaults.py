"""The three default policies on every kind of the workload table."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests import factories
from tests.factories import container, pod_spec
from tests.fixtures.policies import kinds
from webhook import admission, config, decisions, engine, kind_table, patches

ENGINE = engine.Engine.build(config.from_mapping({}, environ={}))


def run(obj: dict[str, Any], phase: str) -> decisions.Decision:
    review = factories.admission_review(obj, namespace="ml")
    return asyncio.run(ENGINE.evaluate(admission.parse(json.dumps(review).encode()), phase))


def mutate(obj: dict[str, Any]) -> dict[str, Any]:
    return patches.apply(obj, run(obj, engine.MUTATE).patch)


@pytest.mark.parametrize("kind", kind_table.WORKLOAD_KINDS, ids=kinds.KIND_IDS)
def test_gpu_pods_of_every_kind_get_tolerations_and_requests(kind: kind_table.KindSpec) -> None:
    spec = pod_spec(container("trainer", limits={"cpu": "4", "memory": "16Gi",
                                                 "nvidia.com/gpu": "2"}))
    result = mutate(kinds.wrap(kind, spec))
    view = kind_table.view(result)
    assert view.pods, "every wrapped kind has pod specs"
    for pod in view.pods:
        assert pod.tolerates("nvidia.com/gpu"), pod.pointer
        (trainer,) = pod.containers
        assert trainer.requests == {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "2"}
    assert run(result, engine.MUTATE).patch == [], "idempotent"
    assert run(result, engine.VALIDATE).allowed


@pytest.mark.parametrize("kind", kind_table.WORKLOAD_KINDS, ids=kinds.KIND_IDS)
def test_cpu_pods_of_every_kind_get_no_toleration(kind: kind_table.KindSpec) -> None:
    result = mutate(kinds.wrap(kind, pod_spec(container("web"))))
    for pod in kind_table.view(result).pods:
        assert "tolerations" not in pod.spec
        assert pod.containers[0].requests == {"cpu": "100m", "memory": "256Mi"}


@pytest.mark.parametrize("kind", kind_table.WORKLOAD_KINDS, ids=kinds.KIND_IDS)
def test_missing_limits_are_denied_on_every_kind_with_the_pod_path(
        kind: kind_table.KindSpec) -> None:
    obj = kinds.wrap(kind, pod_spec(container("web", limits={"cpu": "1"})))
    decision = run(obj, engine.VALIDATE)
    assert not decision.allowed
    pods = kind_table.view(obj).pods
    lines = decision.message.splitlines()
    assert len(lines) == len(pods)
    for pod, line in zip(pods, lines, strict=True):
        assert f'{pod.pointer} container "web": no memory limit' in line
