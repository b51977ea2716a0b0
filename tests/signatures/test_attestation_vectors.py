"""The real attestation vectors of ../shared/signatures/attestations (cosign's key-signed
DSSE envelopes and SPDX claim checks) and cosign's production OCI attestation bundle,
through the attestation rules: each check gets the verdict its source states."""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path

import pytest

from webhook.signatures import attestations, bundles, keys

NOW = datetime.datetime.now(datetime.UTC)
SLSA02 = "https://slsa.dev/provenance/v0.2"
COSIGN_CUSTOM = "https://cosign.sigstore.dev/attestation/v1"


@pytest.fixture(scope="module")
def vectors(shared_dir: Path) -> Path:
    path = shared_dir / "signatures" / "attestations"
    if not (path / "cases.json").is_file():
        pytest.skip(f"the attestation vectors are not at {path}")
    return path


def _digest(vectors: Path, artifact: str) -> str:
    if artifact.startswith("sha256:"):
        return artifact
    return "sha256:" + hashlib.sha256((vectors / artifact).read_bytes()).hexdigest()


def _envelope(vectors: Path, file: str, artifact: str,
              predicate_type: str | None) -> str:
    """'' when the envelope, verified with cosign.pub (tlog off, as the test sets), is an
    attestation of the artifact meeting a requirement of `predicate_type` (any when None)."""
    key = keys.load((vectors / "cosign-key-dsse" / "cosign.pub").read_bytes(), "cosign.pub")
    found = attestations.verify_envelope(
        (vectors / file).read_bytes(), {}, _digest(vectors, artifact), [("cosign.pub", key)],
        [], None, "off", file)
    if isinstance(found, str):
        return found
    wanted = predicate_type or found.predicate_type
    return attestations.evaluate(attestations.Requirement.build("t", wanted, [], "t"),
                                 [found], NOW)


KEY_CHECKS = [  # (file, artifact, predicate type required, expected reason or "" to pass)
    ("slsa-v0.2-blob.dsse.json", "cosign-key-dsse/blob", SLSA02, ""),
    ("slsa-v0.2-blob.dsse.json", "cosign-key-dsse/blob", COSIGN_CUSTOM,
     "no verified attestation of predicateType https://cosign.sigstore.dev/attestation/v1"),
    ("slsa-v0.2-blob.dsse.json", "cosign-key-dsse/another-blob", None,
     "the statement's subject is sha256:658781cd"),
    ("slsa-v0.2-blob.dsse.json",
     "sha256:658781cd4ed9bca60dacd09f7bb914bb51502e8b5d619f57f39a1d652596cc24", SLSA02, ""),
    ("slsa-v0.2-empty-subject.dsse.json", "cosign-key-dsse/blob", None,
     "the statement's subject is empty"),
    ("slsa-v0.2-missing-sha256.dsse.json", "cosign-key-dsse/blob", None,
     "the statement's subject is sha256:None"),
    ("slsa-v0.2-multiple-subjects.dsse.json", "cosign-key-dsse/blob", SLSA02, ""),
    ("slsa-v0.2-multiple-subjects.dsse.json", "cosign-key-dsse/blob",
     "notreallyslsaprovenance", "no verified attestation of predicateType "
     "notreallyslsaprovenance (verified: https://slsa.dev/provenance/v0.2)"),
    ("slsa-v0.2-multiple-subjects-none-match.dsse.json", "cosign-key-dsse/blob", SLSA02,
     "the statement's subject is sha256:"),
]


@pytest.mark.parametrize(("file", "artifact", "predicate_type", "why"), KEY_CHECKS)
def test_cosign_key_dsse(vectors: Path, file: str, artifact: str,
                         predicate_type: str | None, why: str) -> None:
    got = _envelope(vectors, f"cosign-key-dsse/{file}", artifact, predicate_type)
    if not why:
        assert got == ""
    else:
        assert got and why in got


