"""Signatures made by real signers (../shared/signatures, see its SOURCES.md) go through
the same verification functions as registry signatures, with the verdicts SOURCES.md says."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from webhook import images
from webhook.signatures import bundles, cosign, keys, registry
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


def test_legacy_keyless_is_not_accepted_by_keys(sigs: Path) -> None:
    # Valid upstream with Fulcio + Rekor + identity; mlgate checks keyless signatures in
    # bundles only, so with keys it must be (and is) rejected, never accepted.
    result = legacy(sigs, "dir-img-cosign-fulcio-rekor-valid", "cosign.pub", "cosign2.pub")
    assert not result.valid


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
