"""Sigstore bundles (v0.3, cosign v3's default) that sign an image.

cosign v3 attaches a bundle as an OCI referrer of the image (artifactType
`application/vnd.dev.sigstore.bundle.v0.3+json`). A signature bundle holds a DSSE
envelope with an in-toto statement whose subject is the image digest and whose
predicateType is `https://sigstore.dev/cosign/sign/v1`; any other predicate is an
attestation, which says something about the image but does not sign it.

Two layers. The core, `verify_content`, answers "does this bundle validly sign this
digest for these keys or identities?" for any bundle: a message signature over the digest
or a DSSE in-toto statement whose subject is the digest, whatever its predicate (the
sigstore conformance suite runs through it; attestations build on it). `verify` adds the
image rule on top: an image signature is a DSSE statement with the cosign signing predicate.

Keyless bundles (a Fulcio certificate) are verified by sigstore-python against a trusted
root read from a file, so verification works offline: the production root embedded in
sigstore-python, or the `trusted_root.json` of a private Sigstore. Key-based bundles are
verified with `cryptography` (over the digest, or the DSSE pre-authentication encoding),
and their Rekor entries by `transparency` against the same trusted root, as the rule's
`tlog` says.
"""

from __future__ import annotations

import base64
import binascii
import functools
import importlib.resources
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509

from webhook.signatures import keys, transparency
from webhook.signatures.cosign import Result

BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
BUNDLE_PREFIX = "application/vnd.dev.sigstore.bundle"
BUNDLE_TYPES = frozenset({BUNDLE_V03, *(f"{BUNDLE_PREFIX}+json;version=0.{minor}"
                                        for minor in (1, 2, 3))})
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
INTOTO = "application/vnd.in-toto+json"
_ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
_ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
_SAN_OTHERNAME = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.7")


@dataclass(frozen=True)
class Identity:
    """A keyless signer: OIDC issuer and certificate subject (SAN), exact or regexp."""

    issuer: str | None = None
    subject: str | None = None
    issuer_regexp: str | None = None
    subject_regexp: str | None = None

    def matches(self, issuer: str | None, sans: Sequence[str]) -> bool:
        if self.issuer is not None and issuer != self.issuer:
            return False
        if self.issuer_regexp is not None and not (
                issuer is not None and re.search(self.issuer_regexp, issuer)):
            return False
        if self.subject is not None and self.subject not in sans:
            return False
        return self.subject_regexp is None or any(
            re.search(self.subject_regexp, san) for san in sans)

    def __str__(self) -> str:
        subject = self.subject or (f"/{self.subject_regexp}/" if self.subject_regexp
                                   else "any subject")
        issuer = self.issuer or (f"/{self.issuer_regexp}/" if self.issuer_regexp
                                 else "any issuer")
        return f"{subject} from {issuer}"


def _der_utf8(data: bytes) -> str:
    """The text of a DER UTF8String (tag 0x0c), as in Fulcio's v2 extensions."""
    if len(data) < 2 or data[0] != 0x0C:
        return data.decode(errors="replace")
    length, offset = data[1], 2
    if length & 0x80:
        size = length & 0x7F
        length, offset = int.from_bytes(data[2:2 + size], "big"), 2 + size
    return data[offset:offset + length].decode(errors="replace")


def certificate_identity(cert: x509.Certificate) -> tuple[str | None, list[str]]:
    """(OIDC issuer, SAN values) of a Fulcio certificate."""
    issuer = None
    for oid, decode in ((_ISSUER_V2, _der_utf8), (_ISSUER_V1, bytes.decode)):
        try:
            ext = cert.extensions.get_extension_for_oid(oid).value
        except x509.ExtensionNotFound:
            continue
        issuer = decode(ext.value)  # type: ignore[attr-defined]
        break
    sans: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return issuer, sans
    sans += san.get_values_for_type(x509.RFC822Name)
    sans += san.get_values_for_type(x509.UniformResourceIdentifier)
    sans += [_der_utf8(o.value) for o in san.get_values_for_type(x509.OtherName)
             if o.type_id == _SAN_OTHERNAME]
    return issuer, sans