def test_cosign_key_dsse_cases_json_agrees(vectors: Path) -> None:
    """The table above is cases.json's verdicts for the cosign-key-dsse vectors."""
    data = json.loads((vectors / "cases.json").read_text())
    stated = []
    for vector in data["vectors"]:
        if vector["file"].startswith("cosign-key-dsse/"):
            for check in vector["checks"]:
                stated.append((vector["file"].split("/")[1], check["expect"]))
    assert stated == [(file, "pass" if not why else "fail") for file, _, _, why in KEY_CHECKS]


def test_a_wrong_key_is_refused(vectors: Path) -> None:
    other = keys.load((vectors / "sigstore-go" / "examples" / "publish_key.pub").read_bytes(),
                      "other")
    found = attestations.verify_envelope(
        (vectors / "cosign-key-dsse" / "slsa-v0.2-blob.dsse.json").read_bytes(), {},
        _digest(vectors, "cosign-key-dsse/blob"), [("other", other)], [], None, "off", "f")
    assert isinstance(found, str) and "does not verify with the rule's keys (other)" in found


@pytest.mark.parametrize(("file", "digest", "valid"), [
    ("spdx-string-predicate.dsse.json",
     "sha256:9925d3017788558fa8f27e8bb160b791e56202b60c91fbcc5c867de3175986c8", True),
    ("spdx-null-subject.dsse.json",
     "sha256:6c6fd6a4115c6e998ff357cd914680931bb9a6c1a7cd5f5cb2f5e1c0932ab6ed", False),
])
def test_cosign_spdx_subject_claims(vectors: Path, file: str, digest: str, valid: bool) -> None:
    """Claim checks only (the source has no key): the subject must be the digest; a
    `[null]` subject is refused, not a crash. The SPDX predicate held as a JSON string is
    parsed for conditions."""
    envelope = json.loads((vectors / "cosign-claims" / file).read_bytes())
    import base64

    payload = base64.b64decode(envelope["payload"])
    why = bundles.check_subject(envelope["payloadType"], payload, digest)
    assert (why == "") is valid
    if valid:
        found = attestations.from_payload(payload, "claims only", file)
        assert found.predicate_type == "https://spdx.dev/Document"
        spdx = attestations.Requirement.build(
            "sbom", "https://spdx.dev/Document", ['predicate.spdxVersion.startsWith("SPDX-")'],
            "t")
        assert attestations.evaluate(spdx, [found], NOW) == ""


def test_cosign_oci_attestation_bundle(shared_dir: Path) -> None:
    """cosign's production bundle (DSSE, Rekor dsse 0.0.1): an attestation of the empty
    image for the identity cody@soyland.com, with conditions over its predicate."""
    folder = shared_dir / "signatures" / "cosign"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    data = (folder / "oci-attestation.sigstore.json").read_bytes()
    root = str(folder / "trusted_root_pgi.json")
    empty = "sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4"
    any_identity = bundles.Identity(issuer_regexp=".*", subject_regexp=".*")
    content = bundles.verify_content(data, empty, identities=[any_identity],
                                     trusted_root_path=root)
    assert content.valid, content.reason
    found = attestations.from_payload(content.payload, content.signer, "bundle")
    good = attestations.Requirement.build("custom", COSIGN_CUSTOM,
                                          ['predicate.Data.contains("foo")'], "t")
    assert attestations.evaluate(good, [found], NOW) == ""
    bad = attestations.Requirement.build("custom", COSIGN_CUSTOM,
                                         ['predicate.Data == "bar"'], "t")
    why = attestations.evaluate(bad, [found], NOW)
    assert "condition `predicate.Data == \"bar\"` is false" in why
    assert 'predicate.Data = "{\\"foo\\": \\"bar\\"}\\n"' in why
    wrong = bundles.verify_content(data, empty, identities=[bundles.Identity(
        issuer_regexp=".*", subject_regexp="wrong")], trusted_root_path=root)
    assert not wrong.valid and "cody@soyland.com" in wrong.reason
    other = bundles.verify_content(data, "sha256:" + "1" * 64, identities=[any_identity],
                                   trusted_root_path=root)
    assert not other.valid and "the statement's subject is" in other.reason


SIGSTORE_JS = ("https://github.com/sigstore/sigstore-js/.github/workflows/release.yml"
               "@refs/heads/main")
