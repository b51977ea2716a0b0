"""Signed model artifacts: `oci://` storage URIs of KServe InferenceServices are verified by
the image-signatures rules (signatures and attestations) and pinned by pin-image-digests,
against models the test signer pushes to the real registry as OCI artifacts with their own
media types (CNCF ModelPack)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.signatures.conftest import Registry
from tests.signatures.signer import Signer
from tests.signatures.test_policies import build, review
from webhook import engine

pytestmark = pytest.mark.integration
SLSA1 = "https://slsa.dev/provenance/v1"


def isvc(uri: str) -> dict[str, Any]:
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "llm", "namespace": "prod-eu"},
            "spec": {"predictor": {"model": {
                "modelFormat": {"name": "huggingface"}, "storageUri": uri,
                "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}}}}


def config(host: str, signer: Signer, **rule: Any) -> dict[str, Any]:
    return {"registries": {"insecure": [host], "deadline": "2s"},
            "policies": {"image-signatures": {"params": {"rules": [{
                "name": "models", "images": [f"{host}/models/*"],
                "keys": [{"pem": signer.public_pem}], **rule}]}},
                "pin-image-digests": {"params": {"kinds": ["InferenceService"]}}}}


async def test_signed_model_is_admitted_and_pinned_unsigned_is_denied(
        oci_registry: Registry, signer: Signer, engines: list[engine.Engine]) -> None:
    name = f"models/llm-{uuid.uuid4().hex[:6]}"
    signed = oci_registry.pusher.model(name, "v1")
    signer.legacy(oci_registry.pusher, name, signed)
    oci_registry.pusher.model(name, "v2")
    eng = build(engines, config(oci_registry.host, signer))
    uri = f"oci://{oci_registry.host}/{name}:v1"
    ok = await review(eng, isvc(uri), "validate")
    assert ok.allowed, ok.message
    mutated = await review(eng, isvc(uri), "mutate")
    assert {"op": "replace", "path": "/spec/predictor/model/storageUri",
            "value": f"{uri}@{signed}"} in mutated.patch
    denied = await review(eng, isvc(f"oci://{oci_registry.host}/{name}:v2"), "validate")
    assert not denied.allowed
    assert "[image-signatures]" in denied.message
    assert (f"the model oci://{oci_registry.host}/{name}:v2 at "
            f"/spec/predictor/model/storageUri (sha256:") in denied.message
    assert "is not signed by an authority of rule 'models'" in denied.message


async def test_model_attestation_rule(oci_registry: Registry, signer: Signer,
                                      engines: list[engine.Engine]) -> None:
    name = f"models/llm-{uuid.uuid4().hex[:6]}"
    digest = oci_registry.pusher.model(name, "v1")
    signer.legacy(oci_registry.pusher, name, digest)
    eng = build(engines, config(oci_registry.host, signer, attestations=[
        {"name": "provenance", "predicateType": SLSA1,
         "conditions": ['predicate.runDetails.builder.id == "https://ci.acme/model-build"']}]))
    uri = f"oci://{oci_registry.host}/{name}:v1"
    missing = await review(eng, isvc(uri), "validate")
    assert not missing.allowed and "no verified attestation of predicateType" in \
        missing.message
    signer.bundle(oci_registry.pusher, name, digest, SLSA1, predicate={
        "runDetails": {"builder": {"id": "https://ci.acme/model-build"}}})
    eng2 = build(engines, config(oci_registry.host, signer, attestations=[
        {"name": "provenance", "predicateType": SLSA1,
         "conditions": ['predicate.runDetails.builder.id == "https://ci.acme/model-build"']}]))
    ok = await review(eng2, isvc(uri), "validate")
    assert ok.allowed, ok.message
