"""Signatures made by real signers (../shared/signatures, see its SOURCES.md) go through
the same verification functions as registry signatures, with the verdicts SOURCES.md says."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from webhook import images
from webhook.signatures import bundles, cosign, fulcio, keys, registry
from webhook.signatures.cosign import Result

CONFORMANCE_IDENTITY = bundles.Identity(
    issuer="https://token.actions.githubusercontent.com",
    subject="https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
            ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main")
COSIGN_IDENTITY = bundles.Identity(issuer="https://github.com/login/oauth",
                                   subject="cody@soyland.com")
EMPTY_IMAGE = "sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4"


@pytest.fixture(scope="module")
def sigs(shared_dir: Path) -> Path:
    return shared_dir / "signatures"


def key(path: Path) -> tuple[str, keys.PublicKey]:
    return path.name, keys.load(path.read_bytes(), str(path))


def legacy(sigs: Path, case: str, *public: str,
           identity: str | None = None) -> cosign.Result:
    folder = sigs / "containers-image" / case
    signature = cosign.parse_sigstore_json((folder / "signature-1").read_bytes(), str(folder))
    digest = registry.sha256_digest((folder / "manifest.json").read_bytes())
    return cosign.verify(signature, digest, [key(sigs / "containers-image" / p) for p in public],
                         identity=images.parse(identity) if identity else None)


def test_cosign_key_signature(sigs: Path) -> None:
    assert legacy(sigs, "dir-img-cosign-valid", "cosign.pub").valid
    assert legacy(sigs, "dir-img-cosign-valid", "cosign.pub", "cosign2.pub").valid
    assert not legacy(sigs, "dir-img-cosign-valid", "cosign2.pub").valid
    # a repository-only identity matches the repository
    assert legacy(sigs, "dir-img-cosign-valid", "cosign.pub",
                  identity="192.168.64.2:5000/cosign-signed-single-sample:any").valid


def test_skopeo_signature_identity(sigs: Path) -> None:
    ok = legacy(sigs, "dir-img-cosign-valid-with-tag", "cosign.pub",
                identity="192.168.64.2:5000/skopeo-signed:tag")
    assert ok.valid, ok.reason
    other = legacy(sigs, "dir-img-cosign-valid-with-tag", "cosign.pub",
                   identity="192.168.64.2:5000/skopeo-signed:othertag")
    assert not other.valid and "skopeo-signed:tag" in other.reason


def test_cosign_key_with_rekor_bundle(sigs: Path) -> None:
    assert legacy(sigs, "dir-img-cosign-key-rekor-valid", "cosign2.pub").valid
    assert not legacy(sigs, "dir-img-cosign-key-rekor-valid", "cosign.pub").valid


def test_modified_manifest_and_digest_error(sigs: Path) -> None:
    modified = legacy(sigs, "dir-img-cosign-modified-manifest", "cosign.pub")
    assert not modified.valid and "not this image's sha256:d9dcafdb" in modified.reason
    broken = legacy(sigs, "dir-img-cosign-manifest-digest-error", "cosign.pub")
    assert not broken.valid and "sha256:634a8f35" in broken.reason


KEYLESS_CASE = "dir-img-cosign-fulcio-rekor-valid"
MITR = bundles.Identity(issuer="https://github.com/login/oauth", subject="mitr@redhat.com")


def keyless(sigs: Path, identities: list[bundles.Identity], *, drop: str = "",
            trust: fulcio.TrustRoot | None = None) -> cosign.Result:
    """The containers-image keyless fixture through fulcio.verify, trusting
    fulcio_v1.crt.pem (the root only) + rekor.pub unless `trust` says otherwise;
    `drop` removes one layer annotation first (variants are built in memory)."""
    folder = sigs / "containers-image" / KEYLESS_CASE
    signature = cosign.parse_sigstore_json((folder / "signature-1").read_bytes(), str(folder))
    if drop:
        assert drop in signature.annotations
        signature = dataclasses.replace(signature, annotations={
            k: v for k, v in signature.annotations.items() if k != drop})
    digest = registry.sha256_digest((folder / "manifest.json").read_bytes())
    if trust is None:
        trust = fulcio.TrustRoot.from_pem(
            [(sigs / "containers-image" / "fulcio_v1.crt.pem").read_bytes()],
            [(sigs / "containers-image" / "rekor.pub").read_bytes()])
    return fulcio.verify(signature, digest, identities, trust,
                         identity=images.parse("192.168.64.2:5000/cosign-signed/fulcio-rekor-1"))


def test_legacy_keyless_valid_with_fulcio_root_rekor_and_identity(sigs: Path) -> None:
    result = keyless(sigs, [MITR])
    assert result.valid, result.reason
    assert result.signer == "mitr@redhat.com (https://github.com/login/oauth)"
    by_regexp = keyless(sigs, [bundles.Identity(issuer_regexp=r"^https://github\.com/",
                                                subject_regexp=r"@redhat\.com$")])
    assert by_regexp.valid, by_regexp.reason


def test_legacy_keyless_other_email_is_invalid(sigs: Path) -> None:
    result = keyless(sigs, [bundles.Identity(issuer="https://github.com/login/oauth",
                                             subject="eve@example.com")])
    assert not result.valid
    assert "certificate is for mitr@redhat.com (https://github.com/login/oauth)" in result.reason
    other_issuer = keyless(sigs, [bundles.Identity(issuer="https://accounts.google.com",
                                                   subject="mitr@redhat.com")])
    assert not other_issuer.valid and "not mitr@redhat.com from https://accounts.google.com" \
        in other_issuer.reason


def test_legacy_keyless_without_set_is_invalid(sigs: Path) -> None:
    result = keyless(sigs, [MITR], drop=fulcio.BUNDLE_ANNOTATION)
    assert not result.valid and "no Rekor SET" in result.reason


def test_legacy_keyless_without_certificate_is_invalid(sigs: Path) -> None:
    result = keyless(sigs, [MITR], drop=cosign.CERTIFICATE_ANNOTATION)
    assert not result.valid
    assert f"no {cosign.CERTIFICATE_ANNOTATION} annotation" in result.reason


def test_legacy_keyless_without_chain_and_only_the_root_is_invalid(sigs: Path) -> None:
    result = keyless(sigs, [MITR], drop=fulcio.CHAIN_ANNOTATION)
    assert not result.valid and "does not chain to" in result.reason
    # The production trusted root also holds the intermediate: then no chain is needed.
    production = fulcio.TrustRoot.from_trusted_root(
        str(sigs / "sigstore-python" / "production" / "trusted_root.json"))
    assert keyless(sigs, [MITR], drop=fulcio.CHAIN_ANNOTATION, trust=production).valid


def test_legacy_keyless_against_production_trusted_roots(sigs: Path) -> None:
    for root in (sigs / "sigstore-python" / "production" / "trusted_root.json",
                 sigs / "cosign" / "trusted_root_pgi.json"):
        result = keyless(sigs, [MITR], trust=fulcio.TrustRoot.from_trusted_root(str(root)))
        assert result.valid, (root, result.reason)
    embedded = keyless(sigs, [MITR], trust=fulcio.trust_root())  # sigstore-python's copy
    assert embedded.valid, embedded.reason


def test_legacy_keyless_wrong_rekor_key_or_corrupt_set_is_invalid(sigs: Path) -> None:
    wrong_log = fulcio.TrustRoot.from_pem(
        [(sigs / "containers-image" / "fulcio_v1.crt.pem").read_bytes()],
        [(sigs / "containers-image" / "cosign.pub").read_bytes()])
    result = keyless(sigs, [MITR], trust=wrong_log)
    assert not result.valid and "not trusted" in result.reason
    folder = sigs / "containers-image" / KEYLESS_CASE
    signature = cosign.parse_sigstore_json((folder / "signature-1").read_bytes(), str(folder))
    bundle = json.loads(signature.annotations[fulcio.BUNDLE_ANNOTATION])
    bundle["Payload"]["integratedTime"] += 1
    trust = fulcio.TrustRoot.from_pem(
        [(sigs / "containers-image" / "fulcio_v1.crt.pem").read_bytes()],
        [(sigs / "containers-image" / "rekor.pub").read_bytes()])
    with pytest.raises(fulcio.Rejected, match="SET does not verify"):
        fulcio.verify_set(json.dumps(bundle), trust)


def test_legacy_keyless_with_the_set_of_another_entry_is_invalid(sigs: Path) -> None:
    """The key-rekor fixture's SET is a genuine production SET, for another entry."""
    other = sigs / "containers-image" / "dir-img-cosign-key-rekor-valid" / "signature-1"
    foreign = cosign.parse_sigstore_json(other.read_bytes(), str(other)).annotations[
        fulcio.BUNDLE_ANNOTATION]
    folder = sigs / "containers-image" / KEYLESS_CASE
    signature = cosign.parse_sigstore_json((folder / "signature-1").read_bytes(), str(folder))
    swapped = dataclasses.replace(signature, annotations={
        **signature.annotations, fulcio.BUNDLE_ANNOTATION: foreign})
    trust = fulcio.TrustRoot.from_pem(
        [(sigs / "containers-image" / "fulcio_v1.crt.pem").read_bytes()],
        [(sigs / "containers-image" / "rekor.pub").read_bytes()])
    result = fulcio.verify(swapped, registry.sha256_digest((folder / "manifest.json")
                                                           .read_bytes()), [MITR], trust)
    assert not result.valid
    assert "Rekor entry 11608800 (hashedrekord 0.0.1) logs another artifact" in result.reason