def trusted_root_file(path: str | None = None) -> str:
    """The trusted_root.json to use: `path`, or the production root sigstore-python ships.
    Bundles (sigstore-python) and legacy keyless signatures (fulcio) read the same file."""
    if path is None:
        store = importlib.resources.files("sigstore") / "_store"
        return str(store / "https%3A%2F%2Ftuf-repo-cdn.sigstore.dev" / "trusted_root.json")
    if not Path(path).is_file():
        raise ValueError(f"trusted root {path} does not exist")
    return path


@functools.lru_cache(maxsize=8)
def trusted_root(path: str | None = None) -> Any:
    """A sigstore TrustedRoot from a file; default: the production root sigstore-python
    ships (no network: a TUF refresh is never attempted).

    A trusted root's validity windows are closed (both ends inclusive); sigstore-python
    checks a TSA's as half-open, so a timestamp at exactly `validFor.end` fails there. Each
    TSA end is handed to it one microsecond later, which makes its half-open check the
    closed one at the resolution of timestamps (the conformance suite's
    trust-root-tsa-validity-end-inclusive)."""
    from sigstore.models import TrustedRoot
    from sigstore_models.trustroot import v1 as trustroot_v1

    file = trusted_root_file(path)
    data = json.loads(Path(file).read_bytes())
    for tsa in data.get("timestampAuthorities") or [] if isinstance(data, dict) else []:
        window = tsa.get("validFor") if isinstance(tsa, dict) else None
        if isinstance(window, dict) and isinstance(window.get("end"), str):
            end = datetime.fromisoformat(window["end"]) + timedelta(microseconds=1)
            window["end"] = end.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return TrustedRoot(trustroot_v1.TrustedRoot.from_json(json.dumps(data)))


def _policy(identities: Sequence[Identity]) -> Any:
    from sigstore.errors import VerificationError
    from sigstore.verify.policy import VerificationPolicy

    class AnyIdentity(VerificationPolicy):
        def verify(self, cert: x509.Certificate) -> None:
            issuer, sans = certificate_identity(cert)
            if not any(identity.matches(issuer, sans) for identity in identities):
                raise VerificationError(
                    f"the certificate is for {', '.join(sans) or 'no subject'} from "
                    f"{issuer or 'no issuer'}, not {' or '.join(map(str, identities))}")

    return AnyIdentity()


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding: what a DSSE signature signs."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def check_subject(payload_type: str, payload: bytes, digest: str) -> str:
    """Why a DSSE payload is not an in-toto statement about `digest` ("" when it is)."""
    if payload_type != INTOTO:
        return f"the DSSE payload type is {payload_type!r}, not {INTOTO}"
    try:
        statement = json.loads(payload)
        subjects = statement.get("subject") or []
    except (ValueError, AttributeError):
        return "the DSSE payload is not an in-toto statement"
    algorithm, _, hex_digest = digest.partition(":")
    names = []
    for subject in subjects if isinstance(subjects, list) else []:
        if isinstance(subject, dict) and isinstance(subject.get("digest"), dict):
            if subject["digest"].get(algorithm) == hex_digest:
                return ""
            names.append(f"{algorithm}:{subject['digest'].get(algorithm)}")
    return f"the statement's subject is {', '.join(names) or 'empty'}, not {digest}"


@dataclass(frozen=True)
class Content:
    """The core's verdict on a bundle; when valid and DSSE, the statement it signs."""

    valid: bool
    reason: str = ""
    signer: str = ""
    payload_type: str = ""
    payload: bytes = b""

    @property
    def result(self) -> Result:
        return Result(self.valid, self.reason, self.signer)


def verify_content(bundle: bytes, digest: str,
                   public_keys: Sequence[tuple[str, keys.PublicKey]] = (),
                   identities: Sequence[Identity] = (), trusted_root_path: str | None = None,
                   tlog: transparency.Mode = "optional") -> Content:
    """Whether a bundle validly signs `digest` (a message signature over it, or a DSSE
    in-toto statement with it as subject) for one of the keys or keyless identities.

    `tlog` applies to key-based bundles (keyless ones always need their log entry or
    timestamp): `required` wants a verified Rekor entry recording the signature,
    `optional` checks the entries present, `off` ignores them.
    """
    try:
        data = json.loads(bundle)
        media_type = str(data.get("mediaType", ""))
        material = data["verificationMaterial"]
    except (ValueError, KeyError, TypeError, AttributeError):
        return Content(False, "not a sigstore bundle (no verificationMaterial)")
    if media_type not in BUNDLE_TYPES:
        return Content(False, f"mediaType {media_type!r} is not a sigstore bundle version "
                              f"mlgate knows (0.1, 0.2, 0.3)")
    if not isinstance(material, dict):
        return Content(False, "verificationMaterial is not an object")
    if "certificate" in material or "x509CertificateChain" in material:
        return _verify_keyless(bundle, data, digest, identities, trusted_root_path)
    if "publicKey" not in material:
        return Content(False, "the bundle has neither a certificate nor a public key hint")
    return _verify_key(data, digest, public_keys, trusted_root_path, tlog)


