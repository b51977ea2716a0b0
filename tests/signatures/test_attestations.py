"""Attestation rules against the real registry: the independent test signer attaches
in-toto attestations both ways (legacy `.att` envelopes, bundles as referrers), key-based
and keyless; the verifier counts only those signed by the rule's authorities for the
image's digest, and the rule's CEL conditions decide, with messages naming what failed."""

from __future__ import annotations

import asyncio
import datetime
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.signatures.conftest import Registry
from tests.signatures.signer import Signer, TestSigstore
from tests.signatures.test_policies import build, pod_with, review
from webhook import engine, errors
from webhook.signatures import attestations, bundles, keys, settings, verifier

pytestmark = pytest.mark.integration

SLSA1 = "https://slsa.dev/provenance/v1"
VULN = "https://cosign.sigstore.dev/attestation/vuln/v1"
BUILDER = "https://github.com/acme/builder/.github/workflows/build.yml@refs/heads/main"
ISSUER = "https://issuer.test"


def provenance(builder: str = BUILDER) -> dict[str, Any]:
    return {"buildDefinition": {"buildType": "https://actions.github.io/buildtypes/workflow/v1",
                                "externalParameters": {"workflow": {
                                    "repository": "https://github.com/acme/models"}}},
            "runDetails": {"builder": {"id": builder}}}


def scan(days_ago: float = 1, severities: tuple[str, ...] = ("LOW",)) -> dict[str, Any]:
    finished = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=days_ago)
    return {"scanner": {"uri": "pkg:github/aquasecurity/trivy@0.50.0", "version": "0.50.0",
                        "result": {"Results": [{"Vulnerabilities": [
                            {"VulnerabilityID": f"CVE-{i}", "Severity": s}
                            for i, s in enumerate(severities)]}]}},
            "metadata": {"scanStartedOn": finished.isoformat().replace("+00:00", "Z"),
                         "scanFinishedOn": finished.isoformat().replace("+00:00", "Z")}}


PROVENANCE = attestations.Requirement.build("provenance", SLSA1, [
    f'predicate.runDetails.builder.id == "{BUILDER}"',
    'predicate.buildDefinition.externalParameters.workflow.repository == '
    '"https://github.com/acme/models"'], "t")
FRESH_SCAN = attestations.Requirement.build("vulnerabilities", "vuln", [
    'predicate.scanner.uri.startsWith("pkg:github/aquasecurity/trivy")',
    'timestamp(predicate.metadata.scanFinishedOn) > now - duration("168h")',
    '!predicate.scanner.result.Results.exists(r, r.Vulnerabilities.exists(v, '
    'v.Severity in ["HIGH", "CRITICAL"]))'], "t")


@pytest.fixture
async def make(oci_registry: Registry) -> AsyncIterator[Any]:
    made: list[verifier.Verifier] = []

    def factory(trusted_root: str | None = None) -> verifier.Verifier:
        made.append(verifier.Verifier(settings.Registries.model_validate(
            {"insecure": [oci_registry.host], "deadline": "2s",
             **({"trustedRoot": trusted_root} if trusted_root else {})})))
        return made[-1]

    yield factory
    for v in made:
        await v.aclose()


def rule(signer: Signer, *requirements: attestations.Requirement,
         identities: tuple[bundles.Identity, ...] = ()) -> verifier.Authorities:
    return verifier.Authorities.build("ml", [("cosign.pub", keys.load(signer.public_pem, "k"))],
                                      list(identities), {}, requirements=requirements)


async def check(v: verifier.Verifier, image: str,
                auth: verifier.Authorities) -> verifier.Verdict:
    return await asyncio.wait_for(v.check(image, auth, time.monotonic() + 2), 30)


def signed_image(registry: Registry, signer: Signer) -> tuple[str, str, str]:
    name = f"ml/att-{uuid.uuid4().hex[:8]}"
    digest = registry.pusher.image(name, "1.0")
    signer.legacy(registry.pusher, name, digest)
    return name, digest, f"{registry.host}/{name}:1.0"