GITHUB = "https://token.actions.githubusercontent.com"
JS_200 = ("sha512:46d4e2f74c4877316640000a6fdf8a8b59f1e0847667973e9859f774dd31b8f1e0937813b77"
          "7fb66a2ac67d50540fe34640966eee9fc2ccca387082b4c85cd3c")
JS_130 = ("sha512:76176ffa33808b54602c7c35de5c6e9a4deb96066dba6533f50ac234f4f1f4c6b3527515dc1"
          "7c06fbe2860030f410eee69ea20079bd3a2c6f3dcf3b329b10751")


@pytest.mark.parametrize(("file", "digest", "subject", "why"), [
    ("bundles/sigstore.js@2.0.0-provenance.sigstore.json", JS_200, SIGSTORE_JS, ""),
    ("bundles/sigstore.js@2.0.0-provenance.sigstore.json", JS_200, "BadSANValue",
     "the certificate is for https://github.com/sigstore/sigstore-js/"),
    ("bundles/sigstore.js@2.0.0-provenance.sigstore.json", "sha512:5" + JS_200[8:],
     SIGSTORE_JS, "the statement's subject is sha512:46d4e2f7"),
    ("bundles/dsse-2sigs.sigstore.json", JS_200, SIGSTORE_JS, "exactly one signature"),
    ("examples/bundle-provenance.json", JS_130, SIGSTORE_JS, ""),
])
def test_sigstore_go_keyless_bundles(vectors: Path, file: str, digest: str, subject: str,
                                     why: str) -> None:
    """npm provenance bundles logged as Rekor intoto 0.0.2 entries (which sigstore-python
    does not verify): mlgate's own path checks SET, inclusion proof, chain, SCT, identity."""
    content = bundles.verify_content(
        (vectors / "sigstore-go" / file).read_bytes(), digest,
        identities=[bundles.Identity(issuer=GITHUB, subject=subject)],
        trusted_root_path=str(vectors / "sigstore-go" / "trusted-roots" / "public-good.json"))
    if not why:
        assert content.valid, content.reason
        found = attestations.from_payload(content.payload, content.signer, file)
        assert found.predicate_type.startswith("https://slsa.dev/provenance/")
    else:
        assert not content.valid and why in content.reason, content.reason


def test_sigstore_go_key_publish_bundle(vectors: Path) -> None:
    """npm's publish attestation, signed with npm's registry key and logged (intoto 0.0.2):
    valid with the key and the Rekor key of the trusted root, tlog required."""
    folder = vectors / "sigstore-go"
    key = keys.load((folder / "examples" / "publish_key.pub").read_bytes(), "npm")
    content = bundles.verify_content(
        (folder / "examples" / "bundle-publish.json").read_bytes(), JS_130, [("npm", key)],
        trusted_root_path=str(folder / "trusted-roots" / "public-good.json"), tlog="required")
    assert content.valid, content.reason
    assert "rekor.sigstore.dev" in content.signer
    found = attestations.from_payload(content.payload, content.signer, "publish")
    publish = attestations.Requirement.build(
        "publish", "https://github.com/npm/attestation/tree/main/specs/publish/v0.1",
        ['predicate.name == "sigstore"', 'predicate.version == "1.3.0"'], "t")
    assert attestations.evaluate(publish, [found], NOW) == ""


def test_a_root_in_the_bundle_is_not_trusted(vectors: Path, tmp_path: Path) -> None:
    """bundle-provenance.json carries the Fulcio root in its chain: with a trusted root
    that lacks that CA, the bundle's own copy does not make it trusted."""
    root = json.loads((vectors / "sigstore-go" / "trusted-roots" / "public-good.json")
                      .read_text())
    root["certificateAuthorities"] = []
    path = tmp_path / "no-fulcio.json"
    path.write_text(json.dumps(root))
    content = bundles.verify_content(
        (vectors / "sigstore-go" / "examples" / "bundle-provenance.json").read_bytes(), JS_130,
        identities=[bundles.Identity(issuer=GITHUB, subject=SIGSTORE_JS)],
        trusted_root_path=str(path))
    assert not content.valid and "no trusted Fulcio CA" in content.reason