def test_legacy_keyless_is_not_accepted_by_keys(sigs: Path) -> None:
    result = legacy(sigs, KEYLESS_CASE, "cosign.pub", "cosign2.pub")
    assert not result.valid and "keyless signature" in result.reason


def test_sigstore_rs_keyless_vector(sigs: Path) -> None:
    """A 2021 leaf issued directly by the historic root, with no OIDC-issuer extension,
    logged as a `rekord` entry: valid with that root; a rule that requires an issuer, or
    trusting only the 2021-10 root, rejects it."""
    folder = sigs / "sigstore-rs" / "keyless"
    payload = (folder / "payload.json").read_bytes()
    signature = cosign.Signature(payload, (folder / "signature.b64").read_text().strip(), {
        cosign.CERTIFICATE_ANNOTATION: (folder / "certificate.pem").read_text(),
        fulcio.BUNDLE_ANNOTATION: (folder / "rekor_bundle.json").read_text()})
    digest = json.loads(payload)["critical"]["image"]["docker-manifest-digest"]
    rekor = [(folder / "rekor_public_key.pem").read_bytes()]

    def trusting(root: str) -> fulcio.TrustRoot:
        return fulcio.TrustRoot.from_pem([(folder / root).read_bytes()], rekor)

    flavio = bundles.Identity(subject="flavio@castelli.me")
    ok = fulcio.verify(signature, digest, [flavio], trusting("fulcio_root_2021-03.pem"))
    assert ok.valid, ok.reason
    needs_issuer = fulcio.verify(signature, digest, [bundles.Identity(
        issuer="https://github.com/login/oauth", subject="flavio@castelli.me")],
        trusting("fulcio_root_2021-03.pem"))
    assert not needs_issuer.valid and "no issuer" in needs_issuer.reason
    other_root = fulcio.verify(signature, digest, [flavio], trusting("fulcio_root_2021-10.pem"))
    assert not other_root.valid and "does not chain to" in other_root.reason