async def test_legacy_att_provenance_meets_the_rule(oci_registry: Registry, signer: Signer,
                                                    make: Any) -> None:
    name, digest, image = signed_image(oci_registry, signer)
    signer.attest_legacy(oci_registry.pusher, name, digest, SLSA1, provenance())
    v = make()
    verdict = await check(v, image, rule(signer, PROVENANCE))
    assert verdict.verified, verdict.why()
    again = await check(v, image, rule(signer, PROVENANCE))
    assert again.verified and again.source == "cache"


async def test_unmet_condition_names_the_condition_and_the_value(
        oci_registry: Registry, signer: Signer, make: Any) -> None:
    name, digest, image = signed_image(oci_registry, signer)
    signer.attest_legacy(oci_registry.pusher, name, digest, SLSA1,
                         provenance("https://evil.example/builder"))
    verdict = await check(make(), image, rule(signer, PROVENANCE))
    assert not verdict.verified and not verdict.error
    assert verdict.signer == "cosign.pub"  # signed: only the attestation rule failed
    why = verdict.why()
    assert "attestation 'provenance' (https://slsa.dev/provenance/v1)" in why
    assert f'condition `predicate.runDetails.builder.id == "{BUILDER}"` is false' in why
    assert 'predicate.runDetails.builder.id = "https://evil.example/builder"' in why


async def test_bundle_referrer_vulnerability_scan(oci_registry: Registry, signer: Signer,
                                                  make: Any) -> None:
    """A vuln predicate in a bundle referrer: fresh and clean passes; an old scan or a
    HIGH finding fails with the scan's date or the finding in the message."""
    cases = [(scan(), ""), (scan(days_ago=10), "now - duration(\"168h\")` is false"),
             (scan(severities=("LOW", "HIGH")), '"Severity": "HIGH"')]
    for predicate, why in cases:
        name, digest, image = signed_image(oci_registry, signer)
        signer.bundle(oci_registry.pusher, name, digest, VULN, predicate=predicate)
        verdict = await check(make(), image, rule(signer, FRESH_SCAN))
        if not why:
            assert verdict.verified, verdict.why()
        else:
            assert not verdict.verified and why in verdict.why(), verdict.why()
            assert "bundle referrer" in verdict.why()
    assert "predicate.metadata.scanFinishedOn = " in (await check(
        make(), image, rule(signer, attestations.Requirement.build(
            "v", VULN, ['timestamp(predicate.metadata.scanFinishedOn) > now'], "t")))).why()


async def test_missing_forged_and_foreign_attestations_do_not_count(
        oci_registry: Registry, signer: Signer, other_signer: Signer, make: Any) -> None:
    name, digest, image = signed_image(oci_registry, signer)
    missing = await check(make(), image, rule(signer, PROVENANCE))
    assert not missing.verified
    assert ("attestation 'provenance': no verified attestation of predicateType "
            "https://slsa.dev/provenance/v1") in missing.why()
    other_signer.attest_legacy(oci_registry.pusher, name, digest, SLSA1, provenance())
    signer.attest_legacy(oci_registry.pusher, name, digest, SLSA1, provenance(), tamper=True)
    signer.attest_legacy(oci_registry.pusher, name, digest, SLSA1, provenance(),
                         subject="sha256:" + "0" * 64)
    signer.bundle(oci_registry.pusher, name, digest, "https://spdx.dev/Document",
                  predicate={"spdxVersion": "SPDX-2.3"})
    verdict = await check(make(), image, rule(signer, PROVENANCE))
    assert not verdict.verified
    why = verdict.why()
    assert "verified: https://spdx.dev/Document" in why  # counted, but not the wanted type
    assert ".att layer 0: the DSSE signature does not verify with the rule's keys" in why
    assert ".att layer 1: the DSSE signature does not verify" in why  # tampered payload
    assert f".att layer 2: the statement's subject is sha256:{'0' * 64}, not {digest}" in why
    sbom = attestations.Requirement.build("sbom", ["spdx", "cyclonedx"], [], "t")
    assert (await check(make(), image, rule(signer, sbom))).verified


