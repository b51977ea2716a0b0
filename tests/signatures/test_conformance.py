"""The sigstore conformance suite (../shared/signatures/conformance, 70 bundle cases) through
mlgate's verification core: every case gets the suite's verdict, and every fail case fails
for the defect it exercises (the reason is asserted, so a case failing by accident of
another check is caught). All 70 agree, the two cases sigstore-python gets wrong included."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.signatures import conformance

# case -> what the reason must say: the defect the case exercises.
REASONS = {
    "bundle-empty-certificate-chain_fail": r"non-empty certificate chain",
    "bundle-from-wrong-instance_fail": r"timestamp certificate chain.*candidates exhausted",
    "bundle-invalid-base64-signature_fail": r"messageSignature\.signature\s+Value error, "
                                            r"Invalid base64",
    "bundle-malformed-json_fail": r"not a sigstore bundle",
    "bundle-negative-log-index_fail": r"tlogEntries\.0\.logIndex",
    "bundle-unknown-version_fail": r"version=99\.9' is not a sigstore bundle version",
    # The root in the bundle's chain is never trusted, nor refused (sigstore-go and
    # sigstore-python accept real npm bundles that carry it, see test_attestation_vectors);
    # the case fails for its other defect: an inclusion proof without a checkpoint.
    "bundle-with-root-cert_fail": r"inclusion proof, with checkpoint",
    "checkpoint-bad-keyhint_fail": r"checkpoint: Signature not found for log ID",
    "checkpoint-wrong-roothash_fail": r"invalid root hash signature",
    "dsse-invalid-sig_fail": r"DSSE: invalid signature",
    "dsse-mismatch-envelope_fail": r"log entry payload hash does not match",
    "dsse-mismatch-sig_fail": r"log entry signatures do not match",
    "inclusion-proof-corrupted-hash_fail": r"inclusion proof contains invalid root hash",
    # the edited body no longer hashes to the proof's leaf
    "incorrect-public-key_fail": r"inclusion proof contains invalid root hash",
    "integrated-time-in-future_fail": r"cert is not valid at validation time",
    "invalid-checkpoint-signature_fail": r"checkpoint: invalid signature",
    "invalid-ct-key_fail": r"failed to verify SCT",
    "invalid-inclusion-proof_fail": r"inclusion proof, with checkpoint",
    "managed-key-no-key_fail": r"signed with a key, and the rule has no keys",
    "managed-key-wrong-key_fail": r"key\.pub: not a PEM public key",
    "message-digest-mismatch_fail": r"message digest mismatch",
    "rekor2-checkpoint-missing-log-signature_fail": r"must contain at least one signature",
    "rekor2-checkpoint-missing-origin_fail": r"malformed LogCheckpoint",
    "rekor2-checkpoint-missing-root-hash_fail": r"malformed LogCheckpoint",
    "rekor2-checkpoint-missing-size_fail": r"malformed LogCheckpoint",
    "rekor2-checkpoint-no-matching-signature_fail": r"checkpoint: invalid signature",
    "rekor2-dsse-invalid-sig_fail": r"DSSE: invalid signature",
    "rekor2-dsse-mismatch-envelope_fail": r"log entry is inconsistent",
    "rekor2-dsse-mismatch-sig_fail": r"log entry is inconsistent",
    "rekor2-no-inclusion-proof_fail": r"inclusionProof\s+Field required",
    "rekor2-no-timestamp_fail": r"inclusion promise or signed timestamp",
    "rekor2-timestamp-outside-trust-root-tsa-validity_fail": r"not enough sources of verified",
    "rekor2-timestamp-outside-tsa-cert-validity_fail": r"not enough sources of verified time",
    "rekor2-timestamp-payload-mismatch_fail": r"not enough sources of verified time",
    "rekor2-timestamp-untrusted-tsa-with-embedded-cert_fail": r"Invalid Timestamp Response",
    "rekor2-timestamp-untrusted-tsa-without-embedded-cert_fail": r"not enough sources of "
                                                                 r"verified time",
    "rekor2-timestamp-with-incorrect-time_fail": r"cert is not valid at validation time",
    "set-invalid-signature_fail": r"SET: invalid inclusion promise",
    "signature-mismatch_fail": r"Signature is invalid for input",
    "trust-root-tlog-missing-validity-start_fail": r"validFor\.start\s+Field required",
    "wrong-hashedrekord-artifact_fail": r"log entry is inconsistent",
    "wrong-hashedrekord-cert-and-sig_fail": r"log entry is inconsistent",
    "wrong-hashedrekord-entry_fail": r"log entry is inconsistent",
    "wrong-material_fail": r"message digest mismatch",
    # Rekor intoto/0.0.2 entries, verified by mlgate itself (intoto_entries)
    "intoto-expired-certificate_fail": r"not valid at 2023-02-01 00:00:00Z \(valid 2030",
    "intoto-log-entry-mismatch_fail": r"intoto 0\.0\.2\) logs another signature",
    "intoto-missing-inclusion-proof_fail": r"no inclusion proof, which a v0\.2\+ bundle must",
    "intoto-set-outside-signing-cert-validity_fail": r"at Rekor entry 5475922's integrated "
                                                     r"time: .*not valid at 2023-02-02",
    "intoto-tsa-timestamp-outside-cert-validity_fail": r"at the RFC 3161 timestamp: .*not "
                                                       r"valid at 2023-02-02",
}


@pytest.fixture(scope="module")
def suite(shared_dir: Path) -> Path:
    path = shared_dir / "signatures" / "conformance"
    if not (path / "cases.json").is_file():
        pytest.skip(f"the conformance suite is not at {path}")
    return path


def test_every_fail_case_has_its_reason(suite: Path) -> None:
    fails = {c["case"] for c in conformance.cases(suite) if c["expect"] == "fail"}
    assert fails == set(REASONS), "a fail case without an expected reason, or a stale one"


def test_cases(suite: Path) -> None:
    """All 70 cases in one pass (the per-case tests below say which one differs)."""
    outcomes = [conformance.run(case, suite) for case in conformance.cases(suite)]
    assert len(outcomes) == 70
    assert [o.case for o in outcomes if not o.agrees] == []
    unexplained = [(o.case, o.reason) for o in outcomes if o.expect == "fail"
                   and not re.search(REASONS[o.case], o.reason, re.DOTALL)]
    assert unexplained == []


@pytest.mark.parametrize("name", ["intoto-with-custom-trust-root",
                                  "trust-root-tsa-validity-end-inclusive"])
def test_sigstore_pythons_misses_pass(suite: Path, name: str) -> None:
    """The two pass cases sigstore-python refuses (the suite's CI xfails them for it) pass:
    intoto 0.0.2 entries verified by mlgate, and a TSA validity end taken as inclusive."""
    case = next(c for c in conformance.cases(suite) if c["case"] == name)
    assert case["sigstore_python_4_5_1_offline"]["result"] == "fail"
    outcome = conformance.run(case, suite)
    assert outcome.got == "pass", outcome.reason


def test_managed_key_cases_check_the_log(suite: Path) -> None:
    """The key-based pass cases verify their Rekor entry (SET and inclusion proof with a
    signed checkpoint), against the production or the case's staging log."""
    import json

    from webhook.signatures import bundles, keys

    for name, log in (("managed-key-happy-path", "rekor.sigstore.dev"),
                      ("managed-key-and-trusted-root", "rekor.sigstage.dev")):
        case = next(c for c in conformance.cases(suite) if c["case"] == name)
        outcome = conformance.run(case, suite)
        assert outcome.got == "pass", outcome.reason
        key = keys.load((suite / case["key"]).read_bytes(), "key.pub")
        bundle = json.loads((suite / case["bundle"]).read_bytes())
        good = bundles.verify_content(json.dumps(bundle).encode(),
                                      "sha256:" + case["artifact_sha256"], [("k", key)],
                                      trusted_root_path=str(suite / case["trusted_root"]),
                                      tlog="required")
        assert good.valid and log in good.signer and "inclusion proof" in good.signer
        entry = bundle["verificationMaterial"]["tlogEntries"][0]
        entry["inclusionPromise"]["signedEntryTimestamp"] = entry["inclusionPromise"][
            "signedEntryTimestamp"][:-8] + "AAAAAAA="
        broken = bundles.verify_content(json.dumps(bundle).encode(),
                                        "sha256:" + case["artifact_sha256"], [("k", key)],
                                        trusted_root_path=str(suite / case["trusted_root"]),
                                        tlog="required")
        assert not broken.valid and "SET" in broken.reason
        bundle = json.loads((suite / case["bundle"]).read_bytes())
        proof = bundle["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]
        proof["hashes"][0] = proof["hashes"][1]
        broken = bundles.verify_content(json.dumps(bundle).encode(),
                                        "sha256:" + case["artifact_sha256"], [("k", key)],
                                        trusted_root_path=str(suite / case["trusted_root"]),
                                        tlog="required")
        assert not broken.valid and "does not lead to its root hash" in broken.reason


def test_managed_key_rfc3161_timestamp_is_transparency_evidence(suite: Path) -> None:
    """The production key-based bundle also carries an RFC 3161 timestamp of the Sigstore
    TSA: it verifies against the trusted root's TSA, it alone satisfies `tlog: required`,
    and one over another signature is refused."""
    import json

    from webhook.signatures import bundles, keys

    case = next(c for c in conformance.cases(suite) if c["case"] == "managed-key-happy-path")
    key = keys.load((suite / case["key"]).read_bytes(), "key.pub")
    root = str(suite / case["trusted_root"])
    digest = "sha256:" + case["artifact_sha256"]
    bundle = json.loads((suite / case["bundle"]).read_bytes())
    whole = bundles.verify_content(json.dumps(bundle).encode(), digest, [("k", key)],
                                   trusted_root_path=root, tlog="required")
    assert whole.valid and "timestamped 2025-12-18" in whole.signer
    bundle["verificationMaterial"]["tlogEntries"] = []
    stamped = bundles.verify_content(json.dumps(bundle).encode(), digest, [("k", key)],
                                     trusted_root_path=root, tlog="required")
    assert stamped.valid and "logged in" not in stamped.signer, stamped.reason
    # a real timestamp of another signature (the staging TSA's, of rekor2-happy-path)
    foreign = json.loads((suite / "bundle-verify" / "rekor2-happy-path" /
                          "bundle.sigstore.json").read_bytes())
    bundle["verificationMaterial"]["timestampVerificationData"] = foreign[
        "verificationMaterial"]["timestampVerificationData"]
    refused = bundles.verify_content(json.dumps(bundle).encode(), digest, [("k", key)],
                                     trusted_root_path=root, tlog="required")
    assert not refused.valid and "no trusted TSA vouches for the timestamp" in refused.reason
