"""Decisions made by the real engine, for filling journals in tests."""

from __future__ import annotations

import json
from typing import Any

from tests import factories
from webhook import admission, config, decisions, engine

GPU = {"nvidia.com/gpu": "1"}


def gpu_pod(name: str, namespace: str = "team-a", limits: bool = False) -> dict[str, Any]:
    limited = {**factories.LIMITED, **GPU}
    container = factories.container(requests=limited if limits else GPU,
                                    limits=limited if limits else None)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
            "spec": {"containers": [container]}}


async def decide(eng: engine.Engine, obj: dict[str, Any], phase: str = engine.VALIDATE,
                 user: str = "alice@example.com", namespace: str | None = None,
                 ) -> decisions.Decision:
    review = factories.admission_review(obj, user=user, namespace=namespace)
    request = admission.parse(json.dumps(review).encode(), "application/json")
    return await eng.evaluate(request, phase)


def default_engine() -> engine.Engine:
    return engine.Engine.build(config.from_mapping({}, environ={}))