async def test_unsigned_image_is_refused_before_attestations(
        oci_registry: Registry, signer: Signer, make: Any) -> None:
    name = f"ml/att-{uuid.uuid4().hex[:8]}"
    digest = oci_registry.pusher.image(name, "1.0")
    signer.attest_legacy(oci_registry.pusher, name, digest, SLSA1, provenance())
    verdict = await check(make(), f"{oci_registry.host}/{name}:1.0", rule(signer, PROVENANCE))
    assert not verdict.verified and not verdict.unmet
    assert "no signatures" in verdict.why()


async def test_keyless_legacy_attestation(oci_registry: Registry, signer: Signer,
                                          make: Any, tmp_path: Any) -> None:
    """`.att` signed keyless by the test Fulcio, logged (intoto 0.0.1) by the test Rekor,
    its certificate with an SCT of the test CT log: counted for the rule's identity only."""
    sigstore = TestSigstore()
    root = tmp_path / "trusted_root.json"
    root.write_text(json.dumps(sigstore.trusted_root()))
    name, digest, image = signed_image(oci_registry, signer)
    sigstore.attest_legacy(oci_registry.pusher, name, digest, "alice@example.com", ISSUER,
                           SLSA1, provenance())
    alice = bundles.Identity(issuer=ISSUER, subject="alice@example.com")
    bob = bundles.Identity(issuer=ISSUER, subject="bob@example.com")
    ok = await check(make(str(root)), image, rule(signer, PROVENANCE, identities=(alice,)))
    assert ok.verified, ok.why()
    refused = await check(make(str(root)), image, rule(signer, PROVENANCE, identities=(bob,)))
    assert not refused.verified
    assert "the certificate is for alice@example.com" in refused.why()


async def test_attestation_rule_through_the_policy(
        oci_registry: Registry, signer: Signer, engines: list[engine.Engine]) -> None:
    name, digest, image = signed_image(oci_registry, signer)
    signer.attest_legacy(oci_registry.pusher, name, digest, SLSA1,
                         provenance("https://evil.example/builder"))
    data = {"registries": {"insecure": [oci_registry.host], "deadline": "2s"},
            "policies": {"image-signatures": {"params": {"rules": [{
                "name": "ml-images", "images": [f"{oci_registry.host}/ml/*"],
                "keys": [{"pem": signer.public_pem}],
                "attestations": [{"name": "provenance", "predicateType": "slsaprovenance1",
                                  "conditions": [f'predicate.runDetails.builder.id == '
                                                 f'"{BUILDER}"']}]}]}}}}
    eng = build(engines, data)
    denied = await review(eng, pod_with(image), "validate")
    assert not denied.allowed
    assert "[image-signatures]" in denied.message and 'container "c0"' in denied.message
    assert "is signed, but misses the attestations rule 'ml-images' requires" in denied.message
    assert "https://evil.example/builder" in denied.message
    assert "cosign attest" in denied.message
    data["policies"]["image-signatures"]["params"]["rules"][0]["attestations"][0][
        "conditions"] = ["predicate.runDetails.builder.id =="]
    with pytest.raises(errors.ConfigError, match=r"attestations\[0\]\.conditions\[0\].*not CEL"):
        build(engines, data)