def test_sigstore_rs_vectors(sigs: Path) -> None:
    folder = sigs / "sigstore-rs" / "key-based"
    payload = (folder / "payload.json").read_bytes()
    signature = cosign.Signature(payload, (folder / "signature.b64").read_text().strip())
    digest = "sha256:" + payload.split(b'"docker-manifest-digest":"sha256:')[1][:64].decode()
    assert cosign.verify(signature, digest, [key(folder / "public_key.pem")]).valid
    assert not cosign.verify(signature, digest, [key(folder / "unrelated_public_key.pem")]).valid
    raw = base64.b64decode(signature.signature)
    assert keys.verifies(key(folder / "public_key.pem")[1], raw, payload)


def test_cosign_oci_attestation_bundle(sigs: Path) -> None:
    data = (sigs / "cosign" / "oci-attestation.sigstore.json").read_bytes()
    valid = bundles.verify(data, EMPTY_IMAGE, identities=[COSIGN_IDENTITY], predicate_types=None)
    assert valid.valid, valid.reason
    pgi = bundles.verify(data, EMPTY_IMAGE, identities=[COSIGN_IDENTITY], predicate_types=None,
                         trusted_root_path=str(sigs / "cosign" / "trusted_root_pgi.json"))
    assert pgi.valid, pgi.reason
    other_san = bundles.verify(data, EMPTY_IMAGE, predicate_types=None, identities=[
        bundles.Identity(issuer="https://github.com/login/oauth", subject="eve@example.com")])
    assert not other_san.valid
    other_image = bundles.verify(data, "sha256:" + "0" * 64, identities=[COSIGN_IDENTITY],
                                 predicate_types=None)
    assert not other_image.valid and "subject" in other_image.reason
    # As an image *signature* it is refused: it is an attestation.
    as_signature = bundles.verify(data, EMPTY_IMAGE, identities=[COSIGN_IDENTITY])
    assert not as_signature.valid and "attestation, not a signature" in as_signature.reason


