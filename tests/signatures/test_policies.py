"""The two policies through the engine, and image-signatures end to end through the real
server over TLS answering /validate, against the real registry."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import factories
from tests.server import running_server
from tests.signatures.conftest import Registry
from tests.signatures.signer import Signer
from webhook import config, decisions, engine, errors
from webhook.admission import parse

pytestmark = pytest.mark.integration
LIMITS = {"cpu": "1", "memory": "1Gi"}


def settings(host: str, pem: str, **params: Any) -> dict[str, Any]:
    return {
        "registries": {"insecure": [host], "deadline": "1s"},
        "policies": {
            "image-signatures": {"params": {"rules": [
                {"name": "ml-images", "images": [f"{host}/ml/*"], "keys": [{"pem": pem}]}],
                **params}},
            "pin-image-digests": {},
        },
    }


def build(built: list[engine.Engine], data: dict[str, Any]) -> engine.Engine:
    eng = engine.Engine.build(config.from_mapping(data))
    built.append(eng)
    return eng


def pod_with(*images: str, namespace: str = "ml") -> dict[str, Any]:
    containers = [factories.container(f"c{i}", image, limits=LIMITS)
                  for i, image in enumerate(images)]
    return factories.pod(factories.pod_spec(*containers), namespace=namespace)


async def review(eng: engine.Engine, obj: dict[str, Any], phase: str) -> decisions.Decision:
    body = json.dumps(factories.admission_review(obj)).encode()
    return await eng.evaluate(parse(body, "application/json", 1 << 20), phase)


async def test_signed_allowed_unsigned_denied_with_a_clear_message(
        oci_registry: Registry, signer: Signer, engines: list[engine.Engine]) -> None:
    name = f"ml/p-{uuid.uuid4().hex[:6]}"
    signed = oci_registry.pusher.image(name, "signed")
    signer.legacy(oci_registry.pusher, name, signed)
    oci_registry.pusher.image(name, "unsigned")
    eng = build(engines, settings(oci_registry.host, signer.public_pem))
    ok = await review(eng, pod_with(f"{oci_registry.host}/{name}:signed"), "validate")
    assert ok.allowed, ok.message
    denied = await review(eng, pod_with(f"{oci_registry.host}/{name}:signed",
                                        f"{oci_registry.host}/{name}:unsigned"), "validate")
    assert not denied.allowed
    assert denied.message.count("[image-signatures]") == 1
    assert 'container "c1"' in denied.message
    assert f"{name}:unsigned" in denied.message and "rule 'ml-images'" in denied.message
    assert "no signatures" in denied.message and "cosign sign" in denied.message


async def test_unmatched_images(oci_registry: Registry, signer: Signer,
                                engines: list[engine.Engine]) -> None:
    allow = build(engines, settings(oci_registry.host, signer.public_pem))
    assert (await review(allow, pod_with("docker.io/library/busybox:1"), "validate")).allowed
    deny = build(engines, settings(oci_registry.host, signer.public_pem, unmatched="deny"))
    decision = await review(deny, pod_with("busybox:1"), "validate")
    assert not decision.allowed and "matches no image-signatures rule" in decision.message
    warn = build(engines, settings(oci_registry.host, signer.public_pem, unmatched="warn"))
    decision = await review(warn, pod_with("busybox:1"), "validate")
    assert decision.allowed
    assert len(decision.warnings) == 1 and "matches no image-signatures rule" in \
        decision.warnings[0]


async def test_failure_mode_when_the_registry_is_down(down_registry: str, signer: Signer,
                                                      engines: list[engine.Engine]) -> None:
    data = settings(down_registry, signer.public_pem)
    data["policies"]["pin-image-digests"] = {"mode": "off"}
    eng = build(engines, data)
    decision = await review(eng, pod_with(f"{down_registry}/ml/x:1"), "validate")
    assert not decision.allowed
    assert "could not be verified" in decision.message and "unreachable" in decision.message
    data["policies"]["image-signatures"]["params"]["rules"][0]["failure"] = "allow"
    lenient = build(engines, data)
    assert (await review(lenient, pod_with(f"{down_registry}/ml/x:1"), "validate")).allowed


async def test_slow_registry_answers_within_the_policy_timeout(
        slow_registry: str, signer: Signer, engines: list[engine.Engine]) -> None:
    data = settings(slow_registry, signer.public_pem)
    data["registries"]["deadline"] = "300ms"
    eng = build(engines, data)
    decision = await review(eng, pod_with(f"{slow_registry}/ml/x:1"), "validate")
    assert not decision.allowed
    # our own deadline message, not the engine's generic timeout
    assert "did not answer" in decision.message and "timed out" not in decision.message
    for active in eng.active:
        verifier = getattr(active.policy, "verifier", None)
        if verifier is not None:
            await verifier.coalescer.settle()


async def test_pin_image_digests(oci_registry: Registry, signer: Signer,
                                 engines: list[engine.Engine]) -> None:
    name = f"ml/pin-{uuid.uuid4().hex[:6]}"
    digest = oci_registry.pusher.image(name, "1.0")
    eng = build(engines, settings(oci_registry.host, signer.public_pem))
    image = f"{oci_registry.host}/{name}:1.0"
    decision = await review(eng, pod_with(image), "mutate")
    assert {"op": "replace", "path": "/spec/containers/0/image",
            "value": f"{image}@{digest}"} in decision.patch
    # idempotent: a pinned image is left alone
    again = await review(eng, pod_with(f"{image}@{digest}"), "mutate")
    assert not [op for op in again.patch if op["path"].endswith("/image")]
    # Deployments are GitOps territory: not pinned by default
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": "d", "namespace": "ml"},
                  "spec": {"template": {"spec": pod_with(image)["spec"]}}}
    untouched = await review(eng, deployment, "mutate")
    assert not [op for op in untouched.patch if op["path"].endswith("/image")]


def test_bad_rules_are_config_errors(tmp_path: Path, signer: Signer) -> None:
    base = settings("127.0.0.1:1", signer.public_pem)
    base["policies"]["image-signatures"]["params"]["rules"][0]["keys"] = [
        {"path": str(tmp_path / "missing.pub")}]
    with pytest.raises(errors.ConfigError, match=r"rules\[ml-images\]\.keys\[0\]: cannot read"):
        engine.Engine.build(config.from_mapping(base))
    base["policies"]["image-signatures"]["params"]["rules"][0]["keys"] = []
    with pytest.raises(errors.ConfigError, match="no keys and no keyless identities"):
        engine.Engine.build(config.from_mapping(base))
    base["policies"]["image-signatures"]["params"]["rules"][0]["keyless"] = [
        {"issuer": "https://x", "subjectRegExp": "(unclosed"}]
    with pytest.raises(errors.ConfigError, match="not a regular expression"):
        engine.Engine.build(config.from_mapping(base))


def test_end_to_end_validate_over_tls(tmp_path: Path, oci_registry: Registry,
                                      signer: Signer) -> None:
    name = f"ml/e2e-{uuid.uuid4().hex[:6]}"
    signed = oci_registry.pusher.image(name, "signed")
    signer.bundle(oci_registry.pusher, name, signed)
    oci_registry.pusher.image(name, "unsigned")
    config_file = tmp_path / "mlgate.yaml"
    config_file.write_text(yaml.safe_dump(settings(oci_registry.host, signer.public_pem)))
    with running_server(tmp_path, config=config_file) as srv, srv.client() as client:
        def validate(image: str) -> dict[str, Any]:
            body = factories.admission_review(pod_with(image))
            response = client.post("/validate", json=body)
            assert response.status_code == 200
            return dict(response.json()["response"])

        ok = validate(f"{oci_registry.host}/{name}:signed")
        assert ok["allowed"] is True
        denied = validate(f"{oci_registry.host}/{name}:unsigned")
        assert denied["allowed"] is False
        assert "is not signed by an authority of rule 'ml-images'" in denied["status"]["message"]