def test_attestation_rule_end_to_end_over_tls(oci_registry: Registry, signer: Signer,
                                              tmp_path: Any) -> None:
    """The real server over TLS answers /validate: an image with a fresh clean scan in a
    bundle referrer is allowed, the same image under a rule wanting provenance is denied
    with the missing attestation named; an InferenceService's unsigned oci:// model too."""
    import yaml

    from tests import factories
    from tests.server import running_server

    name, digest, image = signed_image(oci_registry, signer)
    signer.bundle(oci_registry.pusher, name, digest, VULN, predicate=scan())
    unsigned_model = f"ml/model-{uuid.uuid4().hex[:6]}"
    oci_registry.pusher.model(unsigned_model, "v1")
    rules = [{"name": "scanned", "images": [f"{image}*"], "keys": [{"pem": signer.public_pem}],
              "attestations": [{"name": "scan", "predicateType": "vuln", "conditions": [
                  'timestamp(predicate.metadata.scanFinishedOn) > now - duration("168h")']}]},
             {"name": "ml", "images": [f"{oci_registry.host}/ml/*"],
              "keys": [{"pem": signer.public_pem}],
              "attestations": [{"name": "provenance", "predicateType": SLSA1}]}]
    config_file = tmp_path / "mlgate.yaml"
    config_file.write_text(yaml.safe_dump({
        "registries": {"insecure": [oci_registry.host], "deadline": "2s"},
        "policies": {"image-signatures": {"params": {"rules": rules}}}}))
    with running_server(tmp_path, config=config_file) as srv, srv.client() as client:
        def validate(obj: dict[str, Any]) -> dict[str, Any]:
            response = client.post("/validate", json=factories.admission_review(obj))
            assert response.status_code == 200
            return dict(response.json()["response"])

        limits = {"cpu": "1", "memory": "1Gi"}
        assert validate(pod_with(image))["allowed"] is True
        other = f"{oci_registry.host}/{name}@{digest}"
        denied = validate(pod_with(other))
        assert denied["allowed"] is False
        assert "no verified attestation of predicateType https://slsa.dev/provenance/v1" in \
            denied["status"]["message"]
        model = validate({"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                          "metadata": {"name": "m", "namespace": "ml"},
                          "spec": {"predictor": {"model": {
                              "modelFormat": {"name": "huggingface"}, "resources": {
                                  "limits": limits},
                              "storageUri": f"oci://{oci_registry.host}/{unsigned_model}:v1"}}}})
        assert model["allowed"] is False
        assert "/spec/predictor/model/storageUri" in model["status"]["message"]
        assert "is not signed by an authority of rule 'ml'" in model["status"]["message"]


async def test_key_based_att_with_rekor_entry_and_tlog_required(
        oci_registry: Registry, signer: Signer, make: Any, tmp_path: Any) -> None:
    """A key-based `.att` logged in the test Rekor (an intoto 0.0.1 entry: payload hash and
    key, with its SET) passes `tlog: required`; the same attestation unlogged does not."""
    import base64
    import hashlib

    from tests.signatures.signer import DSSE_ENVELOPE, append_sig_layer, statement

    sigstore = TestSigstore()
    root = tmp_path / "trusted_root.json"
    root.write_text(json.dumps(sigstore.trusted_root()))
    name, digest, image = signed_image(oci_registry, signer)
    # the image signature itself, logged too, so that only the attestation is in question
    payload = Signer.payload(f"{oci_registry.host}/{name}", digest)
    raw = signer.sign(payload)
    append_sig_layer(oci_registry.pusher, name, digest, payload, {
        "dev.cosignproject.cosign/signature": base64.b64encode(raw).decode(),
        "dev.sigstore.cosign/bundle": sigstore.rekor_bundle(
            payload, raw, signer.public_pem.encode(), int(time.time()) - 60)})
    stmt = statement(name, digest, SLSA1, provenance())
    envelope = signer.envelope(stmt)
    body = {"apiVersion": "0.0.1", "kind": "intoto", "spec": {
        "content": {"hash": {"algorithm": "sha256",
                             "value": hashlib.sha256(envelope).hexdigest()},
                    "payloadHash": {"algorithm": "sha256",
                                    "value": hashlib.sha256(stmt).hexdigest()}},
        "publicKey": base64.b64encode(signer.public_pem.encode()).decode()}}
    required = verifier.Authorities.build(
        "ml", [("cosign.pub", keys.load(signer.public_pem, "k"))], [], {}, tlog="required",
        requirements=[PROVENANCE])
    unlogged = await check(make(str(root)), image, required)
    assert not unlogged.verified  # no attestation at all yet
    signer.attest_legacy(oci_registry.pusher, name, digest, SLSA1, provenance())
    refused = await check(make(str(root)), image, required)
    assert not refused.verified
    assert ".att layer 0: no Rekor entry" in refused.why() and "tlog: required" in refused.why()
    append_sig_layer(oci_registry.pusher, name, digest, envelope, {
        "dev.cosignproject.cosign/signature": "", "predicateType": SLSA1,
        "dev.sigstore.cosign/bundle": sigstore.log(body, int(time.time()) - 30)},
        ".att", DSSE_ENVELOPE)
    logged = await check(make(str(root)), image, required)
    assert logged.verified, logged.why()


