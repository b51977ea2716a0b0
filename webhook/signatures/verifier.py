"""One image against one set of authorities: resolve, fetch signatures, verify, cache.

An image is verified when at least one of its signatures is valid for the authorities:
a legacy `sha256-<hex>.sig` simple-signing layer (signed with a key, or keyless under a
Fulcio certificate with a Rekor SET), or a sigstore bundle attached as an OCI referrer.
Results are cached per (digest, authorities); tags are resolved through a short cache
(tags move); failures go to a short negative cache. Identical lookups in flight share
one task. Every registry call of a request shares the caller's deadline,
and a registry that is down or slow becomes a `Verdict` with `error` set, never a hang.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from cryptography.hazmat.primitives import serialization

from webhook import images
from webhook.signatures import (
    attestations,
    bundles,
    cache,
    cosign,
    fulcio,
    keys,
    metrics,
    registry,
    settings,
    transparency,
)

PublicKey = keys.PublicKey

_T = TypeVar("_T")


@dataclass(frozen=True)
class Authorities:
    """Who may sign the images of one rule, and what their signatures must say."""

    name: str
    keys: tuple[tuple[str, PublicKey], ...] = ()
    identities: tuple[bundles.Identity, ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()
    check_identity: bool = True
    fingerprint: str = field(default="", compare=False)
    tlog: transparency.Mode = "optional"  # for key-based signatures; keyless always need it
    requirements: tuple[attestations.Requirement, ...] = ()  # attestations the image needs

    @classmethod
    def build(cls, name: str, public_keys: Sequence[tuple[str, PublicKey]],
              identities: Sequence[bundles.Identity], annotations: dict[str, str],
              check_identity: bool = True, tlog: transparency.Mode = "optional",
              requirements: Sequence[attestations.Requirement] = ()) -> Authorities:
        digest = hashlib.sha256()
        for _, key in public_keys:
            digest.update(key.public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo))
        digest.update(repr((sorted(map(repr, identities)), sorted(annotations.items()),
                            check_identity, tlog,
                            attestations.fingerprint(requirements))).encode())
        return cls(name, tuple(public_keys), tuple(identities), tuple(sorted(annotations.items())),
                   check_identity, digest.hexdigest()[:16], tlog, tuple(requirements))


@dataclass(frozen=True)
class Verdict:
    """What is known about one image: its digest and whether it is validly signed.

    `error` is set when the registry could not say (down, slow, auth): the rule's failure
    mode decides. `reasons` say why each signature found was not valid.
    """

    image: str
    digest: str | None = None
    verified: bool = False
    signer: str = ""
    reasons: tuple[str, ...] = ()
    error: str = ""
    source: str = "registry"  # registry | cache
    unmet: tuple[str, ...] = ()  # signed, but these attestation requirements are not met

    def why(self) -> str:
        if self.error:
            return self.error
        return "; ".join(self.unmet or self.reasons) or "no valid signature"


class NotFound(registry.RegistryError):
    """The image (tag or digest) is not in the registry."""


class Verifier:
    """Verifies images against authorities through one registry client and its caches."""

    def __init__(self, config: settings.Registries, client: registry.Client | None = None,
                 ) -> None:
        self.config = config
        self.client = client or registry.Client(
            config, settings.load_credentials(config.credentials))
        limits = config.cache
        self.digests: cache.TTLCache[str] = cache.TTLCache(limits.maxEntries, limits.digestTTL)
        self.verified: cache.TTLCache[Verdict] = cache.TTLCache(limits.maxEntries,
                                                                limits.verifiedTTL)
        self.negative: cache.TTLCache[Any] = cache.TTLCache(limits.maxEntries,
                                                            limits.negativeTTL)
        self.coalescer = cache.Coalescer()
        if config.trustedRoot:  # a bad file is a config error, now
            bundles.trusted_root(config.trustedRoot)
            fulcio.trust_root(config.trustedRoot)

    def close(self) -> None:
        self.client.close()

    async def aclose(self) -> None:
        await self.coalescer.settle(cancel=True)
        await self.client.aclose()

    # -- tag -> digest -----------------------------------------------------------
    async def resolve(self, ref: images.Reference, deadline: float) -> str:
        """The digest the ref names now (GET the manifest, hash its bytes)."""
        if ref.digest:
            return ref.digest
        key = str(ref)
        found = self.digests.get(key)
        if found is not cache.MISSING:
            metrics.CACHE.labels("digest", "hit").inc()
            return str(found)
        failure = self.negative.get(("digest", key))
        if failure is not cache.MISSING:
            metrics.CACHE.labels("negative", "hit").inc()
            raise registry.RegistryError(str(failure))
        metrics.CACHE.labels("digest", "miss").inc()

        async def fetch() -> str:
            try:
                manifest = await self.client.manifest(ref, deadline=deadline)
                if manifest is None:
                    raise NotFound(f"image {ref} does not exist in registry {ref.registry}")
            except registry.RegistryError as exc:
                self.negative.put(("digest", key), str(exc))
                raise
            self.digests.put(key, manifest.digest)
            return manifest.digest

        return str(await self._coalesced(("resolve", key), fetch, deadline, ref))

    async def _coalesced(self, key: Any, work: Any, deadline: float,
                         ref: images.Reference) -> Any:
        joined = self.coalescer.joined
        try:
            return await self.coalescer.run(key, work, max(deadline - time.monotonic(), 0.0))
        except TimeoutError as exc:
            raise registry.DeadlineExceeded(
                f"registry {ref.registry} did not answer within the deadline") from exc
        finally:
            if self.coalescer.joined > joined:
                metrics.COALESCED.inc()

    # -- verification ------------------------------------------------------------
    async def check(self, image: str, authorities: Authorities, deadline: float) -> Verdict:
        """The verdict on `image` for `authorities`, within `deadline` (monotonic)."""
        try:
            ref = images.parse(image)
        except images.InvalidReference as exc:
            return self._count(Verdict(image, reasons=(str(exc),)))
        try:
            digest = await self.resolve(ref, deadline)
        except NotFound as exc:
            return self._count(Verdict(image, reasons=(str(exc),)))
        except registry.RegistryError as exc:
            return self._count(Verdict(image, error=str(exc)))
        pinned = ref.with_digest(digest)
        key = (digest, pinned.name, pinned.pull_tag if authorities.check_identity else None,
               authorities.fingerprint)
        for store, label in ((self.verified, "verified"), (self.negative, "negative")):
            hit = store.get(key)
            if hit is not cache.MISSING:
                metrics.CACHE.labels(label, "hit").inc()
                assert isinstance(hit, Verdict)
                return self._count(Verdict(image, hit.digest, hit.verified, hit.signer,
                                           hit.reasons, hit.error, "cache", hit.unmet))
        metrics.CACHE.labels("verified", "miss").inc()

        async def work() -> Verdict:
            verdict = await self._verify(pinned, authorities, deadline)
            (self.verified if verdict.verified else self.negative).put(key, verdict)
            return verdict

        try:
            verdict = await self._coalesced(("verify", key), work, deadline, ref)
        except registry.RegistryError as exc:
            return self._count(Verdict(image, digest, error=str(exc)))
        return self._count(Verdict(image, digest, verdict.verified, verdict.signer,
                                   verdict.reasons, verdict.error, unmet=verdict.unmet))

    @staticmethod
    def _count(verdict: Verdict) -> Verdict:
        result = "error" if verdict.error else ("verified" if verdict.verified else "rejected")
        metrics.VERIFICATIONS.labels(result, verdict.source).inc()
        return verdict

    async def _legacy(self, ref: images.Reference, deadline: float, suffix: str = ".sig",
                      media_type: str = cosign.SIMPLESIGNING) -> list[cosign.Signature]:
        """The layers of `media_type` at the tag `sha256-<hex><suffix>` (`.sig` signatures,
        `.att` attestations), each with its annotations."""
        assert ref.digest is not None
        tag = registry.signature_tag(ref.digest, suffix)
        manifest = await self.client.manifest(ref, tag, deadline)
        if manifest is None:
            return []
        layers = [(i, d) for i, d in enumerate(manifest.descriptors())
                  if d.get("mediaType") == media_type
                  and isinstance(d.get("digest"), str)]
        payloads = await asyncio.gather(*(self.client.blob(ref, d["digest"], deadline)
                                          for _, d in layers))
        signatures = []
        for (index, layer), payload in zip(layers, payloads, strict=True):
            found = layer.get("annotations")
            annotations: dict[str, Any] = found if isinstance(found, dict) else {}
            signatures.append(cosign.Signature(
                payload, str(annotations.get(cosign.SIGNATURE_ANNOTATION, "")),
                {str(k): str(v) for k, v in annotations.items()}, f"{tag} layer {index}"))
        return signatures

    async def _bundles(self, ref: images.Reference, deadline: float,
                       ) -> list[tuple[str, bytes]]:
        assert ref.digest is not None
        found = await self.client.referrers(ref, ref.digest, bundles.BUNDLE_V03, deadline)
        manifests = await asyncio.gather(*(self.client.manifest(ref, str(d.get("digest")),
                                                                deadline) for d in found))
        wanted = [(m.digest, layer) for m in manifests if m is not None
                  for layer in m.descriptors()
                  if str(layer.get("mediaType", "")).startswith(bundles.BUNDLE_PREFIX)]
        blobs = await asyncio.gather(*(self.client.blob(ref, str(layer.get("digest")), deadline)
                                       for _, layer in wanted))
        return [(f"bundle referrer {digest[:19]}", blob)
                for (digest, _), blob in zip(wanted, blobs, strict=True)]

    async def _check_legacy(self, signature: cosign.Signature, digest: str,
                            authorities: Authorities, identity: images.Reference | None,
                            ) -> cosign.Result:
        """One `.sig` layer against the rule's keys and, when it carries a Fulcio
        certificate, its keyless identities; the reason names every way it failed."""
        keyless = fulcio.is_keyless(signature)
        if not keyless and not authorities.keys:
            return cosign.Result(False, "the signature is made with a key (no Fulcio "
                                        "certificate), and the rule has no keys")
        annotations = dict(authorities.annotations)
        failed: list[cosign.Result] = []
        if keyless and authorities.identities:
            try:
                trust = fulcio.trust_root(self.config.trustedRoot)
            except ValueError as exc:
                failed.append(cosign.Result(False, f"keyless trust root: {exc}"))
            else:
                by_identity = await asyncio.to_thread(
                    fulcio.verify, signature, digest, authorities.identities, trust,
                    annotations, identity)
                if by_identity.valid:
                    return by_identity
                failed.append(by_identity)
        if authorities.keys or not failed:
            by_key = cosign.verify(signature, digest, authorities.keys, annotations, identity)
            if by_key.valid:
                why = await asyncio.to_thread(self._check_logged, signature, by_key.signer,
                                              authorities)
                if not why:
                    return by_key
                by_key = cosign.Result(False, why)
            failed.append(by_key)
        return cosign.Result(False, "; ".join(result.reason for result in failed))

    def _check_logged(self, signature: cosign.Signature, signer: str,
                      authorities: Authorities) -> str:
        """The rule's `tlog` for a key-based legacy signature that verified with `signer`."""
        if authorities.tlog == "off":
            return ""
        key = dict(authorities.keys)[signer]
        try:
            trust = fulcio.trust_root(self.config.trustedRoot)
        except ValueError as exc:
            return f"transparency log: trust root: {exc}"
        return fulcio.check_logged(signature, key, trust, authorities.tlog)

    async def _verify(self, ref: images.Reference, authorities: Authorities,
                      deadline: float) -> Verdict:
        assert ref.digest is not None
        fetches: list[Any] = [self._legacy(ref, deadline), self._bundles(ref, deadline)]
        if authorities.requirements:
            fetches.append(self._legacy(ref, deadline, ".att", attestations.ENVELOPE))
        fetched: list[Any] = await asyncio.gather(*fetches, return_exceptions=True)
        verdict = await self._verify_signed(ref, authorities, fetched[0], fetched[1])
        if not verdict.verified or not authorities.requirements:
            return verdict
        unmet, errors = await self._unmet(ref, authorities, fetched[2], fetched[1])
        if unmet and errors:  # the registry could not say: the rule's failure mode decides
            return Verdict(verdict.image, verdict.digest, False, verdict.signer,
                           error="; ".join(errors))
        if unmet:
            return Verdict(verdict.image, verdict.digest, False, verdict.signer, unmet=unmet)
        return verdict

    async def _unmet(self, ref: images.Reference, authorities: Authorities,
                     layers: list[cosign.Signature] | BaseException,
                     attached: list[tuple[str, bytes]] | BaseException,
                     ) -> tuple[tuple[str, ...], list[str]]:
        """The attestation requirements no verified attestation of the image meets, and
        the registry errors that kept attestations from being read."""
        assert ref.digest is not None
        errors: list[str] = []
        found, rejected = await asyncio.to_thread(
            self._verify_attestations, ref.digest,
            _fetched(layers, "legacy attestations", errors),
            _fetched(attached, "attestation bundles", errors), authorities)
        now = datetime.now(UTC)
        unmet = [why for requirement in authorities.requirements
                 if (why := attestations.evaluate(requirement, found, now))]
        if unmet and rejected:
            unmet.append("attestations not counted: " + "; ".join(rejected))
        return tuple(unmet), errors

    def _verify_attestations(self, digest: str, layers: list[cosign.Signature],
                             attached: list[tuple[str, bytes]], authorities: Authorities,
                             ) -> tuple[list[attestations.Attestation], list[str]]:
        try:
            trust: fulcio.TrustRoot | None = fulcio.trust_root(self.config.trustedRoot)
        except ValueError:
            trust = None
        found: list[attestations.Attestation] = []
        rejected: list[str] = []
        for layer in layers:
            result = attestations.verify_envelope(
                layer.payload, layer.annotations, digest, authorities.keys,
                authorities.identities, trust, authorities.tlog, layer.where)
            if isinstance(result, str):
                rejected.append(f"{layer.where}: {result}")
            else:
                found.append(result)
        for where, blob in attached:
            if bundles.predicate_type(blob) == bundles.COSIGN_SIGN_PREDICATE:
                continue  # a signature, not an attestation
            content = bundles.verify_content(blob, digest, authorities.keys,
                                             authorities.identities, self.config.trustedRoot,
                                             authorities.tlog)
            if not content.valid or not content.payload_type:
                rejected.append(f"{where}: {content.reason or 'a message signature'}")
                continue
            found.append(attestations.from_payload(content.payload, content.signer, where))
        return found, rejected

    async def _verify_signed(self, ref: images.Reference, authorities: Authorities,
                             legacy: Any, attached: Any) -> Verdict:
        """At least one signature (a `.sig` layer or a bundle) valid for the authorities."""
        assert ref.digest is not None
        reasons: list[str] = []
        errors: list[str] = []
        legacy = _fetched(legacy, "legacy signatures", errors)
        attached = _fetched(attached, "bundles", errors)
        identity = ref if authorities.check_identity else None
        for signature in legacy:
            result = await self._check_legacy(signature, ref.digest, authorities, identity)
            if result.valid:
                return Verdict(str(ref), ref.digest, True, result.signer)
            reasons.append(f"{signature.where}: {result.reason}")
        for where, blob in attached:
            if authorities.annotations:
                reasons.append(f"{where}: the rule requires annotations, which only legacy "
                               f"signatures carry")
                continue
            claimed = bundles.predicate_type(blob)
            if claimed is not None and claimed != bundles.COSIGN_SIGN_PREDICATE:
                # an attestation: not verified here (the attestation rules do that)
                reasons.append(f"{where}: predicateType {claimed!r} is an attestation, not a "
                               f"signature ({bundles.COSIGN_SIGN_PREDICATE})")
                continue
            result = await asyncio.to_thread(
                bundles.verify, blob, ref.digest, authorities.keys, authorities.identities,
                self.config.trustedRoot, tlog=authorities.tlog)
            if result.valid:
                return Verdict(str(ref), ref.digest, True, result.signer)
            reasons.append(f"{where}: {result.reason}")
        if errors and not reasons:
            return Verdict(str(ref), ref.digest, error="; ".join(errors))
        if not reasons:
            reasons.append(f"no signatures: neither a {registry.signature_tag(ref.digest)}"
                           f".sig tag nor sigstore bundle referrers")
        return Verdict(str(ref), ref.digest, reasons=tuple(reasons + errors))


