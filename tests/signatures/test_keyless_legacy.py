"""Legacy keyless `.sig` signatures in a real registry, signed by a test Fulcio and Rekor of
our own (tests/signatures/signer.py TestSigstore) and trusted through registries.trustedRoot:
through the verifier, and through the image-signatures policy in the engine."""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.signatures.conftest import Registry
from tests.signatures.signer import Signer, TestSigstore
from tests.signatures.test_policies import build, pod_with, review
from webhook import engine
from webhook.signatures import bundles, cosign, fulcio, keys, settings, verifier

pytestmark = pytest.mark.integration

ISSUER = "https://issuer.test"
ALICE = bundles.Identity(issuer=ISSUER, subject="alice@example.com")


@pytest.fixture(scope="module")
def sigstore() -> TestSigstore:
    return TestSigstore()


@pytest.fixture(scope="module")
def trusted_root(sigstore: TestSigstore, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("sigstore") / "trusted_root.json"
    path.write_text(json.dumps(sigstore.trusted_root()))
    return str(path)


@pytest.fixture
async def make(oci_registry: Registry, trusted_root: str) -> AsyncIterator[Any]:
    made: list[verifier.Verifier] = []

    def factory() -> verifier.Verifier:
        made.append(verifier.Verifier(settings.Registries.model_validate(
            {"insecure": [oci_registry.host], "deadline": "2s", "trustedRoot": trusted_root})))
        return made[-1]

    yield factory
    for v in made:
        await v.aclose()


def rule(*identities: bundles.Identity, signer: Signer | None = None) -> verifier.Authorities:
    named = [("key0", keys.load(signer.public_pem, "key0"))] if signer else []
    return verifier.Authorities.build("ml", named, list(identities), {})


async def check(v: verifier.Verifier, image: str, auth: verifier.Authorities) -> verifier.Verdict:
    return await asyncio.wait_for(v.check(image, auth, time.monotonic() + 2), 30)


def repo() -> str:
    return f"ml/keyless-{uuid.uuid4().hex[:8]}"


async def test_keyless_legacy_signature_verifies(oci_registry: Registry, sigstore: TestSigstore,
                                                 make: Any) -> None:
    name = repo()
    digest = oci_registry.pusher.image(name, "1.0")
    sigstore.legacy(oci_registry.pusher, name, digest, "alice@example.com", ISSUER)
    image = f"{oci_registry.host}/{name}:1.0"
    verdict = await check(make(), image, rule(ALICE))
    assert verdict.verified, verdict.why()
    assert verdict.signer == f"alice@example.com ({ISSUER})"  # the leaf expired an hour ago
    by_regexp = await check(make(), image, rule(bundles.Identity(
        issuer_regexp=r"^https://issuer\.test$", subject_regexp=r"@example\.com$")))
    assert by_regexp.verified, by_regexp.why()


async def test_keyless_legacy_other_identity_is_rejected(
        oci_registry: Registry, sigstore: TestSigstore, make: Any) -> None:
    name = repo()
    digest = oci_registry.pusher.image(name, "1.0")
    sigstore.legacy(oci_registry.pusher, name, digest, "mallory@example.com", ISSUER)
    verdict = await check(make(), f"{oci_registry.host}/{name}:1.0", rule(ALICE))
    assert not verdict.verified and not verdict.error
    assert verdict.reasons == (
        f"sha256-{digest[7:]}.sig layer 0: the certificate is for "
        f"mallory@example.com ({ISSUER}), not alice@example.com from {ISSUER}",)


async def test_keyless_legacy_from_an_untrusted_ca_is_rejected(
        oci_registry: Registry, make: Any) -> None:
    stranger = TestSigstore()  # its own CA and Rekor key, which the trusted root does not hold
    name = repo()
    digest = oci_registry.pusher.image(name, "1.0")
    stranger.legacy(oci_registry.pusher, name, digest, "alice@example.com", ISSUER)
    verdict = await check(make(), f"{oci_registry.host}/{name}:1.0", rule(ALICE))
    assert not verdict.verified
    assert "SET comes from Rekor log" in verdict.why() and "not trusted" in verdict.why()


async def test_keyless_legacy_logged_after_the_certificate_expired(
        oci_registry: Registry, sigstore: TestSigstore, make: Any) -> None:
    name = repo()
    digest = oci_registry.pusher.image(name, "1.0")
    sigstore.legacy(oci_registry.pusher, name, digest, "alice@example.com", ISSUER,
                    logged_after=datetime.timedelta(minutes=20))
    verdict = await check(make(), f"{oci_registry.host}/{name}:1.0", rule(ALICE))
    assert not verdict.verified
    assert "logged outside its lifetime" in verdict.why()


async def test_keyless_legacy_chain_from_the_trusted_root(
        oci_registry: Registry, sigstore: TestSigstore, make: Any) -> None:
    """Without a chain annotation the intermediate comes from the trusted root, as cosign."""
    name = repo()
    digest = oci_registry.pusher.image(name, "1.0")
    sigstore.legacy(oci_registry.pusher, name, digest, "alice@example.com", ISSUER,
                    with_chain=False)
    verdict = await check(make(), f"{oci_registry.host}/{name}:1.0", rule(ALICE))
    assert verdict.verified, verdict.why()


async def test_keys_and_keyless_in_one_rule(oci_registry: Registry, sigstore: TestSigstore,
                                            signer: Signer, make: Any) -> None:
    name = repo()
    digest = oci_registry.pusher.image(name, "1.0")
    sigstore.legacy(oci_registry.pusher, name, digest, "mallory@example.com", ISSUER)
    image = f"{oci_registry.host}/{name}:1.0"
    both = await check(make(), image, rule(ALICE, signer=signer))
    assert not both.verified
    assert "certificate is for mallory@example.com" in both.why()  # each way it failed
    assert "does not verify with the rule's keys (key0)" in both.why()
    only_keys = await check(make(), image, rule(signer=signer))
    assert "it is a keyless signature" in only_keys.why()
    signer.legacy(oci_registry.pusher, name, digest)  # a key-signed layer next to it
    assert (await check(make(), image, rule(ALICE, signer=signer))).verified
    only_keyless = await check(make(), image, rule(ALICE))
    assert "made with a key (no Fulcio certificate), and the rule has no keys" in \
        only_keyless.why()


async def test_image_signatures_policy_accepts_keyless_legacy(
        oci_registry: Registry, sigstore: TestSigstore, trusted_root: str,
        engines: list[engine.Engine]) -> None:
    name = repo()
    alice = oci_registry.pusher.image(name, "alice")
    sigstore.legacy(oci_registry.pusher, name, alice, "alice@example.com", ISSUER)
    mallory = oci_registry.pusher.image(name, "mallory")
    sigstore.legacy(oci_registry.pusher, name, mallory, "mallory@example.com", ISSUER)
    eng = build(engines, {
        "registries": {"insecure": [oci_registry.host], "deadline": "1s",
                       "trustedRoot": trusted_root},
        "policies": {"image-signatures": {"params": {"rules": [
            {"name": "ci-built", "images": [f"{oci_registry.host}/ml/*"],
             "keyless": [{"issuer": ISSUER, "subjectRegExp": "^alice@"}]}]}}}})
    ok = await review(eng, pod_with(f"{oci_registry.host}/{name}:alice"), "validate")
    assert ok.allowed, ok.message
    denied = await review(eng, pod_with(f"{oci_registry.host}/{name}:mallory"), "validate")
    assert not denied.allowed
    assert "rule 'ci-built'" in denied.message
    assert f"the certificate is for mallory@example.com ({ISSUER}), not /^alice@/ from " \
           f"{ISSUER}" in denied.message


def test_leaf_checks_without_a_registry(sigstore: TestSigstore, trusted_root: str) -> None:
    digest = "sha256:" + "ab" * 32
    trust = fulcio.trust_root(trusted_root)

    def verify(**options: Any) -> cosign.Result:
        payload, annotations = sigstore.sign("r.test/ml/x", digest, "alice@example.com",
                                             ISSUER, **options)
        return fulcio.verify(cosign.Signature(payload, annotations[
            cosign.SIGNATURE_ANNOTATION], annotations), digest, [ALICE], trust)

    assert verify().valid
    not_code_signing = verify(usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    assert "not for code signing" in not_code_signing.reason
    assert fulcio.verify(cosign.Signature(b"{}", "", {}), digest, [ALICE], trust).reason == \
        f"no {cosign.CERTIFICATE_ANNOTATION} annotation: a keyless signature needs its " \
        f"Fulcio certificate"
    assert "rule has no keyless identities" in fulcio.verify(
        cosign.Signature(b"{}", "", {}), digest, [], trust).reason


def test_a_broken_trusted_root_is_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "trusted_root.json"
    broken.write_text(json.dumps({"certificateAuthorities": [
        {"certChain": {"certificates": [{"rawBytes": "bm90IGEgY2VydA=="}]}}]}))
    with pytest.raises(ValueError, match=f"trusted root {broken} is not a sigstore "
                                         f"trusted_root.json"):
        fulcio.TrustRoot.from_trusted_root(str(broken))
    with pytest.raises(ValueError, match="does not exist"):
        fulcio.trust_root(str(tmp_path / "missing.json"))
    with pytest.raises(ValueError):  # the verifier refuses it at startup, not per request
        verifier.Verifier(settings.Registries.model_validate({"trustedRoot": str(broken)}))


@pytest.mark.parametrize(("sct", "why"), [
    ("none", "has no embedded SCT"),
    ("untrusted", "which is not trusted"),
    ("tampered", "does not verify with its key"),
])
async def test_keyless_legacy_needs_an_sct_of_a_trusted_ct_log(
        oci_registry: Registry, sigstore: TestSigstore, make: Any, sct: str, why: str) -> None:
    """As cosign: the Fulcio certificate must carry a valid SCT of a CT log of the trusted
    root (the log's signature over the precertificate); the test signer makes real ones."""
    name = repo()
    digest = oci_registry.pusher.image(name, "1.0")
    sigstore.legacy(oci_registry.pusher, name, digest, "alice@example.com", ISSUER, sct=sct)
    verdict = await check(make(), f"{oci_registry.host}/{name}:1.0", rule(ALICE))
    assert not verdict.verified and not verdict.error
    assert why in verdict.why() and "SCT" in verdict.why()


async def test_key_based_signatures_and_tlog(oci_registry: Registry, sigstore: TestSigstore,
                                             make: Any) -> None:
    """A key-based `.sig` signature logged in the test Rekor (a SET over a hashedrekord of
    it) passes `tlog: required`; one without a Rekor entry, and a bundle without
    tlogEntries, pass `optional` and fail `required` with the rule's fix."""
    signer = Signer()
    named = [("cosign.pub", keys.load(signer.public_pem, "cosign.pub"))]
    name = repo()
    digest = oci_registry.pusher.image(name, "1.0")
    payload = Signer.payload(f"{oci_registry.host}/{name}", digest)
    raw = signer.sign(payload)
    from tests.signatures.signer import append_sig_layer

    append_sig_layer(oci_registry.pusher, name, digest, payload, {
        "dev.cosignproject.cosign/signature": base64.b64encode(raw).decode(),
        "dev.sigstore.cosign/bundle": sigstore.rekor_bundle(
            payload, raw, signer.public_pem.encode(), int(time.time()) - 60)})
    required = verifier.Authorities.build("ml", named, [], {}, tlog="required")
    verdict = await check(make(), f"{oci_registry.host}/{name}:1.0", required)
    assert verdict.verified, verdict.why()

    unlogged = repo()
    digest = oci_registry.pusher.image(unlogged, "1.0")
    signer.legacy(oci_registry.pusher, unlogged, digest)
    signer.bundle(oci_registry.pusher, unlogged, digest)
    image = f"{oci_registry.host}/{unlogged}:1.0"
    refused = await check(make(), image, required)
    assert not refused.verified
    assert "no Rekor entry" in refused.why() and "tlog: required" in refused.why()
    assert "the bundle has no Rekor entry" in refused.why()
    optional = verifier.Authorities.build("ml", named, [], {}, tlog="optional")
    assert (await check(make(), image, optional)).verified