def _conformance(sigs: Path, case: str) -> Result:
    root = sigs / "sigstore-conformance" / "bundle-verify"
    folder = root / case
    digest = "sha256:" + hashlib.sha256((root / "a.txt").read_bytes()).hexdigest()
    public = []
    if (folder / "key.pub").exists():
        try:
            public = [key(folder / "key.pub")]
        except keys.BadKey as exc:
            return Result(False, str(exc))
    trusted = folder / "trusted_root.json"
    return bundles.verify((folder / "bundle.sigstore.json").read_bytes(), digest, public,
                          [CONFORMANCE_IDENTITY],
                          str(trusted) if trusted.exists() else None, predicate_types=None)


@pytest.mark.parametrize("case", ["happy-path-intoto-in-dsse-v3", "managed-key-happy-path",
                                  "managed-key-and-trusted-root"])
def test_conformance_valid(sigs: Path, case: str) -> None:
    result = _conformance(sigs, case)
    assert result.valid, result.reason


@pytest.mark.parametrize("case", ["dsse-mismatch-sig_fail", "managed-key-wrong-key_fail"])
def test_conformance_fail(sigs: Path, case: str) -> None:
    result = _conformance(sigs, case)
    assert not result.valid
    assert result.reason  # says why


def test_legacy_keyless_sct_is_checked_against_the_ct_logs(sigs: Path) -> None:
    """The production cosign signature's SCT verifies with the production CT log of the
    trusted root; with only another CT log trusted (the conformance suite's invalid-ct-key
    trick) or without its SCT's log, it is rejected."""
    production = fulcio.TrustRoot.from_trusted_root(
        str(sigs / "sigstore-python" / "production" / "trusted_root.json"))
    assert production.ct_logs
    assert keyless(sigs, [MITR], trust=production).valid
    other = fulcio.TrustRoot.from_pem([], [(sigs / "containers-image" / "cosign.pub")
                                           .read_bytes()]).logs
    wrong_ct = dataclasses.replace(production, ct_logs=other)
    result = keyless(sigs, [MITR], trust=wrong_ct)
    assert not result.valid and "no embedded SCT verifies" in result.reason
    assert "which is not trusted" in result.reason


def test_key_based_legacy_rekor_entry_per_tlog(sigs: Path) -> None:
    """cosign's key + Rekor signature: its SET verifies with the production Rekor key and
    records this signature by cosign2.pub; `required` refuses the signature without a
    Rekor entry, `optional` accepts it, and a corrupt SET fails whenever it is checked."""
    ci = sigs / "containers-image"
    trust = fulcio.TrustRoot.from_pem([], [(ci / "rekor.pub").read_bytes()])

    def load(case: str) -> cosign.Signature:
        return cosign.parse_sigstore_json((ci / case / "signature-1").read_bytes(), case)

    logged, plain = load("dir-img-cosign-key-rekor-valid"), load("dir-img-cosign-valid")
    cosign2, cosign1 = key(ci / "cosign2.pub")[1], key(ci / "cosign.pub")[1]
    assert fulcio.check_logged(logged, cosign2, trust, "required") == ""
    assert "tlog: required" in fulcio.check_logged(plain, cosign1, trust, "required")
    assert fulcio.check_logged(plain, cosign1, trust, "optional") == ""
    # the entry records cosign2's key: another key's claim on it is refused
    assert "logs another certificate or key" in fulcio.check_logged(
        logged, cosign1, trust, "required")
    annotation = json.loads(logged.annotations[fulcio.BUNDLE_ANNOTATION])
    annotation["Payload"]["integratedTime"] += 1
    corrupt = dataclasses.replace(logged, annotations={
        **logged.annotations, fulcio.BUNDLE_ANNOTATION: json.dumps(annotation)})
    for mode in ("required", "optional"):
        assert "SET does not verify" in fulcio.check_logged(corrupt, cosign2, trust, mode)
    assert fulcio.check_logged(corrupt, cosign2, trust, "off") == ""