def verify(bundle: bytes, digest: str,
           public_keys: Sequence[tuple[str, keys.PublicKey]] = (),
           identities: Sequence[Identity] = (), trusted_root_path: str | None = None,
           predicate_types: frozenset[str] | None = frozenset({COSIGN_SIGN_PREDICATE}),
           tlog: transparency.Mode = "optional") -> Result:
    """Whether a bundle signs the image `digest`: the core's verdict, then the image rule
    (a DSSE statement whose predicate is one of `predicate_types`; None: any content)."""
    content = verify_content(bundle, digest, public_keys, identities, trusted_root_path, tlog)
    if not content.valid or predicate_types is None:
        return content.result
    if not content.payload_type:
        return Result(False, "a message signature signs a blob; an image signature is a DSSE "
                             "statement")
    predicate_type = json.loads(content.payload).get("predicateType")
    if predicate_type not in predicate_types:
        return Result(False, f"predicateType {predicate_type!r} is an attestation, not a "
                             f"signature ({', '.join(sorted(predicate_types))})")
    return content.result


def _key_content(data: dict[str, Any]) -> tuple[bytes, bytes, str, bytes, bytes]:
    """(signature, message signed, DSSE payload type, DSSE payload, claimed sha256) of a
    key-based bundle; the message is the PAE for DSSE, the digest for a message signature."""
    if "dsseEnvelope" in data:
        envelope = data["dsseEnvelope"]
        payload = base64.b64decode(envelope["payload"], validate=True)
        payload_type = str(envelope["payloadType"])
        signatures = envelope["signatures"]
        if not isinstance(signatures, list) or len(signatures) != 1:
            raise ValueError(f"a DSSE envelope in a bundle has exactly one signature, this one "
                             f"has {len(signatures) if isinstance(signatures, list) else 0}")
        signature = base64.b64decode(signatures[0]["sig"], validate=True)
        return signature, pae(payload_type, payload), payload_type, payload, b""
    signed = data["messageSignature"]
    claimed = base64.b64decode(signed["messageDigest"]["digest"], validate=True)
    signature = base64.b64decode(signed["signature"], validate=True)
    return signature, claimed, "", b"", claimed


def _verify_key(data: dict[str, Any], digest: str,
                public_keys: Sequence[tuple[str, keys.PublicKey]],
                trusted_root_path: str | None, tlog: transparency.Mode) -> Content:
    if not public_keys:
        return Content(False, "the bundle is signed with a key, and the rule has no keys")
    names = ", ".join(name for name, _ in public_keys)
    try:
        signature, message, payload_type, payload, claimed = _key_content(data)
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        return Content(False, f"malformed bundle content: {type(exc).__name__}: {exc}")
    if payload_type:
        signer = next(((name, key) for name, key in public_keys
                       if keys.verifies(key, signature, message)), None)
        why = check_subject(payload_type, payload, digest) if signer else ""
    else:
        algorithm, _, hex_digest = digest.partition(":")
        if algorithm != "sha256" or claimed.hex() != hex_digest:
            return Content(False, f"the message signature is for sha256:{claimed.hex()}, not "
                                  f"{digest}")
        signer = next(((name, key) for name, key in public_keys
                       if keys.verifies_digest(key, signature, claimed)), None)
        why = ""
    if signer is None:
        what = "DSSE signature" if payload_type else "signature"
        return Content(False, f"the {what} does not verify with the rule's keys ({names})")
    if why:
        return Content(False, why)
    if tlog != "off":
        try:
            how = _check_log(data, signature, signer[1], claimed.hex(), payload_type, payload,
                             trusted_root_path, tlog)
        except (transparency.Rejected, ValueError) as exc:
            return Content(False, f"transparency log: {exc}")
        name = f"{signer[0]}{how}"
    else:
        name = signer[0]
    return Content(True, "", name, payload_type, payload)


