"""Webhook configurations in a real kube-apiserver, shaped as the chart renders them in
self-managed mode (no caBundle), for `certs inject-ca` and `serve --self-signed`."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.e2e.cluster import get_json
from tests.e2e.controlplane import ControlPlane

MUTATING, VALIDATING = "mutatingwebhookconfiguration", "validatingwebhookconfiguration"
KINDS = {MUTATING: "MutatingWebhookConfiguration", VALIDATING: "ValidatingWebhookConfiguration"}
_numbers = itertools.count()


@dataclass
class Webhooks:
    """A mutating and a validating configuration, both named `name`."""

    plane: ControlPlane
    name: str

    def get(self, kind: str) -> dict[str, Any]:
        found: dict[str, Any] = get_json(self.plane, kind, self.name)
        return found

    def bundles(self, kind: str) -> list[str | None]:
        """The caBundle (base64) of every webhook of one configuration."""
        return [hook["clientConfig"].get("caBundle") for hook in self.get(kind)["webhooks"]]

    def version(self, kind: str) -> str:
        return str(self.get(kind)["metadata"]["resourceVersion"])


def configuration(kind: str, name: str, hooks: list[str]) -> dict[str, Any]:
    """No `rules`: the API server never calls these webhooks, whatever the test does."""
    path = "/mutate" if kind == MUTATING else "/validate"
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": KINDS[kind],
            "metadata": {"name": name},
            "webhooks": [{"name": hook, "admissionReviewVersions": ["v1"], "sideEffects": "None",
                          "clientConfig": {"service": {"name": "mlgate",
                                                       "namespace": "mlgate-system",
                                                       "path": path, "port": 443}}}
                         for hook in hooks]}


@pytest.fixture
def webhooks(kube_apiserver: ControlPlane) -> Iterator[Webhooks]:
    name = f"gate-{next(_numbers)}-mlgate-system"
    items = [configuration(MUTATING, name, ["mutate.mlgate.io"]),
             configuration(VALIDATING, name, ["validate.mlgate.io", "validate-extra.mlgate.io"])]
    kube_apiserver.kubectl("create", "-f", "-",
                           input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    try:
        yield Webhooks(kube_apiserver, name)
    finally:
        for kind in KINDS:
            kube_apiserver.kubectl("delete", kind, name, "--ignore-not-found")