async def test_policy_tlog_required_refuses_unlogged_key_signatures(
        oci_registry: Registry, signer: Signer, engines: list[engine.Engine]) -> None:
    _, _, image = signed_image(oci_registry, signer)
    rule_config = {"name": "ml-images", "images": [f"{oci_registry.host}/ml/*"],
                   "keys": [{"pem": signer.public_pem}]}
    data = {"registries": {"insecure": [oci_registry.host], "deadline": "2s"},
            "policies": {"image-signatures": {"params": {"rules": [rule_config]}}}}
    assert (await review(build(engines, data), pod_with(image), "validate")).allowed
    rule_config["tlog"] = "required"
    denied = await review(build(engines, data), pod_with(image), "validate")
    assert not denied.allowed
    assert "no Rekor entry (dev.sigstore.cosign/bundle annotation), and the rule has tlog: " \
        "required" in denied.message


@pytest.fixture
def att_failing_proxy(oci_registry: Registry) -> Any:
    """A stand-in in front of the real registry that answers 503 for `.att` manifests and
    passes everything else through: a registry failing in the middle of a request, on
    purpose."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import httpx

    class Handler(BaseHTTPRequestHandler):
        def _forward(self) -> None:
            if ".att" in self.path:
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            upstream = httpx.request(self.command, oci_registry.base + self.path, headers={
                k: v for k, v in self.headers.items() if k.lower() in ("accept",)})
            self.send_response(upstream.status_code)
            for key in ("Content-Type", "Docker-Content-Digest"):
                if key in upstream.headers:
                    self.send_header(key, upstream.headers[key])
            self.send_header("Content-Length", str(len(upstream.content)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(upstream.content)

        do_GET = do_HEAD = _forward  # noqa: N815 (http.server's naming)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


async def test_attestations_unreadable_is_an_error_not_a_rejection(
        oci_registry: Registry, signer: Signer, att_failing_proxy: str) -> None:
    """When the registry fails on the `.att` tag, an unmet requirement is a registry error
    (the rule's `failure` decides), not a verdict that the attestation is missing."""
    name, digest, _ = signed_image(oci_registry, signer)
    signer.attest_legacy(oci_registry.pusher, name, digest, SLSA1, provenance())
    v = verifier.Verifier(settings.Registries.model_validate(
        {"insecure": [att_failing_proxy], "deadline": "2s"}))
    try:
        auth = verifier.Authorities.build("ml", [("cosign.pub", keys.load(
            signer.public_pem, "k"))], [], {}, check_identity=False, requirements=[PROVENANCE])
        verdict = await check(v, f"{att_failing_proxy}/{name}:1.0", auth)
        assert not verdict.verified and not verdict.unmet
        assert "legacy attestations:" in verdict.error and "503" in verdict.error
        signature_only = verifier.Authorities.build("ml", [("cosign.pub", keys.load(
            signer.public_pem, "k"))], [], {}, check_identity=False)
        assert (await check(v, f"{att_failing_proxy}/{name}:1.0", signature_only)).verified
    finally:
        await v.aclose()