def _check_log(data: dict[str, Any], signature: bytes, key: keys.PublicKey,
               artifact_sha256: str, payload_type: str, payload: bytes,
               trusted_root_path: str | None, tlog: transparency.Mode) -> str:
    """Every log entry and RFC 3161 timestamp present must vouch for the signature;
    `required` wants at least one of them. The text names those that did, for the
    signer's description."""
    from webhook.signatures import fulcio, timestamps

    material = data["verificationMaterial"]
    entries = material.get("tlogEntries") or []
    stamps = (material.get("timestampVerificationData") or {}).get("rfc3161Timestamps") or []
    if not isinstance(entries, list) or not isinstance(stamps, list):
        raise transparency.Rejected("tlogEntries or rfc3161Timestamps is not a list")
    if not entries and not stamps:
        if tlog == "required":
            raise transparency.Rejected("the bundle has no Rekor entry nor RFC 3161 timestamp, "
                                        "and the rule has tlog: required")
        return ""
    trust = fulcio.trust_root(trusted_root_path)
    found = []
    for item in entries:
        entry = transparency.verify_bundle_entry(item, trust.logs)
        transparency.check_records(entry, signature=signature, key=key,
                                   artifact_sha256=artifact_sha256,
                                   payload_type=payload_type or None,
                                   payload=payload if payload_type else None)
        found.append(f"logged in {entry.log.name} #{entry.index} ({entry.how})")
    for stamp in stamps:
        try:
            when = timestamps.verify(str(stamp["signedTimestamp"]), signature, trust.tsas)
        except (KeyError, TypeError) as exc:
            raise transparency.Rejected(f"an RFC 3161 timestamp is malformed: {exc}") from exc
        except timestamps.Rejected as exc:
            raise transparency.Rejected(str(exc)) from exc
        found.append(f"timestamped {when:%Y-%m-%d %H:%M:%S}Z")
    return f", {', '.join(found)}"


def _verify_keyless(bundle: bytes, data: dict[str, Any], digest: str,
                    identities: Sequence[Identity], trusted_root_path: str | None) -> Content:
    if not identities:
        return Content(False, "the bundle is keyless (certificate), and the rule has no "
                              "keyless identities")
    from sigstore import hashes as sigstore_hashes
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import Bundle
    from sigstore.verify.verifier import Verifier
    from sigstore_models.common.v1 import HashAlgorithm

    # A root CA in the bundle's chain is never a trust anchor (anchors come from the
    # trusted root); it is not refused either: real 2023 npm bundles carry theirs.
    from webhook.signatures import fulcio, intoto_entries

    if intoto_entries.handles(data):
        try:
            trust = fulcio.trust_root(trusted_root_path)
        except ValueError as exc:
            return Content(False, f"trusted root: {exc}")
        return intoto_entries.verify(data, digest, identities, trust)
    algorithm, _, hex_digest = digest.partition(":")
    payload_type, payload = "", b""
    try:
        parsed = Bundle.from_json(bundle)
        verifier = Verifier(trusted_root=trusted_root(trusted_root_path))
        if "dsseEnvelope" in data:
            payload_type, payload = verifier.verify_dsse(parsed, _policy(identities))
            why = check_subject(payload_type, payload, digest)
        else:
            if algorithm != "sha256":
                return Content(False, f"a message signature signs a sha256 digest, not "
                                      f"{algorithm}")
            hashed = sigstore_hashes.Hashed(algorithm=HashAlgorithm.SHA2_256,
                                            digest=bytes.fromhex(hex_digest))
            verifier.verify_artifact(hashed, parsed, _policy(identities))
            why = ""
    except (SigstoreError, ValueError, KeyError, TypeError) as exc:
        return Content(False, f"keyless verification failed: {exc}")
    issuer, sans = certificate_identity(parsed.signing_certificate)
    return Content(not why, why, f"{', '.join(sans)} ({issuer})", payload_type, payload)


def predicate_type(bundle: bytes) -> str | None:
    """The predicateType of a bundle's DSSE statement, unverified (to sort signatures from
    attestations before verifying); None when it has none."""
    try:
        payload = json.loads(bundle)["dsseEnvelope"]["payload"]
        found = json.loads(base64.b64decode(payload)).get("predicateType")
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        return None
    return found if isinstance(found, str) else None