def explain(verdict: Verdict, subject: str, rule: str, failure: str,
            ) -> tuple[str, str] | None:
    """(what, fix) for the person at `kubectl apply` when `verdict` does not let `subject`
    (an image, or a model URI) in under `rule`; None when it does."""
    if verdict.verified:
        return None
    if verdict.error:
        if failure == "allow":
            return None
        return (f"{subject} could not be verified for rule {rule!r}: {verdict.error}",
                f"retry when the registry answers; rule {rule!r} has failure: deny")
    if verdict.unmet:
        return (f"{subject} ({verdict.digest}) is signed, but misses the attestations rule "
                f"{rule!r} requires: {verdict.why()}",
                f"attest {verdict.digest} (cosign attest --type <predicate type>) with a key or "
                f"identity of rule {rule!r} and a predicate that meets the conditions, or "
                f"deploy one that has it")
    return (f"{subject} ({verdict.digest or 'unresolved'}) is not signed by an authority of "
            f"rule {rule!r}: {verdict.why()}",
            f"sign {verdict.digest or subject} with a key or identity of rule {rule!r} (cosign "
            f"sign), or deploy a signed one")


def _fetched(result: list[_T] | BaseException, what: str, errors: list[str]) -> list[_T]:
    """What a registry read returned: a registry error is noted in `errors` (the rule's
    failure mode decides), anything else is a bug and raised."""
    if isinstance(result, BaseException):
        if not isinstance(result, registry.RegistryError):
            raise result
        errors.append(f"{what}: {result}")
        return []
    return result
