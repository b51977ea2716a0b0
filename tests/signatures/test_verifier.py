"""Verification against a real registry: images pushed, signed by the test signer."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from tests.signatures.conftest import Registry
from tests.signatures.signer import Signer
from webhook.signatures import bundles, keys, registry, settings, verifier

pytestmark = pytest.mark.integration


_made: list[verifier.Verifier] = []


@pytest.fixture(autouse=True)
async def _close_verifiers() -> AsyncIterator[None]:
    yield
    while _made:
        await _made.pop().aclose()


def make_verifier(reg_hosts: list[str], **extra: object) -> verifier.Verifier:
    made = verifier.Verifier(settings.Registries.model_validate(
        {"insecure": reg_hosts, "deadline": "2s", **extra}))
    _made.append(made)
    return made


def authorities(*signers: Signer, **extra: object) -> verifier.Authorities:
    named = [(f"key{i}", keys.load(s.public_pem, f"key{i}")) for i, s in enumerate(signers)]
    return verifier.Authorities.build("ml", named, list(extra.pop("identities", [])),  # type: ignore[call-overload]
                                      dict(extra.pop("annotations", {})), **extra)  # type: ignore[arg-type]


def repo() -> str:
    return f"ml/train-{uuid.uuid4().hex[:8]}"


async def check(v: verifier.Verifier, image: str, auth: verifier.Authorities) -> verifier.Verdict:
    return await asyncio.wait_for(v.check(image, auth, time.monotonic() + 2), 30)


async def test_legacy_signature_verifies(oci_registry: Registry, signer: Signer) -> None:
    name = repo()
    digest = oci_registry.pusher.image(name, "1.0")
    signer.legacy(oci_registry.pusher, name, digest)
    verdict = await check(make_verifier([oci_registry.host]), f"{oci_registry.host}/{name}:1.0",
                          authorities(signer))
    assert verdict.verified, verdict.why()
    assert verdict.digest == digest
    assert verdict.signer == "key0"


async def test_bundle_referrer_verifies(oci_registry: Registry, signer: Signer) -> None:
    name = repo()
    digest = oci_registry.pusher.image(name, "1.0")
    signer.bundle(oci_registry.pusher, name, digest)
    verdict = await check(make_verifier([oci_registry.host]), f"{oci_registry.host}/{name}:1.0",
                          authorities(signer))
    assert verdict.verified, verdict.why()


async def test_unsigned_image_is_rejected(oci_registry: Registry, signer: Signer) -> None:
    name = repo()
    oci_registry.pusher.image(name, "1.0")
    verdict = await check(make_verifier([oci_registry.host]), f"{oci_registry.host}/{name}:1.0",
                          authorities(signer))
    assert not verdict.verified and not verdict.error
    assert "no signatures" in verdict.why()


async def test_signature_by_another_key_is_rejected(oci_registry: Registry, signer: Signer,
                                                    other_signer: Signer) -> None:
    name = repo()
    digest = oci_registry.pusher.image(name, "1.0")
    other_signer.legacy(oci_registry.pusher, name, digest)
    other_signer.bundle(oci_registry.pusher, name, digest)
    verdict = await check(make_verifier([oci_registry.host]), f"{oci_registry.host}/{name}:1.0",
                          authorities(signer))
    assert not verdict.verified
    assert "does not verify with the rule's keys" in verdict.reasons[0]
    assert "DSSE signature does not verify" in verdict.reasons[1]
    # A rule that trusts both keys accepts the same image.
    both = await check(make_verifier([oci_registry.host]), f"{oci_registry.host}/{name}:1.0",
                       authorities(signer, other_signer))
    assert both.verified and both.signer == "key1"


async def test_payload_for_another_image_is_rejected(oci_registry: Registry,
                                                     signer: Signer) -> None:
    name = repo()
    digest = oci_registry.pusher.image(name, "1.0")
    other = oci_registry.pusher.image(name, "2.0")
    signer.legacy(oci_registry.pusher, name, digest, payload_digest=other)
    signer.bundle(oci_registry.pusher, name, digest, bundle=signer.bundle_bytes(name, other))
    verdict = await check(make_verifier([oci_registry.host]), f"{oci_registry.host}/{name}:1.0",
                          authorities(signer))
    assert not verdict.verified
    assert f"the payload signs {other}, not this image's {digest}" in verdict.reasons[0]
    assert f"subject is {other}, not {digest}" in verdict.reasons[1]


async def test_tampered_payload_is_rejected(oci_registry: Registry, signer: Signer) -> None:
    name = repo()
    digest = oci_registry.pusher.image(name, "1.0")
    signer.legacy(oci_registry.pusher, name, digest, tamper=True)
    verdict = await check(make_verifier([oci_registry.host]), f"{oci_registry.host}/{name}:1.0",
                          authorities(signer))
    assert not verdict.verified
    assert "does not verify with the rule's keys" in verdict.why()


async def test_tag_moved_after_signing(oci_registry: Registry, signer: Signer) -> None:
    name = repo()
    signed = oci_registry.pusher.image(name, "stable")
    signer.legacy(oci_registry.pusher, name, signed)
    moved = oci_registry.pusher.image(name, "stable")  # the tag now names another image
    v = make_verifier([oci_registry.host])
    verdict = await check(v, f"{oci_registry.host}/{name}:stable", authorities(signer))
    assert not verdict.verified and verdict.digest == moved
    pinned = await check(v, f"{oci_registry.host}/{name}:stable@{signed}", authorities(signer))
    assert pinned.verified and pinned.digest == signed


async def test_multi_arch_index_digest_is_what_is_signed(oci_registry: Registry,
                                                         signer: Signer) -> None:
    name = repo()
    amd = oci_registry.pusher.image(name, "amd64")
    arm = oci_registry.pusher.image(name, "arm64")
    index = oci_registry.pusher.index(name, "1.0", [(amd, "amd64"), (arm, "arm64")])
    signer.legacy(oci_registry.pusher, name, index)
    v = make_verifier([oci_registry.host])
    verdict = await check(v, f"{oci_registry.host}/{name}:1.0", authorities(signer))
    assert verdict.verified and verdict.digest == index
    child = await check(v, f"{oci_registry.host}/{name}@{amd}", authorities(signer))
    assert not child.verified and "no signatures" in child.why()


async def test_attestation_is_not_a_signature(oci_registry: Registry, signer: Signer) -> None:
    name = repo()
    digest = oci_registry.pusher.image(name, "1.0")
    signer.bundle(oci_registry.pusher, name, digest, predicate_type="https://slsa.dev/provenance/v1")
    verdict = await check(make_verifier([oci_registry.host]), f"{oci_registry.host}/{name}:1.0",
                          authorities(signer))
    assert not verdict.verified
    assert "is an attestation, not a signature" in verdict.why()


async def test_required_annotations_and_identity(oci_registry: Registry, signer: Signer) -> None:
    name = repo()
    digest = oci_registry.pusher.image(name, "1.0")
    signer.legacy(oci_registry.pusher, name, digest, optional={"team": "ml"})
    image = f"{oci_registry.host}/{name}:1.0"
    v = make_verifier([oci_registry.host])
    assert (await check(v, image, authorities(signer, annotations={"team": "ml"}))).verified
    wrong = await check(v, image, authorities(signer, annotations={"team": "web"}))
    assert "annotation team='web' required, the payload has 'ml'" in wrong.why()
    # A signature whose identity names another repository does not sign this one.
    other = repo()
    other_digest = oci_registry.pusher.image(other, "1.0")
    signer.legacy(oci_registry.pusher, other, other_digest,
                  identity=f"{oci_registry.host}/somewhere/else")
    mismatch = await check(v, f"{oci_registry.host}/{other}:1.0", authorities(signer))
    assert "names '" in mismatch.why() and not mismatch.verified
    relaxed = await check(v, f"{oci_registry.host}/{other}:1.0",
                          authorities(signer, check_identity=False))
    assert relaxed.verified


async def test_missing_image_is_rejected_not_an_error(oci_registry: Registry,
                                                      signer: Signer) -> None:
    verdict = await check(make_verifier([oci_registry.host]),
                          f"{oci_registry.host}/{repo()}:nope", authorities(signer))
    assert not verdict.verified and not verdict.error
    assert "does not exist" in verdict.why()


async def test_registry_down_is_an_error_verdict(down_registry: str, signer: Signer) -> None:
    verdict = await check(make_verifier([down_registry]), f"{down_registry}/ml/x:1",
                          authorities(signer))
    assert verdict.error and not verdict.verified
    assert f"registry {down_registry} is unreachable" in verdict.error


async def test_slow_registry_gives_up_at_the_deadline(slow_registry: str, signer: Signer) -> None:
    v = make_verifier([slow_registry])
    verdict = await asyncio.wait_for(
        v.check(f"{slow_registry}/ml/x:1", authorities(signer), time.monotonic() + 0.3), 30)
    assert verdict.error and "did not answer" in verdict.error and "deadline" in verdict.error
    # The failure is remembered briefly: the next request does not ask the registry again.
    await asyncio.wait_for(v.coalescer.settle(), 30)  # the lookup ends at its deadline
    again = await asyncio.wait_for(
        v.check(f"{slow_registry}/ml/x:1", authorities(signer), time.monotonic() + 0.3), 30)
    assert again.error and "deadline" in again.error
    assert len(v.coalescer) == 0  # answered from the negative cache, no lookup started


async def test_auth_required_registry(auth_registry: Registry, signer: Signer) -> None:
    name = repo()
    digest = auth_registry.pusher.image(name, "1.0")
    signer.legacy(auth_registry.pusher, name, digest)
    signer.bundle(auth_registry.pusher, name, digest)
    image = f"{auth_registry.host}/{name}:1.0"
    anonymous = await check(make_verifier([auth_registry.host]), image, authorities(signer))
    assert anonymous.error and "refused anonymous access" in anonymous.error
    assert "registries.credentials" in anonymous.error
    with_creds = make_verifier([auth_registry.host], credentials=str(auth_registry.credentials))
    verdict = await check(with_creds, image, authorities(signer))
    assert verdict.verified, verdict.why()


async def test_cache_and_coalescing(oci_registry: Registry, signer: Signer) -> None:
    name = repo()
    digest = oci_registry.pusher.image(name, "1.0")
    signer.legacy(oci_registry.pusher, name, digest)
    v = make_verifier([oci_registry.host])
    image = f"{oci_registry.host}/{name}:1.0"
    calls = 0
    real_manifest = v.client.manifest

    async def counting(*args: object, **kwargs: object) -> registry.Manifest | None:
        nonlocal calls
        calls += 1
        return await real_manifest(*args, **kwargs)  # type: ignore[arg-type]

    v.client.manifest = counting  # type: ignore[method-assign]
    verdicts = await asyncio.gather(*(check(v, image, authorities(signer)) for _ in range(10)))
    assert all(x.verified for x in verdicts)
    assert v.coalescer.joined >= 9  # nine callers joined the first one's lookups
    first = calls
    assert first <= 4  # tag, .sig tag, referrers fallback tag: once each, not ten times
    cached = await check(v, image, authorities(signer))
    assert cached.verified and cached.source == "cache" and calls == first


async def test_keyless_identity_needs_a_keyless_bundle(oci_registry: Registry,
                                                       signer: Signer) -> None:
    name = repo()
    digest = oci_registry.pusher.image(name, "1.0")
    signer.bundle(oci_registry.pusher, name, digest)
    only_keyless = verifier.Authorities.build(
        "ci", [], [bundles.Identity(issuer="https://token.actions.githubusercontent.com",
                                    subject_regexp="^https://github.com/acme/")], {})
    verdict = await check(make_verifier([oci_registry.host]), f"{oci_registry.host}/{name}:1.0",
                          only_keyless)
    assert not verdict.verified
    assert "signed with a key, and the rule has no keys" in verdict.why()
